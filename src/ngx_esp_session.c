
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "ngx_esp_http.h"
#include "ngx_esp_session.h"


/*
 * A sealed cookie is base64url (no padding) of
 *
 *     key id (4) | nonce (12) | AES-256-GCM ciphertext | tag (16)
 *
 * and the plaintext is
 *
 *     version (1) | flags (1) | issued (8) | last seen (8) | id (16)
 *     | groups (8) | domain length (1) | domain | user length (2) | user
 *     | sealed password length (2) | sealed password
 *
 * with integers in network order; "groups" fingerprints the permitted
 * groups the login was checked against (zeros: none), so that a session
 * opens no location that asks for other groups.  The cookie's purpose is
 * bound in as additional data, so a sealed value cannot be replayed into
 * another use of the same key.
 *
 * The sealed password (none unless esp_server_auth basic) is
 *
 *     password key id (4) | nonce (12) | AES-256-GCM ciphertext | tag (16)
 *
 * under a key of its session, HKDF-SHA256 of an esp_password_key with the
 * session id as salt and NGX_ESP_PW_LABEL as info, and with
 *
 *     NGX_ESP_PW_LABEL | id (16) | domain length (1) | domain
 *     | user length (2) | user
 *
 * as additional data.  So the session key files and a captured cookie
 * give everything but the password, whose keys rotate on their own; and
 * a sealed password moved into another session, even by whoever holds
 * the session keys, does not open there.
 *
 * Version 2 cookies carried the password in the clear in its place: they
 * are still accepted, without it (a new login where it is needed).
 */

#define NGX_ESP_SEAL_VERSION   3
#define NGX_ESP_SEAL_VERSION_2 2
#define NGX_ESP_NONCE_LEN      12
#define NGX_ESP_TAG_LEN        16
#define NGX_ESP_FIXED_LEN      (1 + 1 + 8 + 8 + NGX_ESP_SESSION_ID_LEN      \
                                + NGX_ESP_GROUPS_LEN)
#define NGX_ESP_MAX_FIELD      1024
#define NGX_ESP_MAX_COOKIE     4096
#define NGX_ESP_PW_OVERHEAD    (NGX_ESP_KEY_ID_LEN + NGX_ESP_NONCE_LEN       \
                                + NGX_ESP_TAG_LEN)
#define NGX_ESP_MAX_SEALED_PW  (NGX_ESP_MAX_FIELD + NGX_ESP_PW_OVERHEAD)

#define NGX_ESP_AAD            "ngx_exchange_esp session v1"
#define NGX_ESP_PW_LABEL       "ngx_exchange_esp password v1"
#define NGX_ESP_KEY_ID_LABEL   "ngx_exchange_esp key id"


static ngx_int_t ngx_esp_session_crypt(ngx_uint_t enc, ngx_esp_key_t *k,
    u_char *nonce, u_char *in, size_t len, u_char *out, u_char *tag);
static ngx_int_t ngx_esp_session_password_crypt(ngx_uint_t enc,
    ngx_esp_key_t *k, ngx_esp_session_t *s, ngx_str_t *aad, u_char *nonce,
    u_char *in, size_t len, u_char *out, u_char *tag);
static ngx_int_t ngx_esp_session_password_aad(ngx_pool_t *pool,
    ngx_esp_session_t *s, ngx_str_t *aad);
static EVP_CIPHER_CTX *ngx_esp_session_cipher(ngx_uint_t enc, u_char *key);
static ngx_int_t ngx_esp_session_gcm(ngx_uint_t enc, EVP_CIPHER_CTX *ctx,
    u_char *nonce, u_char *aad, size_t aad_len, u_char *in, size_t len,
    u_char *out, u_char *tag);
static ngx_esp_key_t *ngx_esp_session_find_key(ngx_array_t *keys,
    u_char *id);
static u_char *ngx_esp_session_wiped_alloc(ngx_pool_t *pool, size_t len);
static u_char *ngx_esp_put_u64(u_char *p, uint64_t v);
static uint64_t ngx_esp_get_u64(u_char *p);
static char *ngx_esp_session_keys(ngx_conf_t *cf, ngx_array_t **a,
    ngx_array_t *other, char *what);
static ngx_int_t ngx_esp_session_key_read(ngx_conf_t *cf, ngx_str_t *name,
    ngx_esp_key_t *k, char *what);
static ngx_int_t ngx_esp_session_key_id(ngx_esp_key_t *k);
static void ngx_esp_session_keys_wipe(void *data);


ngx_int_t
ngx_esp_session_seal(ngx_pool_t *pool, ngx_array_t *keys,
    ngx_esp_session_t *s, ngx_str_t *out)
{
    u_char         *plain, *p, *sealed;
    size_t          len;
    ngx_str_t       src;
    ngx_int_t       rc;
    ngx_esp_key_t  *k;

    if (keys == NULL || keys->nelts == 0
        || s->domain.len > 255 || s->user.len > NGX_ESP_MAX_FIELD
        || s->sealed_password.len > NGX_ESP_MAX_SEALED_PW)
    {
        return NGX_ERROR;
    }

    k = keys->elts;

    len = NGX_ESP_FIXED_LEN + 1 + s->domain.len + 2 + s->user.len
          + 2 + s->sealed_password.len;

    plain = ngx_pnalloc(pool, len);
    if (plain == NULL) {
        return NGX_ERROR;
    }

    p = plain;
    *p++ = NGX_ESP_SEAL_VERSION;
    *p++ = (u_char) s->flags;
    p = ngx_esp_put_u64(p, (uint64_t) s->issued);
    p = ngx_esp_put_u64(p, (uint64_t) s->last_seen);
    p = ngx_cpymem(p, s->id, NGX_ESP_SESSION_ID_LEN);
    p = ngx_cpymem(p, s->groups, NGX_ESP_GROUPS_LEN);
    *p++ = (u_char) s->domain.len;
    p = ngx_cpymem(p, s->domain.data, s->domain.len);
    *p++ = (u_char) (s->user.len >> 8);
    *p++ = (u_char) s->user.len;
    p = ngx_cpymem(p, s->user.data, s->user.len);
    *p++ = (u_char) (s->sealed_password.len >> 8);
    *p++ = (u_char) s->sealed_password.len;

    if (s->sealed_password.len) {
        /* none unless esp_server_auth basic: memcpy(p, NULL, 0) is UB */
        p = ngx_cpymem(p, s->sealed_password.data, s->sealed_password.len);
    }

    sealed = ngx_pnalloc(pool, NGX_ESP_KEY_ID_LEN + NGX_ESP_NONCE_LEN + len
                               + NGX_ESP_TAG_LEN);
    if (sealed == NULL) {
        ngx_explicit_memzero(plain, len);
        return NGX_ERROR;
    }

    p = ngx_cpymem(sealed, k[0].id, NGX_ESP_KEY_ID_LEN);

    if (RAND_bytes(p, NGX_ESP_NONCE_LEN) != 1) {
        ngx_explicit_memzero(plain, len);
        return NGX_ERROR;
    }

    rc = ngx_esp_session_crypt(1, &k[0], p, plain, len,
                               p + NGX_ESP_NONCE_LEN,
                               p + NGX_ESP_NONCE_LEN + len);

    ngx_explicit_memzero(plain, len);

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    src.data = sealed;
    src.len = NGX_ESP_KEY_ID_LEN + NGX_ESP_NONCE_LEN + len + NGX_ESP_TAG_LEN;

    out->data = ngx_pnalloc(pool, ngx_base64_encoded_length(src.len));
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    ngx_encode_base64url(out, &src);

    return NGX_OK;
}


ngx_int_t
ngx_esp_session_open(ngx_pool_t *pool, ngx_array_t *keys, ngx_str_t *cookie,
    ngx_esp_session_t *s, const char **reason)
{
    u_char         *p, *last, *plain;
    size_t          len, n;
    ngx_str_t       sealed;
    ngx_esp_key_t  *k;

    if (keys == NULL || keys->nelts == 0) {
        *reason = "no session key";
        return NGX_DECLINED;
    }

    if (cookie->len == 0 || cookie->len > NGX_ESP_MAX_COOKIE) {
        *reason = "bad length";
        return NGX_DECLINED;
    }

    sealed.data = ngx_pnalloc(pool, ngx_base64_decoded_length(cookie->len));
    if (sealed.data == NULL) {
        return NGX_ERROR;
    }

    if (ngx_decode_base64url(&sealed, cookie) != NGX_OK) {
        *reason = "not base64url";
        return NGX_DECLINED;
    }

    if (sealed.len < NGX_ESP_KEY_ID_LEN + NGX_ESP_NONCE_LEN
                     + NGX_ESP_FIXED_LEN + 5 + NGX_ESP_TAG_LEN)
    {
        *reason = "truncated";
        return NGX_DECLINED;
    }

    k = ngx_esp_session_find_key(keys, sealed.data);

    if (k == NULL) {
        *reason = "sealed with an unknown key";
        return NGX_DECLINED;
    }

    len = sealed.len - NGX_ESP_KEY_ID_LEN - NGX_ESP_NONCE_LEN
          - NGX_ESP_TAG_LEN;

    plain = ngx_esp_session_wiped_alloc(pool, len);
    if (plain == NULL) {
        return NGX_ERROR;
    }

    p = sealed.data + NGX_ESP_KEY_ID_LEN;

    if (ngx_esp_session_crypt(0, k, p, p + NGX_ESP_NONCE_LEN, len,
                              plain, p + NGX_ESP_NONCE_LEN + len)
        != NGX_OK)
    {
        *reason = "does not authenticate";
        return NGX_DECLINED;
    }

    p = plain;
    last = plain + len;

    if (p[0] != NGX_ESP_SEAL_VERSION && p[0] != NGX_ESP_SEAL_VERSION_2) {
        *reason = "unknown version";
        return NGX_DECLINED;
    }

    s->flags = p[1];
    s->issued = (time_t) ngx_esp_get_u64(p + 2);
    s->last_seen = (time_t) ngx_esp_get_u64(p + 10);
    ngx_memcpy(s->id, p + 18, NGX_ESP_SESSION_ID_LEN);
    ngx_memcpy(s->groups, p + 18 + NGX_ESP_SESSION_ID_LEN,
               NGX_ESP_GROUPS_LEN);
    p += NGX_ESP_FIXED_LEN;

    n = *p++;
    if ((size_t) (last - p) < n + 2) {
        goto malformed;
    }

    s->domain.data = p;
    s->domain.len = n;
    p += n;

    n = (p[0] << 8) | p[1];
    p += 2;
    if ((size_t) (last - p) < n + 2) {
        goto malformed;
    }

    s->user.data = p;
    s->user.len = n;
    p += n;

    n = (p[0] << 8) | p[1];
    p += 2;
    if ((size_t) (last - p) != n) {
        goto malformed;
    }

    if (plain[0] == NGX_ESP_SEAL_VERSION_2) {
        /* a password in the clear: never used, wiped with the pool */
        ngx_str_null(&s->sealed_password);
        return NGX_OK;
    }

    s->sealed_password.data = p;
    s->sealed_password.len = n;

    return NGX_OK;

malformed:

    /* authentic but inconsistent: only a bug of ours can make this */
    *reason = "malformed";
    return NGX_DECLINED;
}


ngx_int_t
ngx_esp_session_seal_password(ngx_pool_t *pool, ngx_array_t *keys,
    ngx_esp_session_t *s, ngx_str_t *password)
{
    u_char         *p;
    size_t          len;
    ngx_str_t       aad;
    ngx_esp_key_t  *k;

    len = password->len;

    if (keys == NULL || keys->nelts == 0
        || len == 0 || len > NGX_ESP_MAX_FIELD
        || s->domain.len > 255 || s->user.len > NGX_ESP_MAX_FIELD)
    {
        return NGX_ERROR;
    }

    k = keys->elts;

    if (ngx_esp_session_password_aad(pool, s, &aad) != NGX_OK) {
        return NGX_ERROR;
    }

    p = ngx_pnalloc(pool, NGX_ESP_PW_OVERHEAD + len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, k[0].id, NGX_ESP_KEY_ID_LEN);

    if (RAND_bytes(p + NGX_ESP_KEY_ID_LEN, NGX_ESP_NONCE_LEN) != 1) {
        return NGX_ERROR;
    }

    if (ngx_esp_session_password_crypt(1, &k[0], s, &aad,
                                       p + NGX_ESP_KEY_ID_LEN,
                                       password->data, len,
                                       p + NGX_ESP_KEY_ID_LEN
                                       + NGX_ESP_NONCE_LEN,
                                       p + NGX_ESP_KEY_ID_LEN
                                       + NGX_ESP_NONCE_LEN + len)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    s->sealed_password.data = p;
    s->sealed_password.len = NGX_ESP_PW_OVERHEAD + len;

    return NGX_OK;
}


ngx_int_t
ngx_esp_session_open_password(ngx_pool_t *pool, ngx_array_t *keys,
    ngx_esp_session_t *s, ngx_str_t *password, const char **reason)
{
    u_char         *p, *plain;
    size_t          len;
    ngx_str_t       aad;
    ngx_esp_key_t  *k;

    p = s->sealed_password.data;

    if (s->sealed_password.len == 0) {
        *reason = "carries no password for esp_server_auth basic";
        return NGX_DECLINED;
    }

    if (s->sealed_password.len <= NGX_ESP_PW_OVERHEAD) {
        *reason = "has a malformed password";
        return NGX_DECLINED;
    }

    k = (keys == NULL) ? NULL : ngx_esp_session_find_key(keys, p);

    if (k == NULL) {
        *reason = "has a password sealed with an unknown password key";
        return NGX_DECLINED;
    }

    len = s->sealed_password.len - NGX_ESP_PW_OVERHEAD;

    plain = ngx_esp_session_wiped_alloc(pool, len);
    if (plain == NULL) {
        return NGX_ERROR;
    }

    if (ngx_esp_session_password_aad(pool, s, &aad) != NGX_OK) {
        return NGX_ERROR;
    }

    p += NGX_ESP_KEY_ID_LEN;

    if (ngx_esp_session_password_crypt(0, k, s, &aad, p,
                                       p + NGX_ESP_NONCE_LEN, len, plain,
                                       p + NGX_ESP_NONCE_LEN + len)
        != NGX_OK)
    {
        *reason = "has a password that does not authenticate";
        return NGX_DECLINED;
    }

    password->data = plain;
    password->len = len;

    return NGX_OK;
}


/*
 * Any other sealed value (a second factor's pending state, TOTP secrets):
 *
 *     key id (4) | nonce (12) | AES-256-GCM ciphertext | tag (16)
 *
 * under the first of "keys", with "aad" as additional data (its purpose
 * and whom it belongs to), raw bytes: the caller encodes.  The cipher is
 * set up per call, with no key schedule kept.
 */

ngx_int_t
ngx_esp_seal_value(ngx_pool_t *pool, ngx_array_t *keys, ngx_str_t *aad,
    ngx_str_t *plain, ngx_str_t *sealed)
{
    u_char          *p;
    ngx_int_t        rc;
    ngx_esp_key_t   *k;
    EVP_CIPHER_CTX  *ctx;

    if (keys == NULL || keys->nelts == 0) {
        return NGX_ERROR;
    }

    k = keys->elts;

    p = ngx_pnalloc(pool, NGX_ESP_PW_OVERHEAD + plain->len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, k[0].id, NGX_ESP_KEY_ID_LEN);

    if (RAND_bytes(p + NGX_ESP_KEY_ID_LEN, NGX_ESP_NONCE_LEN) != 1) {
        return NGX_ERROR;
    }

    ctx = ngx_esp_session_cipher(1, k[0].key);
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_esp_session_gcm(1, ctx, p + NGX_ESP_KEY_ID_LEN, aad->data,
                             aad->len, plain->data, plain->len,
                             p + NGX_ESP_KEY_ID_LEN + NGX_ESP_NONCE_LEN,
                             p + NGX_ESP_KEY_ID_LEN + NGX_ESP_NONCE_LEN
                             + plain->len);

    EVP_CIPHER_CTX_free(ctx);

    sealed->data = p;
    sealed->len = NGX_ESP_PW_OVERHEAD + plain->len;

    return rc;
}


ngx_int_t
ngx_esp_open_value(ngx_pool_t *pool, ngx_array_t *keys, ngx_str_t *aad,
    ngx_str_t *sealed, ngx_str_t *plain)
{
    u_char          *p;
    size_t           len;
    ngx_int_t        rc;
    ngx_esp_key_t   *k;
    EVP_CIPHER_CTX  *ctx;

    if (keys == NULL || sealed->len < NGX_ESP_PW_OVERHEAD) {
        return NGX_DECLINED;
    }

    k = ngx_esp_session_find_key(keys, sealed->data);
    if (k == NULL) {
        return NGX_DECLINED;
    }

    len = sealed->len - NGX_ESP_PW_OVERHEAD;

    plain->data = ngx_esp_session_wiped_alloc(pool, len + 1);
    if (plain->data == NULL) {
        return NGX_ERROR;
    }

    ctx = ngx_esp_session_cipher(0, k->key);
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    p = sealed->data + NGX_ESP_KEY_ID_LEN;

    rc = ngx_esp_session_gcm(0, ctx, p, aad->data, aad->len,
                             p + NGX_ESP_NONCE_LEN, len, plain->data,
                             p + NGX_ESP_NONCE_LEN + len);

    EVP_CIPHER_CTX_free(ctx);

    plain->len = len;

    return (rc == NGX_OK) ? NGX_OK : NGX_DECLINED;
}


/*
 * The key schedule is made once per key and direction in each worker;
 * a request only sets its nonce.
 */

static ngx_int_t
ngx_esp_session_crypt(ngx_uint_t enc, ngx_esp_key_t *k, u_char *nonce,
    u_char *in, size_t len, u_char *out, u_char *tag)
{
    EVP_CIPHER_CTX  *ctx;

    ctx = k->ctx[enc];

    if (ctx == NULL) {
        ctx = ngx_esp_session_cipher(enc, k->key);
        if (ctx == NULL) {
            return NGX_ERROR;
        }

        k->ctx[enc] = ctx;
    }

    return ngx_esp_session_gcm(enc, ctx, nonce, (u_char *) NGX_ESP_AAD,
                               sizeof(NGX_ESP_AAD) - 1, in, len, out, tag);
}


/*
 * A password's key is made for its session and dropped at once: no key
 * that opens a password stays in memory between requests.  The HKDF
 * context, keyed with the password key, is kept per worker (a new one
 * costs three times the derivation); a request only sets its salt.
 */

static ngx_int_t
ngx_esp_session_password_crypt(ngx_uint_t enc, ngx_esp_key_t *k,
    ngx_esp_session_t *s, ngx_str_t *aad, u_char *nonce, u_char *in,
    size_t len, u_char *out, u_char *tag)
{
    size_t           n;
    ngx_int_t        rc;
    EVP_PKEY_CTX    *kdf;
    EVP_CIPHER_CTX  *ctx;
    u_char           key[NGX_ESP_KEY_LEN];

    kdf = k->kdf;

    if (kdf == NULL) {
        kdf = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
        if (kdf == NULL) {
            return NGX_ERROR;
        }

        if (EVP_PKEY_derive_init(kdf) != 1
            || EVP_PKEY_CTX_set_hkdf_md(kdf, EVP_sha256()) != 1
            || EVP_PKEY_CTX_set1_hkdf_key(kdf, k->key, NGX_ESP_KEY_LEN) != 1
            || EVP_PKEY_CTX_add1_hkdf_info(kdf, (u_char *) NGX_ESP_PW_LABEL,
                                           sizeof(NGX_ESP_PW_LABEL) - 1)
               != 1)
        {
            EVP_PKEY_CTX_free(kdf);
            return NGX_ERROR;
        }

        k->kdf = kdf;
    }

    n = NGX_ESP_KEY_LEN;

    if (EVP_PKEY_CTX_set1_hkdf_salt(kdf, s->id, NGX_ESP_SESSION_ID_LEN) != 1
        || EVP_PKEY_derive(kdf, key, &n) != 1
        || n != NGX_ESP_KEY_LEN)
    {
        ngx_explicit_memzero(key, sizeof(key));
        return NGX_ERROR;
    }

    ctx = ngx_esp_session_cipher(enc, key);

    ngx_explicit_memzero(key, sizeof(key));

    if (ctx == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_esp_session_gcm(enc, ctx, nonce, aad->data, aad->len, in, len,
                             out, tag);

    EVP_CIPHER_CTX_free(ctx);

    return rc;
}


static ngx_int_t
ngx_esp_session_password_aad(ngx_pool_t *pool, ngx_esp_session_t *s,
    ngx_str_t *aad)
{
    u_char  *p;

    aad->len = sizeof(NGX_ESP_PW_LABEL) - 1 + NGX_ESP_SESSION_ID_LEN
               + 1 + s->domain.len + 2 + s->user.len;

    aad->data = ngx_pnalloc(pool, aad->len);
    if (aad->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(aad->data, NGX_ESP_PW_LABEL, sizeof(NGX_ESP_PW_LABEL) - 1);
    p = ngx_cpymem(p, s->id, NGX_ESP_SESSION_ID_LEN);
    *p++ = (u_char) s->domain.len;
    p = ngx_cpymem(p, s->domain.data, s->domain.len);
    *p++ = (u_char) (s->user.len >> 8);
    *p++ = (u_char) s->user.len;
    ngx_memcpy(p, s->user.data, s->user.len);

    return NGX_OK;
}


static EVP_CIPHER_CTX *
ngx_esp_session_cipher(ngx_uint_t enc, u_char *key)
{
    EVP_CIPHER_CTX  *ctx;

    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL) {
        return NULL;
    }

    if (EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, (int) enc)
        != 1
        || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NGX_ESP_NONCE_LEN,
                               NULL)
           != 1
        || EVP_CipherInit_ex(ctx, NULL, NULL, key, NULL, (int) enc) != 1)
    {
        EVP_CIPHER_CTX_free(ctx);
        return NULL;
    }

    return ctx;
}


static ngx_int_t
ngx_esp_session_gcm(ngx_uint_t enc, EVP_CIPHER_CTX *ctx, u_char *nonce,
    u_char *aad, size_t aad_len, u_char *in, size_t len, u_char *out,
    u_char *tag)
{
    int  n;

    if (EVP_CipherInit_ex(ctx, NULL, NULL, NULL, nonce, (int) enc) != 1
        || EVP_CipherUpdate(ctx, NULL, &n, aad, (int) aad_len) != 1
        || EVP_CipherUpdate(ctx, out, &n, in, (int) len) != 1)
    {
        return NGX_ERROR;
    }

    if (enc) {
        if (EVP_CipherFinal_ex(ctx, out + n, &n) != 1
            || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG,
                                   NGX_ESP_TAG_LEN, tag)
               != 1)
        {
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, NGX_ESP_TAG_LEN, tag)
        != 1
        || EVP_CipherFinal_ex(ctx, out + n, &n) != 1)
    {
        ngx_explicit_memzero(out, len);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_esp_key_t *
ngx_esp_session_find_key(ngx_array_t *keys, u_char *id)
{
    ngx_uint_t      i;
    ngx_esp_key_t  *k;

    k = keys->elts;

    for (i = 0; i < keys->nelts; i++) {
        if (ngx_memcmp(k[i].id, id, NGX_ESP_KEY_ID_LEN) == 0) {
            return &k[i];
        }
    }

    return NULL;
}


/* for plaintexts: wiped when the pool goes, whatever happens before */

static u_char *
ngx_esp_session_wiped_alloc(ngx_pool_t *pool, size_t len)
{
    u_char  *p;

    p = ngx_pnalloc(pool, len);
    if (p == NULL) {
        return NULL;
    }

    if (ngx_esp_http_wipe_later(pool, p, len) != NGX_OK) {
        return NULL;
    }

    return p;
}


static u_char *
ngx_esp_put_u64(u_char *p, uint64_t v)
{
    ngx_int_t  i;

    for (i = 7; i >= 0; i--) {
        p[i] = (u_char) v;
        v >>= 8;
    }

    return p + 8;
}


static uint64_t
ngx_esp_get_u64(u_char *p)
{
    uint64_t    v;
    ngx_uint_t  i;

    v = 0;

    for (i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }

    return v;
}


/* esp_session_key file [file ...]: the first seals, all open */

char *
ngx_esp_session_key(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_esp_main_conf_t  *emcf = conf;

    return ngx_esp_session_keys(cf, &emcf->keys, emcf->password_keys,
                                "session key");
}


/* esp_password_key file [file ...]: the same, for sealed passwords */

char *
ngx_esp_password_key(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_esp_main_conf_t  *emcf = conf;

    return ngx_esp_session_keys(cf, &emcf->password_keys, emcf->keys,
                                "password key");
}


/* key files of another purpose (totp_key_file): the first seals */

char *
ngx_esp_key_files(ngx_conf_t *cf, ngx_array_t **keys, char *what)
{
    return ngx_esp_session_keys(cf, keys, NULL, what);
}


/*
 * "other": the keys of the other directive, if already read.  A key in
 * both would let the session key files open the passwords again.
 */

static char *
ngx_esp_session_keys(ngx_conf_t *cf, ngx_array_t **a, ngx_array_t *other,
    char *what)
{
    ngx_str_t           *value;
    ngx_uint_t           i, j;
    ngx_esp_key_t       *k, *o;
    ngx_pool_cleanup_t  *cln;

    if (*a != NGX_CONF_UNSET_PTR && *a != NULL) {
        return "is duplicate";
    }

    if (other == NGX_CONF_UNSET_PTR) {
        other = NULL;
    }

    *a = ngx_array_create(cf->pool, cf->args->nelts - 1,
                          sizeof(ngx_esp_key_t));
    if (*a == NULL) {
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_esp_session_keys_wipe;
    cln->data = *a;

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        k = ngx_array_push(*a);
        if (k == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(k, sizeof(ngx_esp_key_t));

        if (ngx_esp_session_key_read(cf, &value[i], k, what) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        for (j = 0; j + 1 < (*a)->nelts; j++) {
            if (ngx_memcmp(((ngx_esp_key_t *) (*a)->elts)[j].id, k->id,
                           NGX_ESP_KEY_ID_LEN)
                == 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "%s \"%V\" is listed twice",
                                   what, &value[i]);
                return NGX_CONF_ERROR;
            }
        }

        o = other ? ngx_esp_session_find_key(other, k->id) : NULL;

        if (o) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%s \"%V\" holds the same key as \"%V\": "
                               "\"esp_session_key\" and \"esp_password_key\" "
                               "must be separate secrets",
                               what, &value[i], &o->file);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/*
 * A key file holds 32 random bytes: raw, as 64 hex digits, or in base64
 * (e.g. "openssl rand -hex 32 > session.key").
 */

static ngx_int_t
ngx_esp_session_key_read(ngx_conf_t *cf, ngx_str_t *name, ngx_esp_key_t *k,
    char *what)
{
    u_char           buf[256];
    u_char           raw[NGX_ESP_KEY_LEN + 3];
    size_t           len;
    ssize_t          n;
    ngx_fd_t         fd;
    ngx_int_t        rc, h;
    ngx_str_t        src, dst;
    ngx_uint_t       i;
    ngx_file_info_t  fi;

    k->file = *name;

    if (ngx_conf_full_name(cf->cycle, &k->file, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    fd = ngx_open_file(k->file.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%s\" failed", k->file.data);
        return NGX_ERROR;
    }

    rc = NGX_ERROR;
    n = 0;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_fd_info_n " \"%s\" failed", k->file.data);
        goto done;
    }

    if (fi.st_mode & (S_IROTH|S_IWOTH)) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "%s \"%s\" is readable by other users",
                           what, k->file.data);
    }

    n = ngx_read_fd(fd, buf, sizeof(buf));

    if (n == -1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_read_fd_n " \"%s\" failed", k->file.data);
        n = 0;
        goto done;
    }

    len = n;

    if (len == NGX_ESP_KEY_LEN) {
        ngx_memcpy(k->key, buf, NGX_ESP_KEY_LEN);
        rc = NGX_OK;
        goto done;
    }

    while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'
                   || buf[len - 1] == ' '))
    {
        len--;
    }

    if (len == 2 * NGX_ESP_KEY_LEN) {
        for (i = 0; i < NGX_ESP_KEY_LEN; i++) {
            h = ngx_hextoi(&buf[2 * i], 2);
            if (h == NGX_ERROR) {
                break;
            }
            k->key[i] = (u_char) h;
        }

        if (i == NGX_ESP_KEY_LEN) {
            rc = NGX_OK;
            goto done;
        }
    }

    src.data = buf;
    src.len = len;
    dst.data = raw;

    if (ngx_base64_decoded_length(len) <= sizeof(raw)
        && ngx_decode_base64(&dst, &src) == NGX_OK
        && dst.len == NGX_ESP_KEY_LEN)
    {
        ngx_memcpy(k->key, raw, NGX_ESP_KEY_LEN);
        rc = NGX_OK;
        goto done;
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "%s \"%s\" must hold 32 random bytes: raw, "
                       "as 64 hex digits or in base64 (make one with "
                       "\"openssl rand -hex 32\")", what, k->file.data);

done:

    ngx_explicit_memzero(buf, sizeof(buf));
    ngx_explicit_memzero(raw, sizeof(raw));

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_ALERT, cf, ngx_errno,
                           ngx_close_file_n " \"%s\" failed", k->file.data);
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_esp_session_key_id(k);
}


/* the key id names the key without revealing it */

static ngx_int_t
ngx_esp_session_key_id(ngx_esp_key_t *k)
{
    u_char  buf[sizeof(NGX_ESP_KEY_ID_LABEL) - 1 + NGX_ESP_KEY_LEN];
    u_char  digest[SHA256_DIGEST_LENGTH];

    ngx_memcpy(ngx_cpymem(buf, NGX_ESP_KEY_ID_LABEL,
                          sizeof(NGX_ESP_KEY_ID_LABEL) - 1),
               k->key, NGX_ESP_KEY_LEN);

    if (EVP_Digest(buf, sizeof(buf), digest, NULL, EVP_sha256(), NULL) != 1) {
        ngx_explicit_memzero(buf, sizeof(buf));
        return NGX_ERROR;
    }

    ngx_explicit_memzero(buf, sizeof(buf));
    ngx_memcpy(k->id, digest, NGX_ESP_KEY_ID_LEN);

    return NGX_OK;
}


/*
 * Without esp_session_key, sessions are sealed with a key drawn at start:
 * they work, but end at every reload or restart and are not shared
 * between nodes (fine for Basic-only or delegate-only services).  The
 * same, without esp_password_key, for the passwords sessions carry.
 */

ngx_int_t
ngx_esp_session_random_key(ngx_conf_t *cf, ngx_array_t **keys)
{
    ngx_esp_key_t       *k;
    ngx_pool_cleanup_t  *cln;

    *keys = ngx_array_create(cf->pool, 1, sizeof(ngx_esp_key_t));
    if (*keys == NULL) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_esp_session_keys_wipe;
    cln->data = *keys;

    k = ngx_array_push(*keys);
    if (k == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(k, sizeof(ngx_esp_key_t));
    ngx_str_set(&k->file, "(random)");

    if (RAND_bytes(k->key, NGX_ESP_KEY_LEN) != 1) {
        return NGX_ERROR;
    }

    return ngx_esp_session_key_id(k);
}


/*
 * Only a location that carries passwords in its sessions (form login,
 * esp_server_auth basic) needs a password key: said once, at the first.
 */

ngx_int_t
ngx_esp_session_password_conf(ngx_conf_t *cf, ngx_esp_loc_conf_t *conf)
{
    ngx_esp_main_conf_t  *emcf;

    if (conf->domain == NULL || conf->client_auth != NGX_ESP_CLIENT_FORM
        || conf->server_auth != NGX_ESP_SERVER_BASIC)
    {
        return NGX_OK;
    }

    emcf = ngx_http_conf_get_module_main_conf(cf, ngx_exchange_esp_module);

    if (emcf->password_keys) {
        return NGX_OK;
    }

    ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                       "\"esp_password_key\" is not set: the passwords of "
                       "form sessions for \"esp_server_auth basic\" are "
                       "sealed with a key drawn at start, so those sessions "
                       "need a new login after every reload or restart and "
                       "on every other node");

    return ngx_esp_session_random_key(cf, &emcf->password_keys);
}


static void
ngx_esp_session_keys_wipe(void *data)
{
    ngx_array_t  *a = data;

    ngx_uint_t      i;
    ngx_esp_key_t  *k;

    k = a->elts;

    for (i = 0; i < a->nelts; i++) {
        if (k[i].ctx[0]) {
            EVP_CIPHER_CTX_free(k[i].ctx[0]);
        }

        if (k[i].ctx[1]) {
            EVP_CIPHER_CTX_free(k[i].ctx[1]);
        }

        if (k[i].kdf) {
            EVP_PKEY_CTX_free(k[i].kdf);
        }
    }

    ngx_explicit_memzero(a->elts, a->nelts * a->size);
}
