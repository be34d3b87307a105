
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_esp_refusal.h"


/* the directory's refusals a worker remembers, per domain */
#define NGX_ESP_REFUSAL_SAMPLES  32

/* before a worker saw the directory refuse anything: a typical bind */
#define NGX_ESP_REFUSAL_MIN      20
#define NGX_ESP_REFUSAL_MAX      80


/* per worker and domain, in ngx_esp_domain_t.refusals */
typedef struct {
    ngx_msec_t                 ms[NGX_ESP_REFUSAL_SAMPLES];
    ngx_uint_t                 n;            /* taken in all */
} ngx_esp_refusal_samples_t;


typedef struct {
    ngx_event_t                ev;
    ngx_http_request_t        *r;
    ngx_esp_refusal_wake_pt    wake;
} ngx_esp_refusal_wait_t;


static ngx_msec_t ngx_esp_refusal_pick(ngx_esp_domain_t *d);
static void ngx_esp_refusal_wake(ngx_event_t *ev);
static void ngx_esp_refusal_cleanup(void *data);


ngx_conf_enum_t  ngx_esp_login_messages_modes[] = {
    { ngx_string("generic"), NGX_ESP_MESSAGES_GENERIC },
    { ngx_string("detailed"), NGX_ESP_MESSAGES_DETAILED },
    { ngx_null_string, 0 }
};


ngx_esp_auth_result_e
ngx_esp_refusal_shown(ngx_esp_loc_conf_t *elcf, ngx_esp_auth_result_e rc)
{
    if (elcf->login_messages == NGX_ESP_MESSAGES_DETAILED) {
        return rc;
    }

    switch (rc) {

    case NGX_ESP_AUTH_OK:
    case NGX_ESP_AUTH_PASSWORD_EXPIRED:
    case NGX_ESP_AUTH_MUST_CHANGE:
    case NGX_ESP_AUTH_UNAVAILABLE:
    case NGX_ESP_AUTH_ERROR:
        return rc;

    default:
        /*
         * the service account's refusal too: it only ever follows a
         * right password
         */
        return NGX_ESP_AUTH_BAD_CREDENTIALS;
    }
}


void
ngx_esp_refusal_sample(ngx_esp_domain_t *d, ngx_msec_t ms)
{
    ngx_esp_refusal_samples_t  *s;

    s = d->refusals;

    if (s == NULL) {
        /* the domain lives as long as the cycle: so does this */
        s = ngx_pcalloc(ngx_cycle->pool, sizeof(ngx_esp_refusal_samples_t));
        if (s == NULL) {
            return;
        }

        d->refusals = s;
    }

    s->ms[s->n++ % NGX_ESP_REFUSAL_SAMPLES] = ms;
}


ngx_int_t
ngx_esp_refusal_delay(ngx_http_request_t *r, ngx_esp_domain_t *d,
    ngx_esp_refusal_wake_pt wake)
{
    ngx_msec_t                  ms;
    ngx_pool_cleanup_t         *cln;
    ngx_esp_refusal_wait_t     *w;
    ngx_esp_refusal_samples_t  *s;

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_esp_refusal_wait_t));
    if (cln == NULL) {
        return NGX_ERROR;
    }

    w = cln->data;
    ngx_memzero(w, sizeof(ngx_esp_refusal_wait_t));

    w->r = r;
    w->wake = wake;
    w->ev.handler = ngx_esp_refusal_wake;
    w->ev.data = w;
    w->ev.log = r->connection->log;

    cln->handler = ngx_esp_refusal_cleanup;

    ms = ngx_esp_refusal_pick(d);
    s = d->refusals;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "esp: refused without the directory: answering in "
                   "%Mms, as a bind would (%ui refusals seen)",
                   ms, s ? s->n : 0);

    ngx_add_timer(&w->ev, ms);

    return NGX_OK;
}


/* one of the last refusals seen, give or take a tenth */

static ngx_msec_t
ngx_esp_refusal_pick(ngx_esp_domain_t *d)
{
    ngx_uint_t                  n;
    ngx_msec_t                  ms;
    ngx_esp_refusal_samples_t  *s;

    s = d->refusals;

    if (s == NULL || s->n == 0) {
        return NGX_ESP_REFUSAL_MIN
               + (ngx_msec_t) ngx_random()
                 % (NGX_ESP_REFUSAL_MAX - NGX_ESP_REFUSAL_MIN + 1);
    }

    n = ngx_min(s->n, NGX_ESP_REFUSAL_SAMPLES);
    ms = s->ms[(ngx_uint_t) ngx_random() % n];

    ms = ms - ms / 10 + (ngx_msec_t) ngx_random() % (ms / 5 + 1);

    return ngx_max(ngx_min(ms, d->timeout), 1);
}


static void
ngx_esp_refusal_wake(ngx_event_t *ev)
{
    ngx_esp_refusal_wait_t  *w = ev->data;

    ngx_connection_t  *c;

    c = w->r->connection;

    ngx_http_set_log_request(c->log, w->r);

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "esp: the refusal's wait is over");

    w->wake(w->r);
}


static void
ngx_esp_refusal_cleanup(void *data)
{
    ngx_esp_refusal_wait_t  *w = data;

    if (w->ev.timer_set) {
        ngx_del_timer(&w->ev);
    }
}
