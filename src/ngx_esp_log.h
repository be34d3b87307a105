
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#ifndef _NGX_ESP_LOG_H_INCLUDED_
#define _NGX_ESP_LOG_H_INCLUDED_


#include "ngx_esp.h"


/* the bytes of one client-written value that a log line shows at most */
#define NGX_ESP_LOG_VALUE_LEN  256


/*
 * A client-written value (a user name, a header, a path, a cookie's
 * contents) made fit for the inside of a log line's quotes: '"' and '\'
 * become \" and \\, control characters and every byte from 0x7f on
 * become \xNN.  Nothing a client writes can then end the quotes, start a
 * line, or pass for the ", client: ..." nginx appends or for one of the
 * module's own field=value tokens outside the quotes: a log watcher that
 * reads the quoted string as "(?:[^"\\]|\\.)*" finds its end.  Values
 * longer than NGX_ESP_LOG_VALUE_LEN bytes are cut and end in "...", so
 * that the line keeps nginx's trailing client address within nginx's
 * line length.  Never NULL (out of memory gives "-"); meant to be called
 * in ngx_log_error()'s arguments, which are only evaluated when the line
 * is written.
 */
ngx_str_t *ngx_esp_log_escape(ngx_pool_t *pool, ngx_str_t *value);


#endif /* _NGX_ESP_LOG_H_INCLUDED_ */
