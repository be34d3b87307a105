
/*
 * Copyright (C) ngx_exchange_esp authors
 */


/*
 * The OWA download host: a one-time hand-off of the session from the main
 * host (see ngx_esp_download.h).
 *
 * A token is base64url of a value sealed under the session keys with
 * NGX_ESP_DOWNLOAD_LABEL as additional data (so that it never opens as a
 * session cookie, nor a cookie as a token), whose plaintext is
 *
 *     version (1) | expires (8) | nonce (16) | binding (16)
 *     | session id (16)
 *     | issued (8) | flags (1) | groups (8) | host length (1) | host
 *     | domain length (1) | domain | user length (2) | user
 *     | url length (2) | url
 *
 * with integers in network order.  Everything in the URL the client could
 * change is either sealed (the host, the return path) or checked against
 * the configuration (the main host redirects only to its configured
 * download host; the download host only to a local path).
 *
 * The binding is a random value the download host gave the browser in a
 * cookie before it sent it to the main host: a token works only in the
 * browser that asked for it, so neither a token seen elsewhere (a log of
 * URLs) nor an attacker's own token passed to a victim opens anything.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "ngx_esp_auth.h"
#include "ngx_esp_cluster.h"
#include "ngx_esp_download.h"
#include "ngx_esp_form.h"
#include "ngx_esp_http.h"
#include "ngx_esp_log.h"
#include "ngx_esp_shm.h"


#define NGX_ESP_DOWNLOAD_LABEL    "ngx_exchange_esp download hand-off v1"
#define NGX_ESP_DOWNLOAD_VERSION  1
#define NGX_ESP_DOWNLOAD_NONCE    16
#define NGX_ESP_DOWNLOAD_BINDING  16
#define NGX_ESP_DOWNLOAD_FIXED    (1 + 8 + NGX_ESP_DOWNLOAD_NONCE           \
                                   + NGX_ESP_DOWNLOAD_BINDING                \
                                   + NGX_ESP_SESSION_ID_LEN + 8 + 1          \
                                   + NGX_ESP_GROUPS_LEN)
#define NGX_ESP_DOWNLOAD_MAX_HOST 253

/* the nonce is kept in the zone among revoked session ids: apart from them */
#define NGX_ESP_DOWNLOAD_ONCE     "download nonce:"


typedef struct {
    ngx_str_t                  host;         /* esp_download_host */
    ngx_str_t                  main;         /* esp_download_for */
    u_char                    *file;         /* where it was set */
    ngx_uint_t                 line;
} ngx_esp_download_srv_conf_t;


typedef struct {
    time_t                     expires;
    u_char                    *nonce;
    u_char                     binding[NGX_ESP_DOWNLOAD_BINDING];
    ngx_esp_session_t          session;
    ngx_str_t                  host;
    ngx_str_t                  url;
} ngx_esp_download_token_t;


static ngx_int_t ngx_esp_download_issue(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx,
    ngx_esp_download_srv_conf_t *dscf);
static ngx_int_t ngx_esp_download_accept(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);
static const char *ngx_esp_download_check(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_download_token_t *t);
static ngx_int_t ngx_esp_download_refuse(ngx_http_request_t *r,
    const char *why);
static ngx_int_t ngx_esp_download_seal(ngx_http_request_t *r,
    ngx_esp_download_token_t *t, ngx_str_t *out);
static const char *ngx_esp_download_open(ngx_http_request_t *r,
    ngx_str_t *sealed, ngx_esp_download_token_t *t);
static ngx_int_t ngx_esp_download_arg(ngx_http_request_t *r, char *name,
    ngx_str_t *value);
static ngx_int_t ngx_esp_download_binding(ngx_str_t *hex, u_char *binding);
static ngx_uint_t ngx_esp_download_bound(ngx_http_request_t *r,
    ngx_esp_download_token_t *t);
static ngx_uint_t ngx_esp_download_is(ngx_http_request_t *r, char *path,
    size_t len);

static void *ngx_esp_download_create_srv_conf(ngx_conf_t *cf);
static ngx_int_t ngx_esp_download_init(ngx_conf_t *cf);
static ngx_uint_t ngx_esp_download_names(ngx_http_core_srv_conf_t *cscf,
    ngx_str_t *name);
static char *ngx_esp_download_host(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_command_t  ngx_esp_download_commands[] = {

    { ngx_string("esp_download_host"),
      NGX_HTTP_SRV_CONF|NGX_CONF_TAKE1,
      ngx_esp_download_host,
      NGX_HTTP_SRV_CONF_OFFSET,
      offsetof(ngx_esp_download_srv_conf_t, host),
      NULL },

    { ngx_string("esp_download_for"),
      NGX_HTTP_SRV_CONF|NGX_CONF_TAKE1,
      ngx_esp_download_host,
      NGX_HTTP_SRV_CONF_OFFSET,
      offsetof(ngx_esp_download_srv_conf_t, main),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_esp_download_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_esp_download_init,                 /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    ngx_esp_download_create_srv_conf,      /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_esp_download_module = {
    NGX_MODULE_V1,
    &ngx_esp_download_module_ctx,          /* module context */
    ngx_esp_download_commands,             /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


ngx_int_t
ngx_esp_download_endpoint(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx)
{
    ngx_esp_download_srv_conf_t  *dscf;

    dscf = ngx_http_get_module_srv_conf(r, ngx_esp_download_module);

    if (dscf->host.len
        && ngx_esp_download_is(r, NGX_ESP_DOWNLOAD_PATH,
                               sizeof(NGX_ESP_DOWNLOAD_PATH) - 1))
    {
        return ngx_esp_download_issue(r, elcf, ctx, dscf);
    }

    if (dscf->main.len
        && ngx_esp_download_is(r, NGX_ESP_HANDOFF_PATH,
                               sizeof(NGX_ESP_HANDOFF_PATH) - 1))
    {
        return ngx_esp_download_accept(r, elcf, ctx);
    }

    return NGX_DECLINED;
}


ngx_int_t
ngx_esp_download_redirect(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx, ngx_str_t *back)
{
    u_char                       *p, binding[NGX_ESP_DOWNLOAD_BINDING];
    u_char                        hex[2 * NGX_ESP_DOWNLOAD_BINDING];
    ngx_str_t                     path, url, name, value;
    ngx_esp_download_srv_conf_t  *dscf;

    dscf = ngx_http_get_module_srv_conf(r, ngx_esp_download_module);

    if (dscf->main.len == 0) {
        return NGX_DECLINED;
    }

    if (RAND_bytes(binding, NGX_ESP_DOWNLOAD_BINDING) != 1) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_hex_dump(hex, binding, NGX_ESP_DOWNLOAD_BINDING);

    path.data = ngx_pnalloc(r->pool, sizeof(NGX_ESP_DOWNLOAD_PATH "?url=") - 1
                                     + 3 * back->len + sizeof("&b=") - 1
                                     + sizeof(hex));
    if (path.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(path.data, NGX_ESP_DOWNLOAD_PATH "?url=",
                   sizeof(NGX_ESP_DOWNLOAD_PATH "?url=") - 1);
    p = (u_char *) ngx_escape_uri(p, back->data, back->len,
                                  NGX_ESCAPE_URI_COMPONENT);
    p = ngx_cpymem(p, "&b=", sizeof("&b=") - 1);
    p = ngx_cpymem(p, hex, sizeof(hex));
    path.len = p - path.data;

    /* the way back to this host carries it: only the hand-off path sees it */

    ngx_str_set(&name, NGX_ESP_HANDOFF_COOKIE);
    value.data = hex;
    value.len = sizeof(hex);

    if (ngx_esp_add_cookie(r, ctx, &name, &value, NGX_ESP_HANDOFF_PATH,
                           2 * NGX_ESP_DOWNLOAD_TTL, NGX_ESP_SAMESITE_LAX)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_esp_self_url(r, &dscf->main, &path, &url) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "esp download: no session, to \"%V\"", &url);

    return ngx_esp_redirect(r, &url);
}


/* the main host: the session, sealed for the download host */

static ngx_int_t
ngx_esp_download_issue(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx, ngx_esp_download_srv_conf_t *dscf)
{
    u_char                    *p, nonce[NGX_ESP_DOWNLOAD_NONCE];
    ngx_int_t                  rc;
    ngx_str_t                  url, sealed, path, dest, b;
    ngx_uint_t                 stale;
    ngx_esp_download_token_t   t;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_esp_download_arg(r, "url", &url);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc != NGX_OK || !ngx_esp_valid_return_url(&url)) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "esp: download hand-off refused: the return URL is "
                      "not a local path");
        return NGX_HTTP_BAD_REQUEST;
    }

    if (ngx_http_arg(r, (u_char *) "b", 1, &b) != NGX_OK
        || ngx_esp_download_binding(&b, t.binding) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "esp: download hand-off refused: no browser binding "
                      "(not sent by the download host)");
        return NGX_HTTP_BAD_REQUEST;
    }

    rc = ngx_esp_find_session(r, elcf, ctx, &stale);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc != NGX_OK) {
        /*
         * A login cannot return to a gate path: after it the user starts
         * again from OWA, where attachments are.
         */

        path.len = sizeof(NGX_ESP_LOGIN_PATH "?url=") - 1
                   + 3 * elcf->default_url.len;
        path.data = ngx_pnalloc(r->pool, path.len);
        if (path.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = ngx_cpymem(path.data, NGX_ESP_LOGIN_PATH "?url=",
                       sizeof(NGX_ESP_LOGIN_PATH "?url=") - 1);
        p = (u_char *) ngx_escape_uri(p, elcf->default_url.data,
                                      elcf->default_url.len,
                                      NGX_ESCAPE_URI_COMPONENT);
        path.len = p - path.data;

        return ngx_esp_redirect(r, &path);
    }

    if (RAND_bytes(nonce, NGX_ESP_DOWNLOAD_NONCE) != 1) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    t.expires = ngx_time() + NGX_ESP_DOWNLOAD_TTL;
    t.nonce = nonce;
    t.session = ctx->session;
    t.host = dscf->host;
    t.url = url;

    if (ngx_esp_download_seal(r, &t, &sealed) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    path.len = sizeof(NGX_ESP_HANDOFF_PATH "?t=") - 1 + sealed.len;
    path.data = ngx_pnalloc(r->pool, path.len);
    if (path.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(path.data, NGX_ESP_HANDOFF_PATH "?t=",
                   sizeof(NGX_ESP_HANDOFF_PATH "?t=") - 1);
    ngx_memcpy(p, sealed.data, sealed.len);

    if (ngx_esp_self_url(r, &dscf->host, &path, &dest) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "esp: download hand-off user=\"%V\" to host %V",
                  ngx_esp_log_escape(r->pool, &ctx->session.user),
                  &dscf->host);

    return ngx_esp_redirect(r, &dest);
}


/* the download host: the token becomes its own session cookie */

static ngx_int_t
ngx_esp_download_accept(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx)
{
    u_char                    *p;
    ngx_int_t                  rc;
    ngx_str_t                  sealed, name, empty;
    const char                *why;
    ngx_esp_main_conf_t       *emcf;
    ngx_esp_download_token_t   t;
    u_char                     once[sizeof(NGX_ESP_DOWNLOAD_ONCE) - 1
                                    + NGX_ESP_DOWNLOAD_NONCE];

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_esp_download_arg(r, "t", &sealed);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc != NGX_OK) {
        return ngx_esp_download_refuse(r, "no token");
    }

    why = ngx_esp_download_open(r, &sealed, &t);

    if (why == NULL) {
        why = ngx_esp_download_check(r, elcf, &t);
    }

    if (why == NULL && !ngx_esp_download_bound(r, &t)) {
        why = "the token is not for this browser";
    }

    if (why) {
        return ngx_esp_download_refuse(r, why);
    }

    /* last, once everything else holds: a refused token is not spent */

    emcf = ngx_http_get_module_main_conf(r, ngx_exchange_esp_module);

    p = ngx_cpymem(once, NGX_ESP_DOWNLOAD_ONCE,
                   sizeof(NGX_ESP_DOWNLOAD_ONCE) - 1);
    ngx_memcpy(p, t.nonce, NGX_ESP_DOWNLOAD_NONCE);

    rc = ngx_esp_use_once(emcf->shm_zone, once, sizeof(once), t.expires);

    if (rc == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "esp: download hand-off refused: no room in the "
                      "shared zone");
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    if (rc != NGX_OK) {
        return ngx_esp_download_refuse(r, "the token was used already");
    }

    /* with esp_cluster, spent on every node (the same keyed hash) */
    ngx_esp_cluster_revoke_session(once, sizeof(once), t.expires);

    ctx->session = t.session;
    ctx->session.last_seen = ngx_time();
    ctx->has_session = 1;

    ngx_str_set(&name, NGX_ESP_HANDOFF_COOKIE);
    ngx_str_null(&empty);

    if (ngx_esp_issue_cookie(r, elcf, ctx) != NGX_OK
        || ngx_esp_add_cookie(r, ctx, &name, &empty, NGX_ESP_HANDOFF_PATH, 0,
                              NGX_ESP_SAMESITE_LAX)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "esp: download hand-off accepted user=\"%V\" client=%V",
                  ngx_esp_log_escape(r->pool, &t.session.user),
                  &r->connection->addr_text);

    return ngx_esp_redirect(r, &t.url);
}


/* NULL if the token holds here and now, else why not */

static const char *
ngx_esp_download_check(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_download_token_t *t)
{
    time_t                now, since;
    ngx_str_t             key;
    ngx_esp_main_conf_t  *emcf;

    now = ngx_time();

    if (now > t->expires) {
        return "the token expired";
    }

    /* a clock that jumped, or a token not made by this code */

    if (t->expires > now + NGX_ESP_DOWNLOAD_TTL + 5) {
        return "the token lives too long";
    }

    if (t->host.len != r->headers_in.server.len
        || ngx_strncasecmp(t->host.data, r->headers_in.server.data,
                           t->host.len)
           != 0)
    {
        return "the token is for another host";
    }

    if (elcf->domain == NULL
        || t->session.domain.len != elcf->domain->name.len
        || ngx_strncmp(t->session.domain.data, elcf->domain->name.data,
                       t->session.domain.len)
           != 0)
    {
        return "the token is for another domain";
    }

    if (!ngx_esp_valid_return_url(&t->url)) {
        return "the return URL is not a local path";
    }

    emcf = ngx_http_get_module_main_conf(r, ngx_exchange_esp_module);

    if (emcf->shm_zone == NULL) {
        return "no esp_shared_zone";
    }

    if (ngx_esp_session_is_revoked(emcf->shm_zone, t->session.id,
                                   NGX_ESP_SESSION_ID_LEN)
        == NGX_OK)
    {
        return "the session was ended by logoff";
    }

    if (ngx_esp_user_key(r, elcf->domain, &t->session.user, &key) != NGX_OK) {
        return "out of memory";
    }

    since = ngx_esp_user_revoked_since(emcf->shm_zone, &t->session.domain,
                                       &key);
    if (since && t->session.issued <= since) {
        return "the session was revoked";
    }

    return NULL;
}


static ngx_int_t
ngx_esp_download_refuse(ngx_http_request_t *r, const char *why)
{
    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "esp: download hand-off refused: %s, client=%V",
                  why, &r->connection->addr_text);

    return NGX_HTTP_FORBIDDEN;
}


static ngx_int_t
ngx_esp_download_seal(ngx_http_request_t *r, ngx_esp_download_token_t *t,
    ngx_str_t *out)
{
    u_char               *p;
    ngx_str_t             plain;
    ngx_esp_session_t    *s;
    ngx_esp_main_conf_t  *emcf;

    s = &t->session;

    if (t->host.len > 255 || s->domain.len > 255 || s->user.len > 0xffff
        || t->url.len > 0xffff)
    {
        return NGX_ERROR;
    }

    plain.len = NGX_ESP_DOWNLOAD_FIXED + 1 + t->host.len + 1 + s->domain.len
                + 2 + s->user.len + 2 + t->url.len;

    plain.data = ngx_pnalloc(r->pool, plain.len);
    if (plain.data == NULL) {
        return NGX_ERROR;
    }

    p = plain.data;
    *p++ = NGX_ESP_DOWNLOAD_VERSION;
    p = ngx_esp_shm_put(p, (uint64_t) t->expires, 8);
    p = ngx_cpymem(p, t->nonce, NGX_ESP_DOWNLOAD_NONCE);
    p = ngx_cpymem(p, t->binding, NGX_ESP_DOWNLOAD_BINDING);
    p = ngx_cpymem(p, s->id, NGX_ESP_SESSION_ID_LEN);
    p = ngx_esp_shm_put(p, (uint64_t) s->issued, 8);
    *p++ = (u_char) s->flags;
    p = ngx_cpymem(p, s->groups, NGX_ESP_GROUPS_LEN);
    *p++ = (u_char) t->host.len;
    p = ngx_cpymem(p, t->host.data, t->host.len);
    *p++ = (u_char) s->domain.len;
    p = ngx_cpymem(p, s->domain.data, s->domain.len);
    p = ngx_esp_shm_put(p, s->user.len, 2);
    p = ngx_cpymem(p, s->user.data, s->user.len);
    p = ngx_esp_shm_put(p, t->url.len, 2);
    ngx_memcpy(p, t->url.data, t->url.len);

    emcf = ngx_http_get_module_main_conf(r, ngx_exchange_esp_module);

    if (ngx_esp_session_seal_value(r->pool, emcf->keys,
                                   NGX_ESP_DOWNLOAD_LABEL, &plain, out)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "esp: could not seal a download hand-off");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* NULL if it opens (t filled, pointing into the plaintext), else why not */

static const char *
ngx_esp_download_open(ngx_http_request_t *r, ngx_str_t *sealed,
    ngx_esp_download_token_t *t)
{
    u_char               *p, *last;
    size_t                n;
    ngx_int_t             rc;
    ngx_str_t             plain;
    const char           *reason;
    ngx_esp_session_t    *s;
    ngx_esp_main_conf_t  *emcf;

    emcf = ngx_http_get_module_main_conf(r, ngx_exchange_esp_module);

    reason = "out of memory";

    rc = ngx_esp_session_open_value(r->pool, emcf->keys,
                                    NGX_ESP_DOWNLOAD_LABEL, sealed, &plain,
                                    &reason);
    if (rc != NGX_OK) {
        return reason;
    }

    p = plain.data;
    last = p + plain.len;

    if (plain.len < NGX_ESP_DOWNLOAD_FIXED + 1 + 1 + 2 + 2
        || p[0] != NGX_ESP_DOWNLOAD_VERSION)
    {
        return "malformed";
    }

    ngx_memzero(t, sizeof(ngx_esp_download_token_t));
    s = &t->session;

    t->expires = (time_t) ngx_esp_shm_get(p + 1, 8);
    t->nonce = p + 9;
    p += 9 + NGX_ESP_DOWNLOAD_NONCE;

    ngx_memcpy(t->binding, p, NGX_ESP_DOWNLOAD_BINDING);
    p += NGX_ESP_DOWNLOAD_BINDING;

    ngx_memcpy(s->id, p, NGX_ESP_SESSION_ID_LEN);
    p += NGX_ESP_SESSION_ID_LEN;

    s->issued = (time_t) ngx_esp_shm_get(p, 8);
    p += 8;

    s->flags = *p++;

    ngx_memcpy(s->groups, p, NGX_ESP_GROUPS_LEN);
    p += NGX_ESP_GROUPS_LEN;

    n = *p++;
    if ((size_t) (last - p) < n + 1) {
        return "malformed";
    }

    t->host.data = p;
    t->host.len = n;
    p += n;

    n = *p++;
    if ((size_t) (last - p) < n + 2) {
        return "malformed";
    }

    s->domain.data = p;
    s->domain.len = n;
    p += n;

    n = ngx_esp_shm_get(p, 2);
    p += 2;
    if ((size_t) (last - p) < n + 2) {
        return "malformed";
    }

    s->user.data = p;
    s->user.len = n;
    p += n;

    n = ngx_esp_shm_get(p, 2);
    p += 2;
    if ((size_t) (last - p) != n) {
        return "malformed";
    }

    t->url.data = p;
    t->url.len = n;

    return NULL;
}


/* a query argument, percent-decoded: NGX_OK, NGX_DECLINED, NGX_ERROR */

static ngx_int_t
ngx_esp_download_arg(ngx_http_request_t *r, char *name, ngx_str_t *value)
{
    u_char     *dst, *src;
    ngx_str_t   raw;

    if (ngx_http_arg(r, (u_char *) name, ngx_strlen(name), &raw) != NGX_OK
        || raw.len == 0 || raw.len > 2 * NGX_ESP_MAX_URL)
    {
        return NGX_DECLINED;
    }

    value->data = ngx_pnalloc(r->pool, raw.len);
    if (value->data == NULL) {
        return NGX_ERROR;
    }

    /* all of it: NGX_UNESCAPE_URI would stop at an encoded "?" */

    dst = value->data;
    src = raw.data;
    ngx_unescape_uri(&dst, &src, raw.len, 0);
    value->len = dst - value->data;

    return NGX_OK;
}


/* 32 hex digits into 16 bytes */

static ngx_int_t
ngx_esp_download_binding(ngx_str_t *hex, u_char *binding)
{
    ngx_int_t   n;
    ngx_uint_t  i;

    if (hex->len != 2 * NGX_ESP_DOWNLOAD_BINDING) {
        return NGX_ERROR;
    }

    for (i = 0; i < NGX_ESP_DOWNLOAD_BINDING; i++) {
        n = ngx_hextoi(hex->data + 2 * i, 2);

        if (n == NGX_ERROR) {
            return NGX_ERROR;
        }

        binding[i] = (u_char) n;
    }

    return NGX_OK;
}


/* does the browser have the cookie the token was made for? */

static ngx_uint_t
ngx_esp_download_bound(ngx_http_request_t *r, ngx_esp_download_token_t *t)
{
    u_char             binding[NGX_ESP_DOWNLOAD_BINDING];
    ngx_str_t          name, value;
    ngx_esp_cookies_t  c;

    ngx_memzero(&c, sizeof(ngx_esp_cookies_t));

    while (ngx_esp_http_cookie_next(r, &c, &name, &value) == NGX_OK) {

        if (name.len != sizeof(NGX_ESP_HANDOFF_COOKIE) - 1
            || ngx_strncmp(name.data, NGX_ESP_HANDOFF_COOKIE, name.len) != 0
            || ngx_esp_download_binding(&value, binding) != NGX_OK)
        {
            continue;
        }

        if (CRYPTO_memcmp(binding, t->binding, NGX_ESP_DOWNLOAD_BINDING)
            == 0)
        {
            return 1;
        }
    }

    return 0;
}


static ngx_uint_t
ngx_esp_download_is(ngx_http_request_t *r, char *path, size_t len)
{
    return r->uri.len == len
           && ngx_strncasecmp(r->uri.data, (u_char *) path, len) == 0;
}


static void *
ngx_esp_download_create_srv_conf(ngx_conf_t *cf)
{
    ngx_esp_download_srv_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_esp_download_srv_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->host = { 0, NULL };
     *     conf->main = { 0, NULL };
     *     conf->file = NULL;
     *     conf->line = 0;
     */

    return conf;
}


/*
 * After every server{}: the hand-off needs the shared zone (a token is
 * used once), and each side its partner in this configuration, so that
 * a misspelt name fails "nginx -t" rather than sending users in circles.
 */

static ngx_int_t
ngx_esp_download_init(ngx_conf_t *cf)
{
    ngx_uint_t                    i, j, found;
    ngx_esp_main_conf_t          *emcf;
    ngx_http_core_srv_conf_t    **cscfp;
    ngx_http_core_main_conf_t    *cmcf;
    ngx_esp_download_srv_conf_t  *dscf, *other;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);
    emcf = ngx_http_conf_get_module_main_conf(cf, ngx_exchange_esp_module);

    cscfp = cmcf->servers.elts;

    for (i = 0; i < cmcf->servers.nelts; i++) {

        dscf = cscfp[i]->ctx->srv_conf[ngx_esp_download_module.ctx_index];

        if (dscf->host.len == 0 && dscf->main.len == 0) {
            continue;
        }

        if (emcf == NULL || emcf->shm_zone == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"%s\" needs \"esp_shared_zone\" (a hand-off is "
                          "used once) in %s:%ui",
                          dscf->host.len ? "esp_download_host"
                                         : "esp_download_for",
                          dscf->file, dscf->line);
            return NGX_ERROR;
        }

        found = 0;

        for (j = 0; j < cmcf->servers.nelts && !found; j++) {

            other = cscfp[j]->ctx->srv_conf[ngx_esp_download_module.ctx_index];

            if (dscf->host.len) {
                found = other->main.len
                        && ngx_esp_download_names(cscfp[j], &dscf->host);

            } else {
                found = other->host.len
                        && ngx_esp_download_names(cscfp[j], &dscf->main);
            }
        }

        if (!found) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "%s \"%V\": no server{} named so has \"%s\" "
                          "in %s:%ui",
                          dscf->host.len ? "esp_download_host"
                                         : "esp_download_for",
                          dscf->host.len ? &dscf->host : &dscf->main,
                          dscf->host.len ? "esp_download_for"
                                         : "esp_download_host",
                          dscf->file, dscf->line);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_uint_t
ngx_esp_download_names(ngx_http_core_srv_conf_t *cscf, ngx_str_t *name)
{
    ngx_uint_t               i;
    ngx_http_server_name_t  *sn;

    sn = cscf->server_names.elts;

    for (i = 0; i < cscf->server_names.nelts; i++) {
        if (sn[i].name.len == name->len
            && ngx_strncasecmp(sn[i].name.data, name->data, name->len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* esp_download_host NAME; esp_download_for NAME; */

static char *
ngx_esp_download_host(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_esp_download_srv_conf_t *dscf = conf;

    u_char      c;
    ngx_str_t  *value, *field;
    ngx_uint_t  i;

    field = (ngx_str_t *) ((u_char *) conf + cmd->offset);

    if (field->data) {
        return "is duplicate";
    }

    if (dscf->host.len || dscf->main.len) {
        return "cannot be used with \"esp_download_host\" or "
               "\"esp_download_for\" in one server";
    }

    value = cf->args->elts;

    if (value[1].len == 0 || value[1].len > NGX_ESP_DOWNLOAD_MAX_HOST
        || value[1].data[0] == '.' || value[1].data[0] == '-'
        || value[1].data[value[1].len - 1] == '.')
    {
        goto invalid;
    }

    for (i = 0; i < value[1].len; i++) {
        c = ngx_tolower(value[1].data[i]);

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
              || c == '-' || c == '.')
            || (c == '.' && value[1].data[i + 1] == '.'))
        {
            goto invalid;
        }

        value[1].data[i] = c;
    }

    *field = value[1];
    dscf->file = cf->conf_file->file.name.data;
    dscf->line = cf->conf_file->line;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"%V\" is not a host name (no scheme, port, path or "
                       "wildcard) in \"%V\"", &value[1], &cmd->name);
    return NGX_CONF_ERROR;
}
