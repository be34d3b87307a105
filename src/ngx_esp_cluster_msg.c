
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_esp_cluster_msg.h"


static u_char *ngx_esp_cluster_parse_key(u_char *p, u_char *last,
    u_char *key);
static u_char *ngx_esp_cluster_parse_time(u_char *p, u_char *last,
    time_t *t);
static u_char *ngx_esp_cluster_space(u_char *p, u_char *last);


ngx_int_t
ngx_esp_cluster_parse(u_char *p, size_t len, ngx_esp_cluster_event_t *ev)
{
    u_char  *last;

    last = p + len;

    ngx_memzero(ev, sizeof(ngx_esp_cluster_event_t));

    if (len < 2 || p[1] != ' ') {
        return NGX_ERROR;
    }

    ev->type = p[0];
    p += 2;

    switch (ev->type) {

    case 's':
    case 'b':
        p = ngx_esp_cluster_parse_key(p, last, ev->key);
        p = ngx_esp_cluster_space(p, last);
        p = ngx_esp_cluster_parse_time(p, last, &ev->t1);
        break;

    case 'u':
        p = ngx_esp_cluster_parse_key(p, last, ev->key);
        p = ngx_esp_cluster_space(p, last);
        p = ngx_esp_cluster_parse_key(p, last, ev->key2);
        p = ngx_esp_cluster_space(p, last);
        p = ngx_esp_cluster_parse_time(p, last, &ev->t1);
        p = ngx_esp_cluster_space(p, last);
        p = ngx_esp_cluster_parse_time(p, last, &ev->t2);
        break;

    case 'r':
        p = ngx_esp_cluster_parse_key(p, last, ev->key);
        break;

    default:
        return NGX_ERROR;
    }

    return (p == last) ? NGX_OK : NGX_ERROR;
}


u_char *
ngx_esp_cluster_format(u_char *p, ngx_esp_cluster_event_t *ev,
    ngx_uint_t member)
{
    if (!(member && ev->type == 'b')) {
        *p++ = ev->type;
        *p++ = ' ';
    }

    p = ngx_hex_dump(p, ev->key, NGX_ESP_SHM_KEY_LEN);

    switch (ev->type) {

    case 'u':
        *p++ = ' ';
        p = ngx_hex_dump(p, ev->key2, NGX_ESP_SHM_KEY_LEN);
        p = ngx_sprintf(p, " %T", ev->t1);

        if (!member) {
            p = ngx_sprintf(p, " %T", ev->t2);
        }

        break;

    case 's':
    case 'b':
        if (!member) {
            p = ngx_sprintf(p, " %T", ev->t1);
        }

        break;

    default: /* 'r' */
        break;
    }

    return p;
}


ngx_int_t
ngx_esp_cluster_reserve_reply(redisReply *reply, time_t *until)
{
    redisReply  *code, *t;

    *until = 0;

    if (reply == NULL
        || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_INTEGER
        || reply->element[1]->type != REDIS_REPLY_INTEGER)
    {
        return NGX_ERROR;
    }

    code = reply->element[0];
    t = reply->element[1];

    if (t->integer < 0 || t->integer > NGX_MAX_INT32_VALUE) {
        return NGX_ERROR;
    }

    switch (code->integer) {

    case 0:
        return NGX_OK;

    case 1:
        return NGX_AGAIN;

    case 2:
    case 3:
        *until = (time_t) t->integer;
        return NGX_BUSY;

    default:
        return NGX_ERROR;
    }
}


ngx_int_t
ngx_esp_cluster_resync_reply(redisReply *reply,
    ngx_esp_cluster_apply_pt apply, void *data)
{
    u_char                   *p, line[NGX_ESP_CLUSTER_MSG_LEN];
    size_t                    i, j;
    ngx_int_t                 n;
    redisReply               *set, *m, *s;
    ngx_esp_cluster_event_t   ev;

    if (reply == NULL
        || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 2)
    {
        return NGX_ERROR;
    }

    n = 0;

    for (i = 0; i < 2; i++) {
        set = reply->element[i];

        if (set->type != REDIS_REPLY_ARRAY) {
            return NGX_ERROR;
        }

        for (j = 0; j + 1 < set->elements; j += 2) {
            m = set->element[j];
            s = set->element[j + 1];

            /* "b " + a block's member, or a revocation's; then its score */

            if (m->type != REDIS_REPLY_STRING
                || s->type != REDIS_REPLY_STRING
                || m->len + s->len + 3 > sizeof(line))
            {
                continue;
            }

            p = line;

            if (i == 0) {
                p = ngx_cpymem(p, "b ", 2);
            }

            p = ngx_cpymem(p, m->str, m->len);
            *p++ = ' ';
            p = ngx_cpymem(p, s->str, s->len);

            if (ngx_esp_cluster_parse(line, p - line, &ev) != NGX_OK
                || (i == 0) != (ev.type == 'b')
                || ev.type == 'r')
            {
                continue;
            }

            apply(&ev, data);
            n++;
        }
    }

    return n;
}


ngx_int_t
ngx_esp_cluster_message(redisReply *reply, ngx_esp_cluster_event_t *ev)
{
    redisReply  *msg;

    if (reply == NULL
        || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 3)
    {
        return NGX_ERROR;
    }

    msg = reply->element[2];

    if (msg->type != REDIS_REPLY_STRING) {
        return NGX_ERROR;
    }

    return ngx_esp_cluster_parse((u_char *) msg->str, msg->len, ev);
}


/* one hex key; NULL stays NULL, so a parse is a chain of steps */

static u_char *
ngx_esp_cluster_parse_key(u_char *p, u_char *last, u_char *key)
{
    ngx_int_t   n;
    ngx_uint_t  i;

    if (p == NULL || last - p < NGX_ESP_CLUSTER_HEX_LEN) {
        return NULL;
    }

    for (i = 0; i < NGX_ESP_SHM_KEY_LEN; i++) {
        n = ngx_hextoi(p + 2 * i, 2);

        if (n == NGX_ERROR) {
            return NULL;
        }

        key[i] = (u_char) n;
    }

    return p + NGX_ESP_CLUSTER_HEX_LEN;
}


static u_char *
ngx_esp_cluster_parse_time(u_char *p, u_char *last, time_t *t)
{
    u_char  *start;

    if (p == NULL) {
        return NULL;
    }

    start = p;

    while (p < last && *p >= '0' && *p <= '9') {
        p++;
    }

    if (p == start || p - start > NGX_ESP_CLUSTER_TIME_LEN) {
        return NULL;
    }

    *t = ngx_atotm(start, p - start);

    return (*t == NGX_ERROR) ? NULL : p;
}


static u_char *
ngx_esp_cluster_space(u_char *p, u_char *last)
{
    if (p == NULL || p == last || *p != ' ') {
        return NULL;
    }

    return p + 1;
}
