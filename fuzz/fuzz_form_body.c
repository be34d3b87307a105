
/*
 * Copyright (C) ngx_exchange_esp authors
 */


/*
 * The login form body: ngx_esp_parse_form() on the fuzzer's bytes as the
 * POST body (split over one to three buffers, as nginx may hand it
 * over), and ngx_esp_http_form_decode() on them as one field value.  The
 * static functions are reached by including src/ngx_esp_form.c and
 * src/ngx_esp_http.c (the body, the pairs, the decoding).
 *
 * Properties:
 * - the form is accepted exactly when a reference reading of it
 *   (url-encoded pairs, known fields at most once, strict "%XX", no
 *   control characters, strict UTF-8 (RFC 3629), length limits) accepts it,
 *   with the same field values;
 * - the raw body buffers are wiped once read, and the decoded password
 *   is wiped by the pool's cleanups;
 * - ngx_esp_form_escape() output unescapes back to its input.
 *
 * The module once used nginx's ngx_utf8_decode(), which lets surrogates
 * and lead bytes 0xf8-0xff through (regressions/form_body/strict-utf8-*).
 */


#include "fuzz_common.h"

#include "../src/ngx_esp_form.c"
#include "../src/ngx_esp_match.c"
#include "../src/ngx_esp_http.c"
#include "../src/ngx_esp_log.c"

#include "fuzz_http.h"


typedef struct {
    const char                *name;
    ngx_str_t                  value;
    ngx_uint_t                 set;
} fuzz_field_t;


static ngx_int_t
fuzz_unhex(u_char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c |= 0x20;

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    return -1;
}




/* NGX_OK, NGX_DECLINED: the reference decoding of one value */

static ngx_int_t
fuzz_ref_unescape(u_char *p, size_t len, u_char *out, size_t *olen)
{
    u_char  c;
    size_t  i, n;

    n = 0;

    for (i = 0; i < len; i++) {
        c = p[i];

        if (c == '+') {
            c = ' ';

        } else if (c == '%') {
            if (i + 2 >= len) {
                return NGX_DECLINED;
            }

            if (fuzz_unhex(p[i + 1]) < 0 || fuzz_unhex(p[i + 2]) < 0) {
                return NGX_DECLINED;
            }

            c = (u_char) (fuzz_unhex(p[i + 1]) * 16 + fuzz_unhex(p[i + 2]));
            i += 2;
        }

        if (c < 0x20 || c == 0x7f) {
            return NGX_DECLINED;
        }

        out[n++] = c;
    }

    *olen = n;

    return fuzz_utf8_valid(out, n) ? NGX_OK : NGX_DECLINED;
}


static ngx_int_t
fuzz_ref_parse(ngx_pool_t *pool, u_char *body, size_t len, fuzz_field_t *f,
    ngx_uint_t nf)
{
    u_char      *p, *last, *start, *eq, *out;
    size_t       klen, olen;
    ngx_uint_t   i;

    if (len == 0 || len > NGX_ESP_MAX_LOGIN_BODY) {
        return NGX_DECLINED;
    }

    p = body;
    last = body + len;

    while (p < last) {
        start = p;

        while (p < last && *p != '&') {
            p++;
        }

        eq = ngx_strlchr(start, p, '=');
        klen = (eq ? eq : p) - start;

        for (i = 0; i < nf; i++) {
            if (klen == ngx_strlen(f[i].name)
                && ngx_memcmp(start, f[i].name, klen) == 0)
            {
                break;
            }
        }

        if (i < nf) {
            if (f[i].set) {
                return NGX_DECLINED;
            }

            out = ngx_pnalloc(pool, len + 1);
            FUZZ_ASSERT(out != NULL);

            if (eq == NULL) {
                olen = 0;

            } else if (fuzz_ref_unescape(eq + 1, p - eq - 1, out, &olen)
                       != NGX_OK)
            {
                return NGX_DECLINED;
            }

            f[i].value.data = out;
            f[i].value.len = olen;
            f[i].set = 1;
        }

        p++;
    }

    if (f[0].value.len > NGX_ESP_MAX_USER
        || f[1].value.len > NGX_ESP_MAX_PASSWORD
        || f[2].value.len > NGX_ESP_MAX_URL)
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static void
fuzz_check_field(ngx_str_t *s, fuzz_field_t *ref)
{
    size_t  i;

    FUZZ_ASSERT((s->data != NULL) == (ref->set != 0));

    if (s->data == NULL) {
        return;
    }

    FUZZ_ASSERT(s->len == ref->value.len);
    FUZZ_ASSERT(ngx_memcmp(s->data, ref->value.data, s->len) == 0);

    for (i = 0; i < s->len; i++) {
        FUZZ_ASSERT(s->data[i] >= 0x20 && s->data[i] != 0x7f);
    }

    FUZZ_ASSERT(fuzz_utf8_valid(s->data, s->len));
}


static void
fuzz_parse_form(const uint8_t *data, size_t size)
{
    u_char                *body;
    size_t                 i, k, n, off;
    ngx_int_t              rc, ref;
    ngx_buf_t              b[3];
    ngx_pool_t            *pool;
    ngx_chain_t            cl[3];
    const char            *reason;
    fuzz_field_t           f[5];
    ngx_http_request_t    *r;
    ngx_esp_login_form_t   form;
    ngx_pool_cleanup_t    *c;

    pool = fuzz_pool();
    r = fuzz_request(pool);

    r->request_body = ngx_pcalloc(pool, sizeof(ngx_http_request_body_t));
    FUZZ_ASSERT(r->request_body != NULL);

    /* one to three buffers, each an exact-size allocation */

    k = 1 + size % 3;
    off = 0;

    for (i = 0; i < k; i++) {
        n = (i == k - 1) ? size - off : size / k;

        ngx_memzero(&b[i], sizeof(ngx_buf_t));
        b[i].start = fuzz_dup(data + off, n);
        b[i].pos = b[i].start;
        b[i].last = b[i].start + n;
        b[i].end = b[i].last;
        b[i].temporary = 1;

        cl[i].buf = &b[i];
        cl[i].next = (i == k - 1) ? NULL : &cl[i + 1];

        off += n;
    }

    r->request_body->bufs = &cl[0];

    ngx_memzero(&form, sizeof(ngx_esp_login_form_t));
    reason = NULL;

    rc = ngx_esp_parse_form(r, &form, &reason);

    FUZZ_ASSERT(reason != NULL);
    FUZZ_ASSERT(rc == NGX_OK || rc == NGX_HTTP_BAD_REQUEST
                || rc == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE);

    /* the reference reading, and the same answer */

    ngx_memzero(f, sizeof(f));
    f[0].name = "username";
    f[1].name = "password";
    f[2].name = "url";
    f[3].name = "csrf";
    f[4].name = "trusted";

    body = fuzz_dup(data, size);
    ref = fuzz_ref_parse(pool, body, size, f, 5);
    free(body);

    if (size > NGX_ESP_MAX_LOGIN_BODY) {
        FUZZ_ASSERT(rc == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE);

    } else {
        FUZZ_ASSERT((rc == NGX_OK) == (ref == NGX_OK));
    }

    if (rc == NGX_OK) {
        fuzz_check_field(&form.username, &f[0]);
        fuzz_check_field(&form.password, &f[1]);
        fuzz_check_field(&form.url, &f[2]);
        fuzz_check_field(&form.csrf, &f[3]);
        fuzz_check_field(&form.trusted, &f[4]);
    }

    /* once read, the raw body (it held the password) is wiped */

    if (size && size <= NGX_ESP_MAX_LOGIN_BODY) {
        for (i = 0; i < k; i++) {
            for (n = 0; n < (size_t) (b[i].last - b[i].pos); n++) {
                FUZZ_ASSERT(b[i].pos[n] == 0);
            }
        }
    }

    /* and the pool's cleanups wipe the decoded password */

    for (c = pool->cleanup; c; c = c->next) {
        if (c->handler) {
            c->handler(c->data);
            c->handler = NULL;
        }
    }

    for (n = 0; form.password.data && n < form.password.len; n++) {
        FUZZ_ASSERT(form.password.data[n] == 0);
    }

    for (i = 0; i < k; i++) {
        free(b[i].start);
    }

    ngx_destroy_pool(pool);
}


static void
fuzz_unescape(const uint8_t *data, size_t size)
{
    u_char      *out;
    size_t       olen;
    ngx_int_t    rc, ref;
    ngx_str_t    in, val, esc, back;
    ngx_pool_t  *pool;
    const char  *reason;

    pool = fuzz_pool();

    in.data = fuzz_dup(data, size);
    in.len = size;

    reason = NULL;
    rc = ngx_esp_http_form_decode(pool, &in, &val, 1, &reason);

    out = ngx_pnalloc(pool, size + 1);
    ref = fuzz_ref_unescape(in.data, in.len, out, &olen);

    FUZZ_ASSERT(rc == ref);
    FUZZ_ASSERT(rc == NGX_OK || reason != NULL);

    if (rc == NGX_OK) {
        FUZZ_ASSERT(val.len == olen);
        FUZZ_ASSERT(ngx_memcmp(val.data, out, olen) == 0);

        /* what the hand-off to Exchange sends decodes back the same */

        esc.len = ngx_esp_form_escaped_len(&val);
        esc.data = ngx_pnalloc(pool, esc.len ? esc.len : 1);
        FUZZ_ASSERT(ngx_esp_form_escape(esc.data, &val) == esc.data + esc.len);

        FUZZ_ASSERT(ngx_esp_http_form_decode(pool, &esc, &back, 1, &reason)
                    == NGX_OK);
        FUZZ_ASSERT(back.len == val.len);
        FUZZ_ASSERT(ngx_memcmp(back.data, val.data, val.len) == 0);
    }

    ngx_destroy_pool(pool);
    free(in.data);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_parse_form(data, size);
    fuzz_unescape(data, size);

    return 0;
}
