
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>

#include <openssl/x509v3.h>

#include "ngx_esp_tls.h"


static void ngx_esp_tls_closed(ngx_connection_t *c);


ngx_int_t
ngx_esp_tls_peer(ngx_pool_t *pool, ngx_str_t *host, ngx_esp_tls_peer_t *peer)
{
    u_char     *p;
    ngx_str_t   h;
#if (NGX_HAVE_INET6)
    u_char      addr6[16];
#endif

    /* "[::1]" is checked as "::1"; SNI wants a NUL-terminated name */

    h = *host;

    if (h.len > 2 && h.data[0] == '[') {
        h.data++;
        h.len -= 2;
    }

    p = ngx_pnalloc(pool, h.len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    *ngx_cpymem(p, h.data, h.len) = '\0';

    peer->host.data = p;
    peer->host.len = h.len;

    peer->ip = (ngx_inet_addr(p, h.len) != INADDR_NONE);

#if (NGX_HAVE_INET6)
    if (!peer->ip && ngx_inet6_addr(p, h.len, addr6) == NGX_OK) {
        peer->ip = 1;
    }
#endif

    return NGX_OK;
}


ngx_int_t
ngx_esp_tls_connect(ngx_peer_connection_t *peer, ngx_addr_t *addr,
    ngx_log_t *log, void *data, ngx_event_handler_pt handler)
{
    ngx_int_t          rc;
    ngx_connection_t  *c;

    ngx_memzero(peer, sizeof(ngx_peer_connection_t));

    peer->sockaddr = addr->sockaddr;
    peer->socklen = addr->socklen;
    peer->name = &addr->name;
    peer->get = ngx_event_get_peer;
    peer->log = log;
    peer->log_error = NGX_ERROR_ERR;
    peer->tries = 1;

    rc = ngx_event_connect_peer(peer);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        return (rc == NGX_DECLINED) ? NGX_DECLINED : NGX_ERROR;
    }

    c = peer->connection;
    c->data = data;

    c->pool = ngx_create_pool(512, log);
    if (c->pool == NULL) {
        return NGX_ERROR;
    }

    c->read->handler = handler;
    c->write->handler = handler;

    return rc;
}


ngx_int_t
ngx_esp_tls_connected(ngx_connection_t *c)
{
    int        err;
    socklen_t  len;

    err = 0;
    len = sizeof(int);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len) == -1) {
        err = ngx_socket_errno;
    }

    if (err) {
        (void) ngx_connection_error(c, err, "connect() failed");
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_ssl_t *
ngx_esp_tls_client(ngx_conf_t *cf)
{
    ngx_ssl_t           *ssl;
    ngx_pool_cleanup_t  *cln;

    ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (ssl == NULL) {
        return NULL;
    }

    ssl->log = cf->log;

    if (ngx_ssl_create(ssl, NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL)
        != NGX_OK)
    {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(ssl);
        return NULL;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = ssl;

    return ssl;
}


ngx_int_t
ngx_esp_tls_connection(ngx_ssl_t *ssl, ngx_connection_t *c,
    ngx_esp_tls_peer_t *peer, ngx_log_t *log)
{
    if (ngx_ssl_create_connection(ssl, c, NGX_SSL_BUFFER|NGX_SSL_CLIENT)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (!peer->ip
        && SSL_set_tlsext_host_name(c->ssl->connection,
                                    (char *) peer->host.data)
           == 0)
    {
        ngx_ssl_error(NGX_LOG_ERR, log, 0,
                      "SSL_set_tlsext_host_name(\"%s\") failed",
                      peer->host.data);
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_esp_tls_verify(ngx_connection_t *c, ngx_esp_tls_peer_t *peer,
    const char *what, ngx_str_t *name, ngx_log_t *log)
{
    long        rc;
    X509       *cert;
    ngx_int_t   ok;

    rc = SSL_get_verify_result(c->ssl->connection);

    if (rc != X509_V_OK) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "esp: %s %V certificate does not verify: (%l:%s)",
                      what, name, rc, X509_verify_cert_error_string(rc));
        return NGX_ERROR;
    }

    cert = SSL_get_peer_certificate(c->ssl->connection);

    if (cert == NULL) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "esp: %s %V certificate does not verify: it sent "
                      "none", what, name);
        return NGX_ERROR;
    }

    /* ngx_ssl_check_host() knows DNS names only; servers may carry IP SANs */

    if (peer->ip) {
        ok = (X509_check_ip_asc(cert, (char *) peer->host.data, 0) == 1);

    } else {
        ok = (ngx_ssl_check_host(c, &peer->host) == NGX_OK);
    }

    X509_free(cert);

    if (!ok) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "esp: %s %V certificate does not verify: it is not "
                      "for \"%V\"", what, name, &peer->host);
        return NGX_ERROR;
    }

    return NGX_OK;
}


void
ngx_esp_tls_close(ngx_connection_t *c, ngx_uint_t clean)
{
    /* the caller's slot and log may serve a new connection before this ends */

    c->log = ngx_cycle->log;
    c->read->log = c->log;
    c->write->log = c->log;

    if (c->pool) {
        c->pool->log = c->log;
    }

    c->data = NULL;
    c->idle = 0;

    if (c->ssl) {
        c->ssl->no_wait_shutdown = 1;

        if (!clean) {
            c->ssl->no_send_shutdown = 1;
        }

        if (ngx_ssl_shutdown(c) == NGX_AGAIN) {
            c->ssl->handler = ngx_esp_tls_closed;
            return;
        }
    }

    ngx_esp_tls_closed(c);
}


static void
ngx_esp_tls_closed(ngx_connection_t *c)
{
    ngx_pool_t  *pool;

    pool = c->pool;

    ngx_close_connection(c);

    if (pool) {
        ngx_destroy_pool(pool);
    }
}
