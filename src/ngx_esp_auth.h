
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#ifndef _NGX_ESP_AUTH_H_INCLUDED_
#define _NGX_ESP_AUTH_H_INCLUDED_


#include "ngx_esp.h"
#include "ngx_esp_bearer.h"
#include "ngx_esp_ldap.h"
#include "ngx_esp_request.h"


/*
 * Logins, whoever asks for them (Basic, the form): the gate's lockout,
 * the Basic credential cache, the directory, one log line and one count
 * per decision.  The request's context lives here too.
 */


#define NGX_ESP_AUTH_RESULTS      (NGX_ESP_AUTH_ERROR + 1)

/* ngx_esp_auth_start() */
#define NGX_ESP_AUTH_CACHE        0x01
#define NGX_ESP_AUTH_CHANGE       0x02      /* ngx_esp_ldap_modify(), with
                                               lr->changes set: the old
                                               password is the login's */


/* the counters of all workers, in the zone "esp_status" adds */
typedef struct {
    size_t                     size;         /* of this struct: another
                                                build's layout is refused */
    time_t                     since;        /* when the zone was made */
    ngx_atomic_t               logins[NGX_ESP_AUTH_RESULTS];
    ngx_atomic_t               unblocks;
    ngx_atomic_t               revokes;
    ngx_atomic_t               bearer[NGX_ESP_BEARER_RESULTS];
} ngx_esp_counters_t;


/*
 * The request's context; with "create", made if there is none.  It is
 * found again after an internal redirect.
 */
ngx_esp_ctx_t *ngx_esp_get_ctx(ngx_http_request_t *r, ngx_uint_t create);

/*
 * The access phase's first word with the context: if an internal redirect
 * (error_page, X-Accel-Redirect, try_files, index, rewrite, a named
 * location) brought the request to this location since the gate last
 * saw it, this location judges it anew: nothing counts as authenticated
 * here until ngx_esp_auth_reuse() says so or a login decides, and what
 * the gate put into the request for the earlier location (a Basic header
 * made from the session, its own request body) leaves it.  A form login
 * on its way to its return URL's location goes on.  NGX_OK or NGX_ERROR.
 */
ngx_int_t ngx_esp_auth_redirected(ngx_http_request_t *r, ngx_esp_ctx_t *ctx);

/*
 * Whether the last decision of this request (made by an earlier location)
 * stands in this one: NGX_OK if it was checked as this location checks,
 * with ctx->authenticated (and DONE for a login) as then; NGX_DECLINED if
 * this location must decide for itself; NGX_ERROR.  It stands only for the
 * same esp_client_auth and esp domain, and, if this location has
 * esp_permitted_groups, a check against the same groups (a refusal for
 * another reason than the groups stands whatever the groups).
 */
ngx_int_t ngx_esp_auth_reuse(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx);

/*
 * Records what the decision in this location was checked against
 * (ctx->checked): the session's groups, or with groups NULL, the
 * location's for a login.  NGX_OK or NGX_ERROR.
 */
ngx_int_t ngx_esp_auth_checked(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx, u_char *groups);

/*
 * What a check against permitted groups is remembered by (sessions,
 * ctx->checked): NGX_ESP_GROUPS_LEN bytes of SHA-256 of the DNs,
 * lowercased, in the order configured; zeros for no groups.
 */
ngx_int_t ngx_esp_groups_fingerprint(ngx_http_request_t *r,
    ngx_array_t *groups, u_char *fp);

/*
 * Starts a login of ctx->user with ctx->password for the location's
 * domain and groups; with NGX_ESP_AUTH_CACHE the Basic credential cache
 * may answer.  NGX_AGAIN while the directory works (the access phase is
 * run again then, and calls ngx_esp_auth_resume()), else what "done"
 * returned: it is called once the decision is booked, with ctx->result
 * set (and ctx->authenticated, ctx->user = the logon name, on success).
 */
ngx_int_t ngx_esp_auth_start(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx, ngx_esp_auth_done_pt done, ngx_uint_t flags);

/*
 * The access phase of a request whose login was decided (DECIDED: book
 * it, log it, record it, call "done") or acted upon in this location
 * (DONE: the same decision again).
 */
ngx_int_t ngx_esp_auth_resume(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);

/*
 * The key of a user for the lockout, the cache and revocations: the
 * logon name as AD compares it (see the function).
 */
ngx_int_t ngx_esp_user_key(ngx_http_request_t *r, ngx_esp_domain_t *d,
    ngx_str_t *logon, ngx_str_t *key);


/* adds the counters' zone ("esp_status" does) */
char *ngx_esp_counters_zone(ngx_conf_t *cf);

/* this cycle's counters, NULL without "esp_status" */
ngx_esp_counters_t *ngx_esp_counters(void);


#endif /* _NGX_ESP_AUTH_H_INCLUDED_ */
