
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#ifndef _NGX_ESP_BASIC_H_INCLUDED_
#define _NGX_ESP_BASIC_H_INCLUDED_


#include "ngx_esp.h"
#include "ngx_esp_request.h"


/*
 * "esp_client_auth basic" (step 6 of the design): Authorization: Basic
 * checked against the directory through the credential cache, else 401;
 * on success Exchange sees the client's credentials only with
 * "esp_server_auth basic".
 */
ngx_int_t ngx_esp_basic_access(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);

/*
 * "esp_client_auth delegate" (step 7): Exchange authenticates (NTLM,
 * Negotiate, OAuth pass on as they are), but a Basic password is one more
 * guess at the directory: per esp_delegate_basic it goes through the
 * lockout, the cache and the login log first (verify) and then on to
 * Exchange as it came, passes unchecked (pass), or is refused (refuse).
 */
ngx_int_t ngx_esp_basic_delegate(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);


#endif /* _NGX_ESP_BASIC_H_INCLUDED_ */
