
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

/* NGX_ESP_SHM_HMAC_CTX selects the OpenSSL 1.1 API, for tests */

#if (OPENSSL_VERSION_NUMBER >= 0x30000000L && !defined NGX_ESP_SHM_HMAC_CTX)

#include <openssl/core_names.h>
#include <openssl/params.h>

#define NGX_ESP_SHM_EVP_MAC  1

typedef EVP_MAC_CTX  ngx_esp_shm_mac_t;

#define ngx_esp_shm_mac_update  EVP_MAC_update
#define ngx_esp_shm_mac_free    EVP_MAC_CTX_free

#else

#include <openssl/hmac.h>

#define NGX_ESP_SHM_EVP_MAC  0

typedef HMAC_CTX  ngx_esp_shm_mac_t;

#define ngx_esp_shm_mac_update  HMAC_Update
#define ngx_esp_shm_mac_free    HMAC_CTX_free

#endif

#include "ngx_esp_shm.h"
#include "ngx_esp_session.h"


#define NGX_ESP_SHM_SECRET_LEN   32

/* changes whenever the layout in the zone does */
#define NGX_ESP_SHM_MAGIC        0x32505345  /* "ESP2" */

/* purposes of the keyed hashes: no two may be equal */
#define NGX_ESP_SHM_L_CACHE      "ngx_esp cache v1"
#define NGX_ESP_SHM_L_PASSWORD   "ngx_esp password v1"
#define NGX_ESP_SHM_L_LOCKOUT    "ngx_esp lockout v1"
#define NGX_ESP_SHM_L_USER       "ngx_esp user v1"
#define NGX_ESP_SHM_L_FAMILIAR_COUNTER  "ngx_esp lockout familiar v1"
#define NGX_ESP_SHM_L_FAMILIAR   "ngx_esp familiar v1"
#define NGX_ESP_SHM_L_MFA_COUNTER  "ngx_esp lockout mfa v1"
#define NGX_ESP_SHM_L_MFA_FAMILIAR "ngx_esp lockout mfa familiar v1"
#define NGX_ESP_SHM_L_SHARED     "ngx_esp cluster zone secret v1"

/* kinds of entries */
#define NGX_ESP_SHM_CACHE        0
#define NGX_ESP_SHM_LOCKOUT      1
#define NGX_ESP_SHM_SESSION      2
#define NGX_ESP_SHM_USER         3
#define NGX_ESP_SHM_FAMILIAR     4
#define NGX_ESP_SHM_NKINDS       5

/* LRU queues, in the order the zone evicts from them when full */
#define NGX_ESP_SHM_Q_CACHE      0
#define NGX_ESP_SHM_Q_COUNTER    1
#define NGX_ESP_SHM_Q_BLOCKED    2
#define NGX_ESP_SHM_Q_REVOKED    3
#define NGX_ESP_SHM_NQUEUES      4

/* how far eviction looks past the tail for a stale block or revocation */
#define NGX_ESP_SHM_SCAN         64

#define NGX_ESP_SHM_WARN_PERIOD  60

#define ngx_esp_shm_rbnode(en)                                                \
    ((ngx_rbtree_node_t *) ((u_char *) (en)                                   \
                            - offsetof(ngx_rbtree_node_t, color)))

#define NGX_ESP_SHM_NODE_SIZE                                                 \
    (offsetof(ngx_rbtree_node_t, color) + sizeof(ngx_esp_shm_node_t))


/*
 * A lockout counter: failures, a block, and the slots of logins under way
 * (ngx_esp_shm_reserve()); "epoch" changes when slots lapse, so that a
 * late settle does not give back a slot taken since.
 */

typedef struct {
    time_t                       ends;       /* failures are forgotten */
    time_t                       until;      /* blocked until, or 0 */
    time_t                       busy_until; /* slots in flight lapse */
    uint16_t                     failures;
    uint16_t                     inflight;
    uint32_t                     epoch;
} ngx_esp_shm_lockout_t;


/*
 * With the rbtree node head this is 128 bytes on 64-bit platforms, one
 * slab chunk: a field more would double the memory of every entry.
 */

typedef struct {
    u_char                       color;
    u_char                       kind;       /* ngx_rbtree_node_t.data */
    u_char                       lru;
    u_char                       dummy;
    ngx_queue_t                  queue;
    time_t                       expires;    /* 0: when evicted */
    u_char                       key[NGX_ESP_SHM_KEY_LEN];

    union {
        u_char                   password[NGX_ESP_SHM_KEY_LEN];

        ngx_esp_shm_lockout_t    lockout;

        time_t                   since;      /* user revocation */
    } u;
} ngx_esp_shm_node_t;


typedef struct {
    uint32_t                     magic;
    uint32_t                     node_size;
    size_t                       shctx_size;

    ngx_rbtree_t                 rbtree;
    ngx_rbtree_node_t            sentinel;
    ngx_queue_t                  lru[NGX_ESP_SHM_NQUEUES];

    u_char                       secret[NGX_ESP_SHM_SECRET_LEN];

    ngx_uint_t                   entries[NGX_ESP_SHM_NKINDS];
    ngx_uint_t                   blocked;    /* in the blocked queue */
    ngx_uint_t                   hits;
    ngx_uint_t                   misses;
    ngx_uint_t                   evictions;
    ngx_uint_t                   alloc_failures;
    time_t                       warned;

    uint32_t                     epoch;      /* of lockout slots */
    ngx_uint_t                   changes;    /* of what the state file
                                                holds */
} ngx_esp_shm_shctx_t;


typedef struct {
    ngx_esp_shm_shctx_t         *sh;
    ngx_slab_pool_t             *shpool;

    /* keyed with sh->secret in init_zone; copied for every hash */
    ngx_esp_shm_mac_t           *mac;

    /* this process's working copy, re-initialised with the same key */
    ngx_esp_shm_mac_t           *work;

    ngx_str_t                    name;
    ngx_str_t                    state;      /* the state file, or empty */
    ngx_msec_t                   state_interval;
    ngx_array_t                 *keys;       /* seal the state file */
    ngx_uint_t                   saved;      /* sh->changes when this
                                                process last saved */

    /* esp_cluster: every node's secret, from the session key */
    u_char                       shared[NGX_ESP_SHM_SECRET_LEN];
    unsigned                     share:1;
} ngx_esp_shm_ctx_t;


static ngx_shm_zone_t *ngx_esp_shm_add(ngx_conf_t *cf, ngx_str_t *name,
    size_t size);
static ngx_int_t ngx_esp_shm_init_zone(ngx_shm_zone_t *shm_zone, void *data);
static void ngx_esp_shm_cleanup(void *data);
static void ngx_esp_shm_use_shared(ngx_esp_shm_ctx_t *ctx,
    ngx_shm_zone_t *shm_zone);
static ngx_int_t ngx_esp_shm_mac_init(ngx_esp_shm_ctx_t *ctx, ngx_log_t *log);
static void ngx_esp_shm_session_key(u_char *id, size_t len, u_char *out);
static ngx_int_t ngx_esp_shm_key(ngx_esp_shm_ctx_t *ctx, const char *label,
    ngx_str_t *fields, ngx_uint_t n, u_char *out);
static ngx_int_t ngx_esp_shm_user_key(ngx_esp_shm_ctx_t *ctx,
    const char *label, ngx_str_t *domain, ngx_str_t *user, u_char *out);

static void ngx_esp_shm_rbtree_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_int_t ngx_esp_shm_key_mark(ngx_shm_zone_t *zone, u_char *key,
    time_t expires, ngx_uint_t once);
static ngx_esp_shm_node_t *ngx_esp_shm_find(ngx_esp_shm_ctx_t *ctx,
    ngx_uint_t kind, u_char *key, time_t now);
static ngx_esp_shm_node_t *ngx_esp_shm_create(ngx_esp_shm_ctx_t *ctx,
    ngx_uint_t kind, u_char *key, ngx_uint_t lru, time_t now);
static ngx_esp_shm_node_t *ngx_esp_shm_upsert(ngx_esp_shm_ctx_t *ctx,
    ngx_uint_t kind, u_char *key, ngx_uint_t lru, time_t now);
static void ngx_esp_shm_touch(ngx_esp_shm_ctx_t *ctx, ngx_esp_shm_node_t *en,
    ngx_uint_t lru);
static void ngx_esp_shm_delete(ngx_esp_shm_ctx_t *ctx,
    ngx_esp_shm_node_t *en);
static void ngx_esp_shm_expire(ngx_esp_shm_ctx_t *ctx, time_t now);
static ngx_int_t ngx_esp_shm_evict(ngx_esp_shm_ctx_t *ctx, time_t now);
static ngx_uint_t ngx_esp_shm_count_blocked(ngx_esp_shm_ctx_t *ctx,
    time_t now);
static void ngx_esp_shm_counter_age(ngx_esp_shm_ctx_t *ctx,
    ngx_esp_shm_node_t *en, time_t now);
static void ngx_esp_shm_counter_update(ngx_esp_shm_ctx_t *ctx,
    ngx_esp_shm_node_t *en);
static ngx_uint_t ngx_esp_shm_counter_fail(ngx_esp_shm_ctx_t *ctx,
    ngx_esp_shm_node_t *en, ngx_esp_shm_policy_t *p, time_t now);
static void ngx_esp_shm_state_load(ngx_esp_shm_ctx_t *ctx,
    ngx_shm_zone_t *zone);


/* credential cache */

ngx_int_t
ngx_esp_cache_lookup(ngx_shm_zone_t *zone, ngx_str_t *domain,
    ngx_str_t *user, ngx_str_t *password)
{
    u_char               key[NGX_ESP_SHM_KEY_LEN];
    u_char               pw[NGX_ESP_SHM_KEY_LEN];
    time_t               now;
    ngx_int_t            rc;
    ngx_str_t            f[3];
    ngx_esp_shm_ctx_t   *ctx;
    ngx_esp_shm_node_t  *en;

    ctx = zone->data;

    f[0] = *domain;
    f[1] = *user;
    f[2] = *password;

    if (ngx_esp_shm_user_key(ctx, NGX_ESP_SHM_L_CACHE, domain, user, key)
        != NGX_OK
        || ngx_esp_shm_key(ctx, NGX_ESP_SHM_L_PASSWORD, f, 3, pw) != NGX_OK)
    {
        ngx_explicit_memzero(pw, sizeof(pw));
        return NGX_DECLINED;
    }

    now = ngx_time();
    rc = NGX_DECLINED;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    en = ngx_esp_shm_find(ctx, NGX_ESP_SHM_CACHE, key, now);

    if (en && CRYPTO_memcmp(en->u.password, pw, NGX_ESP_SHM_KEY_LEN) == 0) {
        ngx_esp_shm_touch(ctx, en, NGX_ESP_SHM_Q_CACHE);
        ctx->sh->hits++;
        rc = NGX_OK;

    } else {
        ctx->sh->misses++;

        if (en) {
            rc = NGX_DONE;
        }
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    ngx_explicit_memzero(pw, sizeof(pw));

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "esp cache lookup: %i", rc);

    return rc;
}


ngx_int_t
ngx_esp_cache_store(ngx_shm_zone_t *zone, ngx_str_t *domain,
    ngx_str_t *user, ngx_str_t *password, time_t ttl)
{
    u_char               key[NGX_ESP_SHM_KEY_LEN];
    u_char               pw[NGX_ESP_SHM_KEY_LEN];
    time_t               now;
    ngx_int_t            rc;
    ngx_str_t            f[3];
    ngx_esp_shm_ctx_t   *ctx;
    ngx_esp_shm_node_t  *en;

    if (ttl <= 0) {
        return NGX_OK;
    }

    ctx = zone->data;

    f[0] = *domain;
    f[1] = *user;
    f[2] = *password;

    if (ngx_esp_shm_user_key(ctx, NGX_ESP_SHM_L_CACHE, domain, user, key)
        != NGX_OK
        || ngx_esp_shm_key(ctx, NGX_ESP_SHM_L_PASSWORD, f, 3, pw) != NGX_OK)
    {
        ngx_explicit_memzero(pw, sizeof(pw));
        return NGX_ERROR;
    }

    now = ngx_time();
    rc = NGX_OK;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    en = ngx_esp_shm_upsert(ctx, NGX_ESP_SHM_CACHE, key, NGX_ESP_SHM_Q_CACHE,
                            now);

    if (en) {
        ngx_memcpy(en->u.password, pw, NGX_ESP_SHM_KEY_LEN);
        en->expires = now + ttl;

    } else {
        rc = NGX_ERROR;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    ngx_explicit_memzero(pw, sizeof(pw));

    return rc;
}


void
ngx_esp_cache_forget(ngx_shm_zone_t *zone, ngx_str_t *domain,
    ngx_str_t *user)
{
    u_char               key[NGX_ESP_SHM_KEY_LEN];
    ngx_esp_shm_ctx_t   *ctx;
    ngx_esp_shm_node_t  *en;

    ctx = zone->data;

    if (ngx_esp_shm_user_key(ctx, NGX_ESP_SHM_L_CACHE, domain, user, key)
        != NGX_OK)
    {
        return;
    }

    ngx_shmtx_lock(&ctx->shpool->mutex);

    en = ngx_esp_shm_find(ctx, NGX_ESP_SHM_CACHE, key, ngx_time());

    if (en) {
        ngx_esp_shm_delete(ctx, en);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


/*
 * Lockout counters.  A login that may reach the directory holds a slot of
 * its counter from before the bind until the answer; the slots in flight
 * and the failures together never exceed the budget, so the directory
 * never sees more wrong passwords than the budget, however many logins
 * run at once.  A slot is settled exactly once: released, turned into a
 * failure, or, on a successful bind, released with the counter reset.
 */

ngx_int_t
ngx_esp_shm_counter_key(ngx_shm_zone_t *zone, ngx_str_t *domain,
    ngx_str_t *user, ngx_uint_t kind, ngx_esp_shm_slot_t *slot)
{
    static const char  *labels[] = {
        NGX_ESP_SHM_L_LOCKOUT, NGX_ESP_SHM_L_FAMILIAR_COUNTER,
        NGX_ESP_SHM_L_MFA_COUNTER, NGX_ESP_SHM_L_MFA_FAMILIAR
    };

    ngx_memzero(slot, sizeof(ngx_esp_shm_slot_t));

    return ngx_esp_shm_user_key(zone->data, labels[kind & 3], domain, user,
                                slot->key);
}


ngx_int_t
ngx_esp_shm_blocked(ngx_shm_zone_t *zone, ngx_esp_shm_policy_t *p,
    ngx_esp_shm_slot_t *slot, time_t *until)
{
    time_t               now;
    ngx_int_t            rc;
    ngx_esp_shm_ctx_t   *ctx;
    ngx_esp_shm_node_t  *en;

    ctx = zone->data;
    now = ngx_time();
    rc = NGX_OK;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    en = ngx_esp_shm_find(ctx, NGX_ESP_SHM_LOCKOUT, slot->key, now);

    if (en) {
        ngx_esp_shm_counter_age(ctx, en, now);

        if (en->u.lockout.until) {
            if (until) {
                *until = en->u.lockout.until;
            }

            rc = NGX_BUSY;
        }

        ngx_esp_shm_counter_update(ctx, en);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return rc;
}


ngx_int_t
ngx_esp_shm_reserve(ngx_shm_zone_t *zone, ngx_esp_shm_policy_t *p,
    ngx_esp_shm_slot_t *slot, ngx_uint_t count_busy, ngx_uint_t *started)
{
    time_t                 now;
    ngx_int_t              rc;
    ngx_esp_shm_ctx_t     *ctx;
    ngx_esp_shm_node_t    *en;
    ngx_esp_shm_lockout_t *lk;

    ctx = zone->data;
    now = ngx_time();
    *started = 0;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    en = ngx_esp_shm_find(ctx, NGX_ESP_SHM_LOCKOUT, slot->key, now);

    if (en == NULL) {
        en = ngx_esp_shm_create(ctx, NGX_ESP_SHM_LOCKOUT, slot->key,
                                NGX_ESP_SHM_Q_COUNTER, now);
        if (en == NULL) {
            ngx_shmtx_unlock(&ctx->shpool->mutex);
            return NGX_ERROR;
        }

        en->u.lockout.epoch = ++ctx->sh->epoch;

    } else {
        ngx_esp_shm_counter_age(ctx, en, now);
    }

    lk = &en->u.lockout;

    if (lk->until) {
        rc = NGX_BUSY;

    } else if ((ngx_uint_t) lk->failures + lk->inflight >= p->max) {

        /*
         * Every slot is taken by logins under way.  The caller says whether
         * this password was already compared with a cached one and did not
         * match: then the refusal counts, or the cache would answer
         * guesses for free while the slots are busy.  Otherwise the caller
         * may wait for a slot.
         */

        if (count_busy) {
            *started = ngx_esp_shm_counter_fail(ctx, en, p, now);
            rc = NGX_BUSY;

        } else {
            rc = NGX_AGAIN;
        }

    } else {
        lk->inflight++;
        lk->busy_until = ngx_max(lk->busy_until, now + p->bound);
        slot->epoch = lk->epoch;
        slot->held = 1;
        rc = NGX_OK;
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "esp lockout reserve: %i, failures %ui, in flight %ui, "
                   "max %ui", rc, (ngx_uint_t) lk->failures,
                   (ngx_uint_t) lk->inflight, p->max);

    ngx_esp_shm_counter_update(ctx, en);

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return rc;
}


ngx_uint_t
ngx_esp_shm_settle(ngx_shm_zone_t *zone, ngx_esp_shm_policy_t *p,
    ngx_esp_shm_slot_t *slot, ngx_uint_t outcome)
{
    time_t                 now;
    ngx_uint_t             started;
    ngx_esp_shm_ctx_t     *ctx;
    ngx_esp_shm_node_t    *en;
    ngx_esp_shm_lockout_t *lk;

    if (!slot->held) {
        return 0;
    }

    slot->held = 0;

    ctx = zone->data;
    now = ngx_time();
    started = 0;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    en = ngx_esp_shm_find(ctx, NGX_ESP_SHM_LOCKOUT, slot->key, now);

    if (en) {
        ngx_esp_shm_counter_age(ctx, en, now);

        lk = &en->u.lockout;

        /*
         * A slot that lapsed (or whose counter was unblocked or evicted)
         * is no longer counted in flight: only its own is given back.
         */

        if (lk->epoch == slot->epoch && lk->inflight) {
            lk->inflight--;
        }
    }

    switch (outcome) {

    case NGX_ESP_SHM_SUCCESS:

        /*
         * Only a bind the directory accepted resets the count, and a
         * block that began while it ran: its password was right.
         */

        if (en) {
            if (en->u.lockout.failures || en->u.lockout.until) {
                ctx->sh->changes++;
            }

            en->u.lockout.failures = 0;
            en->u.lockout.until = 0;
        }

        break;

    case NGX_ESP_SHM_FAILURE:

        if (en == NULL) {
            en = ngx_esp_shm_create(ctx, NGX_ESP_SHM_LOCKOUT, slot->key,
                                    NGX_ESP_SHM_Q_COUNTER, now);
            if (en == NULL) {
                goto done;
            }

            en->u.lockout.epoch = ++ctx->sh->epoch;
        }

        started = ngx_esp_shm_counter_fail(ctx, en, p, now);
        break;

    default: /* NGX_ESP_SHM_RELEASE */
        break;
    }

    if (en) {
        ngx_log_debug4(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                       "esp lockout settle %ui: failures %ui, in flight %ui, "
                       "blocked %d", outcome,
                       (ngx_uint_t) en->u.lockout.failures,
                       (ngx_uint_t) en->u.lockout.inflight,
                       en->u.lockout.until != 0);

        ngx_esp_shm_counter_update(ctx, en);
    }

done:

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return started;
}


ngx_int_t
ngx_esp_lockout_unblock(ngx_shm_zone_t *zone, ngx_str_t *domain,
    ngx_str_t *user)
{
    u_char      keys[NGX_ESP_SHM_USER_KEYS][NGX_ESP_SHM_KEY_LEN];
    ngx_int_t   rc;
    ngx_uint_t  i;

    if (ngx_esp_shm_user_keys(zone, domain, user, keys) != NGX_OK) {
        return NGX_ERROR;
    }

    /*
     * every budget: the one of unknown clients and the familiar one, for
     * passwords and for second factors
     */

    rc = NGX_DECLINED;

    for (i = NGX_ESP_SHM_K_LOCKOUT; i < NGX_ESP_SHM_USER_KEYS; i++) {
        if (ngx_esp_shm_counter_clear(zone, keys[i]) == NGX_OK) {
            rc = NGX_OK;
        }
    }

    return rc;
}


/* NGX_OK if there was a counter, NGX_DECLINED if not */

ngx_int_t
ngx_esp_shm_counter_clear(ngx_shm_zone_t *zone, u_char *key)
{
    ngx_int_t            rc;
    ngx_esp_shm_ctx_t   *ctx;
    ngx_esp_shm_node_t  *en;

    ctx = zone->data;
    rc = NGX_DECLINED;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    en = ngx_esp_shm_find(ctx, NGX_ESP_SHM_LOCKOUT, key, ngx_time());

    if (en) {
        ngx_esp_shm_delete(ctx, en);
        ctx->sh->changes++;
        rc = NGX_OK;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return rc;
}


/* a block the cluster store reports: kept until "until", not extended */

ngx_int_t
ngx_esp_shm_counter_block(ngx_shm_zone_t *zone, u_char *key, time_t until)
{
    time_t               now;
    ngx_esp_shm_ctx_t   *ctx;
    ngx_esp_shm_node_t  *en;

    now = ngx_time();

    if (until <= now) {
        return NGX_OK;
    }

    ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    en = ngx_esp_shm_find(ctx, NGX_ESP_SHM_LOCKOUT, key, now);

    if (en == NULL) {
        en = ngx_esp_shm_create(ctx, NGX_ESP_SHM_LOCKOUT, key,
                                NGX_ESP_SHM_Q_COUNTER, now);
        if (en == NULL) {
            ngx_shmtx_unlock(&ctx->shpool->mutex);
            return NGX_ERROR;
        }

        en->u.lockout.epoch = ++ctx->sh->epoch;

    } else {
        ngx_esp_shm_counter_age(ctx, en, now);
    }

    if (en->u.lockout.until < until) {
        en->u.lockout.until = until;
        ctx->sh->changes++;
    }

    ngx_esp_shm_counter_update(ctx, en);

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return NGX_OK;
}


/*
 * Clients that logged in as a user before (smart lockout): by address,
 * under a keyed hash of (domain, user, address), as cheap to lose as a
 * cached credential.
 */

static ngx_int_t
ngx_esp_shm_familiar_key(ngx_esp_shm_ctx_t *ctx, ngx_str_t *domain,
    ngx_str_t *user, ngx_str_t *addr, u_char *key)
{
    ngx_str_t  f[3];

    f[0] = *domain;
    f[1] = *user;
    f[2] = *addr;

    return ngx_esp_shm_key(ctx, NGX_ESP_SHM_L_FAMILIAR, f, 3, key);
}


ngx_int_t
ngx_esp_familiar_find(ngx_shm_zone_t *zone, ngx_str_t *domain,
    ngx_str_t *user, ngx_str_t *addr)
{
    u_char               key[NGX_ESP_SHM_KEY_LEN];
    ngx_int_t            rc;
    ngx_esp_shm_ctx_t   *ctx;

    ctx = zone->data;

    if (ctx->sh->entries[NGX_ESP_SHM_FAMILIAR] == 0
        || ngx_esp_shm_familiar_key(ctx, domain, user, addr, key) != NGX_OK)
    {
        return NGX_DECLINED;
    }

    ngx_shmtx_lock(&ctx->shpool->mutex);

    rc = ngx_esp_shm_find(ctx, NGX_ESP_SHM_FAMILIAR, key, ngx_time())
         ? NGX_OK : NGX_DECLINED;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return rc;
}


ngx_int_t
ngx_esp_familiar_add(ngx_shm_zone_t *zone, ngx_str_t *domain,
    ngx_str_t *user, ngx_str_t *addr, time_t ttl)
{
    u_char               key[NGX_ESP_SHM_KEY_LEN];
    time_t               now;
    ngx_int_t            rc;
    ngx_esp_shm_ctx_t   *ctx;
    ngx_esp_shm_node_t  *en;

    ctx = zone->data;

    if (ngx_esp_shm_familiar_key(ctx, domain, user, addr, key) != NGX_OK) {
        return NGX_ERROR;
    }

    now = ngx_time();
    rc = NGX_OK;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    en = ngx_esp_shm_upsert(ctx, NGX_ESP_SHM_FAMILIAR, key,
                            NGX_ESP_SHM_Q_CACHE, now);

    if (en) {
        en->expires = now + ttl;

    } else {
        rc = NGX_ERROR;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return rc;
}


/* revocation */

ngx_int_t
ngx_esp_session_revoke(ngx_shm_zone_t *zone, u_char *id, size_t len,
    time_t expires)
{
    u_char  key[NGX_ESP_SHM_KEY_LEN];

    ngx_esp_shm_session_key(id, len, key);

    return ngx_esp_shm_key_mark(zone, key, expires, 0);
}


/*
 * A one-time value: kept like a revoked session id until "expires" (so it
 * is counted with them); the check and the insertion are one step under
 * the mutex, so that of two parallel uses only one succeeds.
 */

ngx_int_t
ngx_esp_use_once(ngx_shm_zone_t *zone, u_char *id, size_t len,
    time_t expires)
{
    u_char  key[NGX_ESP_SHM_KEY_LEN];

    ngx_esp_shm_session_key(id, len, key);

    return ngx_esp_shm_key_mark(zone, key, expires, 1);
}


/* a revocation by its keyed hash, as the cluster store's messages carry */

ngx_int_t
ngx_esp_shm_revoke_key(ngx_shm_zone_t *zone, u_char *key, time_t expires)
{
    return ngx_esp_shm_key_mark(zone, key, expires, 0);
}


/* a keyed hash among the revoked ones; "once": NGX_DECLINED if it was */

static ngx_int_t
ngx_esp_shm_key_mark(ngx_shm_zone_t *zone, u_char *key, time_t expires,
    ngx_uint_t once)
{
    time_t               now;
    ngx_int_t            rc;
    ngx_esp_shm_ctx_t   *ctx;
    ngx_esp_shm_node_t  *en;

    now = ngx_time();

    if (expires <= now) {
        return once ? NGX_DECLINED : NGX_OK;
    }

    ctx = zone->data;
    rc = NGX_OK;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    en = ngx_esp_shm_find(ctx, NGX_ESP_SHM_SESSION, key, now);

    if (en && once) {
        rc = NGX_DECLINED;
        goto done;
    }

    if (en) {
        ngx_esp_shm_touch(ctx, en, NGX_ESP_SHM_Q_REVOKED);

    } else {
        en = ngx_esp_shm_create(ctx, NGX_ESP_SHM_SESSION, key,
                                NGX_ESP_SHM_Q_REVOKED, now);
    }

    if (en) {
        en->expires = ngx_max(en->expires, expires);
        ctx->sh->changes++;

    } else {
        rc = NGX_ERROR;
    }

done:

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return rc;
}


/*
 * Something that may happen once (a second factor's pending state, a
 * TOTP code): its keyed hash is kept with the revocations until
 * "expires"; the test and the mark are one step under the mutex, so two
 * requests at once cannot both pass.
 */

ngx_int_t
ngx_esp_shm_once(ngx_shm_zone_t *zone, const char *label, ngx_str_t *fields,
    ngx_uint_t n, time_t expires, u_char *key)
{
    if (ngx_esp_shm_key(zone->data, label, fields, n, key) != NGX_OK) {
        return NGX_ERROR;
    }

    /* kept at least a second, even if "expires" has just passed */

    return ngx_esp_shm_key_mark(zone, key, ngx_max(expires, ngx_time() + 1),
                                1);
}


void
ngx_esp_shm_session_id_key(u_char *id, size_t len, u_char *key)
{
    ngx_esp_shm_session_key(id, len, key);
}


ngx_int_t
ngx_esp_session_is_revoked(ngx_shm_zone_t *zone, u_char *id, size_t len)
{
    u_char               key[NGX_ESP_SHM_KEY_LEN];
    ngx_int_t            rc;
    ngx_esp_shm_ctx_t   *ctx;
    ngx_esp_shm_node_t  *en;

    ctx = zone->data;

    /*
     * Checked on every request with a session: nothing to find while no
     * session is revoked (the count is written under the mutex; a stale
     * read can only lag a logoff that is still being answered).
     */

    if (ctx->sh->entries[NGX_ESP_SHM_SESSION] == 0) {
        return NGX_DECLINED;
    }

    ngx_esp_shm_session_key(id, len, key);

    rc = NGX_DECLINED;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    en = ngx_esp_shm_find(ctx, NGX_ESP_SHM_SESSION, key, ngx_time());

    if (en) {
        /* a replayed cookie keeps its revocation away from eviction */
        ngx_esp_shm_touch(ctx, en, NGX_ESP_SHM_Q_REVOKED);
        rc = NGX_OK;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return rc;
}


ngx_int_t
ngx_esp_user_revoke(ngx_shm_zone_t *zone, ngx_str_t *domain,
    ngx_str_t *user, time_t since, time_t expires)
{
    u_char  keys[NGX_ESP_SHM_USER_KEYS][NGX_ESP_SHM_KEY_LEN];

    if (ngx_esp_shm_user_keys(zone, domain, user, keys) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_esp_shm_user_revoke_keys(zone, keys[NGX_ESP_SHM_K_USER],
                                        keys[NGX_ESP_SHM_K_CACHE], since,
                                        expires);
}


ngx_int_t
ngx_esp_shm_user_revoke_keys(ngx_shm_zone_t *zone, u_char *key, u_char *ckey,
    time_t since, time_t expires)
{
    time_t               now;
    ngx_int_t            rc;
    ngx_esp_shm_ctx_t   *ctx;
    ngx_esp_shm_node_t  *en;

    ctx = zone->data;
    now = ngx_time();
    rc = NGX_OK;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    en = ngx_esp_shm_find(ctx, NGX_ESP_SHM_CACHE, ckey, now);

    if (en) {
        ngx_esp_shm_delete(ctx, en);
    }

    if (expires <= now) {
        goto done;
    }

    en = ngx_esp_shm_upsert(ctx, NGX_ESP_SHM_USER, key, NGX_ESP_SHM_Q_REVOKED,
                            now);
    if (en == NULL) {
        rc = NGX_ERROR;
        goto done;
    }

    en->u.since = ngx_max(en->u.since, since);
    en->expires = ngx_max(en->expires, expires);
    ctx->sh->changes++;

done:

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return rc;
}


ngx_int_t
ngx_esp_shm_user_keys(ngx_shm_zone_t *zone, ngx_str_t *domain,
    ngx_str_t *user, u_char keys[][NGX_ESP_SHM_KEY_LEN])
{
    static const char  *labels[NGX_ESP_SHM_USER_KEYS] = {
        NGX_ESP_SHM_L_USER,
        NGX_ESP_SHM_L_CACHE,
        NGX_ESP_SHM_L_LOCKOUT,
        NGX_ESP_SHM_L_FAMILIAR_COUNTER,
        NGX_ESP_SHM_L_MFA_COUNTER,
        NGX_ESP_SHM_L_MFA_FAMILIAR
    };

    ngx_uint_t  i;

    for (i = 0; i < NGX_ESP_SHM_USER_KEYS; i++) {
        if (ngx_esp_shm_user_key(zone->data, labels[i], domain, user,
                                 keys[i])
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


time_t
ngx_esp_user_revoked_since(ngx_shm_zone_t *zone, ngx_str_t *domain,
    ngx_str_t *user)
{
    u_char               key[NGX_ESP_SHM_KEY_LEN], low[1024];
    ngx_str_t            lower;
    time_t               since;
    ngx_esp_shm_ctx_t   *ctx;
    ngx_esp_shm_node_t  *en;

    ctx = zone->data;

    /* an admin action, rare: most of the time there is nothing to look up */

    if (ctx->sh->entries[NGX_ESP_SHM_USER] == 0) {
        return 0;
    }

    /* revocations are keyed by the lowercased logon name, as at login */

    if (user->len > sizeof(low)) {
        return ngx_time();
    }

    lower.data = low;
    lower.len = user->len;
    ngx_strlow(low, user->data, user->len);

    if (ngx_esp_shm_user_key(ctx, NGX_ESP_SHM_L_USER, domain, &lower, key)
        != NGX_OK)
    {
        /* fail closed */
        return ngx_time();
    }

    since = 0;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    en = ngx_esp_shm_find(ctx, NGX_ESP_SHM_USER, key, ngx_time());

    if (en) {
        since = en->u.since;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return since;
}


void
ngx_esp_shm_stats(ngx_shm_zone_t *zone, ngx_esp_shm_stats_t *st)
{
    size_t                free, chunk;
    ngx_uint_t            slot;
    ngx_slab_pool_t      *shpool;
    ngx_esp_shm_ctx_t    *ctx;
    ngx_esp_shm_shctx_t  *sh;

    ctx = zone->data;
    sh = ctx->sh;
    shpool = ctx->shpool;

    ngx_memzero(st, sizeof(ngx_esp_shm_stats_t));

    /* the slab class of a node */

    slot = 0;

    for (chunk = shpool->min_size; chunk < NGX_ESP_SHM_NODE_SIZE; chunk <<= 1)
    {
        slot++;
    }

    ngx_shmtx_lock(&shpool->mutex);

    st->blocked = ngx_esp_shm_count_blocked(ctx, ngx_time());

    st->cached = sh->entries[NGX_ESP_SHM_CACHE];
    st->lockouts = sh->entries[NGX_ESP_SHM_LOCKOUT];
    st->revoked_sessions = sh->entries[NGX_ESP_SHM_SESSION];
    st->revoked_users = sh->entries[NGX_ESP_SHM_USER];
    st->hits = sh->hits;
    st->misses = sh->misses;
    st->evictions = sh->evictions;
    st->alloc_failures = sh->alloc_failures;

    /* chunks of other sizes cannot hold entries: not counted as free */

    free = (shpool->pfree << ngx_pagesize_shift)
           + (shpool->stats[slot].total - shpool->stats[slot].used) * chunk;

    st->capacity = shpool->stats[slot].total
                   + shpool->pfree * (ngx_pagesize / chunk);

    ngx_shmtx_unlock(&shpool->mutex);

    st->size = zone->shm.size;
    st->free = free;
    st->used = st->size - free;
    st->entry_size = chunk;
}


static ngx_int_t
ngx_esp_shm_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    size_t                len;
    ngx_uint_t            i;
    ngx_esp_shm_ctx_t    *ctx;
    ngx_esp_shm_shctx_t  *sh;

    ctx = shm_zone->data;

    ctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (data || shm_zone->shm.exists) {

        /*
         * The zone of the previous cycle, still used by its workers: take
         * the state from the zone itself rather than from the old cycle's
         * context, and refuse a layout of another build of the module.
         */

        sh = ctx->shpool->data;

        if (sh == NULL
            || sh->magic != NGX_ESP_SHM_MAGIC
            || sh->node_size != NGX_ESP_SHM_NODE_SIZE
            || sh->shctx_size != sizeof(ngx_esp_shm_shctx_t))
        {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "esp_shared_zone \"%V\" was made by another "
                          "build of the module: restart nginx, or "
                          "rename or resize the zone",
                          &shm_zone->shm.name);
            return NGX_ERROR;
        }

        ctx->sh = sh;

        ngx_esp_shm_use_shared(ctx, shm_zone);

        return ngx_esp_shm_mac_init(ctx, shm_zone->shm.log);
    }

    sh = ngx_slab_alloc(ctx->shpool, sizeof(ngx_esp_shm_shctx_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(sh, sizeof(ngx_esp_shm_shctx_t));

    if (RAND_bytes(sh->secret, NGX_ESP_SHM_SECRET_LEN) != 1) {
        ngx_ssl_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "RAND_bytes() failed for esp_shared_zone \"%V\"",
                      &shm_zone->shm.name);
        return NGX_ERROR;
    }

    sh->magic = NGX_ESP_SHM_MAGIC;
    sh->node_size = NGX_ESP_SHM_NODE_SIZE;
    sh->shctx_size = sizeof(ngx_esp_shm_shctx_t);

    ngx_rbtree_init(&sh->rbtree, &sh->sentinel,
                    ngx_esp_shm_rbtree_insert_value);

    for (i = 0; i < NGX_ESP_SHM_NQUEUES; i++) {
        ngx_queue_init(&sh->lru[i]);
    }

    ctx->sh = sh;
    ctx->shpool->data = sh;

    len = sizeof(" in esp_shared_zone \"\"") + shm_zone->shm.name.len;

    ctx->shpool->log_ctx = ngx_slab_alloc(ctx->shpool, len);
    if (ctx->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(ctx->shpool->log_ctx, " in esp_shared_zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* a failed allocation is answered by eviction, not logged by the slab */

    ctx->shpool->log_nomem = 0;

    if (ctx->state.len && ctx->keys) {
        ngx_esp_shm_state_load(ctx, shm_zone);
    }

    ngx_esp_shm_use_shared(ctx, shm_zone);

    return ngx_esp_shm_mac_init(ctx, shm_zone->shm.log);
}


static void
ngx_esp_shm_cleanup(void *data)
{
    ngx_esp_shm_ctx_t  *ctx = data;

    if (ctx->mac) {
        ngx_esp_shm_mac_free(ctx->mac);
        ctx->mac = NULL;
    }

    if (ctx->work) {
        ngx_esp_shm_mac_free(ctx->work);
        ctx->work = NULL;
    }
}


/*
 * With esp_cluster every node must find an entry under the same keyed
 * hash, so that the store and the nodes' messages can name it: the zone's
 * secret is then derived from the first session key, which every node
 * shares.  Entries hashed with an earlier secret (the zone of a reload
 * that turned the cluster on) are not found again and expire.
 */

static void
ngx_esp_shm_use_shared(ngx_esp_shm_ctx_t *ctx, ngx_shm_zone_t *shm_zone)
{
    if (!ctx->share
        || ngx_memcmp(ctx->sh->secret, ctx->shared, NGX_ESP_SHM_SECRET_LEN)
           == 0)
    {
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, shm_zone->shm.log, 0,
                  "esp_shared_zone \"%V\" takes the cluster's secret",
                  &shm_zone->shm.name);

    ngx_memcpy(ctx->sh->secret, ctx->shared, NGX_ESP_SHM_SECRET_LEN);
}


ngx_int_t
ngx_esp_shm_share_secret(ngx_shm_zone_t *zone, u_char *key, size_t len)
{
    unsigned int        n;
    ngx_esp_shm_ctx_t  *ctx;

    ctx = zone->data;

    if (HMAC(EVP_sha256(), key, (int) len,
             (u_char *) NGX_ESP_SHM_L_SHARED, sizeof(NGX_ESP_SHM_L_SHARED) - 1,
             ctx->shared, &n)
        == NULL
        || n != NGX_ESP_SHM_SECRET_LEN)
    {
        return NGX_ERROR;
    }

    ctx->share = 1;

    return NGX_OK;
}


/*
 * The keyed template is made once, in the master, and inherited by the
 * workers: a hash then costs a copy of the HMAC state, with no fetch of the
 * algorithm and no key schedule.
 */

static ngx_int_t
ngx_esp_shm_mac_init(ngx_esp_shm_ctx_t *ctx, ngx_log_t *log)
{
#if (NGX_ESP_SHM_EVP_MAC)
    EVP_MAC     *mac;
    OSSL_PARAM   params[2];
#endif

    if (ctx->mac) {
        return NGX_OK;
    }

#if (NGX_ESP_SHM_EVP_MAC)

    mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (mac == NULL) {
        ngx_ssl_error(NGX_LOG_EMERG, log, 0, "EVP_MAC_fetch(\"HMAC\") failed");
        return NGX_ERROR;
    }

    ctx->mac = EVP_MAC_CTX_new(mac);

    EVP_MAC_free(mac);

    if (ctx->mac == NULL) {
        ngx_ssl_error(NGX_LOG_EMERG, log, 0, "EVP_MAC_CTX_new() failed");
        return NGX_ERROR;
    }

    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                 (char *) "SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();

    if (EVP_MAC_init(ctx->mac, ctx->sh->secret, NGX_ESP_SHM_SECRET_LEN,
                     params)
        != 1)
    {
        ngx_ssl_error(NGX_LOG_EMERG, log, 0, "EVP_MAC_init() failed");
        return NGX_ERROR;
    }

#else

    ctx->mac = HMAC_CTX_new();
    if (ctx->mac == NULL) {
        ngx_ssl_error(NGX_LOG_EMERG, log, 0, "HMAC_CTX_new() failed");
        return NGX_ERROR;
    }

    if (HMAC_Init_ex(ctx->mac, ctx->sh->secret, NGX_ESP_SHM_SECRET_LEN,
                     EVP_sha256(), NULL)
        != 1)
    {
        ngx_ssl_error(NGX_LOG_EMERG, log, 0, "HMAC_Init_ex() failed");
        return NGX_ERROR;
    }

#endif

    return NGX_OK;
}


/*
 * HMAC-SHA256(secret, label NUL (len64 field)...): the label separates
 * the purposes, the big-endian 64-bit lengths the fields, so no two
 * different inputs hash alike.
 */

/*
 * Session ids are 128 random bits drawn per login: they are their own key,
 * with no need for the HMAC that hides user names.
 */

static void
ngx_esp_shm_session_key(u_char *id, size_t len, u_char *out)
{
    ngx_memzero(out, NGX_ESP_SHM_KEY_LEN);
    ngx_memcpy(out, id, ngx_min(len, NGX_ESP_SHM_KEY_LEN));
}


static ngx_int_t
ngx_esp_shm_key(ngx_esp_shm_ctx_t *ctx, const char *label, ngx_str_t *fields,
    ngx_uint_t n, u_char *out)
{
    u_char              len[8];
    uint64_t            l;
    ngx_int_t           rc;
    ngx_uint_t          i, k;
#if (NGX_ESP_SHM_EVP_MAC)
    size_t              outlen;
#else
    unsigned int        outlen;
#endif
    ngx_esp_shm_mac_t  *mctx;

    rc = NGX_ERROR;

#if (NGX_ESP_SHM_EVP_MAC)

    /*
     * a hash is computed on every Basic request: the key schedule is kept
     * in a working copy made once per process, and an init without a key
     * restarts it (no allocation per hash)
     */

    if (ctx->work == NULL) {
        ctx->work = EVP_MAC_CTX_dup(ctx->mac);
        if (ctx->work == NULL) {
            goto failed;
        }
    }

    mctx = ctx->work;

    if (EVP_MAC_init(mctx, NULL, 0, NULL) != 1) {
        goto failed;
    }

#else

    mctx = HMAC_CTX_new();
    if (mctx == NULL) {
        goto failed;
    }

    if (HMAC_CTX_copy(mctx, ctx->mac) != 1) {
        goto done;
    }

#endif

    if (ngx_esp_shm_mac_update(mctx, (u_char *) label, ngx_strlen(label) + 1)
        != 1)
    {
        goto done;
    }

    for (i = 0; i < n; i++) {

        l = fields[i].len;

        for (k = sizeof(len); k--; /* void */) {
            len[k] = (u_char) (l & 0xff);
            l >>= 8;
        }

        if (ngx_esp_shm_mac_update(mctx, len, sizeof(len)) != 1) {
            goto done;
        }

        if (fields[i].len
            && ngx_esp_shm_mac_update(mctx, fields[i].data, fields[i].len)
               != 1)
        {
            goto done;
        }
    }

#if (NGX_ESP_SHM_EVP_MAC)
    if (EVP_MAC_final(mctx, out, &outlen, NGX_ESP_SHM_KEY_LEN) == 1
#else
    if (HMAC_Final(mctx, out, &outlen) == 1
#endif
        && outlen == NGX_ESP_SHM_KEY_LEN)
    {
        rc = NGX_OK;
    }

done:

#if !(NGX_ESP_SHM_EVP_MAC)
    ngx_esp_shm_mac_free(mctx);
#endif

    if (rc == NGX_OK) {
        return NGX_OK;
    }

failed:

    ngx_ssl_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                  "HMAC-SHA256 failed%s", ctx->shpool->log_ctx);

    return NGX_ERROR;
}


static ngx_int_t
ngx_esp_shm_user_key(ngx_esp_shm_ctx_t *ctx, const char *label,
    ngx_str_t *domain, ngx_str_t *user, u_char *out)
{
    ngx_str_t  f[2];

    f[0] = *domain;
    f[1] = *user;

    return ngx_esp_shm_key(ctx, label, f, 2, out);
}


/* the tree and the queues; the zone's mutex is held */

static ngx_inline ngx_int_t
ngx_esp_shm_cmp(ngx_uint_t kind, u_char *key, ngx_esp_shm_node_t *en)
{
    if (kind != en->kind) {
        return (kind < en->kind) ? -1 : 1;
    }

    return ngx_memcmp(key, en->key, NGX_ESP_SHM_KEY_LEN);
}


static void
ngx_esp_shm_rbtree_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t   **p;
    ngx_esp_shm_node_t   *en, *ent;

    for ( ;; ) {

        if (node->key < temp->key) {

            p = &temp->left;

        } else if (node->key > temp->key) {

            p = &temp->right;

        } else { /* node->key == temp->key */

            en = (ngx_esp_shm_node_t *) &node->color;
            ent = (ngx_esp_shm_node_t *) &temp->color;

            p = (ngx_esp_shm_cmp(en->kind, en->key, ent) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


/* a stale entry is deleted on the way and not returned */

static ngx_esp_shm_node_t *
ngx_esp_shm_find(ngx_esp_shm_ctx_t *ctx, ngx_uint_t kind, u_char *key,
    time_t now)
{
    uint32_t             hash;
    ngx_int_t            rc;
    ngx_rbtree_node_t   *node, *sentinel;
    ngx_esp_shm_node_t  *en;

    ngx_memcpy(&hash, key, sizeof(uint32_t));

    node = ctx->sh->rbtree.root;
    sentinel = ctx->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        /* hash == node->key */

        en = (ngx_esp_shm_node_t *) &node->color;

        rc = ngx_esp_shm_cmp(kind, key, en);

        if (rc == 0) {

            if (en->expires && en->expires <= now) {
                ngx_esp_shm_delete(ctx, en);
                return NULL;
            }

            return en;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


static ngx_esp_shm_node_t *
ngx_esp_shm_create(ngx_esp_shm_ctx_t *ctx, ngx_uint_t kind, u_char *key,
    ngx_uint_t lru, time_t now)
{
    uint32_t             hash;
    ngx_rbtree_node_t   *node;
    ngx_esp_shm_node_t  *en;

    ngx_esp_shm_expire(ctx, now);

    /*
     * All nodes are of one size: each eviction frees a chunk the next
     * allocation can take, so this ends at the first eviction unless the
     * zone is empty.
     */

    for ( ;; ) {
        node = ngx_slab_alloc_locked(ctx->shpool, NGX_ESP_SHM_NODE_SIZE);

        if (node) {
            break;
        }

        if (ngx_esp_shm_evict(ctx, now) != NGX_OK) {
            ctx->sh->alloc_failures++;
            ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                          "could not allocate an entry%s",
                          ctx->shpool->log_ctx);
            return NULL;
        }
    }

    ngx_memcpy(&hash, key, sizeof(uint32_t));

    node->key = hash;

    en = (ngx_esp_shm_node_t *) &node->color;

    ngx_memzero(en, sizeof(ngx_esp_shm_node_t));

    en->kind = (u_char) kind;
    en->lru = (u_char) lru;
    ngx_memcpy(en->key, key, NGX_ESP_SHM_KEY_LEN);

    ngx_rbtree_insert(&ctx->sh->rbtree, node);

    ngx_queue_insert_head(&ctx->sh->lru[lru], &en->queue);

    ctx->sh->entries[kind]++;

    if (lru == NGX_ESP_SHM_Q_BLOCKED) {
        ctx->sh->blocked++;
    }

    return en;
}


/* the entry of a key, to the head of its queue, or a new one */

static ngx_esp_shm_node_t *
ngx_esp_shm_upsert(ngx_esp_shm_ctx_t *ctx, ngx_uint_t kind, u_char *key,
    ngx_uint_t lru, time_t now)
{
    ngx_esp_shm_node_t  *en;

    en = ngx_esp_shm_find(ctx, kind, key, now);

    if (en == NULL) {
        return ngx_esp_shm_create(ctx, kind, key, lru, now);
    }

    ngx_esp_shm_touch(ctx, en, lru);

    return en;
}


/* to the head of an LRU queue, the same or another */

static void
ngx_esp_shm_touch(ngx_esp_shm_ctx_t *ctx, ngx_esp_shm_node_t *en,
    ngx_uint_t lru)
{
    ngx_queue_remove(&en->queue);
    ngx_queue_insert_head(&ctx->sh->lru[lru], &en->queue);

    if (en->lru == lru) {
        return;
    }

    if (en->lru == NGX_ESP_SHM_Q_BLOCKED) {
        ctx->sh->blocked--;
    }

    if (lru == NGX_ESP_SHM_Q_BLOCKED) {
        ctx->sh->blocked++;
    }

    en->lru = (u_char) lru;
}


static void
ngx_esp_shm_delete(ngx_esp_shm_ctx_t *ctx, ngx_esp_shm_node_t *en)
{
    ngx_queue_remove(&en->queue);

    ngx_rbtree_delete(&ctx->sh->rbtree, ngx_esp_shm_rbnode(en));

    ctx->sh->entries[en->kind]--;

    if (en->lru == NGX_ESP_SHM_Q_BLOCKED) {
        ctx->sh->blocked--;
    }

    /* no password verifier is left in free memory */

    ngx_explicit_memzero(en->key, sizeof(en->key));
    ngx_explicit_memzero(&en->u, sizeof(en->u));

    ngx_slab_free_locked(ctx->shpool, ngx_esp_shm_rbnode(en));
}


/*
 * As limit_req does before each allocation: up to two stale entries at the
 * tail of each queue.  The queues are in order of use, not of expiry, so
 * this is opportunistic; lookups drop the stale entries they meet.
 */

static void
ngx_esp_shm_expire(ngx_esp_shm_ctx_t *ctx, time_t now)
{
    ngx_uint_t           q, n;
    ngx_queue_t         *lru;
    ngx_esp_shm_node_t  *en;

    for (q = 0; q < NGX_ESP_SHM_NQUEUES; q++) {

        lru = &ctx->sh->lru[q];

        for (n = 0; n < 2 && !ngx_queue_empty(lru); n++) {

            en = ngx_queue_data(ngx_queue_last(lru), ngx_esp_shm_node_t,
                                queue);

            if (en->expires == 0 || en->expires > now) {
                break;
            }

            ngx_esp_shm_delete(ctx, en);
        }
    }
}


/*
 * Frees one entry: the least recently used of the first non-empty queue.
 * Blocks and revocations go last, and a stale one near the tail goes
 * before a live one, since losing them weakens lockout and logoff.
 */

static ngx_int_t
ngx_esp_shm_evict(ngx_esp_shm_ctx_t *ctx, time_t now)
{
    ngx_uint_t           q, n;
    ngx_queue_t         *lru, *qn;
    ngx_esp_shm_node_t  *en;

    for (q = 0; q < NGX_ESP_SHM_NQUEUES; q++) {

        lru = &ctx->sh->lru[q];

        if (ngx_queue_empty(lru)) {
            continue;
        }

        if (q >= NGX_ESP_SHM_Q_BLOCKED) {

            qn = ngx_queue_last(lru);

            for (n = 0;
                 n < NGX_ESP_SHM_SCAN && qn != ngx_queue_sentinel(lru);
                 n++)
            {
                en = ngx_queue_data(qn, ngx_esp_shm_node_t, queue);

                if (en->expires && en->expires <= now) {
                    ngx_esp_shm_delete(ctx, en);
                    return NGX_OK;
                }

                qn = ngx_queue_prev(qn);
            }

            if (now - ctx->sh->warned >= NGX_ESP_SHM_WARN_PERIOD) {
                ctx->sh->warned = now;

                ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                              "evicting %s%s: the zone is full, "
                              "raise its size",
                              q == NGX_ESP_SHM_Q_BLOCKED
                              ? "active lockouts" : "revoked sessions",
                              ctx->shpool->log_ctx);
            }
        }

        en = ngx_queue_data(ngx_queue_last(lru), ngx_esp_shm_node_t, queue);

        if (en->expires == 0 || en->expires > now) {
            ctx->sh->evictions++;
        }

        ngx_esp_shm_delete(ctx, en);

        return NGX_OK;
    }

    return NGX_DECLINED;
}


/* blocks that ran out are taken off the blocked queue on the way */

static ngx_uint_t
ngx_esp_shm_count_blocked(ngx_esp_shm_ctx_t *ctx, time_t now)
{
    ngx_queue_t         *lru, *qn, *prev;
    ngx_esp_shm_node_t  *en;

    lru = &ctx->sh->lru[NGX_ESP_SHM_Q_BLOCKED];

    for (qn = ngx_queue_last(lru);
         qn != ngx_queue_sentinel(lru);
         qn = prev)
    {
        prev = ngx_queue_prev(qn);

        en = ngx_queue_data(qn, ngx_esp_shm_node_t, queue);

        if (en->expires <= now) {
            ngx_esp_shm_delete(ctx, en);

        } else if (en->u.lockout.until <= now) {
            /* slots still in flight keep the entry, not the block */
            ngx_esp_shm_counter_age(ctx, en, now);
            ngx_esp_shm_counter_update(ctx, en);
        }
    }

    return ctx->sh->blocked;
}


/* forgets what ran out: a block, a run of failures, slots in flight */

static void
ngx_esp_shm_counter_age(ngx_esp_shm_ctx_t *ctx, ngx_esp_shm_node_t *en,
    time_t now)
{
    ngx_esp_shm_lockout_t  *lk;

    lk = &en->u.lockout;

    if (lk->until && lk->until <= now) {
        /* a block that ran out starts the count again from zero */
        lk->until = 0;
        lk->failures = 0;
    }

    if (lk->failures && lk->until == 0 && lk->ends <= now) {
        lk->failures = 0;
    }

    if (lk->inflight && lk->busy_until <= now) {

        /*
         * Longer than any login can take: their process went away
         * without settling them (it crashed, or was killed).
         */

        lk->inflight = 0;
        lk->epoch = ++ctx->sh->epoch;
    }
}


/* the entry's life and queue follow its counter; it goes when empty */

static void
ngx_esp_shm_counter_update(ngx_esp_shm_ctx_t *ctx, ngx_esp_shm_node_t *en)
{
    time_t                  expires;
    ngx_esp_shm_lockout_t  *lk;

    lk = &en->u.lockout;

    if (lk->until) {
        expires = lk->until;

    } else if (lk->failures) {
        expires = lk->ends;

    } else {
        expires = 0;
    }

    if (lk->inflight) {
        expires = ngx_max(expires, lk->busy_until);
    }

    if (expires == 0) {
        ngx_esp_shm_delete(ctx, en);
        return;
    }

    en->expires = expires;

    ngx_esp_shm_touch(ctx, en, lk->until ? NGX_ESP_SHM_Q_BLOCKED
                                         : NGX_ESP_SHM_Q_COUNTER);
}


/*
 * One more failure; 1 if it starts a block.  The count is forgotten
 * reset_fail_timeout after the last failure, as AD forgets its own after
 * the observation window.  A failure while blocked does not extend the
 * block.
 */

static ngx_uint_t
ngx_esp_shm_counter_fail(ngx_esp_shm_ctx_t *ctx, ngx_esp_shm_node_t *en,
    ngx_esp_shm_policy_t *p, time_t now)
{
    ngx_esp_shm_lockout_t  *lk;

    lk = &en->u.lockout;

    if (lk->until) {
        return 0;
    }

    ctx->sh->changes++;

    if (lk->failures < 0xffff) {
        lk->failures++;
    }

    lk->ends = now + p->reset;

    if (lk->failures >= p->max) {
        lk->until = now + p->unblock;
        return 1;
    }

    return 0;
}


/*
 * The state file (esp_shared_zone ... state=PATH): what a restart must not
 * forget, that is revoked sessions, user revocations and lockout counters
 * (not the slots in flight, nor cached credentials or familiar clients).
 *
 *     "ESPSEAL1" | key id (4) | nonce (12) | AES-256-GCM ciphertext | tag (16)
 *
 * under HMAC-SHA256(the first esp_session_key, label); the plaintext is
 *
 *     "ESPSTATE" | version (4) | count (4) | saved (8) | zone secret (32)
 *     | count records of kind (1) 0 (7) | expires (8) | key (32)
 *     | a (8) | b (8) | c (8)
 *
 * in network order.  The zone's secret is kept so that the keyed hashes
 * still find their users after a restart; sealed, it tells nothing to
 * whoever reads the file without the session key, nor does anything else
 * in it name a user.  The master writes the file when nginx stops, and
 * one worker every state_interval while the state changed; each writes a
 * temporary file and renames it, so a reader only ever sees a whole file.
 * It is read when the zone starts empty (at start, or when a reload
 * resizes it): a missing file is fine, a corrupt one is logged and
 * ignored.
 */

#define NGX_ESP_STATE_SEAL       "ESPSEAL1"
#define NGX_ESP_STATE_MAGIC      "ESPSTATE"
#define NGX_ESP_STATE_VERSION    1
#define NGX_ESP_STATE_LABEL      "ngx_esp state file v1"
#define NGX_ESP_STATE_NONCE_LEN  12
#define NGX_ESP_STATE_TAG_LEN    16
#define NGX_ESP_STATE_HEAD_LEN   (8 + NGX_ESP_KEY_ID_LEN                    \
                                  + NGX_ESP_STATE_NONCE_LEN)
#define NGX_ESP_STATE_PLAIN_LEN  (8 + 4 + 4 + 8 + NGX_ESP_SHM_SECRET_LEN)
#define NGX_ESP_STATE_REC_LEN    (8 + 8 + NGX_ESP_SHM_KEY_LEN + 3 * 8)


static ngx_int_t
ngx_esp_shm_state_crypt(ngx_uint_t enc, ngx_esp_key_t *k, u_char *head,
    u_char *in, size_t len, u_char *out, u_char *tag)
{
    int              n;
    u_char           key[EVP_MAX_MD_SIZE];
    unsigned int     klen;
    ngx_int_t        rc;
    EVP_CIPHER_CTX  *cctx;

    /* a key of its own: nothing sealed for cookies opens as a state */

    if (HMAC(EVP_sha256(), k->key, NGX_ESP_KEY_LEN,
             (u_char *) NGX_ESP_STATE_LABEL, sizeof(NGX_ESP_STATE_LABEL) - 1,
             key, &klen)
        == NULL)
    {
        return NGX_ERROR;
    }

    cctx = EVP_CIPHER_CTX_new();
    if (cctx == NULL) {
        ngx_explicit_memzero(key, sizeof(key));
        return NGX_ERROR;
    }

    rc = NGX_ERROR;

    if (EVP_CipherInit_ex(cctx, EVP_aes_256_gcm(), NULL, NULL, NULL,
                          (int) enc)
        != 1
        || EVP_CIPHER_CTX_ctrl(cctx, EVP_CTRL_GCM_SET_IVLEN,
                               NGX_ESP_STATE_NONCE_LEN, NULL)
           != 1
        || EVP_CipherInit_ex(cctx, NULL, NULL, key,
                             head + 8 + NGX_ESP_KEY_ID_LEN, (int) enc)
           != 1
        || EVP_CipherUpdate(cctx, NULL, &n, head, NGX_ESP_STATE_HEAD_LEN)
           != 1
        || EVP_CipherUpdate(cctx, out, &n, in, (int) len) != 1)
    {
        goto done;
    }

    if (enc) {
        if (EVP_CipherFinal_ex(cctx, out + n, &n) == 1
            && EVP_CIPHER_CTX_ctrl(cctx, EVP_CTRL_GCM_GET_TAG,
                                   NGX_ESP_STATE_TAG_LEN, tag)
               == 1)
        {
            rc = NGX_OK;
        }

    } else if (EVP_CIPHER_CTX_ctrl(cctx, EVP_CTRL_GCM_SET_TAG,
                                   NGX_ESP_STATE_TAG_LEN, tag)
               == 1
               && EVP_CipherFinal_ex(cctx, out + n, &n) == 1)
    {
        rc = NGX_OK;
    }

done:

    EVP_CIPHER_CTX_free(cctx);
    ngx_explicit_memzero(key, sizeof(key));

    return rc;
}


u_char *
ngx_esp_shm_put(u_char *p, uint64_t v, ngx_uint_t n)
{
    ngx_uint_t  i;

    for (i = n; i--; /* void */) {
        p[i] = (u_char) v;
        v >>= 8;
    }

    return p + n;
}


uint64_t
ngx_esp_shm_get(u_char *p, ngx_uint_t n)
{
    uint64_t    v;
    ngx_uint_t  i;

    v = 0;

    for (i = 0; i < n; i++) {
        v = (v << 8) | p[i];
    }

    return v;
}


/* the records, oldest first, so that loading them keeps the LRU order */

static u_char *
ngx_esp_shm_state_records(ngx_esp_shm_ctx_t *ctx, u_char *p, u_char *last,
    time_t now, ngx_uint_t *n)
{
    ngx_uint_t           q;
    ngx_queue_t         *lru, *qn;
    ngx_esp_shm_node_t  *en;

    static ngx_uint_t  queues[] = {
        NGX_ESP_SHM_Q_COUNTER, NGX_ESP_SHM_Q_BLOCKED, NGX_ESP_SHM_Q_REVOKED
    };

    for (q = 0; q < sizeof(queues) / sizeof(queues[0]); q++) {

        lru = &ctx->sh->lru[queues[q]];

        for (qn = ngx_queue_last(lru);
             qn != ngx_queue_sentinel(lru);
             qn = ngx_queue_prev(qn))
        {
            en = ngx_queue_data(qn, ngx_esp_shm_node_t, queue);

            if (en->expires && en->expires <= now) {
                continue;
            }

            if (en->kind == NGX_ESP_SHM_LOCKOUT
                && en->u.lockout.failures == 0 && en->u.lockout.until == 0)
            {
                /* only slots in flight: they end with this process */
                continue;
            }

            if (last - p < NGX_ESP_STATE_REC_LEN) {
                return p;
            }

            ngx_memzero(p, 8);
            p[0] = en->kind;
            p = ngx_esp_shm_put(p + 8, (uint64_t) en->expires, 8);
            p = ngx_cpymem(p, en->key, NGX_ESP_SHM_KEY_LEN);

            switch (en->kind) {

            case NGX_ESP_SHM_LOCKOUT:
                p = ngx_esp_shm_put(p, (uint64_t) en->u.lockout.ends, 8);
                p = ngx_esp_shm_put(p, (uint64_t) en->u.lockout.until, 8);
                p = ngx_esp_shm_put(p, en->u.lockout.failures, 8);
                break;

            case NGX_ESP_SHM_USER:
                p = ngx_esp_shm_put(p, (uint64_t) en->u.since, 8);
                p = ngx_esp_shm_put(p, 0, 16);
                break;

            default: /* NGX_ESP_SHM_SESSION */
                p = ngx_esp_shm_put(p, 0, 24);
                break;
            }

            (*n)++;
        }
    }

    return p;
}


static ngx_int_t
ngx_esp_shm_state_save(ngx_esp_shm_ctx_t *ctx, ngx_log_t *log,
    ngx_uint_t sync)
{
    u_char         *buf, *plain, *p, *last, *name;
    size_t          size, len;
    time_t          now;
    ngx_fd_t        fd;
    ngx_int_t       rc;
    ngx_err_t       err;
    ngx_uint_t      n, i, changes, level;
    ngx_esp_key_t  *k;

    k = ctx->keys->elts;
    now = ngx_time();

    /* as many records as there are entries, at most */

    n = 0;

    for (i = 0; i < NGX_ESP_SHM_NKINDS; i++) {
        n += ctx->sh->entries[i];
    }

    len = NGX_ESP_STATE_PLAIN_LEN + n * NGX_ESP_STATE_REC_LEN;
    size = NGX_ESP_STATE_HEAD_LEN + 2 * len + NGX_ESP_STATE_TAG_LEN
           + ctx->state.len + sizeof(".4294967295.tmp");

    buf = ngx_alloc(size, log);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    plain = buf + NGX_ESP_STATE_HEAD_LEN + len + NGX_ESP_STATE_TAG_LEN;
    name = plain + len;

    p = plain + NGX_ESP_STATE_PLAIN_LEN;
    n = 0;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    last = ngx_esp_shm_state_records(ctx, p, p + len - NGX_ESP_STATE_PLAIN_LEN,
                                     now, &n);
    changes = ctx->sh->changes;
    ngx_memcpy(plain + 24, ctx->sh->secret, NGX_ESP_SHM_SECRET_LEN);

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    p = ngx_cpymem(plain, NGX_ESP_STATE_MAGIC, 8);
    p = ngx_esp_shm_put(p, NGX_ESP_STATE_VERSION, 4);
    p = ngx_esp_shm_put(p, n, 4);
    (void) ngx_esp_shm_put(p, (uint64_t) now, 8);

    len = last - plain;

    p = ngx_cpymem(buf, NGX_ESP_STATE_SEAL, 8);
    p = ngx_cpymem(p, k[0].id, NGX_ESP_KEY_ID_LEN);

    if (RAND_bytes(p, NGX_ESP_STATE_NONCE_LEN) != 1
        || ngx_esp_shm_state_crypt(1, &k[0], buf, plain, len,
                                   buf + NGX_ESP_STATE_HEAD_LEN,
                                   buf + NGX_ESP_STATE_HEAD_LEN + len)
           != NGX_OK)
    {
        ngx_ssl_error(NGX_LOG_ALERT, log, 0, "esp_shared_zone \"%V\": "
                      "could not seal the state", &ctx->name);
        rc = NGX_ERROR;
        goto done;
    }

    size = NGX_ESP_STATE_HEAD_LEN + len + NGX_ESP_STATE_TAG_LEN;

    /*
     * One temporary file per process: a reload may have two writers.  The
     * master writes as root in a directory the workers may write to: a
     * name found there is removed, never followed.
     */

    (void) ngx_sprintf(name, "%V.%P.tmp%Z", &ctx->state, ngx_pid);

    rc = NGX_ERROR;

    (void) ngx_delete_file(name);

    fd = open((char *) name, O_WRONLY|O_CREAT|O_EXCL|O_CLOEXEC, 0600);

    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                      "esp_shared_zone \"%V\": could not write the state: "
                      ngx_open_file_n " \"%s\" failed", &ctx->name, name);
        goto done;
    }

    if (ngx_write_fd(fd, buf, size) != (ssize_t) size) {
        err = ngx_errno;
        ngx_log_error(NGX_LOG_ERR, log, err,
                      "esp_shared_zone \"%V\": could not write the state: "
                      "write to \"%s\" failed", &ctx->name, name);

    } else if (sync && fsync(fd) == -1) {
        ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                      "esp_shared_zone \"%V\": fsync(\"%s\") failed",
                      &ctx->name, name);

    } else {
        rc = NGX_OK;
    }

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        rc = NGX_ERROR;
    }

    if (rc == NGX_OK
        && ngx_rename_file(name, ctx->state.data) == NGX_FILE_ERROR)
    {
        ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                      "esp_shared_zone \"%V\": could not write the state: "
                      ngx_rename_file_n " \"%s\" to \"%V\" failed",
                      &ctx->name, name, &ctx->state);
        rc = NGX_ERROR;
    }

    if (rc != NGX_OK) {
        (void) ngx_delete_file(name);
        goto done;
    }

    ctx->saved = changes;

    level = sync ? NGX_LOG_NOTICE : NGX_LOG_INFO;

    ngx_log_error(level, log, 0,
                  "esp_shared_zone \"%V\": state saved to \"%V\": "
                  "%ui entries", &ctx->name, &ctx->state, n);

done:

    ngx_explicit_memzero(plain, NGX_ESP_STATE_PLAIN_LEN);
    ngx_free(buf);

    return rc;
}


/*
 * Called from init_zone for a new zone, in the master, before any worker:
 * the entries go in with the file's secret, or not at all.
 */

static void
ngx_esp_shm_state_load(ngx_esp_shm_ctx_t *ctx, ngx_shm_zone_t *zone)
{
    u_char               *buf, *plain, *p;
    size_t                len;
    off_t                 size;
    time_t                now, expires;
    ssize_t               got;
    ngx_fd_t              fd;
    uint64_t              a, b, c;
    ngx_uint_t            i, n, kind, loaded, skipped;
    const char           *reason;
    ngx_log_t            *log;
    ngx_file_info_t       fi;
    ngx_esp_key_t        *k;
    ngx_esp_shm_node_t   *en;

    log = zone->shm.log;

    /* the master reads it as root: a FIFO put there must not hang it */

    fd = open((char *) ctx->state.data, O_RDONLY|O_NONBLOCK|O_CLOEXEC);

    if (fd == NGX_INVALID_FILE) {
        if (ngx_errno == NGX_ENOENT) {
            ngx_log_error(NGX_LOG_NOTICE, log, 0,
                          "esp_shared_zone \"%V\": no state file \"%V\" "
                          "yet: starting empty", &ctx->name, &ctx->state);

        } else {
            ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                          "esp_shared_zone \"%V\": state file \"%V\" "
                          "ignored: " ngx_open_file_n " failed",
                          &ctx->name, &ctx->state);
        }

        return;
    }

    buf = NULL;
    plain = NULL;
    len = 0;
    reason = NULL;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR || !ngx_is_file(&fi)) {
        reason = "not a regular file";
        goto failed;
    }

    size = ngx_file_size(&fi);

    /* no more records than the zone could hold */

    if (size < NGX_ESP_STATE_HEAD_LEN + NGX_ESP_STATE_PLAIN_LEN
               + NGX_ESP_STATE_TAG_LEN
        || size > (off_t) (NGX_ESP_STATE_HEAD_LEN + NGX_ESP_STATE_PLAIN_LEN
                           + NGX_ESP_STATE_TAG_LEN
                           + (zone->shm.size / NGX_ESP_SHM_NODE_SIZE)
                             * NGX_ESP_STATE_REC_LEN))
    {
        reason = "corrupt: bad size";
        goto failed;
    }

    buf = ngx_alloc(2 * (size_t) size, log);
    if (buf == NULL) {
        reason = "out of memory";
        goto failed;
    }

    got = ngx_read_fd(fd, buf, (size_t) size);

    if (got != (ssize_t) size) {
        reason = "cannot read it";
        goto failed;
    }

    if (ngx_memcmp(buf, NGX_ESP_STATE_SEAL, 8) != 0) {
        reason = "corrupt: not a state file";
        goto failed;
    }

    k = ctx->keys->elts;

    for (i = 0; i < ctx->keys->nelts; i++) {
        if (ngx_memcmp(k[i].id, buf + 8, NGX_ESP_KEY_ID_LEN) == 0) {
            break;
        }
    }

    if (i == ctx->keys->nelts) {
        reason = "sealed with a key that esp_session_key does not list";
        goto failed;
    }

    len = (size_t) size - NGX_ESP_STATE_HEAD_LEN - NGX_ESP_STATE_TAG_LEN;
    plain = buf + size;

    if (ngx_esp_shm_state_crypt(0, &k[i], buf, buf + NGX_ESP_STATE_HEAD_LEN,
                                len, plain,
                                buf + NGX_ESP_STATE_HEAD_LEN + len)
        != NGX_OK)
    {
        reason = "corrupt: it does not authenticate";
        goto failed;
    }

    n = (ngx_uint_t) ngx_esp_shm_get(plain + 12, 4);

    if (ngx_memcmp(plain, NGX_ESP_STATE_MAGIC, 8) != 0
        || ngx_esp_shm_get(plain + 8, 4) != NGX_ESP_STATE_VERSION
        || len != NGX_ESP_STATE_PLAIN_LEN + n * NGX_ESP_STATE_REC_LEN)
    {
        reason = "corrupt: unknown version or bad count";
        goto failed;
    }

    /* every record is checked before any goes in */

    for (p = plain + NGX_ESP_STATE_PLAIN_LEN; p < plain + len;
         p += NGX_ESP_STATE_REC_LEN)
    {
        kind = p[0];
        c = ngx_esp_shm_get(p + 64, 8);

        if ((kind != NGX_ESP_SHM_LOCKOUT && kind != NGX_ESP_SHM_SESSION
             && kind != NGX_ESP_SHM_USER)
            || (kind == NGX_ESP_SHM_LOCKOUT && c > 0xffff))
        {
            reason = "corrupt: a bad record";
            goto failed;
        }
    }

    /* the hashes in the file were made with its secret */

    ngx_memcpy(ctx->sh->secret, plain + 24, NGX_ESP_SHM_SECRET_LEN);

    now = ngx_time();
    loaded = 0;
    skipped = 0;

    for (p = plain + NGX_ESP_STATE_PLAIN_LEN; p < plain + len;
         p += NGX_ESP_STATE_REC_LEN)
    {
        kind = p[0];
        expires = (time_t) ngx_esp_shm_get(p + 8, 8);
        a = ngx_esp_shm_get(p + 48, 8);
        b = ngx_esp_shm_get(p + 56, 8);
        c = ngx_esp_shm_get(p + 64, 8);

        if ((expires && expires <= now)
            || ngx_esp_shm_find(ctx, kind, p + 16, now))
        {
            skipped++;
            continue;
        }

        en = ngx_esp_shm_create(ctx, kind, p + 16,
                                kind == NGX_ESP_SHM_LOCKOUT
                                ? NGX_ESP_SHM_Q_COUNTER
                                : NGX_ESP_SHM_Q_REVOKED,
                                now);
        if (en == NULL) {
            break;
        }

        en->expires = expires;

        if (kind == NGX_ESP_SHM_LOCKOUT) {
            en->u.lockout.ends = (time_t) a;
            en->u.lockout.until = (time_t) b;
            en->u.lockout.failures = (uint16_t) c;
            en->u.lockout.epoch = ++ctx->sh->epoch;

            if (en->u.lockout.until > now) {
                ngx_esp_shm_touch(ctx, en, NGX_ESP_SHM_Q_BLOCKED);
            }

        } else if (kind == NGX_ESP_SHM_USER) {
            en->u.since = (time_t) a;
        }

        loaded++;
    }

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "esp_shared_zone \"%V\": state read from \"%V\": "
                  "%ui entries, %ui expired", &ctx->name, &ctx->state,
                  loaded, skipped);

    goto done;

failed:

    ngx_log_error(NGX_LOG_ERR, log, 0,
                  "esp_shared_zone \"%V\": state file \"%V\" ignored: %s",
                  &ctx->name, &ctx->state, reason);

done:

    if (plain) {
        ngx_explicit_memzero(plain, len);
    }

    if (buf) {
        ngx_free(buf);
    }

    (void) ngx_close_file(fd);
}


static void
ngx_esp_shm_state_handler(ngx_event_t *ev)
{
    ngx_shm_zone_t     *zone = ev->data;

    ngx_esp_shm_ctx_t  *ctx;

    ctx = zone->data;

    if (ctx->sh->changes != ctx->saved) {
        (void) ngx_esp_shm_state_save(ctx, ev->log, 0);
    }

    if (!ngx_exiting && !ngx_quit && !ngx_terminate) {
        ngx_add_timer(ev, ctx->state_interval);
    }
}


/* one process writes periodically: worker 0, or the single process */

ngx_int_t
ngx_esp_shm_init_worker(ngx_cycle_t *cycle, ngx_shm_zone_t *zone)
{
    ngx_event_t        *ev;
    ngx_esp_shm_ctx_t  *ctx;

    ctx = zone->data;

    if (ctx->state.len == 0 || ctx->keys == NULL
        || !(ngx_process == NGX_PROCESS_SINGLE
             || (ngx_process == NGX_PROCESS_WORKER && ngx_worker == 0)))
    {
        return NGX_OK;
    }

    ctx->saved = ctx->sh->changes;

    ev = ngx_pcalloc(cycle->pool, sizeof(ngx_event_t));
    if (ev == NULL) {
        return NGX_ERROR;
    }

    ev->handler = ngx_esp_shm_state_handler;
    ev->data = zone;
    ev->log = cycle->log;

    /* a graceful shutdown does not wait for it */
    ev->cancelable = 1;

    ngx_add_timer(ev, ctx->state_interval);

    return NGX_OK;
}


void
ngx_esp_shm_exit_master(ngx_cycle_t *cycle, ngx_shm_zone_t *zone)
{
    ngx_esp_shm_ctx_t  *ctx;

    ctx = zone->data;

    if (ctx->state.len == 0 || ctx->keys == NULL || ctx->sh == NULL) {
        return;
    }

    /* the workers are gone: the master has the last word */

    (void) ngx_esp_shm_state_save(ctx, cycle->log, 1);
}


/* directives */

char *
ngx_esp_shared_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_esp_main_conf_t *emcf = conf;

    u_char             *p;
    ssize_t             size;
    ngx_str_t          *value, name, s, state;
    ngx_msec_t          interval;
    ngx_uint_t          i;
    ngx_esp_shm_ctx_t  *ctx;

    if (emcf->shm_zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    p = ngx_strlchr(value[1].data, value[1].data + value[1].len, ':');

    if (p == NULL || p == value[1].data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone \"%V\" in \"%V\", it must be "
                           "NAME:SIZE, as in \"esp:16m\"",
                           &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    name.data = value[1].data;
    name.len = p - name.data;

    s.data = p + 1;
    s.len = value[1].data + value[1].len - s.data;

    size = ngx_parse_size(&s);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\" in \"%V\"",
                           &s, &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) NGX_ESP_SHM_MIN_SIZE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is too small, the minimum is %uzk",
                           &value[1], (size_t) NGX_ESP_SHM_MIN_SIZE / 1024);
        return NGX_CONF_ERROR;
    }

    ngx_str_null(&state);
    interval = NGX_CONF_UNSET_MSEC;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "state=", 6) == 0
            && state.data == NULL)
        {
            state.data = value[i].data + 6;
            state.len = value[i].len - 6;

            if (state.len == 0
                || ngx_conf_full_name(cf->cycle, &state, 0) != NGX_OK)
            {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "state_interval=", 15) == 0
            && interval == NGX_CONF_UNSET_MSEC)
        {
            s.data = value[i].data + 15;
            s.len = value[i].len - 15;

            interval = ngx_parse_time(&s, 0);

            if (interval == (ngx_msec_t) NGX_ERROR || interval < 1000) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\" in \"%V\": at least 1s",
                                   &value[i], &cmd->name);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        goto invalid;
    }

    if (interval != NGX_CONF_UNSET_MSEC && state.data == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"state_interval=\" in \"%V\" needs "
                           "\"state=\"", &cmd->name);
        return NGX_CONF_ERROR;
    }

    emcf->shm_zone = ngx_esp_shm_add(cf, &name, size);

    if (emcf->shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (state.data) {
        ctx = emcf->shm_zone->data;

        if (ctx->state.data
            && (ctx->state.len != state.len
                || ngx_strncmp(ctx->state.data, state.data, state.len) != 0))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "zone \"%V\" has another state file "
                               "already, \"%V\"", &name, &ctx->state);
            return NGX_CONF_ERROR;
        }

        ctx->state = state;
        ctx->state_interval = (interval == NGX_CONF_UNSET_MSEC)
                              ? 60000 : interval;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" in \"%V\"",
                       &value[i], &cmd->name);
    return NGX_CONF_ERROR;
}


char *
ngx_esp_shm_default_zone(ngx_conf_t *cf, ngx_esp_main_conf_t *emcf)
{
    ngx_esp_key_t      *k;
    ngx_esp_shm_ctx_t  *ctx;

    static ngx_str_t  name = ngx_string("esp");

    if (emcf->shm_zone) {
        ctx = emcf->shm_zone->data;

        if (ctx->state.len == 0) {
            return NGX_CONF_OK;
        }

        /*
         * The state file is sealed with the session key: a key drawn at
         * start could not open it after a restart.
         */

        k = emcf->keys->elts;

        if (k[0].file.len == sizeof("(random)") - 1
            && ngx_strncmp(k[0].file.data, "(random)", k[0].file.len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "esp_shared_zone \"%V\" with \"state=\" "
                               "needs \"esp_session_key\": the state "
                               "file is sealed with it", &ctx->name);
            return NGX_CONF_ERROR;
        }

        ctx->keys = emcf->keys;

        return NGX_CONF_OK;
    }

    emcf->shm_zone = ngx_esp_shm_add(cf, &name, NGX_ESP_SHM_DEFAULT_SIZE);

    if (emcf->shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_shm_zone_t *
ngx_esp_shm_add(ngx_conf_t *cf, ngx_str_t *name, size_t size)
{
    ngx_uint_t           i;
    ngx_list_part_t     *part;
    ngx_shm_zone_t      *shm_zone, *oshm_zone;
    ngx_pool_cleanup_t  *cln;
    ngx_esp_shm_ctx_t   *ctx;

    shm_zone = ngx_shared_memory_add(cf, name, size, &ngx_exchange_esp_module);
    if (shm_zone == NULL) {
        return NULL;
    }

    if (shm_zone->data) {
        /* declared in another http{} block: the same zone */
        return shm_zone;
    }

    ctx = ngx_pcalloc(cf->pool, sizeof(ngx_esp_shm_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_esp_shm_cleanup;
    cln->data = ctx;

    ctx->name = *name;

    shm_zone->init = ngx_esp_shm_init_zone;
    shm_zone->data = ctx;

    /*
     * nginx keeps a zone across a reload only when its size is unchanged;
     * otherwise the new one starts empty, which drops blocks and
     * revocations: say so.
     */

    if (cf->cycle->old_cycle == NULL
        || ngx_is_init_cycle(cf->cycle->old_cycle))
    {
        return shm_zone;
    }

    part = &cf->cycle->old_cycle->shared_memory.part;
    oshm_zone = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            oshm_zone = part->elts;
            i = 0;
        }

        if (oshm_zone[i].tag != &ngx_exchange_esp_module
            || oshm_zone[i].shm.name.len != name->len
            || ngx_strncmp(oshm_zone[i].shm.name.data, name->data, name->len)
               != 0)
        {
            continue;
        }

        if (oshm_zone[i].shm.size != size) {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "esp_shared_zone \"%V\" changes size from "
                               "%uz to %uz: it starts empty, without the "
                               "current lockouts, revoked sessions and "
                               "cached credentials",
                               name, oshm_zone[i].shm.size, size);
        }

        break;
    }

    return shm_zone;
}
