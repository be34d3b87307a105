
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_esp_http.h"
#include "ngx_esp_request.h"


#define NGX_ESP_FORM_TYPE  "application/x-www-form-urlencoded"


/* one cookie of a Cookie header's value */
typedef struct {
    ngx_str_t                  name;
    ngx_str_t                  value;        /* data NULL: no "=" */
    u_char                    *start;        /* the pair as sent */
    u_char                    *end;
} ngx_esp_cookie_t;


static ngx_uint_t ngx_esp_http_cookie(u_char **pos, u_char *last,
    ngx_esp_cookie_t *c);
static ngx_uint_t ngx_esp_http_cookie_named(ngx_str_t *name,
    ngx_str_t *names, ngx_uint_t n);
static ngx_int_t ngx_esp_http_strip_header(ngx_http_request_t *r,
    ngx_esp_cookie_walk_t *w, ngx_str_t *names, ngx_uint_t n);
static ngx_table_elt_t *ngx_esp_http_find_header(ngx_list_t *headers,
    u_char *name, size_t len, ngx_list_part_t **part, ngx_uint_t *i);
static ngx_int_t ngx_esp_http_remove(ngx_list_t *l, ngx_table_elt_t *elt);
static ngx_int_t ngx_esp_http_list_delete(ngx_list_t *l,
    ngx_list_part_t *part, ngx_uint_t i);
static void ngx_esp_http_body_done(ngx_http_request_t *r);
static ngx_int_t ngx_esp_http_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_uint_t ngx_esp_http_is(ngx_str_t *s, char *text, size_t len);
static void ngx_esp_http_wipe(void *data);


static ngx_http_request_body_filter_pt  ngx_esp_http_next_body_filter;


/* what every page of the gate's own is sent with */
static struct {
    char                      *name;
    ngx_str_t                  value;
} ngx_esp_http_page_headers[] = {

    { "Cache-Control", ngx_string("no-store") },
    { "Content-Security-Policy",
      ngx_string("default-src 'none'; style-src 'unsafe-inline'; "
                 "img-src data:; form-action 'self'; "
                 "frame-ancestors 'none'; base-uri 'none'") },
    { "X-Frame-Options", ngx_string("DENY") },
    { "Referrer-Policy", ngx_string("no-referrer") },
    { "X-Content-Type-Options", ngx_string("nosniff") },
    { NULL, ngx_null_string }
};


ngx_int_t
ngx_esp_http_init(ngx_conf_t *cf)
{
    ngx_esp_http_next_body_filter = ngx_http_top_request_body_filter;
    ngx_http_top_request_body_filter = ngx_esp_http_body_filter;

    return NGX_OK;
}


/*
 * The next cookie of a header value from *pos.  RFC 6265 writes "; "
 * between cookies, but clients also send ";", ";\t" or " ;": whatever
 * one part of the gate takes for a cookie of its own, every other part
 * must too, or a cookie counts as a session and still goes to Exchange.
 */

static ngx_uint_t
ngx_esp_http_cookie(u_char **pos, u_char *last, ngx_esp_cookie_t *c)
{
    u_char  *p, *eq;

    p = *pos;

    while (p < last && (*p == ' ' || *p == '\t' || *p == ';')) {
        p++;
    }

    if (p == last) {
        *pos = p;
        return 0;
    }

    c->start = p;

    while (p < last && *p != ';') {
        p++;
    }

    c->end = p;
    *pos = p;

    eq = ngx_strlchr(c->start, c->end, '=');

    c->name.data = c->start;
    c->name.len = (eq ? eq : c->end) - c->start;

    while (c->name.len && (c->name.data[c->name.len - 1] == ' '
                           || c->name.data[c->name.len - 1] == '\t'))
    {
        c->name.len--;
    }

    if (eq == NULL) {
        c->value.data = NULL;
        c->value.len = 0;
        return 1;
    }

    c->value.data = eq + 1;
    c->value.len = c->end - c->value.data;

    while (c->value.len && (c->value.data[c->value.len - 1] == ' '
                            || c->value.data[c->value.len - 1] == '\t'))
    {
        c->value.len--;
    }

    if (c->value.len >= 2 && c->value.data[0] == '"'
        && c->value.data[c->value.len - 1] == '"')
    {
        c->value.data++;
        c->value.len -= 2;
    }

    return 1;
}


ngx_int_t
ngx_esp_http_cookie_next(ngx_http_request_t *r, ngx_esp_cookies_t *c,
    ngx_str_t *name, ngx_str_t *value)
{
    u_char            *last;
    ngx_esp_cookie_t   cookie;

    if (!c->started) {
        c->started = 1;
        c->pos = NULL;

        if (ngx_esp_cookie_header_next(r, &c->w) == NULL) {
            return NGX_DECLINED;
        }
    }

    while (c->w.h) {

        last = c->w.h->value.data + c->w.h->value.len;

        if (c->pos == NULL) {
            c->pos = c->w.h->value.data;
        }

        while (ngx_esp_http_cookie(&c->pos, last, &cookie)) {

            if (cookie.value.data) {
                *name = cookie.name;
                *value = cookie.value;
                return NGX_OK;
            }
        }

        c->pos = NULL;
        (void) ngx_esp_cookie_header_next(r, &c->w);
    }

    return NGX_DECLINED;
}


ngx_int_t
ngx_esp_http_strip_cookies(ngx_http_request_t *r, ngx_str_t *names,
    ngx_uint_t n)
{
    ngx_esp_cookie_walk_t  w;

    ngx_memzero(&w, sizeof(ngx_esp_cookie_walk_t));

    while (ngx_esp_cookie_header_next(r, &w) != NULL) {
        if (ngx_esp_http_strip_header(r, &w, names, n) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_esp_http_strip_header(ngx_http_request_t *r, ngx_esp_cookie_walk_t *w,
    ngx_str_t *names, ngx_uint_t n)
{
    u_char            *p, *last, *dst;
    size_t             len;
    ngx_uint_t         i, changed;
    ngx_table_elt_t   *h;
    ngx_esp_cookie_t   c;

    h = w->h;
    p = h->value.data;
    last = p + h->value.len;

    /* most headers name none of them: no copy then */

    for (i = 0; i < n; i++) {
        if (ngx_strlcasestrn(p, last, names[i].data, names[i].len - 1)
            != NULL)
        {
            break;
        }
    }

    if (i == n) {
        return NGX_OK;
    }

    /* "; " between the cookies kept may be longer than what was sent */

    dst = ngx_pnalloc(r->pool, 2 * h->value.len);
    if (dst == NULL) {
        return NGX_ERROR;
    }

    len = 0;
    changed = 0;

    while (ngx_esp_http_cookie(&p, last, &c)) {

        if (ngx_esp_http_cookie_named(&c.name, names, n)) {
            changed = 1;
            continue;
        }

        if (len) {
            dst[len++] = ';';
            dst[len++] = ' ';
        }

        len = ngx_cpymem(dst + len, c.start, c.end - c.start) - dst;
    }

    if (!changed) {
        return NGX_OK;
    }

    if (len) {
        /* the element itself changes: nginx's pointers see it */
        h->value.data = dst;
        h->value.len = len;

        return NGX_OK;
    }

    ngx_esp_cookie_header_drop(r, w);

    return ngx_esp_http_remove(&r->headers_in.headers, h);
}


static ngx_uint_t
ngx_esp_http_cookie_named(ngx_str_t *name, ngx_str_t *names, ngx_uint_t n)
{
    ngx_uint_t  i;

    for (i = 0; i < n; i++) {
        if (name->len == names[i].len
            && ngx_strncmp(name->data, names[i].data, name->len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


ngx_int_t
ngx_esp_http_set_header(ngx_http_request_t *r, ngx_list_t *headers,
    char *name, ngx_str_t *value, ngx_table_elt_t **slot)
{
    size_t            len;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    len = ngx_strlen(name);

    if (value == NULL) {

        if (slot) {
            *slot = NULL;
        }

        while ((h = ngx_esp_http_find_header(headers, (u_char *) name, len,
                                             &part, &i))
               != NULL)
        {
            if (ngx_esp_http_list_delete(headers, part, i) != NGX_OK) {
                return NGX_ERROR;
            }
        }

        return NGX_OK;
    }

    h = ngx_esp_http_find_header(headers, (u_char *) name, len, &part, &i);

    if (h) {
        h->value = *value;

        if (headers == &r->headers_out.headers) {
            h->hash = 1;
        }

        if (slot) {
            *slot = h;
        }

        return NGX_OK;
    }

    h = ngx_list_push(headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    /* zeroed: h->next, since nginx 1.23, must be NULL */
    ngx_memzero(h, sizeof(ngx_table_elt_t));

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = len;
    h->value = *value;
    h->lowcase_key = (u_char *) name;

    if (headers == &r->headers_in.headers) {
        h->lowcase_key = ngx_pnalloc(r->pool, len);
        if (h->lowcase_key == NULL) {
            return NGX_ERROR;
        }

        ngx_strlow(h->lowcase_key, (u_char *) name, len);
        h->hash = ngx_hash_key(h->lowcase_key, len);
    }

    if (slot) {
        *slot = h;
    }

    return NGX_OK;
}


static ngx_table_elt_t *
ngx_esp_http_find_header(ngx_list_t *headers, u_char *name, size_t len,
    ngx_list_part_t **part, ngx_uint_t *i)
{
    ngx_list_part_t  *p;
    ngx_table_elt_t  *h;

    for (p = &headers->part; p; p = p->next) {

        h = p->elts;

        for (*i = 0; *i < p->nelts; (*i)++) {
            if (h[*i].key.len == len
                && ngx_strncasecmp(h[*i].key.data, name, len) == 0)
            {
                *part = p;
                return &h[*i];
            }
        }
    }

    return NULL;
}


static ngx_int_t
ngx_esp_http_remove(ngx_list_t *l, ngx_table_elt_t *elt)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    for (part = &l->part; part; part = part->next) {

        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (&h[i] == elt) {
                return ngx_esp_http_list_delete(l, part, i);
            }
        }
    }

    return NGX_OK;
}


/*
 * Takes element i of "part" out of the list without moving any other
 * element, since nginx keeps pointers to them (r->headers_in.host, the
 * cookie list, the proxy module's view of the list): the part is cut or
 * shortened in place (as headers-more does).  Two rules keep the list
 * sound for nginx:
 * - no part but the first may be empty (nginx's loops step into the
 *   next part without looking at its size): an emptied part leaves the
 *   chain;
 * - ngx_list_push() fills l->last up to l->nalloc elements from its
 *   "elts", which must then be its own: when l->last no longer starts at
 *   the start of its array, or its tail moved to a part of its own, it is
 *   made to look full (l->nalloc), so that the next push starts a new
 *   part of its own.
 */

static ngx_int_t
ngx_esp_http_list_delete(ngx_list_t *l, ngx_list_part_t *part, ngx_uint_t i)
{
    ngx_uint_t        seal;
    ngx_list_part_t  *tail, *prev;

    seal = 0;

    if (i == part->nelts - 1) {
        /* the last slot of l->last is simply filled again by a push */
        part->nelts--;

    } else if (i == 0) {
        part->elts = (u_char *) part->elts + l->size;
        part->nelts--;
        seal = (part == l->last);

    } else {
        tail = ngx_palloc(l->pool, sizeof(ngx_list_part_t));
        if (tail == NULL) {
            return NGX_ERROR;
        }

        tail->elts = (u_char *) part->elts + (i + 1) * l->size;
        tail->nelts = part->nelts - i - 1;
        tail->next = part->next;

        part->nelts = i;
        part->next = tail;

        if (l->last == part) {
            l->last = tail;
            seal = 1;
        }
    }

    if (part->nelts == 0 && part != &l->part) {

        for (prev = &l->part; prev->next != part; prev = prev->next) {
            /* void */
        }

        prev->next = part->next;

        if (l->last == part) {
            l->last = prev;
            seal = 1;
        }
    }

    if (!seal) {
        return NGX_OK;
    }

    if (l->last->nelts) {
        l->nalloc = l->last->nelts;
        return NGX_OK;
    }

    /* only the first part left, and empty: an array of its own again */

    l->last->elts = ngx_palloc(l->pool, l->nalloc * l->size);
    if (l->last->elts == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_esp_http_read_body(ngx_http_request_t *r, ngx_esp_body_t *body,
    size_t max, const char *what, ngx_http_client_body_handler_pt handler)
{
    ngx_int_t  rc;

    if (r->headers_in.content_length_n > (off_t) max) {
        return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
    }

    body->buf = ngx_create_temp_buf(r->pool, max);
    if (body->buf == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    body->what = what;
    body->handler = handler;
    body->reading = 1;

    rc = ngx_http_read_client_request_body(r, ngx_esp_http_body_done);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static void
ngx_esp_http_body_done(ngx_http_request_t *r)
{
    ngx_esp_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_exchange_esp_module);

    if (ctx == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ctx->body.reading = 0;
    ctx->body.handler(r);
}


/*
 * A body read by ngx_esp_http_read_body() is kept here, not by nginx:
 * nginx writes a body to a temporary file as soon as its buffer
 * (client_body_buffer_size) fills, which a chunked body does before any
 * limit could be checked.  Each buffer is copied and given back at once
 * (so nginx reuses it, and it never reaches a file), and the body goes
 * on to nginx's own filter, in one buffer, only when it is complete;
 * one byte over the limit ends the request with 413, like nginx's
 * client_max_body_size.  The copies of the buffers are wiped: a login
 * body holds a password.
 */

static ngx_int_t
ngx_esp_http_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    size_t          size;
    ngx_buf_t      *b;
    ngx_uint_t      last;
    ngx_chain_t    *cl, out;
    ngx_esp_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_exchange_esp_module);

    if (ctx == NULL || !ctx->body.reading) {
        return ngx_esp_http_next_body_filter(r, in);
    }

    b = ctx->body.buf;
    last = 0;

    for (cl = in; cl; cl = cl->next) {

        if (cl->buf->last_buf) {
            last = 1;
        }

        if (ngx_buf_special(cl->buf)) {
            continue;
        }

        if (!ngx_buf_in_memory(cl->buf)) {
            goto too_large;
        }

        size = cl->buf->last - cl->buf->pos;

        if (size > (size_t) (b->end - b->last)) {
            goto too_large;
        }

        b->last = ngx_cpymem(b->last, cl->buf->pos, size);

        if (cl->buf->temporary) {
            ngx_explicit_memzero(cl->buf->pos, size);
        }

        cl->buf->pos = cl->buf->last;
    }

    if (!last) {
        return ngx_esp_http_next_body_filter(r, NULL);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "esp: %uz bytes of body read", (size_t) (b->last - b->pos));

    b->last_buf = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_esp_http_next_body_filter(r, &out);

too_large:

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "esp: %s refused: body too large", ctx->body.what);

    return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
}


ngx_int_t
ngx_esp_http_body(ngx_http_request_t *r, size_t max, ngx_uint_t wipe,
    ngx_str_t *body, const char **reason)
{
    u_char       *p;
    size_t        len;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    *reason = "empty body";

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_HTTP_BAD_REQUEST;
    }

    *reason = "body too large";

    if (r->request_body->temp_file) {
        return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
    }

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {

        b = cl->buf;

        if (ngx_buf_special(b)) {
            continue;
        }

        if (b->in_file || !ngx_buf_in_memory(b)) {
            *reason = "body in a file";
            return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
        }

        len += b->last - b->pos;
    }

    if (len > max) {
        return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
    }

    if (len == 0) {
        *reason = "empty body";
        return NGX_HTTP_BAD_REQUEST;
    }

    *reason = "out of memory";

    body->data = ngx_pnalloc(r->pool, len);
    if (body->data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (wipe && ngx_esp_http_wipe_later(r->pool, body->data, len) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = body->data;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {

        b = cl->buf;

        if (ngx_buf_special(b)) {
            continue;
        }

        p = ngx_cpymem(p, b->pos, b->last - b->pos);

        if (wipe && b->temporary) {
            ngx_explicit_memzero(b->pos, b->last - b->pos);
        }
    }

    body->len = len;

    return NGX_OK;
}


ngx_uint_t
ngx_esp_http_is_form(ngx_http_request_t *r)
{
    size_t      len;
    ngx_str_t  *type;

    if (r->headers_in.content_type == NULL) {
        return 0;
    }

    type = &r->headers_in.content_type->value;
    len = sizeof(NGX_ESP_FORM_TYPE) - 1;

    return type->len >= len
           && ngx_strncasecmp(type->data, (u_char *) NGX_ESP_FORM_TYPE, len)
              == 0
           && (type->len == len || type->data[len] == ';'
               || type->data[len] == ' ' || type->data[len] == '\t');
}


ngx_uint_t
ngx_esp_http_form_pair(u_char **pos, u_char *last, ngx_str_t *name,
    ngx_str_t *value)
{
    u_char  *p, *amp, *eq;

    p = *pos;

    if (p >= last) {
        return 0;
    }

    amp = ngx_strlchr(p, last, '&');
    if (amp == NULL) {
        amp = last;
    }

    eq = ngx_strlchr(p, amp, '=');

    name->data = p;
    name->len = (eq ? eq : amp) - p;

    if (eq) {
        value->data = eq + 1;
        value->len = amp - value->data;

    } else {
        value->data = NULL;
        value->len = 0;
    }

    *pos = (amp < last) ? amp + 1 : last;

    return 1;
}


ngx_int_t
ngx_esp_http_form_decode(ngx_pool_t *pool, ngx_str_t *in, ngx_str_t *out,
    ngx_uint_t wipe, const char **reason)
{
    u_char     *p, *last, *d, c;
    ngx_int_t   h;

    out->data = ngx_pnalloc(pool, in->len + 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    if (wipe && ngx_esp_http_wipe_later(pool, out->data, in->len + 1)
                != NGX_OK)
    {
        return NGX_ERROR;
    }

    d = out->data;
    p = in->data;
    last = p + in->len;

    while (p < last) {
        c = *p++;

        if (c == '+') {
            c = ' ';

        } else if (c == '%') {
            h = (last - p < 2) ? NGX_ERROR : ngx_hextoi(p, 2);

            if (h == NGX_ERROR) {
                *reason = "a field with broken %-encoding";
                return NGX_DECLINED;
            }

            c = (u_char) h;
            p += 2;
        }

        if (c < 0x20 || c == 0x7f) {
            *reason = "a field with a control character";
            return NGX_DECLINED;
        }

        *d++ = c;
    }

    out->len = d - out->data;

    if (!ngx_esp_utf8_valid(out->data, out->len)) {
        *reason = "a field that is not UTF-8";
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * A cross-site form post carries the browser's cookies: besides the
 * double-submitted token (which a sibling host can plant, by cookie
 * tossing), the browser's own word on where a request comes from decides.
 */

ngx_table_elt_t *
ngx_esp_http_cross_site(ngx_http_request_t *r, ngx_uint_t flags)
{
    u_char           *p, *last, *host;
    ngx_str_t         scheme;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    ngx_str_set(&scheme, "http://");

#if (NGX_HTTP_SSL)
    if (r->connection->ssl) {
        ngx_str_set(&scheme, "https://");
    }
#endif

    for (part = &r->headers_in.headers.part; part; part = part->next) {

        h = part->elts;

        for (i = 0; i < part->nelts; i++) {

            if (ngx_esp_http_is(&h[i].key, "Sec-Fetch-Site",
                                sizeof("Sec-Fetch-Site") - 1))
            {
                if (!ngx_esp_http_is(&h[i].value, "same-origin",
                                     sizeof("same-origin") - 1)
                    && !ngx_esp_http_is(&h[i].value, "none",
                                        sizeof("none") - 1))
                {
                    return &h[i];
                }

                continue;
            }

            if (!ngx_esp_http_is(&h[i].key, "Origin", sizeof("Origin") - 1))
            {
                continue;
            }

            if (h[i].value.len == sizeof("null") - 1
                && ngx_strncmp(h[i].value.data, "null", sizeof("null") - 1)
                   == 0)
            {
                if (flags & NGX_ESP_ORIGIN_NULL_OK) {
                    continue;
                }

                return &h[i];
            }

            /* scheme://host[:port], the host being this request's */

            p = h[i].value.data;
            last = p + h[i].value.len;

            if ((size_t) (last - p) <= scheme.len
                || ngx_strncasecmp(p, scheme.data, scheme.len) != 0)
            {
                return &h[i];
            }

            host = p + scheme.len;

            for (p = host; p < last && *p != ':'; p++) { /* void */ }

            if ((size_t) (p - host) != r->headers_in.server.len
                || ngx_strncasecmp(host, r->headers_in.server.data,
                                   p - host) != 0)
            {
                return &h[i];
            }
        }
    }

    return NULL;
}


static ngx_uint_t
ngx_esp_http_is(ngx_str_t *s, char *text, size_t len)
{
    return s->len == len && ngx_strncasecmp(s->data, (u_char *) text, len)
                            == 0;
}


ngx_int_t
ngx_esp_http_send(ngx_http_request_t *r, ngx_uint_t status, ngx_str_t *type,
    size_t type_len, ngx_str_t *body)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_uint_t    i;
    ngx_chain_t   out;

    /* no "100 Continue" invites a body about to be refused */
    r->expect_tested = 1;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    r->headers_out.status = status;
    r->headers_out.content_length_n = body->len;
    r->headers_out.content_type = *type;
    r->headers_out.content_type_len = type_len;
    r->headers_out.content_type_lowcase = NULL;

    for (i = 0; ngx_esp_http_page_headers[i].name; i++) {
        if (ngx_esp_http_set_header(r, &r->headers_out.headers,
                                    ngx_esp_http_page_headers[i].name,
                                    &ngx_esp_http_page_headers[i].value, NULL)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = body->data;
    b->last = body->data + body->len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


ngx_int_t
ngx_esp_http_wipe_later(ngx_pool_t *pool, u_char *p, size_t len)
{
    ngx_str_t           *s;
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(pool, sizeof(ngx_str_t));
    if (cln == NULL) {
        return NGX_ERROR;
    }

    s = cln->data;
    s->data = p;
    s->len = len;
    cln->handler = ngx_esp_http_wipe;

    return NGX_OK;
}


static void
ngx_esp_http_wipe(void *data)
{
    ngx_str_t  *s = data;

    ngx_explicit_memzero(s->data, s->len);
}


size_t
ngx_esp_utf8_len(u_char *p, u_char *last)
{
    size_t      n, i;
    uint32_t    u, min;

    if (p >= last) {
        return 0;
    }

    if (*p < 0x80) {
        return 1;
    }

    if (*p >= 0xc2 && *p <= 0xdf) {
        n = 1;
        u = *p & 0x1f;
        min = 0x80;

    } else if (*p >= 0xe0 && *p <= 0xef) {
        n = 2;
        u = *p & 0x0f;
        min = 0x800;

    } else if (*p >= 0xf0 && *p <= 0xf4) {
        n = 3;
        u = *p & 0x07;
        min = 0x10000;

    } else {
        return 0;
    }

    if ((size_t) (last - p) <= n) {
        return 0;
    }

    for (i = 1; i <= n; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }

        u = (u << 6) | (p[i] & 0x3f);
    }

    if (u < min || u > 0x10ffff || (u >= 0xd800 && u <= 0xdfff)) {
        return 0;
    }

    return n + 1;
}


ngx_uint_t
ngx_esp_utf8_valid(u_char *p, size_t len)
{
    size_t   n;
    u_char  *last;

    last = p + len;

    while (p < last) {

        n = ngx_esp_utf8_len(p, last);

        if (n == 0) {
            return 0;
        }

        p += n;
    }

    return 1;
}
