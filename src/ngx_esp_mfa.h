
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#ifndef _NGX_ESP_MFA_H_INCLUDED_
#define _NGX_ESP_MFA_H_INCLUDED_


#include "ngx_esp.h"
#include "ngx_esp_ldap.h"
#include "ngx_esp_request.h"


/*
 * The second factor of the login form (esp_mfa).
 *
 * After the password the browser gets a page that asks for a code; the
 * session cookie is issued only when the method accepts it.  Between the
 * two steps the login lives in a pending state, sealed under the session
 * keys, posted back with the code: the user, the return URL, the password
 * for esp_server_auth basic/form (sealed again under esp_password_key),
 * the method's own state, an expiry (esp_mfa_timeout), a hash of the
 * CSRF token, and an id that the shared zone lets through once.  A code
 * that does not pass gets a new pending state for the next try.
 *
 *
 * Adding a method (RADIUS is the second):
 *
 * 1. a value of "esp_mfa" (NGX_ESP_MFA_* below, ngx_esp_mfa_kinds in
 *    src/ngx_esp_mfa.c) and an ngx_esp_mfa_method_t in its own file,
 *    named in ngx_esp_mfa_methods[] in src/ngx_esp_mfa.c;
 * 2. its directives in the esp_sso_domain block (src/ngx_esp_domain.c)
 *    and its fields in ngx_esp_domain_t; "init", if set, checks them at
 *    configuration time for every domain a location uses the method with;
 *    "attrs", if set, names the attributes of the user's entry that the
 *    login reads after the bind (mr->lr->values in start).
 *
 * A method is given an ngx_esp_mfa_req_t:
 *   - user: the logon name the directory accepted; key: the lowercased
 *     one (ngx_esp_user_key()); domain; the location's conf (elcf);
 *   - start only: password, the one that passed (wiped with the pool),
 *     and lr, the directory request of the login (attributes read after
 *     the bind);
 *   - verify only: code, what the user typed (UTF-8, at most 64 bytes,
 *     wiped with the pool);
 *   - state: the method's own bytes from the last start/verify, carried
 *     sealed in the pending state (at most NGX_ESP_MFA_MAX_STATE bytes);
 *   - pool, log: the request's; data: the method's own pointer;
 *   - done: for asynchronous methods, see below.
 *
 * "start" runs once the password has passed; "verify" when a code comes.
 * Each returns, and sets in mr->result, one of:
 *   ACCEPT     the second factor passed: the session is issued;
 *   REJECT     refused: in verify a wrong code (it counts toward the
 *              user's MFA lockout, and the page asks again); in start the
 *              login ends (no secret and no enrolment...);
 *   CHALLENGE  ask for a code: mr->state is the new state, mr->message
 *              (plain text from a server, may be empty) or mr->text
 *              (the gate's words, NGX_ESP_MFA_T_*) is shown; with
 *              mr->enrol, the enrolment page shows mr->enrol_uri as a QR
 *              code and mr->enrol_secret as text;
 *   ERROR      the method could not decide (server down): a 503 page,
 *              nothing counted;
 *   WAIT       asynchronous: the method calls mr->done(mr) once, later,
 *              from an event handler, with mr->result set to one of the
 *              above.  The request may go away first: then "abort" is
 *              called (from a pool cleanup) and done must not be.
 * mr->message may be set with REJECT too: a server's words are shown
 * rather than the gate's.  A method that needs the password after start
 * keeps it in its state (the pending state is sealed; esp_password_key
 * seals the password for Exchange apart).  The framework counts REJECT
 * of verify toward the user's MFA lockout (max_failed_auths of the
 * domain, on a counter apart from the password's) and refuses a blocked
 * user before verify is called.
 */


/* esp_mfa */
#define NGX_ESP_MFA_OFF           0
#define NGX_ESP_MFA_TOTP          1
#define NGX_ESP_MFA_RADIUS        2
#define NGX_ESP_MFA_METHODS       3

#define NGX_ESP_MFA_MAX_STATE     1024
#define NGX_ESP_MFA_MAX_CODE      64


/* mr->text: words of the gate's own, in the page's language */
#define NGX_ESP_MFA_T_NONE        0
#define NGX_ESP_MFA_T_WRONG_CODE  1
#define NGX_ESP_MFA_T_USED_CODE   2
#define NGX_ESP_MFA_T_NO_SECRET   3
#define NGX_ESP_MFA_T_BAD_SECRET  4
#define NGX_ESP_MFA_T_METHOD      5         /* first free for a method */
#define NGX_ESP_MFA_T_RADIUS_CODE    (NGX_ESP_MFA_T_METHOD + 0)
#define NGX_ESP_MFA_T_RADIUS_WRONG   (NGX_ESP_MFA_T_METHOD + 1)
#define NGX_ESP_MFA_T_RADIUS_DENIED  (NGX_ESP_MFA_T_METHOD + 2)
#define NGX_ESP_MFA_T_RADIUS_HINT    (NGX_ESP_MFA_T_METHOD + 3)


typedef enum {
    NGX_ESP_MFA_ACCEPT = 0,
    NGX_ESP_MFA_REJECT,
    NGX_ESP_MFA_CHALLENGE,
    NGX_ESP_MFA_ERROR,
    NGX_ESP_MFA_WAIT
} ngx_esp_mfa_result_e;


typedef struct ngx_esp_mfa_req_s  ngx_esp_mfa_req_t;

typedef void (*ngx_esp_mfa_done_pt)(ngx_esp_mfa_req_t *mr);


struct ngx_esp_mfa_req_s {
    /* given to the method */
    ngx_http_request_t        *request;
    ngx_esp_loc_conf_t        *elcf;
    ngx_esp_domain_t          *domain;
    ngx_str_t                  user;
    ngx_str_t                  key;
    ngx_str_t                  password;     /* start only */
    ngx_esp_ldap_req_t        *lr;           /* start only */
    ngx_str_t                  code;         /* verify only */
    ngx_str_t                  state;        /* in and out */
    ngx_pool_t                *pool;
    ngx_log_t                 *log;
    ngx_esp_mfa_done_pt        done;
    void                      *data;         /* the method's */

    /* the method's answer */
    ngx_esp_mfa_result_e       result;
    ngx_uint_t                 text;         /* NGX_ESP_MFA_T_* */
    ngx_str_t                  message;
    ngx_str_t                  enrol_uri;
    ngx_str_t                  enrol_secret;
    unsigned                   enrol:1;
};


typedef struct {
    const char                *name;
    ngx_int_t                (*init)(ngx_conf_t *cf, ngx_esp_domain_t *d,
                                     ngx_esp_loc_conf_t *elcf);
    ngx_esp_mfa_result_e     (*start)(ngx_esp_mfa_req_t *mr);
    ngx_esp_mfa_result_e     (*verify)(ngx_esp_mfa_req_t *mr);
    void                     (*abort)(ngx_esp_mfa_req_t *mr);
    ngx_array_t             *(*attrs)(ngx_esp_domain_t *d);
} ngx_esp_mfa_method_t;


extern ngx_esp_mfa_method_t  ngx_esp_totp_method;
extern ngx_esp_mfa_method_t  ngx_esp_radius_method;   /* mfa_radius.c */


/*
 * The form's hooks (src/ngx_esp_form.c).  begin: the password passed
 * (from the login's completion, ctx->lr holds it): the second step
 * starts, or NGX_DECLINED if the location asks for none.  post: a body
 * posted to /_esp/login (read, ctx->body) with the second factor's
 * fields, NGX_DECLINED for any other.  access: a login with ctx->mfa set,
 * in its return URL's location.
 */
ngx_int_t ngx_esp_mfa_begin(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx);
ngx_int_t ngx_esp_mfa_post(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx);
ngx_int_t ngx_esp_mfa_access(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx);

/*
 * Once only (a pending state, a TOTP code): NGX_OK the first time the
 * keyed hash of "label" and "fields" is seen until "expires", NGX_DECLINED
 * after, NGX_ERROR.  The one place that asks the shared zone (a cluster
 * store can be asked here too).
 */
ngx_int_t ngx_esp_mfa_once(ngx_esp_mfa_req_t *mr, const char *label,
    ngx_str_t *fields, ngx_uint_t n, time_t expires);

/* what a login of the location reads from the user's entry, or NULL */
ngx_array_t *ngx_esp_mfa_attrs(ngx_esp_loc_conf_t *elcf);

/* configuration: checks per location after the merge */
ngx_int_t ngx_esp_mfa_conf(ngx_conf_t *cf, ngx_esp_loc_conf_t *conf);

/* esp_mfa; totp_key_file (in esp_sso_domain) */
char *ngx_esp_mfa_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_esp_totp_key_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

extern ngx_conf_enum_t  ngx_esp_mfa_kinds[];


#endif /* _NGX_ESP_MFA_H_INCLUDED_ */
