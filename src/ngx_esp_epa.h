
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#ifndef _NGX_ESP_EPA_H_INCLUDED_
#define _NGX_ESP_EPA_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/*
 * Extended Protection (EPA) compatibility of the "esp_ntlm" upstreams.
 *
 * A client's NTLM or Negotiate answer carries a channel binding computed
 * from the certificate the client saw (RFC 5929 tls-server-end-point: a
 * hash of its DER).  Exchange, with Extended Protection on, compares it
 * with a hash of its own IIS certificate: through the gate the two match
 * only when nginx presents the very certificate Exchange does.  The first
 * TLS handshake of a worker to each Exchange server of an "esp_ntlm"
 * upstream compares both SHA-256 fingerprints; a mismatch is logged, and
 * every result is kept in a small zone of its own for "esp_status".
 */


#define NGX_ESP_EPA_UPSTREAM_LEN  64
#define NGX_ESP_EPA_SHA256_LEN    32


typedef struct {
    u_char                     upstream[NGX_ESP_EPA_UPSTREAM_LEN];
    size_t                     upstream_len;
    u_char                     peer[NGX_SOCKADDR_STRLEN];
    size_t                     peer_len;
    u_char                     listener[NGX_ESP_EPA_SHA256_LEN];
    u_char                     exchange[NGX_ESP_EPA_SHA256_LEN];
    time_t                     checked;
    ngx_uint_t                 compatible;
} ngx_esp_epa_peer_t;


/* adds the zone (when some upstream {} has "esp_ntlm") */
ngx_int_t ngx_esp_epa_zone(ngx_conf_t *cf);

/*
 * After a request to an "esp_ntlm" upstream: c is its upstream connection,
 * checked once per worker, Exchange server and listener certificate.
 */
void ngx_esp_epa_check(ngx_http_request_t *r, ngx_connection_t *c,
    ngx_str_t *peer, void *upstream, ngx_str_t *upstream_name);

/*
 * A copy of every result, in r->pool; *n = 0 before any handshake.
 * NULL: no "esp_ntlm" anywhere, or out of memory (*n is then 0 too).
 */
ngx_esp_epa_peer_t *ngx_esp_epa_results(ngx_http_request_t *r,
    ngx_uint_t *n);

/* "AB:CD:..." into p (3 * NGX_ESP_EPA_SHA256_LEN - 1 bytes) */
u_char *ngx_esp_epa_fingerprint(u_char *p, u_char *md);

#define NGX_ESP_EPA_FINGERPRINT_LEN  (3 * NGX_ESP_EPA_SHA256_LEN - 1)


#endif /* _NGX_ESP_EPA_H_INCLUDED_ */
