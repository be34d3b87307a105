
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#ifndef _NGX_ESP_CLUSTER_H_INCLUDED_
#define _NGX_ESP_CLUSTER_H_INCLUDED_


#include "ngx_esp.h"
#include "ngx_esp_shm.h"


/*
 * Several gateway nodes, one security state ("esp_cluster"): lockout
 * reservations and counters, blocks and revocations shared through a
 * Redis (or Valkey) store, by the zone's keyed hashes only.  Without the
 * directive every call here does nothing and the state stays local.
 *
 * reserve: the cluster's slot of the counter "key" (a zone counter key),
 * taken before the bind, besides the zone's own.  NGX_AGAIN: asked; the
 * handler hears once, later: NGX_OK (held), NGX_BUSY (blocked until
 * "until", or refused and counted with count_busy), NGX_AGAIN (every
 * slot is busy across the nodes) or NGX_ERROR (no answer: local counting
 * only).  NGX_DECLINED at once: no cluster, or the store is down.
 * settle: the outcome (NGX_ESP_SHM_*), once, also while the answer is
 * still awaited (the handler is then not called); frees *res.
 */

typedef struct ngx_esp_cluster_res_s  ngx_esp_cluster_res_t;

typedef void (*ngx_esp_cluster_handler_pt)(void *data, ngx_int_t rc,
    time_t until);


char *ngx_esp_cluster(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_esp_cluster_init_conf(ngx_conf_t *cf, ngx_esp_main_conf_t *emcf);
ngx_int_t ngx_esp_cluster_init_worker(ngx_cycle_t *cycle,
    ngx_esp_main_conf_t *emcf);
void ngx_esp_cluster_exit_worker(ngx_cycle_t *cycle);

ngx_int_t ngx_esp_cluster_reserve(u_char *key, ngx_esp_shm_policy_t *p,
    ngx_uint_t count_busy, ngx_esp_cluster_handler_pt handler, void *data,
    ngx_esp_cluster_res_t **res);
void ngx_esp_cluster_settle(ngx_esp_cluster_res_t *res, ngx_uint_t outcome);

/* what this node did, for the others (after the zone has it) */
void ngx_esp_cluster_revoke_session(u_char *id, size_t len, time_t expires);
void ngx_esp_cluster_revoke_key(u_char *key, time_t expires);
void ngx_esp_cluster_revoke_user(ngx_shm_zone_t *zone, ngx_str_t *domain,
    ngx_str_t *user, time_t since, time_t expires);
void ngx_esp_cluster_unblock(ngx_shm_zone_t *zone, ngx_str_t *domain,
    ngx_str_t *user);

/* the status endpoint's part: NULL without esp_cluster */
u_char *ngx_esp_cluster_json(u_char *p, u_char *last);
u_char *ngx_esp_cluster_prometheus(u_char *p, u_char *last);


#endif /* _NGX_ESP_CLUSTER_H_INCLUDED_ */
