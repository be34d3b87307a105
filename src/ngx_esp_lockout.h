
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
 * with a "password", the Basic credential cache is tried first; "lr" is
 * the directory request the bind will be (its abort tells what became of
 * the password when the client goes away).  Returns
 * NGX_OK: go on to the directory, a slot of the user's counter is held;
 * NGX_DONE: the cache knew the password, no bind is needed; NGX_BUSY:
 * refused, the user is blocked ("blocked"); NGX_AGAIN: every slot is
 * taken by logins under way, the login waits a moment and the request's
 * phases run again (ngx_esp_lockout_waiting() is true until then: the
 * access handler answers NGX_AGAIN), so that begin is called again with
 * the same *lkp; NGX_ERROR.  *lkp is set, or NULL when the domain has no
 * lockout.
 *
 * end: the outcome, once; a login that ends without it (the client went
 * away during the bind) counts as the directory answers its bind, which
 * goes on without it.  With smart lockout, a success makes the
 * client familiar: its address is remembered and a device cookie is added
 * to "set_cookie" (Set-Cookie values separated by "\n") unless it came
 * with one; set_cookie may be NULL.
 */

typedef struct ngx_esp_lockout_s  ngx_esp_lockout_t;


#define NGX_ESP_DEVICE_COOKIE  "esp_device"


ngx_int_t ngx_esp_lockout_begin(ngx_http_request_t *r, ngx_esp_domain_t *d,
    ngx_str_t *key, ngx_str_t *password, ngx_esp_ldap_req_t *lr,
    ngx_esp_lockout_t **lkp);
/*
 * begin_mfa: the same for a second factor, on a counter of its own (the
 * same max_failed_auths and timeouts); there is no cache and no bind.
 */
ngx_int_t ngx_esp_lockout_begin_mfa(ngx_http_request_t *r,
    ngx_esp_domain_t *d, ngx_str_t *key, ngx_esp_lockout_t **lkp);
ngx_uint_t ngx_esp_lockout_waiting(ngx_esp_lockout_t *lk);
void ngx_esp_lockout_end(ngx_http_request_t *r, ngx_esp_lockout_t *lk,
    ngx_esp_auth_result_e result, ngx_str_t *set_cookie);


#endif /* _NGX_ESP_LOCKOUT_H_INCLUDED_ */
