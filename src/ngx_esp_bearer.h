
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#ifndef _NGX_ESP_BEARER_H_INCLUDED_
#define _NGX_ESP_BEARER_H_INCLUDED_


#include "ngx_esp.h"


/*
 * "esp_bearer off | pass | verify" in Basic and delegate locations:
 * OAuth Bearer tokens of hybrid modern authentication (Outlook mobile,
 * Outlook with HMA) on ActiveSync, EWS, MAPI and Autodiscover.
 *
 * ngx_esp_bearer_access(): NGX_DECLINED if the request does not carry
 * "Authorization: Bearer" (any case, any blanks) or esp_bearer is off
 * (the caller goes on as without it); NGX_OK if the token passes on to
 * Exchange as it came (pass: Exchange checks it; verify: checked here
 * first); 401 with a Bearer error="invalid_token" challenge for a token
 * refused; 500.  Logged with a keyed fingerprint, never the token, and
 * counted for esp_status.
 */
ngx_int_t ngx_esp_bearer_access(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf);

/*
 * Adds "WWW-Authenticate: Bearer authorization_uri=..." to a 401 where
 * esp_bearer is on and esp_bearer_authorization_uri is set.
 */
ngx_int_t ngx_esp_bearer_challenge(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_uint_t invalid);

/* the counts esp_status shows: passed, verified, refused */
#define NGX_ESP_BEARER_PASSED     0
#define NGX_ESP_BEARER_VERIFIED   1
#define NGX_ESP_BEARER_REFUSED    2
#define NGX_ESP_BEARER_RESULTS    3

extern char  *ngx_esp_bearer_result_names[];

/* directives */
char *ngx_esp_bearer_jwks(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_esp_bearer_parse_string(ngx_conf_t *cf, ngx_str_t *value,
    void *elt);
char *ngx_esp_bearer_uri(ngx_conf_t *cf, void *post, void *data);
char *ngx_esp_bearer_skew(ngx_conf_t *cf, void *post, void *data);

/* the merge of the esp_bearer* directives, and their checks */
char *ngx_esp_bearer_merge(ngx_conf_t *cf, ngx_esp_loc_conf_t *prev,
    ngx_esp_loc_conf_t *conf);


#endif /* _NGX_ESP_BEARER_H_INCLUDED_ */
