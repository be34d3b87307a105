
/*
 * Copyright (C) ngx_exchange_esp authors
 */


/*
 * Request header lists changed in place, as src/ngx_esp_http.c does it:
 * ngx_esp_http_set_header() (set, and remove by name) and
 * ngx_esp_http_strip_cookies() (a Cookie header left empty goes), mixed
 * with ngx_list_push() as any module may do it, on lists of one to four
 * elements a part (so that there are many parts).  The fuzzer's bytes
 * are the program: the first picks the part size, each next one an
 * operation and its argument.
 *
 * Properties, after every operation:
 * - nginx's own walk over the list (it steps into the next part without
 *   looking at its size) sees exactly the headers pushed and not
 *   removed, in order, and the list's last part is its last;
 * - a pointer taken to a header when it was added still shows it while
 *   it is in the list: nginx keeps such pointers (r->headers_in.host, the
 *   cookie list), and the proxy module sends what the list holds;
 * - nginx's list of Cookie headers is the Cookie headers of the list, in
 *   order, and none holds one of the gate's cookies after a strip;
 * - no push writes past the array of its part: every pool allocation is
 *   a malloc() of its own here, AddressSanitizer sees the overflow.
 */


#include "fuzz_common.h"

#include <ngx_http.h>

#include "../src/ngx_esp_http.c"


#define FUZZ_MAX  64


typedef struct {
    ngx_table_elt_t           *elt;
    char                       key[16];
    char                       value[32];
    ngx_uint_t                 cookie;
} fuzz_header_t;


static fuzz_header_t  fuzz_ref[FUZZ_MAX];
static ngx_uint_t     fuzz_n;


static void
fuzz_check(ngx_http_request_t *r)
{
    ngx_uint_t              i, k;
    ngx_list_t             *l;
    ngx_list_part_t        *part;
    ngx_table_elt_t        *h;
    ngx_esp_cookie_walk_t   w;

    l = &r->headers_in.headers;

    /* the walk of ngx_http_proxy_create_request() and friends */

    k = 0;
    part = &l->part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        FUZZ_ASSERT(k < fuzz_n);
        FUZZ_ASSERT(&h[i] == fuzz_ref[k].elt);
        k++;
    }

    FUZZ_ASSERT(k == fuzz_n);
    FUZZ_ASSERT(part == l->last);
    FUZZ_ASSERT(l->last->nelts <= l->nalloc);

    for (part = l->part.next; part; part = part->next) {
        FUZZ_ASSERT(part->nelts > 0);
    }

    /* the pointers kept still show their headers */

    ngx_memzero(&w, sizeof(ngx_esp_cookie_walk_t));

    for (k = 0; k < fuzz_n; k++) {
        h = fuzz_ref[k].elt;

        FUZZ_ASSERT(h->key.len == ngx_strlen(fuzz_ref[k].key)
                    && ngx_memcmp(h->key.data, fuzz_ref[k].key, h->key.len)
                       == 0);
        FUZZ_ASSERT(h->value.len == ngx_strlen(fuzz_ref[k].value)
                    && ngx_memcmp(h->value.data, fuzz_ref[k].value,
                                  h->value.len) == 0);

        if (fuzz_ref[k].cookie) {
            FUZZ_ASSERT(ngx_esp_cookie_header_next(r, &w) == h);
        }
    }

    FUZZ_ASSERT(ngx_esp_cookie_header_next(r, &w) == NULL);
}


static void
fuzz_remember(ngx_table_elt_t *h, const char *key, const char *value,
    ngx_uint_t cookie)
{
    FUZZ_ASSERT(fuzz_n < FUZZ_MAX);

    fuzz_ref[fuzz_n].elt = h;
    ngx_cpystrn((u_char *) fuzz_ref[fuzz_n].key, (u_char *) key,
                sizeof(fuzz_ref[0].key));
    ngx_cpystrn((u_char *) fuzz_ref[fuzz_n].value, (u_char *) value,
                sizeof(fuzz_ref[0].value));
    fuzz_ref[fuzz_n].cookie = cookie;
    fuzz_n++;
}


static void
fuzz_forget(ngx_uint_t k)
{
    ngx_memmove(&fuzz_ref[k], &fuzz_ref[k + 1],
                (fuzz_n - k - 1) * sizeof(fuzz_header_t));
    fuzz_n--;
}


/* a header as nginx's parser adds it: pushed, and the cookies listed */

static void
fuzz_push(ngx_http_request_t *r, ngx_uint_t id, ngx_uint_t arg)
{
    u_char            *p;
    ngx_table_elt_t   *h, **ch;
    char               key[16], value[32];
    ngx_uint_t         cookie;

    cookie = arg & 1;

    if (cookie) {
        ngx_cpystrn((u_char *) key, (u_char *) "Cookie", sizeof(key));

        p = ngx_sprintf((u_char *) value, "%s%s%s",
                        (arg & 2) ? "esp_session=s" : "",
                        (arg & 6) == 6 ? ";\t" : "",
                        (arg & 4) ? "a=1" : "");
        *p = '\0';

        if (value[0] == '\0') {
            ngx_cpystrn((u_char *) value, (u_char *) "b=2", sizeof(value));
        }

    } else {
        p = ngx_sprintf((u_char *) key, "Y-%ui", id);
        *p = '\0';
        p = ngx_sprintf((u_char *) value, "v%ui", id);
        *p = '\0';
    }

    h = ngx_list_push(&r->headers_in.headers);
    FUZZ_ASSERT(h != NULL);

    ngx_memzero(h, sizeof(ngx_table_elt_t));
    h->hash = 1;
    h->key.len = ngx_strlen(key);
    h->key.data = ngx_pnalloc(r->pool, h->key.len);
    h->value.len = ngx_strlen(value);
    h->value.data = ngx_pnalloc(r->pool, h->value.len + 1);
    FUZZ_ASSERT(h->key.data != NULL && h->value.data != NULL);
    ngx_memcpy(h->key.data, key, h->key.len);
    ngx_memcpy(h->value.data, value, h->value.len);
    h->lowcase_key = h->key.data;

    if (cookie) {
        ch = ngx_array_push(&r->headers_in.cookies);
        FUZZ_ASSERT(ch != NULL);
        *ch = h;
    }

    fuzz_remember(h, key, value, cookie);
}


/* ngx_esp_http_set_header(): "X-<n>" set, or any non-cookie removed */

static void
fuzz_set(ngx_http_request_t *r, ngx_uint_t arg)
{
    u_char            *p;
    char              *key, value[32];
    ngx_str_t          v;
    ngx_uint_t         k;
    ngx_table_elt_t   *slot;

    /* the name stays with the header: the pool's, as a literal would */

    key = ngx_pnalloc(r->pool, 16);
    FUZZ_ASSERT(key != NULL);
    p = ngx_sprintf((u_char *) key, "X-%ui", arg % 4);
    *p = '\0';
    p = ngx_sprintf((u_char *) value, "set%ui", arg);
    *p = '\0';

    v.data = ngx_pnalloc(r->pool, ngx_strlen(value));
    FUZZ_ASSERT(v.data != NULL);
    v.len = ngx_strlen(value);
    ngx_memcpy(v.data, value, v.len);

    slot = NULL;

    FUZZ_ASSERT(ngx_esp_http_set_header(r, &r->headers_in.headers, key, &v,
                                        &slot)
                == NGX_OK);
    FUZZ_ASSERT(slot != NULL);

    for (k = 0; k < fuzz_n; k++) {
        if (ngx_strcmp(fuzz_ref[k].key, key) == 0) {
            FUZZ_ASSERT(fuzz_ref[k].elt == slot);
            ngx_cpystrn((u_char *) fuzz_ref[k].value, (u_char *) value,
                        sizeof(fuzz_ref[0].value));
            return;
        }
    }

    FUZZ_ASSERT(slot->hash == ngx_hash_key(slot->lowcase_key, slot->key.len));

    fuzz_remember(slot, key, value, 0);
}


static void
fuzz_remove(ngx_http_request_t *r, ngx_uint_t arg)
{
    char              key[16];
    ngx_uint_t        k, j, others;
    ngx_table_elt_t  *slot;

    others = 0;

    for (k = 0; k < fuzz_n; k++) {
        others += !fuzz_ref[k].cookie;
    }

    if (others == 0) {
        return;
    }

    /* the (arg % others)-th header that is no cookie, by its name */

    arg %= others;

    for (k = 0, j = 0; k < fuzz_n; k++) {
        if (!fuzz_ref[k].cookie && j++ == arg) {
            break;
        }
    }

    ngx_cpystrn((u_char *) key, (u_char *) fuzz_ref[k].key, sizeof(key));

    slot = fuzz_ref[k].elt;

    FUZZ_ASSERT(ngx_esp_http_set_header(r, &r->headers_in.headers, key, NULL,
                                        &slot)
                == NGX_OK);
    FUZZ_ASSERT(slot == NULL);

    for (k = fuzz_n; k > 0; k--) {
        if (ngx_strcmp(fuzz_ref[k - 1].key, key) == 0) {
            fuzz_forget(k - 1);
        }
    }
}


static void
fuzz_strip(ngx_http_request_t *r)
{
    char        *v;
    ngx_str_t    names[2];
    ngx_uint_t   k;

    ngx_str_set(&names[0], "esp_session");
    ngx_str_set(&names[1], "esp_csrf");

    FUZZ_ASSERT(ngx_esp_http_strip_cookies(r, names, 2) == NGX_OK);

    for (k = fuzz_n; k > 0; k--) {
        if (!fuzz_ref[k - 1].cookie) {
            continue;
        }

        v = fuzz_ref[k - 1].value;

        if (ngx_strcmp(v, "esp_session=s") == 0) {
            fuzz_forget(k - 1);

        } else if (ngx_strcmp(v, "esp_session=s;\ta=1") == 0) {
            ngx_cpystrn((u_char *) v, (u_char *) "a=1",
                        sizeof(fuzz_ref[0].value));
        }
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t               i;
    ngx_uint_t           op, arg;
    ngx_pool_t          *pool;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    if (size == 0) {
        return 0;
    }

    pool = fuzz_pool();

    r = ngx_pcalloc(pool, sizeof(ngx_http_request_t));
    c = ngx_pcalloc(pool, sizeof(ngx_connection_t));
    FUZZ_ASSERT(r != NULL && c != NULL);

    c->log = fuzz_log();
    c->pool = pool;
    r->connection = c;
    r->pool = pool;

    FUZZ_ASSERT(ngx_list_init(&r->headers_in.headers, pool, 1 + data[0] % 4,
                              sizeof(ngx_table_elt_t))
                == NGX_OK);
    FUZZ_ASSERT(ngx_array_init(&r->headers_in.cookies, pool, 1,
                               sizeof(ngx_table_elt_t *))
                == NGX_OK);

    fuzz_n = 0;

    for (i = 1; i < size; i++) {
        op = data[i] & 3;
        arg = data[i] >> 2;

        switch (op) {

        case 0:
            if (fuzz_n < FUZZ_MAX - 1) {
                fuzz_push(r, i, arg);
            }
            break;

        case 1:
            fuzz_remove(r, arg);
            break;

        case 2:
            if (fuzz_n < FUZZ_MAX - 1) {
                fuzz_set(r, arg);
            }
            break;

        default:
            fuzz_strip(r);
            break;
        }

        fuzz_check(r);
    }

    ngx_destroy_pool(pool);

    return 0;
}
