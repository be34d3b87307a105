
/*
 * Copyright (C) ngx_exchange_esp authors
 */


/*
 * A password change at the gate.  AD treats a modify of unicodePwd that
 * deletes the old value and adds the new one (each the password in
 * double quotes, UTF-16LE) as a CHANGE: it checks the old password,
 * applies the domain's policy (length, complexity, history, minimum
 * age) and needs only the User-Change-Password right, which Everyone
 * has.  The user binds and changes their own password; a user who cannot
 * bind (expired, 532; must change, 773) has it changed over the service
 * account's connection, and AD then checks the old password in the
 * modify itself ("00000056: ... old password ... doesn't match", counted
 * in badPwdCount as a wrong bind is).  Samba behaves the same.
 *
 * The expiry warning: a form login of a domain with
 * "password_expiry_warning" reads msDS-UserPasswordExpiryTimeComputed
 * (AD's own answer to "when", with fine-grained policies) after the
 * bind; within the window the new session's first page is an
 * interstitial: change it now, or later (on to the return URL).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_esp_auth.h"
#include "ngx_esp_form.h"
#include "ngx_esp_http.h"
#include "ngx_esp_log.h"
#include "ngx_esp_mfa.h"
#include "ngx_esp_password.h"
#include "ngx_esp_refusal.h"


typedef enum {
    NGX_ESP_PW_NONE = 0,
    NGX_ESP_PW_HEADING,
    NGX_ESP_PW_TEXT,
    NGX_ESP_PW_USERNAME,
    NGX_ESP_PW_OLD,
    NGX_ESP_PW_NEW,
    NGX_ESP_PW_NEW2,
    NGX_ESP_PW_SUBMIT,
    NGX_ESP_PW_BACK,
    NGX_ESP_PW_FOOTER,
    NGX_ESP_PW_LINK,

    NGX_ESP_PW_MSG_MUST_CHANGE,
    NGX_ESP_PW_MSG_EMPTY,
    NGX_ESP_PW_MSG_MISMATCH,
    NGX_ESP_PW_MSG_SAME,
    NGX_ESP_PW_MSG_BAD_OLD,
    NGX_ESP_PW_MSG_POLICY,
    NGX_ESP_PW_MSG_TOO_SHORT,
    NGX_ESP_PW_MSG_COMPLEXITY,
    NGX_ESP_PW_MSG_HISTORY,
    NGX_ESP_PW_MSG_TOO_YOUNG,
    NGX_ESP_PW_MSG_FORM_EXPIRED,
    NGX_ESP_PW_MSG_BLOCKED,
    NGX_ESP_PW_MSG_LOCKED,
    NGX_ESP_PW_MSG_REFUSED,
    NGX_ESP_PW_MSG_UNAVAILABLE,

    NGX_ESP_PW_EXPIRY_HEADING,
    NGX_ESP_PW_EXPIRY_DAYS,
    NGX_ESP_PW_EXPIRY_DAY,
    NGX_ESP_PW_EXPIRY_CHANGE,
    NGX_ESP_PW_EXPIRY_LATER,

    NGX_ESP_PW_TEXTS
} ngx_esp_pw_text_e;


typedef struct {
    ngx_str_t                  username;
    ngx_str_t                  old;
    ngx_str_t                  new1;
    ngx_str_t                  new2;
    ngx_str_t                  url;
    ngx_str_t                  csrf;
} ngx_esp_pw_form_t;


/* a page's {{name}}: a value, or a text in the page's language */
#define ngx_esp_pw_var(nm, val)                                               \
    ngx_str_set(&vars[n].name, nm);                                           \
    vars[n].value = val;                                                      \
    vars[n].raw = 0;                                                          \
    n++

#define ngx_esp_pw_var_text(nm, t)                                            \
    ngx_str_set(&vars[n].name, nm);                                           \
    vars[n].value.data = (u_char *) ngx_esp_pw_text(de, t);                   \
    vars[n].value.len = ngx_strlen(vars[n].value.data);                       \
    vars[n].raw = 0;                                                          \
    n++

static ngx_int_t ngx_esp_password_post(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);
static ngx_int_t ngx_esp_password_parse(ngx_http_request_t *r,
    ngx_esp_pw_form_t *f, const char **reason);
static ngx_int_t ngx_esp_password_done(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);
static ngx_int_t ngx_esp_password_page(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx, ngx_esp_pw_text_e msg,
    ngx_str_t *url, ngx_str_t *user);
static ngx_int_t ngx_esp_password_value(ngx_http_request_t *r,
    ngx_str_t *password, ngx_str_t *out);
static ngx_esp_pw_text_e ngx_esp_password_rule(ngx_str_t *diag);
static char *ngx_esp_pw_text(ngx_uint_t de, ngx_esp_pw_text_e t);


static struct {
    char                      *en;
    char                      *de;
} ngx_esp_pw_texts[NGX_ESP_PW_TEXTS] = {

    { "", "" },
    { "Change password", "Kennwort \xc3\xa4ndern" },
    { "Enter your current password and choose a new one.",
      "Geben Sie Ihr aktuelles Kennwort ein und w\xc3\xa4hlen Sie ein "
      "neues." },
    { "User name", "Benutzername" },
    { "Current password", "Aktuelles Kennwort" },
    { "New password", "Neues Kennwort" },
    { "Confirm new password", "Neues Kennwort best\xc3\xa4tigen" },
    { "Change password", "Kennwort \xc3\xa4ndern" },
    { "Back to sign-in", "Zur\xc3\xbc" "ck zur Anmeldung" },
    { "For authorised users only. Attempts are logged.",
      "Nur f\xc3\xbcr berechtigte Benutzer. Versuche werden protokolliert." },
    { "Change password", "Kennwort \xc3\xa4ndern" },

    { "Your password has expired or must be changed. Please choose a new "
      "one.",
      "Ihr Kennwort ist abgelaufen oder muss ge\xc3\xa4ndert werden. Bitte "
      "w\xc3\xa4hlen Sie ein neues." },
    { "Please fill in every field.", "Bitte f\xc3\xbcllen Sie alle Felder "
      "aus." },
    { "The two new passwords do not match.",
      "Die beiden neuen Kennw\xc3\xb6rter stimmen nicht \xc3\xbc"
      "berein." },
    { "The new password must differ from the current one.",
      "Das neue Kennwort muss sich vom aktuellen unterscheiden." },
    { "The user name or the current password is incorrect.",
      "Der Benutzername oder das aktuelle Kennwort ist falsch." },
    { "The new password does not meet the password rules: it may be too "
      "short or too simple (use upper and lower case letters, digits and "
      "symbols, and not your name), it may have been used before, or your "
      "password was changed too recently to change it again.",
      "Das neue Kennwort erf\xc3\xbcllt die Kennwortrichtlinien nicht: Es "
      "ist vielleicht zu kurz oder zu einfach (verwenden Sie Gro\xc3\x9f- "
      "und Kleinbuchstaben, Ziffern und Sonderzeichen und nicht Ihren "
      "Namen), wurde schon einmal verwendet, oder Ihr Kennwort wurde vor zu "
      "kurzer Zeit ge\xc3\xa4ndert." },
    { "The new password is too short.", "Das neue Kennwort ist zu kurz." },
    { "The new password is too simple: use at least three of upper case "
      "letters, lower case letters, digits and symbols, and not your name.",
      "Das neue Kennwort ist zu einfach: Verwenden Sie mindestens drei von "
      "Gro\xc3\x9f" "buchstaben, Kleinbuchstaben, Ziffern und "
      "Sonderzeichen, und nicht Ihren Namen." },
    { "The new password was used before. Please choose one you have not "
      "used yet.",
      "Das neue Kennwort wurde schon einmal verwendet. Bitte w\xc3\xa4hlen "
      "Sie eines, das Sie noch nicht verwendet haben." },
    { "Your password was changed too recently to change it again now. "
      "Please try again later.",
      "Ihr Kennwort wurde vor zu kurzer Zeit ge\xc3\xa4ndert, um es jetzt "
      "erneut zu \xc3\xa4ndern. Bitte versuchen Sie es sp\xc3\xa4ter." },
    { "The form has expired or was sent from another site. Please try "
      "again.",
      "Das Formular ist abgelaufen oder wurde von einer anderen Website "
      "gesendet. Bitte versuchen Sie es erneut." },
    { "Too many failed attempts. Please try again later.",
      "Zu viele fehlgeschlagene Versuche. Bitte versuchen Sie es "
      "sp\xc3\xa4ter erneut." },
    { "Your account is locked. Please try again later or contact your "
      "administrator.",
      "Ihr Konto ist gesperrt. Bitte versuchen Sie es sp\xc3\xa4ter erneut "
      "oder wenden Sie sich an Ihren Administrator." },
    { "Your password cannot be changed here. Please contact your "
      "administrator.",
      "Ihr Kennwort kann hier nicht ge\xc3\xa4ndert werden. Bitte wenden Sie "
      "sich an Ihren Administrator." },
    { "The service is temporarily unavailable. Please try again in a few "
      "minutes.",
      "Der Dienst ist vor\xc3\xbc" "bergehend nicht verf\xc3\xbc" "gbar. "
      "Bitte versuchen Sie es in einigen Minuten erneut." },

    { "Your password expires soon", "Ihr Kennwort l\xc3\xa4uft bald ab" },
    { "Your password expires in %T days.",
      "Ihr Kennwort l\xc3\xa4uft in %T Tagen ab." },
    { "Your password expires within a day.",
      "Ihr Kennwort l\xc3\xa4uft innerhalb eines Tages ab." },
    { "Change it now", "Jetzt \xc3\xa4ndern" },
    { "Later", "Sp\xc3\xa4ter" },
};


static ngx_str_t  ngx_esp_password_path = ngx_string(NGX_ESP_PASSWORD_PATH);
static ngx_str_t  ngx_esp_unicode_pwd = ngx_string("unicodePwd");
static ngx_str_t  ngx_esp_expiry_attr =
    ngx_string("msDS-UserPasswordExpiryTimeComputed");


ngx_int_t
ngx_esp_password_endpoint(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx)
{
    ngx_int_t  rc;
    ngx_str_t  url;

    if (r->uri.len != ngx_esp_password_path.len
        || ngx_strncasecmp(r->uri.data, ngx_esp_password_path.data,
                           r->uri.len)
           != 0)
    {
        return NGX_DECLINED;
    }

    if (!elcf->password_change) {
        return NGX_HTTP_NOT_FOUND;
    }

    if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {

        if (ngx_esp_arg_url(r, &url) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_esp_password_page(r, elcf, ctx, NGX_ESP_PW_NONE, &url,
                                     NULL);
    }

    if (r->method != NGX_HTTP_POST) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    if (ctx->state == NGX_ESP_STATE_BODY_READ) {
        return ngx_esp_password_post(r, elcf, ctx);
    }

    if (!ngx_esp_http_is_form(r)) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "esp: password change refused: not a form post");
        return NGX_HTTP_UNSUPPORTED_MEDIA_TYPE;
    }

    rc = ngx_esp_http_read_body(r, &ctx->body, NGX_ESP_MAX_LOGIN_BODY,
                                "password change", ngx_esp_form_body_handler);

    if (rc != NGX_DONE) {
        return rc;
    }

    ngx_http_finalize_request(r, NGX_DONE);
    return NGX_DONE;
}


/*
 * The form arrived.  What the directory makes of it is decided in the
 * location of its return URL, with that location's domain, as a login.
 */

static ngx_int_t
ngx_esp_password_post(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx)
{
    ngx_int_t           rc;
    const char         *reason;
    ngx_esp_pw_text_e   msg;
    ngx_esp_pw_form_t   f;

    ngx_memzero(&f, sizeof(ngx_esp_pw_form_t));

    rc = ngx_esp_password_parse(r, &f, &reason);

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "esp: password change refused: %s", reason);
        return rc;
    }

    if (f.url.len == 0 || !ngx_esp_valid_return_url(&f.url)) {
        f.url = elcf->default_url;
    }

    msg = NGX_ESP_PW_NONE;

    if (!ngx_esp_form_token_ok(r, &f.csrf, "password change")) {
        msg = NGX_ESP_PW_MSG_FORM_EXPIRED;

    } else if (f.username.len == 0 || f.old.len == 0 || f.new1.len == 0
               || f.new2.len == 0)
    {
        msg = NGX_ESP_PW_MSG_EMPTY;

    } else if (f.new1.len != f.new2.len
               || ngx_memcmp(f.new1.data, f.new2.data, f.new1.len) != 0)
    {
        msg = NGX_ESP_PW_MSG_MISMATCH;

    } else if (f.new1.len == f.old.len
               && ngx_memcmp(f.new1.data, f.old.data, f.old.len) == 0)
    {
        msg = NGX_ESP_PW_MSG_SAME;
    }

    if (msg != NGX_ESP_PW_NONE) {
        return ngx_esp_password_page(r, elcf, ctx, msg, &f.url, &f.username);
    }

    ctx->user = f.username;
    ctx->password = f.old;
    ctx->new_password = f.new1;
    ctx->return_url = f.url;
    ctx->private = 0;
    ctx->change = 1;
    ctx->lr.service = 0;

    return ngx_esp_form_continue(r, elcf, ctx);
}


/* the fields, as the login form's: each once, strict UTF-8, bounded */

static ngx_int_t
ngx_esp_password_parse(ngx_http_request_t *r, ngx_esp_pw_form_t *f,
    const char **reason)
{
    ngx_int_t  rc;

    static ngx_esp_form_field_t  fields[] = {
        { ngx_string("username"), offsetof(ngx_esp_pw_form_t, username) },
        { ngx_string("oldpassword"), offsetof(ngx_esp_pw_form_t, old) },
        { ngx_string("newpassword"), offsetof(ngx_esp_pw_form_t, new1) },
        { ngx_string("newpassword2"), offsetof(ngx_esp_pw_form_t, new2) },
        { ngx_string("url"), offsetof(ngx_esp_pw_form_t, url) },
        { ngx_string("csrf"), offsetof(ngx_esp_pw_form_t, csrf) },
        { ngx_null_string, 0 }
    };

    rc = ngx_esp_form_fields(r, f, fields, reason);
    if (rc != NGX_OK) {
        return rc;
    }

    if (f->username.len > NGX_ESP_MAX_USER
        || f->old.len > NGX_ESP_MAX_PASSWORD
        || f->new1.len > NGX_ESP_MAX_PASSWORD
        || f->new2.len > NGX_ESP_MAX_PASSWORD
        || f->url.len > NGX_ESP_MAX_URL)
    {
        *reason = "a field is too long";
        return NGX_HTTP_BAD_REQUEST;
    }

    return NGX_OK;
}


/*
 * In the return URL's location: one modify, delete the old value and add
 * the new one, bound as the user (lr->service 0) or, after a 532/773, as
 * the service account.
 */

ngx_int_t
ngx_esp_password_start(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx)
{
    ngx_str_t              *v;
    ngx_array_t            *changes;
    ngx_esp_ldap_change_t  *ch;

    if (elcf->client_auth != NGX_ESP_CLIENT_FORM || !elcf->password_change) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "esp: password change refused: \"%V\" offers none",
                      ngx_esp_log_escape(r->pool, &r->uri));
        return NGX_HTTP_FORBIDDEN;
    }

    changes = ngx_array_create(r->pool, 2, sizeof(ngx_esp_ldap_change_t));
    if (changes == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ch = ngx_array_push_n(changes, 2);
    if (ch == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ch[0].op = NGX_ESP_LDAP_MOD_DELETE;
    ch[0].attr = ngx_esp_unicode_pwd;
    ch[0].values = ngx_array_create(r->pool, 1, sizeof(ngx_str_t));

    ch[1].op = NGX_ESP_LDAP_MOD_ADD;
    ch[1].attr = ngx_esp_unicode_pwd;
    ch[1].values = ngx_array_create(r->pool, 1, sizeof(ngx_str_t));

    if (ch[0].values == NULL || ch[1].values == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    v = ngx_array_push(ch[0].values);
    if (v == NULL
        || ngx_esp_password_value(r, &ctx->password, v) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    v = ngx_array_push(ch[1].values);
    if (v == NULL
        || ngx_esp_password_value(r, &ctx->new_password, v) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->lr.changes = changes;
    ctx->lr.attrs = NULL;
    ngx_str_null(&ctx->lr.dn);

    return ngx_esp_auth_start(r, elcf, ctx, ngx_esp_password_done,
                              NGX_ESP_AUTH_CHANGE);
}


/* "password" in double quotes, UTF-16LE, wiped with the pool */

static ngx_int_t
ngx_esp_password_value(ngx_http_request_t *r, ngx_str_t *password,
    ngx_str_t *out)
{
    u_char    *p, *s, *last;
    size_t     n;
    uint32_t   u;

    /* at most 2 UTF-16 units of 2 bytes for each byte, and the quotes */

    out->data = ngx_pnalloc(r->pool, 4 * password->len + 4);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    if (ngx_esp_http_wipe_later(r->pool, out->data, 4 * password->len + 4)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    p = out->data;
    *p++ = '"';
    *p++ = 0;

    s = password->data;
    last = s + password->len;

    while (s < last) {
        n = ngx_esp_utf8_len(s, last);

        if (n == 0) {
            return NGX_ERROR;
        }

        u = (n == 1) ? s[0]
            : (n == 2) ? ((s[0] & 0x1f) << 6) | (s[1] & 0x3f)
            : (n == 3) ? ((s[0] & 0x0f) << 12) | ((s[1] & 0x3f) << 6)
                         | (s[2] & 0x3f)
            : ((s[0] & 0x07) << 18) | ((s[1] & 0x3f) << 12)
              | ((s[2] & 0x3f) << 6) | (s[3] & 0x3f);

        s += n;

        if (u >= 0x10000) {
            u -= 0x10000;
            *p++ = (u_char) ((0xd800 | (u >> 10)) & 0xff);
            *p++ = (u_char) ((0xd800 | (u >> 10)) >> 8);
            u = 0xdc00 | (u & 0x3ff);
        }

        *p++ = (u_char) (u & 0xff);
        *p++ = (u_char) (u >> 8);
    }

    *p++ = '"';
    *p++ = 0;

    out->len = p - out->data;

    return NGX_OK;
}


/* the directory answered the change; we are in the return URL's place */

static ngx_int_t
ngx_esp_password_done(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx)
{
    u_char               text[256];
    size_t               n;
    ngx_str_t            diag;
    ngx_esp_pw_text_e    msg;
    ngx_esp_ldap_req_t  *lr;

    lr = &ctx->lr;

    switch (ngx_esp_refusal_shown(elcf, ctx->result)) {

    case NGX_ESP_AUTH_OK:

        if (lr->ldap_code == 0) {
            ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                          "esp: password changed user=\"%V\" client=%V "
                          "domain=%V dc=%V as=%s",
                          ngx_esp_log_escape(r->pool, &ctx->user),
                          &r->connection->addr_text, &elcf->domain->name,
                          &lr->dc, lr->service ? "service" : "user");

            /* and the user signs in with it, groups and all */

            ctx->password = ctx->new_password;
            ctx->change = 0;
            ctx->state = NGX_ESP_STATE_NEW;

            return ngx_esp_auth_start(r, elcf, ctx, ngx_esp_form_login_done,
                                      0);
        }

        n = ngx_min(lr->diag.len, sizeof(text));
        ngx_memcpy(text, lr->diag.data, n);
        diag.data = text;
        diag.len = n;

        /* the password was right, the change refused: no session */

        ctx->authenticated = 0;
        ctx->checked.domain = NULL;

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "esp: password change refused user=\"%V\" client=%V "
                      "domain=%V dc=%V code=%i ad_code=%xi \"%V\"",
                      ngx_esp_log_escape(r->pool, &ctx->user),
                      &r->connection->addr_text, &elcf->domain->name,
                      &lr->dc, lr->ldap_code, lr->ad_code,
                      ngx_esp_log_escape(r->pool, &diag));

        msg = (lr->ldap_code == NGX_ESP_LDAP_CONSTRAINT_VIOLATION
               || lr->ad_code == NGX_ESP_LDAP_ERROR_PASSWORD_RESTRICTION)
              ? ngx_esp_password_rule(&lr->diag) : NGX_ESP_PW_MSG_REFUSED;
        break;

    case NGX_ESP_AUTH_PASSWORD_EXPIRED:
    case NGX_ESP_AUTH_MUST_CHANGE:

        /* the old password was right, but cannot bind: the service can */

        if (!lr->service && elcf->domain->bind_dn.len) {
            lr->service = 1;
            ctx->change = 1;
            ctx->state = NGX_ESP_STATE_NEW;

            return ngx_esp_password_start(r, elcf, ctx);
        }

        msg = NGX_ESP_PW_MSG_REFUSED;
        break;

    case NGX_ESP_AUTH_BLOCKED:
        msg = NGX_ESP_PW_MSG_BLOCKED;
        break;

    case NGX_ESP_AUTH_LOCKED:
        msg = NGX_ESP_PW_MSG_LOCKED;
        break;

    case NGX_ESP_AUTH_INVALID:
        msg = NGX_ESP_PW_MSG_EMPTY;
        break;

    case NGX_ESP_AUTH_UNAVAILABLE:
    case NGX_ESP_AUTH_SERVICE_ACCOUNT:
    case NGX_ESP_AUTH_ERROR:
        msg = NGX_ESP_PW_MSG_UNAVAILABLE;
        break;

    case NGX_ESP_AUTH_BAD_CREDENTIALS:
        msg = NGX_ESP_PW_MSG_BAD_OLD;
        break;

    default:
        msg = NGX_ESP_PW_MSG_REFUSED;
        break;
    }

    ctx->change = 0;

    return ngx_esp_password_page(r, elcf, ctx, msg, &ctx->return_url,
                                 &ctx->user);
}


/*
 * Which rule a refused new password broke.  AD says 0x52D for each of
 * them, and its text is no more precise; Samba's text names the rule
 * ("password is too young to change", "too short", "complexity",
 * "already used (in history)"), and is used when it does.  Otherwise
 * one message lists them all.
 */

static ngx_esp_pw_text_e
ngx_esp_password_rule(ngx_str_t *diag)
{
    u_char      *p, *last;
    ngx_uint_t   i;

    static struct {
        char               *text;
        ngx_esp_pw_text_e   msg;
    } rules[] = {
        { "too young", NGX_ESP_PW_MSG_TOO_YOUNG },
        { "too short", NGX_ESP_PW_MSG_TOO_SHORT },
        { "complexity", NGX_ESP_PW_MSG_COMPLEXITY },
        { "history", NGX_ESP_PW_MSG_HISTORY },
        { NULL, NGX_ESP_PW_NONE }
    };

    if (diag->len == 0) {
        return NGX_ESP_PW_MSG_POLICY;
    }

    p = diag->data;
    last = p + diag->len;

    for (i = 0; rules[i].text; i++) {
        if (ngx_strlcasestrn(p, last, (u_char *) rules[i].text,
                             ngx_strlen(rules[i].text) - 1)
            != NULL)
        {
            return rules[i].msg;
        }
    }

    return NGX_ESP_PW_MSG_POLICY;
}


ngx_int_t
ngx_esp_password_offer(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx)
{
    return ngx_esp_password_page(r, elcf, ctx, NGX_ESP_PW_MSG_MUST_CHANGE,
                                 &ctx->return_url, &ctx->user);
}


static ngx_int_t
ngx_esp_password_page(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx, ngx_esp_pw_text_e msg, ngx_str_t *url,
    ngx_str_t *user)
{
    u_char         *tpl;
    size_t          len;
    ngx_str_t       token, body, back, csrf, empty = ngx_null_string;
    ngx_uint_t      n, fresh, de, status;
    ngx_esp_var_t   vars[NGX_ESP_MAX_VARS];

    de = ngx_esp_is_german(r, elcf);
    ctx->de = de;

    if (ngx_esp_csrf_token(r, &token, &fresh) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_set(&csrf, NGX_ESP_CSRF_COOKIE);

    /*
     * always: shown after a login post (532/773), the token may be the
     * login page's, whose cookie is not sent to this path
     */

    if (ngx_esp_add_cookie(r, ctx, &csrf, &token, NGX_ESP_PASSWORD_PATH,
                           -1, NGX_ESP_SAMESITE_STRICT)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = sizeof(NGX_ESP_LOGIN_PATH "?url=") - 1 + 3 * url->len;

    back.data = ngx_pnalloc(r->pool, len);
    if (back.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    back.len = (u_char *) ngx_escape_uri(ngx_cpymem(back.data,
                                             NGX_ESP_LOGIN_PATH "?url=",
                                             sizeof(NGX_ESP_LOGIN_PATH
                                                    "?url=") - 1),
                                         url->data, url->len,
                                         NGX_ESCAPE_URI_COMPONENT)
               - back.data;

    n = 0;

    ngx_esp_pw_var("lang", empty);
    ngx_str_set(&vars[n - 1].value, "en");
    if (de) {
        ngx_str_set(&vars[n - 1].value, "de");
    }

    ngx_esp_pw_var("title", elcf->title);
    ngx_esp_pw_var("action", ngx_esp_password_path);
    ngx_esp_pw_var("url", *url);
    ngx_esp_pw_var("csrf", token);
    ngx_esp_pw_var("username", user ? *user : empty);
    ngx_esp_pw_var("back_url", back);
    ngx_esp_pw_var_text("message", msg);
    ngx_esp_pw_var("message_class", empty);

    if (msg == NGX_ESP_PW_NONE) {
        ngx_str_set(&vars[n - 1].value, "msg hidden");

    } else if (msg == NGX_ESP_PW_MSG_MUST_CHANGE) {
        ngx_str_set(&vars[n - 1].value, "msg info");

    } else {
        ngx_str_set(&vars[n - 1].value, "msg");
    }

    ngx_esp_pw_var_text("t_heading", NGX_ESP_PW_HEADING);
    ngx_esp_pw_var_text("t_text", NGX_ESP_PW_TEXT);
    ngx_esp_pw_var_text("t_username", NGX_ESP_PW_USERNAME);
    ngx_esp_pw_var_text("t_old", NGX_ESP_PW_OLD);
    ngx_esp_pw_var_text("t_new", NGX_ESP_PW_NEW);
    ngx_esp_pw_var_text("t_new2", NGX_ESP_PW_NEW2);
    ngx_esp_pw_var_text("t_submit", NGX_ESP_PW_SUBMIT);
    ngx_esp_pw_var_text("t_back", NGX_ESP_PW_BACK);
    ngx_esp_pw_var_text("t_footer", NGX_ESP_PW_FOOTER);

    tpl = ngx_esp_form_template(NGX_ESP_TEMPLATE_PASSWORD, &len);

    if (ngx_esp_render(r, tpl, len, vars, n, &body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    status = (msg == NGX_ESP_PW_MSG_FORM_EXPIRED) ? NGX_HTTP_FORBIDDEN
             : (msg == NGX_ESP_PW_MSG_UNAVAILABLE)
               ? NGX_HTTP_SERVICE_UNAVAILABLE : NGX_HTTP_OK;

    return ngx_esp_form_send(r, status, &body);
}


ngx_int_t
ngx_esp_password_link(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_uint_t de, ngx_str_t *back, ngx_str_t *url, ngx_str_t *text,
    ngx_str_t *cls)
{
    u_char  *p;

    text->data = (u_char *) ngx_esp_pw_text(de, NGX_ESP_PW_LINK);
    text->len = ngx_strlen(text->data);

    if (!elcf->password_change) {
        ngx_str_set(cls, "hidden");
        ngx_str_set(url, "#");
        return NGX_OK;
    }

    ngx_str_null(cls);

    url->data = ngx_pnalloc(r->pool, sizeof(NGX_ESP_PASSWORD_PATH "?url=")
                                     - 1 + 3 * back->len);
    if (url->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(url->data, NGX_ESP_PASSWORD_PATH "?url=",
                   sizeof(NGX_ESP_PASSWORD_PATH "?url=") - 1);
    p = (u_char *) ngx_escape_uri(p, back->data, back->len,
                                  NGX_ESCAPE_URI_COMPONENT);

    url->len = p - url->data;

    return NGX_OK;
}


static char *
ngx_esp_pw_text(ngx_uint_t de, ngx_esp_pw_text_e t)
{
    return de ? ngx_esp_pw_texts[t].de : ngx_esp_pw_texts[t].en;
}


/*
 * A form login asks for the password's expiry when its domain warns of
 * it.  Not with "esp_server_auth form": its hand-off to Exchange must
 * follow the login at once, with the password.
 */

ngx_int_t
ngx_esp_password_expiry_ask(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx)
{
    ngx_str_t    *a;
    ngx_uint_t    n;
    ngx_array_t  *mfa;

    ctx->lr.attrs = NULL;

    if (elcf->domain->expiry_warning == 0
        || elcf->server_auth == NGX_ESP_SERVER_FORM)
    {
        return NGX_OK;
    }

    /* one read of the entry: the second factor's attributes and ours */

    mfa = ngx_esp_mfa_attrs(elcf);
    n = (mfa != NULL) ? mfa->nelts : 0;

    ctx->lr.attrs = ngx_array_create(r->pool, n + 1, sizeof(ngx_str_t));
    if (ctx->lr.attrs == NULL) {
        return NGX_ERROR;
    }

    if (n) {
        a = ngx_array_push_n(ctx->lr.attrs, n);
        if (a == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(a, mfa->elts, n * sizeof(ngx_str_t));
    }

    a = ngx_array_push(ctx->lr.attrs);
    if (a == NULL) {
        return NGX_ERROR;
    }

    *a = ngx_esp_expiry_attr;

    return NGX_OK;
}


/*
 * After a successful form login, the session issued: the interstitial
 * if the password expires within the window, else NGX_DECLINED.  The
 * value counts 100 ns since 1601; 0 means "must change now" and the
 * largest one "never".
 */

ngx_int_t
ngx_esp_password_expiry_page(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx)
{
    u_char               *p, *last, buf[128];
    time_t                expires, left, days;
    uint64_t              v;
    ngx_str_t            *value, body, empty = ngx_null_string, text;
    ngx_uint_t            i, n, de;
    ngx_esp_var_t         vars[NGX_ESP_MAX_VARS];
    ngx_esp_ldap_attr_t  *attr;

    if (ctx->lr.attrs == NULL || ctx->lr.values == NULL
        || ctx->lr.values->nelts == 0)
    {
        return NGX_DECLINED;
    }

    attr = ctx->lr.values->elts;

    for (i = 0; i < ctx->lr.values->nelts; i++) {
        if (attr[i].name.len == ngx_esp_expiry_attr.len
            && ngx_strncasecmp(attr[i].name.data, ngx_esp_expiry_attr.data,
                               attr[i].name.len) == 0)
        {
            break;
        }
    }

    if (i == ctx->lr.values->nelts
        || attr[i].values == NULL || attr[i].values->nelts == 0)
    {
        return NGX_DECLINED;
    }

    value = attr[i].values->elts;

    if (value->len == 0 || value->len > 19) {
        return NGX_DECLINED;
    }

    v = 0;
    last = value->data + value->len;

    for (p = value->data; p < last; p++) {
        if (*p < '0' || *p > '9') {
            return NGX_DECLINED;
        }

        v = v * 10 + (*p - '0');
    }

    if (v == 0 || v >= 0x7fffffffffffffffULL) {
        return NGX_DECLINED;
    }

    expires = (time_t) (v / 10000000) - (time_t) 11644473600LL;
    left = expires - ngx_time();

    if (left <= 0 || left > elcf->domain->expiry_warning) {
        return NGX_DECLINED;
    }

    days = (left + 43200) / 86400;

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "esp: password of user=\"%V\" expires in %T s: warned",
                  ngx_esp_log_escape(r->pool, &ctx->user), left);

    de = ngx_esp_is_german(r, elcf);

    if (left >= 86400) {
        text.len = ngx_snprintf(buf, sizeof(buf),
                                ngx_esp_pw_text(de, NGX_ESP_PW_EXPIRY_DAYS),
                                days)
                   - buf;

    } else {
        text.len = ngx_snprintf(buf, sizeof(buf), "%s",
                                ngx_esp_pw_text(de, NGX_ESP_PW_EXPIRY_DAY))
                   - buf;
    }

    text.data = buf;

    n = 0;

    ngx_esp_pw_var("lang", empty);
    ngx_str_set(&vars[n - 1].value, "en");
    if (de) {
        ngx_str_set(&vars[n - 1].value, "de");
    }

    ngx_esp_pw_var("title", elcf->title);
    ngx_esp_pw_var("action", ngx_esp_password_path);
    ngx_esp_pw_var("url", ctx->return_url);
    ngx_esp_pw_var("later_url", ctx->return_url);
    ngx_esp_pw_var("message", text);
    ngx_esp_pw_var_text("t_heading", NGX_ESP_PW_EXPIRY_HEADING);
    ngx_esp_pw_var_text("t_change", NGX_ESP_PW_EXPIRY_CHANGE);
    ngx_esp_pw_var_text("t_later", NGX_ESP_PW_EXPIRY_LATER);

    p = ngx_esp_form_template(NGX_ESP_TEMPLATE_EXPIRY, &body.len);

    if (ngx_esp_render(r, p, body.len, vars, n, &body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_esp_form_send(r, NGX_HTTP_OK, &body);
}
