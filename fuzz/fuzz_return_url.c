
/*
 * Copyright (C) ngx_exchange_esp authors
 */


/*
 * The return URL of a login: ngx_esp_valid_return_url() on the fuzzer's
 * bytes, and ngx_esp_arg_url() with them as the query string of
 * "GET /_esp/login?..." (nginx's ngx_http_arg() is reproduced below).
 *
 * Property: a URL the gate will redirect to is a path on this site, as
 * a browser reads it: exactly one "/" first, then neither "/" nor "\";
 * no control character, space, backslash or non-ASCII byte anywhere
 * (browsers drop tabs and newlines, turning "/\t/evil" into "//evil");
 * not the module's own "/_esp/" endpoints; at most NGX_ESP_MAX_URL
 * bytes.  Anything else falls back to esp's default URL.
 */


#include "fuzz_common.h"

#include "../src/ngx_esp_form.c"
#include "../src/ngx_esp_match.c"
#include "../src/ngx_esp_http.c"
#include "../src/ngx_esp_log.c"

#include "fuzz_http.h"


ngx_module_t  ngx_exchange_esp_module;


/* nginx 1.22's ngx_http_arg() (src/http/ngx_http_parse.c) */

ngx_int_t
ngx_http_arg(ngx_http_request_t *r, u_char *name, size_t len,
    ngx_str_t *value)
{
    u_char  *p, *last;

    if (r->args.len == 0) {
        return NGX_DECLINED;
    }

    p = r->args.data;
    last = p + r->args.len;

    for ( /* void */ ; p < last; p++) {

        /* we need '=' after name, so drop one char from last */

        p = ngx_strlcasestrn(p, last - 1, name, len - 1);

        if (p == NULL) {
            return NGX_DECLINED;
        }

        if ((p == r->args.data || *(p - 1) == '&') && *(p + len) == '=') {

            value->data = p + len + 1;

            p = ngx_strlchr(p, last, '&');

            if (p == NULL) {
                p = r->args.data + r->args.len;
            }

            value->len = p - value->data;

            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


static ngx_uint_t
fuzz_safe_url(ngx_str_t *url)
{
    size_t  i;

    if (url->len == 0 || url->len > NGX_ESP_MAX_URL || url->data[0] != '/') {
        return 0;
    }

    if (url->len > 1 && (url->data[1] == '/' || url->data[1] == '\\')) {
        return 0;
    }

    for (i = 0; i < url->len; i++) {
        if (url->data[i] <= 0x20 || url->data[i] >= 0x7f
            || url->data[i] == '\\')
        {
            return 0;
        }
    }

    if (url->len >= 6 && ngx_strncasecmp(url->data, (u_char *) "/_esp/", 6)
                         == 0)
    {
        return 0;
    }

    return 1;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    void                 *loc_conf[1];
    ngx_str_t             raw, url;
    ngx_pool_t           *pool;
    ngx_http_request_t   *r;
    ngx_esp_loc_conf_t    elcf;

    pool = fuzz_pool();

    raw.data = fuzz_dup(data, size);
    raw.len = size;

    /* nothing looser than the rule */

    if (ngx_esp_valid_return_url(&raw)) {
        FUZZ_ASSERT(fuzz_safe_url(&raw));
    }

    /* as the login endpoint reads "?url=" */

    r = fuzz_request(pool);
    r->args = raw;

    ngx_memzero(&elcf, sizeof(ngx_esp_loc_conf_t));
    ngx_str_set(&elcf.default_url, "/owa/");
    loc_conf[0] = &elcf;
    r->loc_conf = loc_conf;

    ngx_str_null(&url);

    FUZZ_ASSERT(ngx_esp_arg_url(r, &url) == NGX_OK);
    FUZZ_ASSERT(fuzz_safe_url(&url));

    if (url.data != elcf.default_url.data) {
        /* a decoded copy, never the raw bytes themselves */
        FUZZ_ASSERT(url.data < raw.data || url.data >= raw.data + raw.len);
    }

    ngx_destroy_pool(pool);
    free(raw.data);

    return 0;
}
