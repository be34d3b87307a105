
/*
 * Copyright (C) ngx_exchange_esp authors
 */


/*
 * The request headers the form login reads, from the fuzzer's bytes as
 * header lines ("Name: value", one per line; "Cookie" lines also go to
 * nginx's cookie array; an odd length means TLS):
 *
 * - ngx_esp_http_cookie_next() over every Cookie header, and
 *   ngx_esp_http_strip_cookies(): what it leaves is every cookie the walk
 *   saw, but ours, and none of ours;
 * - ngx_esp_find_session(): the cookie walk, ngx_esp_session_open(),
 *   the domain, expiry and group checks, the refreshed cookie;
 * - ngx_esp_http_cross_site() (Origin, Sec-Fetch-Site);
 * - ngx_esp_is_german() (Accept-Language);
 * - ngx_esp_self_url() (Host), the hand-off's destination.
 *
 * The seeds carry cookies sealed under the fixed keys (make fuzz-seeds).
 * ESP_FUZZ_STRICT=1 adds the checks of open findings (fuzz/README.md).
 */


#include "fuzz_common.h"

#include "../src/ngx_esp_form.c"
#include "../src/ngx_esp_match.c"
#include "../src/ngx_esp_session.c"
#include "../src/ngx_esp_http.c"
#include "../src/ngx_esp_auth.c"
#include "../src/ngx_esp_log.c"

#include "fuzz_http.h"
#include "fuzz_session.h"


#define FUZZ_NOW      1700000000
#define FUZZ_SERVER   "mail.contoso.com"


int LLVMFuzzerInitialize(int *argc, char ***argv);


/* what src/ngx_exchange_esp_module.c and src/ngx_esp_shm.c would give */

ngx_module_t  ngx_exchange_esp_module;    /* ctx_index 0 */

static ngx_esp_main_conf_t  fuzz_emcf;
static void                *fuzz_main_conf[1];


ngx_int_t
ngx_esp_session_is_revoked(ngx_shm_zone_t *zone, u_char *id, size_t len)
{
    abort();    /* no shared zone here */
}


time_t
ngx_esp_user_revoked_since(ngx_shm_zone_t *zone, ngx_str_t *domain,
    ngx_str_t *user)
{
    abort();    /* no shared zone here */
}


static ngx_uint_t
fuzz_strict(void)
{
    static int  strict = -1;

    if (strict == -1) {
        strict = getenv("ESP_FUZZ_STRICT") != NULL;
    }

    return strict;
}


static void
fuzz_check_cookies(ngx_http_request_t *r)
{
    u_char                 *start, *end;
    ngx_str_t               name, value;
    ngx_uint_t              n, total, inside;
    ngx_table_elt_t        *h;
    ngx_esp_cookie_walk_t   all;
    ngx_esp_cookies_t       c;

    total = 0;
    ngx_memzero(&all, sizeof(ngx_esp_cookie_walk_t));

    while ((h = ngx_esp_cookie_header_next(r, &all)) != NULL) {
        total += h->value.len;
    }

    ngx_memzero(&c, sizeof(ngx_esp_cookies_t));
    n = 0;

    while (ngx_esp_http_cookie_next(r, &c, &name, &value) == NGX_OK) {

        /* each pair lies inside one header, the name before the value */

        inside = 0;
        ngx_memzero(&all, sizeof(ngx_esp_cookie_walk_t));

        while ((h = ngx_esp_cookie_header_next(r, &all)) != NULL) {
            start = h->value.data;
            end = start + h->value.len;

            if (name.data >= start && value.data >= name.data + name.len
                && value.data + value.len <= end)
            {
                inside = 1;
            }
        }

        FUZZ_ASSERT(inside);
        FUZZ_ASSERT(ngx_strlchr(value.data, value.data + value.len, ';')
                    == NULL);
        FUZZ_ASSERT(ngx_strlchr(name.data, name.data + name.len, '=')
                    == NULL);
        FUZZ_ASSERT(ngx_strlchr(name.data, name.data + name.len, ';')
                    == NULL);
        FUZZ_ASSERT(name.len == 0
                    || (name.data[0] != ' ' && name.data[0] != '\t'));

        /* and the walk ends */

        FUZZ_ASSERT(++n <= total);
    }
}


static void
fuzz_check_session(ngx_http_request_t *r)
{
    time_t               idle, max;
    ngx_int_t            rc;
    ngx_str_t            cookie;
    ngx_uint_t           stale;
    const char          *reason;
    ngx_esp_ctx_t       *ctx;
    ngx_esp_domain_t    *d;
    ngx_esp_session_t    s;
    ngx_esp_loc_conf_t  *elcf;

    d = ngx_pcalloc(r->pool, sizeof(ngx_esp_domain_t));
    elcf = ngx_pcalloc(r->pool, sizeof(ngx_esp_loc_conf_t));
    ctx = ngx_pcalloc(r->pool, sizeof(ngx_esp_ctx_t));
    FUZZ_ASSERT(d != NULL && elcf != NULL && ctx != NULL);

    ngx_str_set(&d->name, "contoso");
    d->public_idle = 900;
    d->public_max = 1800;
    d->private_idle = 900;
    d->private_max = 8 * 3600;

    elcf->domain = d;
    ngx_str_set(&elcf->cookie_name, "esp_session");
    elcf->samesite = NGX_ESP_SAMESITE_LAX;

    stale = 3;

    rc = ngx_esp_find_session(r, elcf, ctx, &stale);

    FUZZ_ASSERT(rc == NGX_OK || rc == NGX_DECLINED);
    FUZZ_ASSERT(stale <= 2);

    if (rc != NGX_OK) {
        FUZZ_ASSERT(!ctx->has_session && !ctx->authenticated);
        return;
    }

    s = ctx->session;

    FUZZ_ASSERT(ctx->has_session && ctx->authenticated);
    FUZZ_ASSERT(s.domain.len == 7
                && ngx_memcmp(s.domain.data, "contoso", 7) == 0);

    idle = (s.flags & NGX_ESP_SESSION_PRIVATE) ? d->private_idle
                                               : d->public_idle;
    max = (s.flags & NGX_ESP_SESSION_PRIVATE) ? d->private_max
                                              : d->public_max;

    FUZZ_ASSERT(s.issued <= FUZZ_NOW + 60);
    FUZZ_ASSERT(FUZZ_NOW - s.issued < max);
    FUZZ_ASSERT(FUZZ_NOW - s.last_seen < idle || s.last_seen == FUZZ_NOW);

    if (ctx->set_cookie.len == 0) {
        return;
    }

    /* refreshed: "esp_session=VALUE; Path=/..." that opens to it */

    FUZZ_ASSERT(s.last_seen == FUZZ_NOW);
    FUZZ_ASSERT(ctx->set_cookie.len > sizeof("esp_session=") - 1);
    FUZZ_ASSERT(ngx_memcmp(ctx->set_cookie.data, "esp_session=",
                           sizeof("esp_session=") - 1) == 0);

    cookie.data = ctx->set_cookie.data + sizeof("esp_session=") - 1;
    cookie.len = ngx_strlchr(cookie.data,
                             ctx->set_cookie.data + ctx->set_cookie.len, ';')
                 - cookie.data;

    reason = NULL;
    FUZZ_ASSERT(ngx_esp_session_open(r->pool, fuzz_session_keys(), &cookie,
                                     &s, &reason)
                == NGX_OK);
    FUZZ_ASSERT(fuzz_session_equal(&s, &ctx->session));
}


/*
 * Whether a Cookie header value still holds one of the gate's cookies,
 * read as any server might: split at ";", the name trimmed of spaces and
 * tabs on both sides.
 */

static ngx_uint_t
fuzz_ref_has_ours(ngx_str_t *v)
{
    u_char  *p, *last, *end, *s, *e;

    p = v->data;
    last = p + v->len;

    while (p < last) {
        end = ngx_strlchr(p, last, ';');
        if (end == NULL) {
            end = last;
        }

        s = p;
        e = ngx_strlchr(p, end, '=');
        if (e == NULL) {
            e = end;
        }

        while (s < e && (*s == ' ' || *s == '\t')) {
            s++;
        }

        while (e > s && (e[-1] == ' ' || e[-1] == '\t')) {
            e--;
        }

        if ((e - s == 11 && ngx_memcmp(s, "esp_session", 11) == 0)
            || (e - s == 8 && ngx_memcmp(s, "esp_csrf", 8) == 0))
        {
            return 1;
        }

        p = end + 1;
    }

    return 0;
}


/*
 * ngx_esp_http_strip_cookies(): the cookies the walk sees afterwards are
 * those it saw before but ours, in order; no Cookie header left holds one
 * of ours or is empty; nginx's cookie list and the header list agree.
 */

static void
fuzz_check_strip(ngx_http_request_t *r)
{
    ngx_str_t               name, value, names[2], before[64][2];
    ngx_uint_t              i, n, m, in_list;
    ngx_list_part_t        *part;
    ngx_table_elt_t        *h, *ch;
    ngx_esp_cookies_t       c;
    ngx_esp_cookie_walk_t   w;

    n = 0;
    ngx_memzero(&c, sizeof(ngx_esp_cookies_t));

    while (ngx_esp_http_cookie_next(r, &c, &name, &value) == NGX_OK) {

        if ((name.len == 11 && ngx_memcmp(name.data, "esp_session", 11) == 0)
            || (name.len == 8 && ngx_memcmp(name.data, "esp_csrf", 8) == 0))
        {
            continue;
        }

        if (n < 64) {
            before[n][0] = name;
            before[n][1] = value;
        }

        n++;
    }

    ngx_str_set(&names[0], "esp_session");
    ngx_str_set(&names[1], "esp_csrf");

    FUZZ_ASSERT(ngx_esp_http_strip_cookies(r, names, 2) == NGX_OK);

    m = 0;
    ngx_memzero(&c, sizeof(ngx_esp_cookies_t));

    while (ngx_esp_http_cookie_next(r, &c, &name, &value) == NGX_OK) {
        FUZZ_ASSERT(m < n);

        if (m < 64) {
            FUZZ_ASSERT(name.len == before[m][0].len
                        && ngx_memcmp(name.data, before[m][0].data, name.len)
                           == 0);
            FUZZ_ASSERT(value.len == before[m][1].len
                        && ngx_memcmp(value.data, before[m][1].data,
                                      value.len) == 0);
        }

        m++;
    }

    FUZZ_ASSERT(m == n);

    /* every Cookie header nginx knows is in the list, and only those */

    m = 0;

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (h[i].key.len == 6
                && ngx_strncasecmp(h[i].key.data, (u_char *) "Cookie", 6)
                   == 0)
            {
                m++;
            }
        }
    }

    ngx_memzero(&w, sizeof(ngx_esp_cookie_walk_t));

    while ((ch = ngx_esp_cookie_header_next(r, &w)) != NULL) {
        FUZZ_ASSERT(m-- > 0);
        in_list = 0;

        for (part = &r->headers_in.headers.part; part; part = part->next) {
            h = part->elts;

            for (i = 0; i < part->nelts; i++) {
                if (&h[i] == ch) {
                    in_list = 1;
                }
            }
        }

        FUZZ_ASSERT(in_list);
        FUZZ_ASSERT(!fuzz_ref_has_ours(&ch->value));
    }

    FUZZ_ASSERT(m == 0);
}


/*
 * the reference: refused on a "Sec-Fetch-Site" other than "same-origin"
 * or "none", or an Origin of another scheme or host ("null" passes)
 */

static ngx_uint_t
fuzz_ref_same_origin(ngx_http_request_t *r)
{
    u_char           *v, *colon;
    size_t            len, slen;
    ngx_uint_t        i;
    const char       *scheme;
    ngx_table_elt_t  *h;

    scheme = r->connection->ssl ? "https://" : "http://";
    slen = ngx_strlen(scheme);

    h = r->headers_in.headers.part.elts;

    for (i = 0; i < r->headers_in.headers.part.nelts; i++) {
        v = h[i].value.data;
        len = h[i].value.len;

        if (h[i].key.len == 14
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Sec-Fetch-Site",
                               14) == 0)
        {
            if (!(len == 11
                  && ngx_strncasecmp(v, (u_char *) "same-origin", 11) == 0)
                && !(len == 4 && ngx_strncasecmp(v, (u_char *) "none", 4)
                                 == 0))
            {
                return 0;
            }

            continue;
        }

        if (h[i].key.len != 6
            || ngx_strncasecmp(h[i].key.data, (u_char *) "Origin", 6) != 0
            || (len == 4 && ngx_memcmp(v, "null", 4) == 0))
        {
            continue;
        }

        if (len <= slen || ngx_strncasecmp(v, (u_char *) scheme, slen) != 0) {
            return 0;
        }

        colon = ngx_strlchr(v + slen, v + len, ':');
        if (colon == NULL) {
            colon = v + len;
        }

        if ((size_t) (colon - v - slen) != r->headers_in.server.len
            || ngx_strncasecmp(v + slen, r->headers_in.server.data,
                               r->headers_in.server.len) != 0)
        {
            return 0;
        }
    }

    return 1;
}


static ngx_uint_t
fuzz_ref_german(ngx_str_t *v)
{
    u_char  *p, *last, *end;

    p = v->data;
    last = p + v->len;

    while (p < last) {
        end = ngx_strlchr(p, last, ',');
        if (end == NULL) {
            end = last;
        }

        while (p < end && *p == ' ') {
            p++;
        }

        if (end - p >= 2
            && (end - p == 2 || p[2] == '-' || p[2] == ';' || p[2] == ' '))
        {
            if ((p[0] | 0x20) == 'd' && (p[1] | 0x20) == 'e') {
                return 1;
            }

            if ((p[0] | 0x20) == 'e' && (p[1] | 0x20) == 'n') {
                return 0;
            }
        }

        p = end + 1;
    }

    return 0;
}


static void
fuzz_check_self_url(ngx_http_request_t *r)
{
    u_char     *host, *port, *last;
    ngx_str_t   path, url;
    const char *scheme;
    size_t      slen;

    ngx_str_set(&path, "/owa/");

    FUZZ_ASSERT(ngx_esp_self_url(r, NULL, &path, &url) == NGX_OK);

    scheme = r->connection->ssl ? "https://" : "http://";
    slen = ngx_strlen(scheme);

    FUZZ_ASSERT(url.len >= slen + r->headers_in.server.len + path.len);
    FUZZ_ASSERT(ngx_memcmp(url.data, scheme, slen) == 0);
    FUZZ_ASSERT(ngx_strncasecmp(url.data + slen, r->headers_in.server.data,
                                r->headers_in.server.len) == 0);
    FUZZ_ASSERT(ngx_memcmp(url.data + url.len - path.len, path.data,
                           path.len) == 0);

    if (!fuzz_strict()) {
        return;
    }

    /* the authority is this server, with at most a numeric port */

    host = url.data + slen;
    port = host + r->headers_in.server.len;
    last = url.data + url.len - path.len;

    if (port < last) {
        FUZZ_ASSERT(*port++ == ':');

        for ( /* void */ ; port < last; port++) {
            FUZZ_ASSERT(*port >= '0' && *port <= '9');
        }
    }
}


static void
fuzz_headers(const uint8_t *data, size_t size)
{
    u_char               *p, *last, *eol, *colon, *v, *copy;
    size_t                n;
    ngx_str_t             lang, host;
    ngx_pool_t           *pool;
    ngx_table_elt_t      *h;
    ngx_http_request_t   *r;
    ngx_esp_loc_conf_t    lcf;
    static ngx_ssl_connection_t  ssl;

    pool = fuzz_pool();
    r = fuzz_request(pool);

    if (size & 1) {
        r->connection->ssl = &ssl;
    }

    ngx_str_set(&r->headers_in.server, FUZZ_SERVER);

    fuzz_emcf.keys = fuzz_session_keys();
    fuzz_emcf.shm_zone = NULL;
    fuzz_main_conf[0] = &fuzz_emcf;
    r->main_conf = fuzz_main_conf;

    copy = fuzz_dup(data, size);
    p = copy;
    last = copy + size;

    while (p < last) {
        eol = ngx_strlchr(p, last, '\n');
        if (eol == NULL) {
            eol = last;
        }

        colon = ngx_strlchr(p, eol, ':');

        if (colon) {
            v = colon + 1;
            while (v < eol && *v == ' ') {
                v++;
            }

            n = eol - v;

            /* the name as sent; nginx's pointers to the first ones */

            h = fuzz_add_header(r, p, colon - p, v, n);

            if (h && h->key.len == 15
                && ngx_strncasecmp(h->key.data, (u_char *) "Accept-Language",
                                   15) == 0
                && r->headers_in.accept_language == NULL)
            {
                r->headers_in.accept_language = h;
            }

            if (h && h->key.len == 4
                && ngx_strncasecmp(h->key.data, (u_char *) "Host", 4) == 0)
            {
                host = h->value;

                if (r->headers_in.host
                    || fuzz_validate_host(&host, pool) != NGX_OK)
                {
                    /* a 400 from nginx: no module would see it */
                    goto done;
                }

                r->headers_in.host = h;
                r->headers_in.server = host;
            }
        }

        p = eol + 1;
    }

    fuzz_check_cookies(r);
    fuzz_check_session(r);

    FUZZ_ASSERT((ngx_esp_http_cross_site(r, NGX_ESP_ORIGIN_NULL_OK) == NULL)
                == fuzz_ref_same_origin(r));

    ngx_memzero(&lcf, sizeof(ngx_esp_loc_conf_t));
    lcf.lang = NGX_ESP_LANG_AUTO;

    if (r->headers_in.accept_language) {
        lang = r->headers_in.accept_language->value;
        FUZZ_ASSERT(ngx_esp_is_german(r, &lcf) == fuzz_ref_german(&lang));

    } else {
        FUZZ_ASSERT(ngx_esp_is_german(r, &lcf) == 0);
    }

    fuzz_check_self_url(r);

    /* last: it changes the headers */
    fuzz_check_strip(r);

done:

    free(copy);
    ngx_destroy_pool(pool);
}


/* "make fuzz-seeds": ESP_FUZZ_SEEDS=dir writes the seeds and exits */

static void
fuzz_write_seed(const char *dir, const char *name, const char *fmt,
    ngx_str_t *c1, ngx_str_t *c2)
{
    FILE  *f;
    char   path[4096];

    snprintf(path, sizeof(path), "%s/%s", dir, name);

    f = fopen(path, "w");
    if (f == NULL) {
        perror(path);
        exit(1);
    }

    fprintf(f, fmt, (int) c1->len, c1->data, (int) c2->len, c2->data);
    fclose(f);
}


static void
fuzz_write_seeds(const char *dir)
{
    ngx_str_t           fresh, stale, bad;
    ngx_pool_t         *pool;
    ngx_esp_session_t   s;

    pool = fuzz_pool();

    ngx_memzero(&s, sizeof(ngx_esp_session_t));
    ngx_memset(s.id, 0x42, NGX_ESP_SESSION_ID_LEN);
    ngx_str_set(&s.domain, "contoso");
    ngx_str_set(&s.user, "alice@contoso.local");

    s.issued = FUZZ_NOW - 100;
    s.last_seen = FUZZ_NOW - 10;
    FUZZ_ASSERT(ngx_esp_session_seal(pool, fuzz_session_keys(), &s, &fresh)
                == NGX_OK);

    s.issued = FUZZ_NOW - 1000;
    s.last_seen = FUZZ_NOW - 200;
    s.flags = NGX_ESP_SESSION_PRIVATE;
    FUZZ_ASSERT(ngx_esp_session_seal(pool, fuzz_session_keys(), &s, &stale)
                == NGX_OK);

    ngx_str_set(&bad, "AAAA");

    fuzz_write_seed(dir, "fresh-session",
                    "Host: mail.contoso.com\n"
                    "Cookie: esp_csrf=0123456789abcdef0123456789abcdef; "
                    "esp_session=%.*s\n"
                    "Accept-Language: de-DE,de;q=0.9,en;q=0.8\n"
                    "X: %.*s\n", &fresh, &bad);

    fuzz_write_seed(dir, "refresh-private",
                    "Cookie: esp_session=\"%.*s\"; other=1\n"
                    "Origin: https://mail.contoso.com\n"
                    "Sec-Fetch-Site: same-origin\n"
                    "Cookie: esp_session=%.*s\n", &stale, &bad);

    fuzz_write_seed(dir, "two-headers",
                    "Cookie: a=b;;  ; esp_session = %.*s ;c\n"
                    "Cookie: esp_session=%.*s\n"
                    "Origin: null\n"
                    "Host: mail.contoso.com:8443\n"
                    "Accept-Language: en-US, de\n", &bad, &fresh);

    fuzz_write_seed(dir, "cross-site",
                    "Sec-Fetch-Site: cross-site\n"
                    "Origin: https://evil.example%.*s%.*s\n"
                    "Cookie: esp_session\n", &bad, &bad);

    ngx_destroy_pool(pool);
}


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char  *dir;

    ngx_cached_time->sec = FUZZ_NOW;

    dir = getenv("ESP_FUZZ_SEEDS");

    if (dir) {
        fuzz_write_seeds(dir);
        exit(0);
    }

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_headers(data, size);

    return 0;
}
