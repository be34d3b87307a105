
/*
 * Copyright (C) ngx_exchange_esp authors
 */


/*
 * A RADIUS client for the second factor (RFC 2865 PAP with RFC 3579's
 * Message-Authenticator): one connected UDP socket per query on nginx's
 * event loop, retransmission, a time-out per server, failover in the
 * order the servers were written.  Since the 2024 "BlastRADIUS" attack
 * (CVE-2024-3596) a reply without a valid Message-Authenticator is
 * dropped like a forged one: an attacker on the path can otherwise turn
 * an Access-Reject into an Access-Accept by an MD5 chosen-prefix
 * collision on the Response Authenticator.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/rand.h>

#include "ngx_esp_radius.h"
#include "ngx_esp_domain.h"
#include "ngx_esp_log.h"


#define NGX_ESP_RADIUS_DEFAULT_PORT      1812


static void ngx_esp_radius_try(ngx_esp_radius_query_t *q);
static ngx_int_t ngx_esp_radius_send(ngx_esp_radius_query_t *q);
static void ngx_esp_radius_timer_handler(ngx_event_t *ev);
static void ngx_esp_radius_read_handler(ngx_event_t *rev);
static void ngx_esp_radius_dummy_handler(ngx_event_t *ev);
static ngx_int_t ngx_esp_radius_answer(ngx_esp_radius_query_t *q,
    u_char *buf, size_t n);
static void ngx_esp_radius_finish(ngx_esp_radius_query_t *q,
    ngx_esp_radius_result_e result);
static void ngx_esp_radius_finish_later(ngx_esp_radius_query_t *q,
    ngx_esp_radius_result_e result);
static void ngx_esp_radius_finish_handler(ngx_event_t *ev);
static void ngx_esp_radius_close(ngx_esp_radius_query_t *q);
static void ngx_esp_radius_wipe_query(ngx_esp_radius_query_t *q);
static void ngx_esp_radius_cleanup(void *data);
static ngx_esp_radius_conf_t *ngx_esp_radius_conf(ngx_conf_t *cf,
    ngx_esp_domain_t *d);
static void ngx_esp_radius_wipe(void *data);


/* queries */

ngx_esp_radius_query_t *
ngx_esp_radius_create(ngx_pool_t *pool, ngx_log_t *log)
{
    ngx_pool_cleanup_t      *cln;
    ngx_esp_radius_query_t  *q;

    q = ngx_pcalloc(pool, sizeof(ngx_esp_radius_query_t));
    if (q == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_esp_radius_cleanup;
    cln->data = q;

    q->pool = pool;
    q->parent_log = log;

    /* the request's log: its lines keep the client and the request */
    q->log = *log;
    q->log.action = "asking the RADIUS server";

    q->timer.handler = ngx_esp_radius_timer_handler;
    q->timer.data = q;
    q->timer.log = &q->log;

    q->finish.handler = ngx_esp_radius_finish_handler;
    q->finish.data = q;
    q->finish.log = &q->log;

    return q;
}


ngx_int_t
ngx_esp_radius_start(ngx_esp_radius_query_t *q)
{
    u_char  *p;

    if (q->running || q->conf == NULL || q->conf->servers.nelts == 0) {
        return NGX_ERROR;
    }

    q->result = NGX_ESP_RADIUS_FAILED;
    ngx_str_null(&q->reply_message);
    ngx_str_null(&q->reply_state);
    ngx_str_null(&q->server);

    q->running = 1;
    q->index = 0;

    if (q->user.len == 0 || q->user.len > NGX_ESP_RADIUS_MAX_STRING
        || q->password.len > NGX_ESP_RADIUS_MAX_PASSWORD
        || q->state.len > NGX_ESP_RADIUS_MAX_STRING)
    {
        ngx_log_error(NGX_LOG_INFO, &q->log, 0,
                      "esp radius: not sent for \"%V\": user name, code or "
                      "state too long for RADIUS",
                      ngx_esp_log_escape(q->pool, &q->user));

        /* the caller's memory: not ours to wipe */
        q->password.len = 0;
        ngx_esp_radius_finish_later(q, NGX_ESP_RADIUS_INVALID);
        return NGX_OK;
    }

    if (q->packet == NULL) {
        q->packet = ngx_pnalloc(q->pool, NGX_ESP_RADIUS_MAX_PACKET);
        if (q->packet == NULL) {
            q->running = 0;
            return NGX_ERROR;
        }
    }

    /* a copy of its own, wiped when the query ends */

    p = ngx_pnalloc(q->pool, q->password.len + 1);
    if (p == NULL) {
        q->running = 0;
        return NGX_ERROR;
    }

    ngx_memcpy(p, q->password.data, q->password.len);
    q->password.data = p;

    ngx_esp_radius_try(q);

    return NGX_OK;
}


void
ngx_esp_radius_cancel(ngx_esp_radius_query_t *q)
{
    if (!q->running) {
        return;
    }

    ngx_esp_radius_close(q);

    if (q->finish.posted) {
        ngx_delete_posted_event(&q->finish);
    }

    ngx_esp_radius_wipe_query(q);
    q->running = 0;
}


/* sends to q->index, or the next server that takes the packet */

static void
ngx_esp_radius_try(ngx_esp_radius_query_t *q)
{
    u_char                    rnd[1 + NGX_ESP_RADIUS_AUTH_LEN];
    ssize_t                   n;
    ngx_int_t                 rc;
    ngx_connection_t         *c;
    ngx_esp_radius_server_t  *s;

    for ( /* void */ ; q->index < q->conf->servers.nelts; q->index++) {

        ngx_esp_radius_close(q);

        s = (ngx_esp_radius_server_t *) q->conf->servers.elts + q->index;

        /* a fresh id and Request Authenticator per server */

        if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
            ngx_esp_radius_finish_later(q, NGX_ESP_RADIUS_FAILED);
            return;
        }

        q->id = rnd[0];

        n = ngx_esp_radius_build(q->packet, NGX_ESP_RADIUS_MAX_PACKET, q->id,
                                 rnd + 1, &s->secret, &q->user, &q->password,
                                 &q->conf->nas_identifier, q->conf->nas_ip,
                                 &q->state);
        if (n == NGX_ERROR) {
            ngx_esp_radius_finish_later(q, NGX_ESP_RADIUS_FAILED);
            return;
        }

        q->len = n;

        ngx_memzero(&q->peer, sizeof(ngx_peer_connection_t));

        q->peer.sockaddr = s->url.addrs[0].sockaddr;
        q->peer.socklen = s->url.addrs[0].socklen;
        q->peer.name = &s->name;
        q->peer.get = ngx_event_get_peer;
        q->peer.log = &q->log;
        q->peer.log_error = NGX_ERROR_ERR;
        q->peer.tries = 1;
        q->peer.type = SOCK_DGRAM;

        rc = ngx_event_connect_peer(&q->peer);

        if (rc != NGX_OK) {
            ngx_log_error(NGX_LOG_ERR, &q->log, 0,
                          "esp radius: cannot send to %V", &s->name);
            q->peer.connection = NULL;
            continue;
        }

        c = q->peer.connection;
        c->data = q;
        c->read->handler = ngx_esp_radius_read_handler;
        c->write->handler = ngx_esp_radius_dummy_handler;

        q->sent = 0;

        if (ngx_esp_radius_send(q) == NGX_OK) {
            return;
        }
    }

    ngx_log_error(NGX_LOG_ERR, &q->log, 0,
                  "esp radius: no RADIUS server answered for \"%V\": the "
                  "second factor service is unavailable",
                  ngx_esp_log_escape(q->pool, &q->user));

    ngx_esp_radius_finish_later(q, NGX_ESP_RADIUS_UNAVAILABLE);
}


static ngx_int_t
ngx_esp_radius_send(ngx_esp_radius_query_t *q)
{
    ssize_t                   n;
    ngx_connection_t         *c;
    ngx_esp_radius_server_t  *s;

    c = q->peer.connection;
    s = (ngx_esp_radius_server_t *) q->conf->servers.elts + q->index;

    /* a retransmission is the same packet: same id, same authenticator */

    n = c->send(c, q->packet, q->len);

    if (n != (ssize_t) q->len) {
        ngx_log_error(NGX_LOG_ERR, &q->log, 0,
                      "esp radius: send() to %V failed", &s->name);
        return NGX_ERROR;
    }

    q->sent++;

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, &q->log, 0,
                   "esp radius: Access-Request id %ui to %V, send %ui, "
                   "%uz bytes", (ngx_uint_t) q->id, &s->name, q->sent, q->len);

    ngx_add_timer(&q->timer, s->timeout);

    return NGX_OK;
}


static void
ngx_esp_radius_timer_handler(ngx_event_t *ev)
{
    ngx_esp_radius_query_t   *q;
    ngx_esp_radius_server_t  *s;

    q = ev->data;
    s = (ngx_esp_radius_server_t *) q->conf->servers.elts + q->index;

    if (q->sent <= s->retries) {
        ngx_log_error(NGX_LOG_WARN, &q->log, 0,
                      "esp radius: no answer from %V in %M ms, sending "
                      "again", &s->name, s->timeout);

        if (ngx_esp_radius_send(q) == NGX_OK) {
            return;
        }

    } else {
        ngx_log_error(NGX_LOG_ERR, &q->log, 0,
                      "esp radius: %V did not answer after %ui sends",
                      &s->name, q->sent);
    }

    q->index++;
    ngx_esp_radius_try(q);
}


static void
ngx_esp_radius_read_handler(ngx_event_t *rev)
{
    ssize_t                   n;
    ngx_int_t                 rc;
    ngx_connection_t         *c;
    ngx_esp_radius_query_t   *q;
    ngx_esp_radius_server_t  *s;

    /* one more byte than a packet may have: longer ones are refused */
    static u_char             buf[NGX_ESP_RADIUS_MAX_PACKET + 1];

    c = rev->data;
    q = c->data;
    s = (ngx_esp_radius_server_t *) q->conf->servers.elts + q->index;

    for ( ;; ) {
        n = c->recv(c, buf, sizeof(buf));

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == NGX_ERROR) {

            /* an ICMP port unreachable: the next server, now */

            ngx_log_error(NGX_LOG_ERR, &q->log, 0,
                          "esp radius: %V is unreachable", &s->name);

            q->index++;
            ngx_esp_radius_try(q);
            return;
        }

        rc = ngx_esp_radius_answer(q, buf, n);

        ngx_explicit_memzero(buf, n);

        if (rc != NGX_DECLINED) {
            return;
        }
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_esp_radius_finish(q, NGX_ESP_RADIUS_FAILED);
    }
}


/* NGX_DECLINED: dropped, keep waiting; else the query has ended */

static ngx_int_t
ngx_esp_radius_answer(ngx_esp_radius_query_t *q, u_char *buf, size_t n)
{
    u_char                   *p, *last, *dst;
    size_t                    len;
    ngx_int_t                 rc;
    const char               *err;
    ngx_esp_radius_reply_t    reply;
    ngx_esp_radius_server_t  *s;

    s = (ngx_esp_radius_server_t *) q->conf->servers.elts + q->index;

    if (n > NGX_ESP_RADIUS_MAX_PACKET) {
        err = "longer than 4096 bytes";
        rc = NGX_DECLINED;

    } else {
        err = "";
        rc = ngx_esp_radius_parse(buf, n, q->id, q->packet + 4, &s->secret,
                                  &reply, &err);
    }

    if (rc == NGX_ERROR) {
        ngx_esp_radius_finish(q, NGX_ESP_RADIUS_FAILED);
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_ERR, &q->log, 0,
                      "esp radius: dropped a reply of %uz bytes from %V: %s",
                      n, &s->name, err);
        return NGX_DECLINED;
    }

    q->server = s->name;

    /* several Reply-Messages are one text (RFC 2865 5.18) */

    if (reply.nreply) {
        len = 0;
        last = buf + (((size_t) buf[2] << 8) | buf[3]);

        for (p = buf + NGX_ESP_RADIUS_HDR_LEN; p < last; p += p[1]) {
            if (p[0] == NGX_ESP_RADIUS_REPLY_MESSAGE) {
                len += p[1] - 2;
            }
        }

        dst = ngx_pnalloc(q->pool, len);
        if (dst == NULL) {
            ngx_esp_radius_finish(q, NGX_ESP_RADIUS_FAILED);
            return NGX_ERROR;
        }

        q->reply_message.data = dst;
        q->reply_message.len = len;

        for (p = buf + NGX_ESP_RADIUS_HDR_LEN; p < last; p += p[1]) {
            if (p[0] == NGX_ESP_RADIUS_REPLY_MESSAGE) {
                dst = ngx_cpymem(dst, p + 2, p[1] - 2);
            }
        }
    }

    switch (reply.code) {

    case NGX_ESP_RADIUS_ACCESS_ACCEPT:
        ngx_log_error(NGX_LOG_INFO, &q->log, 0,
                      "esp radius: Access-Accept from %V for \"%V\"",
                      &s->name, ngx_esp_log_escape(q->pool, &q->user));
        ngx_esp_radius_finish(q, NGX_ESP_RADIUS_OK);
        break;

    case NGX_ESP_RADIUS_ACCESS_CHALLENGE:

        if (reply.state.len) {
            q->reply_state.data = ngx_pnalloc(q->pool, reply.state.len);
            if (q->reply_state.data == NULL) {
                ngx_esp_radius_finish(q, NGX_ESP_RADIUS_FAILED);
                return NGX_ERROR;
            }

            ngx_memcpy(q->reply_state.data, reply.state.data,
                       reply.state.len);
            q->reply_state.len = reply.state.len;
        }

        ngx_log_error(NGX_LOG_INFO, &q->log, 0,
                      "esp radius: Access-Challenge from %V for \"%V\"",
                      &s->name, ngx_esp_log_escape(q->pool, &q->user));
        ngx_esp_radius_finish(q, NGX_ESP_RADIUS_CHALLENGED);
        break;

    default: /* NGX_ESP_RADIUS_ACCESS_REJECT */
        ngx_log_error(NGX_LOG_INFO, &q->log, 0,
                      "esp radius: Access-Reject from %V for \"%V\"",
                      &s->name, ngx_esp_log_escape(q->pool, &q->user));
        ngx_esp_radius_finish(q, NGX_ESP_RADIUS_REJECTED);
        break;
    }

    return NGX_OK;
}


static void
ngx_esp_radius_finish(ngx_esp_radius_query_t *q,
    ngx_esp_radius_result_e result)
{
    ngx_esp_radius_close(q);
    ngx_esp_radius_wipe_query(q);

    q->result = result;
    q->running = 0;

    q->handler(q);
}


/*
 * From ngx_esp_radius_try(), which may run inside ngx_esp_radius_start():
 * the handler is called from the posted events, never from the caller's
 * own call.
 */

static void
ngx_esp_radius_finish_later(ngx_esp_radius_query_t *q,
    ngx_esp_radius_result_e result)
{
    ngx_esp_radius_close(q);

    q->result = result;
    ngx_post_event(&q->finish, &ngx_posted_events);
}


static void
ngx_esp_radius_finish_handler(ngx_event_t *ev)
{
    ngx_esp_radius_query_t  *q;

    q = ev->data;

    ngx_esp_radius_finish(q, q->result);
}


static void
ngx_esp_radius_close(ngx_esp_radius_query_t *q)
{
    if (q->timer.timer_set) {
        ngx_del_timer(&q->timer);
    }

    if (q->peer.connection) {
        ngx_close_connection(q->peer.connection);
        q->peer.connection = NULL;
    }
}


/* the password, and the packet that hides it under the shared secret */

static void
ngx_esp_radius_wipe_query(ngx_esp_radius_query_t *q)
{
    ngx_explicit_memzero(q->password.data, q->password.len);

    if (q->packet) {
        ngx_explicit_memzero(q->packet, q->len);
    }
}


static void
ngx_esp_radius_cleanup(void *data)
{
    ngx_esp_radius_query_t  *q = data;

    ngx_esp_radius_cancel(q);
}


static void
ngx_esp_radius_dummy_handler(ngx_event_t *ev)
{
    return;
}


/* configuration */

static ngx_esp_radius_conf_t *
ngx_esp_radius_conf(ngx_conf_t *cf, ngx_esp_domain_t *d)
{
    ngx_esp_radius_conf_t  *rc;

    if (d->radius) {
        return d->radius;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     rc->nas_identifier = { 0, NULL };
     */

    rc = ngx_pcalloc(cf->pool, sizeof(ngx_esp_radius_conf_t));
    if (rc == NULL) {
        return NULL;
    }

    if (ngx_array_init(&rc->servers, cf->pool, 2,
                       sizeof(ngx_esp_radius_server_t))
        != NGX_OK)
    {
        return NULL;
    }

    rc->nas_ip = INADDR_NONE;
    rc->password = NGX_CONF_UNSET_UINT;

    d->radius = rc;

    return rc;
}


/* radius_server host[:port] secret_file=FILE [timeout=TIME] [retries=N] */

char *
ngx_esp_radius_server(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_esp_domain_t  *d = conf;

    ngx_int_t                 n;
    ngx_str_t                *value, v;
    ngx_uint_t                i;
    ngx_esp_radius_conf_t    *rc;
    ngx_esp_radius_server_t  *s;

    rc = ngx_esp_radius_conf(cf, d);
    if (rc == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    s = ngx_array_push(&rc->servers);
    if (s == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(s, sizeof(ngx_esp_radius_server_t));

    s->name = value[1];
    s->timeout = NGX_CONF_UNSET_MSEC;
    s->retries = NGX_CONF_UNSET_UINT;

    s->url.url = value[1];
    s->url.default_port = NGX_ESP_RADIUS_DEFAULT_PORT;

    if (ngx_parse_url(cf->pool, &s->url) != NGX_OK) {
        if (s->url.err) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%s in RADIUS server \"%V\"", s->url.err,
                               &value[1]);
        }

        return NGX_CONF_ERROR;
    }

    if (s->url.uri.len || s->url.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid RADIUS server \"%V\": expected "
                           "\"host[:port]\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "secret_file=", 12) == 0
            && s->secret.data == NULL)
        {
            v.data = value[i].data + 12;
            v.len = value[i].len - 12;

            if (v.len == 0) {
                goto invalid;
            }

            if (ngx_esp_read_secret_file(cf, &v, &s->secret) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "timeout=", 8) == 0
            && s->timeout == NGX_CONF_UNSET_MSEC)
        {
            v.data = value[i].data + 8;
            v.len = value[i].len - 8;

            s->timeout = ngx_parse_time(&v, 0);

            if (s->timeout == (ngx_msec_t) NGX_ERROR || s->timeout == 0) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "retries=", 8) == 0
            && s->retries == NGX_CONF_UNSET_UINT)
        {
            n = ngx_atoi(value[i].data + 8, value[i].len - 8);

            if (n == NGX_ERROR || n > 10) {
                goto invalid;
            }

            s->retries = n;
            continue;
        }

        goto invalid;
    }

    if (s->secret.data == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "RADIUS server \"%V\" needs "
                           "\"secret_file=FILE\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    ngx_conf_init_msec_value(s->timeout, 5000);
    ngx_conf_init_uint_value(s->retries, 2);

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\": expected "
                       "\"secret_file=FILE\", \"timeout=TIME\" or "
                       "\"retries=N\" (0-10), each once", &value[i]);
    return NGX_CONF_ERROR;
}


char *
ngx_esp_radius_nas_identifier(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_esp_domain_t  *d = conf;

    ngx_str_t              *value;
    ngx_esp_radius_conf_t  *rc;

    rc = ngx_esp_radius_conf(cf, d);
    if (rc == NULL) {
        return NGX_CONF_ERROR;
    }

    if (rc->nas_identifier.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0 || value[1].len > NGX_ESP_RADIUS_MAX_STRING) {
        return "must be 1 to 253 bytes long";
    }

    rc->nas_identifier = value[1];

    return NGX_CONF_OK;
}


char *
ngx_esp_radius_nas_ip_address(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_esp_domain_t  *d = conf;

    ngx_str_t              *value;
    ngx_esp_radius_conf_t  *rc;

    rc = ngx_esp_radius_conf(cf, d);
    if (rc == NULL) {
        return NGX_CONF_ERROR;
    }

    if (rc->nas_ip != INADDR_NONE) {
        return "is duplicate";
    }

    value = cf->args->elts;

    rc->nas_ip = ngx_inet_addr(value[1].data, value[1].len);

    if (rc->nas_ip == INADDR_NONE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid IPv4 address \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


char *
ngx_esp_radius_password(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_esp_domain_t  *d = conf;

    ngx_str_t              *value;
    ngx_esp_radius_conf_t  *rc;

    rc = ngx_esp_radius_conf(cf, d);
    if (rc == NULL) {
        return NGX_CONF_ERROR;
    }

    if (rc->password != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "code") == 0) {
        rc->password = NGX_ESP_RADIUS_PASSWORD_CODE;

    } else if (ngx_strcmp(value[1].data, "directory") == 0) {
        rc->password = NGX_ESP_RADIUS_PASSWORD_DIRECTORY;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\": expected \"code\" or "
                           "\"directory\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


char *
ngx_esp_radius_init_domain(ngx_conf_t *cf, ngx_esp_domain_t *d)
{
    ngx_esp_radius_conf_t  *rc;
    ngx_pool_cleanup_t     *cln;

    rc = d->radius;

    if (rc == NULL) {
        return NGX_CONF_OK;
    }

    if (rc->servers.nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "esp_sso_domain \"%V\": radius_* directives "
                           "without \"radius_server\"", &d->name);
        return NGX_CONF_ERROR;
    }

    ngx_conf_init_uint_value(rc->password, NGX_ESP_RADIUS_PASSWORD_CODE);

    if (rc->nas_identifier.data == NULL) {
        ngx_str_set(&rc->nas_identifier, "ngx_exchange_esp");
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_esp_radius_wipe;
    cln->data = rc;

    return NGX_CONF_OK;
}


static void
ngx_esp_radius_wipe(void *data)
{
    ngx_esp_radius_conf_t  *rc = data;

    ngx_uint_t                i;
    ngx_esp_radius_server_t  *s;

    s = rc->servers.elts;

    for (i = 0; i < rc->servers.nelts; i++) {
        ngx_explicit_memzero(s[i].secret.data, s[i].secret.len);
    }
}
