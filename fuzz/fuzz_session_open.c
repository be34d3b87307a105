
/*
 * Copyright (C) ngx_exchange_esp authors
 */


/*
 * ngx_esp_session_open() on any cookie value a client can send.  The
 * seeds are cookies sealed by ngx_esp_session_seal() under the fixed
 * keys of fuzz_session.h (fuzz/corpus/session_open/, made with
 * "make fuzz-seeds"), so that mutations start from authentic input.
 *
 * Properties: the answer is NGX_OK or NGX_DECLINED with a reason; an
 * opened session is consistent and survives a seal/open round trip; the
 * password it carries opens only under the password keys, only in its
 * own session, and seals again to itself.
 */


#include "fuzz_common.h"

#include "../src/ngx_esp_session.c"
#include "../src/ngx_esp_http.c"

#include "fuzz_session.h"


int LLVMFuzzerInitialize(int *argc, char ***argv);


/* "make fuzz-seeds": ESP_FUZZ_SEEDS=dir writes the seeds and exits */

static void
fuzz_write_seed(const char *dir, const char *name, ngx_str_t *s)
{
    FILE  *f;
    char   path[4096];

    snprintf(path, sizeof(path), "%s/%s", dir, name);

    f = fopen(path, "w");
    if (f == NULL || fwrite(s->data, 1, s->len, f) != s->len) {
        perror(path);
        exit(1);
    }

    fclose(f);
}


static void
fuzz_write_seeds(const char *dir)
{
    u_char             *p, big[1024], dom[255];
    ngx_str_t           c, m, pw;
    ngx_uint_t          i;
    ngx_pool_t         *pool;
    ngx_esp_session_t   s;

    pool = fuzz_pool();

    ngx_memzero(&s, sizeof(ngx_esp_session_t));
    ngx_memset(s.id, 0x42, NGX_ESP_SESSION_ID_LEN);
    s.issued = 1700000000 - 60;
    s.last_seen = 1700000000 - 30;
    ngx_str_set(&s.domain, "contoso");
    ngx_str_set(&s.user, "alice@contoso.local");

    if (ngx_esp_session_seal(pool, fuzz_session_keys(), &s, &c) != NGX_OK) {
        abort();
    }

    fuzz_write_seed(dir, "public", &c);

    /* a damaged copy of each kind, from the same cookie */

    m.data = ngx_pnalloc(pool, c.len + 16);
    ngx_memcpy(m.data, c.data, c.len);

    m.len = c.len - 1;
    fuzz_write_seed(dir, "truncated", &m);

    m.len = c.len;
    m.data[c.len - 3] ^= 0x01;
    fuzz_write_seed(dir, "bit-flipped", &m);
    m.data[c.len - 3] ^= 0x01;

    p = ngx_cpymem(m.data + c.len, "==AAAA", 6);
    m.len = p - m.data;
    fuzz_write_seed(dir, "after-padding", &m);

    m.len = c.len;
    m.data[0] = (m.data[0] == 'A') ? 'B' : 'A';
    fuzz_write_seed(dir, "unknown-key", &m);

    ngx_memcpy(m.data, c.data, c.len);
    for (i = 0; i < c.len; i++) {
        m.data[i] = (c.data[i] == '-') ? '+' : (c.data[i] == '_') ? '/'
                                                                  : c.data[i];
    }
    fuzz_write_seed(dir, "standard-base64", &m);

    /* private, with a password (esp_server_auth basic) and groups */

    s.flags = NGX_ESP_SESSION_PRIVATE;
    ngx_memset(s.groups, 0x5a, NGX_ESP_GROUPS_LEN);
    ngx_str_set(&s.user, "CONTOSO\\J\xc3\xbcrgen");
    ngx_str_set(&pw, "Pa55w.rd!");

    if (ngx_esp_session_seal_password(pool, fuzz_password_keys(), &s, &pw)
        != NGX_OK
        || ngx_esp_session_seal(pool, fuzz_session_keys(), &s, &c) != NGX_OK)
    {
        abort();
    }

    fuzz_write_seed(dir, "private-password", &c);

    /* a password sealed with the old password key, then its session's */

    if (ngx_esp_session_seal_password(pool, fuzz_session_old_password_key(),
                                      &s, &pw)
        != NGX_OK
        || ngx_esp_session_seal(pool, fuzz_session_keys(), &s, &c) != NGX_OK)
    {
        abort();
    }

    fuzz_write_seed(dir, "old-password-key", &c);

    /* the largest fields seal allows */

    ngx_memset(big, 'u', sizeof(big));
    ngx_memset(dom, 'd', sizeof(dom));
    s.domain.data = dom;
    s.domain.len = sizeof(dom);
    s.user.data = big;
    s.user.len = sizeof(big);
    pw.data = big;
    pw.len = sizeof(big);

    if (ngx_esp_session_seal_password(pool, fuzz_password_keys(), &s, &pw)
        != NGX_OK
        || ngx_esp_session_seal(pool, fuzz_session_keys(), &s, &c) != NGX_OK)
    {
        abort();
    }

    fuzz_write_seed(dir, "largest", &c);

    /* empty strings, sealed with the old key */

    ngx_str_set(&s.domain, "");
    ngx_str_set(&s.user, "");
    ngx_str_null(&s.sealed_password);
    s.issued = 0;
    s.last_seen = (time_t) -1;

    if (ngx_esp_session_seal(pool, fuzz_session_old_key(), &s, &c)
        != NGX_OK)
    {
        abort();
    }

    fuzz_write_seed(dir, "old-key-empty", &c);

    ngx_destroy_pool(pool);
}


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char  *dir;

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
    ngx_int_t           rc;
    ngx_str_t           cookie;
    ngx_pool_t         *pool;
    const char         *reason;
    ngx_esp_session_t   s;

    pool = fuzz_pool();

    cookie.data = fuzz_dup(data, size);
    cookie.len = size;

    ngx_memzero(&s, sizeof(ngx_esp_session_t));
    reason = NULL;

    rc = ngx_esp_session_open(pool, fuzz_session_keys(), &cookie, &s,
                              &reason);

    FUZZ_ASSERT(rc == NGX_OK || rc == NGX_DECLINED);

    if (rc == NGX_DECLINED) {
        FUZZ_ASSERT(reason != NULL);

    } else {
        fuzz_session_check(&s);
        fuzz_session_reseal(pool, &s);
        fuzz_password_check(pool, &s);
    }

    ngx_destroy_pool(pool);
    free(cookie.data);

    return 0;
}
