
/*
 * Copyright (C) ngx_exchange_esp authors
 */


/*
 * Extended Protection (EPA): is the certificate each Exchange server
 * presents the one the clients of the gate see?  See ngx_esp_epa.h.
 *
 * Cost: a worker hashes two certificates once per (upstream {}, Exchange
 * server, listener certificate); every later request of that worker to
 * that server costs a short linear search of this worker's own table.
 * The results of all workers meet in a zone of 8 pages under its slab
 * mutex, touched only by those first checks and by "esp_status".
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_esp_epa.h"


/* not a name an operator would give a zone */
#define NGX_ESP_EPA_ZONE       "ngx_exchange_esp_epa"
#define NGX_ESP_EPA_ZONE_SIZE  (8 * ngx_pagesize)

/* (upstream, server, listener certificate) combinations followed */
#define NGX_ESP_EPA_MAX        64


typedef struct {
    size_t                     size;         /* of this struct */
    ngx_uint_t                 n;
    ngx_esp_epa_peer_t         peers[NGX_ESP_EPA_MAX];
} ngx_esp_epa_sh_t;


/* this worker's checks done: nothing shared, nothing locked */
typedef struct {
    void                      *upstream;     /* its srv conf */
    X509                      *listener;     /* the server{}'s certificate */
    size_t                     peer_len;
    u_char                     peer[NGX_SOCKADDR_STRLEN];
} ngx_esp_epa_seen_t;


static ngx_esp_epa_sh_t *ngx_esp_epa_shared(void);
static ngx_uint_t ngx_esp_epa_seen(ngx_connection_t *client, void *upstream,
    X509 *listener, ngx_str_t *peer);
static ngx_int_t ngx_esp_epa_digest(X509 *cert, u_char *md);
static ngx_uint_t ngx_esp_epa_publish(ngx_esp_epa_peer_t *res);
static ngx_int_t ngx_esp_epa_init_zone(ngx_shm_zone_t *shm_zone, void *data);


static ngx_uint_t               ngx_esp_epa_tag;

/* per worker, found again when the cycle changes */
static volatile ngx_cycle_t    *ngx_esp_epa_cycle;
static ngx_shm_zone_t          *ngx_esp_epa_shm;
static ngx_esp_epa_seen_t       ngx_esp_epa_done[NGX_ESP_EPA_MAX];
static ngx_uint_t               ngx_esp_epa_ndone;


ngx_int_t
ngx_esp_epa_zone(ngx_conf_t *cf)
{
    ngx_str_t        name;
    ngx_shm_zone_t  *zone;

    ngx_str_set(&name, NGX_ESP_EPA_ZONE);

    zone = ngx_shared_memory_add(cf, &name, NGX_ESP_EPA_ZONE_SIZE,
                                 &ngx_esp_epa_tag);
    if (zone == NULL) {
        return NGX_ERROR;
    }

    zone->init = ngx_esp_epa_init_zone;

    return NGX_OK;
}


void
ngx_esp_epa_check(ngx_http_request_t *r, ngx_connection_t *c,
    ngx_str_t *peer, void *upstream, ngx_str_t *upstream_name)
{
    X509                *listener, *exchange;
    ngx_int_t            rc;
    ngx_connection_t    *client;
    ngx_esp_epa_peer_t   res;
    u_char               fl[NGX_ESP_EPA_FINGERPRINT_LEN];
    u_char               fe[NGX_ESP_EPA_FINGERPRINT_LEN];

    client = r->connection;

    /* a plain http listener has no certificate to compare */

    if (c == NULL || c->ssl == NULL || !c->ssl->handshaked
        || client->ssl == NULL || peer == NULL)
    {
        return;
    }

    listener = SSL_get_certificate(client->ssl->connection);
    if (listener == NULL) {
        return;
    }

    if (ngx_esp_epa_seen(client, upstream, listener, peer)) {
        return;
    }

#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)
    exchange = SSL_get1_peer_certificate(c->ssl->connection);
#else
    exchange = SSL_get_peer_certificate(c->ssl->connection);
#endif

    if (exchange == NULL) {
        return;
    }

    ngx_memzero(&res, sizeof(ngx_esp_epa_peer_t));

    rc = ngx_esp_epa_digest(exchange, res.exchange);

    X509_free(exchange);

    if (rc != NGX_OK || ngx_esp_epa_digest(listener, res.listener) != NGX_OK) {
        ngx_ssl_error(NGX_LOG_ERR, client->log, 0,
                      "esp_ntlm: X509_digest() failed");
        return;
    }

    res.upstream_len = ngx_min(upstream_name->len, NGX_ESP_EPA_UPSTREAM_LEN);
    ngx_memcpy(res.upstream, upstream_name->data, res.upstream_len);

    res.peer_len = ngx_min(peer->len, NGX_SOCKADDR_STRLEN);
    ngx_memcpy(res.peer, peer->data, res.peer_len);

    res.checked = ngx_time();
    res.compatible = (ngx_memcmp(res.listener, res.exchange,
                                 NGX_ESP_EPA_SHA256_LEN)
                      == 0);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, client->log, 0,
                   "esp epa: upstream \"%V\" peer %V compatible: %ui",
                   upstream_name, peer, res.compatible);

    /* every worker checks; the first to see a new result says it */

    if (!ngx_esp_epa_publish(&res) || res.compatible) {
        return;
    }

    ngx_esp_epa_fingerprint(fe, res.exchange);
    ngx_esp_epa_fingerprint(fl, res.listener);

    ngx_log_error(NGX_LOG_WARN, client->log, 0,
                  "esp_ntlm: Extended Protection will fail: upstream \"%V\" "
                  "server %V presents the certificate SHA-256 %*s, but the "
                  "clients of this server{} see SHA-256 %*s; NTLM and "
                  "Negotiate fail where Exchange checks the channel binding "
                  "unless nginx and Exchange present the same certificate",
                  upstream_name, peer, (size_t) NGX_ESP_EPA_FINGERPRINT_LEN,
                  fe, (size_t) NGX_ESP_EPA_FINGERPRINT_LEN, fl);
}


ngx_esp_epa_peer_t *
ngx_esp_epa_results(ngx_http_request_t *r, ngx_uint_t *n)
{
    ngx_slab_pool_t     *shpool;
    ngx_esp_epa_sh_t    *sh;
    ngx_esp_epa_peer_t  *res;

    *n = 0;

    sh = ngx_esp_epa_shared();
    if (sh == NULL) {
        return NULL;
    }

    res = ngx_palloc(r->pool, sizeof(sh->peers));
    if (res == NULL) {
        return NULL;
    }

    shpool = (ngx_slab_pool_t *) ngx_esp_epa_shm->shm.addr;

    ngx_shmtx_lock(&shpool->mutex);

    *n = sh->n;
    ngx_memcpy(res, sh->peers, sh->n * sizeof(ngx_esp_epa_peer_t));

    ngx_shmtx_unlock(&shpool->mutex);

    return res;
}


u_char *
ngx_esp_epa_fingerprint(u_char *p, u_char *md)
{
    ngx_uint_t  i;

    static u_char  hex[] = "0123456789ABCDEF";

    for (i = 0; i < NGX_ESP_EPA_SHA256_LEN; i++) {
        if (i) {
            *p++ = ':';
        }

        *p++ = hex[md[i] >> 4];
        *p++ = hex[md[i] & 0xf];
    }

    return p;
}


static ngx_esp_epa_sh_t *
ngx_esp_epa_shared(void)
{
    ngx_uint_t        i;
    ngx_shm_zone_t   *zone;
    ngx_list_part_t  *part;

    if (ngx_esp_epa_cycle == ngx_cycle) {
        return ngx_esp_epa_shm ? ngx_esp_epa_shm->data : NULL;
    }

    ngx_esp_epa_shm = NULL;
    ngx_esp_epa_ndone = 0;

    part = (ngx_list_part_t *) &ngx_cycle->shared_memory.part;
    zone = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            zone = part->elts;
            i = 0;
        }

        if (zone[i].tag == &ngx_esp_epa_tag) {
            ngx_esp_epa_shm = &zone[i];
            break;
        }
    }

    ngx_esp_epa_cycle = ngx_cycle;

    return ngx_esp_epa_shm ? ngx_esp_epa_shm->data : NULL;
}


/* checked already by this worker?  If not, it is remembered as checked */

static ngx_uint_t
ngx_esp_epa_seen(ngx_connection_t *client, void *upstream, X509 *listener,
    ngx_str_t *peer)
{
    size_t               len;
    ngx_uint_t           i;
    ngx_esp_epa_seen_t  *s;

    if (ngx_esp_epa_shared() == NULL) {
        return 1;
    }

    len = ngx_min(peer->len, NGX_SOCKADDR_STRLEN);

    for (i = 0; i < ngx_esp_epa_ndone; i++) {
        s = &ngx_esp_epa_done[i];

        if (s->upstream == upstream
            && s->listener == listener
            && s->peer_len == len
            && ngx_memcmp(s->peer, peer->data, len) == 0)
        {
            return 1;
        }
    }

    if (ngx_esp_epa_ndone == NGX_ESP_EPA_MAX) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, client->log, 0,
                       "esp epa: too many servers, not checked");
        return 1;
    }

    s = &ngx_esp_epa_done[ngx_esp_epa_ndone++];

    s->upstream = upstream;
    s->listener = listener;
    s->peer_len = len;
    ngx_memcpy(s->peer, peer->data, len);

    return 0;
}


static ngx_int_t
ngx_esp_epa_digest(X509 *cert, u_char *md)
{
    unsigned int  len;

    len = 0;

    if (X509_digest(cert, EVP_sha256(), md, &len) == 0
        || len != NGX_ESP_EPA_SHA256_LEN)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* stores a result; 1 if it is new or changed */

static ngx_uint_t
ngx_esp_epa_publish(ngx_esp_epa_peer_t *res)
{
    ngx_uint_t           i, changed;
    ngx_slab_pool_t     *shpool;
    ngx_esp_epa_sh_t    *sh;
    ngx_esp_epa_peer_t  *p;

    sh = ngx_esp_epa_shared();
    if (sh == NULL) {
        return 0;
    }

    shpool = (ngx_slab_pool_t *) ngx_esp_epa_shm->shm.addr;

    ngx_shmtx_lock(&shpool->mutex);

    p = NULL;

    for (i = 0; i < sh->n; i++) {
        if (sh->peers[i].upstream_len == res->upstream_len
            && sh->peers[i].peer_len == res->peer_len
            && ngx_memcmp(sh->peers[i].upstream, res->upstream,
                          res->upstream_len)
               == 0
            && ngx_memcmp(sh->peers[i].peer, res->peer, res->peer_len) == 0
            && ngx_memcmp(sh->peers[i].listener, res->listener,
                          NGX_ESP_EPA_SHA256_LEN)
               == 0)
        {
            p = &sh->peers[i];
            break;
        }
    }

    if (p == NULL) {
        if (sh->n == NGX_ESP_EPA_MAX) {
            ngx_shmtx_unlock(&shpool->mutex);
            return 0;
        }

        p = &sh->peers[sh->n++];
        changed = 1;

    } else {
        changed = (ngx_memcmp(p->exchange, res->exchange,
                              NGX_ESP_EPA_SHA256_LEN)
                   != 0);
    }

    *p = *res;

    ngx_shmtx_unlock(&shpool->mutex);

    return changed;
}


static ngx_int_t
ngx_esp_epa_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t   *shpool;
    ngx_esp_epa_sh_t  *sh;

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (data || shm_zone->shm.exists) {
        sh = shpool->data;

        if (sh == NULL || sh->size != sizeof(ngx_esp_epa_sh_t)) {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "the Extended Protection zone was made by another "
                          "build of the module: restart nginx");
            return NGX_ERROR;
        }

        /*
         * A reload may change certificates and upstreams: the new
         * workers check again from scratch.
         */

        ngx_shmtx_lock(&shpool->mutex);
        sh->n = 0;
        ngx_shmtx_unlock(&shpool->mutex);

        shm_zone->data = sh;

        return NGX_OK;
    }

    sh = ngx_slab_calloc(shpool, sizeof(ngx_esp_epa_sh_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    sh->size = sizeof(ngx_esp_epa_sh_t);

    shpool->data = sh;
    shm_zone->data = sh;

    return NGX_OK;
}
