
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#ifndef _FUZZ_SESSION_H_INCLUDED_
#define _FUZZ_SESSION_H_INCLUDED_


/* include after src/ngx_esp_session.c */


/*
 * Two fixed keys, as "esp_session_key new.key old.key" would load them:
 * the first seals, both open; ids by ngx_esp_session_key_id().
 */

static ngx_esp_key_t  fuzz_keys[2];
static ngx_array_t    fuzz_key_array;


static ngx_inline void
fuzz_make_key(ngx_esp_key_t *k, u_char fill)
{
    size_t  i;

    ngx_memzero(k, sizeof(ngx_esp_key_t));

    for (i = 0; i < NGX_ESP_KEY_LEN; i++) {
        k->key[i] = (u_char) (fill + i * 7);
    }

    if (ngx_esp_session_key_id(k) != NGX_OK) {
        abort();
    }

    ngx_str_set(&k->file, "fuzz.key");
}


static ngx_inline ngx_array_t *
fuzz_session_keys(void)
{
    if (fuzz_key_array.nelts == 0) {
        fuzz_make_key(&fuzz_keys[0], 0x11);
        fuzz_make_key(&fuzz_keys[1], 0xa5);

        fuzz_key_array.elts = fuzz_keys;
        fuzz_key_array.nelts = 2;
        fuzz_key_array.size = sizeof(ngx_esp_key_t);
        fuzz_key_array.nalloc = 2;
    }

    return &fuzz_key_array;
}


/* the only key: sealing with the second one, for the seeds */

static ngx_inline ngx_array_t *
fuzz_session_old_key(void)
{
    static ngx_array_t  a;

    (void) fuzz_session_keys();

    a = fuzz_key_array;
    a.elts = &fuzz_keys[1];
    a.nelts = 1;

    return &a;
}


static ngx_inline ngx_uint_t
fuzz_session_equal(ngx_esp_session_t *a, ngx_esp_session_t *b)
{
    return ngx_memcmp(a->id, b->id, NGX_ESP_SESSION_ID_LEN) == 0
           && a->issued == b->issued
           && a->last_seen == b->last_seen
           && (a->flags & 0xff) == (b->flags & 0xff)
           && ngx_memcmp(a->groups, b->groups, NGX_ESP_GROUPS_LEN) == 0
           && a->domain.len == b->domain.len
           && ngx_memcmp(a->domain.data, b->domain.data, a->domain.len) == 0
           && a->user.len == b->user.len
           && ngx_memcmp(a->user.data, b->user.data, a->user.len) == 0
           && a->password.len == b->password.len
           && ngx_memcmp(a->password.data, b->password.data,
                         a->password.len) == 0;
}


/* an opened session: its strings lie inside the plaintext, in order */

static ngx_inline void
fuzz_session_check(ngx_esp_session_t *s)
{
    FUZZ_ASSERT(s->domain.len <= 255);
    FUZZ_ASSERT(s->user.len <= 0xffff);
    FUZZ_ASSERT(s->password.len <= 0xffff);
    FUZZ_ASSERT(s->flags <= 0xff);

    FUZZ_ASSERT(s->user.data == s->domain.data + s->domain.len + 2);
    FUZZ_ASSERT(s->password.data == s->user.data + s->user.len + 2);
}


/*
 * Opened, sealed again and opened again: the same session (the check
 * that seal and open agree on the layout, whatever they hold).
 */

static ngx_inline void
fuzz_session_reseal(ngx_pool_t *pool, ngx_esp_session_t *s)
{
    ngx_int_t           rc;
    ngx_str_t           cookie;
    const char         *reason;
    ngx_esp_session_t   s2;

    rc = ngx_esp_session_seal(pool, fuzz_session_keys(), s, &cookie);

    if (s->user.len > NGX_ESP_MAX_FIELD
        || s->password.len > NGX_ESP_MAX_FIELD)
    {
        /* too long to seal: refused, never truncated */
        FUZZ_ASSERT(rc == NGX_ERROR);
        return;
    }

    FUZZ_ASSERT(rc == NGX_OK);
    FUZZ_ASSERT(cookie.len <= NGX_ESP_MAX_COOKIE);

    ngx_memzero(&s2, sizeof(ngx_esp_session_t));
    reason = NULL;

    rc = ngx_esp_session_open(pool, fuzz_session_keys(), &cookie, &s2,
                              &reason);

    FUZZ_ASSERT(rc == NGX_OK);
    FUZZ_ASSERT(fuzz_session_equal(s, &s2));
}


#endif /* _FUZZ_SESSION_H_INCLUDED_ */
