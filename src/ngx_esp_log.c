
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_esp_log.h"


static ngx_str_t  ngx_esp_log_nomem = ngx_string("-");


ngx_str_t *
ngx_esp_log_escape(ngx_pool_t *pool, ngx_str_t *value)
{
    u_char     *p, c;
    size_t      i, n, len;
    ngx_str_t  *s;

    static u_char  hex[] = "0123456789abcdef";

    n = ngx_min(value->len, NGX_ESP_LOG_VALUE_LEN);

    len = (n < value->len) ? sizeof("...") - 1 : 0;

    for (i = 0; i < n; i++) {
        c = value->data[i];

        if (c == '"' || c == '\\') {
            len += 2;

        } else if (c < 0x20 || c >= 0x7f) {
            len += sizeof("\\xNN") - 1;

        } else {
            len++;
        }
    }

    s = ngx_palloc(pool, sizeof(ngx_str_t) + len);
    if (s == NULL) {
        return &ngx_esp_log_nomem;
    }

    s->data = (u_char *) (s + 1);
    p = s->data;

    for (i = 0; i < n; i++) {
        c = value->data[i];

        if (c == '"' || c == '\\') {
            *p++ = '\\';
            *p++ = c;

        } else if (c < 0x20 || c >= 0x7f) {
            *p++ = '\\';
            *p++ = 'x';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 0xf];

        } else {
            *p++ = c;
        }
    }

    if (n < value->len) {
        p = ngx_cpymem(p, "...", sizeof("...") - 1);
    }

    s->len = p - s->data;

    return s;
}
