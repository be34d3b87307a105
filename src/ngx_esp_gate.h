
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#ifndef _NGX_ESP_GATE_H_INCLUDED_
#define _NGX_ESP_GATE_H_INCLUDED_


#include "ngx_esp.h"


/*
 * Steps 2 and 3 of the design, for every request where "esp" is on.
 * host: NGX_OK if the host is allowed, else 403.
 * path: NGX_OK if the path is inside the allowed directories (*excluded
 * set when it is excluded from pre-authentication, written plainly),
 * else 400 or 403.
 * excluded: an excluded path goes on to Exchange without the client's
 * Authorization; returns NGX_DECLINED (or 500).
 */
ngx_int_t ngx_esp_gate_host(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf);
ngx_int_t ngx_esp_gate_path(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_uint_t *excluded);
ngx_int_t ngx_esp_gate_excluded(ngx_http_request_t *r);


#endif /* _NGX_ESP_GATE_H_INCLUDED_ */
