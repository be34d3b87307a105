
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


/* "keys" as an array of two, the first from "fill", the second "fill2" */

static ngx_inline ngx_array_t *
fuzz_key_pair(ngx_array_t *a, ngx_esp_key_t *k, u_char fill, u_char fill2)
{
    if (a->nelts == 0) {
        fuzz_make_key(&k[0], fill);
        fuzz_make_key(&k[1], fill2);

        a->elts = k;
        a->nelts = 2;
        a->size = sizeof(ngx_esp_key_t);
        a->nalloc = 2;
    }

    return a;
}


static ngx_inline ngx_array_t *
fuzz_session_keys(void)
{
    return fuzz_key_pair(&fuzz_key_array, fuzz_keys, 0x11, 0xa5);
}


/*
 * Two fixed password keys, as "esp_password_key new.key old.key" would
 * load them; other bytes than the session keys (they must differ).
 */

static ngx_esp_key_t  fuzz_pw_keys[2];
static ngx_array_t    fuzz_pw_key_array;


static ngx_inline ngx_array_t *
fuzz_password_keys(void)
{
    return fuzz_key_pair(&fuzz_pw_key_array, fuzz_pw_keys, 0x3c, 0xc3);
}


/* the second (old) key of a pair alone: sealing with it, for the seeds */

static ngx_inline ngx_array_t *
fuzz_old_key(ngx_array_t *pair, ngx_array_t *a)
{
    *a = *pair;
    a->elts = (ngx_esp_key_t *) pair->elts + 1;
    a->nelts = 1;

    return a;
}


static ngx_inline ngx_array_t *
fuzz_session_old_key(void)
{
    static ngx_array_t  a;

    return fuzz_old_key(fuzz_session_keys(), &a);
}


static ngx_inline ngx_array_t *
fuzz_session_old_password_key(void)
{
    static ngx_array_t  a;

    return fuzz_old_key(fuzz_password_keys(), &a);
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
           && a->sealed_password.len == b->sealed_password.len
           && (a->sealed_password.len == 0        /* NULL when dropped */
               || ngx_memcmp(a->sealed_password.data,
                             b->sealed_password.data,
                             a->sealed_password.len) == 0);
}


/* an opened session: its strings lie inside the plaintext, in order */

static ngx_inline void
fuzz_session_check(ngx_esp_session_t *s)
{
    FUZZ_ASSERT(s->domain.len <= 255);
    FUZZ_ASSERT(s->user.len <= 0xffff);
    FUZZ_ASSERT(s->sealed_password.len <= 0xffff);
    FUZZ_ASSERT(s->flags <= 0xff);

    FUZZ_ASSERT(s->user.data == s->domain.data + s->domain.len + 2);

    /* a version 2 cookie's password (in the clear) is dropped */
    FUZZ_ASSERT(s->sealed_password.len == 0
                || s->sealed_password.data == s->user.data + s->user.len + 2);
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
        || s->sealed_password.len > NGX_ESP_MAX_SEALED_PW)
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


/*
 * The password a session carries: opens under the password keys or is
 * refused with a reason; an opened one seals again and opens to itself,
 * and opens in no other session (another id or user).
 */

static ngx_inline void
fuzz_password_check(ngx_pool_t *pool, ngx_esp_session_t *s)
{
    ngx_int_t           rc;
    ngx_str_t           pw, pw2;
    const char         *reason;
    ngx_esp_session_t   t;

    reason = NULL;

    rc = ngx_esp_session_open_password(pool, fuzz_password_keys(), s, &pw,
                                       &reason);

    FUZZ_ASSERT(rc == NGX_OK || rc == NGX_DECLINED);

    if (rc == NGX_DECLINED) {
        FUZZ_ASSERT(reason != NULL);
        return;
    }

    FUZZ_ASSERT(pw.len + NGX_ESP_PW_OVERHEAD == s->sealed_password.len);

    /* the same password sealed again, and opened */

    t = *s;

    rc = ngx_esp_session_seal_password(pool, fuzz_password_keys(), &t, &pw);

    if (pw.len > NGX_ESP_MAX_FIELD || s->domain.len > 255
        || s->user.len > NGX_ESP_MAX_FIELD)
    {
        FUZZ_ASSERT(rc == NGX_ERROR);
        return;
    }

    FUZZ_ASSERT(rc == NGX_OK);
    FUZZ_ASSERT(ngx_esp_session_open_password(pool, fuzz_password_keys(),
                                              &t, &pw2, &reason)
                == NGX_OK);
    FUZZ_ASSERT(pw2.len == pw.len
                && ngx_memcmp(pw2.data, pw.data, pw.len) == 0);

    /* bound to its session */

    t.id[0] ^= 0x01;
    FUZZ_ASSERT(ngx_esp_session_open_password(pool, fuzz_password_keys(),
                                              &t, &pw2, &reason)
                == NGX_DECLINED);
    t.id[0] ^= 0x01;

    if (t.user.len) {
        t.user.len--;

    } else {
        ngx_str_set(&t.user, "x");
    }

    FUZZ_ASSERT(ngx_esp_session_open_password(pool, fuzz_password_keys(),
                                              &t, &pw2, &reason)
                == NGX_DECLINED);

    /* and never opened by the session keys */

    FUZZ_ASSERT(ngx_esp_session_open_password(pool, fuzz_session_keys(), s,
                                              &pw2, &reason)
                == NGX_DECLINED);
}


#endif /* _FUZZ_SESSION_H_INCLUDED_ */
