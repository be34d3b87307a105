
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#ifndef _NGX_ESP_HTTP_H_INCLUDED_
#define _NGX_ESP_HTTP_H_INCLUDED_


#include "ngx_esp.h"


/*
 * The HTTP helpers every part of the module uses: cookies, headers,
 * request bodies, forms, the same-origin check, pages, UTF-8.  They know
 * nothing of logins; only the request body filter finds its state in the
 * module's request context.
 */


/* ngx_esp_http_cross_site() */
#define NGX_ESP_ORIGIN_NULL_OK    0x01


/* every cookie of every Cookie header, in order; start zeroed */
typedef struct {
    ngx_esp_cookie_walk_t      w;
    u_char                    *pos;          /* in w.h's value */
    ngx_uint_t                 started;
} ngx_esp_cookies_t;


/* a body read by ngx_esp_http_read_body(), in ngx_esp_ctx_t */
typedef struct {
    ngx_buf_t                 *buf;          /* what arrived, at most max */
    const char                *what;         /* "login": for the log */
    ngx_http_client_body_handler_pt  handler;
    unsigned                   reading:1;
} ngx_esp_body_t;


/* installs the request body filter (postconfiguration) */
ngx_int_t ngx_esp_http_init(ngx_conf_t *cf);


/*
 * Cookies.  One reading of a Cookie header serves both to find a cookie
 * and to strip cookies: pairs are separated by ";", spaces and tabs;
 * names and values are trimmed, a quoted value loses its quotes.
 * cookie_next: NGX_OK and the next "name=value" pair, or NGX_DECLINED.
 * strip: the cookies of these names (exactly) leave every Cookie header;
 * a header left empty leaves the request.  NGX_OK or NGX_ERROR.
 */
ngx_int_t ngx_esp_http_cookie_next(ngx_http_request_t *r,
    ngx_esp_cookies_t *c, ngx_str_t *name, ngx_str_t *value);
ngx_int_t ngx_esp_http_strip_cookies(ngx_http_request_t *r,
    ngx_str_t *names, ngx_uint_t n);


/*
 * Sets (value != NULL) or removes (value == NULL: every header of that
 * name) a header of r->headers_in or r->headers_out; "slot" is nginx's
 * pointer to it, if any.  No other header moves: the pointers nginx
 * keeps into the list (r->headers_in.host, the cookies...) stay valid,
 * whatever was set or removed before.  Cookie headers change only
 * through ngx_esp_http_strip_cookies().
 */
ngx_int_t ngx_esp_http_set_header(ngx_http_request_t *r,
    ngx_list_t *headers, char *name, ngx_str_t *value,
    ngx_table_elt_t **slot);


/*
 * Request bodies.  read_body: reads a body of at most "max" bytes,
 * whatever its framing, into memory and then calls "handler"; a body
 * that grows past "max" is refused with 413 as soon as that much has
 * arrived ("esp: <what> refused: body too large"), before anything is
 * written to a file.  Returns NGX_DONE (the handler is or was called),
 * or a status: NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, not logged, when the
 * Content-Length alone says too much.  The caller's request context
 * ("ctx") must exist.
 * body: the body read, in one piece ("reason" on a status: 400 empty,
 * 413 too large or in a file); with "wipe", the buffers it came from
 * are wiped now and the piece when the pool goes.
 */
ngx_int_t ngx_esp_http_read_body(ngx_http_request_t *r,
    ngx_esp_body_t *body, size_t max, const char *what,
    ngx_http_client_body_handler_pt handler);
ngx_int_t ngx_esp_http_body(ngx_http_request_t *r, size_t max,
    ngx_uint_t wipe, ngx_str_t *body, const char **reason);

/* "Content-Type: application/x-www-form-urlencoded", maybe with ";..." */
ngx_uint_t ngx_esp_http_is_form(ngx_http_request_t *r);


/*
 * Forms.  form_pair: the next "name=value" of a body, split at "&" and
 * the first "=", not decoded (value->data is NULL without "="); 0 at
 * the end.  form_decode: "+" and "%XX" decoded, refusing broken escapes,
 * control characters and anything but strict UTF-8 (NGX_DECLINED and
 * "reason"); with "wipe", the result is wiped when the pool goes.
 */
ngx_uint_t ngx_esp_http_form_pair(u_char **pos, u_char *last,
    ngx_str_t *name, ngx_str_t *value);
ngx_int_t ngx_esp_http_form_decode(ngx_pool_t *pool, ngx_str_t *in,
    ngx_str_t *out, ngx_uint_t wipe, const char **reason);


/*
 * The browser's word that a request comes from another site: the header
 * that says so, or NULL.  "Sec-Fetch-Site" must be "same-origin" or
 * "none"; "Origin" must name this request's scheme and host (any port),
 * "Origin: null" only passes with NGX_ESP_ORIGIN_NULL_OK.  Clients that
 * send neither header pass.
 */
ngx_table_elt_t *ngx_esp_http_cross_site(ngx_http_request_t *r,
    ngx_uint_t flags);


/*
 * A complete answer of the gate's own (a page, JSON), never cached or
 * framed, after any body not read yet is discarded.  Returns what a
 * content handler returns.
 */
ngx_int_t ngx_esp_http_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, size_t type_len, ngx_str_t *body);


/* "len" bytes at "p" are wiped when "pool" goes */
ngx_int_t ngx_esp_http_wipe_later(ngx_pool_t *pool, u_char *p, size_t len);


/*
 * Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing
 * above U+10FFFF.  utf8_len: the length of the character at "p", 0 if
 * the bytes there are not one.
 */
size_t ngx_esp_utf8_len(u_char *p, u_char *last);
ngx_uint_t ngx_esp_utf8_valid(u_char *p, size_t len);


#endif /* _NGX_ESP_HTTP_H_INCLUDED_ */
