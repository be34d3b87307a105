
/*
 * Copyright (C) ngx_exchange_esp authors
 */


/*
 * What the module's clients of other servers (the directory client,
 * src/ngx_esp_ldap_conn.c, and the cluster store's, src/ngx_esp_redis.c)
 * share about their connections: the peer's name as a certificate must
 * carry it, the connect, a client TLS context, TLS on an nginx connection with SNI, the
 * peer certificate's check, and the close that lets TLS say goodbye
 * without waiting.
 */


#ifndef _NGX_ESP_TLS_H_INCLUDED_
#define _NGX_ESP_TLS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>


#define NGX_ESP_TLS_VERIFY_DEPTH  10


/* a peer's name for SNI and the certificate check */
typedef struct {
    ngx_str_t                  host;         /* NUL-terminated, no [] */
    ngx_uint_t                 ip;           /* the host is an address */
} ngx_esp_tls_peer_t;


/* from the host of a parsed URL */
ngx_int_t ngx_esp_tls_peer(ngx_pool_t *pool, ngx_str_t *host,
    ngx_esp_tls_peer_t *peer);

/*
 * Connects "peer" to "addr", the connection's data being "data", with a
 * pool of its own: NGX_OK (connected), NGX_AGAIN (under way: "handler"
 * gets both events, and ngx_esp_tls_connected() then tells), NGX_DECLINED
 * (refused at once) or NGX_ERROR.
 */
ngx_int_t ngx_esp_tls_connect(ngx_peer_connection_t *peer, ngx_addr_t *addr,
    ngx_log_t *log, void *data, ngx_event_handler_pt handler);

/* after a connect under way: NGX_OK, or NGX_ERROR (logged) */
ngx_int_t ngx_esp_tls_connected(ngx_connection_t *c);

/* a client context (TLS 1.2 and 1.3) that lives as long as cf->pool */
ngx_ssl_t *ngx_esp_tls_client(ngx_conf_t *cf);

/* TLS on the connection, with SNI for a name; NGX_OK or NGX_ERROR */
ngx_int_t ngx_esp_tls_connection(ngx_ssl_t *ssl, ngx_connection_t *c,
    ngx_esp_tls_peer_t *peer, ngx_log_t *log);

/*
 * After the handshake: the chain verified, and the certificate for the
 * name or address; otherwise logged as "esp: WHAT NAME certificate does
 * not verify: ..." and NGX_ERROR.
 */
ngx_int_t ngx_esp_tls_verify(ngx_connection_t *c, ngx_esp_tls_peer_t *peer,
    const char *what, ngx_str_t *name, ngx_log_t *log);

/*
 * Closes the connection and destroys its pool; "clean" sends TLS's
 * close_notify (never waiting for the peer's).
 */
void ngx_esp_tls_close(ngx_connection_t *c, ngx_uint_t clean);


#endif /* _NGX_ESP_TLS_H_INCLUDED_ */
