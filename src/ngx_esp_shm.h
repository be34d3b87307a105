
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#ifndef _NGX_ESP_SHM_H_INCLUDED_
#define _NGX_ESP_SHM_H_INCLUDED_


#include "ngx_esp.h"


/*
 * The module's shared state ("esp_shared_zone NAME:SIZE;"): the Basic
 * credential cache, lockout counters and revoked sessions, in one slab
 * zone shared by all workers and kept across reloads.
 *
 * Nothing in the zone names a user or holds a password: entries are found
 * by HMAC-SHA256(zone secret, purpose, domain, user) and a cached password
 * is kept as HMAC-SHA256(zone secret, purpose, domain, user, password).
 * Revoked sessions are found by their session id itself (128 random bits
 * that name nobody); while no session or user is revoked, the checks made
 * on every request return without locking.
 * The 32-byte secret is drawn when the zone is created and lives in the
 * zone, so a reload keeps the cache; whoever can read the zone memory
 * (root, or the nginx user with ptrace) gets the secret too and can try
 * guesses offline, as with any password verifier, but learns nothing
 * without guessing.
 *
 * Memory (x86-64, 4k pages): every entry, whatever its kind, is the first
 * 32 bytes of an ngx_rbtree_node_t and a 96-byte body laid over its color
 * and data bytes: 128 bytes, exactly one chunk of the slab's 128-byte
 * class, plus 24 bytes of slab page header per 32 chunks.  Measured, the
 * zone's own overhead included: a 16m zone holds 130,208 entries (128.9
 * bytes each), a 10m zone 81,344, a 1m zone 8,064; a cached credential
 * and a revoked session cost the same.
 * ngx_esp_shm_stats() reports capacity and entry_size at run time.
 *
 * When the zone is full the least recently used entry goes, in this order
 * of kinds: cached credentials and familiar clients (smart lockout), then
 * failure counters of unblocked users,
 * then active blocks, then revocations (the last two are logged, at most
 * once a minute, since losing them weakens lockout and logoff).  A login
 * never fails because the zone is full.
 *
 * Each call holds the zone's mutex for a tree lookup (about 3 us for a
 * store, HMACs included, which are computed before locking).  No request
 * or pool is needed, so a thread-pool task may call them too.
 */


#define NGX_ESP_SHM_MIN_SIZE      (8 * ngx_pagesize)
#define NGX_ESP_SHM_KEY_LEN       32         /* HMAC-SHA256 */
#define NGX_ESP_SHM_DEFAULT_SIZE  (10 * 1024 * 1024)


typedef struct {
    ngx_uint_t                 cached;           /* credential cache */
    ngx_uint_t                 lockouts;         /* counting or blocked */
    ngx_uint_t                 blocked;          /* blocked now */
    ngx_uint_t                 revoked_sessions;
    ngx_uint_t                 revoked_users;

    ngx_uint_t                 hits;             /* ngx_esp_cache_lookup() */
    ngx_uint_t                 misses;           /* absent, stale, or
                                                    another password */
    ngx_uint_t                 evictions;        /* live entries dropped
                                                    for room */
    ngx_uint_t                 alloc_failures;   /* slab empty even after
                                                    evicting: never expected */

    size_t                     size;             /* the zone */
    size_t                     used;
    size_t                     free;             /* room for entries */
    size_t                     entry_size;       /* slab chunk per entry */
    ngx_uint_t                 capacity;         /* entries that fit now */
} ngx_esp_shm_stats_t;


/* the "esp_shared_zone" directive: conf is ngx_esp_main_conf_t */
char *ngx_esp_shared_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

/* adds "esp_shared_zone esp:10m" when none was configured (init_main_conf) */
char *ngx_esp_shm_default_zone(ngx_conf_t *cf, ngx_esp_main_conf_t *emcf);


/*
 * Basic credential cache, one entry per (domain, user); "user" is the
 * normalised (lowercased) logon name.  lookup: NGX_OK on a fresh entry
 * whose password matches, NGX_DONE on a fresh entry for another password
 * (which is kept), NGX_DECLINED otherwise.  store: replaces the previous
 * password, NGX_OK or NGX_ERROR.
 */
ngx_int_t ngx_esp_cache_lookup(ngx_shm_zone_t *zone, ngx_str_t *domain,
    ngx_str_t *user, ngx_str_t *password);
ngx_int_t ngx_esp_cache_store(ngx_shm_zone_t *zone, ngx_str_t *domain,
    ngx_str_t *user, ngx_str_t *password, time_t ttl);
void ngx_esp_cache_forget(ngx_shm_zone_t *zone, ngx_str_t *domain,
    ngx_str_t *user);


/*
 * Lockout counters, one per (domain, user) and budget: that of any client,
 * and with smart lockout that of familiar clients (src/ngx_esp_lockout.c
 * holds the policy).  A slot is a login's claim on its counter, from
 * before its bind to the directory's answer.
 *
 * counter_key: the slot's counter (NGX_ERROR if the key cannot be made).
 * blocked: NGX_BUSY while the counter is blocked (*until set if until is
 * not NULL), NGX_OK otherwise.
 * reserve: NGX_OK with the slot held; NGX_BUSY if blocked; if the failures
 * and the slots in flight reach p->max, NGX_AGAIN, or with count_busy
 * NGX_BUSY and the refusal counts as a failure (*started is 1 if it
 * started a block); NGX_ERROR if the zone has no room.
 * settle: gives a held slot back, once: NGX_ESP_SHM_RELEASE as it was,
 * NGX_ESP_SHM_FAILURE as a failure, NGX_ESP_SHM_SUCCESS resetting the
 * counter and lifting its block; 1 if this failure started a block.  A
 * slot not settled lapses after p->bound seconds.
 * counter_key's kind: NGX_ESP_SHM_COUNTER_FAMILIAR for the familiar
 * budget, NGX_ESP_SHM_COUNTER_MFA for second factors (a counter apart).
 * unblock: removes every counter of the user: NGX_OK if there was one,
 * NGX_DECLINED if not.  active: counters blocked now.
 */

#define NGX_ESP_SHM_RELEASE       0
#define NGX_ESP_SHM_SUCCESS       1
#define NGX_ESP_SHM_FAILURE       2


typedef struct {
    u_char                     key[NGX_ESP_SHM_KEY_LEN];
    uint32_t                   epoch;
    unsigned                   held:1;
} ngx_esp_shm_slot_t;


typedef struct {
    ngx_uint_t                 max;          /* failures and slots */
    time_t                     reset;        /* reset_fail_timeout */
    time_t                     unblock;      /* unblock_timeout */
    time_t                     bound;        /* the longest login */
} ngx_esp_shm_policy_t;


/* counter_key's "kind" */
#define NGX_ESP_SHM_COUNTER_FAMILIAR  0x01
#define NGX_ESP_SHM_COUNTER_MFA       0x02

ngx_int_t ngx_esp_shm_counter_key(ngx_shm_zone_t *zone, ngx_str_t *domain,
    ngx_str_t *user, ngx_uint_t kind, ngx_esp_shm_slot_t *slot);
ngx_int_t ngx_esp_shm_blocked(ngx_shm_zone_t *zone, ngx_esp_shm_policy_t *p,
    ngx_esp_shm_slot_t *slot, time_t *until);
ngx_int_t ngx_esp_shm_reserve(ngx_shm_zone_t *zone, ngx_esp_shm_policy_t *p,
    ngx_esp_shm_slot_t *slot, ngx_uint_t count_busy, ngx_uint_t *started);
ngx_uint_t ngx_esp_shm_settle(ngx_shm_zone_t *zone, ngx_esp_shm_policy_t *p,
    ngx_esp_shm_slot_t *slot, ngx_uint_t outcome);
ngx_int_t ngx_esp_lockout_unblock(ngx_shm_zone_t *zone, ngx_str_t *domain,
    ngx_str_t *user);


/*
 * Familiar clients of a user, by address, for smart lockout: find NGX_OK
 * or NGX_DECLINED; add remembers the address for ttl seconds (NGX_OK or
 * NGX_ERROR).
 */
ngx_int_t ngx_esp_familiar_find(ngx_shm_zone_t *zone, ngx_str_t *domain,
    ngx_str_t *user, ngx_str_t *addr);
ngx_int_t ngx_esp_familiar_add(ngx_shm_zone_t *zone, ngx_str_t *domain,
    ngx_str_t *user, ngx_str_t *addr, time_t ttl);


/*
 * Revoked sessions, by session id (any bytes), until "expires", the
 * session's own end.  revoke: NGX_OK or NGX_ERROR; an already expired
 * session is not stored.  is_revoked: NGX_OK if revoked, NGX_DECLINED if
 * not; NGX_OK too if the key cannot be computed (fail closed).
 *
 * user_revoke: the user's sessions issued up to "since" are revoked; the
 * record is kept until "expires" (since plus the longest session
 * lifetime), a later "since" wins, and the user's cached credential is
 * dropped too.  user_revoked_since: that time, or 0 (now, failing closed,
 * if the key cannot be computed); it lowercases the user itself, since
 * sessions keep the name as it was typed.  Times are in seconds, so a session is
 * revoked when issued <= since: a login in the very second of the
 * revocation has to be repeated, rather than one just before it surviving.
 */
ngx_int_t ngx_esp_session_revoke(ngx_shm_zone_t *zone, u_char *id, size_t len,
    time_t expires);
ngx_int_t ngx_esp_session_is_revoked(ngx_shm_zone_t *zone, u_char *id,
    size_t len);

/*
 * A value that may be used once until "expires" (a hand-off token's
 * nonce): NGX_OK the first time, NGX_DECLINED after (or once expired),
 * NGX_ERROR when the zone has no room.
 */
ngx_int_t ngx_esp_use_once(ngx_shm_zone_t *zone, u_char *id, size_t len,
    time_t expires);
ngx_int_t ngx_esp_user_revoke(ngx_shm_zone_t *zone, ngx_str_t *domain,
    ngx_str_t *user, time_t since, time_t expires);
time_t ngx_esp_user_revoked_since(ngx_shm_zone_t *zone, ngx_str_t *domain,
    ngx_str_t *user);


/*
 * once: NGX_OK the first time the keyed hash of "label" and "fields" is
 * seen (it is then kept until "expires"), NGX_DECLINED after; NGX_ERROR
 * if the zone has no room.  "key" receives the keyed hash (for the
 * cluster store, which spreads it like a revocation).
 */
ngx_int_t ngx_esp_shm_once(ngx_shm_zone_t *zone, const char *label,
    ngx_str_t *fields, ngx_uint_t n, time_t expires, u_char *key);


/*
 * For the cluster store (src/ngx_esp_cluster.c): entries by their keyed
 * hash, which its messages carry, never a name.  share_secret: the zone's
 * secret is derived from "key" (the first session key), so that every
 * node hashes alike.  user_keys: a user's keys, indexed by
 * NGX_ESP_SHM_K_*.  counter_clear: NGX_OK if the counter was there;
 * counter_block: the counter blocked until "until".
 */

#define NGX_ESP_SHM_K_USER        0
#define NGX_ESP_SHM_K_CACHE       1
#define NGX_ESP_SHM_K_LOCKOUT     2
#define NGX_ESP_SHM_K_FAMILIAR    3
#define NGX_ESP_SHM_K_MFA         4
#define NGX_ESP_SHM_K_MFA_FAMILIAR  5
#define NGX_ESP_SHM_USER_KEYS     6

ngx_int_t ngx_esp_shm_share_secret(ngx_shm_zone_t *zone, u_char *key,
    size_t len);
ngx_int_t ngx_esp_shm_user_keys(ngx_shm_zone_t *zone, ngx_str_t *domain,
    ngx_str_t *user, u_char keys[][NGX_ESP_SHM_KEY_LEN]);
void ngx_esp_shm_session_id_key(u_char *id, size_t len, u_char *key);
ngx_int_t ngx_esp_shm_revoke_key(ngx_shm_zone_t *zone, u_char *key,
    time_t expires);
ngx_int_t ngx_esp_shm_user_revoke_keys(ngx_shm_zone_t *zone, u_char *key,
    u_char *ckey, time_t since, time_t expires);
ngx_int_t ngx_esp_shm_counter_clear(ngx_shm_zone_t *zone, u_char *key);
ngx_int_t ngx_esp_shm_counter_block(ngx_shm_zone_t *zone, u_char *key,
    time_t until);


void ngx_esp_shm_stats(ngx_shm_zone_t *zone, ngx_esp_shm_stats_t *st);

/* n bytes of an integer in network order, as the state file has them */
u_char *ngx_esp_shm_put(u_char *p, uint64_t v, ngx_uint_t n);
uint64_t ngx_esp_shm_get(u_char *p, ngx_uint_t n);


/*
 * The state file ("state=" of esp_shared_zone): init_worker starts the
 * periodic save in one worker, exit_master saves when nginx stops.
 */
ngx_int_t ngx_esp_shm_init_worker(ngx_cycle_t *cycle, ngx_shm_zone_t *zone);
void ngx_esp_shm_exit_master(ngx_cycle_t *cycle, ngx_shm_zone_t *zone);


#endif /* _NGX_ESP_SHM_H_INCLUDED_ */
