
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "ngx_esp_auth.h"
#include "ngx_esp_download.h"
#include "ngx_esp_cluster.h"
#include "ngx_esp_form.h"
#include "ngx_esp_http.h"
#include "ngx_esp_log.h"
#include "ngx_esp_match.h"
#include "ngx_esp_password.h"
#include "ngx_esp_mfa.h"
#include "ngx_esp_refusal.h"
#include "ngx_esp_shm.h"
#include "ngx_esp_pages.h"


#define NGX_ESP_CSRF_LEN        32            /* hex digits */


/* the texts of the pages, English and German */
typedef enum {
    NGX_ESP_T_HEADING = 0,
    NGX_ESP_T_USERNAME,
    NGX_ESP_T_USERNAME_HINT,
    NGX_ESP_T_PASSWORD,
    NGX_ESP_T_SUBMIT,
    NGX_ESP_T_COMPUTER,
    NGX_ESP_T_PUBLIC,
    NGX_ESP_T_PUBLIC_HINT,
    NGX_ESP_T_PRIVATE,
    NGX_ESP_T_PRIVATE_HINT,
    NGX_ESP_T_FOOTER,
    NGX_ESP_T_LOGOUT_HEADING,
    NGX_ESP_T_LOGOUT_TEXT,
    NGX_ESP_T_AGAIN,

    NGX_ESP_MSG_NONE,
    NGX_ESP_MSG_BAD_CREDENTIALS,
    NGX_ESP_MSG_EMPTY,
    NGX_ESP_MSG_BLOCKED,
    NGX_ESP_MSG_DISABLED,
    NGX_ESP_MSG_ACCOUNT_EXPIRED,
    NGX_ESP_MSG_LOCKED_OUT,
    NGX_ESP_MSG_LOGON_HOURS,
    NGX_ESP_MSG_WORKSTATION,
    NGX_ESP_MSG_NOT_PERMITTED,
    NGX_ESP_MSG_UNAVAILABLE,
    NGX_ESP_MSG_SESSION_EXPIRED,
    NGX_ESP_MSG_SIGNED_OUT,
    NGX_ESP_MSG_FORM_EXPIRED,
    NGX_ESP_MSG_PASSWORD_CHANGE,

    NGX_ESP_TEXTS
} ngx_esp_text_e;


typedef struct {
    char                      *en;
    char                      *de;
} ngx_esp_text_t;


typedef struct {
    ngx_str_t                  username;
    ngx_str_t                  password;
    ngx_str_t                  url;
    ngx_str_t                  csrf;
    ngx_str_t                  trusted;
} ngx_esp_login_form_t;


static ngx_int_t ngx_esp_form_page(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx, ngx_uint_t status,
    ngx_esp_text_e msg, ngx_str_t *url, ngx_str_t *user);
static ngx_int_t ngx_esp_logout_page(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);
static ngx_int_t ngx_esp_send_440(ngx_http_request_t *r);
static ngx_int_t ngx_esp_redirect_to_login(ngx_http_request_t *r,
    ngx_esp_ctx_t *ctx, ngx_str_t *back, ngx_uint_t expired);
static ngx_int_t ngx_esp_login_url(ngx_http_request_t *r, ngx_str_t *back,
    ngx_uint_t expired, ngx_str_t *url);
static time_t ngx_esp_session_end(ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx);
static ngx_table_elt_t *ngx_esp_location_header(ngx_http_request_t *r);
static ngx_int_t ngx_esp_login_post(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);
static ngx_uint_t ngx_esp_login_token(ngx_http_request_t *r,
    ngx_esp_login_form_t *f);
static ngx_int_t ngx_esp_form_logoff(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);
static ngx_int_t ngx_esp_form_server_basic(ngx_http_request_t *r,
    ngx_esp_ctx_t *ctx);
static ngx_int_t ngx_esp_form_answer(ngx_http_request_t *r,
    ngx_esp_ctx_t *ctx);
static ngx_int_t ngx_esp_show_form(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx, ngx_esp_text_e msg,
    ngx_str_t *url, ngx_str_t *user);
static ngx_int_t ngx_esp_parse_form(ngx_http_request_t *r,
    ngx_esp_login_form_t *f, const char **reason);
static ngx_int_t ngx_esp_clear_cookie(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);
static ngx_int_t ngx_esp_handoff(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);
static u_char *ngx_esp_form_escape(u_char *dst, ngx_str_t *src);
static size_t ngx_esp_form_escaped_len(ngx_str_t *src);
static char *ngx_esp_text(ngx_esp_ctx_t *ctx, ngx_esp_text_e t);

static char *ngx_esp_local_url(ngx_conf_t *cf, void *post, void *data);
static char *ngx_esp_password_form(ngx_conf_t *cf, void *post, void *data);


static ngx_esp_text_t  ngx_esp_texts[NGX_ESP_TEXTS] = {

    { "Sign in", "Anmelden" },
    { "User name", "Benutzername" },
    { NULL, NULL },                              /* built per domain */
    { "Password", "Kennwort" },
    { "Sign in", "Anmelden" },
    { "Which computer are you using?", "Welchen Computer verwenden Sie?" },
    { "Public or shared computer",
      "\xc3\x96" "ffentlicher oder gemeinsam genutzter Computer" },
    { "Signs you out sooner. Choose this on a shared or borrowed computer.",
      "Sie werden fr\xc3\xbcher abgemeldet. W\xc3\xa4hlen Sie dies an einem "
      "gemeinsam genutzten oder fremden Computer." },
    { "Private computer", "Privater Computer" },
    { "Keeps you signed in longer. Choose this only on a computer that only "
      "you use.",
      "Sie bleiben l\xc3\xa4nger angemeldet. W\xc3\xa4hlen Sie dies nur an "
      "einem Computer, den nur Sie verwenden." },
    { "For authorised users only. Sign-in attempts are logged.",
      "Nur f\xc3\xbcr berechtigte Benutzer. Anmeldeversuche werden "
      "protokolliert." },
    { "You have signed out", "Sie haben sich abgemeldet" },
    { "For your security, close all browser windows when you have "
      "finished.",
      "Schlie\xc3\x9f" "en Sie zu Ihrer Sicherheit alle Browserfenster, "
      "wenn Sie fertig sind." },
    { "Sign in again", "Erneut anmelden" },

    { "", "" },
    { "The user name or password is incorrect. Please try again.",
      "Der Benutzername oder das Kennwort ist falsch. Bitte versuchen Sie "
      "es erneut." },
    { "Please enter your user name and password.",
      "Bitte geben Sie Ihren Benutzernamen und Ihr Kennwort ein." },
    { "Too many failed sign-in attempts. Please try again later.",
      "Zu viele fehlgeschlagene Anmeldeversuche. Bitte versuchen Sie es "
      "sp\xc3\xa4ter erneut." },
    { "Your account is disabled. Please contact your administrator.",
      "Ihr Konto ist deaktiviert. Bitte wenden Sie sich an Ihren "
      "Administrator." },
    { "Your account has expired. Please contact your administrator.",
      "Ihr Konto ist abgelaufen. Bitte wenden Sie sich an Ihren "
      "Administrator." },
    { "Your account is locked. Please try again later or contact your "
      "administrator.",
      "Ihr Konto ist gesperrt. Bitte versuchen Sie es sp\xc3\xa4ter erneut "
      "oder wenden Sie sich an Ihren Administrator." },
    { "You are not permitted to sign in at this time.",
      "Sie d\xc3\xbcrfen sich zu dieser Zeit nicht anmelden." },
    { "You are not permitted to sign in from this computer.",
      "Sie d\xc3\xbcrfen sich von diesem Computer aus nicht anmelden." },
    { "You are not permitted to use this service. Please contact your "
      "administrator.",
      "Sie sind nicht berechtigt, diesen Dienst zu verwenden. Bitte wenden "
      "Sie sich an Ihren Administrator." },
    { "The sign-in service is temporarily unavailable. Please try again in "
      "a few minutes.",
      "Der Anmeldedienst ist vor\xc3\xbc" "bergehend nicht verf\xc3\xbc"
      "gbar. Bitte versuchen Sie es in einigen Minuten erneut." },
    { "Your session has expired. Please sign in again.",
      "Ihre Sitzung ist abgelaufen. Bitte melden Sie sich erneut an." },
    { "You have signed out.", "Sie haben sich abgemeldet." },
    { "The sign-in form has expired or was sent from another site. Please "
      "try again.",
      "Das Anmeldeformular ist abgelaufen oder wurde von einer anderen "
      "Website gesendet. Bitte versuchen Sie es erneut." },
    { "Your password has expired or must be changed. You are being taken "
      "to the page where you can change it.",
      "Ihr Kennwort ist abgelaufen oder muss ge\xc3\xa4ndert werden. Sie "
      "werden zu der Seite weitergeleitet, auf der Sie es \xc3\xa4ndern "
      "k\xc3\xb6nnen." },
};


ngx_conf_post_handler_pt  ngx_esp_local_url_p = ngx_esp_local_url;
ngx_conf_post_handler_pt  ngx_esp_password_form_p = ngx_esp_password_form;


static ngx_str_t  ngx_esp_login_path = ngx_string(NGX_ESP_LOGIN_PATH);
static ngx_str_t  ngx_esp_logout_path = ngx_string(NGX_ESP_LOGOUT_PATH);
static ngx_str_t  ngx_esp_csrf_name = ngx_string(NGX_ESP_CSRF_COOKIE);


/*
 * The module's own endpoints: the login form (GET), the credentials
 * (POST) and the signed-out page.  Called after the host check, before
 * the directory checks, since the endpoints are not Exchange's.
 */

ngx_int_t
ngx_esp_form_endpoint(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx)
{
    ngx_int_t        rc;
    ngx_str_t        url;
    ngx_esp_text_e   msg;

    if (ctx->state == NGX_ESP_STATE_FORM_PAGE) {
        /* the login form, now in its return URL's place */
        ctx->state = NGX_ESP_STATE_NEW;

        return ngx_esp_form_page(r, elcf, ctx,
                                 ctx->message == NGX_ESP_MSG_FORM_EXPIRED
                                 ? NGX_HTTP_FORBIDDEN : NGX_HTTP_OK,
                                 (ngx_esp_text_e) ctx->message,
                                 &ctx->return_url,
                                 ctx->user.len ? &ctx->user : NULL);
    }

    if (r->uri.len == ngx_esp_logout_path.len
        && ngx_strncasecmp(r->uri.data, ngx_esp_logout_path.data,
                           r->uri.len) == 0)
    {
        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
            return NGX_HTTP_NOT_ALLOWED;
        }

        return ngx_esp_logout_page(r, elcf, ctx);
    }

    rc = ngx_esp_password_endpoint(r, elcf, ctx);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    if (r->uri.len != ngx_esp_login_path.len
        || ngx_strncasecmp(r->uri.data, ngx_esp_login_path.data, r->uri.len)
           != 0)
    {
        /* the download host's hand-off, if configured */
        return ngx_esp_download_endpoint(r, elcf, ctx);
    }

    if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {

        if (ngx_esp_arg_url(r, &url) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        msg = NGX_ESP_MSG_NONE;

        if (r->args.len
            && ngx_strlcasestrn(r->args.data, r->args.data + r->args.len,
                                (u_char *) "reason=timeout", 14 - 1))
        {
            msg = NGX_ESP_MSG_SESSION_EXPIRED;
        }

        return ngx_esp_show_form(r, elcf, ctx, msg, &url, NULL);
    }

    if (r->method != NGX_HTTP_POST) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    if (ctx->state == NGX_ESP_STATE_BODY_READ) {
        return ngx_esp_login_post(r, elcf, ctx);
    }

    /* a login body is small and a form; anything else is refused early */

    if (!ngx_esp_http_is_form(r)) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "esp: login refused: not a form post");
        return NGX_HTTP_UNSUPPORTED_MEDIA_TYPE;
    }

    rc = ngx_esp_http_read_body(r, &ctx->body, NGX_ESP_MAX_LOGIN_BODY,
                                "login", ngx_esp_form_body_handler);

    if (rc == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE
        && r->headers_in.content_length_n > NGX_ESP_MAX_LOGIN_BODY)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "esp: login refused: body of %O bytes",
                      r->headers_in.content_length_n);
    }

    if (rc != NGX_DONE) {
        return rc;
    }

    ngx_http_finalize_request(r, NGX_DONE);
    return NGX_DONE;
}


void
ngx_esp_form_body_handler(ngx_http_request_t *r)
{
    ngx_esp_ctx_t  *ctx;

    ctx = ngx_esp_get_ctx(r, 0);
    if (ctx == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ctx->state = NGX_ESP_STATE_BODY_READ;
    ctx->gate_body = 1;

    r->preserve_body = 1;
    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


/*
 * The credentials arrived.  The login is then carried out by the location
 * of the page the user wants, with its own domain, groups and server
 * authentication: an internal redirect takes the request there, and the
 * access handler there finds the request in NGX_ESP_STATE_FORM_LOGIN.
 */

static ngx_int_t
ngx_esp_login_post(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx)
{
    ngx_int_t              rc;
    const char            *reason;
    ngx_esp_login_form_t   f;

    /* the second factor's page posts here too */

    rc = ngx_esp_mfa_post(r, elcf, ctx);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    ngx_memzero(&f, sizeof(ngx_esp_login_form_t));

    rc = ngx_esp_parse_form(r, &f, &reason);

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "esp: login refused: %s", reason);
        return rc;
    }

    if (f.url.len == 0 || !ngx_esp_valid_return_url(&f.url)) {
        if (f.url.len) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "esp: login return URL refused, using \"%V\"",
                          &elcf->default_url);
        }

        f.url = elcf->default_url;
    }

    if (!ngx_esp_login_token(r, &f)) {
        return ngx_esp_show_form(r, elcf, ctx, NGX_ESP_MSG_FORM_EXPIRED,
                                 &f.url, &f.username);
    }

    if (f.username.len == 0 || f.password.len == 0) {
        return ngx_esp_show_form(r, elcf, ctx, NGX_ESP_MSG_EMPTY, &f.url,
                                 &f.username);
    }

    ctx->user = f.username;
    ctx->password = f.password;
    ctx->return_url = f.url;

    /* the choice counts where the location offers it (form_access) */
    ctx->private = (f.trusted.len == 1 && f.trusted.data[0] == '1');

    return ngx_esp_form_continue(r, elcf, ctx);
}


/*
 * A posted login (the form's, or a password change's) goes on in the
 * location of its return URL, else of esp_default_url, which decides it.
 */

ngx_int_t
ngx_esp_form_continue(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx)
{
    ngx_int_t  rc;

    ctx->state = NGX_ESP_STATE_FORM_LOGIN;

    rc = ngx_esp_continue_at(r, elcf, &ctx->return_url, 1);

    if (rc == NGX_DECLINED) {
        ctx->return_url = elcf->default_url;
        rc = ngx_esp_continue_at(r, elcf, &ctx->return_url, 1);
    }

    if (rc == NGX_DECLINED) {
        return NGX_HTTP_BAD_REQUEST;
    }

    return rc;
}


/*
 * The double-submitted token: a cookie no other site can set, the same
 * in the form; and the browser's word that the post comes from this
 * site, since a sibling host can plant the cookie (cookie tossing).
 */

static ngx_uint_t
ngx_esp_login_token(ngx_http_request_t *r, ngx_esp_login_form_t *f)
{
    return ngx_esp_form_token_ok(r, &f->csrf, "login");
}


ngx_uint_t
ngx_esp_form_token_ok(ngx_http_request_t *r, ngx_str_t *csrf,
    const char *what)
{
    ngx_str_t           name, value;
    ngx_table_elt_t    *h;
    ngx_esp_cookies_t   c;

    ngx_memzero(&c, sizeof(ngx_esp_cookies_t));

    while (ngx_esp_http_cookie_next(r, &c, &name, &value) == NGX_OK) {

        if (name.len != ngx_esp_csrf_name.len
            || ngx_strncmp(name.data, ngx_esp_csrf_name.data, name.len) != 0
            || value.len != NGX_ESP_CSRF_LEN
            || csrf->len != NGX_ESP_CSRF_LEN
            || CRYPTO_memcmp(value.data, csrf->data, NGX_ESP_CSRF_LEN) != 0)
        {
            continue;
        }

        /* "Origin: null": our pages send no referrer */

        h = ngx_esp_http_cross_site(r, NGX_ESP_ORIGIN_NULL_OK);

        if (h == NULL) {
            return 1;
        }

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "esp: %s refused: posted from another site "
                      "(\"%V: %V\")", what,
                      ngx_esp_log_escape(r->pool, &h->key),
                      ngx_esp_log_escape(r->pool, &h->value));

        return 0;
    }

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "esp: %s refused: missing or foreign form token "
                  "(cross-site post or stale form)", what);

    return 0;
}


/*
 * The login form, shown by the location of its return URL, with that
 * location's domain, texts, template and public/private choice; here if
 * the URL leads nowhere.
 */

static ngx_int_t
ngx_esp_show_form(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx, ngx_esp_text_e msg, ngx_str_t *url, ngx_str_t *user)
{
    ngx_int_t  rc;

    ctx->message = msg;
    ctx->return_url = *url;

    if (user) {
        ctx->user = *user;
    }

    ctx->state = NGX_ESP_STATE_FORM_PAGE;

    rc = ngx_esp_continue_at(r, elcf, url, 0);

    if (rc != NGX_DECLINED) {
        return rc;
    }

    ctx->state = NGX_ESP_STATE_NEW;

    return ngx_esp_form_page(r, elcf, ctx,
                             msg == NGX_ESP_MSG_FORM_EXPIRED
                             ? NGX_HTTP_FORBIDDEN : NGX_HTTP_OK,
                             msg, url, user);
}


/*
 * Takes the request to the location of "url" (its path decoded, as nginx
 * would match it), with the query string if "with_args"; NGX_DECLINED if
 * the path is not one to go to.
 */

ngx_int_t
ngx_esp_continue_at(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_str_t *url, ngx_uint_t with_args)
{
    u_char         *q;
    ngx_str_t       path, args, name;
    const char     *reason;
    ngx_esp_ctx_t  *ctx;

    path = *url;
    args.len = 0;
    args.data = NULL;

    q = ngx_strlchr(path.data, path.data + path.len, '?');
    if (q) {
        if (with_args) {
            args.data = q + 1;
            args.len = path.data + path.len - args.data;
        }

        path.len = q - path.data;
    }

    name.data = ngx_pnalloc(r->pool, path.len + 1);
    if (name.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_esp_canonical_path(path.data, path.len, &name, &reason)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "esp: login return URL refused: %s", reason);
        return NGX_DECLINED;
    }

    /* never back to our own endpoints */

    if (name.len >= sizeof("/_esp/") - 1
        && ngx_strncasecmp(name.data, (u_char *) "/_esp/",
                           sizeof("/_esp/") - 1) == 0)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "esp: login return URL refused: \"%V\"",
                      ngx_esp_log_escape(r->pool, &name));
        return NGX_DECLINED;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "esp: login continues in the location of \"%V?%V\"",
                   ngx_esp_log_escape(r->pool, &name),
                   ngx_esp_log_escape(r->pool, &args));

    /* the one redirect that carries a login on (ngx_esp_auth_redirected) */
    ctx = ngx_http_get_module_ctx(r, ngx_exchange_esp_module);
    ctx->continued = 1;

    (void) ngx_http_internal_redirect(r, &name, &args);
    ngx_http_finalize_request(r, NGX_DONE);

    return NGX_DONE;
}


/*
 * The location of the return URL: step 5 of the design for a location
 * with esp_client_auth form, and the second half of a login.
 */

ngx_int_t
ngx_esp_form_access(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx)
{
    ngx_int_t    rc;
    ngx_str_t    back;
    ngx_uint_t   stale;

    if (ctx->state == NGX_ESP_STATE_FORM_LOGIN) {

        if (elcf->client_auth != NGX_ESP_CLIENT_FORM) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "esp: login refused: \"%V\" is not a form login "
                          "location", ngx_esp_log_escape(r->pool, &r->uri));
            return NGX_HTTP_FORBIDDEN;
        }

        if (!elcf->public_private) {
            ctx->private = 0;
        }

        if (ctx->change) {
            return ngx_esp_password_start(r, elcf, ctx);
        }

        if (ctx->mfa) {
            return ngx_esp_mfa_access(r, elcf, ctx);
        }

        if (ngx_esp_password_expiry_ask(r, elcf, ctx) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_esp_auth_start(r, elcf, ctx, ngx_esp_form_login_done, 0);
    }

    rc = ngx_esp_find_session(r, elcf, ctx, &stale);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_OK) {

        if (elcf->logoff
            && ngx_esp_match_paths(elcf->logoff, &r->uri)
            && ngx_esp_form_logoff(r, elcf, ctx) != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_esp_form_server_basic(r, ctx);
    }

    /* no valid session */

    if (stale && ngx_esp_clear_cookie(r, elcf, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (elcf->logoff && ngx_esp_match_paths(elcf->logoff, &r->uri)) {
        if (ngx_esp_clear_cookie(r, elcf, ctx) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_str_set(&back, NGX_ESP_LOGOUT_PATH);
        return ngx_esp_redirect(r, &back);
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "esp: %V \"%V\" without a session: 440",
                      ngx_esp_log_escape(r->pool, &r->method_name),
                      ngx_esp_log_escape(r->pool, &r->uri));
        return ngx_esp_send_440(r);
    }

    back = r->unparsed_uri;

    if (!ngx_esp_valid_return_url(&back)) {
        back = elcf->default_url;
    }

    /* a download host has no login of its own */

    rc = ngx_esp_download_redirect(r, elcf, ctx, &back);

    if (rc != NGX_DECLINED) {
        return rc;
    }

    return ngx_esp_redirect_to_login(r, ctx, &back, stale == 2);
}


/*
 * A logoff with a valid session: the session is revoked and its cookie
 * cleared, and Exchange still sees the logoff, to clear its own cookies;
 * its answer leads to our signed-out page (the header filter).
 */

static ngx_int_t
ngx_esp_form_logoff(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx)
{
    ngx_esp_main_conf_t  *emcf;

    emcf = ngx_http_get_module_main_conf(r, ngx_exchange_esp_module);

    ctx->logoff = 1;

    /* ended here: no later location of this request may take it */
    ctx->checked.domain = NULL;

    if (emcf->shm_zone) {
        (void) ngx_esp_session_revoke(emcf->shm_zone, ctx->session.id,
                                      NGX_ESP_SESSION_ID_LEN,
                                      ngx_esp_session_end(elcf, ctx));
        ngx_esp_cluster_revoke_session(ctx->session.id,
                                       NGX_ESP_SESSION_ID_LEN,
                                       ngx_esp_session_end(elcf, ctx));
    }

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "esp: logoff user=\"%V\" client=%V domain=%V",
                  ngx_esp_log_escape(r->pool, &ctx->session.user),
                  &r->connection->addr_text, &elcf->domain->name);

    return ngx_esp_clear_cookie(r, elcf, ctx);
}


/* the directory answered a form login; we are in the return URL's place */

ngx_int_t
ngx_esp_form_login_done(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx)
{
    ngx_int_t        rc;
    ngx_str_t        url;
    ngx_esp_text_e   msg;

    switch (ngx_esp_refusal_shown(elcf, ctx->result)) {

    case NGX_ESP_AUTH_OK:

        rc = ngx_esp_mfa_begin(r, elcf, ctx);
        if (rc != NGX_DECLINED) {
            return rc;
        }

        return ngx_esp_form_session_start(r, elcf, ctx);

    case NGX_ESP_AUTH_PASSWORD_EXPIRED:
    case NGX_ESP_AUTH_MUST_CHANGE:

        if (elcf->password_form.len) {
            url = elcf->password_form;
            return ngx_esp_redirect(r, &url);
        }

        if (elcf->password_change) {
            return ngx_esp_password_offer(r, elcf, ctx);
        }

        msg = NGX_ESP_MSG_PASSWORD_CHANGE;
        break;

    case NGX_ESP_AUTH_BLOCKED:
        msg = NGX_ESP_MSG_BLOCKED;
        break;

    case NGX_ESP_AUTH_DISABLED:
        msg = NGX_ESP_MSG_DISABLED;
        break;

    case NGX_ESP_AUTH_ACCOUNT_EXPIRED:
        msg = NGX_ESP_MSG_ACCOUNT_EXPIRED;
        break;

    case NGX_ESP_AUTH_LOCKED:
        msg = NGX_ESP_MSG_LOCKED_OUT;
        break;

    case NGX_ESP_AUTH_LOGON_HOURS:
        msg = NGX_ESP_MSG_LOGON_HOURS;
        break;

    case NGX_ESP_AUTH_WORKSTATION:
        msg = NGX_ESP_MSG_WORKSTATION;
        break;

    case NGX_ESP_AUTH_NOT_PERMITTED:
        msg = NGX_ESP_MSG_NOT_PERMITTED;
        break;

    case NGX_ESP_AUTH_INVALID:
        msg = NGX_ESP_MSG_EMPTY;
        break;

    case NGX_ESP_AUTH_UNAVAILABLE:
    case NGX_ESP_AUTH_SERVICE_ACCOUNT:
    case NGX_ESP_AUTH_ERROR:
        msg = NGX_ESP_MSG_UNAVAILABLE;
        break;

    default:
        msg = NGX_ESP_MSG_BAD_CREDENTIALS;
        break;
    }

    return ngx_esp_form_page(r, elcf, ctx,
                             msg == NGX_ESP_MSG_UNAVAILABLE
                             ? NGX_HTTP_SERVICE_UNAVAILABLE : NGX_HTTP_OK,
                             msg, &ctx->return_url, &ctx->user);
}


/*
 * Every factor passed (the password, and the second one if asked): the
 * session is issued, and the login goes on to Exchange or its return URL.
 */

ngx_int_t
ngx_esp_form_session_start(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx)
{
    ngx_int_t             rc;
    ngx_esp_main_conf_t  *emcf;

    ngx_memzero(&ctx->session, sizeof(ngx_esp_session_t));

    if (RAND_bytes(ctx->session.id, NGX_ESP_SESSION_ID_LEN) != 1) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->session.issued = ngx_time();
    ctx->session.last_seen = ctx->session.issued;
    ctx->session.flags = ctx->private ? NGX_ESP_SESSION_PRIVATE : 0;
    ctx->session.domain = elcf->domain->name;
    ctx->session.user = ctx->lr.logon_name;

    if (ngx_esp_groups_fingerprint(r, elcf->permitted_groups,
                                   ctx->session.groups)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (elcf->server_auth == NGX_ESP_SERVER_BASIC) {
        emcf = ngx_http_get_module_main_conf(r, ngx_exchange_esp_module);

        if (ngx_esp_session_seal_password(r->pool, emcf->password_keys,
                                          &ctx->session, &ctx->password)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    ctx->has_session = 1;
    ctx->authenticated = 1;

    if (ngx_esp_issue_cookie(r, elcf, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (elcf->server_auth == NGX_ESP_SERVER_FORM) {
        return ngx_esp_handoff(r, elcf, ctx);
    }

    rc = ngx_esp_password_expiry_page(r, elcf, ctx);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    return ngx_esp_redirect(r, &ctx->return_url);
}


/*
 * Single sign-on to OWA/ECP: the login request becomes Exchange's own
 * forms login, POST auth.owa, sent by the location's upstream; Exchange's
 * answer (its cadata cookies and the redirect to the destination) goes to
 * the browser with our session cookie.
 */

static ngx_int_t
ngx_esp_handoff(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx)
{
    u_char       *p;
    size_t        len;
    ngx_buf_t    *b;
    ngx_str_t     dest, flags;
    ngx_chain_t  *cl;

    if (ngx_esp_self_url(r, NULL, &ctx->return_url, &dest) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->private) {
        ngx_str_set(&flags, "4");

    } else {
        ngx_str_set(&flags, "0");
    }

    len = sizeof("destination=&flags=&forcedownlevel=0&username="
                 "&password=&passwordText=&isUtf8=1") - 1
          + ngx_esp_form_escaped_len(&dest) + flags.len
          + ngx_esp_form_escaped_len(&ctx->lr.logon_name)
          + ngx_esp_form_escaped_len(&ctx->password);

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_esp_http_wipe_later(r->pool, b->start, len) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = b->last;
    p = ngx_cpymem(p, "destination=", sizeof("destination=") - 1);
    p = ngx_esp_form_escape(p, &dest);
    p = ngx_cpymem(p, "&flags=", sizeof("&flags=") - 1);
    p = ngx_cpymem(p, flags.data, flags.len);
    p = ngx_cpymem(p, "&forcedownlevel=0&username=",
                   sizeof("&forcedownlevel=0&username=") - 1);
    p = ngx_esp_form_escape(p, &ctx->lr.logon_name);
    p = ngx_cpymem(p, "&password=", sizeof("&password=") - 1);
    p = ngx_esp_form_escape(p, &ctx->password);
    p = ngx_cpymem(p, "&passwordText=&isUtf8=1",
                   sizeof("&passwordText=&isUtf8=1") - 1);
    b->last = p;
    b->last_buf = 1;

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cl->buf = b;
    cl->next = NULL;

    if (r->request_body == NULL) {
        r->request_body = ngx_pcalloc(r->pool, sizeof(ngx_http_request_body_t));
        if (r->request_body == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    r->request_body->bufs = cl;
    r->request_body->buf = b;
    r->request_body->temp_file = NULL;
    r->request_body->rest = 0;

    r->headers_in.content_length_n = b->last - b->pos;
    r->headers_in.chunked = 0;
    r->request_body_in_file_only = 0;

    if (r->headers_in.content_length) {
        p = ngx_pnalloc(r->pool, NGX_OFF_T_LEN);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        r->headers_in.content_length->value.data = p;
        r->headers_in.content_length->value.len =
                    ngx_sprintf(p, "%O", r->headers_in.content_length_n) - p;
    }

    if (r->headers_in.authorization
        && ngx_esp_http_set_header(r, &r->headers_in.headers,
                                   "Authorization", NULL,
                                   &r->headers_in.authorization)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->method = NGX_HTTP_POST;
    ngx_str_set(&r->method_name, "POST");
    r->uri = elcf->owa_auth;
    r->args.len = 0;
    r->args.data = NULL;
    r->valid_unparsed_uri = 0;

    ctx->handoff = 1;
    ctx->gate_body = 1;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "esp: handing the login to Exchange at \"%V\"",
                   ngx_esp_log_escape(r->pool, &r->uri));

    return NGX_OK;
}


/* server auth basic for a form session: the sealed password, as Basic */

static ngx_int_t
ngx_esp_form_server_basic(ngx_http_request_t *r, ngx_esp_ctx_t *ctx)
{
    u_char               *p;
    size_t                len;
    ngx_int_t             rc;
    ngx_str_t             plain, encoded, value, back, password;
    const char           *reason;
    ngx_esp_loc_conf_t   *elcf;
    ngx_esp_main_conf_t  *emcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_exchange_esp_module);

    if (elcf->server_auth != NGX_ESP_SERVER_BASIC) {
        /* Exchange authenticates the session's user, nobody the client names */
        if (r->headers_in.authorization) {
            return ngx_esp_http_set_header(r, &r->headers_in.headers,
                                           "Authorization", NULL,
                                           &r->headers_in.authorization);
        }

        return NGX_OK;
    }

    emcf = ngx_http_get_module_main_conf(r, ngx_exchange_esp_module);

    rc = ngx_esp_session_open_password(r->pool, emcf->password_keys,
                                       &ctx->session, &password, &reason);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "esp: the session of \"%V\" %s: sign in again",
                      ngx_esp_log_escape(r->pool, &ctx->session.user),
                      reason);

        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
            return ngx_esp_send_440(r);
        }

        back = r->unparsed_uri;

        if (!ngx_esp_valid_return_url(&back)) {
            back = elcf->default_url;
        }

        return ngx_esp_redirect_to_login(r, ctx, &back, 0);
    }

    len = ctx->session.user.len + 1 + password.len;

    plain.data = ngx_pnalloc(r->pool, len);
    if (plain.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(plain.data, ctx->session.user.data, ctx->session.user.len);
    *p++ = ':';
    ngx_memcpy(p, password.data, password.len);
    plain.len = len;

    value.len = sizeof("Basic ") - 1 + ngx_base64_encoded_length(len);
    value.data = ngx_pnalloc(r->pool, value.len);
    if (value.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_esp_http_wipe_later(r->pool, plain.data, plain.len) != NGX_OK
        || ngx_esp_http_wipe_later(r->pool, value.data, value.len) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(value.data, "Basic ", sizeof("Basic ") - 1);
    encoded.data = p;
    ngx_encode_base64(&encoded, &plain);
    value.len = sizeof("Basic ") - 1 + encoded.len;

    /* for this location's Exchange only (ngx_esp_auth_redirected()) */
    ctx->set_authorization = 1;

    return ngx_esp_http_set_header(r, &r->headers_in.headers,
                                   "Authorization", &value,
                                   &r->headers_in.authorization);
}


/*
 * Any answer, ours or Exchange's, goes to the browser with our cookies:
 * Set-Cookie lines wait in ctx->set_cookie (separated by "\n").
 */

ngx_int_t
ngx_esp_form_header_filter(ngx_http_request_t *r, ngx_esp_ctx_t *ctx)
{
    u_char           *p, *last, *nl;
    ngx_table_elt_t  *h;

    if (ngx_esp_form_answer(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    p = ctx->set_cookie.data;
    last = p + ctx->set_cookie.len;

    while (p < last) {
        nl = ngx_strlchr(p, last, '\n');
        if (nl == NULL) {
            nl = last;
        }

        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        /* zeroed: h->next, since nginx 1.23, must be NULL */
        ngx_memzero(h, sizeof(ngx_table_elt_t));

        h->hash = 1;
        ngx_str_set(&h->key, "Set-Cookie");
        h->value.data = p;
        h->value.len = nl - p;

        p = nl + 1;
    }

    ctx->set_cookie.len = 0;

    return NGX_OK;
}


/*
 * A logoff ends on our signed-out page; and when Exchange sends a user
 * whose session with us is valid to its own login page (its session
 * ended first), our session ends too and the user signs in once, with us.
 */

static ngx_int_t
ngx_esp_form_answer(ngx_http_request_t *r, ngx_esp_ctx_t *ctx)
{
    ngx_str_t             back;
    ngx_table_elt_t      *h;
    ngx_esp_loc_conf_t   *elcf;
    ngx_esp_main_conf_t  *emcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_exchange_esp_module);

    h = ngx_esp_location_header(r);

    if (h == NULL || elcf->domain == NULL
        || elcf->client_auth != NGX_ESP_CLIENT_FORM
        || (r->headers_out.status != NGX_HTTP_MOVED_TEMPORARILY
            && r->headers_out.status != NGX_HTTP_SEE_OTHER))
    {
        return NGX_OK;
    }

    if (ctx->logoff) {
        ngx_str_set(&h->value, NGX_ESP_LOGOUT_PATH);
        return NGX_OK;
    }

    if (elcf->server_auth != NGX_ESP_SERVER_FORM
        || !(ctx->has_session || ctx->handoff)
        || ngx_strlcasestrn(h->value.data, h->value.data + h->value.len,
                            (u_char *) "/auth/logon.aspx", 16 - 1)
           == NULL)
    {
        return NGX_OK;
    }

    if (ctx->handoff) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "esp: Exchange refused the forms login of \"%V\" "
                      "that the directory accepted",
                      ngx_esp_log_escape(r->pool, &ctx->lr.logon_name));
        back = ctx->return_url;

    } else {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "esp: Exchange asks \"%V\" to sign in again: "
                      "ending the session",
                      ngx_esp_log_escape(r->pool, &ctx->session.user));
        back = r->unparsed_uri;
    }

    emcf = ngx_http_get_module_main_conf(r, ngx_exchange_esp_module);

    if (emcf->shm_zone) {
        (void) ngx_esp_session_revoke(emcf->shm_zone, ctx->session.id,
                                      NGX_ESP_SESSION_ID_LEN,
                                      ngx_esp_session_end(elcf, ctx));
        ngx_esp_cluster_revoke_session(ctx->session.id,
                                       NGX_ESP_SESSION_ID_LEN,
                                       ngx_esp_session_end(elcf, ctx));
    }

    ctx->set_cookie.len = 0;

    if (ngx_esp_clear_cookie(r, elcf, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    if (!ngx_esp_valid_return_url(&back)) {
        back = elcf->default_url;
    }

    return ngx_esp_login_url(r, &back, !ctx->handoff, &h->value);
}


/*
 * Whatever the decision, a request that goes on to Exchange carries none
 * of the gate's own cookies: the session is our bearer token, not
 * Exchange's business.
 */

ngx_int_t
ngx_esp_form_strip_cookies(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf)
{
    ngx_str_t  names[3];

    names[0] = elcf->cookie_name;
    names[1] = ngx_esp_csrf_name;

    /* smart lockout's (src/ngx_esp_lockout.c) */
    ngx_str_set(&names[2], NGX_ESP_DEVICE_COOKIE);

    return ngx_esp_http_strip_cookies(r, names, 3);
}


/*
 * The upstream module sets r->headers_out.location only for an absolute
 * Location it did not rewrite; a relative one is just in the list.
 */

static ngx_table_elt_t *
ngx_esp_location_header(ngx_http_request_t *r)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    if (r->headers_out.location) {
        return r->headers_out.location;
    }

    for (part = &r->headers_out.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (h[i].hash && h[i].key.len == sizeof("Location") - 1
                && ngx_strncasecmp(h[i].key.data, (u_char *) "Location",
                                   sizeof("Location") - 1) == 0)
            {
                return &h[i];
            }
        }
    }

    return NULL;
}


static ngx_int_t
ngx_esp_redirect_to_login(ngx_http_request_t *r, ngx_esp_ctx_t *ctx,
    ngx_str_t *back, ngx_uint_t expired)
{
    ngx_str_t  url;

    if (ngx_esp_login_url(r, back, expired, &url) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_esp_redirect(r, &url);
}


static ngx_int_t
ngx_esp_login_url(ngx_http_request_t *r, ngx_str_t *back, ngx_uint_t expired,
    ngx_str_t *url)
{
    u_char  *p;
    size_t   len;

    len = sizeof(NGX_ESP_LOGIN_PATH "?url=") - 1
          + 3 * back->len + sizeof("&reason=timeout") - 1;

    url->data = ngx_pnalloc(r->pool, len);
    if (url->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(url->data, NGX_ESP_LOGIN_PATH "?url=",
                   sizeof(NGX_ESP_LOGIN_PATH "?url=") - 1);
    p = (u_char *) ngx_escape_uri(p, back->data, back->len,
                                  NGX_ESCAPE_URI_COMPONENT);

    if (expired) {
        p = ngx_cpymem(p, "&reason=timeout", sizeof("&reason=timeout") - 1);
    }

    url->len = p - url->data;

    return NGX_OK;
}


static time_t
ngx_esp_session_end(ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx)
{
    if (!ctx->has_session) {
        return ngx_time() + elcf->domain->private_max;
    }

    return ctx->session.issued
           + ((ctx->session.flags & NGX_ESP_SESSION_PRIVATE)
              ? elcf->domain->private_max : elcf->domain->public_max);
}


ngx_int_t
ngx_esp_redirect(ngx_http_request_t *r, ngx_str_t *url)
{
    ngx_table_elt_t  *h;

    ngx_http_clear_location(r);

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* zeroed: h->next, since nginx 1.23, must be NULL */
    ngx_memzero(h, sizeof(ngx_table_elt_t));

    h->hash = 1;
    ngx_str_set(&h->key, "Location");
    h->value = *url;

    r->headers_out.location = h;

    return NGX_HTTP_MOVED_TEMPORARILY;
}


/*
 * Sessions: the first of our cookies that opens, is ours for this domain,
 * is not expired and not revoked.  *stale: 0 = no cookie of ours, 1 = a
 * bad one, 2 = an expired one.
 */

ngx_int_t
ngx_esp_find_session(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx, ngx_uint_t *stale)
{
    time_t                 now, idle, max, since, refresh;
    ngx_int_t              rc;
    u_char                 groups[NGX_ESP_GROUPS_LEN];
    ngx_str_t              name, value, key;
    const char            *reason;
    ngx_esp_cookies_t      c;
    ngx_esp_session_t      s;
    ngx_esp_main_conf_t   *emcf;

    *stale = 0;

    /*
     * the session an earlier location found or made, if it was checked as
     * here; its cookie has left the request
     */

    rc = ngx_esp_auth_reuse(r, elcf, ctx);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_OK && ctx->authenticated) {
        ctx->has_session = 1;
        return NGX_OK;
    }

    if (ngx_esp_groups_fingerprint(r, elcf->permitted_groups, groups)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    emcf = ngx_http_get_module_main_conf(r, ngx_exchange_esp_module);
    now = ngx_time();
    ngx_memzero(&c, sizeof(ngx_esp_cookies_t));

    while (ngx_esp_http_cookie_next(r, &c, &name, &value) == NGX_OK) {

        if (name.len != elcf->cookie_name.len
            || ngx_strncmp(name.data, elcf->cookie_name.data, name.len) != 0)
        {
            continue;
        }

        ngx_memzero(&s, sizeof(ngx_esp_session_t));

        rc = ngx_esp_session_open(r->pool, emcf->keys, &value, &s, &reason);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc != NGX_OK) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "esp: session cookie refused: %s", reason);
            *stale = ngx_max(*stale, 1);
            continue;
        }

        if (s.domain.len != elcf->domain->name.len
            || ngx_strncmp(s.domain.data, elcf->domain->name.data,
                           s.domain.len) != 0)
        {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "esp: session of \"%V\" is for domain \"%V\"",
                          ngx_esp_log_escape(r->pool, &s.user),
                          ngx_esp_log_escape(r->pool, &s.domain));
            *stale = ngx_max(*stale, 1);
            continue;
        }

        if (s.flags & NGX_ESP_SESSION_PRIVATE) {
            idle = elcf->domain->private_idle;
            max = elcf->domain->private_max;

        } else {
            idle = elcf->domain->public_idle;
            max = elcf->domain->public_max;
        }

        if (now - s.last_seen >= idle || now - s.issued >= max
            || s.issued > now + 60)
        {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "esp: session of \"%V\" expired (%s)",
                          ngx_esp_log_escape(r->pool, &s.user),
                          now - s.issued >= max ? "maximum lifetime"
                                                : "idle");
            *stale = 2;
            continue;
        }

        if (emcf->shm_zone) {
            if (ngx_esp_session_is_revoked(emcf->shm_zone, s.id,
                                           NGX_ESP_SESSION_ID_LEN)
                == NGX_OK)
            {
                ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                              "esp: session of \"%V\" was ended by logoff",
                              ngx_esp_log_escape(r->pool, &s.user));
                *stale = ngx_max(*stale, 1);
                continue;
            }

            if (ngx_esp_user_key(r, elcf->domain, &s.user, &key) != NGX_OK) {
                return NGX_ERROR;
            }

            since = ngx_esp_user_revoked_since(emcf->shm_zone, &s.domain,
                                               &key);
            if (since && s.issued <= since) {
                ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                              "esp: session of \"%V\" was revoked",
                              ngx_esp_log_escape(r->pool, &s.user));
                *stale = ngx_max(*stale, 1);
                continue;
            }
        }

        if (elcf->permitted_groups
            && CRYPTO_memcmp(s.groups, groups, NGX_ESP_GROUPS_LEN) != 0)
        {
            /* valid elsewhere: kept, but this location asks for more */
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "esp: session of \"%V\" was not checked against "
                          "the permitted groups here: sign in again",
                          ngx_esp_log_escape(r->pool, &s.user));
            continue;
        }

        ctx->session = s;
        ctx->has_session = 1;
        ctx->authenticated = 1;
        ctx->user = s.user;

        if (ngx_esp_auth_checked(r, elcf, ctx, s.groups) != NGX_OK) {
            return NGX_ERROR;
        }

        /* idle tracking needs a fresh cookie now and then, not always */

        refresh = ngx_max(idle / 10, 1);

        if (now - s.last_seen >= refresh) {
            ctx->session.last_seen = now;

            if (ngx_esp_issue_cookie(r, elcf, ctx) != NGX_OK) {
                return NGX_ERROR;
            }
        }

        return NGX_OK;
    }

    return NGX_DECLINED;
}


ngx_int_t
ngx_esp_issue_cookie(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx)
{
    ngx_str_t             sealed;
    ngx_esp_main_conf_t  *emcf;

    emcf = ngx_http_get_module_main_conf(r, ngx_exchange_esp_module);

    if (ngx_esp_session_seal(r->pool, emcf->keys, &ctx->session, &sealed)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "esp: could not seal a session");
        return NGX_ERROR;
    }

    return ngx_esp_add_cookie(r, ctx, &elcf->cookie_name, &sealed, "/", -1,
                              elcf->samesite);
}


static ngx_int_t
ngx_esp_clear_cookie(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx)
{
    ngx_str_t  empty = ngx_null_string;

    return ngx_esp_add_cookie(r, ctx, &elcf->cookie_name, &empty, "/", 0,
                              elcf->samesite);
}


/*
 * Set-Cookie lines wait in ctx->set_cookie (separated by "\n") for the
 * header filter, since an upstream's answer may come in between.
 */

ngx_int_t
ngx_esp_add_cookie(ngx_http_request_t *r, ngx_esp_ctx_t *ctx,
    ngx_str_t *name, ngx_str_t *value, char *path, time_t max_age,
    ngx_uint_t samesite)
{
    u_char     *p;
    size_t      len;
    ngx_uint_t  secure;

    secure = 0;

#if (NGX_HTTP_SSL)
    secure = (r->connection->ssl != NULL);
#endif

    len = ctx->set_cookie.len + 1 + name->len + 1 + value->len
          + sizeof("; Path=") - 1 + ngx_strlen(path)
          + sizeof("; Max-Age=") - 1 + NGX_TIME_T_LEN
          + sizeof("; Secure; HttpOnly; SameSite=Strict") - 1;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    len = ctx->set_cookie.len;
    if (len) {
        ngx_memcpy(p, ctx->set_cookie.data, len);
    }
    ctx->set_cookie.data = p;
    p += len;

    if (len) {
        *p++ = '\n';
    }

    p = ngx_cpymem(p, name->data, name->len);
    *p++ = '=';
    p = ngx_cpymem(p, value->data, value->len);
    p = ngx_cpymem(p, "; Path=", sizeof("; Path=") - 1);
    p = ngx_cpymem(p, path, ngx_strlen(path));

    if (max_age >= 0) {
        p = ngx_sprintf(p, "; Max-Age=%T", max_age);
    }

    if (secure) {
        p = ngx_cpymem(p, "; Secure", sizeof("; Secure") - 1);
    }

    p = ngx_cpymem(p, "; HttpOnly", sizeof("; HttpOnly") - 1);

    switch (samesite) {

    case NGX_ESP_SAMESITE_STRICT:
        p = ngx_cpymem(p, "; SameSite=Strict", sizeof("; SameSite=Strict") - 1);
        break;

    case NGX_ESP_SAMESITE_LAX:
        p = ngx_cpymem(p, "; SameSite=Lax", sizeof("; SameSite=Lax") - 1);
        break;

    case NGX_ESP_SAMESITE_NONE:
        p = ngx_cpymem(p, "; SameSite=None", sizeof("; SameSite=None") - 1);
        break;

    default: /* NGX_ESP_SAMESITE_OFF */
        break;
    }

    ctx->set_cookie.len = p - ctx->set_cookie.data;

    return NGX_OK;
}


/* the token of the double-submit cookie: the one the browser has, or new */

ngx_int_t
ngx_esp_csrf_token(ngx_http_request_t *r, ngx_str_t *token,
    ngx_uint_t *fresh)
{
    u_char              rnd[NGX_ESP_CSRF_LEN / 2];
    ngx_str_t           name, value;
    ngx_uint_t          k;
    ngx_esp_cookies_t   c;

    *fresh = 0;
    ngx_memzero(&c, sizeof(ngx_esp_cookies_t));

    while (ngx_esp_http_cookie_next(r, &c, &name, &value) == NGX_OK) {

        if (name.len != ngx_esp_csrf_name.len
            || ngx_strncmp(name.data, ngx_esp_csrf_name.data, name.len) != 0
            || value.len != NGX_ESP_CSRF_LEN)
        {
            continue;
        }

        for (k = 0; k < value.len; k++) {
            if (!((value.data[k] >= '0' && value.data[k] <= '9')
                  || (value.data[k] >= 'a' && value.data[k] <= 'f')))
            {
                break;
            }
        }

        if (k == value.len) {
            *token = value;
            return NGX_OK;
        }
    }

    token->data = ngx_pnalloc(r->pool, NGX_ESP_CSRF_LEN);
    if (token->data == NULL) {
        return NGX_ERROR;
    }

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        return NGX_ERROR;
    }

    ngx_hex_dump(token->data, rnd, sizeof(rnd));
    token->len = NGX_ESP_CSRF_LEN;
    *fresh = 1;

    return NGX_OK;
}


/*
 * The token of a page with a form that posts to /_esp/login (the login
 * form, the second factor's page): the browser's double-submit cookie, or
 * a new one that the page's answer sets.  A page for a request the client
 * sent elsewhere (the code page after a change at /_esp/password, whose
 * own token cookie has another path) always sets a new one for the login
 * path.
 */

ngx_int_t
ngx_esp_form_csrf(ngx_http_request_t *r, ngx_esp_ctx_t *ctx,
    ngx_str_t *token)
{
    u_char      rnd[NGX_ESP_CSRF_LEN / 2];
    size_t      len;
    ngx_uint_t  fresh;

    /* the client's own request line: r->uri may be the return URL's now */

    len = sizeof(NGX_ESP_LOGIN_PATH) - 1;

    if (r->unparsed_uri.len >= len
        && ngx_strncmp(r->unparsed_uri.data, NGX_ESP_LOGIN_PATH, len) == 0
        && (r->unparsed_uri.len == len || r->unparsed_uri.data[len] == '?'))
    {
        if (ngx_esp_csrf_token(r, token, &fresh) != NGX_OK) {
            return NGX_ERROR;
        }

    } else {
        token->data = ngx_pnalloc(r->pool, NGX_ESP_CSRF_LEN);
        if (token->data == NULL || RAND_bytes(rnd, sizeof(rnd)) != 1) {
            return NGX_ERROR;
        }

        ngx_hex_dump(token->data, rnd, sizeof(rnd));
        token->len = NGX_ESP_CSRF_LEN;
        fresh = 1;
    }

    if (fresh
        && ngx_esp_add_cookie(r, ctx, &ngx_esp_csrf_name, token,
                              NGX_ESP_LOGIN_PATH, -1,
                              NGX_ESP_SAMESITE_STRICT)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* a login that must start again: the form, "this form has expired" */

ngx_int_t
ngx_esp_form_again(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx, ngx_str_t *url)
{
    return ngx_esp_show_form(r, elcf, ctx, NGX_ESP_MSG_FORM_EXPIRED, url,
                             NULL);
}


static ngx_int_t
ngx_esp_form_page(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx, ngx_uint_t status, ngx_esp_text_e msg,
    ngx_str_t *url, ngx_str_t *user)
{
    u_char         *tpl, *p;
    size_t          len;
    ngx_str_t       token, body, pp, hint, empty = ngx_null_string;
    ngx_str_t       pw_url, pw_text, pw_class;
    ngx_uint_t      n;
    ngx_esp_var_t   vars[NGX_ESP_MAX_VARS];

    ctx->de = ngx_esp_is_german(r, elcf);

    if (ngx_esp_form_csrf(r, ctx, &token) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the user name hint names this domain's own forms */

    len = sizeof("For example user@ or \\user") - 1 + 24
          + elcf->domain->logon_domain.len + elcf->domain->netbios_domain.len;

    hint.data = ngx_pnalloc(r->pool, len);
    if (hint.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (elcf->domain->logon_domain.len && elcf->domain->netbios_domain.len) {
        p = ngx_sprintf(hint.data,
                        ctx->de ? "Zum Beispiel benutzer@%V oder %V\\benutzer"
                                : "For example user@%V or %V\\user",
                        &elcf->domain->logon_domain,
                        &elcf->domain->netbios_domain);
        hint.len = p - hint.data;

    } else {
        hint.len = 0;
    }

    n = 0;

#define ngx_esp_var(nm, val, rw)                                              \
    ngx_str_set(&vars[n].name, nm);                                           \
    vars[n].value = val;                                                      \
    vars[n].raw = rw;                                                         \
    n++

#define ngx_esp_var_text(nm, t)                                               \
    ngx_str_set(&vars[n].name, nm);                                           \
    vars[n].value.data = (u_char *) ngx_esp_text(ctx, t);                     \
    vars[n].value.len = ngx_strlen(vars[n].value.data);                       \
    vars[n].raw = 0;                                                          \
    n++

    ngx_esp_var_text("t_computer", NGX_ESP_T_COMPUTER);
    ngx_esp_var_text("t_public", NGX_ESP_T_PUBLIC);
    ngx_esp_var_text("t_public_hint", NGX_ESP_T_PUBLIC_HINT);
    ngx_esp_var_text("t_private", NGX_ESP_T_PRIVATE);
    ngx_esp_var_text("t_private_hint", NGX_ESP_T_PRIVATE_HINT);

    pp.len = 0;

    if (elcf->public_private
        && ngx_esp_render(r, ngx_esp_page_public_private,
                          NGX_ESP_PAGE_PUBLIC_PRIVATE_LEN, vars, n, &pp)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    n = 0;

    ngx_esp_var("lang", empty, 0);
    ngx_str_set(&vars[n - 1].value, "en");
    if (ctx->de) {
        ngx_str_set(&vars[n - 1].value, "de");
    }

    ngx_esp_var("title", elcf->title, 0);
    ngx_esp_var("greeting", elcf->greeting, 0);
    ngx_esp_var("action", ngx_esp_login_path, 0);
    ngx_esp_var("url", *url, 0);
    ngx_esp_var("csrf", token, 0);
    ngx_esp_var("username", user ? *user : empty, 0);
    ngx_esp_var_text("message", msg);
    ngx_esp_var("message_class", empty, 0);

    switch (msg) {
    case NGX_ESP_MSG_NONE:
        ngx_str_set(&vars[n - 1].value, "msg hidden");
        break;
    case NGX_ESP_MSG_SESSION_EXPIRED:
    case NGX_ESP_MSG_SIGNED_OUT:
    case NGX_ESP_MSG_PASSWORD_CHANGE:
        ngx_str_set(&vars[n - 1].value, "msg info");
        break;
    default:
        ngx_str_set(&vars[n - 1].value, "msg");
        break;
    }

    ngx_esp_var("public_private", pp, 1);
    ngx_esp_var_text("t_heading", NGX_ESP_T_HEADING);
    ngx_esp_var_text("t_username", NGX_ESP_T_USERNAME);
    ngx_esp_var("t_username_hint", hint, 0);
    ngx_esp_var_text("t_password", NGX_ESP_T_PASSWORD);
    ngx_esp_var_text("t_submit", NGX_ESP_T_SUBMIT);
    ngx_esp_var_text("t_footer", NGX_ESP_T_FOOTER);

    if (ngx_esp_password_link(r, elcf, ctx->de, url, &pw_url, &pw_text,
                              &pw_class)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_esp_var("password_url", pw_url, 0);
    ngx_esp_var("password_class", pw_class, 0);
    ngx_esp_var("t_change_password", pw_text, 0);

    if (elcf->login_page.len) {
        tpl = elcf->login_page.data;
        len = elcf->login_page.len;

    } else {
        tpl = ngx_esp_page_login;
        len = NGX_ESP_PAGE_LOGIN_LEN;
    }

    if (ngx_esp_render(r, tpl, len, vars, n, &body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_esp_form_send(r, status, &body);
}


static ngx_int_t
ngx_esp_logout_page(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx)
{
    ngx_str_t       body, lang, login, pw_url, pw_text, pw_class;
    ngx_uint_t      n;
    ngx_esp_var_t   vars[NGX_ESP_MAX_VARS];

    ctx->de = ngx_esp_is_german(r, elcf);

    if (ctx->de) {
        ngx_str_set(&lang, "de");

    } else {
        ngx_str_set(&lang, "en");
    }

    login = elcf->default_url;
    n = 0;

    ngx_esp_var("lang", lang, 0);
    ngx_esp_var("title", elcf->title, 0);
    ngx_esp_var_text("t_heading", NGX_ESP_T_LOGOUT_HEADING);
    ngx_esp_var_text("t_text", NGX_ESP_T_LOGOUT_TEXT);
    ngx_esp_var_text("t_again", NGX_ESP_T_AGAIN);
    ngx_esp_var("login_url", login, 0);

    if (ngx_esp_password_link(r, elcf, ctx->de, &login, &pw_url, &pw_text,
                              &pw_class)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_esp_var("password_url", pw_url, 0);
    ngx_esp_var("password_class", pw_class, 0);
    ngx_esp_var("t_change_password", pw_text, 0);

#undef ngx_esp_var
#undef ngx_esp_var_text

    if (ngx_esp_render(r, ngx_esp_page_logout, NGX_ESP_PAGE_LOGOUT_LEN, vars,
                       n, &body)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_esp_form_send(r, NGX_HTTP_OK, &body);
}


u_char *
ngx_esp_form_template(ngx_uint_t which, size_t *len)
{
    if (which == NGX_ESP_TEMPLATE_PASSWORD) {
        *len = NGX_ESP_PAGE_PASSWORD_LEN;
        return ngx_esp_page_password;
    }

    *len = NGX_ESP_PAGE_EXPIRY_LEN;
    return ngx_esp_page_expiry;
}


/* "{{name}}" becomes the HTML-escaped value; unknown names stay empty */

ngx_int_t
ngx_esp_render(ngx_http_request_t *r, u_char *tpl, size_t len,
    ngx_esp_var_t *vars, ngx_uint_t n, ngx_str_t *out)
{
    u_char      *p, *last, *end, *dst;
    size_t       size;
    ngx_uint_t   i, pass;

    size = 0;
    dst = NULL;

    for (pass = 0; pass < 2; pass++) {

        if (pass == 1) {
            out->data = ngx_pnalloc(r->pool, size);
            if (out->data == NULL) {
                return NGX_ERROR;
            }

            dst = out->data;
        }

        p = tpl;
        last = tpl + len;

        while (p < last) {

            if (p + 4 > last || p[0] != '{' || p[1] != '{') {
                if (pass) {
                    *dst++ = *p;
                }

                size++;
                p++;
                continue;
            }

            end = ngx_strlchr(p + 2, last, '}');

            if (end == NULL || end + 1 >= last || end[1] != '}') {
                if (pass) {
                    *dst++ = *p;
                }

                size++;
                p++;
                continue;
            }

            for (i = 0; i < n; i++) {
                if (vars[i].name.len == (size_t) (end - p - 2)
                    && ngx_strncmp(vars[i].name.data, p + 2,
                                   vars[i].name.len) == 0)
                {
                    break;
                }
            }

            if (i < n) {
                if (vars[i].raw) {
                    size += vars[i].value.len;
                    if (pass) {
                        dst = ngx_cpymem(dst, vars[i].value.data,
                                         vars[i].value.len);
                    }

                } else {
                    size += vars[i].value.len
                            + ngx_escape_html(NULL, vars[i].value.data,
                                              vars[i].value.len);
                    if (pass) {
                        dst = (u_char *) ngx_escape_html(dst,
                                                         vars[i].value.data,
                                                         vars[i].value.len);
                    }
                }
            }

            p = end + 2;
        }
    }

    out->len = dst - out->data;

    return NGX_OK;
}


/* the second factor's page (src/ngx_esp_mfa.c): the pages live here */

ngx_int_t
ngx_esp_form_render_mfa(ngx_http_request_t *r, ngx_esp_var_t *vars,
    ngx_uint_t n, ngx_str_t *out)
{
    return ngx_esp_render(r, ngx_esp_page_mfa, NGX_ESP_PAGE_MFA_LEN, vars, n,
                          out);
}


/* a page in the access phase: the request ends here */

ngx_int_t
ngx_esp_form_send(ngx_http_request_t *r, ngx_uint_t status, ngx_str_t *body)
{
    ngx_str_t  type;

    ngx_str_set(&type, "text/html; charset=utf-8");

    ngx_http_finalize_request(r, ngx_esp_http_send(r, status, &type,
                                                   sizeof("text/html") - 1,
                                                   body));
    return NGX_DONE;
}


/* what Exchange answers a script that has lost its session */

static ngx_int_t
ngx_esp_send_440(ngx_http_request_t *r)
{
    ngx_str_t  body;

    ngx_str_set(&r->headers_out.status_line, "440 Login Timeout");
    ngx_str_set(&body, "<html><body><h1>440 Login Timeout</h1>"
                       "</body></html>\n");

    return ngx_esp_form_send(r, 440, &body);
}


/*
 * The form body: url-encoded fields; each known one at most once, UTF-8,
 * no control characters; unknown fields are ignored (browsers may add
 * some); anything malformed refuses the whole form.  NGX_OK, or the
 * status to refuse it with.
 */

static ngx_int_t
ngx_esp_parse_form(ngx_http_request_t *r, ngx_esp_login_form_t *f,
    const char **reason)
{
    ngx_int_t  rc;

    static ngx_esp_form_field_t  fields[] = {
        { ngx_string("username"), offsetof(ngx_esp_login_form_t, username) },
        { ngx_string("password"), offsetof(ngx_esp_login_form_t, password) },
        { ngx_string("url"), offsetof(ngx_esp_login_form_t, url) },
        { ngx_string("csrf"), offsetof(ngx_esp_login_form_t, csrf) },
        { ngx_string("trusted"), offsetof(ngx_esp_login_form_t, trusted) },
        { ngx_null_string, 0 }
    };

    rc = ngx_esp_form_fields(r, f, fields, reason);
    if (rc != NGX_OK) {
        return rc;
    }

    if (f->username.len > NGX_ESP_MAX_USER
        || f->password.len > NGX_ESP_MAX_PASSWORD
        || f->url.len > NGX_ESP_MAX_URL)
    {
        *reason = "a field is too long";
        return NGX_HTTP_BAD_REQUEST;
    }

    return NGX_OK;
}


ngx_int_t
ngx_esp_form_fields(ngx_http_request_t *r, void *f,
    ngx_esp_form_field_t *fields, const char **reason)
{
    u_char      *p, *last;
    ngx_int_t    rc;
    ngx_str_t    body, name, value, *field;
    ngx_uint_t   i;

    rc = ngx_esp_http_body(r, NGX_ESP_MAX_LOGIN_BODY, 1, &body, reason);
    if (rc != NGX_OK) {
        return rc;
    }

    p = body.data;
    last = p + body.len;

    while (ngx_esp_http_form_pair(&p, last, &name, &value)) {

        field = NULL;

        for (i = 0; fields[i].name.len; i++) {
            if (name.len == fields[i].name.len
                && ngx_strncmp(name.data, fields[i].name.data, name.len) == 0)
            {
                field = (ngx_str_t *) ((u_char *) f + fields[i].offset);
                break;
            }
        }

        if (field == NULL) {
            continue;
        }

        if (field->data) {
            *reason = "a field appears twice";
            return NGX_HTTP_BAD_REQUEST;
        }

        if (value.data == NULL) {
            value.data = name.data + name.len;
        }

        rc = ngx_esp_http_form_decode(r->pool, &value, field, 1, reason);

        if (rc == NGX_ERROR) {
            *reason = "out of memory";
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc != NGX_OK) {
            return NGX_HTTP_BAD_REQUEST;
        }
    }

    return NGX_OK;
}


/* only a path on this site: "/x", never "//host", "/\host" or "http:" */

ngx_uint_t
ngx_esp_valid_return_url(ngx_str_t *url)
{
    size_t  i;

    if (url->len == 0 || url->len > NGX_ESP_MAX_URL || url->data[0] != '/') {
        return 0;
    }

    if (url->len > 1 && (url->data[1] == '/' || url->data[1] == '\\')) {
        return 0;
    }

    for (i = 0; i < url->len; i++) {
        if (url->data[i] <= 0x20 || url->data[i] == 0x7f
            || url->data[i] == '\\' || url->data[i] >= 0x80)
        {
            return 0;
        }
    }

    if (url->len >= sizeof("/_esp/") - 1
        && ngx_strncasecmp(url->data, (u_char *) "/_esp/",
                           sizeof("/_esp/") - 1) == 0)
    {
        return 0;
    }

    return 1;
}


ngx_int_t
ngx_esp_arg_url(ngx_http_request_t *r, ngx_str_t *url)
{
    u_char              *dst, *src;
    ngx_str_t            raw;
    ngx_esp_loc_conf_t  *elcf;

    if (ngx_http_arg(r, (u_char *) "url", 3, &raw) != NGX_OK
        || raw.len == 0 || raw.len > NGX_ESP_MAX_URL)
    {
        goto fallback;
    }

    url->data = ngx_pnalloc(r->pool, raw.len);
    if (url->data == NULL) {
        return NGX_ERROR;
    }

    /* all of it: NGX_UNESCAPE_URI would stop at an encoded "?" */

    dst = url->data;
    src = raw.data;
    ngx_unescape_uri(&dst, &src, raw.len, 0);
    url->len = dst - url->data;

    if (ngx_esp_valid_return_url(url)) {
        return NGX_OK;
    }

fallback:

    elcf = ngx_http_get_module_loc_conf(r, ngx_exchange_esp_module);
    *url = elcf->default_url;

    return NGX_OK;
}


/*
 * https://host[:port]/path, as the browser reached us: the host that
 * passed esp_allowed_hosts, with the port of the Host header if that
 * names the same host (an absolute request line may disagree with it);
 * or "other" host on that scheme and port
 */

ngx_int_t
ngx_esp_self_url(ngx_http_request_t *r, ngx_str_t *other, ngx_str_t *path,
    ngx_str_t *out)
{
    u_char     *p;
    size_t      len;
    ngx_str_t   host, scheme, port, *v;

    ngx_str_set(&scheme, "http://");

#if (NGX_HTTP_SSL)
    if (r->connection->ssl) {
        ngx_str_set(&scheme, "https://");
    }
#endif

    host = r->headers_in.server;
    ngx_str_null(&port);

    if (r->headers_in.host) {
        v = &r->headers_in.host->value;

        /* the port the browser used, if it is one: digits only */

        if (v->len > host.len + 1 && v->len <= host.len + 6
            && v->data[host.len] == ':'
            && ngx_strncasecmp(v->data, host.data, host.len) == 0
            && ngx_atoi(v->data + host.len + 1, v->len - host.len - 1)
               != NGX_ERROR)
        {
            port.data = v->data + host.len;
            port.len = v->len - host.len;
        }
    }

    if (other) {
        host = *other;
    }

    len = scheme.len + host.len + port.len + path->len;

    out->data = ngx_pnalloc(r->pool, len);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(out->data, scheme.data, scheme.len);
    p = ngx_cpymem(p, host.data, host.len);

    if (port.len) {
        p = ngx_cpymem(p, port.data, port.len);
    }

    p = ngx_cpymem(p, path->data, path->len);
    out->len = p - out->data;

    return NGX_OK;
}


static size_t
ngx_esp_form_escaped_len(ngx_str_t *src)
{
    size_t  i, n;

    n = 0;

    for (i = 0; i < src->len; i++) {
        n += (ngx_esp_isalnum(src->data[i]) || src->data[i] == '-'
              || src->data[i] == '_' || src->data[i] == '.'
              || src->data[i] == '~') ? 1 : 3;
    }

    return n;
}


static u_char *
ngx_esp_form_escape(u_char *dst, ngx_str_t *src)
{
    u_char         c;
    size_t         i;
    static u_char  hex[] = "0123456789ABCDEF";

    for (i = 0; i < src->len; i++) {
        c = src->data[i];

        if (ngx_esp_isalnum(c) || c == '-' || c == '_' || c == '.'
            || c == '~')
        {
            *dst++ = c;
            continue;
        }

        *dst++ = '%';
        *dst++ = hex[c >> 4];
        *dst++ = hex[c & 0xf];
    }

    return dst;
}


/* German when the first of "en" and "de" the browser names is "de" */

ngx_uint_t
ngx_esp_is_german(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf)
{
    u_char      *p, *last;
    ngx_str_t    v;

    if (elcf->lang != NGX_ESP_LANG_AUTO) {
        return elcf->lang == NGX_ESP_LANG_DE;
    }

#if (NGX_HTTP_HEADERS)
    if (r->headers_in.accept_language == NULL) {
        return 0;
    }

    v = r->headers_in.accept_language->value;
#else
    return 0;
#endif

    p = v.data;
    last = v.data + v.len;

    while (p < last) {

        while (p < last && (*p == ' ' || *p == ',')) {
            p++;
        }

        if (last - p >= 2) {
            if ((p[0] | 0x20) == 'd' && (p[1] | 0x20) == 'e'
                && (last - p == 2 || p[2] == '-' || p[2] == ';'
                    || p[2] == ',' || p[2] == ' '))
            {
                return 1;
            }

            if ((p[0] | 0x20) == 'e' && (p[1] | 0x20) == 'n'
                && (last - p == 2 || p[2] == '-' || p[2] == ';'
                    || p[2] == ',' || p[2] == ' '))
            {
                return 0;
            }
        }

        while (p < last && *p != ',') {
            p++;
        }
    }

    return 0;
}


static char *
ngx_esp_text(ngx_esp_ctx_t *ctx, ngx_esp_text_e t)
{
    return ctx->de ? ngx_esp_texts[t].de : ngx_esp_texts[t].en;
}


/* esp_cookie name [samesite=lax|strict|none|off] */

char *
ngx_esp_cookie(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_esp_loc_conf_t *elcf = conf;

    ngx_str_t   *value, v;
    ngx_uint_t   i;

    if (elcf->cookie_name.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (i = 0; i < value[1].len; i++) {
        if (!(ngx_esp_isalnum(value[1].data[i]) || value[1].data[i] == '_'
              || value[1].data[i] == '-'))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid cookie name \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    if (value[1].len == 0) {
        return "has an empty cookie name";
    }

    elcf->cookie_name = value[1];

    if (cf->args->nelts == 2) {
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(value[2].data, "samesite=", 9) != 0) {
        goto invalid;
    }

    v.data = value[2].data + 9;
    v.len = value[2].len - 9;

    if (v.len == 3 && ngx_strncasecmp(v.data, (u_char *) "lax", 3) == 0) {
        elcf->samesite = NGX_ESP_SAMESITE_LAX;

    } else if (v.len == 6
               && ngx_strncasecmp(v.data, (u_char *) "strict", 6) == 0)
    {
        elcf->samesite = NGX_ESP_SAMESITE_STRICT;

    } else if (v.len == 4
               && ngx_strncasecmp(v.data, (u_char *) "none", 4) == 0)
    {
        elcf->samesite = NGX_ESP_SAMESITE_NONE;

    } else if (v.len == 3 && ngx_strncasecmp(v.data, (u_char *) "off", 3) == 0)
    {
        elcf->samesite = NGX_ESP_SAMESITE_OFF;

    } else {
        goto invalid;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\": expected "
                       "\"samesite=lax|strict|none|off\"", &value[2]);
    return NGX_CONF_ERROR;
}


/* esp_login_page file: a custom template, read once */

char *
ngx_esp_login_page(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_esp_loc_conf_t *elcf = conf;

    u_char           *p, *last, *end;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_str_t        *value, name;
    ngx_uint_t        i, known;
    ngx_file_info_t   fi;

    static char  *names[] = {
        "lang", "title", "greeting", "action", "url", "csrf", "username",
        "message", "message_class", "public_private", "t_heading",
        "t_username", "t_username_hint", "t_password", "t_submit",
        "t_footer", "password_url", "password_class", "t_change_password",
        NULL
    };

    if (elcf->login_page.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    name = value[1];

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    fd = ngx_open_file(name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%s\" failed", name.data);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) == 0 || ngx_file_size(&fi) > 256 * 1024)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "login page \"%s\" must hold 1 byte to 256k",
                           name.data);
        (void) ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    elcf->login_page.len = ngx_file_size(&fi);
    elcf->login_page.data = ngx_pnalloc(cf->pool, elcf->login_page.len);
    if (elcf->login_page.data == NULL) {
        (void) ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    n = ngx_read_fd(fd, elcf->login_page.data, elcf->login_page.len);
    (void) ngx_close_file(fd);

    if (n != (ssize_t) elcf->login_page.len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_read_fd_n " \"%s\" failed", name.data);
        return NGX_CONF_ERROR;
    }

    /* every placeholder must be one the module fills */

    p = elcf->login_page.data;
    last = p + elcf->login_page.len;

    while ((p = ngx_strlcasestrn(p, last, (u_char *) "{{", 2 - 1)) != NULL) {

        end = ngx_strlcasestrn(p + 2, last, (u_char *) "}}", 2 - 1);
        if (end == NULL) {
            break;
        }

        known = 0;

        for (i = 0; names[i]; i++) {
            if ((size_t) (end - p - 2) == ngx_strlen(names[i])
                && ngx_strncmp(p + 2, names[i], end - p - 2) == 0)
            {
                known = 1;
                break;
            }
        }

        if (!known) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "unknown placeholder \"%*s\" in login page "
                               "\"%s\"", end - p + 2, p, name.data);
            return NGX_CONF_ERROR;
        }

        p = end + 2;
    }

    if (ngx_strlcasestrn(elcf->login_page.data, last,
                         (u_char *) "{{csrf}}", 8 - 1) == NULL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "login page \"%s\" has no {{csrf}}: the form "
                           "would always be refused", name.data);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* a path on this site: "/..." */

static char *
ngx_esp_local_url(ngx_conf_t *cf, void *post, void *data)
{
    ngx_str_t  *url = data;

    if (url->len == 0 || url->data[0] != '/'
        || (url->len > 1 && (url->data[1] == '/' || url->data[1] == '\\')))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must be a path on this site, such as "
                           "\"/owa/\"", url);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* the User Password Form: a path, or an https URL */

static char *
ngx_esp_password_form(ngx_conf_t *cf, void *post, void *data)
{
    ngx_str_t  *url = data;

    ngx_uint_t  i;

    for (i = 0; i < url->len; i++) {
        if (url->data[i] <= 0x20 || url->data[i] == 0x7f) {
            goto invalid;
        }
    }

    if (url->len > 8
        && ngx_strncasecmp(url->data, (u_char *) "https://", 8) == 0)
    {
        return NGX_CONF_OK;
    }

    if (url->len && url->data[0] == '/'
        && !(url->len > 1 && (url->data[1] == '/' || url->data[1] == '\\')))
    {
        return NGX_CONF_OK;
    }

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"%V\" must be an https:// URL or a path, such as "
                       "\"https://mail.contoso.com/owa/auth/"
                       "expiredpassword.aspx?url=/owa/auth.owa\"", url);
    return NGX_CONF_ERROR;
}
