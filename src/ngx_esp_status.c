
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <nginx.h>

#include "ngx_esp.h"
#include "ngx_esp_auth.h"
#include "ngx_esp_cluster.h"
#include "ngx_esp_http.h"
#include "ngx_esp_ldap.h"
#include "ngx_esp_log.h"
#include "ngx_esp_request.h"
#include "ngx_esp_shm.h"
#include "ngx_esp_status.h"
#include "ngx_esp_epa.h"
#include "ngx_esp_totp.h"


#define NGX_ESP_STATUS_MAX_BODY   4096
#define NGX_ESP_STATUS_MAX_DOMAIN 255

#define NGX_ESP_STATUS_JSON_TYPE  "application/json"
#define NGX_ESP_STATUS_PROM_TYPE  "text/plain; version=0.0.4; charset=utf-8"

/* the per-DC values of the Prometheus output */
#define NGX_ESP_STATUS_DC_UP          0
#define NGX_ESP_STATUS_DC_DOWN_UNTIL  1
#define NGX_ESP_STATUS_DC_BINDS_OK    2
#define NGX_ESP_STATUS_DC_BINDS_FAIL  3
#define NGX_ESP_STATUS_DC_ERRORS      4
#define NGX_ESP_STATUS_DC_TIMEOUTS    5
#define NGX_ESP_STATUS_DC_LATENCY     6
#define NGX_ESP_STATUS_DC_CONNS       7
#define NGX_ESP_STATUS_DC_IDLE        8


typedef struct {
    ngx_str_t                  action;
    ngx_str_t                  domain;
    ngx_str_t                  user;
    ngx_uint_t                 unblock;      /* else revoke */
    ngx_uint_t                 reset;        /* mfa_reset */
} ngx_esp_status_form_t;


typedef struct {
    char                      *name;
    char                      *help;
    char                      *type;
    char                      *result;       /* a "result" label, or NULL */
    ngx_uint_t                 value;        /* NGX_ESP_STATUS_DC_* */
} ngx_esp_status_dc_metric_t;


/* a number of ngx_esp_shm_stats_t as a Prometheus metric */
typedef struct {
    char                      *name;
    char                      *type;
    char                      *help;
    size_t                     offset;       /* in ngx_esp_shm_stats_t */
    ngx_uint_t                 bytes;        /* a size_t, else ngx_uint_t */
} ngx_esp_status_zone_metric_t;


static ngx_int_t ngx_esp_status_handler(ngx_http_request_t *r);
static ngx_int_t ngx_esp_status_get(ngx_http_request_t *r);
static ngx_uint_t ngx_esp_status_prefers_text(ngx_http_request_t *r);
static void ngx_esp_status_accept(ngx_str_t *value, ngx_int_t *spec,
    ngx_uint_t *q);
static ngx_uint_t ngx_esp_status_qvalue(u_char **pp, u_char *last);
static ngx_int_t ngx_esp_status_json(ngx_http_request_t *r,
    ngx_str_t *out);
static ngx_int_t ngx_esp_status_prometheus(ngx_http_request_t *r,
    ngx_str_t *out);
static u_char *ngx_esp_status_prom_counters(u_char *p, u_char *last);
static u_char *ngx_esp_status_prom_dcs(u_char *p, u_char *last,
    ngx_esp_main_conf_t *emcf);
static u_char *ngx_esp_status_dc_sample(u_char *p, u_char *last,
    ngx_esp_status_dc_metric_t *m, ngx_esp_domain_t *d,
    ngx_esp_ldap_dc_stats_t *st);
static u_char *ngx_esp_status_json_epa(u_char *p, u_char *last,
    ngx_esp_epa_peer_t *epa, ngx_uint_t n);
static u_char *ngx_esp_status_prom_epa(u_char *p, u_char *last,
    ngx_esp_epa_peer_t *epa, ngx_uint_t n);
static const char *ngx_esp_status_epa_all(ngx_esp_epa_peer_t *epa,
    ngx_uint_t n);
static u_char *ngx_esp_status_prom_zone(u_char *p, u_char *last,
    ngx_shm_zone_t *zone);
static size_t ngx_esp_status_domains_len(ngx_esp_main_conf_t *emcf,
    size_t per_dc, size_t factor);

static ngx_int_t ngx_esp_status_post(ngx_http_request_t *r);
static void ngx_esp_status_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_esp_status_action(ngx_http_request_t *r);
static void ngx_esp_status_reset_done(ngx_http_request_t *r, ngx_int_t rc);
static ngx_int_t ngx_esp_status_reset_answer(ngx_http_request_t *r,
    ngx_int_t rc);
static ngx_esp_domain_t *ngx_esp_status_domain(ngx_http_request_t *r,
    ngx_str_t *name);
static ngx_int_t ngx_esp_status_answer(ngx_http_request_t *r,
    ngx_esp_status_form_t *f, ngx_esp_domain_t *d, ngx_str_t *key,
    ngx_int_t rc, time_t since, time_t until);
static const char *ngx_esp_status_parse_form(ngx_http_request_t *r,
    ngx_str_t *body, ngx_esp_status_form_t *f);
static ngx_int_t ngx_esp_status_refuse(ngx_http_request_t *r,
    ngx_uint_t status, const char *reason);

static ngx_int_t ngx_esp_status_send(ngx_http_request_t *r,
    ngx_uint_t status, ngx_str_t *type, size_t type_len, ngx_str_t *body);
static u_char *ngx_esp_status_json_str(u_char *p, u_char *last,
    ngx_str_t *s);
static u_char *ngx_esp_status_label(u_char *p, u_char *last, ngx_str_t *s);


static ngx_esp_status_dc_metric_t  ngx_esp_status_dc_metrics[] = {

    { "esp_dc_up",
      "1 if this worker uses the domain controller, 0 while it skips it "
      "after a failure", "gauge", NULL, NGX_ESP_STATUS_DC_UP },

    { "esp_dc_down_until_seconds",
      "Until when this worker skips the domain controller (Unix time, "
      "0 when up)", "gauge", NULL, NGX_ESP_STATUS_DC_DOWN_UNTIL },

    { "esp_dc_binds_total",
      "User binds answered by the domain controller, by result (this "
      "worker)", "counter", "ok", NGX_ESP_STATUS_DC_BINDS_OK },

    { "esp_dc_binds_total", NULL, NULL, "failed",
      NGX_ESP_STATUS_DC_BINDS_FAIL },

    { "esp_dc_errors_total",
      "Connect, TLS, protocol errors and timeouts with the domain "
      "controller (this worker)", "counter", NULL,
      NGX_ESP_STATUS_DC_ERRORS },

    { "esp_dc_timeouts_total",
      "Operations that timed out, of the errors (this worker)", "counter",
      NULL, NGX_ESP_STATUS_DC_TIMEOUTS },

    { "esp_dc_last_bind_latency_seconds",
      "Duration of the last user bind (this worker)", "gauge", NULL,
      NGX_ESP_STATUS_DC_LATENCY },

    { "esp_dc_connections",
      "Open connections to the domain controller (this worker)", "gauge",
      NULL, NGX_ESP_STATUS_DC_CONNS },

    { "esp_dc_idle_connections",
      "Idle pooled connections to the domain controller (this worker)",
      "gauge", NULL, NGX_ESP_STATUS_DC_IDLE },

    { NULL, NULL, NULL, NULL, 0 }
};


#define ngx_esp_status_stat(field)                                            \
    offsetof(ngx_esp_shm_stats_t, field)

static ngx_esp_status_zone_metric_t  ngx_esp_status_zone_metrics[] = {

    { "esp_shm_size_bytes", "gauge",
      "Size of the shared zone", ngx_esp_status_stat(size), 1 },

    { "esp_shm_used_bytes", "gauge",
      "Bytes of the shared zone in use", ngx_esp_status_stat(used), 1 },

    { "esp_shm_free_bytes", "gauge",
      "Bytes of the shared zone free for entries",
      ngx_esp_status_stat(free), 1 },

    { "esp_shm_entry_size_bytes", "gauge",
      "Bytes one entry takes in the shared zone",
      ngx_esp_status_stat(entry_size), 1 },

    { "esp_shm_capacity_entries", "gauge",
      "Entries that fit in the shared zone now",
      ngx_esp_status_stat(capacity), 0 },

    { "esp_shm_evictions_total", "counter",
      "Live entries dropped to make room", ngx_esp_status_stat(evictions),
      0 },

    { "esp_shm_alloc_failures_total", "counter",
      "Entries that found no room even after evicting",
      ngx_esp_status_stat(alloc_failures), 0 },

    { "esp_cache_entries", "gauge",
      "Cached Basic credentials", ngx_esp_status_stat(cached), 0 },

    { "esp_cache_hits_total", "counter",
      "Basic logins answered from the credential cache",
      ngx_esp_status_stat(hits), 0 },

    { "esp_cache_misses_total", "counter",
      "Basic logins not in the cache (absent, stale, or another password)",
      ngx_esp_status_stat(misses), 0 },

    { "esp_lockout_entries", "gauge",
      "Users with failed logins counted or blocked",
      ngx_esp_status_stat(lockouts), 0 },

    { "esp_blocked_users", "gauge",
      "Users blocked by the gate now", ngx_esp_status_stat(blocked), 0 },

    { "esp_revoked_sessions", "gauge",
      "Sessions ended by logoff and kept revoked",
      ngx_esp_status_stat(revoked_sessions), 0 },

    { "esp_revoked_users", "gauge",
      "Users whose sessions were revoked by an admin",
      ngx_esp_status_stat(revoked_users), 0 },

    { NULL, NULL, NULL, 0, 0 }
};

#undef ngx_esp_status_stat


static ngx_int_t
ngx_esp_status_handler(ngx_http_request_t *r)
{
    ngx_str_t  value;

    if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {

        /* a link or an image must never change anything */

        if (ngx_http_arg(r, (u_char *) "action", 6, &value) == NGX_OK) {
            return ngx_esp_status_refuse(r, NGX_HTTP_NOT_ALLOWED,
                                         "admin actions need POST");
        }

        return ngx_esp_status_get(r);
    }

    if (r->method == NGX_HTTP_POST) {
        return ngx_esp_status_post(r);
    }

    return ngx_esp_status_refuse(r, NGX_HTTP_NOT_ALLOWED,
                                 "method not allowed");
}


static ngx_int_t
ngx_esp_status_get(ngx_http_request_t *r)
{
    ngx_int_t   rc;
    ngx_str_t   format, body, type;
    ngx_uint_t  prometheus;

    if (ngx_http_arg(r, (u_char *) "format", 6, &format) == NGX_OK) {

        if (format.len == 4
            && ngx_strncmp(format.data, "json", 4) == 0)
        {
            prometheus = 0;

        } else if (format.len == 10
                   && ngx_strncmp(format.data, "prometheus", 10) == 0)
        {
            prometheus = 1;

        } else {
            return ngx_esp_status_refuse(r, NGX_HTTP_BAD_REQUEST,
                                         "unknown format: use \"json\" "
                                         "or \"prometheus\"");
        }

    } else {
        prometheus = ngx_esp_status_prefers_text(r);
    }

    if (prometheus) {
        rc = ngx_esp_status_prometheus(r, &body);
        ngx_str_set(&type, NGX_ESP_STATUS_PROM_TYPE);

        return (rc == NGX_OK)
               ? ngx_esp_status_send(r, NGX_HTTP_OK, &type,
                                     sizeof("text/plain") - 1, &body)
               : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_esp_status_json(r, &body);
    ngx_str_set(&type, NGX_ESP_STATUS_JSON_TYPE);

    return (rc == NGX_OK)
           ? ngx_esp_status_send(r, NGX_HTTP_OK, &type, type.len, &body)
           : NGX_HTTP_INTERNAL_SERVER_ERROR;
}


/*
 * Prometheus asks with "Accept: application/openmetrics-text;...,
 * text/plain;version=0.0.4;q=0.5,*" "/" "*;q=0.1"; browsers and curl
 * rank both alike and get JSON.
 */

static ngx_uint_t
ngx_esp_status_prefers_text(ngx_http_request_t *r)
{
    ngx_int_t         spec[2];
    ngx_uint_t        i, q[2];
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    /* [0] text/plain, [1] application/json; spec -1: no range matched */

    spec[0] = -1;
    spec[1] = -1;
    q[0] = 0;
    q[1] = 0;

    part = &r->headers_in.headers.part;
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

        if (h[i].key.len == sizeof("Accept") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Accept",
                               sizeof("Accept") - 1)
               == 0)
        {
            ngx_esp_status_accept(&h[i].value, spec, q);
        }
    }

    if (spec[0] < 0) {
        return 0;
    }

    return q[0] > q[1];
}


/* RFC 9110 12.5.1: the most specific matching range gives the q */

static void
ngx_esp_status_accept(ngx_str_t *value, ngx_int_t *spec, ngx_uint_t *q)
{
    u_char      *p, *last, *type, *sub;
    size_t       tlen, slen;
    ngx_int_t    s;
    ngx_uint_t   i, rq;

    static ngx_str_t  types[2] = {
        ngx_string("text"), ngx_string("application")
    };

    static ngx_str_t  subtypes[2] = {
        ngx_string("plain"), ngx_string("json")
    };

    p = value->data;
    last = p + value->len;

    while (p < last) {

        while (p < last && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        if (p == last) {
            break;
        }

        type = p;

        while (p < last && *p != '/' && *p != ';' && *p != ','
               && *p != ' ' && *p != '\t')
        {
            p++;
        }

        tlen = p - type;
        sub = p;
        slen = 0;

        if (p < last && *p == '/') {
            sub = ++p;

            while (p < last && *p != ';' && *p != ',' && *p != ' '
                   && *p != '\t')
            {
                p++;
            }

            slen = p - sub;
        }

        rq = 1000;

        while (p < last && *p != ',') {

            if (*p++ != ';') {
                continue;
            }

            while (p < last && (*p == ' ' || *p == '\t')) {
                p++;
            }

            if (last - p >= 2 && (p[0] | 0x20) == 'q' && p[1] == '=') {
                p += 2;
                rq = ngx_esp_status_qvalue(&p, last);
            }
        }

        for (i = 0; i < 2; i++) {

            if (tlen == 1 && type[0] == '*' && slen == 1 && sub[0] == '*') {
                s = 0;

            } else if (tlen != types[i].len
                       || ngx_strncasecmp(type, types[i].data, tlen) != 0)
            {
                continue;

            } else if (slen == 1 && sub[0] == '*') {
                s = 1;

            } else if (slen == subtypes[i].len
                       && ngx_strncasecmp(sub, subtypes[i].data, slen) == 0)
            {
                s = 2;

            } else {
                continue;
            }

            if (s > spec[i]) {
                spec[i] = s;
                q[i] = rq;

            } else if (s == spec[i]) {
                q[i] = ngx_max(q[i], rq);
            }
        }
    }
}


/* "0", "0.5", "1.000": thousandths; anything else counts as 0 */

static ngx_uint_t
ngx_esp_status_qvalue(u_char **pp, u_char *last)
{
    u_char      *p;
    ngx_uint_t   q, m;

    p = *pp;

    if (p == last || (*p != '0' && *p != '1')) {
        return 0;
    }

    q = (*p++ - '0') * 1000;

    if (p < last && *p == '.') {
        p++;

        for (m = 100; m && p < last && *p >= '0' && *p <= '9'; m /= 10) {
            q += (*p++ - '0') * m;
        }
    }

    *pp = p;

    return ngx_min(q, 1000);
}


static ngx_int_t
ngx_esp_status_json(ngx_http_request_t *r, ngx_str_t *out)
{
    u_char                   *p, *last;
    size_t                    len;
    ngx_str_t                 name;
    ngx_uint_t                i, j, n, lookups, nepa;
    ngx_esp_domain_t        **dp;
    ngx_esp_counters_t       *sh;
    ngx_esp_epa_peer_t       *epa;
    ngx_esp_main_conf_t      *emcf;
    ngx_esp_shm_stats_t       st;
    ngx_esp_ldap_dc_stats_t  *dcs;

    emcf = ngx_http_get_module_main_conf(r, ngx_exchange_esp_module);
    sh = ngx_esp_counters();
    epa = ngx_esp_epa_results(r, &nepa);

    len = 4096 + ngx_esp_status_domains_len(emcf, 512, 6)
          + nepa * (256 + 6 * (NGX_ESP_EPA_UPSTREAM_LEN + NGX_SOCKADDR_STRLEN)
                    + 2 * NGX_ESP_EPA_FINGERPRINT_LEN);

    if (emcf->shm_zone) {
        len += emcf->shm_zone->shm.name.len * 6;
    }

    out->data = ngx_pnalloc(r->pool, len);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    p = out->data;
    last = p + len;

    p = ngx_slprintf(p, last, "{\"nginx_version\":\"%s\","
                     "\"module_version\":\"%s\",\"time\":%T,"
                     "\"worker_pid\":%P,\"logins\":{\"scope\":\"all "
                     "workers\"",
                     NGINX_VERSION, NGX_ESP_VERSION, ngx_time(), ngx_pid);

    if (sh) {
        p = ngx_slprintf(p, last, ",\"since\":%T", sh->since);

        for (i = 0; i < NGX_ESP_AUTH_RESULTS; i++) {
            p = ngx_slprintf(p, last, ",\"%s\":%uA",
                             ngx_esp_auth_result_name(i), sh->logins[i]);
        }

        p = ngx_slprintf(p, last, "},\"admin_actions\":{\"unblock\":%uA,"
                         "\"revoke\":%uA}", sh->unblocks, sh->revokes);

        p = ngx_slprintf(p, last, ",\"bearer\":{");

        for (i = 0; i < NGX_ESP_BEARER_RESULTS; i++) {
            p = ngx_slprintf(p, last, "%s\"%s\":%uA", i ? "," : "",
                             ngx_esp_bearer_result_names[i], sh->bearer[i]);
        }

        p = ngx_slprintf(p, last, "}");

    } else {
        p = ngx_slprintf(p, last, "},\"admin_actions\":{}");
    }

    p = ngx_esp_status_json_epa(p, last, epa, nepa);

    p = ngx_slprintf(p, last, ",\"domains\":[");

    dp = emcf->domains.elts;

    for (i = 0; i < emcf->domains.nelts; i++) {

        p = ngx_slprintf(p, last, "%s{\"name\":", i ? "," : "");
        p = ngx_esp_status_json_str(p, last, &dp[i]->name);
        p = ngx_slprintf(p, last, ",\"max_failed_auths\":%i,"
                         "\"domain_controllers\":[",
                         dp[i]->max_failed_auths);

        dcs = ngx_esp_ldap_stats(dp[i], &n);

        for (j = 0; j < n; j++) {
            p = ngx_slprintf(p, last, "%s{\"url\":", j ? "," : "");
            p = ngx_esp_status_json_str(p, last, &dcs[j].name);
            p = ngx_slprintf(p, last, ",\"worker_pid\":%P,\"state\":\"%s\","
                             "\"down_until\":%T,\"binds_ok\":%ui,"
                             "\"binds_failed\":%ui,\"errors\":%ui,"
                             "\"timeouts\":%ui,\"last_latency_ms\":%M,"
                             "\"connections\":%ui,\"idle_connections\":%ui}",
                             ngx_pid, dcs[j].down_until ? "down" : "up",
                             dcs[j].down_until, dcs[j].binds_ok,
                             dcs[j].binds_failed, dcs[j].errors,
                             dcs[j].timeouts, dcs[j].last_latency,
                             dcs[j].connections, dcs[j].idle);
        }

        p = ngx_slprintf(p, last, "]}");
    }

    p = ngx_slprintf(p, last, "],\"cluster\":");
    p = ngx_esp_cluster_json(p, last);
    p = ngx_slprintf(p, last, ",\"shared_zone\":");

    if (emcf->shm_zone == NULL) {
        p = ngx_slprintf(p, last, "null}\n");
        goto done;
    }

    ngx_esp_shm_stats(emcf->shm_zone, &st);

    name = emcf->shm_zone->shm.name;

    p = ngx_slprintf(p, last, "{\"name\":");
    p = ngx_esp_status_json_str(p, last, &name);
    p = ngx_slprintf(p, last, ",\"size\":%uz,\"used\":%uz,\"free\":%uz,"
                     "\"entry_size\":%uz,\"capacity\":%ui,"
                     "\"cached_credentials\":%ui,\"cache_hits\":%ui,"
                     "\"cache_misses\":%ui,\"cache_hit_rate\":",
                     st.size, st.used, st.free, st.entry_size, st.capacity,
                     st.cached, st.hits, st.misses);

    lookups = st.hits + st.misses;

    if (lookups) {
        n = (ngx_uint_t) ((double) st.hits * 10000 / lookups + 0.5);
        p = ngx_slprintf(p, last, "%ui.%04ui", n / 10000, n % 10000);

    } else {
        p = ngx_slprintf(p, last, "null");
    }

    p = ngx_slprintf(p, last, ",\"evictions\":%ui,\"alloc_failures\":%ui,"
                     "\"lockouts\":%ui,\"blocked\":%ui,"
                     "\"revoked_sessions\":%ui,\"revoked_users\":%ui}}\n",
                     st.evictions, st.alloc_failures, st.lockouts,
                     st.blocked, st.revoked_sessions, st.revoked_users);

done:

    if (p == last) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "esp: status output larger than %uz bytes", len);
        return NGX_ERROR;
    }

    out->len = p - out->data;

    return NGX_OK;
}


static ngx_int_t
ngx_esp_status_prometheus(ngx_http_request_t *r, ngx_str_t *out)
{
    u_char               *p, *last;
    size_t                len;
    ngx_uint_t            nepa;
    ngx_esp_epa_peer_t   *epa;
    ngx_esp_main_conf_t  *emcf;

    emcf = ngx_http_get_module_main_conf(r, ngx_exchange_esp_module);
    epa = ngx_esp_epa_results(r, &nepa);

    /* each DC sample carries its domain and url, escaped (at most 3x) */

    len = 8192 + ngx_esp_status_domains_len(emcf, 9 * 192, 9 * 3)
          + nepa * (128 + 3 * (NGX_ESP_EPA_UPSTREAM_LEN + NGX_SOCKADDR_STRLEN)
                    + 2 * NGX_ESP_EPA_FINGERPRINT_LEN);

    if (emcf->shm_zone) {
        len += 14 * emcf->shm_zone->shm.name.len * 3;
    }

    out->data = ngx_pnalloc(r->pool, len);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    p = out->data;
    last = p + len;

    p = ngx_slprintf(p, last,
                     "# HELP esp_info Versions of nginx and of the module\n"
                     "# TYPE esp_info gauge\n"
                     "esp_info{nginx_version=\"%s\",module_version=\"%s\"} "
                     "1\n", NGINX_VERSION, NGX_ESP_VERSION);

    p = ngx_esp_status_prom_counters(p, last);
    p = ngx_esp_status_prom_dcs(p, last, emcf);
    p = ngx_esp_status_prom_epa(p, last, epa, nepa);
    p = ngx_esp_cluster_prometheus(p, last);

    if (emcf->shm_zone) {
        p = ngx_esp_status_prom_zone(p, last, emcf->shm_zone);
    }

    if (p == last) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "esp: status output larger than %uz bytes", len);
        return NGX_ERROR;
    }

    out->len = p - out->data;

    return NGX_OK;
}


/* the login and admin counters of all workers */

static u_char *
ngx_esp_status_prom_counters(u_char *p, u_char *last)
{
    ngx_uint_t           i;
    ngx_esp_counters_t  *sh;

    sh = ngx_esp_counters();

    if (sh == NULL) {
        return p;
    }

    p = ngx_slprintf(p, last,
                     "# HELP esp_logins_total Login decisions by result, "
                     "all workers, Basic cache hits included\n"
                     "# TYPE esp_logins_total counter\n");

    for (i = 0; i < NGX_ESP_AUTH_RESULTS; i++) {
        p = ngx_slprintf(p, last, "esp_logins_total{result=\"%s\"} %uA\n",
                         ngx_esp_auth_result_name(i), sh->logins[i]);
    }

    p = ngx_slprintf(p, last,
                     "# HELP esp_bearer_total OAuth Bearer requests by "
                     "decision, all workers\n"
                     "# TYPE esp_bearer_total counter\n");

    for (i = 0; i < NGX_ESP_BEARER_RESULTS; i++) {
        p = ngx_slprintf(p, last, "esp_bearer_total{result=\"%s\"} %uA\n",
                         ngx_esp_bearer_result_names[i], sh->bearer[i]);
    }

    return ngx_slprintf(p, last,
                        "# HELP esp_counters_start_time_seconds When the "
                        "login and admin counters started (Unix time)\n"
                        "# TYPE esp_counters_start_time_seconds gauge\n"
                        "esp_counters_start_time_seconds %T\n"
                        "# HELP esp_admin_actions_total Admin actions "
                        "carried out, all workers\n"
                        "# TYPE esp_admin_actions_total counter\n"
                        "esp_admin_actions_total{action=\"unblock\"} %uA\n"
                        "esp_admin_actions_total{action=\"revoke\"} %uA\n",
                        sh->since, sh->unblocks, sh->revokes);
}


/* this worker's view of each domain controller */

static u_char *
ngx_esp_status_prom_dcs(u_char *p, u_char *last, ngx_esp_main_conf_t *emcf)
{
    ngx_uint_t                   i, j, n;
    ngx_esp_domain_t           **dp;
    ngx_esp_ldap_dc_stats_t     *dcs;
    ngx_esp_status_dc_metric_t  *m;

    dp = emcf->domains.elts;

    for (m = ngx_esp_status_dc_metrics; m->name; m++) {

        if (m->help) {
            p = ngx_slprintf(p, last, "# HELP %s %s\n" "# TYPE %s %s\n",
                             m->name, m->help, m->name, m->type);
        }

        for (i = 0; i < emcf->domains.nelts; i++) {

            dcs = ngx_esp_ldap_stats(dp[i], &n);

            for (j = 0; j < n; j++) {
                p = ngx_esp_status_dc_sample(p, last, m, dp[i], &dcs[j]);
            }
        }
    }

    return p;
}


static u_char *
ngx_esp_status_dc_sample(u_char *p, u_char *last,
    ngx_esp_status_dc_metric_t *m, ngx_esp_domain_t *d,
    ngx_esp_ldap_dc_stats_t *st)
{
    p = ngx_slprintf(p, last, "%s{domain=\"", m->name);
    p = ngx_esp_status_label(p, last, &d->name);
    p = ngx_slprintf(p, last, "\",dc=\"");
    p = ngx_esp_status_label(p, last, &st->name);
    p = ngx_slprintf(p, last, "\",worker_pid=\"%P\"", ngx_pid);

    if (m->result) {
        p = ngx_slprintf(p, last, ",result=\"%s\"", m->result);
    }

    switch (m->value) {

    case NGX_ESP_STATUS_DC_UP:
        return ngx_slprintf(p, last, "} %d\n", st->down_until ? 0 : 1);

    case NGX_ESP_STATUS_DC_DOWN_UNTIL:
        return ngx_slprintf(p, last, "} %T\n", st->down_until);

    case NGX_ESP_STATUS_DC_BINDS_OK:
        return ngx_slprintf(p, last, "} %ui\n", st->binds_ok);

    case NGX_ESP_STATUS_DC_BINDS_FAIL:
        return ngx_slprintf(p, last, "} %ui\n", st->binds_failed);

    case NGX_ESP_STATUS_DC_ERRORS:
        return ngx_slprintf(p, last, "} %ui\n", st->errors);

    case NGX_ESP_STATUS_DC_TIMEOUTS:
        return ngx_slprintf(p, last, "} %ui\n", st->timeouts);

    case NGX_ESP_STATUS_DC_LATENCY:
        return ngx_slprintf(p, last, "} %M.%03M\n",
                            st->last_latency / 1000,
                            st->last_latency % 1000);

    case NGX_ESP_STATUS_DC_CONNS:
        return ngx_slprintf(p, last, "} %ui\n", st->connections);

    default: /* NGX_ESP_STATUS_DC_IDLE */
        return ngx_slprintf(p, last, "} %ui\n", st->idle);
    }
}


/*
 * Extended Protection: does every Exchange server of an "esp_ntlm"
 * upstream present the certificate the gate's clients see?  null until
 * the first TLS handshake to one of them.
 */

static u_char *
ngx_esp_status_json_epa(u_char *p, u_char *last, ngx_esp_epa_peer_t *epa,
    ngx_uint_t n)
{
    u_char      fp[NGX_ESP_EPA_FINGERPRINT_LEN];
    ngx_str_t   s;
    ngx_uint_t  i;

    p = ngx_slprintf(p, last, ",\"epa_compatible\":%s,\"epa\":[",
                     ngx_esp_status_epa_all(epa, n));

    for (i = 0; i < n; i++) {
        s.data = epa[i].upstream;
        s.len = epa[i].upstream_len;

        p = ngx_slprintf(p, last, "%s{\"upstream\":", i ? "," : "");
        p = ngx_esp_status_json_str(p, last, &s);

        s.data = epa[i].peer;
        s.len = epa[i].peer_len;

        p = ngx_slprintf(p, last, ",\"peer\":");
        p = ngx_esp_status_json_str(p, last, &s);

        ngx_esp_epa_fingerprint(fp, epa[i].exchange);

        p = ngx_slprintf(p, last, ",\"epa_compatible\":%s,\"checked\":%T,"
                         "\"exchange_sha256\":\"%*s\",",
                         epa[i].compatible ? "true" : "false",
                         epa[i].checked, sizeof(fp), fp);

        ngx_esp_epa_fingerprint(fp, epa[i].listener);

        p = ngx_slprintf(p, last, "\"listener_sha256\":\"%*s\"}",
                         sizeof(fp), fp);
    }

    return ngx_slprintf(p, last, "]");
}


static u_char *
ngx_esp_status_prom_epa(u_char *p, u_char *last, ngx_esp_epa_peer_t *epa,
    ngx_uint_t n)
{
    ngx_str_t   s;
    ngx_uint_t  i;

    if (n == 0) {
        return p;
    }

    p = ngx_slprintf(p, last,
                     "# HELP esp_epa_compatible 1 when every checked "
                     "Exchange server of an esp_ntlm upstream presents the "
                     "certificate the clients see (Extended Protection)\n"
                     "# TYPE esp_epa_compatible gauge\n"
                     "esp_epa_compatible %d\n"
                     "# HELP esp_epa_peer_compatible 1 when this Exchange "
                     "server presents the certificate the clients see\n"
                     "# TYPE esp_epa_peer_compatible gauge\n",
                     ngx_strcmp(ngx_esp_status_epa_all(epa, n), "true") == 0);

    for (i = 0; i < n; i++) {
        s.data = epa[i].upstream;
        s.len = epa[i].upstream_len;

        p = ngx_slprintf(p, last, "esp_epa_peer_compatible{upstream=\"");
        p = ngx_esp_status_label(p, last, &s);

        s.data = epa[i].peer;
        s.len = epa[i].peer_len;

        p = ngx_slprintf(p, last, "\",peer=\"");
        p = ngx_esp_status_label(p, last, &s);
        p = ngx_slprintf(p, last, "\"} %d\n", epa[i].compatible ? 1 : 0);
    }

    return p;
}


static const char *
ngx_esp_status_epa_all(ngx_esp_epa_peer_t *epa, ngx_uint_t n)
{
    ngx_uint_t  i;

    if (n == 0) {
        return "null";
    }

    for (i = 0; i < n; i++) {
        if (!epa[i].compatible) {
            return "false";
        }
    }

    return "true";
}


/* the shared zone */

static u_char *
ngx_esp_status_prom_zone(u_char *p, u_char *last, ngx_shm_zone_t *zone)
{
    u_char                        *v;
    ngx_esp_shm_stats_t            st;
    ngx_esp_status_zone_metric_t  *m;

    ngx_esp_shm_stats(zone, &st);

    for (m = ngx_esp_status_zone_metrics; m->name; m++) {

        p = ngx_slprintf(p, last, "# HELP %s %s\n" "# TYPE %s %s\n"
                         "%s{zone=\"", m->name, m->help, m->name, m->type,
                         m->name);
        p = ngx_esp_status_label(p, last, &zone->shm.name);

        v = (u_char *) &st + m->offset;

        if (m->bytes) {
            p = ngx_slprintf(p, last, "\"} %uz\n", *(size_t *) v);

        } else {
            p = ngx_slprintf(p, last, "\"} %ui\n", *(ngx_uint_t *) v);
        }
    }

    return p;
}


/*
 * Room for the domains' part of the output: "per_dc" bytes for each
 * domain controller, plus its url and domain name escaped "factor" times.
 */

static size_t
ngx_esp_status_domains_len(ngx_esp_main_conf_t *emcf, size_t per_dc,
    size_t factor)
{
    size_t                     len;
    ngx_uint_t                 i, j, n;
    ngx_esp_domain_t         **dp;
    ngx_esp_ldap_dc_stats_t   *dcs;

    len = 0;
    dp = emcf->domains.elts;

    for (i = 0; i < emcf->domains.nelts; i++) {

        len += 256 + dp[i]->name.len * 6;

        dcs = ngx_esp_ldap_stats(dp[i], &n);

        for (j = 0; j < n; j++) {
            len += per_dc + (dp[i]->name.len + dcs[j].name.len) * factor;
        }
    }

    return len;
}


/* admin actions */

static ngx_int_t
ngx_esp_status_post(ngx_http_request_t *r)
{
    ngx_int_t         rc;
    ngx_esp_ctx_t    *ctx;
    ngx_table_elt_t  *h;

    /*
     * The content type alone does not stop a cross-site form post from an
     * admin's browser; browsers say where a request comes from.
     */

    h = ngx_esp_http_cross_site(r, 0);

    if (h) {
        return ngx_esp_status_refuse(r, NGX_HTTP_FORBIDDEN,
                                     h->key.len == sizeof("Origin") - 1
                                     ? "cross-site request (Origin)"
                                     : "cross-site request (Sec-Fetch-Site)");
    }

    if (!ngx_esp_http_is_form(r)) {
        return ngx_esp_status_refuse(r, NGX_HTTP_BAD_REQUEST,
                                     "Content-Type must be "
                                     "application/x-www-form-urlencoded");
    }

    ctx = ngx_esp_get_ctx(r, 1);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_esp_http_read_body(r, &ctx->body, NGX_ESP_STATUS_MAX_BODY,
                                "status request",
                                ngx_esp_status_body_handler);

    if (rc == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE
        && r->headers_in.content_length_n > NGX_ESP_STATUS_MAX_BODY)
    {
        return ngx_esp_status_refuse(r, rc, "body too large");
    }

    return rc;
}


static void
ngx_esp_status_body_handler(ngx_http_request_t *r)
{
    ngx_http_finalize_request(r, ngx_esp_status_action(r));
}


static ngx_int_t
ngx_esp_status_action(ngx_http_request_t *r)
{
    time_t                  now, until;
    ngx_int_t               rc;
    ngx_str_t               body, logon, key;
    const char             *reason;
    ngx_esp_domain_t       *d;
    ngx_esp_counters_t     *sh;
    ngx_esp_main_conf_t    *emcf;
    ngx_esp_status_form_t   f;

    rc = ngx_esp_http_body(r, NGX_ESP_STATUS_MAX_BODY, 0, &body, &reason);
    if (rc != NGX_OK) {
        return ngx_esp_status_refuse(r, rc, reason);
    }

    reason = ngx_esp_status_parse_form(r, &body, &f);
    if (reason) {
        return ngx_esp_status_refuse(r, NGX_HTTP_BAD_REQUEST, reason);
    }

    if (f.action.len == 7 && ngx_strncmp(f.action.data, "unblock", 7) == 0) {
        f.unblock = 1;

    } else if (f.action.len == 6
               && ngx_strncmp(f.action.data, "revoke", 6) == 0)
    {
        f.unblock = 0;

    } else if (f.action.len == 9
               && ngx_strncmp(f.action.data, "mfa_reset", 9) == 0)
    {
        f.reset = 1;

    } else {
        return ngx_esp_status_refuse(r, NGX_HTTP_BAD_REQUEST,
                                     "unknown action: use \"unblock\", "
                                     "\"revoke\" or \"mfa_reset\"");
    }

    emcf = ngx_http_get_module_main_conf(r, ngx_exchange_esp_module);

    d = ngx_esp_status_domain(r, &f.domain);

    if (d == NULL || emcf->shm_zone == NULL) {
        return ngx_esp_status_refuse(r, NGX_HTTP_NOT_FOUND,
                                     "unknown domain");
    }

    /* the lockout, cache and revocation key, as the login builds it */

    rc = ngx_esp_ldap_build_logon_name(r->pool, d, &f.user, &logon);

    if (rc == NGX_DECLINED) {
        return ngx_esp_status_refuse(r, NGX_HTTP_BAD_REQUEST,
                                     "the user cannot be a logon name");
    }

    if (rc != NGX_OK || ngx_esp_user_key(r, d, &logon, &key) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (f.reset) {
        /* the user enrols again at the next login (esp_mfa_enroll) */

        if (d->totp_attribute.len == 0) {
            return ngx_esp_status_refuse(r, NGX_HTTP_BAD_REQUEST,
                                         "the domain has no totp_attribute");
        }

        ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                      "esp: admin mfa_reset user=\"%V\" domain=%V client=%V",
                      ngx_esp_log_escape(r->pool, &key), &d->name,
                      &r->connection->addr_text);

        rc = ngx_esp_totp_reset(r, d, &logon, ngx_esp_status_reset_done);

        if (rc != NGX_AGAIN) {
            return ngx_esp_status_reset_answer(r, rc);
        }

        /* the answer finalizes the request; the body handler's does not */
        r->main->count++;

        return NGX_DONE;
    }

    now = ngx_time();
    until = 0;

    if (f.unblock) {
        rc = ngx_esp_lockout_unblock(emcf->shm_zone, &d->name, &key);

        /* on every node: the store may know a block this one does not */

        ngx_esp_cluster_unblock(emcf->shm_zone, &d->name, &key);

    } else {
        /* until the longest session issued now has ended */
        until = now + ngx_max(d->private_max, d->public_max);

        rc = ngx_esp_user_revoke(emcf->shm_zone, &d->name, &key, now,
                                 until);

        ngx_esp_cluster_revoke_user(emcf->shm_zone, &d->name, &key, now,
                                    until);
    }

    if (rc == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "esp: admin %V of domain %V failed in the shared zone",
                      &f.action, &d->name);
        return ngx_esp_status_refuse(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                     "the shared zone failed");
    }

    sh = ngx_esp_counters();

    if (sh) {
        (void) ngx_atomic_fetch_add(f.unblock ? &sh->unblocks
                                              : &sh->revokes, 1);
    }

    return ngx_esp_status_answer(r, &f, d, &key, rc, now, until);
}


/* the directory has cleared the secret, or could not */

static void
ngx_esp_status_reset_done(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_finalize_request(r, ngx_esp_status_reset_answer(r, rc));
}


static ngx_int_t
ngx_esp_status_reset_answer(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_str_t  type, out;

    if (rc == NGX_DECLINED) {
        return ngx_esp_status_refuse(r, NGX_HTTP_NOT_FOUND, "no such user");
    }

    if (rc != NGX_OK) {
        return ngx_esp_status_refuse(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                     "the directory did not clear the "
                                     "secret (see the error log)");
    }

    ngx_str_set(&out, "{\"ok\":true,\"action\":\"mfa_reset\"}\n");
    ngx_str_set(&type, NGX_ESP_STATUS_JSON_TYPE);

    return ngx_esp_status_send(r, NGX_HTTP_OK, &type, type.len, &out);
}


static ngx_esp_domain_t *
ngx_esp_status_domain(ngx_http_request_t *r, ngx_str_t *name)
{
    ngx_uint_t             i;
    ngx_esp_domain_t     **dp;
    ngx_esp_main_conf_t   *emcf;

    emcf = ngx_http_get_module_main_conf(r, ngx_exchange_esp_module);
    dp = emcf->domains.elts;

    for (i = 0; i < emcf->domains.nelts; i++) {
        if (dp[i]->name.len == name->len
            && ngx_strncmp(dp[i]->name.data, name->data, name->len) == 0)
        {
            return dp[i];
        }
    }

    return NULL;
}


/* the action carried out: the log line and the JSON answer */

static ngx_int_t
ngx_esp_status_answer(ngx_http_request_t *r, ngx_esp_status_form_t *f,
    ngx_esp_domain_t *d, ngx_str_t *key, ngx_int_t rc, time_t since,
    time_t until)
{
    u_char      *p, *last;
    size_t       len;
    ngx_str_t    type, out;

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "esp: admin %V user=\"%V\" domain=%V client=%V%s",
                  &f->action, ngx_esp_log_escape(r->pool, key), &d->name,
                  &r->connection->addr_text,
                  f->unblock ? (rc == NGX_OK ? " was_blocked=yes"
                                             : " was_blocked=no")
                             : "");

    len = sizeof("{\"ok\":true,\"action\":\"\",\"domain\":,\"user\":,"
                 "\"lockout_removed\":false,\"since\":,\"until\":}")
          + f->action.len + (d->name.len + key->len) * 6 + 2 * NGX_TIME_T_LEN
          + 8;

    out.data = ngx_pnalloc(r->pool, len);
    if (out.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = out.data;
    last = p + len;

    p = ngx_slprintf(p, last, "{\"ok\":true,\"action\":\"%V\",\"domain\":",
                     &f->action);
    p = ngx_esp_status_json_str(p, last, &d->name);
    p = ngx_slprintf(p, last, ",\"user\":");
    p = ngx_esp_status_json_str(p, last, key);

    if (f->unblock) {
        p = ngx_slprintf(p, last, ",\"lockout_removed\":%s}\n",
                         rc == NGX_OK ? "true" : "false");

    } else {
        p = ngx_slprintf(p, last, ",\"since\":%T,\"until\":%T}\n",
                         since, until);
    }

    out.len = p - out.data;

    ngx_str_set(&type, NGX_ESP_STATUS_JSON_TYPE);

    return ngx_esp_status_send(r, NGX_HTTP_OK, &type, type.len, &out);
}


/* action=...&domain=...&user=...: every field once, nothing else */

static const char *
ngx_esp_status_parse_form(ngx_http_request_t *r, ngx_str_t *body,
    ngx_esp_status_form_t *f)
{
    u_char      *p, *last;
    ngx_int_t    rc;
    ngx_str_t    name, value, key, text, *field;
    const char  *reason;

    ngx_memzero(f, sizeof(ngx_esp_status_form_t));

    p = body->data;
    last = p + body->len;

    while (ngx_esp_http_form_pair(&p, last, &name, &value)) {

        if (value.data == NULL) {
            return "a field without \"=\"";
        }

        rc = ngx_esp_http_form_decode(r->pool, &name, &key, 0, &reason);

        if (rc == NGX_OK) {
            rc = ngx_esp_http_form_decode(r->pool, &value, &text, 0,
                                          &reason);
        }

        if (rc == NGX_ERROR) {
            return "out of memory";
        }

        if (rc != NGX_OK) {
            return reason;
        }

        if (key.len == 6 && ngx_strncmp(key.data, "action", 6) == 0) {
            field = &f->action;

        } else if (key.len == 6 && ngx_strncmp(key.data, "domain", 6) == 0) {
            field = &f->domain;

        } else if (key.len == 4 && ngx_strncmp(key.data, "user", 4) == 0) {
            field = &f->user;

        } else {
            return "unknown field: expected action, domain and user";
        }

        if (field->data) {
            return "a field is given twice";
        }

        *field = text;
    }

    if (f->action.len == 0 || f->domain.len == 0 || f->user.len == 0) {
        return "action, domain and user are required";
    }

    if (f->domain.len > NGX_ESP_STATUS_MAX_DOMAIN
        || f->user.len > NGX_ESP_MAX_USER)
    {
        return "a field is too long";
    }

    return NULL;
}


static ngx_int_t
ngx_esp_status_refuse(ngx_http_request_t *r, ngx_uint_t status,
    const char *reason)
{
    u_char     *p, *last;
    size_t      len;
    ngx_str_t   body, type, text;

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "esp: status request refused: %s", reason);

    text.data = (u_char *) reason;
    text.len = ngx_strlen(reason);

    len = sizeof("{\"ok\":false,\"error\":}\n") + text.len * 6 + 2;

    body.data = ngx_pnalloc(r->pool, len);
    if (body.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = body.data;
    last = p + len;

    p = ngx_slprintf(p, last, "{\"ok\":false,\"error\":");
    p = ngx_esp_status_json_str(p, last, &text);
    p = ngx_slprintf(p, last, "}\n");

    body.len = p - body.data;

    ngx_str_set(&type, NGX_ESP_STATUS_JSON_TYPE);

    return ngx_esp_status_send(r, status, &type, type.len, &body);
}


static ngx_int_t
ngx_esp_status_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, size_t type_len, ngx_str_t *body)
{
    ngx_str_t  allow;

    ngx_str_set(&allow, "GET, HEAD, POST");

    if (status == NGX_HTTP_NOT_ALLOWED
        && ngx_esp_http_set_header(r, &r->headers_out.headers, "Allow",
                                   &allow, NULL)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_esp_http_send(r, status, type, type_len, body);
}


/*
 * A JSON string, quotes included: at most 6 bytes per input byte plus 2.
 * Invalid UTF-8 becomes U+FFFD, so the output always parses.
 */

static u_char *
ngx_esp_status_json_str(u_char *p, u_char *last, ngx_str_t *s)
{
    u_char   c, *src, *end;
    size_t   n;

    static u_char  hex[] = "0123456789abcdef";

    if (last - p < 2) {
        return last;
    }

    *p++ = '"';

    src = s->data;
    end = src + s->len;

    while (src < end) {

        if (last - p < 7) {
            return last;
        }

        c = *src;

        if (c >= 0x80) {
            n = ngx_esp_utf8_len(src, end);

            if (n == 0) {
                p = ngx_cpymem(p, "\\ufffd", 6);
                src++;
                continue;
            }

            p = ngx_cpymem(p, src, n);
            src += n;
            continue;
        }

        src++;

        if (c == '"' || c == '\\') {
            *p++ = '\\';
            *p++ = c;

        } else if (c < 0x20 || c == 0x7f) {
            p = ngx_cpymem(p, "\\u00", 4);
            *p++ = hex[c >> 4];
            *p++ = hex[c & 0xf];

        } else {
            *p++ = c;
        }
    }

    if (p == last) {
        return last;
    }

    *p++ = '"';

    return p;
}


/*
 * A Prometheus label value, without its quotes: at most 3 bytes per input
 * byte; control characters and invalid UTF-8 become U+FFFD.
 */

static u_char *
ngx_esp_status_label(u_char *p, u_char *last, ngx_str_t *s)
{
    u_char   c, *src, *end;
    size_t   n;

    src = s->data;
    end = src + s->len;

    while (src < end) {

        if (last - p < 4) {
            return last;
        }

        c = *src;

        if (c >= 0x80) {
            n = ngx_esp_utf8_len(src, end);

            if (n == 0) {
                p = ngx_cpymem(p, "\xef\xbf\xbd", 3);
                src++;
                continue;
            }

            p = ngx_cpymem(p, src, n);
            src += n;
            continue;
        }

        src++;

        if (c == '"' || c == '\\') {
            *p++ = '\\';
            *p++ = c;

        } else if (c == '\n') {
            *p++ = '\\';
            *p++ = 'n';

        } else if (c < 0x20 || c == 0x7f) {
            p = ngx_cpymem(p, "\xef\xbf\xbd", 3);

        } else {
            *p++ = c;
        }
    }

    return p;
}


/* esp_status; */

char *
ngx_esp_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_esp_loc_conf_t *elcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler == ngx_esp_status_handler) {
        return "is duplicate";
    }

    if (clcf->handler) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"esp_status\" cannot share a location with "
                           "another content handler (proxy_pass, ...)");
        return NGX_CONF_ERROR;
    }

    /*
     * Behind the gate any user of the directory could unblock and revoke:
     * the status location is never gated, the operator protects it.
     */

    if (elcf->domain != NGX_CONF_UNSET_PTR && elcf->domain != NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"esp_status\" cannot be used where \"esp\" is "
                           "on in the same location: protect the status "
                           "location with allow/deny or auth_basic");
        return NGX_CONF_ERROR;
    }

    elcf->domain = NULL;
    elcf->esp_file = cf->conf_file->file.name.data;
    elcf->esp_line = cf->conf_file->line;

    if (ngx_esp_counters_zone(cf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    clcf->handler = ngx_esp_status_handler;

    return NGX_CONF_OK;
}
