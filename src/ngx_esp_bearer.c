
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "ngx_esp_auth.h"
#include "ngx_esp_bearer.h"
#include "ngx_esp_http.h"
#include "ngx_esp_jwt.h"
#include "ngx_esp_log.h"


/* an Authorization header longer than this is refused unread */
#define NGX_ESP_BEARER_MAX_HEADER  (NGX_ESP_JWT_MAX_LEN + 64)

/* a JWKS document larger than this is no key set */
#define NGX_ESP_BEARER_MAX_JWKS    (1024 * 1024)

/* the fingerprint of a token in the log: hex of this many bytes */
#define NGX_ESP_BEARER_FP_LEN      6


static ngx_int_t ngx_esp_bearer_token(ngx_http_request_t *r,
    ngx_str_t *token);
static ngx_int_t ngx_esp_bearer_refuse(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, const char *reason, u_char *fp);
static void ngx_esp_bearer_fingerprint(ngx_str_t *token, u_char *fp);
static void ngx_esp_bearer_count(ngx_uint_t result);


char  *ngx_esp_bearer_result_names[] = {
    "passed", "verified", "refused", NULL
};


/*
 * Drawn once per master process (at the first configuration that needs
 * it, inherited by the workers, kept across reloads): the same token
 * gives the same fingerprint in every worker's log, and the fingerprint
 * tells nothing of the token to whoever reads the log.
 */
static u_char      ngx_esp_bearer_fp_key[32];
static ngx_uint_t  ngx_esp_bearer_fp_ready;


ngx_int_t
ngx_esp_bearer_access(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf)
{
    u_char                fp[NGX_ESP_BEARER_FP_LEN * 2 + 1];
    ngx_int_t             rc;
    ngx_str_t             token;
    const char           *reason;
    ngx_esp_jwt_t         jwt;
    ngx_esp_jwt_policy_t  policy;

    if (elcf->bearer == NGX_ESP_BEARER_OFF
        || elcf->client_auth == NGX_ESP_CLIENT_FORM
        || r->headers_in.authorization == NULL)
    {
        return NGX_DECLINED;
    }

    rc = ngx_esp_bearer_token(r, &token);

    if (rc == NGX_DECLINED) {
        return NGX_DECLINED;
    }

    if (rc != NGX_OK) {
        ngx_str_null(&token);
    }

    ngx_esp_bearer_fingerprint(&token, fp);

    if (rc != NGX_OK) {
        return ngx_esp_bearer_refuse(r, elcf, "malformed or too long", fp);
    }

    if (elcf->bearer == NGX_ESP_BEARER_PASS) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "esp: bearer token passed on unchecked "
                      "(esp_bearer pass) token=%s", fp);
        ngx_esp_bearer_count(NGX_ESP_BEARER_PASSED);
        return NGX_OK;
    }

    policy.keys = elcf->bearer_keys;
    policy.issuers = elcf->bearer_issuers;
    policy.audiences = elcf->bearer_audiences;
    policy.now = ngx_time();
    policy.skew = elcf->bearer_clock_skew;

    rc = ngx_esp_jwt_verify(r->pool, &token, &policy, &jwt, &reason);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc != NGX_OK) {
        return ngx_esp_bearer_refuse(r, elcf, reason, fp);
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "esp: bearer token verified alg=%V token=%s user=\"%V\" "
                  "kid=\"%V\"", &jwt.alg, fp,
                  ngx_esp_log_escape(r->pool, &jwt.user),
                  ngx_esp_log_escape(r->pool, &jwt.kid));

    ngx_esp_bearer_count(NGX_ESP_BEARER_VERIFIED);

    return NGX_OK;
}


/*
 * The token of "Authorization: Bearer <token>" (RFC 6750 2.1): the
 * scheme in any case, then blanks, then token68 and nothing else.
 * NGX_DECLINED: another scheme; NGX_ERROR: Bearer, but no token we take.
 */

static ngx_int_t
ngx_esp_bearer_token(ngx_http_request_t *r, ngx_str_t *token)
{
    u_char     *p, *last, c;
    ngx_str_t  *auth;

    auth = &r->headers_in.authorization->value;

    if (auth->len < sizeof("Bearer") - 1
        || ngx_strncasecmp(auth->data, (u_char *) "Bearer",
                           sizeof("Bearer") - 1)
           != 0
        || (auth->len > sizeof("Bearer") - 1
            && auth->data[sizeof("Bearer") - 1] != ' '
            && auth->data[sizeof("Bearer") - 1] != '\t'))
    {
        return NGX_DECLINED;
    }

    /* refused before a byte of it is decoded */

    if (auth->len > NGX_ESP_BEARER_MAX_HEADER) {
        return NGX_ERROR;
    }

    p = auth->data + sizeof("Bearer") - 1;
    last = auth->data + auth->len;

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    while (last > p && (last[-1] == ' ' || last[-1] == '\t')) {
        last--;
    }

    token->data = p;
    token->len = last - p;

    if (token->len == 0) {
        return NGX_ERROR;
    }

    while (p < last && *p != '=') {
        c = *p++;

        if (!ngx_esp_isalnum(c) && c != '-' && c != '.' && c != '_'
            && c != '~' && c != '+' && c != '/')
        {
            return NGX_ERROR;
        }
    }

    while (p < last && *p == '=') {
        p++;
    }

    return (p == last) ? NGX_OK : NGX_ERROR;
}


static ngx_int_t
ngx_esp_bearer_refuse(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    const char *reason, u_char *fp)
{
    /* nothing the client wrote before nginx's ", client: " (fail2ban) */

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "esp: bearer token refused: %s token=%s", reason, fp);

    ngx_esp_bearer_count(NGX_ESP_BEARER_REFUSED);

    if (ngx_esp_bearer_challenge(r, elcf, 1) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_HTTP_UNAUTHORIZED;
}


ngx_int_t
ngx_esp_bearer_challenge(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_uint_t invalid)
{
    u_char           *p;
    size_t            len;
    ngx_str_t        *uri, value;
    ngx_table_elt_t  *h;

    uri = &elcf->bearer_authorization_uri;

    if (elcf->bearer == NGX_ESP_BEARER_OFF || (!invalid && uri->len == 0)) {
        return NGX_OK;
    }

    len = sizeof("Bearer authorization_uri=\"\", error=\"invalid_token\"")
          + uri->len;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    value.data = p;
    p = ngx_cpymem(p, "Bearer", sizeof("Bearer") - 1);

    if (uri->len) {
        p = ngx_sprintf(p, " authorization_uri=\"%V\"", uri);
    }

    if (invalid) {
        p = ngx_sprintf(p, "%s error=\"invalid_token\"", uri->len ? "," : "");
    }

    value.len = p - value.data;

    if (r->headers_out.www_authenticate == NULL) {
        return ngx_esp_http_set_header(r, &r->headers_out.headers,
                                       "WWW-Authenticate", &value,
                                       &r->headers_out.www_authenticate);
    }

    /* next to the Basic challenge: a header of its own (RFC 7235 4.1) */

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(h, sizeof(ngx_table_elt_t));

    h->hash = 1;
    ngx_str_set(&h->key, "WWW-Authenticate");
    h->value = value;

#if (nginx_version >= 1023000)
    {
    ngx_table_elt_t  *last;

    for (last = r->headers_out.www_authenticate; last->next; last = last->next)
    {
        /* void */
    }

    last->next = h;
    }
#endif

    return NGX_OK;
}


static void
ngx_esp_bearer_fingerprint(ngx_str_t *token, u_char *fp)
{
    u_char        md[EVP_MAX_MD_SIZE];
    unsigned int  n;

    if (token->len == 0
        || HMAC(EVP_sha256(), ngx_esp_bearer_fp_key,
                sizeof(ngx_esp_bearer_fp_key), token->data, token->len,
                md, &n)
           == NULL)
    {
        ngx_memcpy(fp, "-", 2);
        return;
    }

    *ngx_hex_dump(fp, md, NGX_ESP_BEARER_FP_LEN) = '\0';
}


static void
ngx_esp_bearer_count(ngx_uint_t result)
{
    ngx_esp_counters_t  *sh;

    sh = ngx_esp_counters();

    if (sh) {
        (void) ngx_atomic_fetch_add(&sh->bearer[result], 1);
    }
}


char *
ngx_esp_bearer_merge(ngx_conf_t *cf, ngx_esp_loc_conf_t *prev,
    ngx_esp_loc_conf_t *conf)
{
    ngx_conf_merge_uint_value(conf->bearer, prev->bearer,
                              NGX_ESP_BEARER_OFF);
    ngx_conf_merge_ptr_value(conf->bearer_keys, prev->bearer_keys, NULL);
    ngx_conf_merge_ptr_value(conf->bearer_issuers, prev->bearer_issuers,
                             NULL);
    ngx_conf_merge_ptr_value(conf->bearer_audiences, prev->bearer_audiences,
                             NULL);
    ngx_conf_merge_str_value(conf->bearer_authorization_uri,
                             prev->bearer_authorization_uri, "");
    ngx_conf_merge_sec_value(conf->bearer_clock_skew,
                             prev->bearer_clock_skew, 60);

    if (conf->bearer != NGX_ESP_BEARER_OFF && !ngx_esp_bearer_fp_ready) {
        if (RAND_bytes(ngx_esp_bearer_fp_key, sizeof(ngx_esp_bearer_fp_key))
            != 1)
        {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "RAND_bytes() failed for esp_bearer");
            return NGX_CONF_ERROR;
        }

        ngx_esp_bearer_fp_ready = 1;
    }

    if (conf->domain && conf->bearer == NGX_ESP_BEARER_VERIFY
        && (conf->bearer_keys == NULL || conf->bearer_issuers == NULL
            || conf->bearer_audiences == NULL))
    {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"esp_bearer verify\" (with \"esp\" in %s:%ui) needs "
                      "\"esp_bearer_jwks\", \"esp_bearer_issuer\" and "
                      "\"esp_bearer_audience\"",
                      conf->esp_file, conf->esp_line);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* "esp_bearer_jwks FILE;": read and checked now, again at every reload */

char *
ngx_esp_bearer_jwks(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_esp_loc_conf_t *elcf = conf;

    u_char           *buf;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_str_t        *value, name;
    ngx_uint_t        skipped;
    const char       *reason;
    ngx_file_info_t   fi;

    if (elcf->bearer_keys != NGX_CONF_UNSET_PTR) {
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
        || ngx_file_size(&fi) == 0
        || ngx_file_size(&fi) > NGX_ESP_BEARER_MAX_JWKS)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "JWKS file \"%s\" must hold 1 byte to 1m",
                           name.data);
        (void) ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    buf = ngx_pnalloc(cf->temp_pool, ngx_file_size(&fi));
    if (buf == NULL) {
        (void) ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    n = ngx_read_fd(fd, buf, ngx_file_size(&fi));
    (void) ngx_close_file(fd);

    if (n != (ssize_t) ngx_file_size(&fi)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_read_fd_n " \"%s\" failed", name.data);
        return NGX_CONF_ERROR;
    }

    elcf->bearer_keys = ngx_array_create(cf->pool, 4, sizeof(ngx_esp_jwk_t));
    if (elcf->bearer_keys == NULL) {
        return NGX_CONF_ERROR;
    }

    /* the keys (their kid strings) live in cf->pool, with the config */

    if (ngx_esp_jwks_parse(cf->pool, buf, n, elcf->bearer_keys, &skipped,
                           &reason)
        != NGX_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "JWKS file \"%s\": %s", name.data, reason);
        return NGX_CONF_ERROR;
    }

    if (skipped) {
        ngx_conf_log_error(NGX_LOG_NOTICE, cf, 0,
                           "JWKS file \"%s\": %ui keys, %ui skipped (not "
                           "RS256/ES256 signing keys with a \"kid\")",
                           name.data, elcf->bearer_keys->nelts, skipped);
    }

    return NGX_CONF_OK;
}


/* one string of "esp_bearer_issuer" or "esp_bearer_audience" */

char *
ngx_esp_bearer_parse_string(ngx_conf_t *cf, ngx_str_t *value, void *elt)
{
    ngx_str_t  *s = elt;

    size_t  i;

    for (i = 0; i < value->len; i++) {
        if (value->data[i] < 0x20 || value->data[i] == 0x7f) {
            break;
        }
    }

    if (value->len == 0 || i < value->len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "an issuer or audience is empty or holds a "
                           "control character");
        return NGX_CONF_ERROR;
    }

    *s = *value;

    return NGX_CONF_OK;
}


/* the URL goes inside a quoted-string of a header: plain ASCII only */

char *
ngx_esp_bearer_uri(ngx_conf_t *cf, void *post, void *data)
{
    ngx_str_t  *uri = data;

    size_t  i;

    if (uri->len < sizeof("https://x") - 1
        || ngx_strncasecmp(uri->data, (u_char *) "https://", 8) != 0)
    {
        return "must be an https:// URL";
    }

    for (i = 0; i < uri->len; i++) {
        if (uri->data[i] <= 0x20 || uri->data[i] >= 0x7f
            || uri->data[i] == '"' || uri->data[i] == '\\')
        {
            return "must be a URL without blanks, quotes, backslashes or "
                   "non-ASCII bytes";
        }
    }

    return NGX_CONF_OK;
}


char *
ngx_esp_bearer_skew(ngx_conf_t *cf, void *post, void *data)
{
    time_t  *skew = data;

    if (*skew > 600) {
        return "must be at most 10m";
    }

    return NGX_CONF_OK;
}
