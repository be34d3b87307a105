
/*
 * Copyright (C) ngx_exchange_esp authors
 */


/*
 * Directory and host matching: ngx_esp_glob_match(), ngx_esp_match_paths(),
 * ngx_esp_parse_host_pattern() and ngx_esp_match_hosts().  The first
 * byte of the input says where the pattern ends; the rest is the path or
 * host name it is matched against.
 *
 * Properties:
 * - the glob agrees with a reference matcher (dynamic programming over
 *   pattern and subject, ASCII case folded, "*" never taking a "/" but
 *   in a run of stars that ends the pattern right after a "/"); "/" and
 *   a star match every path, a lone star every name without "/"; a
 *   pattern without "*" matches only itself, case aside; a star followed
 *   by more pattern never matches across a "/";
 * - "/dir/" and a star also matches "/dir", and nothing more than the
 *   glob does besides;
 * - a host pattern that parses is lowercase, without a leading or
 *   trailing dot or a port; "name" matches only itself, case aside, and
 *   "*.name" only names with at least one label before ".name".
 *
 * ESP_FUZZ_STRICT=1 also refuses empty labels in a parsed host pattern
 * ("mail.contoso.com.." is accepted today and can never match).
 */


#include "fuzz_common.h"

#include "../src/ngx_esp_match.c"
#include "../src/ngx_esp_http.c"

#include "fuzz_http.h"


#define FUZZ_MAX_GLOB  512


/* ngx_strncasecmp() stops at a NUL: this one does not */

static ngx_uint_t
fuzz_caseeq(u_char *a, u_char *b, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (ngx_tolower(a[i]) != ngx_tolower(b[i])) {
            return 0;
        }
    }

    return 1;
}


/* the pattern ends in "/" and stars, which stand for the rest, "/" too */

static ngx_uint_t
fuzz_takes_rest(u_char *p, size_t plen)
{
    size_t  k;

    for (k = plen; k > 0 && p[k - 1] == '*'; k--) { /* void */ }

    return k < plen && k > 0 && p[k - 1] == '/';
}


static ngx_uint_t
fuzz_ref_glob(u_char *p, size_t plen, u_char *s, size_t len)
{
    size_t       i, j, k;
    ngx_uint_t   r, tail;
    static u_char  m[FUZZ_MAX_GLOB + 1][FUZZ_MAX_GLOB + 1];

    for (k = plen; k > 0 && p[k - 1] == '*'; k--) { /* void */ }

    tail = fuzz_takes_rest(p, plen);

    /* m[i][j]: p[i..] matches s[j..] */

    for (i = plen + 1; i-- > 0; /* void */) {
        for (j = len + 1; j-- > 0; /* void */) {

            if (i == plen) {
                r = (j == len);

            } else if (tail && i >= k) {
                r = 1;

            } else if (p[i] == '*') {
                r = m[i + 1][j] || (j < len && s[j] != '/' && m[i][j + 1]);

            } else {
                r = j < len && ngx_tolower(p[i]) == ngx_tolower(s[j])
                    && m[i + 1][j + 1];
            }

            m[i][j] = (u_char) r;
        }
    }

    return m[0][0];
}


static void
fuzz_globs(ngx_pool_t *pool, u_char *p, size_t plen, u_char *s, size_t len)
{
    ngx_uint_t               g;
    ngx_str_t                path, value;
    ngx_conf_t               cf;
    ngx_array_t              a;
    ngx_esp_path_pattern_t   pp;

    g = ngx_esp_glob_match(p, plen, s, len);

    if (plen <= FUZZ_MAX_GLOB && len <= FUZZ_MAX_GLOB) {
        FUZZ_ASSERT(g == fuzz_ref_glob(p, plen, s, len));
    }

    FUZZ_ASSERT(ngx_esp_glob_match((u_char *) "*", 1, s, len)
                == (ngx_strlchr(s, s + len, '/') == NULL));
    FUZZ_ASSERT(ngx_esp_glob_match((u_char *) "**", 2, s, len)
                == (ngx_strlchr(s, s + len, '/') == NULL));
    FUZZ_ASSERT(ngx_esp_glob_match((u_char *) "/*", 2, s, len)
                == (len > 0 && s[0] == '/'));

    /* "/x/" star ".js" never takes "/x/a.aspx/b.js" */

    if (g && !fuzz_takes_rest(p, plen)) {
        FUZZ_ASSERT(fuzz_count_byte(p, plen, '/')
                    == fuzz_count_byte(s, len, '/'));
    }
    FUZZ_ASSERT(ngx_esp_glob_match(s, len, s, len)
                || ngx_strlchr(s, s + len, '*') != NULL);

    if (ngx_strlchr(p, p + plen, '*') == NULL) {
        FUZZ_ASSERT(g == (plen == len && fuzz_caseeq(p, s, len)));
    }

    /* the pattern as an esp_*_dirs entry, if the config takes it */

    ngx_memzero(&cf, sizeof(ngx_conf_t));
    cf.pool = pool;
    cf.log = fuzz_log();
    value.data = p;
    value.len = plen;

    if (ngx_esp_parse_path_pattern(&cf, &value, &pp) != NGX_CONF_OK) {
        return;
    }

    FUZZ_ASSERT(ngx_strlchr(p, p + plen, '\0') == NULL);

    a.elts = &pp;
    a.nelts = 1;
    path.data = s;
    path.len = len;

    if (ngx_esp_match_paths(&a, &path) && !g) {
        /* only "/dir/" and a star matching "/dir" */
        FUZZ_ASSERT(plen > 2 && p[plen - 1] == '*' && p[plen - 2] == '/');
        FUZZ_ASSERT(len == plen - 2 && fuzz_caseeq(p, s, len));
    }

    if (g) {
        FUZZ_ASSERT(ngx_esp_match_paths(&a, &path));
    }
}


static void
fuzz_hosts(ngx_pool_t *pool, u_char *p, size_t plen, u_char *s, size_t len)
{
    char                    *rc;
    size_t                   i;
    ngx_str_t                value, host;
    ngx_uint_t               m, expect;
    ngx_conf_t               cf;
    ngx_array_t              a;
    ngx_esp_host_pattern_t   hp;

    ngx_memzero(&cf, sizeof(ngx_conf_t));
    cf.pool = pool;
    cf.log = fuzz_log();

    value.data = p;
    value.len = plen;

    rc = ngx_esp_parse_host_pattern(&cf, &value, &hp);

    if (rc != NGX_CONF_OK) {
        return;
    }

    FUZZ_ASSERT(hp.name.len > 0 && hp.name.len <= plen);
    FUZZ_ASSERT(hp.name.data[0] != '.');

    if (getenv("ESP_FUZZ_STRICT")) {
        FUZZ_ASSERT(hp.name.data[hp.name.len - 1] != '.');
        FUZZ_ASSERT(fuzz_memmem(hp.name.data, hp.name.len, "..", 2) == NULL);
    }
    FUZZ_ASSERT(hp.name.data[0] == '['
                || ngx_strlchr(hp.name.data, hp.name.data + hp.name.len, ':')
                   == NULL);

    for (i = 0; i < hp.name.len; i++) {
        FUZZ_ASSERT(!(hp.name.data[i] >= 'A' && hp.name.data[i] <= 'Z'));
        FUZZ_ASSERT(hp.name.data[i] > 0x20 && hp.name.data[i] < 0x7f);
        FUZZ_ASSERT(hp.name.data[i] != '*' && hp.name.data[i] != '/');
    }

    a.elts = &hp;
    a.nelts = 1;

    /* the host as nginx hands it over: validated, lowercase, no port */

    host.data = s;
    host.len = len;

    if (fuzz_validate_host(&host, pool) != NGX_OK) {
        return;
    }

    s = host.data;
    len = host.len;

    m = ngx_esp_match_hosts(&a, &host);

    if (hp.wildcard) {
        expect = len >= hp.name.len + 2
                 && s[len - hp.name.len - 1] == '.'
                 && fuzz_caseeq(s + len - hp.name.len, hp.name.data,
                                hp.name.len);
    } else {
        expect = len == hp.name.len && fuzz_caseeq(s, hp.name.data, len);
    }

    FUZZ_ASSERT(m == expect);

    /* a name matches its own pattern */

    host = hp.name;
    FUZZ_ASSERT(ngx_esp_match_hosts(&a, &host) == !hp.wildcard);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char      *p, *s;
    size_t       plen, len;
    ngx_pool_t  *pool;

    if (size == 0) {
        return 0;
    }

    plen = data[0] % size;
    len = size - 1 - plen;

    /* two exact-size copies: an overread of either is caught */

    p = fuzz_dup(data + 1, plen);
    s = fuzz_dup(data + 1 + plen, len);

    pool = fuzz_pool();

    fuzz_globs(pool, p, plen, s, len);
    fuzz_hosts(pool, p, plen, s, len);

    ngx_destroy_pool(pool);
    free(p);
    free(s);

    return 0;
}
