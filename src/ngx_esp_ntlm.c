
/*
 * Copyright (C) ngx_exchange_esp authors
 */


/*
 * Connection pinning for NTLM and Negotiate ("esp_ntlm" in upstream {}).
 *
 * IIS binds an NTLM handshake, and then the authenticated user, to one TCP
 * connection.  An upstream connection that carried such a handshake is
 * therefore kept attached to the client connection that made it: the next
 * request of that client connection to the same upstream {} gets exactly
 * that connection back, no other client connection ever gets it, and it
 * is closed with the client connection (or after "timeout" idle, or when
 * Exchange closes it).  It never enters the shared "keepalive" cache.
 * Requests of client connections that never did NTLM are left to the
 * balancer and to "keepalive" as if the directive were not there.
 *
 * Every upstream {} without the directive is guarded all the same: an
 * upstream connection that carried NTLM/Negotiate is closed after its
 * response, so that "keepalive" never hands it to another client.  Since
 * nginx 1.29.7 every upstream {} has "keepalive" by default; without the
 * guard, a configuration that was merely broken for NTLM on nginx 1.22
 * (the handshake fails) would answer one user's requests with another
 * user's Exchange session.
 *
 * The peer methods are wrapped at postconfiguration, after every upstream
 * has been initialized by its balancer and by "keepalive", so that this
 * layer is always the outermost one whatever the order of the directives:
 * its free() sees a connection before "keepalive" could cache it.
 *
 * The pins of a client connection live in its pool, found through the
 * pool cleanup that closes them.  Client connections belong to one worker,
 * so nothing is shared between workers.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_esp_ntlm.h"
#include "ngx_esp_epa.h"


#define NGX_ESP_NTLM_TIMEOUT  60000


typedef struct ngx_esp_ntlm_client_s  ngx_esp_ntlm_client_t;


/* an upstream connection bound to a client connection */
typedef struct {
    ngx_queue_t                      queue;         /* in client->pins */
    ngx_esp_ntlm_srv_conf_t         *conf;          /* its upstream {} */
    ngx_connection_t                *connection;    /* when idle */
    ngx_uint_t                       busy;          /* serving a request */

    socklen_t                        socklen;
    ngx_sockaddr_t                   sockaddr;
    ngx_str_t                        name;
    u_char                           name_data[NGX_SOCKADDR_STRLEN];
} ngx_esp_ntlm_pin_t;


/* the pins of one client connection, at most one per upstream {} */
struct ngx_esp_ntlm_client_s {
    ngx_queue_t                      pins;
};


typedef struct {
    ngx_esp_ntlm_srv_conf_t         *conf;
    ngx_http_request_t              *request;
    ngx_esp_ntlm_pin_t              *pin;           /* its connection in use */
    ngx_uint_t                       auth;          /* NTLM/Negotiate sent */
    ngx_uint_t                       pinning;       /* esp_ntlm, not a guard */

    void                            *data;
    ngx_event_get_peer_pt            original_get_peer;
    ngx_event_free_peer_pt           original_free_peer;
    ngx_event_notify_peer_pt         original_notify;

#if (NGX_HTTP_SSL)
    ngx_event_set_peer_session_pt    original_set_session;
    ngx_event_save_peer_session_pt   original_save_session;
#endif
} ngx_esp_ntlm_peer_data_t;


static ngx_int_t ngx_esp_ntlm_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_esp_ntlm_get_peer(ngx_peer_connection_t *pc,
    void *data);
static void ngx_esp_ntlm_free_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state);
static void ngx_esp_ntlm_notify_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t type);
#if (NGX_HTTP_SSL)
static ngx_int_t ngx_esp_ntlm_set_session(ngx_peer_connection_t *pc,
    void *data);
static void ngx_esp_ntlm_save_session(ngx_peer_connection_t *pc, void *data);
#endif

static ngx_esp_ntlm_pin_t *ngx_esp_ntlm_pin(ngx_esp_ntlm_peer_data_t *pd,
    ngx_uint_t create);
static ngx_uint_t ngx_esp_ntlm_reusable(ngx_esp_ntlm_peer_data_t *pd,
    ngx_connection_t *c, ngx_uint_t state);
static void ngx_esp_ntlm_park(ngx_esp_ntlm_pin_t *pin, ngx_connection_t *c);
static void ngx_esp_ntlm_dummy_handler(ngx_event_t *ev);
static void ngx_esp_ntlm_close_handler(ngx_event_t *ev);
static void ngx_esp_ntlm_close(ngx_connection_t *c);
static void ngx_esp_ntlm_client_cleanup(void *data);

static size_t ngx_esp_ntlm_scheme(u_char *p, u_char *last);
static ngx_uint_t ngx_esp_ntlm_authorization(ngx_http_request_t *r);
static ngx_uint_t ngx_esp_ntlm_challenge(ngx_http_upstream_t *u);
static void ngx_esp_ntlm_check_request(ngx_http_request_t *r,
    ngx_esp_ntlm_srv_conf_t *nscf);

static void *ngx_esp_ntlm_create_srv_conf(ngx_conf_t *cf);
static ngx_int_t ngx_esp_ntlm_init(ngx_conf_t *cf);
static char *ngx_esp_ntlm(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);


static ngx_command_t  ngx_esp_ntlm_commands[] = {

    { ngx_string("esp_ntlm"),
      NGX_HTTP_UPS_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_esp_ntlm,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_esp_ntlm_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_esp_ntlm_init,                     /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    ngx_esp_ntlm_create_srv_conf,          /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_esp_ntlm_module = {
    NGX_MODULE_V1,
    &ngx_esp_ntlm_module_ctx,              /* module context */
    ngx_esp_ntlm_commands,                 /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_esp_ntlm_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_http_upstream_t       *u;
    ngx_esp_ntlm_srv_conf_t   *nscf;
    ngx_esp_ntlm_peer_data_t  *pd;

    nscf = ngx_http_conf_upstream_srv_conf(us, ngx_esp_ntlm_module);

    pd = ngx_pcalloc(r->pool, sizeof(ngx_esp_ntlm_peer_data_t));
    if (pd == NULL) {
        return NGX_ERROR;
    }

    if (nscf->original_init_peer(r, us) != NGX_OK) {
        return NGX_ERROR;
    }

    u = r->upstream;

    pd->conf = nscf;
    pd->request = r;
    pd->auth = ngx_esp_ntlm_authorization(r);
    pd->pinning = (nscf->enable == 1);

    pd->data = u->peer.data;
    pd->original_get_peer = u->peer.get;
    pd->original_free_peer = u->peer.free;

    u->peer.data = pd;
    u->peer.get = ngx_esp_ntlm_get_peer;
    u->peer.free = ngx_esp_ntlm_free_peer;

    if (u->peer.notify) {
        pd->original_notify = u->peer.notify;
        u->peer.notify = ngx_esp_ntlm_notify_peer;
    }

#if (NGX_HTTP_SSL)
    pd->original_set_session = u->peer.set_session;
    pd->original_save_session = u->peer.save_session;
    u->peer.set_session = ngx_esp_ntlm_set_session;
    u->peer.save_session = ngx_esp_ntlm_save_session;
#endif

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "esp ntlm: init peer, ntlm authorization: %ui, pinning: %ui",
                   pd->auth, pd->pinning);

    if (pd->auth && pd->pinning) {
        ngx_esp_ntlm_check_request(r, nscf);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_esp_ntlm_get_peer(ngx_peer_connection_t *pc, void *data)
{
    ngx_esp_ntlm_peer_data_t *pd = data;

    ngx_connection_t    *c;
    ngx_esp_ntlm_pin_t  *pin;

    pd->pin = NULL;

    pin = pd->pinning ? ngx_esp_ntlm_pin(pd, 0) : NULL;

    if (pin == NULL || pin->connection == NULL) {
        return pd->original_get_peer(pc, pd->data);
    }

    /*
     * The client connection has its own upstream connection: the balancer
     * is not asked, since no other connection may carry this client's
     * authentication; free() knows the balancer never saw this try.
     */

    c = pin->connection;

    pin->connection = NULL;
    pin->busy = 1;
    pd->pin = pin;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                   "esp ntlm: using pinned connection %p", c);

    c->idle = 0;
    c->sent = 0;
    c->data = NULL;
    c->log = pc->log;
    c->read->log = pc->log;
    c->write->log = pc->log;
    c->pool->log = pc->log;

    if (c->read->timer_set) {
        c->read->delayed = 0;
        ngx_del_timer(c->read);
    }

    pc->connection = c;
    pc->cached = 1;
    pc->sockaddr = &pin->sockaddr.sockaddr;
    pc->socklen = pin->socklen;
    pc->name = &pin->name;

    return NGX_DONE;
}


static void
ngx_esp_ntlm_free_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state)
{
    ngx_esp_ntlm_peer_data_t *pd = data;

    size_t                len;
    ngx_connection_t     *c;
    ngx_esp_ntlm_pin_t   *pin;
    ngx_http_upstream_t  *u;

    c = pc->connection;
    u = pd->request->upstream;

    pin = pd->pin;
    pd->pin = NULL;

    if (pd->pinning) {
        ngx_esp_epa_check(pd->request, c, pc->name, pd->conf, pd->conf->name);
    }

    if (pin) {
        pin->busy = 0;

        if (ngx_esp_ntlm_reusable(pd, c, state)) {
            pc->connection = NULL;
            ngx_esp_ntlm_park(pin, c);
            return;
        }

        /*
         * upstream closes the connection; as with a cached connection,
         * ngx_http_upstream_next() gives the failed try back
         */

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                       "esp ntlm: pinned connection %p dropped, state %ui",
                       c, state);

        if (pc->tries) {
            pc->tries--;
        }

        return;
    }

    if (!pd->auth && !ngx_esp_ntlm_challenge(u)) {
        pd->original_free_peer(pc, pd->data, state);
        return;
    }

    /*
     * The connection carried an NTLM/Negotiate handshake: it is pinned to
     * the client connection or closed, never cached for everyone.  The
     * balancer (and a "keepalive" below it) is told the try ended without
     * a connection to keep.
     */

    pc->connection = NULL;
    pd->original_free_peer(pc, pd->data, state);
    pc->connection = c;

    if (!pd->pinning) {
        /* a guarded upstream {}: upstream closes the connection */

        if (!pd->conf->guard_warned) {
            pd->conf->guard_warned = 1;

            ngx_log_error(NGX_LOG_WARN, pc->log, 0,
                          "esp_ntlm: upstream \"%V\" carried an NTLM or "
                          "Negotiate handshake but has no \"esp_ntlm\": its "
                          "connections that do are closed, never reused, so "
                          "the handshakes fail; add \"esp_ntlm;\" to that "
                          "upstream {}", pd->conf->name);
        }

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                       "esp ntlm: NTLM connection %p not cached, closed", c);
        return;
    }

    if (!ngx_esp_ntlm_reusable(pd, c, state)) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                       "esp ntlm: connection %p not kept, closed", c);
        return;
    }

    pin = ngx_esp_ntlm_pin(pd, 1);

    if (pin == NULL || pin->busy || pin->connection) {
        /* HTTP/2, or the client already has one for this upstream {} */
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                       "esp ntlm: connection %p cannot be pinned, closed", c);
        return;
    }

    pin->socklen = pc->socklen;
    ngx_memcpy(&pin->sockaddr, pc->sockaddr, pc->socklen);

    len = 0;

    if (pc->name) {
        len = ngx_min(pc->name->len, sizeof(pin->name_data));
        ngx_memcpy(pin->name_data, pc->name->data, len);
    }

    pin->name.len = len;
    pin->name.data = pin->name_data;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                   "esp ntlm: pinning connection %p", c);

    pc->connection = NULL;
    ngx_esp_ntlm_park(pin, c);
}


static void
ngx_esp_ntlm_notify_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t type)
{
    ngx_esp_ntlm_peer_data_t *pd = data;

    if (pd->pin == NULL) {
        pd->original_notify(pc, pd->data, type);
    }
}


#if (NGX_HTTP_SSL)

static ngx_int_t
ngx_esp_ntlm_set_session(ngx_peer_connection_t *pc, void *data)
{
    ngx_esp_ntlm_peer_data_t *pd = data;

    return pd->original_set_session(pc, pd->data);
}


static void
ngx_esp_ntlm_save_session(ngx_peer_connection_t *pc, void *data)
{
    ngx_esp_ntlm_peer_data_t *pd = data;

    pd->original_save_session(pc, pd->data);
}

#endif


/*
 * The pin of this request's client connection for this upstream {}; with
 * "create", made (empty) if missing.  HTTP/2 streams share no connection
 * with anything that could carry the handshake (IIS refuses NTLM over
 * HTTP/2), so they get no pin: their NTLM connections are closed.
 */

static ngx_esp_ntlm_pin_t *
ngx_esp_ntlm_pin(ngx_esp_ntlm_peer_data_t *pd, ngx_uint_t create)
{
    ngx_queue_t            *q;
    ngx_connection_t       *c;
    ngx_pool_cleanup_t     *cln;
    ngx_esp_ntlm_pin_t     *pin;
    ngx_http_request_t     *r;
    ngx_esp_ntlm_client_t  *client;

    r = pd->request;

    if (r->stream) {
        return NULL;
    }

    c = r->connection;
    client = NULL;

    for (cln = c->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_esp_ntlm_client_cleanup) {
            client = cln->data;
            break;
        }
    }

    if (client == NULL) {
        if (!create) {
            return NULL;
        }

        cln = ngx_pool_cleanup_add(c->pool, sizeof(ngx_esp_ntlm_client_t));
        if (cln == NULL) {
            return NULL;
        }

        client = cln->data;
        ngx_queue_init(&client->pins);

        cln->handler = ngx_esp_ntlm_client_cleanup;
    }

    for (q = ngx_queue_head(&client->pins);
         q != ngx_queue_sentinel(&client->pins);
         q = ngx_queue_next(q))
    {
        pin = ngx_queue_data(q, ngx_esp_ntlm_pin_t, queue);

        if (pin->conf == pd->conf) {
            return pin;
        }
    }

    if (!create) {
        return NULL;
    }

    pin = ngx_pcalloc(c->pool, sizeof(ngx_esp_ntlm_pin_t));
    if (pin == NULL) {
        return NULL;
    }

    pin->conf = pd->conf;
    ngx_queue_insert_tail(&client->pins, &pin->queue);

    return pin;
}


static ngx_uint_t
ngx_esp_ntlm_reusable(ngx_esp_ntlm_peer_data_t *pd, ngx_connection_t *c,
    ngx_uint_t state)
{
    ngx_http_upstream_t  *u;

    if (state & NGX_PEER_FAILED
        || c == NULL
        || c->read->eof
        || c->read->error
        || c->read->timedout
        || c->write->error
        || c->write->timedout)
    {
        return 0;
    }

    u = pd->request->upstream;

    if (!u->keepalive || !u->request_body_sent) {
        return 0;
    }

    if (ngx_terminate || ngx_exiting) {
        return 0;
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        return 0;
    }

    return 1;
}


static void
ngx_esp_ntlm_park(ngx_esp_ntlm_pin_t *pin, ngx_connection_t *c)
{
    pin->connection = c;

    c->read->delayed = 0;
    ngx_add_timer(c->read, pin->conf->timeout);

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    c->write->handler = ngx_esp_ntlm_dummy_handler;
    c->read->handler = ngx_esp_ntlm_close_handler;

    c->data = pin;
    c->idle = 1;
    c->log = ngx_cycle->log;
    c->read->log = ngx_cycle->log;
    c->write->log = ngx_cycle->log;
    c->pool->log = ngx_cycle->log;

    if (c->read->ready) {
        ngx_esp_ntlm_close_handler(c->read);
    }
}


static void
ngx_esp_ntlm_dummy_handler(ngx_event_t *ev)
{
    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                   "esp ntlm: dummy handler");
}


/*
 * An idle pinned connection: Exchange closed it, sent something it should
 * not have, the idle timeout passed, or the worker is shutting down.
 */

static void
ngx_esp_ntlm_close_handler(ngx_event_t *ev)
{
    int                  n;
    char                 buf[1];
    ngx_connection_t    *c;
    ngx_esp_ntlm_pin_t  *pin;

    c = ev->data;
    n = 0;

    if (c->close || c->read->timedout) {
        goto close;
    }

    n = recv(c->fd, buf, 1, MSG_PEEK);

    if (n == -1 && ngx_socket_errno == NGX_EAGAIN) {
        ev->ready = 0;

        if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
            goto close;
        }

        return;
    }

close:

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                   "esp ntlm: closing idle pinned connection %p, "
                   "timedout:%ui close:%ui recv:%d",
                   c, (ngx_uint_t) c->read->timedout, (ngx_uint_t) c->close,
                   n);

    pin = c->data;
    pin->connection = NULL;

    ngx_esp_ntlm_close(c);
}


static void
ngx_esp_ntlm_close(ngx_connection_t *c)
{
#if (NGX_HTTP_SSL)

    if (c->ssl) {
        c->ssl->no_wait_shutdown = 1;
        c->ssl->no_send_shutdown = 1;

        if (ngx_ssl_shutdown(c) == NGX_AGAIN) {
            c->ssl->handler = ngx_esp_ntlm_close;
            return;
        }
    }

#endif

    ngx_destroy_pool(c->pool);
    ngx_close_connection(c);
}


/* the client connection is closing: so do its upstream connections */

static void
ngx_esp_ntlm_client_cleanup(void *data)
{
    ngx_esp_ntlm_client_t *client = data;

    ngx_queue_t         *q;
    ngx_connection_t    *c;
    ngx_esp_ntlm_pin_t  *pin;

    for (q = ngx_queue_head(&client->pins);
         q != ngx_queue_sentinel(&client->pins);
         q = ngx_queue_next(q))
    {
        pin = ngx_queue_data(q, ngx_esp_ntlm_pin_t, queue);

        if (pin->busy) {
            /* requests end before their connection: cannot happen */
            ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                          "esp ntlm: pinned connection in use while "
                          "its client connection closes");
        }

        c = pin->connection;

        if (c == NULL) {
            continue;
        }

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                       "esp ntlm: client closed, closing pinned "
                       "connection %p", c);

        pin->connection = NULL;
        ngx_esp_ntlm_close(c);
    }
}


/* the length of "NTLM" or "Negotiate" as a whole token at p, or 0 */

static size_t
ngx_esp_ntlm_scheme(u_char *p, u_char *last)
{
    size_t  len;

    if ((size_t) (last - p) >= sizeof("NTLM") - 1
        && ngx_strncasecmp(p, (u_char *) "NTLM", sizeof("NTLM") - 1) == 0)
    {
        len = sizeof("NTLM") - 1;

    } else if ((size_t) (last - p) >= sizeof("Negotiate") - 1
               && ngx_strncasecmp(p, (u_char *) "Negotiate",
                                  sizeof("Negotiate") - 1)
                  == 0)
    {
        len = sizeof("Negotiate") - 1;

    } else {
        return 0;
    }

    p += len;

    if (p == last || *p == ' ' || *p == '\t' || *p == ',') {
        return len;
    }

    return 0;
}


static ngx_uint_t
ngx_esp_ntlm_authorization(ngx_http_request_t *r)
{
    u_char  *p, *last;

    if (r->headers_in.authorization == NULL) {
        return 0;
    }

    p = r->headers_in.authorization->value.data;
    last = p + r->headers_in.authorization->value.len;

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    return ngx_esp_ntlm_scheme(p, last) != 0;
}


/*
 * A 401 carrying an NTLM or Negotiate challenge ("NTLM <token>"): the next
 * leg must come back on this connection, which now holds handshake state.
 * A bare offer ("WWW-Authenticate: NTLM") leaves none: the connection may
 * still serve anyone.  Requests with an NTLM Authorization are pinned
 * anyway; this also catches a challenge to a request whose Authorization
 * was set by the configuration.  A scheme found inside a quoted string
 * counts too: pinning too much is safe, too little is not.
 */

static ngx_uint_t
ngx_esp_ntlm_challenge(ngx_http_upstream_t *u)
{
    u_char           *p, *last;
    size_t            len;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    if (u->headers_in.status_n != NGX_HTTP_UNAUTHORIZED) {
        return 0;
    }

    part = &u->headers_in.headers.part;
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

        if (h[i].key.len != sizeof("WWW-Authenticate") - 1
            || ngx_strncasecmp(h[i].key.data, (u_char *) "WWW-Authenticate",
                               sizeof("WWW-Authenticate") - 1)
               != 0)
        {
            continue;
        }

        p = h[i].value.data;
        last = p + h[i].value.len;

        while (p < last) {

            while (p < last && (*p == ' ' || *p == '\t' || *p == ',')) {
                p++;
            }

            len = ngx_esp_ntlm_scheme(p, last);

            if (len) {
                p += len;

                while (p < last && (*p == ' ' || *p == '\t')) {
                    p++;
                }

                if (p < last && *p != ',') {
                    return 1;
                }
            }

            while (p < last && *p != ',') {
                p++;
            }
        }
    }

    return 0;
}


/*
 * The handshake cannot survive a request that asks Exchange to close the
 * connection: say so once per worker and upstream {}, since the proxy
 * module's settings cannot be read at configuration time.
 */

static void
ngx_esp_ntlm_check_request(ngx_http_request_t *r,
    ngx_esp_ntlm_srv_conf_t *nscf)
{
    u_char     *p, *last, *eol;
    ngx_buf_t  *b;

    if (nscf->warned
        || r->upstream->request_bufs == NULL
        || r->upstream->request_bufs->buf->in_file)
    {
        return;
    }

    b = r->upstream->request_bufs->buf;

    p = b->pos;
    last = b->last;

    eol = ngx_strlchr(p, last, '\n');
    if (eol == NULL) {
        return;
    }

    if (eol - p > 10 && ngx_strncmp(eol - 9, "HTTP/1.0\r", 9) == 0) {
        goto warn;
    }

    for (p = eol + 1; p < last; p = eol + 1) {

        eol = ngx_strlchr(p, last, '\n');
        if (eol == NULL || eol - p <= 1) {
            return;
        }

        if (eol - p > (ssize_t) sizeof("Connection:") - 1
            && ngx_strncasecmp(p, (u_char *) "Connection:",
                               sizeof("Connection:") - 1)
               == 0
            && ngx_strlcasestrn(p + sizeof("Connection:") - 1, eol,
                                (u_char *) "close", sizeof("close") - 2)
               != NULL)
        {
            goto warn;
        }
    }

    return;

warn:

    nscf->warned = 1;

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "esp_ntlm: the request to the upstream closes its "
                  "connection, so NTLM and Negotiate handshakes fail: set "
                  "\"proxy_http_version 1.1;\" and "
                  "\"proxy_set_header Connection \"\";\"");
}


static void *
ngx_esp_ntlm_create_srv_conf(ngx_conf_t *cf)
{
    ngx_esp_ntlm_srv_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_esp_ntlm_srv_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->original_init_peer = NULL;
     *     conf->name = NULL;
     *     conf->warned = 0;
     *     conf->guard_warned = 0;
     */

    conf->enable = NGX_CONF_UNSET;
    conf->timeout = NGX_CONF_UNSET_MSEC;

    return conf;
}


/*
 * Runs after ngx_http_upstream_init_main_conf() has initialized every
 * upstream (balancer, then "keepalive"): wrapping peer.init here keeps
 * pinning outermost whatever the order of the directives in upstream {}.
 */

static ngx_int_t
ngx_esp_ntlm_init(ngx_conf_t *cf)
{
    ngx_uint_t                      i, epa;
    ngx_esp_ntlm_srv_conf_t        *nscf;
    ngx_http_upstream_srv_conf_t  **uscfp;
    ngx_http_upstream_main_conf_t  *umcf;

    umcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_upstream_module);
    if (umcf == NULL) {
        return NGX_OK;
    }

    uscfp = umcf->upstreams.elts;
    epa = 0;

    for (i = 0; i < umcf->upstreams.nelts; i++) {

        /* implicit upstreams have no upstream {} block */
        if (uscfp[i]->srv_conf == NULL) {
            continue;
        }

        nscf = ngx_http_conf_upstream_srv_conf(uscfp[i], ngx_esp_ntlm_module);

        /* without "esp_ntlm": the guard, see the top of this file */

        ngx_conf_init_msec_value(nscf->timeout, NGX_ESP_NTLM_TIMEOUT);
        nscf->name = &uscfp[i]->host;

        nscf->original_init_peer = uscfp[i]->peer.init;
        uscfp[i]->peer.init = ngx_esp_ntlm_init_peer;

        if (nscf->enable == 1) {
            epa = 1;
        }
    }

    /* Extended Protection is checked where NTLM is expected to work */

    if (epa && ngx_esp_epa_zone(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static char *
ngx_esp_ntlm(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_esp_ntlm_srv_conf_t *nscf = conf;

    ngx_str_t   *value, s;
    ngx_uint_t   i;

    if (nscf->enable != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    nscf->enable = 1;

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {

            s.len = value[i].len - 8;
            s.data = value[i].data + 8;

            nscf->timeout = ngx_parse_time(&s, 0);

            if (nscf->timeout == (ngx_msec_t) NGX_ERROR
                || nscf->timeout == 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid timeout \"%V\" in \"%V\"",
                                   &value[i], &cmd->name);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"%V\"",
                           &value[i], &cmd->name);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}
