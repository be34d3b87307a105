
/*
 * Copyright (C) ngx_exchange_esp authors
 */


/*
 * ngx_esp_canonical_path() and ngx_esp_path_is_plain() on any request
 * path, with the properties the gate relies on:
 *
 * - a canonical path starts with "/", never holds "//", "/./" or
 *   "/../", never ends in "/." or "/..", and holds no backslash and no
 *   control character; canonicalising it again changes nothing;
 * - a plain path canonicalises, to exactly its percent-decoded self;
 * - an excluded-directory pattern that a plain path matches as sent
 *   also matches its canonical form (what nginx's r->uri holds), so an
 *   exclusion never opens more than the path it names;
 * - the path as a log line shows it (ngx_esp_log_escape()) holds only
 *   printable ASCII, no '"' but an escaped one, and reads back to its
 *   first NGX_ESP_LOG_VALUE_LEN bytes, "..." marking a cut.
 */


#include "fuzz_common.h"

#include "../src/ngx_esp_match.c"
#include "../src/ngx_esp_http.c"
#include "../src/ngx_esp_log.c"


static size_t
fuzz_percent_decode(u_char *dst, u_char *src, size_t len)
{
    u_char  *d;
    size_t   i;

    d = dst;

    for (i = 0; i < len; i++) {
        if (src[i] == '%' && i + 2 < len) {
            *d++ = (u_char) (ngx_esp_unhex(src[i + 1]) * 16
                             + ngx_esp_unhex(src[i + 2]));
            i += 2;
            continue;
        }

        *d++ = src[i];
    }

    return d - dst;
}


static void
fuzz_check_canonical(ngx_str_t *c)
{
    size_t  i;

    FUZZ_ASSERT(c->len >= 1 && c->data[0] == '/');
    FUZZ_ASSERT(fuzz_memmem(c->data, c->len, "//", 2) == NULL);
    FUZZ_ASSERT(fuzz_memmem(c->data, c->len, "/./", 3) == NULL);
    FUZZ_ASSERT(fuzz_memmem(c->data, c->len, "/../", 4) == NULL);
    FUZZ_ASSERT(!fuzz_ends_with(c, "/."));
    FUZZ_ASSERT(!fuzz_ends_with(c, "/.."));
    FUZZ_ASSERT(!(c->len == 2 && c->data[1] == '.'));

    for (i = 0; i < c->len; i++) {
        FUZZ_ASSERT(c->data[i] != '\\');
        FUZZ_ASSERT(c->data[i] >= 0x20 && c->data[i] != 0x7f);
    }
}


static void
fuzz_check_log_escape(u_char *raw, size_t size)
{
    u_char      *back, *d, c;
    size_t       i, n, len;
    ngx_str_t    v, *e;
    ngx_pool_t  *pool;

    pool = fuzz_pool();

    v.data = raw;
    v.len = size;
    e = ngx_esp_log_escape(pool, &v);

    n = ngx_min(size, NGX_ESP_LOG_VALUE_LEN);
    len = e->len;

    FUZZ_ASSERT(len <= n * 4 + 3);

    if (n < size) {
        FUZZ_ASSERT(len >= 3 && ngx_memcmp(e->data + len - 3, "...", 3) == 0);
        len -= 3;
    }

    back = malloc(n + 1);
    d = back;

    for (i = 0; i < len; i++) {
        c = e->data[i];

        FUZZ_ASSERT(c >= 0x20 && c < 0x7f && c != '"');

        if (c != '\\') {
            *d++ = c;
            continue;
        }

        FUZZ_ASSERT(i + 1 < len);
        c = e->data[++i];

        if (c == 'x') {
            FUZZ_ASSERT(i + 2 < len);
            c = (u_char) (ngx_esp_unhex(e->data[i + 1]) * 16
                          + ngx_esp_unhex(e->data[i + 2]));
            FUZZ_ASSERT(c < 0x20 || c >= 0x7f);
            i += 2;

        } else {
            FUZZ_ASSERT(c == '"' || c == '\\');
        }

        *d++ = c;
    }

    FUZZ_ASSERT((size_t) (d - back) == n);
    FUZZ_ASSERT(ngx_memcmp(back, raw, n) == 0);

    free(back);
    ngx_destroy_pool(pool);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                  *raw, *dec;
    size_t                   dlen, n;
    ngx_int_t                rc, rc2;
    ngx_str_t                out, out2, pat;
    ngx_uint_t               plain;
    ngx_array_t              patterns;
    const char              *reason;
    ngx_esp_path_pattern_t   pp;

    /* exact-size copies: an overread of the input is caught */

    raw = fuzz_dup(data, size);
    out.data = malloc(size + 1);
    out.len = 0;

    reason = NULL;
    rc = ngx_esp_canonical_path(raw, size, &out, &reason);
    plain = ngx_esp_path_is_plain(raw, size);

    fuzz_check_log_escape(raw, size);

    FUZZ_ASSERT(rc == NGX_OK || rc == NGX_DECLINED);

    if (rc == NGX_DECLINED) {
        FUZZ_ASSERT(reason != NULL);
    }

    if (rc == NGX_OK) {
        FUZZ_ASSERT(out.len <= size || (size == 0 && out.len == 1));
        fuzz_check_canonical(&out);

        /* idempotent */

        out2.data = malloc(out.len + 1);
        rc2 = ngx_esp_canonical_path(out.data, out.len, &out2, &reason);

        /* a decoded "%" may now start an escape: only plain "%"-free */

        if (ngx_strlchr(out.data, out.data + out.len, '%') == NULL) {
            FUZZ_ASSERT(rc2 == NGX_OK);
            FUZZ_ASSERT(out2.len == out.len);
            FUZZ_ASSERT(ngx_memcmp(out2.data, out.data, out.len) == 0);
        }

        free(out2.data);
    }

    if (plain) {
        FUZZ_ASSERT(rc == NGX_OK);

        dec = malloc(size + 1);
        dlen = fuzz_percent_decode(dec, raw, size);

        FUZZ_ASSERT(out.len == dlen);
        FUZZ_ASSERT(ngx_memcmp(out.data, dec, dlen) == 0);

        /*
         * what every server reads the same way: decoding adds no "/"
         * and leaves no "%" (a second decoding changes nothing), and no
         * segment ends in "." or " " (Windows would drop them)
         */

        FUZZ_ASSERT(fuzz_count_byte(dec, dlen, '/')
                    == fuzz_count_byte(raw, size, '/'));
        FUZZ_ASSERT(ngx_strlchr(dec, dec + dlen, '%') == NULL);
        FUZZ_ASSERT(ngx_strlchr(dec, dec + dlen, ';') == NULL);
        FUZZ_ASSERT(ngx_strlchr(dec, dec + dlen, ':') == NULL);
        FUZZ_ASSERT(ngx_strlchr(dec, dec + dlen, '?') == NULL);
        FUZZ_ASSERT(ngx_strlchr(dec, dec + dlen, '#') == NULL);
        FUZZ_ASSERT(fuzz_memmem(dec, dlen, "./", 2) == NULL);
        FUZZ_ASSERT(fuzz_memmem(dec, dlen, " /", 2) == NULL);
        FUZZ_ASSERT(dlen == 0 || (dec[dlen - 1] != '.' && dec[dlen - 1] != ' '));

        /*
         * an exclusion pattern made of a prefix of the raw path and a
         * star matches the canonical path when it matches the raw one
         */

        n = size ? (data[0] % (size + 1)) : 0;

        if (n && ngx_strlchr(raw, raw + n, '%') == NULL) {
            pat.len = n + 1;
            pat.data = malloc(pat.len);
            ngx_memcpy(pat.data, raw, n);
            pat.data[n] = '*';

            pp.pattern = pat;
            patterns.elts = &pp;
            patterns.nelts = 1;

            if (ngx_esp_glob_match(pat.data, pat.len, raw, size)) {
                FUZZ_ASSERT(ngx_esp_match_paths(&patterns, &out));
            }

            free(pat.data);
        }

        free(dec);
    }

    free(out.data);
    free(raw);

    return 0;
}
