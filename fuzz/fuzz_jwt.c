
/*
 * Copyright (C) ngx_exchange_esp authors
 */


/*
 * The token parser of "esp_bearer verify" (src/ngx_esp_jwt.c).  The
 * first byte picks what the rest is:
 *
 * 0: JSON text, ngx_esp_json_parse(): an accepted text gives names and
 *    strings of strict UTF-8 without NUL, and no deeper or larger tree
 *    than the limits;
 * 1: base64url, ngx_esp_jwt_base64url(): accepted exactly when every
 *    byte is of the url alphabet, the length decodes, and the value
 *    encodes back to the very same text (one spelling per value);
 * 2: a JWKS document, ngx_esp_jwks_parse(): every key taken has a kid,
 *    a key OpenSSL holds and RS256 or ES256; no kid twice;
 * 3: a token, ngx_esp_jwt_verify() under the keys below (seeds hold
 *    tokens they signed): a token verified has a known kid and alg, an
 *    "exp" not past; the same token is refused with no audience, or an
 *    hour after its "exp".
 */


#include "fuzz_common.h"

#include "../src/ngx_esp_jwt.c"


/* RS256 "rsa1" and ES256 "ec1", made for this target; an HMAC key skipped */

static const char  fuzz_jwks[] =
    "{\"keys\":[{\"alg\":\"RS256\",\"e\":\"AQAB\",\"kid\":\"rsa1\",\"kty"
    "\":\"RSA\",\"n\":\"hPeXAFvMNgqtAQUw-_f8vkSOIGyX-MFzkuLEyGxjeEp8jKOsd"
    "bJpiZi0tApvFbXPTtNQUklntOV3UVleRUJ1kxwu36oMdjc6VwEi24ti4XRYcBsrBugsv"
    "wlmlI8bcetYseTgAc6X3qODq-Xi39c3A7Qv1e2Xppozj3_to4qhvvCqM1ZyCR19NX0o0"
    "Kw2CS8Jo3X-6FYts5D-sZXuwRv_9jLfQls6FJSsRVJX9r1Lkt4vQZa4EbuGQRtMZrvta"
    "GsH2n3Vz4jpglCVORkOI5awfpOyFYIYA0WAM48-07h810eAgxygWMaeOrx745CdAe7qr"
    "0qZQI0YfeMGqcH1S9AEXw\",\"use\":\"sig\"},{\"crv\":\"P-256\",\"kid\":"
    "\"ec1\",\"kty\":\"EC\",\"x\":\"ICNmSQdINzntVDpcDxjWY8ddh_pnkQ5T_cFYT"
    "b9mRlc\",\"y\":\"qT0aZ_mMo19Ok9Rx5QteoMDKj3GfnvGvVbgGtZXJ9IQ\"},{\"k"
    "\":\"c2VjcmV0\",\"kid\":\"h\",\"kty\":\"oct\"}]}";


static void
fuzz_json_check(ngx_esp_json_t *v, ngx_uint_t depth, ngx_uint_t *nodes)
{
    ngx_esp_json_t  *c, *d;

    FUZZ_ASSERT(depth <= NGX_ESP_JSON_MAX_DEPTH + 1);
    FUZZ_ASSERT(++*nodes <= NGX_ESP_JSON_MAX_NODES);
    FUZZ_ASSERT(v->type <= NGX_ESP_JSON_OBJECT);

    FUZZ_ASSERT(v->name.len == 0
                || (fuzz_utf8_valid(v->name.data, v->name.len)
                    && ngx_strlchr(v->name.data, v->name.data + v->name.len,
                                   '\0')
                       == NULL));

    if (v->type == NGX_ESP_JSON_STRING) {
        FUZZ_ASSERT(v->value.len == 0
                    || (fuzz_utf8_valid(v->value.data, v->value.len)
                        && ngx_strlchr(v->value.data,
                                       v->value.data + v->value.len, '\0')
                           == NULL));
    }

    if (v->type == NGX_ESP_JSON_NUMBER) {
        FUZZ_ASSERT(v->value.len > 0);
    }

    for (c = v->child; c; c = c->next) {
        FUZZ_ASSERT(v->type == NGX_ESP_JSON_ARRAY
                    || v->type == NGX_ESP_JSON_OBJECT);

        /* one name, once */

        for (d = v->child; v->type == NGX_ESP_JSON_OBJECT && d != c;
             d = d->next)
        {
            FUZZ_ASSERT(d->name.len != c->name.len
                        || ngx_memcmp(d->name.data, c->name.data,
                                      c->name.len)
                           != 0);
        }

        fuzz_json_check(c, depth + 1, nodes);
    }
}


static void
fuzz_base64url(ngx_pool_t *pool, ngx_str_t *in)
{
    size_t      i;
    ngx_int_t   rc;
    ngx_str_t   out, again, lenient;
    ngx_uint_t  alphabet;

    rc = ngx_esp_jwt_base64url(pool, in, &out);

    FUZZ_ASSERT(rc == NGX_OK || rc == NGX_DECLINED);

    alphabet = 1;

    for (i = 0; i < in->len; i++) {
        if (!isalnum(in->data[i]) && in->data[i] != '-' && in->data[i] != '_')
        {
            alphabet = 0;
        }
    }

    if (!alphabet || in->len % 4 == 1) {
        FUZZ_ASSERT(rc == NGX_DECLINED);
        return;
    }

    /* nginx's own decoder, lenient about the spare bits, then re-encoded */

    lenient.data = ngx_pnalloc(pool, ngx_base64_decoded_length(in->len) + 1);
    FUZZ_ASSERT(lenient.data != NULL);
    FUZZ_ASSERT(ngx_decode_base64url(&lenient, in) == NGX_OK);

    again.data = ngx_pnalloc(pool, ngx_base64_encoded_length(lenient.len) + 1);
    FUZZ_ASSERT(again.data != NULL);
    ngx_encode_base64url(&again, &lenient);

    if (again.len == in->len
        && ngx_memcmp(again.data, in->data, in->len) == 0)
    {
        FUZZ_ASSERT(rc == NGX_OK);
        FUZZ_ASSERT(out.len == lenient.len
                    && ngx_memcmp(out.data, lenient.data, out.len) == 0);

    } else {
        FUZZ_ASSERT(rc == NGX_DECLINED);
    }
}


static void
fuzz_jwks_doc(ngx_pool_t *pool, u_char *p, size_t len)
{
    ngx_uint_t      i, j, skipped;
    ngx_array_t     keys;
    const char     *reason;
    ngx_esp_jwk_t  *k;

    FUZZ_ASSERT(ngx_array_init(&keys, pool, 2, sizeof(ngx_esp_jwk_t))
                == NGX_OK);

    if (ngx_esp_jwks_parse(pool, p, len, &keys, &skipped, &reason)
        != NGX_OK)
    {
        FUZZ_ASSERT(reason != NULL);
        return;
    }

    k = keys.elts;

    FUZZ_ASSERT(keys.nelts > 0);

    for (i = 0; i < keys.nelts; i++) {
        FUZZ_ASSERT(k[i].kid.len > 0 && k[i].pkey != NULL);
        FUZZ_ASSERT(k[i].alg == NGX_ESP_JWT_RS256
                    || k[i].alg == NGX_ESP_JWT_ES256);
        FUZZ_ASSERT(EVP_PKEY_base_id(k[i].pkey)
                    == (k[i].alg == NGX_ESP_JWT_RS256 ? EVP_PKEY_RSA
                                                      : EVP_PKEY_EC));

        for (j = 0; j < i; j++) {
            FUZZ_ASSERT(k[j].kid.len != k[i].kid.len
                        || ngx_memcmp(k[j].kid.data, k[i].kid.data,
                                      k[i].kid.len)
                           != 0);
        }
    }
}


static void
fuzz_token(ngx_pool_t *pool, ngx_str_t *token)
{
    ngx_int_t              rc;
    ngx_str_t             *s;
    ngx_uint_t             skipped;
    const char            *reason;
    ngx_array_t            keys, issuers, audiences, none;
    ngx_esp_jwt_t          jwt;
    ngx_esp_jwt_policy_t   policy;

    FUZZ_ASSERT(ngx_array_init(&keys, pool, 2, sizeof(ngx_esp_jwk_t))
                == NGX_OK);
    FUZZ_ASSERT(ngx_esp_jwks_parse(pool, (u_char *) fuzz_jwks,
                                   sizeof(fuzz_jwks) - 1, &keys, &skipped,
                                   &reason)
                == NGX_OK);
    FUZZ_ASSERT(keys.nelts == 2 && skipped == 1);

    FUZZ_ASSERT(ngx_array_init(&issuers, pool, 1, sizeof(ngx_str_t))
                == NGX_OK);
    FUZZ_ASSERT(ngx_array_init(&audiences, pool, 1, sizeof(ngx_str_t))
                == NGX_OK);
    FUZZ_ASSERT(ngx_array_init(&none, pool, 1, sizeof(ngx_str_t)) == NGX_OK);

    s = ngx_array_push(&issuers);
    FUZZ_ASSERT(s != NULL);
    ngx_str_set(s, "https://sts.windows.net/t/");

    s = ngx_array_push(&audiences);
    FUZZ_ASSERT(s != NULL);
    ngx_str_set(s, "https://mail.contoso.com/");

    policy.keys = &keys;
    policy.issuers = &issuers;
    policy.audiences = &audiences;
    policy.now = 1750000000;
    policy.skew = 60;

    rc = ngx_esp_jwt_verify(pool, token, &policy, &jwt, &reason);

    FUZZ_ASSERT(rc == NGX_OK || rc == NGX_DECLINED);
    FUZZ_ASSERT(reason != NULL);

    if (getenv("ESP_FUZZ_LOG")) {
        fprintf(stderr, "token: %s\n", reason);
    }

    if (rc != NGX_OK) {
        return;
    }

    FUZZ_ASSERT(jwt.exp >= policy.now - policy.skew);
    FUZZ_ASSERT((jwt.alg.len == 5
                 && (ngx_memcmp(jwt.alg.data, "RS256", 5) == 0
                     || ngx_memcmp(jwt.alg.data, "ES256", 5) == 0)));
    FUZZ_ASSERT(jwt.kid.len == 3 || jwt.kid.len == 4);

    policy.audiences = &none;
    FUZZ_ASSERT(ngx_esp_jwt_verify(pool, token, &policy, &jwt, &reason)
                == NGX_DECLINED);

    policy.audiences = &audiences;
    policy.now = jwt.exp + policy.skew + 3600;
    FUZZ_ASSERT(ngx_esp_jwt_verify(pool, token, &policy, &jwt, &reason)
                == NGX_DECLINED);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char          *p;
    ngx_str_t        in;
    ngx_uint_t       nodes;
    ngx_pool_t      *pool;
    const char      *reason;
    ngx_esp_json_t  *v;

    if (size == 0) {
        return 0;
    }

    pool = fuzz_pool();

    p = fuzz_dup(data + 1, size - 1);
    in.data = p;
    in.len = size - 1;

    switch (data[0] % 4) {

    case 0:
        v = ngx_esp_json_parse(pool, in.data, in.len, &reason);

        if (v) {
            nodes = 0;
            fuzz_json_check(v, 0, &nodes);
        }

        break;

    case 1:
        fuzz_base64url(pool, &in);
        break;

    case 2:
        fuzz_jwks_doc(pool, in.data, in.len);
        break;

    default:
        fuzz_token(pool, &in);
        break;
    }

    ngx_destroy_pool(pool);
    free(p);

    return 0;
}
