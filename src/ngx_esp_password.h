
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#ifndef _NGX_ESP_PASSWORD_H_INCLUDED_
#define _NGX_ESP_PASSWORD_H_INCLUDED_


#include "ngx_esp.h"
#include "ngx_esp_request.h"


/*
 * The gate's own change-password page (/_esp/password, "esp_password_change
 * on") and the password expiry warning of a form login.
 *
 * endpoint: GET shows the page, POST takes old, new, new again and the
 * form token, then goes to the location of its return URL, as a login
 * does, where start() changes the password (ngx_esp_auth_start() with
 * NGX_ESP_AUTH_CHANGE: the gate's lockout, the login log line) and logs
 * the user in with the new one.  NGX_DECLINED for any other path.
 * offer: the page instead of the login form for a user whose password
 * expired (532) or must change (773).
 * expiry_ask: the attribute a form login reads for the warning.
 * expiry_page: after the session is issued, the warning within the
 * domain's password_expiry_warning; NGX_DECLINED otherwise.
 * link: the page's URL for a link that returns to "back", its text, and
 * the class that hides the link when the page is off.
 */
ngx_int_t ngx_esp_password_endpoint(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);
ngx_int_t ngx_esp_password_start(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);
ngx_int_t ngx_esp_password_offer(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);
ngx_int_t ngx_esp_password_expiry_ask(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);
ngx_int_t ngx_esp_password_expiry_page(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);
ngx_int_t ngx_esp_password_link(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_uint_t de, ngx_str_t *back, ngx_str_t *url,
    ngx_str_t *text, ngx_str_t *cls);


#endif /* _NGX_ESP_PASSWORD_H_INCLUDED_ */
