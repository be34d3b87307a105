
/*
 * Copyright (C) ngx_exchange_esp authors
 */


/*
 * The directory client's connections to domain controllers (DCs), on
 * nginx's own event-driven connections, never blocking the worker:
 * connect, LDAPS or StartTLS through nginx's OpenSSL, the DC's
 * certificate checked against its name or address, requests written and
 * answers read and framed (src/ngx_esp_ldap_ber.c decodes them), and the
 * pool: per worker and DC a small array of connection slots
 * (ldap_connections), kept open while idle.
 *
 * Every exchange on a slot runs under one timer (ldap_timeout); an idle
 * connection closes after a minute.  What a login does with an answer or
 * a failure is src/ngx_esp_ldap.c's: the connections tell it through the
 * worker's ngx_esp_ldap_handlers_t, and call nothing of it by name.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_http.h>

#include "ngx_esp_ldap_conn.h"
#include "ngx_esp_tls.h"


#define NGX_ESP_LDAP_BUFFER_SIZE      4096

/* well below AD's MaxConnIdleTime (900 s) */
#define NGX_ESP_LDAP_IDLE_TIMEOUT     60000


static void ngx_esp_ldap_connect_handler(ngx_event_t *ev);
static void ngx_esp_ldap_connected(ngx_esp_ldap_conn_t *conn);
static void ngx_esp_ldap_ssl_start(ngx_esp_ldap_conn_t *conn);
static void ngx_esp_ldap_ssl_handshake_handler(ngx_connection_t *c);
static void ngx_esp_ldap_ready(ngx_esp_ldap_conn_t *conn);
static void ngx_esp_ldap_write_handler(ngx_event_t *wev);
static void ngx_esp_ldap_read_handler(ngx_event_t *rev);
static void ngx_esp_ldap_idle_read(ngx_esp_ldap_conn_t *conn);
static ngx_int_t ngx_esp_ldap_message(ngx_esp_ldap_conn_t *conn,
    ngx_esp_ldap_msg_t *m);
static void ngx_esp_ldap_timer_handler(ngx_event_t *ev);
static void ngx_esp_ldap_fail(ngx_esp_ldap_conn_t *conn, ngx_uint_t why);
static void ngx_esp_ldap_orphan_done(ngx_esp_ldap_conn_t *conn,
    ngx_esp_auth_result_e result);
static void ngx_esp_ldap_dummy_handler(ngx_event_t *ev);
static u_char *ngx_esp_ldap_log_error(ngx_log_t *log, u_char *buf,
    size_t len);


ngx_int_t
ngx_esp_ldap_init_domain(ngx_conf_t *cf, ngx_esp_domain_t *d)
{
    ngx_uint_t                   i;
    ngx_esp_ldap_server_conf_t  *s;

    if (d->ssl) {
        return NGX_OK;
    }

    if (d->servers.nelts == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "esp_sso_domain \"%V\" in %s:%ui has no domain "
                      "controller (\"ldap_server\")",
                      &d->name, d->file, d->line);
        return NGX_ERROR;
    }

    s = d->servers.elts;

    for (i = 0; i < d->servers.nelts; i++) {

        if (!s[i].ldaps && !s[i].starttls) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "esp_sso_domain \"%V\" in %s:%ui: \"%V\" would "
                          "send passwords in clear text: use ldaps:// or "
                          "\"starttls\"", &d->name, d->file, d->line,
                          &s[i].name);
            return NGX_ERROR;
        }

        if (s[i].url.naddrs == 0 || s[i].url.host.len == 0) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "esp_sso_domain \"%V\" in %s:%ui: no address for "
                          "\"%V\"", &d->name, d->file, d->line, &s[i].name);
            return NGX_ERROR;
        }
    }

    if (d->timeout == 0 || d->timeout == NGX_CONF_UNSET_MSEC) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "esp_sso_domain \"%V\" in %s:%ui: \"ldap_timeout\" "
                      "must be set and not zero",
                      &d->name, d->file, d->line);
        return NGX_ERROR;
    }

    d->ssl = ngx_esp_tls_client(cf);
    if (d->ssl == NULL) {
        return NGX_ERROR;
    }

    if (!d->verify) {
        ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                      "ldap_verify is off in domain \"%V\" (%s:%ui): "
                      "domain controller certificates are not checked",
                      &d->name, d->file, d->line);
        return NGX_OK;
    }

    if (d->ca_certificate.len == 0) {

        /* the operating system's trust store */

        if (SSL_CTX_set_default_verify_paths(d->ssl->ctx) != 1) {
            ngx_ssl_error(NGX_LOG_EMERG, cf->log, 0,
                          "esp_sso_domain \"%V\" in %s:%ui: "
                          "SSL_CTX_set_default_verify_paths() failed",
                          &d->name, d->file, d->line);
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    if (ngx_ssl_trusted_certificate(cf, d->ssl, &d->ca_certificate,
                                    NGX_ESP_TLS_VERIFY_DEPTH)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "esp_sso_domain \"%V\" in %s:%ui: cannot load "
                      "\"ldap_ca_certificate\" \"%V\"",
                      &d->name, d->file, d->line, &d->ca_certificate);
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_esp_ldap_init_conns(ngx_cycle_t *cycle, ngx_esp_ldap_dc_t *dc)
{
    ngx_uint_t            j, n;
    ngx_esp_domain_t     *d;
    ngx_esp_ldap_conn_t  *conn;

    d = dc->lw->domain;
    n = (d->pool_size > 0) ? (ngx_uint_t) d->pool_size : 1;

    if (ngx_esp_tls_peer(cycle->pool, &dc->conf->url.host, &dc->peer)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    dc->nconns = n;
    dc->conns = ngx_pcalloc(cycle->pool, n * sizeof(ngx_esp_ldap_conn_t));
    if (dc->conns == NULL) {
        return NGX_ERROR;
    }

    for (j = 0; j < n; j++) {
        conn = &dc->conns[j];

        conn->dc = dc;
        conn->log = *cycle->log;
        conn->log.handler = ngx_esp_ldap_log_error;
        conn->log.data = conn;
        conn->log.action = NULL;

        conn->timer.handler = ngx_esp_ldap_timer_handler;
        conn->timer.data = conn;
        conn->timer.log = &conn->log;

        conn->out.log = &conn->log;
    }

    return NGX_OK;
}


ngx_esp_ldap_conn_t *
ngx_esp_ldap_get(ngx_esp_ldap_dc_t *dc, ngx_uint_t fresh)
{
    ngx_uint_t            i;
    ngx_esp_ldap_conn_t  *conn, *idle, *free;

    idle = NULL;
    free = NULL;

    for (i = 0; i < dc->nconns; i++) {
        conn = &dc->conns[i];

        if (conn->state == NGX_ESP_LDAP_IDLE && idle == NULL) {
            idle = conn;

        } else if (conn->state == NGX_ESP_LDAP_FREE && free == NULL) {
            free = conn;
        }
    }

    if (idle && !fresh) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, &idle->log, 0,
                       "esp ldap: reuse connection to %V #%uA",
                       &dc->conf->name, idle->peer.connection->number);

        if (idle->timer.timer_set) {
            ngx_del_timer(&idle->timer);
        }

        idle->peer.connection->idle = 0;
        idle->state = NGX_ESP_LDAP_BUSY;
        idle->log.action = "talking to domain controller";
        idle->reused = 1;

        return idle;
    }

    if (free == NULL && idle) {

        /* a fresh connection was asked for: the idle one may be dead too */

        ngx_esp_ldap_close(idle, 1);
        free = idle;
    }

    return free;
}


void
ngx_esp_ldap_connect(ngx_esp_ldap_conn_t *conn)
{
    ngx_int_t                    rc;
    ngx_esp_ldap_dc_t           *dc;
    ngx_esp_ldap_server_conf_t  *s;

    dc = conn->dc;
    s = dc->conf;

    conn->state = NGX_ESP_LDAP_CONNECTING;
    conn->out.msgid = 0;
    conn->expect = 0;
    conn->reused = 0;
    conn->log.action = "connecting to domain controller";

    /* one timer covers the connect, the handshake and the first answer */

    conn->timer.cancelable = 0;
    ngx_add_timer(&conn->timer, dc->lw->domain->timeout);

    rc = ngx_esp_tls_connect(&conn->peer, &s->url.addrs[0], &conn->log, conn,
                             ngx_esp_ldap_connect_handler);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, &conn->log, 0,
                   "esp ldap: connect to %V: %i", &s->name, rc);

    if (rc == NGX_ERROR || rc == NGX_DECLINED) {
        ngx_esp_ldap_fail(conn, rc == NGX_DECLINED
                                ? NGX_ESP_LDAP_FAIL_CONNECT
                                : NGX_ESP_LDAP_FAIL_INTERNAL);
        return;
    }

    if (rc == NGX_AGAIN) {
        return;
    }

    ngx_esp_ldap_connected(conn);
}


static void
ngx_esp_ldap_connect_handler(ngx_event_t *ev)
{
    ngx_connection_t  *c;

    c = ev->data;

    if (ngx_esp_tls_connected(c) != NGX_OK) {
        ngx_esp_ldap_fail(c->data, NGX_ESP_LDAP_FAIL_CONNECT);
        return;
    }

    ngx_esp_ldap_connected(c->data);
}


static void
ngx_esp_ldap_connected(ngx_esp_ldap_conn_t *conn)
{
    ngx_connection_t            *c;
    ngx_esp_ldap_server_conf_t  *s;

    c = conn->peer.connection;
    s = conn->dc->conf;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, &conn->log, 0,
                   "esp ldap: connected to %V #%uA", &s->name, c->number);

    if (s->ldaps) {
        ngx_esp_ldap_ssl_start(conn);
        return;
    }

    if (!s->starttls) {
        ngx_log_error(NGX_LOG_ALERT, &conn->log, 0,
                      "esp: LDAP without TLS is refused");
        ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_INTERNAL);
        return;
    }

    conn->state = NGX_ESP_LDAP_STARTTLS;
    conn->log.action = "asking domain controller for StartTLS";

    c->read->handler = ngx_esp_ldap_read_handler;
    c->write->handler = ngx_esp_ldap_write_handler;

    if (ngx_esp_ldap_encode_starttls(&conn->out) != NGX_OK) {
        ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_INTERNAL);
        return;
    }

    ngx_esp_ldap_send(conn, LDAP_RES_EXTENDED);
}


static void
ngx_esp_ldap_ssl_start(ngx_esp_ldap_conn_t *conn)
{
    ngx_int_t           rc;
    ngx_connection_t   *c;
    ngx_esp_domain_t   *d;
    ngx_esp_ldap_dc_t  *dc;

    c = conn->peer.connection;
    dc = conn->dc;
    d = dc->lw->domain;

    conn->state = NGX_ESP_LDAP_HANDSHAKE;
    conn->log.action = "SSL handshaking to domain controller";

    if (!conn->timer.timer_set) {
        conn->timer.cancelable = 0;
        ngx_add_timer(&conn->timer, d->timeout);
    }

    if (ngx_esp_tls_connection(d->ssl, c, &dc->peer, &conn->log) != NGX_OK) {
        ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_INTERNAL);
        return;
    }

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {
        c->ssl->handler = ngx_esp_ldap_ssl_handshake_handler;
        return;
    }

    ngx_esp_ldap_ssl_handshake_handler(c);
}


static void
ngx_esp_ldap_ssl_handshake_handler(ngx_connection_t *c)
{
    ngx_esp_ldap_conn_t  *conn;

    conn = c->data;

    if (!c->ssl->handshaked) {
        ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_TLS);
        return;
    }

    if (conn->dc->lw->domain->verify
        && ngx_esp_tls_verify(c, &conn->dc->peer, "domain controller",
                              &conn->dc->conf->name, &conn->log)
           != NGX_OK)
    {
        ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_VERIFY);
        return;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, &conn->log, 0,
                   "esp ldap: %s %s to %V",
                   SSL_get_version(c->ssl->connection),
                   SSL_get_cipher_name(c->ssl->connection),
                   &conn->dc->conf->name);

    ngx_esp_ldap_ready(conn);
}


static void
ngx_esp_ldap_ready(ngx_esp_ldap_conn_t *conn)
{
    ngx_connection_t  *c;

    c = conn->peer.connection;

    c->read->handler = ngx_esp_ldap_read_handler;
    c->write->handler = ngx_esp_ldap_write_handler;

    conn->state = NGX_ESP_LDAP_BUSY;
    conn->log.action = "talking to domain controller";

    if (conn->op) {
        conn->dc->lw->handlers.send(conn->op);
        return;
    }

    /* the op went away meanwhile: keep the connection for the next one */

    ngx_esp_ldap_release(conn);
}


void
ngx_esp_ldap_send(ngx_esp_ldap_conn_t *conn, ber_tag_t expect)
{
    ngx_connection_t  *c;

    c = conn->peer.connection;

    conn->expect = conn->out.msgid;
    conn->expect_type = expect;
    conn->sent = ngx_current_msec;

    if (!conn->timer.timer_set) {
        conn->timer.cancelable = 0;
        ngx_add_timer(&conn->timer, conn->dc->lw->domain->timeout);
    }

    c->write->handler = ngx_esp_ldap_write_handler;

    ngx_esp_ldap_write_handler(c->write);
}


static void
ngx_esp_ldap_write_handler(ngx_event_t *wev)
{
    ssize_t               n;
    ngx_connection_t     *c;
    ngx_esp_ldap_conn_t  *conn;

    c = wev->data;
    conn = c->data;

    while (conn->out.data) {

        n = c->send(c, conn->out.data + conn->out.sent,
                    conn->out.len - conn->out.sent);

        if (n == NGX_ERROR) {
            ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_CLOSED);
            return;
        }

        if (n == NGX_AGAIN || n == 0) {
            if (ngx_handle_write_event(wev, 0) != NGX_OK) {
                ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_INTERNAL);
            }

            return;
        }

        conn->out.sent += n;

        if (conn->out.sent == conn->out.len) {
            ngx_esp_ldap_free_out(&conn->out);
        }
    }

    if (ngx_handle_write_event(wev, 0) != NGX_OK) {
        ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_INTERNAL);
        return;
    }

    /* an answer may already wait, unread, in the socket or in SSL */

    if (c->read->ready || conn->in_pos < conn->in_len) {
        ngx_post_event(c->read, &ngx_posted_events);
    }
}


static void
ngx_esp_ldap_read_handler(ngx_event_t *rev)
{
    size_t                size;
    u_char               *p;
    ssize_t               n;
    ngx_int_t             rc;
    ngx_connection_t     *c;
    ngx_esp_ldap_msg_t    m;
    ngx_esp_ldap_conn_t  *conn;

    c = rev->data;
    conn = c->data;

    if (conn->state == NGX_ESP_LDAP_IDLE) {
        ngx_esp_ldap_idle_read(conn);
        return;
    }

    for ( ;; ) {

        size = 0;

        if (conn->in_pos < conn->in_len) {

            rc = ngx_esp_ldap_frame(conn->in + conn->in_pos,
                                    conn->in_len - conn->in_pos, &size);

            if (rc == NGX_ERROR) {
                ngx_log_error(NGX_LOG_ERR, &conn->log, 0,
                              "esp: domain controller %V sent an invalid "
                              "or oversized LDAP message",
                              &conn->dc->conf->name);
                ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_PROTOCOL);
                return;
            }

            if (rc == NGX_OK) {
                p = conn->in + conn->in_pos;
                conn->in_pos += size;

                if (ngx_esp_ldap_parse(p, size, &m) != NGX_OK) {
                    ngx_log_error(NGX_LOG_ERR, &conn->log, 0,
                                  "esp: domain controller %V sent an LDAP "
                                  "message that cannot be decoded",
                                  &conn->dc->conf->name);
                    ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_PROTOCOL);
                    return;
                }

                if (ngx_esp_ldap_message(conn, &m) == NGX_DONE) {
                    return;
                }

                continue;
            }
        }

        /* make room for the rest of the message */

        if (conn->in_pos) {
            ngx_memmove(conn->in, conn->in + conn->in_pos,
                        conn->in_len - conn->in_pos);
            conn->in_len -= conn->in_pos;
            conn->in_pos = 0;
        }

        if (size < NGX_ESP_LDAP_BUFFER_SIZE) {
            size = NGX_ESP_LDAP_BUFFER_SIZE;
        }

        if (size > conn->in_size) {
            /* liblber peeks at the byte after the last element it reads */
            p = ngx_alloc(size + 1, &conn->log);
            if (p == NULL) {
                ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_INTERNAL);
                return;
            }

            if (conn->in) {
                ngx_memcpy(p, conn->in, conn->in_len);
                ngx_free(conn->in);
            }

            conn->in = p;
            conn->in_size = size;
        }

        n = c->recv(c, conn->in + conn->in_len, conn->in_size - conn->in_len);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(rev, 0) != NGX_OK) {
                ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_INTERNAL);
            }

            return;
        }

        if (n == 0 || n == NGX_ERROR) {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, &conn->log, 0,
                           "esp ldap: %V closed the connection",
                           &conn->dc->conf->name);

            ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_CLOSED);
            return;
        }

        conn->in_len += n;
    }
}


static void
ngx_esp_ldap_idle_read(ngx_esp_ldap_conn_t *conn)
{
    u_char             buf[1];
    ssize_t            n;
    ngx_connection_t  *c;

    c = conn->peer.connection;

    if (c->close) {
        ngx_esp_ldap_close(conn, 1);
        return;
    }

    /* through SSL, so that session tickets and the like are not data */

    n = c->recv(c, buf, 1);

    if (n == NGX_AGAIN) {
        if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
            ngx_esp_ldap_close(conn, 0);
        }

        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, &conn->log, 0,
                   "esp ldap: idle connection to %V closed by it (%z)",
                   &conn->dc->conf->name, n);

    ngx_esp_ldap_close(conn, 0);
}


static ngx_int_t
ngx_esp_ldap_message(ngx_esp_ldap_conn_t *conn, ngx_esp_ldap_msg_t *m)
{
    u_char              text[256];
    size_t              n;
    ngx_esp_ldap_dc_t  *dc;

    dc = conn->dc;

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, &conn->log, 0,
                   "esp ldap: message %d type 0x%xl code %d from %V",
                   m->msgid, m->type, m->code, &dc->conf->name);

    if (m->msgid == 0) {

        /* unsolicited: a notice of disconnection */

        n = ngx_esp_ldap_printable(text, sizeof(text), &m->diag);

        ngx_log_error(NGX_LOG_WARN, &conn->log, 0,
                      "esp: domain controller %V disconnects: %d \"%*s\"",
                      &dc->conf->name, m->code, n, text);

        ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_CLOSED);
        return NGX_DONE;
    }

    if (m->msgid != conn->expect) {
        ngx_log_error(NGX_LOG_ERR, &conn->log, 0,
                      "esp: domain controller %V answered message %d, "
                      "expected %d", &dc->conf->name, m->msgid, conn->expect);
        ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_PROTOCOL);
        return NGX_DONE;
    }

    if (m->type == LDAP_RES_SEARCH_ENTRY
        || m->type == LDAP_RES_SEARCH_REFERENCE)
    {
        if (conn->expect_type != LDAP_RES_SEARCH_RESULT) {
            ngx_log_error(NGX_LOG_ERR, &conn->log, 0,
                          "esp: domain controller %V sent a search result "
                          "to a request that is no search",
                          &dc->conf->name);
            ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_PROTOCOL);
            return NGX_DONE;
        }

        /* referrals are not chased */

        if (m->type == LDAP_RES_SEARCH_ENTRY && conn->op
            && dc->lw->handlers.answer(conn->op, m) != NGX_OK)
        {
            ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_INTERNAL);
            return NGX_DONE;
        }

        return NGX_OK;
    }

    if (m->type != conn->expect_type) {
        ngx_log_error(NGX_LOG_ERR, &conn->log, 0,
                      "esp: domain controller %V sent an answer of type "
                      "0x%xl, expected 0x%xl",
                      &dc->conf->name, m->type, conn->expect_type);
        ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_PROTOCOL);
        return NGX_DONE;
    }

    /* the exchange is over */

    conn->expect = 0;
    conn->reused = 0;

    if (conn->timer.timer_set) {
        ngx_del_timer(&conn->timer);
    }

    if (m->code != LDAP_BUSY && m->code != LDAP_UNAVAILABLE) {
        dc->lw->handlers.up(dc);
    }

    if (conn->state == NGX_ESP_LDAP_STARTTLS) {

        if (m->code != LDAP_SUCCESS) {
            n = ngx_esp_ldap_printable(text, sizeof(text), &m->diag);

            ngx_log_error(NGX_LOG_ERR, &conn->log, 0,
                          "esp: domain controller %V refused StartTLS: "
                          "%d (%s) \"%*s\"", &dc->conf->name, m->code,
                          ldap_err2string(m->code), n, text);
            ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_REFUSED);
            return NGX_DONE;
        }

        if (conn->in_pos != conn->in_len) {
            ngx_log_error(NGX_LOG_ERR, &conn->log, 0,
                          "esp: domain controller %V sent data after "
                          "accepting StartTLS", &dc->conf->name);
            ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_PROTOCOL);
            return NGX_DONE;
        }

        ngx_esp_ldap_ssl_start(conn);
        return NGX_DONE;
    }

    if (conn->op == NULL) {

        /* the op went away while its request was out */

        if (conn->orphan) {
            ngx_esp_ldap_orphan_done(conn,
                m->type == LDAP_RES_MODIFY ? ngx_esp_ldap_modify_result(m)
                : m->code == LDAP_SUCCESS ? NGX_ESP_AUTH_OK
                : m->code == LDAP_INVALID_CREDENTIALS
                  ? ngx_esp_ldap_ad_result(ngx_esp_ldap_ad_code(&m->diag))
                  : NGX_ESP_AUTH_ERROR);
        }

        ngx_esp_ldap_release(conn);
        return NGX_DONE;
    }

    return dc->lw->handlers.answer(conn->op, m);
}


static void
ngx_esp_ldap_timer_handler(ngx_event_t *ev)
{
    ngx_esp_ldap_conn_t  *conn;

    conn = ev->data;

    if (conn->state == NGX_ESP_LDAP_IDLE) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, &conn->log, 0,
                       "esp ldap: idle connection to %V timed out",
                       &conn->dc->conf->name);

        ngx_esp_ldap_close(conn, 1);
        return;
    }

    ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_TIMEOUT);
}


/*
 * The connection is healthy and nobody needs it any more: its op, if it
 * had one, has let go of it (conn->op is NULL)
 */

void
ngx_esp_ldap_release(ngx_esp_ldap_conn_t *conn)
{
    ngx_connection_t     *c;
    ngx_esp_ldap_dc_t    *dc;

    c = conn->peer.connection;
    dc = conn->dc;

    if (conn->timer.timer_set) {
        ngx_del_timer(&conn->timer);
    }

    ngx_esp_ldap_free_out(&conn->out);

    if (ngx_terminate || ngx_exiting || c->close
        || conn->in_pos != conn->in_len)
    {
        ngx_esp_ldap_close(conn, conn->in_pos == conn->in_len);
        return;
    }

    conn->in_pos = 0;
    conn->in_len = 0;

    if (conn->in_size > NGX_ESP_LDAP_BUFFER_SIZE) {
        ngx_free(conn->in);
        conn->in = NULL;
        conn->in_size = 0;
    }

    if (dc->lw->handlers.idle(conn) == NGX_OK) {
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, &conn->log, 0,
                   "esp ldap: connection to %V #%uA is idle",
                   &dc->conf->name, c->number);

    conn->state = NGX_ESP_LDAP_IDLE;
    conn->log.action = NULL;

    c->idle = 1;
    c->read->handler = ngx_esp_ldap_read_handler;
    c->write->handler = ngx_esp_ldap_dummy_handler;

    conn->timer.cancelable = 1;
    ngx_add_timer(&conn->timer, NGX_ESP_LDAP_IDLE_TIMEOUT);

    if (c->read->ready) {
        ngx_post_event(c->read, &ngx_posted_events);
    }
}


void
ngx_esp_ldap_close(ngx_esp_ldap_conn_t *conn, ngx_uint_t clean)
{
    ngx_connection_t  *c;

    /* an abandoned bind that got no answer: failed, time-out, exit */

    ngx_esp_ldap_orphan_done(conn, NGX_ESP_AUTH_UNAVAILABLE);

    if (conn->timer.timer_set) {
        ngx_del_timer(&conn->timer);
    }

    ngx_esp_ldap_free_out(&conn->out);

    if (conn->in) {
        ngx_free(conn->in);
        conn->in = NULL;
    }

    conn->in_size = 0;
    conn->in_pos = 0;
    conn->in_len = 0;
    conn->expect = 0;
    conn->reused = 0;
    conn->log.action = NULL;

    c = conn->peer.connection;
    conn->peer.connection = NULL;

    if (c == NULL) {
        conn->state = NGX_ESP_LDAP_FREE;
        return;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, &conn->log, 0,
                   "esp ldap: close connection to %V #%uA, clean: %ui",
                   &conn->dc->conf->name, c->number, clean);

    /* an unbind says goodbye; best effort, it must not wait */

    if (clean && conn->state == NGX_ESP_LDAP_IDLE
        && ngx_esp_ldap_encode_unbind(&conn->out) == NGX_OK)
    {
        (void) c->send(c, conn->out.data, conn->out.len);
        ngx_esp_ldap_free_out(&conn->out);
    }

    conn->state = NGX_ESP_LDAP_FREE;

    ngx_esp_tls_close(c, clean);
}


/* what a failure means for the login is not the connection's to decide */

static void
ngx_esp_ldap_fail(ngx_esp_ldap_conn_t *conn, ngx_uint_t why)
{
    conn->dc->lw->handlers.fail(conn, why);
}


static void
ngx_esp_ldap_orphan_done(ngx_esp_ldap_conn_t *conn,
    ngx_esp_auth_result_e result)
{
    ngx_esp_ldap_orphan_pt  orphan;

    orphan = conn->orphan;

    if (orphan == NULL) {
        return;
    }

    conn->orphan = NULL;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, &conn->log, 0,
                   "esp ldap: abandoned bind on %V: result %ui",
                   &conn->dc->conf->name, (ngx_uint_t) result);

    orphan(conn->orphan_data, result);
}


static void
ngx_esp_ldap_dummy_handler(ngx_event_t *ev)
{
    return;
}


static u_char *
ngx_esp_ldap_log_error(ngx_log_t *log, u_char *buf, size_t len)
{
    u_char               *p;
    ngx_esp_ldap_conn_t  *conn;

    p = buf;

    if (log->action) {
        p = ngx_snprintf(buf, len, " while %s", log->action);
        len -= p - buf;
        buf = p;
    }

    conn = log->data;

    p = ngx_snprintf(buf, len, ", domain controller: %V, domain: %V",
                     &conn->dc->conf->name, &conn->dc->lw->domain->name);

    return p;
}
