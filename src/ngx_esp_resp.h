
/*
 * Copyright (C) ngx_exchange_esp authors
 */


/*
 * Reading what a Redis server sends (RESP) with hiredis's reader, within
 * limits: hiredis 0.14 allocates an array for as many elements as a reply
 * announces, so "*2000000000" alone would ask for 16 GB.  The reader made
 * here refuses an array of more than NGX_ESP_RESP_MAX_ELEMENTS (an error,
 * as if memory were short); the caller bounds the bytes it buffers.
 */


#ifndef _NGX_ESP_RESP_H_INCLUDED_
#define _NGX_ESP_RESP_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include <hiredis/hiredis.h>


/* a resynchronisation's members and scores fit: 1M revocations */
#define NGX_ESP_RESP_MAX_ELEMENTS  (2 * 1024 * 1024)


/* NULL when memory is short */
redisReader *ngx_esp_resp_reader(void);


#endif /* _NGX_ESP_RESP_H_INCLUDED_ */
