
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#ifndef _NGX_ESP_TOTP_H_INCLUDED_
#define _NGX_ESP_TOTP_H_INCLUDED_


#include "ngx_esp.h"
#include "ngx_esp_mfa.h"


/*
 * The TOTP method's parts.  open: the secret of a value of totp_attribute
 * for the user "key" (NGX_OK, wiped with the pool; NGX_DECLINED: not ours,
 * tampered with, another user's); seal: the value to store.
 * stored: the user's value of totp_attribute as the directory gave it
 * after the bind (NGX_DECLINED: none).  store: writes the secret being
 * enrolled (mr->state) with the service account.
 */
ngx_int_t ngx_esp_totp_open(ngx_pool_t *pool, ngx_esp_domain_t *d,
    ngx_str_t *key, ngx_str_t *stored, ngx_str_t *secret);
ngx_int_t ngx_esp_totp_seal(ngx_pool_t *pool, ngx_esp_domain_t *d,
    ngx_str_t *key, ngx_str_t *secret, ngx_str_t *stored);
ngx_int_t ngx_esp_totp_stored(ngx_esp_mfa_req_t *mr, ngx_str_t *value);
ngx_esp_mfa_result_e ngx_esp_totp_store(ngx_esp_mfa_req_t *mr);

/*
 * The admin's reset (esp_status action=mfa_reset): the service account
 * clears the user's totp_attribute, and "done" is called (from an event,
 * never from this call) with NGX_OK (cleared, or there was none),
 * NGX_DECLINED (no such user) or NGX_ERROR.  Returns NGX_AGAIN, or one
 * of those at once, without calling "done".
 */
typedef void (*ngx_esp_totp_reset_pt)(ngx_http_request_t *r, ngx_int_t rc);

ngx_int_t ngx_esp_totp_reset(ngx_http_request_t *r, ngx_esp_domain_t *d,
    ngx_str_t *user, ngx_esp_totp_reset_pt done);

/* RFC 4648 base32 without padding */
ngx_int_t ngx_esp_base32(ngx_pool_t *pool, ngx_str_t *src, ngx_str_t *dst);

/* "text" as a QR code in inline SVG */
ngx_int_t ngx_esp_qr_svg(ngx_pool_t *pool, ngx_str_t *text, ngx_str_t *svg);


#endif /* _NGX_ESP_TOTP_H_INCLUDED_ */
