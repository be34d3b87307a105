
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#ifndef _NGX_ESP_FORM_H_INCLUDED_
#define _NGX_ESP_FORM_H_INCLUDED_


#include "ngx_esp.h"
#include "ngx_esp_request.h"


/*
 * "esp_client_auth form": the login and logout pages, sessions, the OWA
 * hand-off.
 *
 * endpoint: the module's own paths (/_esp/login, /_esp/logout), and the
 * form on its way to its return URL's location; NGX_DECLINED elsewhere.
 * Called after the host check, before the path checks.
 * access: step 5 of the design, and the second half of a form login.
 * header_filter: what Exchange answers a form session or a logoff, and
 * the form's cookies.
 * strip_cookies: the gate's cookies leave the request for Exchange.
 */
ngx_int_t ngx_esp_form_endpoint(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);
ngx_int_t ngx_esp_form_access(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);
ngx_int_t ngx_esp_form_header_filter(ngx_http_request_t *r,
    ngx_esp_ctx_t *ctx);
ngx_int_t ngx_esp_form_strip_cookies(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf);


/* the form's directives: conf is ngx_esp_loc_conf_t */
char *ngx_esp_cookie(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_esp_login_page(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

/* esp_default_url, esp_owa_auth; esp_password_form */
extern ngx_conf_post_handler_pt  ngx_esp_local_url_p;
extern ngx_conf_post_handler_pt  ngx_esp_password_form_p;


#endif /* _NGX_ESP_FORM_H_INCLUDED_ */
