
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#ifndef _NGX_ESP_REFUSAL_H_INCLUDED_
#define _NGX_ESP_REFUSAL_H_INCLUDED_


#include "ngx_esp.h"
#include "ngx_esp_ldap.h"


/*
 * What a refused login tells the client.  AD answers 530, 531, 533 and
 * 701 only to the right password, and 775 (locked) to any: a message that
 * names them tells an attacker the password was right, or that the
 * account exists.  And the gate's own lockout answers without asking the
 * directory: faster than any bind, which tells the same.  So, by default,
 * every refusal shows the one wrong-user-or-password message, and a
 * refusal the gate decides alone waits about as long as the directory
 * takes to refuse a bind.  The error log keeps the detail.
 */


/* what ngx_esp_refusal_delay() calls when the wait is over */
typedef void (*ngx_esp_refusal_wake_pt)(ngx_http_request_t *r);


/* the esp_login_messages values (ngx_conf_set_enum_slot) */
extern ngx_conf_enum_t  ngx_esp_login_messages_modes[];


/*
 * The result to show the client: "rc" itself with esp_login_messages
 * detailed, or for success, the password-change path (532, 773: only a
 * right password gets there, and Exchange's own forms login says as much)
 * and the directory's unavailability; NGX_ESP_AUTH_BAD_CREDENTIALS for
 * every other refusal.
 */
ngx_esp_auth_result_e ngx_esp_refusal_shown(ngx_esp_loc_conf_t *elcf,
    ngx_esp_auth_result_e rc);

/*
 * How long the directory took to refuse a bind of this worker (from the
 * start of the login to its answer), to be imitated.
 */
void ngx_esp_refusal_sample(ngx_esp_domain_t *d, ngx_msec_t ms);

/*
 * A refusal decided without the directory of domain "d": NGX_OK with a
 * timer armed that calls "wake" (which resumes the request as the
 * directory's answer would) after about as long as this worker saw the
 * directory take to refuse a bind (a random one of its last refusals,
 * with jitter; 20-80 ms before it saw any), or NGX_ERROR.  The timer
 * goes with the request's pool.  The worker never sleeps.
 */
ngx_int_t ngx_esp_refusal_delay(ngx_http_request_t *r, ngx_esp_domain_t *d,
    ngx_esp_refusal_wake_pt wake);


#endif /* _NGX_ESP_REFUSAL_H_INCLUDED_ */
