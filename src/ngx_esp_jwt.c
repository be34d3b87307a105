
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "ngx_esp_jwt.h"


/* an RSA modulus longer than this (16384 bits) is not a key we take */
#define NGX_ESP_JWK_MAX_MODULUS   2048
#define NGX_ESP_JWK_MIN_BITS      2048

/* "exp" and "nbf" as digits: more than this is no date of ours */
#define NGX_ESP_JWT_MAX_DIGITS    12


typedef struct {
    u_char                    *p;
    u_char                    *last;
    ngx_pool_t                *pool;
    ngx_uint_t                 depth;
    ngx_uint_t                 nodes;
    const char                *reason;
} ngx_esp_json_reader_t;


static ngx_esp_json_t *ngx_esp_json_value(ngx_esp_json_reader_t *rd);
static ngx_int_t ngx_esp_json_string(ngx_esp_json_reader_t *rd,
    ngx_str_t *s);
static ngx_int_t ngx_esp_json_number(ngx_esp_json_reader_t *rd,
    ngx_str_t *s);
static ngx_int_t ngx_esp_json_items(ngx_esp_json_reader_t *rd,
    ngx_esp_json_t *v);
static void ngx_esp_json_blanks(ngx_esp_json_reader_t *rd);
static u_char *ngx_esp_json_utf8(u_char *p, uint32_t c);
static ngx_int_t ngx_esp_json_hex4(u_char *p, uint32_t *c);
static ngx_int_t ngx_esp_json_is(ngx_esp_json_t *v, ngx_uint_t type);

static ngx_int_t ngx_esp_jwks_key(ngx_pool_t *pool, ngx_esp_json_t *k,
    ngx_esp_jwk_t *jwk, const char **reason);
static u_char *ngx_esp_der_len(u_char *p, size_t len);
static size_t ngx_esp_der_len_len(size_t len);
static u_char *ngx_esp_der_uint(u_char *p, ngx_str_t *n);
static size_t ngx_esp_der_uint_len(ngx_str_t *n);
static EVP_PKEY *ngx_esp_der_pubkey(u_char *der, size_t len);
static void ngx_esp_jwk_cleanup(void *data);

static ngx_int_t ngx_esp_jwt_date(ngx_esp_json_t *v, time_t *t);
static ngx_int_t ngx_esp_jwt_one_of(ngx_str_t *s, ngx_array_t *list);
static ngx_int_t ngx_esp_jwt_signature(ngx_esp_jwk_t *key, ngx_str_t *input,
    ngx_str_t *sig);


/* ---------------------------------------------------------------- JSON */


ngx_esp_json_t *
ngx_esp_json_parse(ngx_pool_t *pool, u_char *p, size_t len,
    const char **reason)
{
    ngx_esp_json_t         *v;
    ngx_esp_json_reader_t   rd;

    rd.p = p;
    rd.last = p + len;
    rd.pool = pool;
    rd.depth = 0;
    rd.nodes = 0;
    rd.reason = "not JSON";

    ngx_esp_json_blanks(&rd);

    v = ngx_esp_json_value(&rd);

    if (v) {
        ngx_esp_json_blanks(&rd);

        if (rd.p != rd.last) {
            rd.reason = "JSON followed by more";
            v = NULL;
        }
    }

    *reason = rd.reason;

    return v;
}


ngx_esp_json_t *
ngx_esp_json_get(ngx_esp_json_t *obj, char *name)
{
    size_t           len;
    ngx_esp_json_t  *m;

    if (obj == NULL || obj->type != NGX_ESP_JSON_OBJECT) {
        return NULL;
    }

    len = ngx_strlen(name);

    for (m = obj->child; m; m = m->next) {
        if (m->name.len == len && ngx_memcmp(m->name.data, name, len) == 0) {
            return m;
        }
    }

    return NULL;
}


static ngx_esp_json_t *
ngx_esp_json_value(ngx_esp_json_reader_t *rd)
{
    size_t           n;
    ngx_int_t        rc;
    const char      *lit;
    ngx_esp_json_t  *v;

    if (rd->p == rd->last) {
        rd->reason = "JSON ends early";
        return NULL;
    }

    if (++rd->nodes > NGX_ESP_JSON_MAX_NODES) {
        rd->reason = "JSON too large";
        return NULL;
    }

    v = ngx_pcalloc(rd->pool, sizeof(ngx_esp_json_t));
    if (v == NULL) {
        rd->reason = "out of memory";
        return NULL;
    }

    switch (*rd->p) {

    case '{':
    case '[':
        if (++rd->depth > NGX_ESP_JSON_MAX_DEPTH) {
            rd->reason = "JSON too deep";
            return NULL;
        }

        v->type = (*rd->p++ == '{') ? NGX_ESP_JSON_OBJECT
                                    : NGX_ESP_JSON_ARRAY;
        rc = ngx_esp_json_items(rd, v);

        rd->depth--;

        return (rc == NGX_OK) ? v : NULL;

    case '"':
        v->type = NGX_ESP_JSON_STRING;
        return (ngx_esp_json_string(rd, &v->value) == NGX_OK) ? v : NULL;

    case 't':
        v->type = NGX_ESP_JSON_TRUE;
        n = 4;
        break;

    case 'f':
        v->type = NGX_ESP_JSON_FALSE;
        n = 5;
        break;

    case 'n':
        v->type = NGX_ESP_JSON_NULL;
        n = 4;
        break;

    default:
        v->type = NGX_ESP_JSON_NUMBER;
        return (ngx_esp_json_number(rd, &v->value) == NGX_OK) ? v : NULL;
    }

    lit = (v->type == NGX_ESP_JSON_TRUE) ? "true"
          : (v->type == NGX_ESP_JSON_FALSE) ? "false" : "null";

    if ((size_t) (rd->last - rd->p) < n || ngx_memcmp(rd->p, lit, n) != 0)
    {
        rd->reason = "not a JSON value";
        return NULL;
    }

    rd->p += n;

    return v;
}


/* an object's members or an array's elements, up to the closing bracket */

static ngx_int_t
ngx_esp_json_items(ngx_esp_json_reader_t *rd, ngx_esp_json_t *v)
{
    u_char           close;
    ngx_str_t        name;
    ngx_uint_t       n;
    ngx_esp_json_t  *item, *seen, **tail;

    close = (v->type == NGX_ESP_JSON_OBJECT) ? '}' : ']';
    tail = &v->child;
    n = 0;

    ngx_esp_json_blanks(rd);

    if (rd->p < rd->last && *rd->p == close) {
        rd->p++;
        return NGX_OK;
    }

    for ( ;; ) {

        if (++n > NGX_ESP_JSON_MAX_MEMBERS) {
            rd->reason = "JSON object or array too large";
            return NGX_ERROR;
        }

        if (v->type == NGX_ESP_JSON_OBJECT) {

            if (rd->p == rd->last || *rd->p != '"') {
                rd->reason = "JSON member name expected";
                return NGX_ERROR;
            }

            if (ngx_esp_json_string(rd, &name) != NGX_OK) {
                return NGX_ERROR;
            }

            /*
             * one name, one meaning: JSON parsers differ on repeated
             * names (first or last wins), so the issuer's may not be ours
             */

            for (seen = v->child; seen; seen = seen->next) {
                if (seen->name.len == name.len
                    && ngx_memcmp(seen->name.data, name.data, name.len) == 0)
                {
                    rd->reason = "JSON member repeated";
                    return NGX_ERROR;
                }
            }

            ngx_esp_json_blanks(rd);

            if (rd->p == rd->last || *rd->p != ':') {
                rd->reason = "JSON \":\" expected";
                return NGX_ERROR;
            }

            rd->p++;
            ngx_esp_json_blanks(rd);
        }

        item = ngx_esp_json_value(rd);
        if (item == NULL) {
            return NGX_ERROR;
        }

        if (v->type == NGX_ESP_JSON_OBJECT) {
            item->name = name;
        }

        *tail = item;
        tail = &item->next;

        ngx_esp_json_blanks(rd);

        if (rd->p == rd->last) {
            rd->reason = "JSON ends early";
            return NGX_ERROR;
        }

        if (*rd->p == close) {
            rd->p++;
            return NGX_OK;
        }

        if (*rd->p != ',') {
            rd->reason = "JSON \",\" expected";
            return NGX_ERROR;
        }

        rd->p++;
        ngx_esp_json_blanks(rd);
    }
}


/*
 * A string, decoded to UTF-8.  The decoded text is never longer than
 * the written one: a \uXXXX (6 bytes) gives at most 3, a pair (12) 4.
 */

static ngx_int_t
ngx_esp_json_string(ngx_esp_json_reader_t *rd, ngx_str_t *s)
{
    u_char    *p, *d, c;
    size_t     len, n;
    uint32_t   u, lo;

    p = ++rd->p;

    while (p < rd->last && *p != '"') {
        p += (*p == '\\' && p + 1 < rd->last) ? 2 : 1;
    }

    if (p >= rd->last) {
        rd->reason = "JSON string not closed";
        return NGX_ERROR;
    }

    len = p - rd->p;

    s->data = ngx_pnalloc(rd->pool, len ? len : 1);
    if (s->data == NULL) {
        rd->reason = "out of memory";
        return NGX_ERROR;
    }

    d = s->data;
    p = rd->p;

    while (*p != '"') {

        c = *p;

        if (c < 0x20) {
            rd->reason = "JSON string holds a control character";
            return NGX_ERROR;
        }

        if (c >= 0x80) {

            /* UTF-8 as RFC 3629: shortest form, no surrogates, <= U+10FFFF */

            if (c >= 0xc2 && c <= 0xdf) {
                n = 1; u = c & 0x1f;

            } else if (c >= 0xe0 && c <= 0xef) {
                n = 2; u = c & 0x0f;

            } else if (c >= 0xf0 && c <= 0xf4) {
                n = 3; u = c & 0x07;

            } else {
                rd->reason = "JSON string is not UTF-8";
                return NGX_ERROR;
            }

            if ((size_t) (rd->last - p) <= n) {
                rd->reason = "JSON string is not UTF-8";
                return NGX_ERROR;
            }

            *d++ = *p++;

            while (n--) {
                if ((*p & 0xc0) != 0x80) {
                    rd->reason = "JSON string is not UTF-8";
                    return NGX_ERROR;
                }

                u = (u << 6) | (*p & 0x3f);
                *d++ = *p++;
            }

            if ((c >= 0xe0 && c <= 0xef && u < 0x800)
                || (c >= 0xf0 && (u < 0x10000 || u > 0x10ffff))
                || (u >= 0xd800 && u <= 0xdfff))
            {
                rd->reason = "JSON string is not UTF-8";
                return NGX_ERROR;
            }

            continue;
        }

        if (c != '\\') {
            *d++ = *p++;
            continue;
        }

        p++;

        switch (*p) {
        case '"':  *d++ = '"'; break;
        case '\\': *d++ = '\\'; break;
        case '/':  *d++ = '/'; break;
        case 'b':  *d++ = '\b'; break;
        case 'f':  *d++ = '\f'; break;
        case 'n':  *d++ = '\n'; break;
        case 'r':  *d++ = '\r'; break;
        case 't':  *d++ = '\t'; break;

        case 'u':
            if ((size_t) (rd->last - p) < 5
                || ngx_esp_json_hex4(p + 1, &u) != NGX_OK)
            {
                rd->reason = "JSON \\u escape malformed";
                return NGX_ERROR;
            }

            p += 4;

            if (u >= 0xdc00 && u <= 0xdfff) {
                rd->reason = "JSON \\u escape malformed";
                return NGX_ERROR;
            }

            if (u >= 0xd800 && u <= 0xdbff) {
                if ((size_t) (rd->last - p) < 7
                    || p[1] != '\\' || p[2] != 'u'
                    || ngx_esp_json_hex4(p + 3, &lo) != NGX_OK
                    || lo < 0xdc00 || lo > 0xdfff)
                {
                    rd->reason = "JSON \\u escape malformed";
                    return NGX_ERROR;
                }

                p += 6;
                u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
            }

            /* a NUL inside a name or a claim could end it early elsewhere */

            if (u == 0) {
                rd->reason = "JSON string holds NUL";
                return NGX_ERROR;
            }

            d = ngx_esp_json_utf8(d, u);
            break;

        default:
            rd->reason = "JSON escape malformed";
            return NGX_ERROR;
        }

        p++;
    }

    s->len = d - s->data;
    rd->p = p + 1;

    return NGX_OK;
}


static ngx_int_t
ngx_esp_json_number(ngx_esp_json_reader_t *rd, ngx_str_t *s)
{
    u_char  *p, *start;

    p = rd->p;
    start = p;

    if (p < rd->last && *p == '-') {
        p++;
    }

    if (p == rd->last || *p < '0' || *p > '9') {
        rd->reason = "not a JSON value";
        return NGX_ERROR;
    }

    if (*p == '0') {
        p++;

    } else {
        while (p < rd->last && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    if (p < rd->last && *p == '.') {
        p++;

        if (p == rd->last || *p < '0' || *p > '9') {
            rd->reason = "JSON number malformed";
            return NGX_ERROR;
        }

        while (p < rd->last && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    if (p < rd->last && (*p == 'e' || *p == 'E')) {
        p++;

        if (p < rd->last && (*p == '+' || *p == '-')) {
            p++;
        }

        if (p == rd->last || *p < '0' || *p > '9') {
            rd->reason = "JSON number malformed";
            return NGX_ERROR;
        }

        while (p < rd->last && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    s->data = start;
    s->len = p - start;
    rd->p = p;

    return NGX_OK;
}


static void
ngx_esp_json_blanks(ngx_esp_json_reader_t *rd)
{
    while (rd->p < rd->last
           && (*rd->p == ' ' || *rd->p == '\t' || *rd->p == '\n'
               || *rd->p == '\r'))
    {
        rd->p++;
    }
}


static ngx_int_t
ngx_esp_json_hex4(u_char *p, uint32_t *c)
{
    ngx_uint_t  i;
    u_char      ch;

    *c = 0;

    for (i = 0; i < 4; i++) {
        ch = p[i];

        if (ch >= '0' && ch <= '9') {
            *c = (*c << 4) | (ch - '0');

        } else if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f') {
            *c = (*c << 4) | ((ch | 0x20) - 'a' + 10);

        } else {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static u_char *
ngx_esp_json_utf8(u_char *p, uint32_t c)
{
    if (c < 0x80) {
        *p++ = (u_char) c;

    } else if (c < 0x800) {
        *p++ = (u_char) (0xc0 | (c >> 6));
        *p++ = (u_char) (0x80 | (c & 0x3f));

    } else if (c < 0x10000) {
        *p++ = (u_char) (0xe0 | (c >> 12));
        *p++ = (u_char) (0x80 | ((c >> 6) & 0x3f));
        *p++ = (u_char) (0x80 | (c & 0x3f));

    } else {
        *p++ = (u_char) (0xf0 | (c >> 18));
        *p++ = (u_char) (0x80 | ((c >> 12) & 0x3f));
        *p++ = (u_char) (0x80 | ((c >> 6) & 0x3f));
        *p++ = (u_char) (0x80 | (c & 0x3f));
    }

    return p;
}


static ngx_int_t
ngx_esp_json_is(ngx_esp_json_t *v, ngx_uint_t type)
{
    return v != NULL && v->type == type;
}


/* ----------------------------------------------------------- base64url */


ngx_int_t
ngx_esp_jwt_base64url(ngx_pool_t *pool, ngx_str_t *src, ngx_str_t *dst)
{
    u_char      c;
    size_t      i;
    ngx_uint_t  v;

    if (src->len % 4 == 1) {
        return NGX_DECLINED;
    }

    v = 0;

    for (i = 0; i < src->len; i++) {
        c = src->data[i];

        if (c >= 'A' && c <= 'Z') {
            v = c - 'A';

        } else if (c >= 'a' && c <= 'z') {
            v = c - 'a' + 26;

        } else if (c >= '0' && c <= '9') {
            v = c - '0' + 52;

        } else if (c == '-' || c == '_') {
            v = (c == '-') ? 62 : 63;

        } else {
            return NGX_DECLINED;
        }
    }

    /* the bits past the last byte are zero: one spelling per value */

    if (src->len % 4 && (v & ((src->len % 4 == 2) ? 0x0f : 0x03))) {
        return NGX_DECLINED;
    }

    dst->data = ngx_pnalloc(pool, ngx_base64_decoded_length(src->len) + 1);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    if (ngx_decode_base64url(dst, src) != NGX_OK) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* ---------------------------------------------------------------- JWKS */


ngx_int_t
ngx_esp_jwks_parse(ngx_pool_t *pool, u_char *p, size_t len,
    ngx_array_t *keys, ngx_uint_t *skipped, const char **reason)
{
    ngx_int_t        rc;
    ngx_uint_t       i, first;
    ngx_esp_jwk_t   *jwk, *k;
    ngx_esp_json_t  *doc, *set, *key;

    *skipped = 0;

    doc = ngx_esp_json_parse(pool, p, len, reason);
    if (doc == NULL) {
        return NGX_ERROR;
    }

    set = ngx_esp_json_get(doc, "keys");

    if (!ngx_esp_json_is(set, NGX_ESP_JSON_ARRAY)) {
        *reason = "no \"keys\" array";
        return NGX_ERROR;
    }

    first = keys->nelts;

    for (key = set->child; key; key = key->next) {

        if (key->type != NGX_ESP_JSON_OBJECT) {
            *reason = "a key is not an object";
            return NGX_ERROR;
        }

        jwk = ngx_array_push(keys);
        if (jwk == NULL) {
            *reason = "out of memory";
            return NGX_ERROR;
        }

        rc = ngx_esp_jwks_key(pool, key, jwk, reason);

        if (rc == NGX_DECLINED) {
            keys->nelts--;
            (*skipped)++;
            continue;
        }

        if (rc != NGX_OK) {
            keys->nelts--;
            return NGX_ERROR;
        }

        k = keys->elts;

        for (i = first; i + 1 < keys->nelts; i++) {
            if (k[i].kid.len == jwk->kid.len
                && ngx_memcmp(k[i].kid.data, jwk->kid.data, jwk->kid.len)
                   == 0)
            {
                *reason = "a \"kid\" repeated";
                return NGX_ERROR;
            }
        }
    }

    if (keys->nelts == first) {
        *reason = "no RS256 or ES256 signing key with a \"kid\"";
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * One key: NGX_OK, NGX_DECLINED (not a signing key of ours: skipped) or
 * NGX_ERROR (malformed).  The key goes to OpenSSL as the DER of a
 * SubjectPublicKeyInfo, the one form every OpenSSL version reads alike.
 */

static ngx_int_t
ngx_esp_jwks_key(ngx_pool_t *pool, ngx_esp_json_t *k, ngx_esp_jwk_t *jwk,
    const char **reason)
{
    u_char              *p, der[NGX_ESP_JWK_MAX_MODULUS + 64];
    size_t               bits, seq;
    ngx_str_t            n, e, x, y;
    ngx_esp_json_t      *kty, *kid, *use, *alg, *crv;
    ngx_pool_cleanup_t  *cln;

    static u_char  rsa_alg[] = {
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d,
        0x01, 0x01, 0x01, 0x05, 0x00
    };

    static u_char  p256_spki[] = {
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce,
        0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d,
        0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04
    };

    kty = ngx_esp_json_get(k, "kty");
    kid = ngx_esp_json_get(k, "kid");
    use = ngx_esp_json_get(k, "use");
    alg = ngx_esp_json_get(k, "alg");

    if (!ngx_esp_json_is(kty, NGX_ESP_JSON_STRING)) {
        *reason = "a key without \"kty\"";
        return NGX_ERROR;
    }

    /* encryption keys, HMAC secrets ("oct"), keys nobody can name: not ours */

    if (!ngx_esp_json_is(kid, NGX_ESP_JSON_STRING) || kid->value.len == 0
        || (use && (use->type != NGX_ESP_JSON_STRING
                    || use->value.len != 3
                    || ngx_memcmp(use->value.data, "sig", 3) != 0)))
    {
        return NGX_DECLINED;
    }

    jwk->kid = kid->value;

    if (kty->value.len == 3 && ngx_memcmp(kty->value.data, "RSA", 3) == 0) {

        if (alg && (alg->type != NGX_ESP_JSON_STRING
                    || alg->value.len != 5
                    || ngx_memcmp(alg->value.data, "RS256", 5) != 0))
        {
            return NGX_DECLINED;
        }

        jwk->alg = NGX_ESP_JWT_RS256;

        if (!ngx_esp_json_is(ngx_esp_json_get(k, "n"), NGX_ESP_JSON_STRING)
            || !ngx_esp_json_is(ngx_esp_json_get(k, "e"),
                                NGX_ESP_JSON_STRING)
            || ngx_esp_jwt_base64url(pool, &ngx_esp_json_get(k, "n")->value,
                                     &n)
               != NGX_OK
            || ngx_esp_jwt_base64url(pool, &ngx_esp_json_get(k, "e")->value,
                                     &e)
               != NGX_OK)
        {
            *reason = "an RSA key without a base64url \"n\" and \"e\"";
            return NGX_ERROR;
        }

        while (n.len && n.data[0] == 0) {
            n.data++;
            n.len--;
        }

        while (e.len && e.data[0] == 0) {
            e.data++;
            e.len--;
        }

        /* an even or tiny exponent is no key anybody meant */

        if (n.len == 0 || n.len > NGX_ESP_JWK_MAX_MODULUS
            || e.len == 0 || e.len > 8 || !(e.data[e.len - 1] & 1)
            || (e.len == 1 && e.data[0] < 3))
        {
            *reason = "an RSA key of a size or exponent not taken";
            return NGX_ERROR;
        }

        /* SEQUENCE { AlgorithmIdentifier, BIT STRING { RSAPublicKey } } */

        seq = ngx_esp_der_uint_len(&n) + ngx_esp_der_uint_len(&e);
        bits = 1 + 1 + ngx_esp_der_len_len(seq) + seq;

        p = der;
        *p++ = 0x30;
        p = ngx_esp_der_len(p, sizeof(rsa_alg)
                               + 1 + ngx_esp_der_len_len(bits) + bits);
        p = ngx_cpymem(p, rsa_alg, sizeof(rsa_alg));
        *p++ = 0x03;
        p = ngx_esp_der_len(p, bits);
        *p++ = 0x00;
        *p++ = 0x30;
        p = ngx_esp_der_len(p, seq);
        p = ngx_esp_der_uint(p, &n);
        p = ngx_esp_der_uint(p, &e);

    } else if (kty->value.len == 2
               && ngx_memcmp(kty->value.data, "EC", 2) == 0)
    {
        crv = ngx_esp_json_get(k, "crv");

        if (!ngx_esp_json_is(crv, NGX_ESP_JSON_STRING)
            || crv->value.len != 5
            || ngx_memcmp(crv->value.data, "P-256", 5) != 0
            || (alg && (alg->type != NGX_ESP_JSON_STRING
                        || alg->value.len != 5
                        || ngx_memcmp(alg->value.data, "ES256", 5) != 0)))
        {
            return NGX_DECLINED;
        }

        jwk->alg = NGX_ESP_JWT_ES256;

        if (!ngx_esp_json_is(ngx_esp_json_get(k, "x"), NGX_ESP_JSON_STRING)
            || !ngx_esp_json_is(ngx_esp_json_get(k, "y"),
                                NGX_ESP_JSON_STRING)
            || ngx_esp_jwt_base64url(pool, &ngx_esp_json_get(k, "x")->value,
                                     &x)
               != NGX_OK
            || ngx_esp_jwt_base64url(pool, &ngx_esp_json_get(k, "y")->value,
                                     &y)
               != NGX_OK
            || x.len != 32 || y.len != 32)
        {
            *reason = "an EC key without 32-byte base64url \"x\" and \"y\"";
            return NGX_ERROR;
        }

        p = ngx_cpymem(der, p256_spki, sizeof(p256_spki));
        p = ngx_cpymem(p, x.data, 32);
        p = ngx_cpymem(p, y.data, 32);

    } else {
        return NGX_DECLINED;
    }

    jwk->pkey = ngx_esp_der_pubkey(der, p - der);

    if (jwk->pkey == NULL) {
        *reason = "a key OpenSSL does not take (not on the curve?)";
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        EVP_PKEY_free(jwk->pkey);
        *reason = "out of memory";
        return NGX_ERROR;
    }

    cln->handler = ngx_esp_jwk_cleanup;
    cln->data = jwk->pkey;

    if (jwk->alg == NGX_ESP_JWT_RS256
        && EVP_PKEY_bits(jwk->pkey) < NGX_ESP_JWK_MIN_BITS)
    {
        *reason = "an RSA key shorter than 2048 bits";
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_esp_jwk_cleanup(void *data)
{
    EVP_PKEY_free(data);
}


static EVP_PKEY *
ngx_esp_der_pubkey(u_char *der, size_t len)
{
    EVP_PKEY             *pkey;
    const unsigned char  *p;

    p = der;

    pkey = d2i_PUBKEY(NULL, &p, (long) len);

    if (pkey && p != der + len) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }

    ERR_clear_error();

    return pkey;
}


static u_char *
ngx_esp_der_len(u_char *p, size_t len)
{
    if (len < 128) {
        *p++ = (u_char) len;

    } else if (len < 256) {
        *p++ = 0x81;
        *p++ = (u_char) len;

    } else {
        *p++ = 0x82;
        *p++ = (u_char) (len >> 8);
        *p++ = (u_char) len;
    }

    return p;
}


static size_t
ngx_esp_der_len_len(size_t len)
{
    return (len < 128) ? 1 : (len < 256) ? 2 : 3;
}


/* an unsigned big-endian number without leading zeros, as an INTEGER */

static size_t
ngx_esp_der_uint_len(ngx_str_t *n)
{
    size_t  body;

    body = n->len + ((n->data[0] & 0x80) ? 1 : 0);

    return 1 + ngx_esp_der_len_len(body) + body;
}


static u_char *
ngx_esp_der_uint(u_char *p, ngx_str_t *n)
{
    ngx_uint_t  pad;

    pad = (n->data[0] & 0x80) ? 1 : 0;

    *p++ = 0x02;
    p = ngx_esp_der_len(p, n->len + pad);

    if (pad) {
        *p++ = 0x00;
    }

    return ngx_cpymem(p, n->data, n->len);
}


/* ----------------------------------------------------------------- JWT */


ngx_int_t
ngx_esp_jwt_verify(ngx_pool_t *pool, ngx_str_t *token,
    ngx_esp_jwt_policy_t *policy, ngx_esp_jwt_t *jwt, const char **reason)
{
    u_char          *dot1, *dot2, *last;
    ngx_int_t        rc;
    ngx_str_t        part, header, payload, sig, input;
    ngx_uint_t       i, alg, matched;
    ngx_esp_jwk_t   *keys, *key;
    ngx_esp_json_t  *h, *c, *v, *kid, *typ, *aud, *a;

    ngx_memzero(jwt, sizeof(ngx_esp_jwt_t));

    if (token->len == 0 || token->len > NGX_ESP_JWT_MAX_LEN) {
        *reason = "token empty or too long";
        return NGX_DECLINED;
    }

    last = token->data + token->len;

    dot1 = ngx_strlchr(token->data, last, '.');
    dot2 = dot1 ? ngx_strlchr(dot1 + 1, last, '.') : NULL;

    if (dot2 == NULL || ngx_strlchr(dot2 + 1, last, '.') != NULL) {
        *reason = "not three parts (JWS compact)";
        return NGX_DECLINED;
    }

    /* the header */

    part.data = token->data;
    part.len = dot1 - token->data;

    rc = ngx_esp_jwt_base64url(pool, &part, &header);
    if (rc != NGX_OK) {
        *reason = "header not base64url";
        return rc;
    }

    h = ngx_esp_json_parse(pool, header.data, header.len, reason);

    if (h == NULL || h->type != NGX_ESP_JSON_OBJECT) {
        *reason = "header not a JSON object";
        return NGX_DECLINED;
    }

    v = ngx_esp_json_get(h, "alg");

    if (!ngx_esp_json_is(v, NGX_ESP_JSON_STRING)) {
        *reason = "no \"alg\"";
        return NGX_DECLINED;
    }

    jwt->alg = v->value;

    if (v->value.len == 5 && ngx_memcmp(v->value.data, "RS256", 5) == 0) {
        alg = NGX_ESP_JWT_RS256;

    } else if (v->value.len == 5
               && ngx_memcmp(v->value.data, "ES256", 5) == 0)
    {
        alg = NGX_ESP_JWT_ES256;

    } else if (v->value.len == 4
               && ngx_strncasecmp(v->value.data, (u_char *) "none", 4) == 0)
    {
        *reason = "alg \"none\"";
        return NGX_DECLINED;

    } else {
        /* HS256 above all: the public key must never serve as a secret */
        *reason = "alg not allowed";
        return NGX_DECLINED;
    }

    /* extensions we do not know must not be ignored (RFC 7515 4.1.11) */

    if (ngx_esp_json_get(h, "crit") || ngx_esp_json_get(h, "enc")
        || ngx_esp_json_get(h, "zip") || ngx_esp_json_get(h, "b64"))
    {
        *reason = "header holds crit, enc, zip or b64";
        return NGX_DECLINED;
    }

    typ = ngx_esp_json_get(h, "typ");

    if (typ
        && !(ngx_esp_json_is(typ, NGX_ESP_JSON_STRING)
             && ((typ->value.len == 3
                  && ngx_strncasecmp(typ->value.data, (u_char *) "JWT", 3)
                     == 0)
                 || (typ->value.len == 6
                     && ngx_strncasecmp(typ->value.data,
                                        (u_char *) "at+jwt", 6)
                        == 0))))
    {
        *reason = "typ is neither JWT nor at+jwt";
        return NGX_DECLINED;
    }

    /* the key: named by "kid", of the token's algorithm */

    kid = ngx_esp_json_get(h, "kid");

    if (!ngx_esp_json_is(kid, NGX_ESP_JSON_STRING)) {
        *reason = "no \"kid\"";
        return NGX_DECLINED;
    }

    jwt->kid = kid->value;

    key = NULL;
    keys = policy->keys ? policy->keys->elts : NULL;

    for (i = 0; policy->keys && i < policy->keys->nelts; i++) {
        if (keys[i].kid.len == kid->value.len
            && ngx_memcmp(keys[i].kid.data, kid->value.data,
                          kid->value.len)
               == 0)
        {
            key = &keys[i];
            break;
        }
    }

    if (key == NULL) {
        *reason = "unknown kid";
        return NGX_DECLINED;
    }

    if (key->alg != alg) {
        *reason = "alg is not that of the key";
        return NGX_DECLINED;
    }

    part.data = dot1 + 1;
    part.len = dot2 - part.data;

    rc = ngx_esp_jwt_base64url(pool, &part, &payload);
    if (rc != NGX_OK) {
        *reason = "payload not base64url";
        return rc;
    }

    part.data = dot2 + 1;
    part.len = last - part.data;

    rc = ngx_esp_jwt_base64url(pool, &part, &sig);
    if (rc != NGX_OK) {
        *reason = "signature not base64url";
        return rc;
    }

    /* the signature, before a byte of the claims is read */

    input.data = token->data;
    input.len = dot2 - token->data;

    rc = ngx_esp_jwt_signature(key, &input, &sig);

    if (rc != NGX_OK) {
        *reason = "bad signature";
        return rc;
    }

    c = ngx_esp_json_parse(pool, payload.data, payload.len, reason);

    if (c == NULL || c->type != NGX_ESP_JSON_OBJECT) {
        *reason = "payload not a JSON object";
        return NGX_DECLINED;
    }

    if (ngx_esp_jwt_date(ngx_esp_json_get(c, "exp"), &jwt->exp) != NGX_OK) {
        *reason = "no valid \"exp\"";
        return NGX_DECLINED;
    }

    if (jwt->exp < policy->now - policy->skew) {
        *reason = "expired";
        return NGX_DECLINED;
    }

    v = ngx_esp_json_get(c, "nbf");

    if (v) {
        time_t  nbf;

        if (ngx_esp_jwt_date(v, &nbf) != NGX_OK) {
            *reason = "no valid \"nbf\"";
            return NGX_DECLINED;
        }

        if (nbf > policy->now + policy->skew) {
            *reason = "not yet valid";
            return NGX_DECLINED;
        }
    }

    v = ngx_esp_json_get(c, "iss");

    if (!ngx_esp_json_is(v, NGX_ESP_JSON_STRING)
        || ngx_esp_jwt_one_of(&v->value, policy->issuers) != NGX_OK)
    {
        *reason = "wrong issuer";
        return NGX_DECLINED;
    }

    aud = ngx_esp_json_get(c, "aud");
    matched = 0;

    if (ngx_esp_json_is(aud, NGX_ESP_JSON_STRING)) {
        matched = (ngx_esp_jwt_one_of(&aud->value, policy->audiences)
                   == NGX_OK);

    } else if (ngx_esp_json_is(aud, NGX_ESP_JSON_ARRAY)) {

        for (a = aud->child; a; a = a->next) {
            if (a->type != NGX_ESP_JSON_STRING) {
                *reason = "\"aud\" holds a non-string";
                return NGX_DECLINED;
            }

            if (ngx_esp_jwt_one_of(&a->value, policy->audiences) == NGX_OK) {
                matched = 1;
            }
        }
    }

    if (!matched) {
        *reason = "wrong audience";
        return NGX_DECLINED;
    }

    v = ngx_esp_json_get(c, "upn");

    if (!ngx_esp_json_is(v, NGX_ESP_JSON_STRING)) {
        v = ngx_esp_json_get(c, "unique_name");
    }

    if (!ngx_esp_json_is(v, NGX_ESP_JSON_STRING)) {
        v = ngx_esp_json_get(c, "sub");
    }

    if (ngx_esp_json_is(v, NGX_ESP_JSON_STRING)) {
        jwt->user = v->value;
    }

    *reason = "verified";

    return NGX_OK;
}


/* a NumericDate: digits, perhaps a fraction (dropped); no exponent */

static ngx_int_t
ngx_esp_jwt_date(ngx_esp_json_t *v, time_t *t)
{
    u_char     *p, *last;
    ngx_int_t   sign;
    time_t      n;

    if (!ngx_esp_json_is(v, NGX_ESP_JSON_NUMBER)) {
        return NGX_ERROR;
    }

    p = v->value.data;
    last = p + v->value.len;
    sign = 1;

    if (*p == '-') {
        sign = -1;
        p++;
    }

    n = 0;

    while (p < last && *p >= '0' && *p <= '9') {
        if (p - v->value.data >= NGX_ESP_JWT_MAX_DIGITS) {
            return NGX_ERROR;
        }

        n = n * 10 + (*p++ - '0');
    }

    if (p < last && *p == '.') {
        for (p++; p < last && *p >= '0' && *p <= '9'; p++) {
            /* void */
        }
    }

    if (p != last) {
        return NGX_ERROR;
    }

    *t = sign * n;

    return NGX_OK;
}


static ngx_int_t
ngx_esp_jwt_one_of(ngx_str_t *s, ngx_array_t *list)
{
    ngx_str_t   *v;
    ngx_uint_t   i;

    if (list == NULL) {
        return NGX_DECLINED;
    }

    v = list->elts;

    for (i = 0; i < list->nelts; i++) {
        if (v[i].len == s->len && ngx_memcmp(v[i].data, s->data, s->len) == 0)
        {
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/*
 * RS256: PKCS #1 v1.5 over SHA-256.  ES256: JOSE writes r || s, 32 bytes
 * each; OpenSSL wants the DER ECDSA-Sig-Value.
 */

static ngx_int_t
ngx_esp_jwt_signature(ngx_esp_jwk_t *key, ngx_str_t *input, ngx_str_t *sig)
{
    int          ok;
    u_char       der[80], *p;
    ngx_str_t    r, s, verify;
    EVP_MD_CTX  *md;

    verify = *sig;

    if (key->alg == NGX_ESP_JWT_ES256) {

        if (sig->len != 64) {
            return NGX_DECLINED;
        }

        r.data = sig->data;
        r.len = 32;
        s.data = sig->data + 32;
        s.len = 32;

        while (r.len > 1 && r.data[0] == 0) {
            r.data++;
            r.len--;
        }

        while (s.len > 1 && s.data[0] == 0) {
            s.data++;
            s.len--;
        }

        p = der;
        *p++ = 0x30;
        *p++ = (u_char) (ngx_esp_der_uint_len(&r) + ngx_esp_der_uint_len(&s));
        p = ngx_esp_der_uint(p, &r);
        p = ngx_esp_der_uint(p, &s);

        verify.data = der;
        verify.len = p - der;
    }

    md = EVP_MD_CTX_new();
    if (md == NULL) {
        return NGX_ERROR;
    }

    ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key->pkey) == 1
         && EVP_DigestVerify(md, verify.data, verify.len,
                             input->data, input->len)
            == 1;

    EVP_MD_CTX_free(md);
    ERR_clear_error();

    return ok ? NGX_OK : NGX_DECLINED;
}
