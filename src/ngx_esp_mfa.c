
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "ngx_esp_auth.h"
#include "ngx_esp_cluster.h"
#include "ngx_esp_form.h"
#include "ngx_esp_http.h"
#include "ngx_esp_log.h"
#include "ngx_esp_mfa.h"
#include "ngx_esp_shm.h"
#include "ngx_esp_totp.h"


/*
 * The pending state, posted back with the code, is base64url of a value
 * sealed under the session keys (ngx_esp_seal_value()) with
 * NGX_ESP_MFA_AAD as additional data, and the plaintext
 *
 *     version (1) | method (1) | flags (1) | expires (8) | id (16)
 *     | login (16) | groups (8) | csrf (16) | domain length (1) | domain
 *     | user length (2) | user | url length (2) | url
 *     | password length (2) | password | state length (2) | state
 *
 * "csrf" is SHA-256 of the page's CSRF token, cut; "groups" fingerprints
 * the permitted groups the password was checked against; "password" is
 * sealed once more under esp_password_key, with "login" as the session id
 * (ngx_esp_session_seal_password()), and only there for server auth
 * basic or form.  The id passes the shared zone once: every page of the
 * second step has a new one; "login" stays from the password on.
 */

#define NGX_ESP_MFA_VERSION       1
#define NGX_ESP_MFA_ID_LEN        16
#define NGX_ESP_MFA_CSRF_LEN      16
#define NGX_ESP_MFA_FIXED_LEN     (3 + 8 + 2 * NGX_ESP_MFA_ID_LEN           \
                                   + NGX_ESP_GROUPS_LEN + NGX_ESP_MFA_CSRF_LEN)
#define NGX_ESP_MFA_MAX_PENDING   6144
#define NGX_ESP_MFA_AAD           "ngx_exchange_esp mfa pending v1"
#define NGX_ESP_MFA_ONCE          "ngx_esp mfa pending used v1"
#define NGX_ESP_MFA_MAX_BODY      8192

#define NGX_ESP_MFA_PRIVATE       0x01

#define NGX_ESP_MFA_MAX_VARS      24


typedef struct {
    ngx_uint_t                 method;
    ngx_uint_t                 flags;
    time_t                     expires;
    u_char                     id[NGX_ESP_MFA_ID_LEN];
    u_char                     login[NGX_ESP_MFA_ID_LEN];
    u_char                     groups[NGX_ESP_GROUPS_LEN];
    u_char                     csrf[NGX_ESP_MFA_CSRF_LEN];
    ngx_str_t                  domain;
    ngx_str_t                  user;
    ngx_str_t                  url;
    ngx_str_t                  password;     /* sealed */
    ngx_str_t                  state;
} ngx_esp_mfa_pending_t;


/* where the second step stands, in the request's ctx->mfa */
typedef enum {
    NGX_ESP_MFA_CHECK = 0,        /* a code posted: to be checked */
    NGX_ESP_MFA_SLOT,             /* waiting for a lockout slot */
    NGX_ESP_MFA_WAITING,          /* the method works (asynchronous) */
    NGX_ESP_MFA_DECIDED           /* the method has answered */
} ngx_esp_mfa_phase_e;


typedef struct {
    ngx_esp_mfa_req_t          mr;
    ngx_esp_mfa_pending_t      pending;
    ngx_esp_mfa_method_t      *method;
    ngx_esp_lockout_t         *lockout;
    ngx_esp_mfa_phase_e        phase;
    unsigned                   start:1;      /* mr answers start */
    unsigned                   running:1;    /* an asynchronous call */
} ngx_esp_mfa_ctx_t;


/* the pages' texts */
typedef enum {
    NGX_ESP_MFA_X_HEADING = NGX_ESP_MFA_T_METHOD + 16,
    NGX_ESP_MFA_X_ENROL_HEADING,
    NGX_ESP_MFA_X_USER,
    NGX_ESP_MFA_X_ENROL,
    NGX_ESP_MFA_X_SECRET,
    NGX_ESP_MFA_X_CODE,
    NGX_ESP_MFA_X_CODE_HINT,
    NGX_ESP_MFA_X_SUBMIT,
    NGX_ESP_MFA_X_AGAIN,
    NGX_ESP_MFA_X_FOOTER,
    NGX_ESP_MFA_X_BLOCKED,
    NGX_ESP_MFA_X_UNAVAILABLE
} ngx_esp_mfa_text_e;


typedef struct {
    ngx_uint_t                 id;
    char                      *en;
    char                      *de;
} ngx_esp_mfa_text_t;


static ngx_int_t ngx_esp_mfa_ready(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_mfa_ctx_t *mctx);
static ngx_int_t ngx_esp_mfa_check(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx, ngx_esp_mfa_ctx_t *mctx);
static ngx_int_t ngx_esp_mfa_outcome(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx, ngx_esp_mfa_ctx_t *mctx);
static ngx_int_t ngx_esp_mfa_accepted(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx, ngx_esp_mfa_ctx_t *mctx);
static void ngx_esp_mfa_done(ngx_esp_mfa_req_t *mr);
static void ngx_esp_mfa_cleanup(void *data);
static ngx_int_t ngx_esp_mfa_page(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx, ngx_esp_mfa_ctx_t *mctx,
    ngx_uint_t status, ngx_uint_t form, ngx_uint_t text);
static ngx_int_t ngx_esp_mfa_seal(ngx_http_request_t *r,
    ngx_esp_mfa_pending_t *p, ngx_str_t *out);
static ngx_int_t ngx_esp_mfa_open(ngx_http_request_t *r, ngx_str_t *in,
    ngx_esp_mfa_pending_t *p);
static void ngx_esp_mfa_csrf_hash(ngx_str_t *token, u_char *out);
static ngx_int_t ngx_esp_mfa_password(ngx_http_request_t *r,
    ngx_esp_mfa_pending_t *p, ngx_uint_t seal, ngx_str_t *password);
static char *ngx_esp_mfa_text(ngx_uint_t de, ngx_uint_t id);


ngx_conf_enum_t  ngx_esp_mfa_kinds[] = {
    { ngx_string("off"), NGX_ESP_MFA_OFF },
    { ngx_string("totp"), NGX_ESP_MFA_TOTP },
    { ngx_string("radius"), NGX_ESP_MFA_RADIUS },
    { ngx_null_string, 0 }
};


/* the methods by their esp_mfa value; NULL: not in this build */
static ngx_esp_mfa_method_t  *ngx_esp_mfa_methods[NGX_ESP_MFA_METHODS] = {
    NULL,
    &ngx_esp_totp_method,
    &ngx_esp_radius_method
};


static ngx_esp_mfa_text_t  ngx_esp_mfa_texts[] = {

    { NGX_ESP_MFA_T_WRONG_CODE,
      "The code is not valid. Type the current code from your "
      "authenticator app.",
      "Der Code ist nicht g\xc3\xbcltig. Geben Sie den aktuellen Code aus "
      "Ihrer Authenticator-App ein." },
    { NGX_ESP_MFA_T_USED_CODE,
      "This code was used already. Wait for the next code and type it.",
      "Dieser Code wurde bereits verwendet. Warten Sie auf den n\xc3\xa4"
      "chsten Code und geben Sie ihn ein." },
    { NGX_ESP_MFA_T_NO_SECRET,
      "Your account has no second sign-in factor set up. Contact your "
      "help desk.",
      "F\xc3\xbcr Ihr Konto ist kein zweiter Anmeldefaktor eingerichtet. "
      "Wenden Sie sich an Ihren Helpdesk." },
    { NGX_ESP_MFA_T_BAD_SECRET,
      "Your second sign-in factor cannot be used. Contact your help desk.",
      "Ihr zweiter Anmeldefaktor kann nicht verwendet werden. Wenden Sie "
      "sich an Ihren Helpdesk." },
    { NGX_ESP_MFA_T_RADIUS_CODE,
      "Type the code from your token or authenticator app.",
      "Geben Sie den Code von Ihrem Token oder aus Ihrer Authenticator-App "
      "ein." },
    { NGX_ESP_MFA_T_RADIUS_WRONG,
      "The code was not accepted. Type the current code.",
      "Der Code wurde nicht akzeptiert. Geben Sie den aktuellen Code ein." },
    { NGX_ESP_MFA_T_RADIUS_HINT,
      "The code from your token or app, or \"push\" if your service "
      "offers it",
      "Der Code von Ihrem Token oder aus Ihrer App, oder \"push\", wenn "
      "Ihr Dienst es anbietet" },
    { NGX_ESP_MFA_T_RADIUS_DENIED,
      "The sign-in was not approved.",
      "Die Anmeldung wurde nicht best\xc3\xa4tigt." },
    { NGX_ESP_MFA_X_HEADING,
      "Verify your identity", "Identit\xc3\xa4t best\xc3\xa4tigen" },
    { NGX_ESP_MFA_X_ENROL_HEADING,
      "Set up your authenticator app",
      "Authenticator-App einrichten" },
    { NGX_ESP_MFA_X_USER,
      "Signed in with your password as", "Mit Ihrem Kennwort angemeldet als" },
    { NGX_ESP_MFA_X_ENROL,
      "Scan this QR code with your authenticator app (for example "
      "Microsoft Authenticator), then type the code it shows.",
      "Scannen Sie diesen QR-Code mit Ihrer Authenticator-App (zum "
      "Beispiel Microsoft Authenticator) und geben Sie dann den angezeigten "
      "Code ein." },
    { NGX_ESP_MFA_X_SECRET,
      "Or type this key into the app:",
      "Oder geben Sie diesen Schl\xc3\xbcssel in der App ein:" },
    { NGX_ESP_MFA_X_CODE, "Code", "Code" },
    { NGX_ESP_MFA_X_CODE_HINT,
      "The 6-digit code from your authenticator app",
      "Der 6-stellige Code aus Ihrer Authenticator-App" },
    { NGX_ESP_MFA_X_SUBMIT, "Verify", "Best\xc3\xa4tigen" },
    { NGX_ESP_MFA_X_AGAIN, "Sign in again", "Erneut anmelden" },
    { NGX_ESP_MFA_X_FOOTER,
      "Connected to Microsoft Exchange", "Verbunden mit Microsoft Exchange" },
    { NGX_ESP_MFA_X_BLOCKED,
      "Too many wrong codes. Try again later.",
      "Zu viele falsche Codes. Versuchen Sie es sp\xc3\xa4ter erneut." },
    { NGX_ESP_MFA_X_UNAVAILABLE,
      "The second sign-in factor cannot be checked right now. Try again "
      "later.",
      "Der zweite Anmeldefaktor kann gerade nicht gepr\xc3\xbc" "ft werden. "
      "Versuchen Sie es sp\xc3\xa4ter erneut." },
    { 0, NULL, NULL }
};


/*
 * The password passed: the second step starts with the method's "start";
 * nothing counts as authenticated until it ends.
 */

ngx_int_t
ngx_esp_mfa_begin(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx)
{
    u_char                 groups[NGX_ESP_GROUPS_LEN];
    ngx_str_t              token;
    ngx_esp_mfa_ctx_t     *mctx;
    ngx_esp_mfa_pending_t *p;

    if (elcf->mfa == NGX_ESP_MFA_OFF) {
        return NGX_DECLINED;
    }

    ctx->authenticated = 0;
    ctx->checked.domain = NULL;

    mctx = ngx_pcalloc(r->pool, sizeof(ngx_esp_mfa_ctx_t));
    if (mctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    mctx->start = 1;

    p = &mctx->pending;
    p->method = elcf->mfa;
    p->flags = ctx->private ? NGX_ESP_MFA_PRIVATE : 0;
    p->expires = ngx_time() + elcf->mfa_timeout;
    p->domain = elcf->domain->name;
    p->user = ctx->lr.logon_name;
    p->url = ctx->return_url;

    if (RAND_bytes(p->id, NGX_ESP_MFA_ID_LEN) != 1
        || RAND_bytes(p->login, NGX_ESP_MFA_ID_LEN) != 1)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_esp_groups_fingerprint(r, elcf->permitted_groups, groups)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(p->groups, groups, NGX_ESP_GROUPS_LEN);

    if (ngx_esp_form_csrf(r, ctx, &token) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_esp_mfa_csrf_hash(&token, p->csrf);

    if (elcf->server_auth != NGX_ESP_SERVER_NONE) {
        p->password = ctx->password;

        if (ngx_esp_mfa_password(r, p, 1, &p->password) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (ngx_esp_mfa_ready(r, elcf, mctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    mctx->mr.key = ctx->key;
    mctx->mr.password = ctx->password;
    mctx->mr.lr = &ctx->lr;

    ctx->mfa = mctx;

    mctx->mr.result = mctx->method->start(&mctx->mr);

    return ngx_esp_mfa_outcome(r, elcf, ctx, mctx);
}


/*
 * A post to /_esp/login with the second step's fields: the pending
 * state opens, is this browser's, has not expired and was not used; the
 * login then goes on in its return URL's location (ngx_esp_mfa_access()).
 */

ngx_int_t
ngx_esp_mfa_post(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx)
{
    u_char               *pos, *last;
    u_char                csrf[NGX_ESP_MFA_CSRF_LEN];
    ngx_int_t             rc;
    ngx_str_t             body, name, value, url, raw[3], dec[3];
    ngx_str_t             pending, code, token, ids;
    ngx_uint_t            i, twice;
    const char           *reason;
    ngx_esp_mfa_ctx_t    *mctx;

    rc = ngx_esp_http_body(r, NGX_ESP_MFA_MAX_BODY, 0, &body, &reason);
    if (rc != NGX_OK) {
        return NGX_DECLINED;
    }

    if (ngx_esp_http_wipe_later(r->pool, body.data, body.len) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_null(&raw[0]);
    ngx_str_null(&raw[1]);
    ngx_str_null(&raw[2]);
    twice = 0;

    pos = body.data;
    last = pos + body.len;

    while (ngx_esp_http_form_pair(&pos, last, &name, &value)) {

        if (name.len == 3 && ngx_strncmp(name.data, "mfa", 3) == 0) {
            i = 0;

        } else if (name.len == 4 && ngx_strncmp(name.data, "code", 4) == 0) {
            i = 1;

        } else if (name.len == 4 && ngx_strncmp(name.data, "csrf", 4) == 0) {
            i = 2;

        } else {
            continue;
        }

        if (value.data == NULL) {
            value.data = name.data + name.len;
        }

        twice |= (raw[i].data != NULL);
        raw[i] = value;
    }

    if (raw[0].data == NULL) {
        /* a login form: its own parser judges it */
        return NGX_DECLINED;
    }

    if (twice) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "esp: second factor refused: a field appears twice");
        return NGX_HTTP_BAD_REQUEST;
    }

    for (i = 0; i < 3; i++) {

        if (raw[i].data == NULL) {
            /* a field not sent is empty */
            ngx_str_set(&raw[i], "");
        }

        rc = ngx_esp_http_form_decode(r->pool, &raw[i], &dec[i], 1, &reason);

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc != NGX_OK) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "esp: second factor refused: %s", reason);
            return NGX_HTTP_BAD_REQUEST;
        }
    }

    pending = dec[0];
    code = dec[1];
    token = dec[2];

    /* the buffers it came from are wiped too */

    (void) ngx_esp_http_body(r, NGX_ESP_MFA_MAX_BODY, 1, &body, &reason);

    if (code.len > NGX_ESP_MFA_MAX_CODE) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "esp: second factor refused: a code of %uz bytes",
                      code.len);
        return NGX_HTTP_BAD_REQUEST;
    }

    url = elcf->default_url;

    if (!ngx_esp_form_token_ok(r, &token, "second factor")) {
        return ngx_esp_form_again(r, elcf, ctx, &url);
    }

    mctx = ngx_pcalloc(r->pool, sizeof(ngx_esp_mfa_ctx_t));
    if (mctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    mctx->mr.request = r;
    mctx->mr.pool = r->pool;
    mctx->mr.log = r->connection->log;

    rc = ngx_esp_mfa_open(r, &pending, &mctx->pending);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc != NGX_OK) {
        return ngx_esp_form_again(r, elcf, ctx, &url);
    }

    url = mctx->pending.url;

    if (mctx->pending.expires <= ngx_time()) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "esp: second factor refused: user \"%V\" took too "
                      "long (esp_mfa_timeout)",
                      ngx_esp_log_escape(r->pool, &mctx->pending.user));
        return ngx_esp_form_again(r, elcf, ctx, &url);
    }

    ngx_esp_mfa_csrf_hash(&token, csrf);

    if (CRYPTO_memcmp(csrf, mctx->pending.csrf, NGX_ESP_MFA_CSRF_LEN) != 0) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "esp: second factor refused: the pending login of "
                      "user \"%V\" came with another browser's form token",
                      ngx_esp_log_escape(r->pool, &mctx->pending.user));
        return ngx_esp_form_again(r, elcf, ctx, &url);
    }

    ids.data = mctx->pending.id;
    ids.len = NGX_ESP_MFA_ID_LEN;

    rc = ngx_esp_mfa_once(&mctx->mr, NGX_ESP_MFA_ONCE, &ids, 1,
                          mctx->pending.expires);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "esp: second factor refused: the pending login of "
                      "user \"%V\" was used already",
                      ngx_esp_log_escape(r->pool, &mctx->pending.user));
        return ngx_esp_form_again(r, elcf, ctx, &url);
    }

    mctx->mr.code = code;
    mctx->mr.state = mctx->pending.state;

    ctx->mfa = mctx;
    ctx->user = mctx->pending.user;
    ctx->return_url = url;
    ctx->private = (mctx->pending.flags & NGX_ESP_MFA_PRIVATE) ? 1 : 0;
    ctx->state = NGX_ESP_STATE_FORM_LOGIN;

    rc = ngx_esp_continue_at(r, elcf, &ctx->return_url, 1);

    if (rc == NGX_DECLINED) {
        return NGX_HTTP_BAD_REQUEST;
    }

    return rc;
}


/* the code, in its return URL's location */

ngx_int_t
ngx_esp_mfa_access(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx)
{
    u_char                 groups[NGX_ESP_GROUPS_LEN];
    ngx_int_t              rc;
    ngx_esp_mfa_ctx_t     *mctx;
    ngx_esp_mfa_pending_t *p;

    mctx = ctx->mfa;

    switch (mctx->phase) {

    case NGX_ESP_MFA_WAITING:
        return NGX_AGAIN;

    case NGX_ESP_MFA_DECIDED:
        mctx->phase = NGX_ESP_MFA_CHECK;
        return ngx_esp_mfa_outcome(r, elcf, ctx, mctx);

    case NGX_ESP_MFA_SLOT:

        if (ngx_esp_lockout_waiting(mctx->lockout)) {
            return NGX_AGAIN;
        }

        return ngx_esp_mfa_check(r, elcf, ctx, mctx);

    default: /* NGX_ESP_MFA_CHECK */
        break;
    }

    p = &mctx->pending;

    if (p->domain.len != elcf->domain->name.len
        || ngx_strncmp(p->domain.data, elcf->domain->name.data,
                       p->domain.len) != 0
        || p->method != elcf->mfa
        || ngx_esp_mfa_methods[p->method] == NULL)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "esp: second factor refused: \"%V\" does not ask "
                      "for the pending login's domain and method",
                      ngx_esp_log_escape(r->pool, &r->uri));
        return NGX_HTTP_FORBIDDEN;
    }

    /* the password was checked against this location's groups */

    if (ngx_esp_groups_fingerprint(r, elcf->permitted_groups, groups)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (CRYPTO_memcmp(groups, p->groups, NGX_ESP_GROUPS_LEN) != 0) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "esp: second factor refused: \"%V\" asks for other "
                      "groups than the password was checked against",
                      ngx_esp_log_escape(r->pool, &r->uri));
        return ngx_esp_form_again(r, elcf, ctx, &p->url);
    }

    rc = ngx_esp_user_key(r, elcf->domain, &p->user, &mctx->mr.key);
    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_esp_mfa_ready(r, elcf, mctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_esp_mfa_check(r, elcf, ctx, mctx);
}


/* the method's request, in this location, and its end with the request */

static ngx_int_t
ngx_esp_mfa_ready(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_mfa_ctx_t *mctx)
{
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_esp_mfa_cleanup;
    cln->data = mctx;

    mctx->method = ngx_esp_mfa_methods[mctx->pending.method];
    mctx->mr.request = r;
    mctx->mr.elcf = elcf;
    mctx->mr.domain = elcf->domain;
    mctx->mr.user = mctx->pending.user;
    mctx->mr.pool = r->pool;
    mctx->mr.log = r->connection->log;
    mctx->mr.done = ngx_esp_mfa_done;

    return NGX_OK;
}


/* the lockout's slot, then the method's verdict on the code */

static ngx_int_t
ngx_esp_mfa_check(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx, ngx_esp_mfa_ctx_t *mctx)
{
    ngx_int_t  rc;

    rc = ngx_esp_lockout_begin_mfa(r, elcf->domain, &mctx->mr.key,
                                   &mctx->lockout);

    switch (rc) {

    case NGX_OK:
        break;

    case NGX_AGAIN:
        mctx->phase = NGX_ESP_MFA_SLOT;
        r->read_event_handler = ngx_http_test_reading;
        return NGX_AGAIN;

    case NGX_BUSY:
        ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                      "esp: second factor refused: user \"%V\" is blocked "
                      "client=%V domain=%V",
                      ngx_esp_log_escape(r->pool, &mctx->mr.user),
                      &r->connection->addr_text, &elcf->domain->name);
        mctx->lockout = NULL;
        return ngx_esp_mfa_page(r, elcf, ctx, mctx, NGX_HTTP_FORBIDDEN, 0,
                                NGX_ESP_MFA_X_BLOCKED);

    default:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    mctx->phase = NGX_ESP_MFA_CHECK;
    mctx->start = 0;
    mctx->mr.result = mctx->method->verify(&mctx->mr);

    return ngx_esp_mfa_outcome(r, elcf, ctx, mctx);
}


/* what the method said, from start or verify, at once or later */

static ngx_int_t
ngx_esp_mfa_outcome(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx, ngx_esp_mfa_ctx_t *mctx)
{
    ngx_esp_mfa_req_t     *mr;
    ngx_esp_auth_result_e  result;

    mr = &mctx->mr;

    if (mr->result == NGX_ESP_MFA_WAIT) {
        mctx->phase = NGX_ESP_MFA_WAITING;
        mctx->running = 1;

        /* the access phase runs again when the method calls done */
        ctx->state = NGX_ESP_STATE_FORM_LOGIN;
        r->read_event_handler = ngx_http_test_reading;

        return NGX_AGAIN;
    }

    /* the lockout hears a verdict on a code; the rest is not counted */

    switch (mr->result) {
    case NGX_ESP_MFA_ACCEPT:
        result = NGX_ESP_AUTH_OK;
        break;
    case NGX_ESP_MFA_REJECT:
        result = mctx->start ? NGX_ESP_AUTH_ERROR
                             : NGX_ESP_AUTH_BAD_CREDENTIALS;
        break;
    default:
        result = NGX_ESP_AUTH_ERROR;
        break;
    }

    ngx_esp_lockout_end(r, mctx->lockout, result, NULL);

    /* a later call of this request asks afresh */
    mctx->lockout = NULL;

    switch (mr->result) {

    case NGX_ESP_MFA_ACCEPT:
        return ngx_esp_mfa_accepted(r, elcf, ctx, mctx);

    case NGX_ESP_MFA_CHALLENGE:
        return ngx_esp_mfa_page(r, elcf, ctx, mctx, NGX_HTTP_OK, 1,
                                mr->text);

    case NGX_ESP_MFA_REJECT:

        ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                      "esp: second factor failed user=\"%V\" client=%V "
                      "domain=%V method=%s",
                      ngx_esp_log_escape(r->pool, &mr->user),
                      &r->connection->addr_text, &elcf->domain->name,
                      mctx->method->name);

        if (mctx->start) {
            /* refused whatever the code: the login ends */
            return ngx_esp_mfa_page(r, elcf, ctx, mctx, NGX_HTTP_FORBIDDEN,
                                    0, mr->text);
        }

        /* another try, with a new pending state and the method's state */
        return ngx_esp_mfa_page(r, elcf, ctx, mctx, NGX_HTTP_OK, 1,
                                mr->text ? mr->text
                                         : NGX_ESP_MFA_T_WRONG_CODE);

    default: /* NGX_ESP_MFA_ERROR */
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "esp: second factor unavailable user=\"%V\" "
                      "domain=%V method=%s",
                      ngx_esp_log_escape(r->pool, &mr->user),
                      &elcf->domain->name, mctx->method->name);
        return ngx_esp_mfa_page(r, elcf, ctx, mctx,
                                NGX_HTTP_SERVICE_UNAVAILABLE, 0,
                                NGX_ESP_MFA_X_UNAVAILABLE);
    }
}


/* both factors passed: the session, as a login without one would get */

static ngx_int_t
ngx_esp_mfa_accepted(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx, ngx_esp_mfa_ctx_t *mctx)
{
    ngx_str_t               password;
    ngx_esp_mfa_pending_t  *p;

    p = &mctx->pending;

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "esp: second factor ok user=\"%V\" client=%V domain=%V "
                  "method=%s", ngx_esp_log_escape(r->pool, &mctx->mr.user),
                  &r->connection->addr_text, &elcf->domain->name,
                  mctx->method->name);

    if (!mctx->start) {
        /* the password step's context, from the pending state */

        ngx_str_null(&password);

        if (p->password.len
            && ngx_esp_mfa_password(r, p, 0, &password) != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "esp: the pending login of user \"%V\" carries a "
                          "password that does not open: sign in again",
                          ngx_esp_log_escape(r->pool, &p->user));
            return ngx_esp_form_again(r, elcf, ctx, &p->url);
        }

        if (elcf->server_auth != NGX_ESP_SERVER_NONE && password.len == 0) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "esp: the pending login of user \"%V\" carries no "
                          "password for esp_server_auth: sign in again",
                          ngx_esp_log_escape(r->pool, &p->user));
            return ngx_esp_form_again(r, elcf, ctx, &p->url);
        }

        ctx->password = password;
        ctx->lr.logon_name = p->user;
        ctx->key = mctx->mr.key;
        ctx->user = p->user;
    }

    ctx->mfa = NULL;
    ctx->state = NGX_ESP_STATE_DONE;
    ctx->result = NGX_ESP_AUTH_OK;
    ctx->authenticated = 1;

    if (ngx_esp_auth_checked(r, elcf, ctx, NULL) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_esp_form_session_start(r, elcf, ctx);
}


/* an asynchronous method has answered: the access phase runs again */

static void
ngx_esp_mfa_done(ngx_esp_mfa_req_t *mr)
{
    ngx_connection_t    *c;
    ngx_esp_mfa_ctx_t   *mctx;
    ngx_http_request_t  *r;

    mctx = (ngx_esp_mfa_ctx_t *) mr;
    r = mr->request;
    c = r->connection;

    if (!mctx->running) {
        return;
    }

    mctx->running = 0;
    mctx->phase = NGX_ESP_MFA_DECIDED;

    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = ngx_http_core_run_phases;

    ngx_http_core_run_phases(r);
    ngx_http_run_posted_requests(c);
}


static void
ngx_esp_mfa_cleanup(void *data)
{
    ngx_esp_mfa_ctx_t  *mctx = data;

    if (mctx->running) {
        mctx->running = 0;

        if (mctx->method->abort) {
            mctx->method->abort(&mctx->mr);
        }
    }
}


ngx_array_t *
ngx_esp_mfa_attrs(ngx_esp_loc_conf_t *elcf)
{
    ngx_esp_mfa_method_t  *m;

    m = ngx_esp_mfa_methods[elcf->mfa];

    return (m && m->attrs) ? m->attrs(elcf->domain) : NULL;
}


ngx_int_t
ngx_esp_mfa_once(ngx_esp_mfa_req_t *mr, const char *label,
    ngx_str_t *fields, ngx_uint_t n, time_t expires)
{
    u_char                key[NGX_ESP_SHM_KEY_LEN];
    ngx_int_t             rc;
    ngx_esp_main_conf_t  *emcf;

    emcf = ngx_http_get_module_main_conf(mr->request, ngx_exchange_esp_module);

    if (emcf->shm_zone == NULL) {
        /* ngx_esp_mfa_conf() requires the zone */
        return NGX_ERROR;
    }

    rc = ngx_esp_shm_once(emcf->shm_zone, label, fields, n, expires, key);

    if (rc == NGX_OK) {
        /* with esp_cluster, used on one node is used on every node */
        ngx_esp_cluster_revoke_key(key, expires);
    }

    return rc;
}


/*
 * The page of the second step: with "form", the code field and a new
 * pending state (and for an enrolment the QR code and the key); without,
 * a message and the way back to the login form.
 */

static ngx_int_t
ngx_esp_mfa_page(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx, ngx_esp_mfa_ctx_t *mctx, ngx_uint_t status,
    ngx_uint_t form, ngx_uint_t text)
{
    u_char                 *u;
    ngx_str_t               body, token, pending, qr, lang, again, msg;
    ngx_str_t               empty = ngx_null_string;
    ngx_uint_t              n, de, enrol;
    ngx_esp_var_t           vars[NGX_ESP_MFA_MAX_VARS];
    ngx_esp_mfa_req_t      *mr;
    ngx_esp_mfa_pending_t  *p;

    mr = &mctx->mr;
    p = &mctx->pending;
    de = ngx_esp_is_german(r, elcf);
    ctx->de = de;
    enrol = form && mr->enrol;

    ngx_str_null(&pending);
    ngx_str_null(&token);
    ngx_str_null(&qr);

    /* the login ends here, whatever this page says */
    ctx->mfa = NULL;

    if (form) {
        if (ngx_esp_form_csrf(r, ctx, &token) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        /* a new pending state: the one posted was used */

        if (RAND_bytes(p->id, NGX_ESP_MFA_ID_LEN) != 1) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_esp_mfa_csrf_hash(&token, p->csrf);

        if (mr->state.len > NGX_ESP_MFA_MAX_STATE) {
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "esp: second factor: a state of %uz bytes",
                          mr->state.len);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p->state = mr->state;

        if (ngx_esp_mfa_seal(r, p, &pending) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (enrol && ngx_esp_qr_svg(r->pool, &mr->enrol_uri, &qr) != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "esp: could not make the enrolment's QR code");
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    /* the way back: the login form for the same return URL */

    again.len = sizeof(NGX_ESP_LOGIN_PATH "?url=") - 1
                + p->url.len + 2 * ngx_escape_uri(NULL, p->url.data,
                                                  p->url.len,
                                                  NGX_ESCAPE_ARGS);
    again.data = ngx_pnalloc(r->pool, again.len);
    if (again.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    u = ngx_cpymem(again.data, NGX_ESP_LOGIN_PATH "?url=",
                   sizeof(NGX_ESP_LOGIN_PATH "?url=") - 1);
    u = (u_char *) ngx_escape_uri(u, p->url.data, p->url.len,
                                  NGX_ESCAPE_ARGS);
    again.len = u - again.data;

    if (de) {
        ngx_str_set(&lang, "de");

    } else {
        ngx_str_set(&lang, "en");
    }

    if (mr->message.len && text < NGX_ESP_MFA_X_HEADING) {
        /* a server's words (a Reply-Message) before ours */
        msg = mr->message;

    } else if (text) {
        msg.data = (u_char *) ngx_esp_mfa_text(de, text);
        msg.len = ngx_strlen(msg.data);

    } else {
        msg = empty;
    }

    n = 0;

#define ngx_esp_mfa_var(nm, val, rw)                                          \
    ngx_str_set(&vars[n].name, nm);                                           \
    vars[n].value = val;                                                      \
    vars[n].raw = rw;                                                         \
    n++

#define ngx_esp_mfa_var_text(nm, t)                                           \
    ngx_str_set(&vars[n].name, nm);                                           \
    vars[n].value.data = (u_char *) ngx_esp_mfa_text(de, t);                  \
    vars[n].value.len = ngx_strlen(vars[n].value.data);                       \
    vars[n].raw = 0;                                                          \
    n++

    ngx_esp_mfa_var("lang", lang, 0);
    ngx_esp_mfa_var("title", elcf->title, 0);
    ngx_esp_mfa_var("t_user", p->user, 0);
    ngx_esp_mfa_var("action", empty, 0);
    ngx_str_set(&vars[n - 1].value, NGX_ESP_LOGIN_PATH);
    ngx_esp_mfa_var("pending", pending, 0);
    ngx_esp_mfa_var("csrf", token, 0);
    ngx_esp_mfa_var("message", msg, 0);
    ngx_esp_mfa_var("message_class", empty, 0);

    if (msg.len == 0) {
        ngx_str_set(&vars[n - 1].value, "msg hidden");

    } else {
        ngx_str_set(&vars[n - 1].value, "msg");
    }

    ngx_esp_mfa_var("form_class", empty, 0);
    if (!form) {
        ngx_str_set(&vars[n - 1].value, "hidden");
    }

    ngx_esp_mfa_var("enrol_class", empty, 0);
    if (!enrol) {
        ngx_str_set(&vars[n - 1].value, "hidden");
    }

    ngx_esp_mfa_var("again_class", empty, 0);
    if (form) {
        ngx_str_set(&vars[n - 1].value, "hidden");
    }

    ngx_esp_mfa_var("qr", qr, 1);
    ngx_esp_mfa_var("secret", enrol ? mr->enrol_secret : empty, 0);
    ngx_esp_mfa_var("again_url", again, 0);
    ngx_esp_mfa_var_text("t_heading", enrol ? NGX_ESP_MFA_X_ENROL_HEADING
                                            : NGX_ESP_MFA_X_HEADING);
    ngx_esp_mfa_var_text("t_enrol", NGX_ESP_MFA_X_ENROL);
    ngx_esp_mfa_var_text("t_secret", NGX_ESP_MFA_X_SECRET);
    ngx_esp_mfa_var_text("t_code", NGX_ESP_MFA_X_CODE);
    ngx_esp_mfa_var_text("t_code_hint",
                         mctx->method == &ngx_esp_radius_method
                         ? NGX_ESP_MFA_T_RADIUS_HINT
                         : NGX_ESP_MFA_X_CODE_HINT);
    ngx_esp_mfa_var_text("t_submit", NGX_ESP_MFA_X_SUBMIT);
    ngx_esp_mfa_var_text("t_again", NGX_ESP_MFA_X_AGAIN);
    ngx_esp_mfa_var_text("t_footer", NGX_ESP_MFA_X_FOOTER);

#undef ngx_esp_mfa_var
#undef ngx_esp_mfa_var_text

    if (ngx_esp_form_render_mfa(r, vars, n, &body) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (enrol && ngx_esp_http_wipe_later(r->pool, body.data, body.len)
                 != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->state = NGX_ESP_STATE_DONE;

    return ngx_esp_form_send(r, status, &body);
}


static ngx_int_t
ngx_esp_mfa_seal(ngx_http_request_t *r, ngx_esp_mfa_pending_t *p,
    ngx_str_t *out)
{
    u_char               *q;
    size_t                len;
    ngx_str_t             plain, sealed, aad;
    ngx_uint_t            i;
    ngx_esp_main_conf_t  *emcf;

    emcf = ngx_http_get_module_main_conf(r, ngx_exchange_esp_module);

    if (p->domain.len > 255 || p->user.len > 0xffff || p->url.len > 0xffff
        || p->password.len > 0xffff || p->state.len > 0xffff)
    {
        return NGX_ERROR;
    }

    len = NGX_ESP_MFA_FIXED_LEN + 1 + p->domain.len + 2 + p->user.len
          + 2 + p->url.len + 2 + p->password.len + 2 + p->state.len;

    plain.data = ngx_pnalloc(r->pool, len);
    if (plain.data == NULL
        || ngx_esp_http_wipe_later(r->pool, plain.data, len) != NGX_OK)
    {
        return NGX_ERROR;
    }

    q = plain.data;
    *q++ = NGX_ESP_MFA_VERSION;
    *q++ = (u_char) p->method;
    *q++ = (u_char) p->flags;

    for (i = 0; i < 8; i++) {
        *q++ = (u_char) ((uint64_t) p->expires >> (56 - 8 * i));
    }

    q = ngx_cpymem(q, p->id, NGX_ESP_MFA_ID_LEN);
    q = ngx_cpymem(q, p->login, NGX_ESP_MFA_ID_LEN);
    q = ngx_cpymem(q, p->groups, NGX_ESP_GROUPS_LEN);
    q = ngx_cpymem(q, p->csrf, NGX_ESP_MFA_CSRF_LEN);

    *q++ = (u_char) p->domain.len;
    q = ngx_cpymem(q, p->domain.data, p->domain.len);

#define ngx_esp_mfa_put(s)                                                    \
    *q++ = (u_char) ((s).len >> 8);                                           \
    *q++ = (u_char) (s).len;                                                  \
    if ((s).len) {                                                            \
        q = ngx_cpymem(q, (s).data, (s).len);                                 \
    }

    ngx_esp_mfa_put(p->user);
    ngx_esp_mfa_put(p->url);
    ngx_esp_mfa_put(p->password);
    ngx_esp_mfa_put(p->state);

#undef ngx_esp_mfa_put

    plain.len = q - plain.data;

    ngx_str_set(&aad, NGX_ESP_MFA_AAD);

    if (ngx_esp_seal_value(r->pool, emcf->keys, &aad, &plain, &sealed)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    out->data = ngx_pnalloc(r->pool, ngx_base64_encoded_length(sealed.len));
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    ngx_encode_base64url(out, &sealed);

    return NGX_OK;
}


/* NGX_OK, NGX_DECLINED (logged: not one of ours), NGX_ERROR */

static ngx_int_t
ngx_esp_mfa_open(ngx_http_request_t *r, ngx_str_t *in,
    ngx_esp_mfa_pending_t *p)
{
    u_char               *q, *last;
    size_t                n;
    uint64_t              t;
    ngx_int_t             rc;
    ngx_str_t             sealed, plain, aad, *f[4];
    ngx_uint_t            i;
    const char           *reason;
    ngx_esp_main_conf_t  *emcf;

    emcf = ngx_http_get_module_main_conf(r, ngx_exchange_esp_module);

    reason = "bad length";

    if (in->len == 0 || in->len > NGX_ESP_MFA_MAX_PENDING) {
        goto refused;
    }

    sealed.data = ngx_pnalloc(r->pool, ngx_base64_decoded_length(in->len));
    if (sealed.data == NULL) {
        return NGX_ERROR;
    }

    reason = "not base64url";

    if (ngx_decode_base64url(&sealed, in) != NGX_OK) {
        goto refused;
    }

    ngx_str_set(&aad, NGX_ESP_MFA_AAD);

    rc = ngx_esp_open_value(r->pool, emcf->keys, &aad, &sealed, &plain);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    reason = "does not authenticate";

    if (rc != NGX_OK) {
        goto refused;
    }

    reason = "malformed";

    q = plain.data;
    last = q + plain.len;

    if (plain.len < NGX_ESP_MFA_FIXED_LEN + 1 + 8
        || q[0] != NGX_ESP_MFA_VERSION || q[1] >= NGX_ESP_MFA_METHODS)
    {
        goto refused;
    }

    p->method = q[1];
    p->flags = q[2];
    q += 3;

    t = 0;
    for (i = 0; i < 8; i++) {
        t = (t << 8) | *q++;
    }

    p->expires = (time_t) t;

    ngx_memcpy(p->id, q, NGX_ESP_MFA_ID_LEN);
    q += NGX_ESP_MFA_ID_LEN;
    ngx_memcpy(p->login, q, NGX_ESP_MFA_ID_LEN);
    q += NGX_ESP_MFA_ID_LEN;
    ngx_memcpy(p->groups, q, NGX_ESP_GROUPS_LEN);
    q += NGX_ESP_GROUPS_LEN;
    ngx_memcpy(p->csrf, q, NGX_ESP_MFA_CSRF_LEN);
    q += NGX_ESP_MFA_CSRF_LEN;

    n = *q++;
    if ((size_t) (last - q) < n) {
        goto refused;
    }

    p->domain.data = q;
    p->domain.len = n;
    q += n;

    f[0] = &p->user;
    f[1] = &p->url;
    f[2] = &p->password;
    f[3] = &p->state;

    for (i = 0; i < 4; i++) {
        if (last - q < 2) {
            goto refused;
        }

        n = (q[0] << 8) | q[1];
        q += 2;

        if ((size_t) (last - q) < n) {
            goto refused;
        }

        f[i]->data = q;
        f[i]->len = n;
        q += n;
    }

    if (q != last || p->user.len == 0 || p->url.len == 0) {
        goto refused;
    }

    return NGX_OK;

refused:

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "esp: second factor refused: the pending login %s",
                  reason);

    return NGX_DECLINED;
}


static void
ngx_esp_mfa_csrf_hash(ngx_str_t *token, u_char *out)
{
    u_char  md[SHA256_DIGEST_LENGTH];

    SHA256(token->data, token->len, md);
    ngx_memcpy(out, md, NGX_ESP_MFA_CSRF_LEN);
}


/*
 * The password in the pending state, sealed (seal) or opened again under
 * esp_password_key, as a session's is: the key of the login's id.
 */

static ngx_int_t
ngx_esp_mfa_password(ngx_http_request_t *r, ngx_esp_mfa_pending_t *p,
    ngx_uint_t seal, ngx_str_t *password)
{
    ngx_int_t             rc;
    const char           *reason;
    ngx_esp_session_t     s;
    ngx_esp_main_conf_t  *emcf;

    emcf = ngx_http_get_module_main_conf(r, ngx_exchange_esp_module);

    ngx_memzero(&s, sizeof(ngx_esp_session_t));
    ngx_memcpy(s.id, p->login, NGX_ESP_MFA_ID_LEN);
    s.domain = p->domain;
    s.user = p->user;

    if (seal) {
        if (ngx_esp_session_seal_password(r->pool, emcf->password_keys, &s,
                                          password)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        *password = s.sealed_password;
        return NGX_OK;
    }

    s.sealed_password = p->password;

    rc = ngx_esp_session_open_password(r->pool, emcf->password_keys, &s,
                                       password, &reason);

    return (rc == NGX_OK) ? NGX_OK : NGX_ERROR;
}


static char *
ngx_esp_mfa_text(ngx_uint_t de, ngx_uint_t id)
{
    ngx_esp_mfa_text_t  *t;

    for (t = ngx_esp_mfa_texts; t->en; t++) {
        if (t->id == id) {
            return de ? t->de : t->en;
        }
    }

    return "";
}


/*
 * Per location, after the merge: the method exists and its domain has
 * what it needs; a second factor needs the shared zone (pending states
 * and codes used once); Basic and delegate clients cannot do one.
 */

ngx_int_t
ngx_esp_mfa_conf(ngx_conf_t *cf, ngx_esp_loc_conf_t *conf)
{
    ngx_esp_main_conf_t   *emcf;
    ngx_esp_mfa_method_t  *m;

    if (conf->mfa == NGX_ESP_MFA_OFF || conf->domain == NULL) {
        return NGX_OK;
    }

    if (conf->client_auth != NGX_ESP_CLIENT_FORM) {
        if (conf->mfa_file) {
            ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                          "\"esp_mfa\" in %s:%ui has no effect where "
                          "\"esp_client_auth\" is %s: Basic and delegate "
                          "clients (ActiveSync, Outlook) cannot do a second "
                          "factor", conf->mfa_file, conf->mfa_line,
                          conf->client_auth == NGX_ESP_CLIENT_BASIC
                          ? "basic" : "delegate");
        }

        conf->mfa = NGX_ESP_MFA_OFF;
        return NGX_OK;
    }

    m = ngx_esp_mfa_methods[conf->mfa];

    if (m == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"esp_mfa %s\" is not in this build",
                      ngx_esp_mfa_kinds[conf->mfa].name.data);
        return NGX_ERROR;
    }

    emcf = ngx_http_conf_get_module_main_conf(cf, ngx_exchange_esp_module);

    if (emcf->shm_zone == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"esp_mfa\" needs \"esp_shared_zone\": a pending "
                      "login and a code are good once");
        return NGX_ERROR;
    }

    if (m->init && m->init(cf, conf->domain, conf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (conf->server_auth != NGX_ESP_SERVER_NONE
        && emcf->password_keys == NULL)
    {
        ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                      "\"esp_password_key\" is not set: the password in a "
                      "second factor's pending login is sealed with a key "
                      "drawn at start, so a login under way needs a new "
                      "start after a reload and on every other node");

        if (ngx_esp_session_random_key(cf, &emcf->password_keys) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* esp_mfa off | totp | radius: where it was set, for the warning */

char *
ngx_esp_mfa_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_esp_loc_conf_t  *elcf = conf;

    char  *rv;

    rv = ngx_conf_set_enum_slot(cf, cmd, conf);

    if (rv == NGX_CONF_OK) {
        elcf->mfa_file = cf->conf_file->file.name.data;
        elcf->mfa_line = cf->conf_file->line;
    }

    return rv;
}
