
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#ifndef _NGX_ESP_LOCKOUT_H_INCLUDED_
#define _NGX_ESP_LOCKOUT_H_INCLUDED_


#include "ngx_esp.h"
#include "ngx_esp_ldap.h"


/*
 * The gate's lockout (max_failed_auths of an esp_sso_domain), as a login
 * sees it: one call before anything may reach the directory, one with the
 * outcome.
 *
 * begin: "key" is the user's lowercased logon name (ngx_esp_user_key());
 * with a "password", the Basic credential cache is tried first.  Returns
 * NGX_OK: go on to the directory, a slot of the user's counter is held;
 * NGX_DONE: the cache knew the password, no bind is needed; NGX_BUSY:
 * refused at once, the user is blocked ("blocked"); NGX_ERROR.  *lkp is
 * set, or NULL when the domain has no lockout.
 *
 * end: the outcome, once; a login that ends without it (the client went
 * away during the bind, which the directory may still count) counts as a
 * failure when its pool goes.  With smart lockout, a success makes the
 * client familiar: its address is remembered and a device cookie is added
 * to "set_cookie" (Set-Cookie values separated by "\n") unless it came
 * with one; set_cookie may be NULL.
 */

typedef struct ngx_esp_lockout_s  ngx_esp_lockout_t;


#define NGX_ESP_DEVICE_COOKIE  "esp_device"


ngx_int_t ngx_esp_lockout_begin(ngx_http_request_t *r, ngx_esp_domain_t *d,
    ngx_str_t *key, ngx_str_t *password, ngx_esp_lockout_t **lkp);
void ngx_esp_lockout_end(ngx_http_request_t *r, ngx_esp_lockout_t *lk,
    ngx_esp_auth_result_e result, ngx_str_t *set_cookie);


#endif /* _NGX_ESP_LOCKOUT_H_INCLUDED_ */
