
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#ifndef _FUZZ_COMMON_H_INCLUDED_
#define _FUZZ_COMMON_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


/* a broken property is a crash, with the condition and where */

#define FUZZ_ASSERT(cond)                                                     \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "%s:%d: property failed: %s\n",                   \
                    __FILE__, __LINE__, #cond);                               \
            abort();                                                          \
        }                                                                     \
    } while (0)


/* exact-size heap copy: reading one byte past the input is caught */

static ngx_inline u_char *
fuzz_dup(const uint8_t *data, size_t size)
{
    u_char  *p;

    p = malloc(size ? size : 1);
    if (p == NULL) {
        abort();
    }

    if (size) {
        ngx_memcpy(p, data, size);
    }

    return p;
}


/* how many times c occurs in p */

static ngx_inline size_t
fuzz_count_byte(u_char *p, size_t len, u_char c)
{
    size_t  i, n;

    n = 0;

    for (i = 0; i < len; i++) {
        n += (p[i] == c);
    }

    return n;
}


static ngx_inline u_char *
fuzz_memmem(u_char *p, size_t len, const char *s, size_t n)
{
    size_t  i;

    for (i = 0; i + n <= len; i++) {
        if (ngx_memcmp(p + i, s, n) == 0) {
            return p + i;
        }
    }

    return NULL;
}


static ngx_inline ngx_uint_t
fuzz_ends_with(ngx_str_t *s, const char *suffix)
{
    size_t  n;

    n = ngx_strlen(suffix);

    return s->len >= n && ngx_memcmp(s->data + s->len - n, suffix, n) == 0;
}


/* strict UTF-8: no overlong forms, surrogates, or code points > U+10FFFF */

static ngx_inline ngx_uint_t
fuzz_utf8_valid(u_char *p, size_t len)
{
    u_char     *last;
    uint32_t    u, min;
    ngx_uint_t  n;

    last = p + len;

    while (p < last) {
        u = *p++;

        if (u < 0x80) {
            continue;
        }

        if (u >= 0xc2 && u <= 0xdf) {
            n = 1; u &= 0x1f; min = 0x80;

        } else if (u >= 0xe0 && u <= 0xef) {
            n = 2; u &= 0x0f; min = 0x800;

        } else if (u >= 0xf0 && u <= 0xf4) {
            n = 3; u &= 0x07; min = 0x10000;

        } else {
            return 0;
        }

        if ((size_t) (last - p) < n) {
            return 0;
        }

        while (n--) {
            if ((*p & 0xc0) != 0x80) {
                return 0;
            }

            u = (u << 6) | (*p++ & 0x3f);
        }

        if (u < min || (u >= 0xd800 && u <= 0xdfff) || u > 0x10ffff) {
            return 0;
        }
    }

    return 1;
}


/* a log that lets every ngx_log_error() through (formatted, dropped) */

static ngx_inline ngx_log_t *
fuzz_log(void)
{
    static ngx_log_t  log;

    log.log_level = NGX_LOG_DEBUG_ALL;

    return &log;
}


static ngx_inline ngx_pool_t *
fuzz_pool(void)
{
    ngx_pool_t  *pool;

    pool = ngx_create_pool(1024, fuzz_log());
    if (pool == NULL) {
        abort();
    }

    return pool;
}


#endif /* _FUZZ_COMMON_H_INCLUDED_ */
