
/*
 * Copyright (C) ngx_exchange_esp authors
 */


/*
 * What ngx_esp_session_open() does after the tag checked: the fuzzer's
 * bytes are the plaintext, sealed here under the first fixed key (the
 * static ngx_esp_session_crypt(), a fixed nonce), then opened.  Random
 * cookies never authenticate, so this is the only way to reach the
 * field decoding with inconsistent lengths.
 *
 * Properties:
 * - open accepts exactly the plaintexts a reference reading of the
 *   documented layout accepts, and reads the same fields from them;
 * - a session made from the input, sealed by ngx_esp_session_seal(),
 *   opens to the same session; its third string, sealed as its password,
 *   opens to the same password, only in that session;
 * - version 2 plaintexts (a password in the clear) open without it.
 */


#include "fuzz_common.h"

#include "../src/ngx_esp_session.c"
#include "../src/ngx_esp_http.c"

#include "fuzz_session.h"


/* the layout as documented at the top of ngx_esp_session.c */

static ngx_uint_t
fuzz_reference_ok(u_char *p, size_t len, ngx_esp_session_t *s)
{
    size_t  n, d, u, w;

    n = NGX_ESP_FIXED_LEN;

    if (len < n + 1 + 2 + 2
        || (p[0] != NGX_ESP_SEAL_VERSION && p[0] != NGX_ESP_SEAL_VERSION_2))
    {
        return 0;
    }

    d = p[n];

    if (len < n + 1 + d + 2) {
        return 0;
    }

    u = (p[n + 1 + d] << 8) | p[n + 1 + d + 1];

    if (len < n + 1 + d + 2 + u + 2) {
        return 0;
    }

    w = (p[n + 1 + d + 2 + u] << 8) | p[n + 1 + d + 2 + u + 1];

    if (len != n + 1 + d + 2 + u + 2 + w) {
        return 0;
    }

    s->flags = p[1];
    s->domain.len = d;
    s->domain.data = p + n + 1;
    s->user.len = u;
    s->user.data = p + n + 1 + d + 2;

    if (p[0] == NGX_ESP_SEAL_VERSION_2) {
        ngx_str_null(&s->sealed_password);
        return 1;
    }

    s->sealed_password.len = w;
    s->sealed_password.data = p + n + 1 + d + 2 + u + 2;

    return 1;
}


static void
fuzz_open_plaintext(ngx_pool_t *pool, const uint8_t *data, size_t size)
{
    u_char             *sealed, *plain, nonce[NGX_ESP_NONCE_LEN];
    size_t              slen;
    ngx_int_t           rc;
    ngx_str_t           src, cookie;
    ngx_uint_t          ok;
    const char         *reason;
    ngx_esp_session_t   s, ref;

    /* the shortest sealed cookie open reads past its length check */

    if (size > 3000 || size < NGX_ESP_FIXED_LEN + 5) {
        return;
    }

    plain = fuzz_dup(data, size);

    slen = NGX_ESP_KEY_ID_LEN + NGX_ESP_NONCE_LEN + size + NGX_ESP_TAG_LEN;
    sealed = ngx_pnalloc(pool, slen);
    FUZZ_ASSERT(sealed != NULL);

    ngx_memset(nonce, 0x3c, sizeof(nonce));
    (void) fuzz_session_keys();
    ngx_memcpy(sealed, fuzz_keys[0].id, NGX_ESP_KEY_ID_LEN);
    ngx_memcpy(sealed + NGX_ESP_KEY_ID_LEN, nonce, NGX_ESP_NONCE_LEN);

    rc = ngx_esp_session_crypt(1, &fuzz_keys[0], NGX_ESP_AAD, nonce, plain,
                               size,
                               sealed + NGX_ESP_KEY_ID_LEN + NGX_ESP_NONCE_LEN,
                               sealed + NGX_ESP_KEY_ID_LEN + NGX_ESP_NONCE_LEN
                               + size);
    FUZZ_ASSERT(rc == NGX_OK);

    src.data = sealed;
    src.len = slen;
    cookie.data = ngx_pnalloc(pool, ngx_base64_encoded_length(slen));
    FUZZ_ASSERT(cookie.data != NULL);
    ngx_encode_base64url(&cookie, &src);

    ngx_memzero(&s, sizeof(ngx_esp_session_t));
    ngx_memzero(&ref, sizeof(ngx_esp_session_t));
    reason = NULL;

    rc = ngx_esp_session_open(pool, fuzz_session_keys(), &cookie, &s,
                              &reason);
    ok = fuzz_reference_ok(plain, size, &ref);

    if (cookie.len > NGX_ESP_MAX_COOKIE) {
        FUZZ_ASSERT(rc == NGX_DECLINED);
        free(plain);
        return;
    }

    FUZZ_ASSERT(rc == (ok ? NGX_OK : NGX_DECLINED));

    if (rc == NGX_OK) {
        fuzz_session_check(&s);

        FUZZ_ASSERT(s.flags == ref.flags);
        FUZZ_ASSERT(s.domain.len == ref.domain.len);
        FUZZ_ASSERT(s.user.len == ref.user.len);
        FUZZ_ASSERT(s.sealed_password.len == ref.sealed_password.len);
        FUZZ_ASSERT(ngx_memcmp(s.domain.data, ref.domain.data,
                               ref.domain.len) == 0);
        FUZZ_ASSERT(ngx_memcmp(s.user.data, ref.user.data,
                               ref.user.len) == 0);

        if (ref.sealed_password.len) {
            FUZZ_ASSERT(ngx_memcmp(s.sealed_password.data,
                                   ref.sealed_password.data,
                                   ref.sealed_password.len) == 0);
        }

        fuzz_session_reseal(pool, &s);
        fuzz_password_check(pool, &s);

    } else {
        FUZZ_ASSERT(reason != NULL);
    }

    free(plain);
}


/* a session from the input: id, times, flags, then three strings */

static void
fuzz_round_trip(ngx_pool_t *pool, const uint8_t *data, size_t size)
{
    size_t              i, n[3];
    ngx_int_t           rc;
    ngx_str_t          *f[3], out, pw, pw2;
    const char         *reason;
    ngx_esp_session_t   s;

    ngx_memzero(&s, sizeof(ngx_esp_session_t));

    if (size < NGX_ESP_SESSION_ID_LEN + 16 + 1 + NGX_ESP_GROUPS_LEN + 3) {
        return;
    }

    ngx_memcpy(s.id, data, NGX_ESP_SESSION_ID_LEN);
    data += NGX_ESP_SESSION_ID_LEN;
    ngx_memcpy(&s.issued, data, 8);
    ngx_memcpy(&s.last_seen, data + 8, 8);
    data += 16;
    s.flags = *data++;
    ngx_memcpy(s.groups, data, NGX_ESP_GROUPS_LEN);
    data += NGX_ESP_GROUPS_LEN;

    size -= NGX_ESP_SESSION_ID_LEN + 16 + 1 + NGX_ESP_GROUPS_LEN;

    f[0] = &s.domain;
    f[1] = &s.user;
    f[2] = &s.sealed_password;

    /* three length bytes choose how the rest is shared out */

    for (i = 0; i < 3; i++) {
        n[i] = data[i];
    }

    data += 3;
    size -= 3;

    for (i = 0; i < 3; i++) {
        n[i] = (i == 2) ? size : ngx_min(n[i] * 4, size);
        f[i]->data = ngx_pnalloc(pool, n[i] ? n[i] : 1);
        ngx_memcpy(f[i]->data, data, n[i]);
        f[i]->len = n[i];
        data += n[i];
        size -= n[i];
    }

    if (s.domain.len > 255) {
        FUZZ_ASSERT(ngx_esp_session_seal(pool, fuzz_session_keys(), &s, &out)
                    == NGX_ERROR);
        return;
    }

    fuzz_session_reseal(pool, &s);

    /* the third string as a password, sealed for this session */

    pw = s.sealed_password;

    rc = ngx_esp_session_seal_password(pool, fuzz_password_keys(), &s, &pw);

    if (pw.len == 0 || pw.len > NGX_ESP_MAX_FIELD
        || s.user.len > NGX_ESP_MAX_FIELD)
    {
        FUZZ_ASSERT(rc == NGX_ERROR);
        return;
    }

    FUZZ_ASSERT(rc == NGX_OK);
    FUZZ_ASSERT(s.sealed_password.len == pw.len + NGX_ESP_PW_OVERHEAD);

    fuzz_session_reseal(pool, &s);

    reason = NULL;
    FUZZ_ASSERT(ngx_esp_session_open_password(pool, fuzz_password_keys(), &s,
                                              &pw2, &reason)
                == NGX_OK);
    FUZZ_ASSERT(pw2.len == pw.len
                && ngx_memcmp(pw2.data, pw.data, pw.len) == 0);

    fuzz_password_check(pool, &s);
}


/* "make fuzz-seeds": the plaintexts of cookies the real seal made */

int LLVMFuzzerInitialize(int *argc, char ***argv);


static void
fuzz_write_plain(const char *dir, const char *name, ngx_esp_session_t *s,
    ngx_int_t cut, ngx_int_t at, u_char bits)
{
    u_char      *plain, *p;
    size_t       len;
    FILE        *f;
    char         path[4096];
    ngx_str_t    cookie, sealed;
    ngx_pool_t  *pool;

    pool = fuzz_pool();

    FUZZ_ASSERT(ngx_esp_session_seal(pool, fuzz_session_keys(), s, &cookie)
                == NGX_OK);

    sealed.data = ngx_pnalloc(pool, ngx_base64_decoded_length(cookie.len));
    FUZZ_ASSERT(ngx_decode_base64url(&sealed, &cookie) == NGX_OK);

    len = sealed.len - NGX_ESP_KEY_ID_LEN - NGX_ESP_NONCE_LEN
          - NGX_ESP_TAG_LEN;
    plain = ngx_pnalloc(pool, len);
    p = sealed.data + NGX_ESP_KEY_ID_LEN;

    FUZZ_ASSERT(ngx_esp_session_crypt(0, &fuzz_keys[0], NGX_ESP_AAD, p,
                                      p + NGX_ESP_NONCE_LEN, len, plain,
                                      p + NGX_ESP_NONCE_LEN + len)
                == NGX_OK);

    if (at >= 0) {
        plain[at] ^= bits;
    }

    len -= cut;

    snprintf(path, sizeof(path), "%s/%s", dir, name);

    f = fopen(path, "w");
    if (f == NULL || fwrite(plain, 1, len, f) != len) {
        perror(path);
        exit(1);
    }

    fclose(f);
    ngx_destroy_pool(pool);
}


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char               *dir;
    ngx_str_t           pw;
    ngx_pool_t         *pool;
    ngx_esp_session_t   s;

    dir = getenv("ESP_FUZZ_SEEDS");

    if (dir == NULL) {
        return 0;
    }

    (void) fuzz_session_keys();

    ngx_memzero(&s, sizeof(ngx_esp_session_t));
    ngx_memset(s.id, 0x42, NGX_ESP_SESSION_ID_LEN);
    s.issued = 1700000000 - 60;
    s.last_seen = 1700000000 - 30;
    ngx_str_set(&s.domain, "contoso");
    ngx_str_set(&s.user, "alice@contoso.local");

    fuzz_write_plain(dir, "public", &s, 0, -1, 0);
    fuzz_write_plain(dir, "one-short", &s, 1, -1, 0);
    fuzz_write_plain(dir, "version", &s, 0, 0, 0x80);
    fuzz_write_plain(dir, "domain-length", &s, 0, NGX_ESP_FIXED_LEN, 0x80);

    /* version 2 (3 ^ 1): the password in the clear where it was */

    s.flags = NGX_ESP_SESSION_PRIVATE;
    ngx_str_set(&s.sealed_password, "Pa55w.rd!");
    fuzz_write_plain(dir, "version-2-password", &s, 0, 0, 0x01);

    pool = fuzz_pool();
    ngx_str_set(&pw, "Pa55w.rd!");
    FUZZ_ASSERT(ngx_esp_session_seal_password(pool, fuzz_password_keys(),
                                              &s, &pw)
                == NGX_OK);
    fuzz_write_plain(dir, "private-password", &s, 0, -1, 0);
    fuzz_write_plain(dir, "user-length", &s, 0, NGX_ESP_FIXED_LEN + 1 + 7,
                     0x80);
    ngx_destroy_pool(pool);

    exit(0);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ngx_pool_t  *pool;

    pool = fuzz_pool();

    fuzz_open_plaintext(pool, data, size);
    fuzz_round_trip(pool, data, size);

    ngx_destroy_pool(pool);

    return 0;
}
