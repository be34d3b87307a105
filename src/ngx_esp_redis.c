
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>

#include "ngx_esp_redis.h"
#include "ngx_esp_resp.h"


#define NGX_ESP_REDIS_FREE         0
#define NGX_ESP_REDIS_CONNECTING   1
#define NGX_ESP_REDIS_HANDSHAKE    2
#define NGX_ESP_REDIS_READY        3

/* how long a store that no server answers for is not asked again */
#define NGX_ESP_REDIS_DOWN         1000

#define NGX_ESP_REDIS_READ_SIZE    16384

/* a reply larger than this is a broken or hostile server */
#define NGX_ESP_REDIS_MAX_BUFFER   (4 * 1024 * 1024)


typedef struct {
    ngx_peer_connection_t      peer;
    ngx_esp_redis_t           *rs;
    ngx_uint_t                 state;
    ngx_uint_t                 server;
    ngx_event_t                timer;
    ngx_log_t                  log;
    redisReader               *reader;
    ngx_queue_t                sendq;        /* not (wholly) sent yet */
    ngx_queue_t                waitq;        /* sent, waiting for replies */
    size_t                     sent;         /* of the sendq's head */
    ngx_uint_t                 pending;
} ngx_esp_redis_conn_t;


static ngx_esp_redis_conn_t *ngx_esp_redis_pick(ngx_esp_redis_t *rs);
static void ngx_esp_redis_connect(ngx_esp_redis_conn_t *conn);
static void ngx_esp_redis_connect_handler(ngx_event_t *ev);
static void ngx_esp_redis_connected(ngx_esp_redis_conn_t *conn);
static void ngx_esp_redis_handshake_handler(ngx_connection_t *c);
static void ngx_esp_redis_ready(ngx_esp_redis_conn_t *conn);
static void ngx_esp_redis_auth_done(ngx_esp_redis_cmd_t *cmd,
    redisReply *reply);
static ngx_esp_redis_cmd_t *ngx_esp_redis_format(ngx_esp_redis_t *rs,
    int argc, const char **argv, const size_t *argvlen,
    ngx_esp_redis_handler_pt handler, void *data);
static void ngx_esp_redis_write_handler(ngx_event_t *wev);
static void ngx_esp_redis_read_handler(ngx_event_t *rev);
static ngx_int_t ngx_esp_redis_reply(ngx_esp_redis_conn_t *conn,
    redisReply *reply);
static void ngx_esp_redis_timer_handler(ngx_event_t *ev);
static void ngx_esp_redis_fail(ngx_esp_redis_conn_t *conn, const char *why);
static void ngx_esp_redis_close_peer(ngx_esp_redis_conn_t *conn,
    ngx_uint_t clean);
static void ngx_esp_redis_close(ngx_esp_redis_conn_t *conn,
    ngx_uint_t clean);
static void ngx_esp_redis_free_cmd(ngx_esp_redis_cmd_t *cmd);
static u_char *ngx_esp_redis_log_error(ngx_log_t *log, u_char *buf,
    size_t len);


ngx_int_t
ngx_esp_redis_init_conf(ngx_conf_t *cf, ngx_esp_redis_conf_t *rc)
{
    ngx_uint_t               i, tls;
    ngx_esp_redis_server_t  *s;

    s = rc->servers.elts;
    tls = 0;

    for (i = 0; i < rc->servers.nelts; i++) {
        if (ngx_esp_tls_peer(cf->pool, &s[i].url.host, &s[i].peer)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        tls |= s[i].tls;
    }

    if (!tls) {
        return NGX_OK;
    }

    rc->ssl = ngx_esp_tls_client(cf);
    if (rc->ssl == NULL) {
        return NGX_ERROR;
    }

    if (!rc->verify) {
        ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                      "esp_cluster in %s:%ui: verify=off: the store's "
                      "certificate is not checked", rc->file, rc->line);
        return NGX_OK;
    }

    if (rc->ca_certificate.len == 0) {
        if (SSL_CTX_set_default_verify_paths(rc->ssl->ctx) != 1) {
            ngx_ssl_error(NGX_LOG_EMERG, cf->log, 0,
                          "esp_cluster in %s:%ui: "
                          "SSL_CTX_set_default_verify_paths() failed",
                          rc->file, rc->line);
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    if (ngx_ssl_trusted_certificate(cf, rc->ssl, &rc->ca_certificate,
                                    NGX_ESP_TLS_VERIFY_DEPTH)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "esp_cluster in %s:%ui: cannot load "
                      "\"ca_certificate=%V\"", rc->file, rc->line,
                      &rc->ca_certificate);
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_esp_redis_t *
ngx_esp_redis_create(ngx_cycle_t *cycle, ngx_esp_redis_conf_t *conf,
    ngx_uint_t n)
{
    ngx_uint_t             i;
    ngx_esp_redis_t       *rs;
    ngx_esp_redis_conn_t  *conn;

    rs = ngx_pcalloc(cycle->pool, sizeof(ngx_esp_redis_t));
    if (rs == NULL) {
        return NULL;
    }

    conn = ngx_pcalloc(cycle->pool, n * sizeof(ngx_esp_redis_conn_t));
    if (conn == NULL) {
        return NULL;
    }

    rs->conf = conf;
    rs->conns = conn;
    rs->nconns = n;
    rs->log = cycle->log;

    for (i = 0; i < n; i++) {
        conn[i].rs = rs;
        conn[i].log = *cycle->log;
        conn[i].log.handler = ngx_esp_redis_log_error;
        conn[i].log.data = &conn[i];
        conn[i].log.action = NULL;

        conn[i].timer.handler = ngx_esp_redis_timer_handler;
        conn[i].timer.data = &conn[i];
        conn[i].timer.log = &conn[i].log;
        /* a graceful exit waits for the replies (at most a time-out) */
        conn[i].timer.cancelable = 0;

        ngx_queue_init(&conn[i].sendq);
        ngx_queue_init(&conn[i].waitq);
    }

    return rs;
}


ngx_esp_redis_cmd_t *
ngx_esp_redis_command(ngx_esp_redis_t *rs, int argc, const char **argv,
    const size_t *argvlen, ngx_esp_redis_handler_pt handler, void *data)
{
    ngx_esp_redis_cmd_t   *cmd;
    ngx_esp_redis_conn_t  *conn;

    if (rs->exiting) {
        return NULL;
    }

    if (rs->is_down
        && (ngx_msec_int_t) (rs->down_until - ngx_current_msec) > 0)
    {
        return NULL;
    }

    conn = ngx_esp_redis_pick(rs);
    if (conn == NULL) {
        return NULL;
    }

    /* a connect that fails at once must not call the handler now */

    if (conn->state == NGX_ESP_REDIS_FREE) {
        ngx_esp_redis_connect(conn);

        if (conn->state == NGX_ESP_REDIS_FREE) {
            return NULL;
        }
    }

    cmd = ngx_esp_redis_format(rs, argc, argv, argvlen, handler, data);
    if (cmd == NULL) {
        return NULL;
    }

    ngx_queue_insert_tail(&conn->sendq, &cmd->queue);
    conn->pending++;

    if (conn->state == NGX_ESP_REDIS_READY) {
        if (!conn->timer.timer_set) {
            ngx_add_timer(&conn->timer, rs->conf->timeout);
        }

        ngx_esp_redis_write_handler(conn->peer.connection->write);
    }

    return cmd;
}


void
ngx_esp_redis_close_all(ngx_esp_redis_t *rs)
{
    ngx_uint_t             i;
    ngx_esp_redis_conn_t  *conn;

    conn = rs->conns;

    for (i = 0; i < rs->nconns; i++) {
        if (conn[i].state != NGX_ESP_REDIS_FREE) {
            ngx_esp_redis_close(&conn[i], 1);
        }
    }
}


/* the ready connection with the fewest commands waiting, else any */

static ngx_esp_redis_conn_t *
ngx_esp_redis_pick(ngx_esp_redis_t *rs)
{
    ngx_uint_t             i;
    ngx_esp_redis_conn_t  *conn, *best, *busy, *free;

    conn = rs->conns;
    best = NULL;
    busy = NULL;
    free = NULL;

    for (i = 0; i < rs->nconns; i++) {

        switch (conn[i].state) {

        case NGX_ESP_REDIS_READY:
            if (best == NULL || conn[i].pending < best->pending) {
                best = &conn[i];
            }
            break;

        case NGX_ESP_REDIS_FREE:
            if (free == NULL) {
                free = &conn[i];
            }
            break;

        default:
            busy = &conn[i];
            break;
        }
    }

    /* another connection when the ready ones are busy, up to the pool */

    if (best && (best->pending == 0 || free == NULL)) {
        return best;
    }

    if (busy) {
        return busy;
    }

    return free ? free : best;
}


static void
ngx_esp_redis_connect(ngx_esp_redis_conn_t *conn)
{
    ngx_int_t                rc;
    ngx_esp_redis_t         *rs;
    ngx_esp_redis_server_t  *s;

    rs = conn->rs;

    conn->server = rs->server;
    s = (ngx_esp_redis_server_t *) rs->conf->servers.elts + conn->server;

    conn->state = NGX_ESP_REDIS_CONNECTING;
    conn->sent = 0;
    conn->log.action = "connecting to the cluster store";

    conn->reader = ngx_esp_resp_reader();
    if (conn->reader == NULL) {
        ngx_esp_redis_fail(conn, "no memory");
        return;
    }

    /* one timer covers the connect, the handshake and the first replies */

    if (conn->timer.timer_set) {
        ngx_del_timer(&conn->timer);
    }

    ngx_add_timer(&conn->timer, rs->conf->connect_timeout);

    rc = ngx_esp_tls_connect(&conn->peer, &s->url.addrs[0], &conn->log, conn,
                             ngx_esp_redis_connect_handler);

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, &conn->log, 0,
                   "esp redis: connect to %V: %i", &s->name, rc);

    if (rc == NGX_ERROR || rc == NGX_DECLINED) {
        ngx_esp_redis_fail(conn, "connect() failed");
        return;
    }

    if (rc == NGX_AGAIN) {
        return;
    }

    ngx_esp_redis_connected(conn);
}


static void
ngx_esp_redis_connect_handler(ngx_event_t *ev)
{
    ngx_connection_t  *c;

    c = ev->data;

    if (ngx_esp_tls_connected(c) != NGX_OK) {
        ngx_esp_redis_fail(c->data, "connect() failed");
        return;
    }

    ngx_esp_redis_connected(c->data);
}


static void
ngx_esp_redis_connected(ngx_esp_redis_conn_t *conn)
{
    ngx_int_t                rc;
    ngx_connection_t        *c;
    ngx_esp_redis_conf_t    *rcf;
    ngx_esp_redis_server_t  *s;

    c = conn->peer.connection;
    rcf = conn->rs->conf;
    s = (ngx_esp_redis_server_t *) rcf->servers.elts + conn->server;

    if (!s->tls) {
        ngx_esp_redis_ready(conn);
        return;
    }

    conn->state = NGX_ESP_REDIS_HANDSHAKE;
    conn->log.action = "SSL handshaking to the cluster store";

    if (ngx_esp_tls_connection(rcf->ssl, c, &s->peer, &conn->log)
        != NGX_OK)
    {
        ngx_esp_redis_fail(conn, "TLS set-up failed");
        return;
    }

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {
        c->ssl->handler = ngx_esp_redis_handshake_handler;
        return;
    }

    ngx_esp_redis_handshake_handler(c);
}


static void
ngx_esp_redis_handshake_handler(ngx_connection_t *c)
{
    ngx_esp_redis_conn_t    *conn;
    ngx_esp_redis_server_t  *s;

    conn = c->data;
    s = (ngx_esp_redis_server_t *) conn->rs->conf->servers.elts
        + conn->server;

    if (!c->ssl->handshaked) {
        ngx_esp_redis_fail(conn, "TLS handshake failed");
        return;
    }

    if (conn->rs->conf->verify
        && ngx_esp_tls_verify(c, &s->peer, "cluster store", &s->name,
                              &conn->log)
           != NGX_OK)
    {
        ngx_esp_redis_fail(conn, "certificate not verified");
        return;
    }

    ngx_esp_redis_ready(conn);
}


/* AUTH goes first, before whatever waited for the connection */

static void
ngx_esp_redis_ready(ngx_esp_redis_conn_t *conn)
{
    int                    argc;
    size_t                 len[3];
    const char            *argv[3];
    ngx_connection_t      *c;
    ngx_esp_redis_t       *rs;
    ngx_esp_redis_cmd_t   *cmd;
    ngx_esp_redis_conf_t  *rcf;

    c = conn->peer.connection;
    rs = conn->rs;
    rcf = rs->conf;

    conn->state = NGX_ESP_REDIS_READY;
    conn->log.action = "talking to the cluster store";

    c->read->handler = ngx_esp_redis_read_handler;
    c->write->handler = ngx_esp_redis_write_handler;

    if (rcf->password.len) {
        argc = 0;
        argv[argc] = "AUTH";
        len[argc++] = 4;

        if (rcf->user.len) {
            argv[argc] = (const char *) rcf->user.data;
            len[argc++] = rcf->user.len;
        }

        argv[argc] = (const char *) rcf->password.data;
        len[argc++] = rcf->password.len;

        cmd = ngx_esp_redis_format(rs, argc, argv, len,
                                   ngx_esp_redis_auth_done, conn);

        /* the formatted password is wiped when the command is freed */

        if (cmd == NULL) {
            ngx_esp_redis_fail(conn, "no memory");
            return;
        }

        ngx_queue_insert_head(&conn->sendq, &cmd->queue);
        conn->pending++;
    }

    if (rs->up) {
        rs->up(rs);
    }

    if (conn->state != NGX_ESP_REDIS_READY) {
        return;
    }

    if (ngx_queue_empty(&conn->sendq)) {
        if (conn->timer.timer_set) {
            ngx_del_timer(&conn->timer);
        }

        return;
    }

    ngx_esp_redis_write_handler(c->write);
}


static void
ngx_esp_redis_auth_done(ngx_esp_redis_cmd_t *cmd, redisReply *reply)
{
    ngx_esp_redis_conn_t  *conn = cmd->data;

    if (reply == NULL || reply->type != REDIS_REPLY_ERROR) {
        return;
    }

    /* the server's own words: they never contain the password */

    ngx_log_error(NGX_LOG_ERR, &conn->log, 0,
                  "esp: the cluster store refused the login: %*s",
                  ngx_min(reply->len, 200), reply->str);

    ngx_esp_redis_fail(conn, NULL);
}


static ngx_esp_redis_cmd_t *
ngx_esp_redis_format(ngx_esp_redis_t *rs, int argc, const char **argv,
    const size_t *argvlen, ngx_esp_redis_handler_pt handler, void *data)
{
    int                   n;
    char                 *buf;
    ngx_esp_redis_cmd_t  *cmd;

    n = redisFormatCommandArgv(&buf, argc, argv, argvlen);
    if (n <= 0) {
        return NULL;
    }

    cmd = ngx_alloc(sizeof(ngx_esp_redis_cmd_t), rs->log);
    if (cmd == NULL) {
        ngx_explicit_memzero(buf, n);
        redisFreeCommand(buf);
        return NULL;
    }

    cmd->handler = handler;
    cmd->data = data;
    cmd->buf = buf;
    cmd->len = n;

    return cmd;
}


static void
ngx_esp_redis_write_handler(ngx_event_t *wev)
{
    ssize_t                n;
    ngx_queue_t           *q;
    ngx_connection_t      *c;
    ngx_esp_redis_cmd_t   *cmd;
    ngx_esp_redis_conn_t  *conn;

    c = wev->data;
    conn = c->data;

    while (!ngx_queue_empty(&conn->sendq)) {

        q = ngx_queue_head(&conn->sendq);
        cmd = ngx_queue_data(q, ngx_esp_redis_cmd_t, queue);

        n = c->send(c, (u_char *) cmd->buf + conn->sent,
                    cmd->len - conn->sent);

        if (n == NGX_ERROR) {
            ngx_esp_redis_fail(conn, "send() failed");
            return;
        }

        if (n == NGX_AGAIN) {
            break;
        }

        conn->sent += n;

        if (conn->sent < cmd->len) {
            continue;
        }

        conn->sent = 0;
        ngx_queue_remove(q);
        ngx_queue_insert_tail(&conn->waitq, q);
    }

    if (ngx_handle_write_event(wev, 0) != NGX_OK) {
        ngx_esp_redis_fail(conn, "no write event");
    }
}


static void
ngx_esp_redis_read_handler(ngx_event_t *rev)
{
    void                  *reply;
    ssize_t                n;
    ngx_connection_t      *c;
    ngx_esp_redis_conn_t  *conn;
    u_char                 buf[NGX_ESP_REDIS_READ_SIZE];

    c = rev->data;
    conn = c->data;

    for ( ;; ) {
        n = c->recv(c, buf, sizeof(buf));

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0 || n == NGX_ERROR) {
            if (conn->pending == 0 && n == 0) {
                /* an idle connection the server closed: not a failure */
                ngx_esp_redis_close(conn, 0);
                return;
            }

            ngx_esp_redis_fail(conn, "the connection was closed");
            return;
        }

        if (conn->pending == 0 && conn->rs->push == NULL) {
            ngx_esp_redis_fail(conn, "a reply to no command");
            return;
        }

        if (redisReaderFeed(conn->reader, (const char *) buf, n)
            != REDIS_OK
            || conn->reader->len > NGX_ESP_REDIS_MAX_BUFFER)
        {
            ngx_esp_redis_fail(conn, "a reply too large");
            return;
        }

        for ( ;; ) {
            reply = NULL;

            if (redisReaderGetReply(conn->reader, &reply) != REDIS_OK) {
                ngx_log_error(NGX_LOG_ERR, &conn->log, 0,
                              "esp: the cluster store sent a malformed "
                              "reply: %s", conn->reader->errstr);
                ngx_esp_redis_fail(conn, NULL);
                return;
            }

            if (reply == NULL) {
                break;
            }

            if (ngx_esp_redis_reply(conn, reply) != NGX_OK) {
                return;
            }
        }
    }

    if (conn->state != NGX_ESP_REDIS_READY) {
        return;
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_esp_redis_fail(conn, "no read event");
    }
}


/* NGX_OK: go on reading; otherwise the connection is gone */

static ngx_int_t
ngx_esp_redis_reply(ngx_esp_redis_conn_t *conn, redisReply *reply)
{
    ngx_queue_t          *q;
    ngx_esp_redis_t      *rs;
    ngx_esp_redis_cmd_t  *cmd;

    rs = conn->rs;

    if (rs->push
        && reply->type == REDIS_REPLY_ARRAY
        && reply->elements == 3
        && reply->element[0]->type == REDIS_REPLY_STRING
        && reply->element[0]->len == sizeof("message") - 1
        && ngx_strncmp(reply->element[0]->str, "message",
                       sizeof("message") - 1) == 0)
    {
        rs->push(rs, reply);
        freeReplyObject(reply);
        return (conn->state == NGX_ESP_REDIS_READY) ? NGX_OK : NGX_ERROR;
    }

    if (ngx_queue_empty(&conn->waitq)) {
        freeReplyObject(reply);
        ngx_esp_redis_fail(conn, "a reply to no command");
        return NGX_ERROR;
    }

    q = ngx_queue_head(&conn->waitq);
    ngx_queue_remove(q);
    conn->pending--;

    cmd = ngx_queue_data(q, ngx_esp_redis_cmd_t, queue);

    if ((rs->is_down || rs->failures) && reply->type != REDIS_REPLY_ERROR) {
        if (rs->is_down) {
            ngx_log_error(NGX_LOG_NOTICE, &conn->log, 0,
                          "esp: the cluster store is reachable again");
        }

        rs->is_down = 0;
        rs->failures = 0;
    }

    if (cmd->handler) {
        cmd->handler(cmd, reply);
    }

    ngx_esp_redis_free_cmd(cmd);
    freeReplyObject(reply);

    if (conn->state != NGX_ESP_REDIS_READY) {
        return NGX_ERROR;
    }

    /* the time-out starts again for what still waits */

    if (conn->pending) {
        ngx_add_timer(&conn->timer, rs->conf->timeout);

    } else if (conn->timer.timer_set) {
        ngx_del_timer(&conn->timer);
    }

    return NGX_OK;
}


static void
ngx_esp_redis_timer_handler(ngx_event_t *ev)
{
    ngx_esp_redis_conn_t  *conn = ev->data;

    ngx_esp_redis_fail(conn, conn->state == NGX_ESP_REDIS_READY
                             ? "timed out waiting for a reply"
                             : "timed out connecting");
}


/*
 * The connection failed: what waited on it fails, and the next server is
 * tried; when each has failed in turn the store is down for a moment.
 */

static void
ngx_esp_redis_fail(ngx_esp_redis_conn_t *conn, const char *why)
{
    ngx_uint_t        n;
    ngx_esp_redis_t  *rs;

    rs = conn->rs;
    n = rs->conf->servers.nelts;

    if (why) {
        ngx_log_error(NGX_LOG_ERR, &conn->log, 0,
                      "esp: cluster store failed: %s", why);
    }

    if (conn->server == rs->server) {
        rs->server = (rs->server + 1) % n;
        rs->failures++;
    }

    if (rs->failures >= n && !rs->exiting) {
        if (!rs->is_down) {
            ngx_log_error(NGX_LOG_ERR, &conn->log, 0,
                          "esp: the cluster store is unreachable: local "
                          "state only until it answers again");
        }

        rs->is_down = 1;
        rs->failures = 0;
        rs->down_until = ngx_current_msec + NGX_ESP_REDIS_DOWN;

        if (rs->down) {
            rs->down(rs);
        }
    }

    if (!rs->is_down && !rs->exiting
        && (conn->state == NGX_ESP_REDIS_CONNECTING
            || conn->state == NGX_ESP_REDIS_HANDSHAKE))
    {
        /* nothing was sent yet: what waits goes to the next server now */
        ngx_esp_redis_close_peer(conn, 0);
        ngx_esp_redis_connect(conn);
        return;
    }

    ngx_esp_redis_close(conn, 0);
}


static void
ngx_esp_redis_close_peer(ngx_esp_redis_conn_t *conn, ngx_uint_t clean)
{
    ngx_connection_t  *c;

    if (conn->timer.timer_set) {
        ngx_del_timer(&conn->timer);
    }

    if (conn->reader) {
        redisReaderFree(conn->reader);
        conn->reader = NULL;
    }

    c = conn->peer.connection;
    conn->peer.connection = NULL;
    conn->state = NGX_ESP_REDIS_FREE;
    conn->log.action = NULL;
    conn->sent = 0;

    if (c) {
        ngx_esp_tls_close(c, clean);
    }
}


static void
ngx_esp_redis_close(ngx_esp_redis_conn_t *conn, ngx_uint_t clean)
{
    ngx_queue_t          *q;
    ngx_queue_t           failed;
    ngx_esp_redis_cmd_t  *cmd;

    ngx_esp_redis_close_peer(conn, clean);

    conn->pending = 0;

    /* the handlers may send again: on another connection, or this one */

    ngx_queue_init(&failed);

    while (!ngx_queue_empty(&conn->waitq)) {
        q = ngx_queue_head(&conn->waitq);
        ngx_queue_remove(q);
        ngx_queue_insert_tail(&failed, q);
    }

    while (!ngx_queue_empty(&conn->sendq)) {
        q = ngx_queue_head(&conn->sendq);
        ngx_queue_remove(q);
        ngx_queue_insert_tail(&failed, q);
    }

    while (!ngx_queue_empty(&failed)) {
        q = ngx_queue_head(&failed);
        ngx_queue_remove(q);

        cmd = ngx_queue_data(q, ngx_esp_redis_cmd_t, queue);

        if (cmd->handler) {
            cmd->handler(cmd, NULL);
        }

        ngx_esp_redis_free_cmd(cmd);
    }
}


static void
ngx_esp_redis_free_cmd(ngx_esp_redis_cmd_t *cmd)
{
    /* AUTH carries the password */

    ngx_explicit_memzero(cmd->buf, cmd->len);
    redisFreeCommand(cmd->buf);
    ngx_free(cmd);
}


static u_char *
ngx_esp_redis_log_error(ngx_log_t *log, u_char *buf, size_t len)
{
    u_char                  *p;
    ngx_esp_redis_conn_t    *conn;
    ngx_esp_redis_server_t  *s;

    p = buf;

    if (log->action) {
        p = ngx_snprintf(buf, len, " while %s", log->action);
        len -= p - buf;
        buf = p;
    }

    conn = log->data;
    s = (ngx_esp_redis_server_t *) conn->rs->conf->servers.elts
        + conn->server;

    return ngx_snprintf(buf, len, ", cluster store: %V", &s->name);
}
