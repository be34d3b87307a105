
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#ifndef _NGX_ESP_REQUEST_H_INCLUDED_
#define _NGX_ESP_REQUEST_H_INCLUDED_


#include "ngx_esp.h"
#include "ngx_esp_http.h"
#include "ngx_esp_ldap.h"
#include "ngx_esp_lockout.h"
#include "ngx_esp_session.h"


/* the module's reserved endpoints */
#define NGX_ESP_LOGIN_PATH      "/_esp/login"
#define NGX_ESP_LOGOUT_PATH     "/_esp/logout"
#define NGX_ESP_MFA_PATH        "/_esp/mfa"

#define NGX_ESP_MAX_USER        256
#define NGX_ESP_MAX_PASSWORD    256
#define NGX_ESP_MAX_URL         2048


/*
 * Where a request stands with the gate, in this order.  A form login
 * crosses locations: the form (or its credentials) goes by internal
 * redirect to the location of its return URL, whose settings apply there.
 * Any other internal redirect starts the new location at NEW, and ends a
 * login on its way (ngx_esp_auth_redirected()).
 */
typedef enum {
    NGX_ESP_STATE_NEW = 0,        /* nothing decided yet */
    NGX_ESP_STATE_BODY_READ,      /* the login form's body has arrived */
    NGX_ESP_STATE_FORM_PAGE,      /* the login form, on its way to be
                                     shown; ctx->message says what */
    NGX_ESP_STATE_FORM_LOGIN,     /* the credentials, on their way to be
                                     checked */
    NGX_ESP_STATE_SLOT,           /* every slot of the user's lockout is
                                     taken: the login waits for one and
                                     starts again (src/ngx_esp_lockout.c) */
    NGX_ESP_STATE_WAITING,        /* the directory has the credentials */
    NGX_ESP_STATE_DELAYED,        /* refused without the directory: the
                                     answer waits as long as a bind would
                                     (src/ngx_esp_refusal.c) */
    NGX_ESP_STATE_DECIDED,        /* its answer is in ctx->lr.result, not
                                     acted upon yet */
    NGX_ESP_STATE_DONE            /* acted upon in this location */
} ngx_esp_state_e;


/*
 * What a decision (a login, or a session found) was checked against: an
 * internal redirect may take the request to a location that checks
 * otherwise, where it must not count (ngx_esp_auth_reuse()).
 */
typedef struct {
    ngx_esp_domain_t          *domain;       /* NULL: nothing decided */
    ngx_uint_t                 client_auth;  /* esp_client_auth */
    u_char                     groups[NGX_ESP_GROUPS_LEN];
    unsigned                   ok:1;         /* authenticated */
    unsigned                   login:1;      /* a login: ctx->result */
} ngx_esp_checked_t;


typedef struct ngx_esp_ctx_s  ngx_esp_ctx_t;

/* what a login's owner (Basic, the form) does with the decision */
typedef ngx_int_t (*ngx_esp_auth_done_pt)(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);


/* the per-request state; it survives internal redirects (see get_ctx) */
struct ngx_esp_ctx_s {
    ngx_esp_ldap_req_t         lr;

    ngx_esp_state_e            state;
    ngx_esp_auth_done_pt       done;         /* the login's completion */
    ngx_esp_auth_result_e      result;       /* once DONE */
    ngx_esp_checked_t          checked;      /* the last decision's */
    ngx_uint_t                 message;      /* FORM_PAGE: the form's */
    ngx_msec_t                 started;      /* WAITING: since when */

    ngx_str_t                  user;         /* as the client gave it */
    ngx_str_t                  password;     /* wiped with the pool */
    ngx_str_t                  return_url;   /* form login: where to go */
    ngx_str_t                  key;          /* lowercased logon name */

    /* the client's, as decoded: a location may take the header off */
    ngx_str_t                  basic_user;
    ngx_str_t                  basic_password;   /* wiped with the pool */

    ngx_esp_session_t          session;      /* a valid session cookie */
    ngx_esp_lockout_t         *lockout;      /* this login's, or NULL */

    ngx_str_t                  set_cookie;   /* added by the header filter */

    ngx_esp_body_t             body;         /* a body being read */

    void                      *mfa;          /* the second factor's step
                                                (src/ngx_esp_mfa.c) */

    unsigned                   authenticated:1;  /* in this location */
    unsigned                   has_session:1;    /* in this location */
    unsigned                   private:1;
    unsigned                   handoff:1;    /* POST auth.owa sent */
    unsigned                   logoff:1;
    unsigned                   use_cache:1;  /* Basic: the cache may answer */
    unsigned                   cached:1;     /* Basic: it did */
    unsigned                   de:1;         /* German pages */

    unsigned                   redirected:1; /* found again after an
                                                internal redirect */
    unsigned                   continued:1;  /* by the gate's own, to a
                                                login's return URL */

    /* what the gate put into the request for this location only */
    unsigned                   set_authorization:1;  /* from the session */
    unsigned                   gate_body:1;  /* the login form, or the
                                                hand-off with the password */
};


#endif /* _NGX_ESP_REQUEST_H_INCLUDED_ */
