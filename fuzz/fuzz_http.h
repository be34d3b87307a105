
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#ifndef _FUZZ_HTTP_H_INCLUDED_
#define _FUZZ_HTTP_H_INCLUDED_


#include <ngx_http.h>


/*
 * A request with what the form code reads of one: pool, connection and
 * log, the header list and the cookie array (nginx 1.22: an array of
 * ngx_table_elt_t pointers).
 */

static ngx_inline ngx_http_request_t *
fuzz_request(ngx_pool_t *pool)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ngx_pcalloc(pool, sizeof(ngx_http_request_t));
    c = ngx_pcalloc(pool, sizeof(ngx_connection_t));
    FUZZ_ASSERT(r != NULL && c != NULL);

    c->log = fuzz_log();
    c->pool = pool;

    r->connection = c;
    r->pool = pool;

    r->headers_in.headers.part.elts = ngx_pcalloc(pool,
                                                  16 * sizeof(ngx_table_elt_t));
    r->headers_in.headers.part.nelts = 0;
    r->headers_in.headers.part.next = NULL;
    r->headers_in.headers.last = &r->headers_in.headers.part;
    r->headers_in.headers.size = sizeof(ngx_table_elt_t);
    r->headers_in.headers.nalloc = 16;
    r->headers_in.headers.pool = pool;

#if (nginx_version < 1023000)
    r->headers_in.cookies.elts = ngx_pcalloc(pool,
                                             16 * sizeof(ngx_table_elt_t *));
    r->headers_in.cookies.nelts = 0;
    r->headers_in.cookies.size = sizeof(ngx_table_elt_t *);
    r->headers_in.cookies.nalloc = 16;
    r->headers_in.cookies.pool = pool;

    FUZZ_ASSERT(r->headers_in.cookies.elts != NULL);
#endif

    FUZZ_ASSERT(r->headers_in.headers.part.elts != NULL);

    return r;
}


/* a header as nginx stores it; the value is an exact-size copy */

static ngx_inline ngx_table_elt_t *
fuzz_add_header(ngx_http_request_t *r, u_char *name, size_t nlen,
    u_char *value, size_t len)
{
    ngx_table_elt_t  *h;

    if (r->headers_in.headers.part.nelts == 16) {
        return NULL;
    }

    h = (ngx_table_elt_t *) r->headers_in.headers.part.elts
        + r->headers_in.headers.part.nelts++;

    h->hash = 1;
    h->key.data = ngx_pnalloc(r->pool, nlen + 1);
    h->value.data = ngx_pnalloc(r->pool, len ? len : 1);
    FUZZ_ASSERT(h->key.data != NULL && h->value.data != NULL);
    ngx_memcpy(h->key.data, name, nlen);
    h->key.data[nlen] = '\0';
    h->key.len = nlen;
    ngx_memcpy(h->value.data, value, len);
    h->value.len = len;
    h->lowcase_key = h->key.data;

    if (nlen == 6 && ngx_strncasecmp(name, (u_char *) "Cookie", 6) == 0) {
#if (nginx_version >= 1023000)
        ngx_table_elt_t  **last;

        for (last = &r->headers_in.cookie; *last; last = &(*last)->next) {
            /* void */
        }

        h->next = NULL;
        *last = h;
#else
        ((ngx_table_elt_t **) r->headers_in.cookies.elts)
            [r->headers_in.cookies.nelts++] = h;
#endif
    }

    return h;
}


/*
 * nginx 1.22's ngx_http_validate_host(), which makes r->headers_in.server
 * of the Host header: NGX_DECLINED means a 400 before any module runs
 */

static ngx_inline ngx_int_t
fuzz_validate_host(ngx_str_t *host, ngx_pool_t *pool)
{
    u_char  *h, ch, *low;
    size_t   i, dot_pos, host_len;

    enum {
        sw_usual = 0,
        sw_literal,
        sw_rest
    } state;

    dot_pos = host->len;
    host_len = host->len;
    h = host->data;
    state = sw_usual;

    for (i = 0; i < host->len; i++) {
        ch = h[i];

        switch (ch) {

        case '.':
            if (dot_pos == i - 1) {
                return NGX_DECLINED;
            }
            dot_pos = i;
            break;

        case ':':
            if (state == sw_usual) {
                host_len = i;
                state = sw_rest;
            }
            break;

        case '[':
            if (i == 0) {
                state = sw_literal;
            }
            break;

        case ']':
            if (state == sw_literal) {
                host_len = i + 1;
                state = sw_rest;
            }
            break;

        default:
            if (ch == '/' || ch == '\0') {
                return NGX_DECLINED;
            }

            if (ch <= 0x20 || ch == 0x7f) {
                return NGX_DECLINED;
            }

            break;
        }
    }

    if (dot_pos == host_len - 1) {
        host_len--;
    }

    if (host_len == 0) {
        return NGX_DECLINED;
    }

    low = ngx_pnalloc(pool, host_len);
    FUZZ_ASSERT(low != NULL);
    ngx_strlow(low, h, host_len);

    host->data = low;
    host->len = host_len;

    return NGX_OK;
}


#endif /* _FUZZ_HTTP_H_INCLUDED_ */
