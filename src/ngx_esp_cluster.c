
/*
 * Copyright (C) ngx_exchange_esp authors
 */


/*
 * The cluster store (esp_cluster): what one node's zone knows that every
 * node must know, in Redis, by keyed hashes only (the zone's secret is
 * derived from the shared session key, so every node hashes alike).
 *
 * In the store, under the prefix P:
 *
 *   P:l:KEY     hash: f (failures), e (when they are forgotten), u (blocked
 *               until); expires with them
 *   P:r:KEY     sorted set: the reservations in flight, scored by when
 *               they lapse (a node that dies leaves none for longer)
 *   P:blocks    sorted set: KEY scored by "until", for a node that
 *               resynchronises
 *   P:revoked   sorted set: "s KEY" (a session) and "u KEY CKEY SINCE" (a
 *               user's sessions, and the user's cached credential), scored
 *               by when the revocation may be forgotten
 *   P:events    the channel: "s KEY EXPIRES", "u KEY CKEY SINCE EXPIRES",
 *               "b KEY UNTIL", "r KEY" (a counter reset or unblocked)
 *
 * KEY is the zone key in hex.  Every change of a counter runs as one Lua
 * script, atomically, with the store's clock.
 *
 * The request path stays local: one worker per node (worker 0) subscribes
 * and writes what it hears into the shared zone, which every worker
 * reads; after every (re)connection it re-reads the blocks and
 * revocations that have not expired.  Only a login waits for the store,
 * for its reservation, at most esp_cluster's timeout; when the store does
 * not answer, the login goes on with the zone's count alone.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include <openssl/rand.h>

#include "ngx_esp_cluster.h"
#include "ngx_esp_cluster_msg.h"
#include "ngx_esp_domain.h"
#include "ngx_esp_session.h"
#include "ngx_esp_redis.h"


#define NGX_ESP_CLUSTER_PORT          6379
#define NGX_ESP_CLUSTER_ID_LEN        16         /* hex of 8 random bytes */
#define NGX_ESP_CLUSTER_TICK          1000
#define NGX_ESP_CLUSTER_STATS_SIZE    (8 * ngx_pagesize)

#define NGX_ESP_CLUSTER_ASKING        0
#define NGX_ESP_CLUSTER_HELD          1
#define NGX_ESP_CLUSTER_NONE          2


struct ngx_esp_cluster_res_s {
    ngx_esp_cluster_handler_pt   handler;
    void                        *data;
    ngx_esp_shm_policy_t         policy;
    ngx_uint_t                   state;
    ngx_uint_t                   outcome;        /* settled while asking */
    unsigned                     settled:1;
    u_char                       key[NGX_ESP_CLUSTER_HEX_LEN];
    u_char                       id[NGX_ESP_CLUSTER_ID_LEN];
};


/* all workers' view, in a small zone of its own */
typedef struct {
    ngx_atomic_t                 reachable;
    ngx_atomic_t                 failures;       /* commands not answered */
    ngx_atomic_t                 outages;        /* became unreachable */
    ngx_atomic_t                 events;         /* messages applied */
    ngx_atomic_t                 resyncs;
    ngx_atomic_t                 reservations;   /* granted by the store */
    ngx_atomic_t                 refusals;       /* blocked or busy there */
    ngx_atomic_t                 local_only;     /* logins without it */
    time_t                       changed;        /* reachable since */
} ngx_esp_cluster_stats_t;


static ngx_esp_redis_conf_t     *ngx_esp_cluster_conf;
static ngx_shm_zone_t           *ngx_esp_cluster_stats_zone;
static ngx_esp_cluster_stats_t  *ngx_esp_cluster_stats;
static ngx_shm_zone_t           *ngx_esp_cluster_zone;
static ngx_esp_redis_t          *ngx_esp_cluster_rs;
static ngx_esp_redis_t          *ngx_esp_cluster_sub;
static ngx_event_t               ngx_esp_cluster_tick;
static ngx_connection_t          ngx_esp_cluster_tick_conn;  /* for logs */
static ngx_str_t                 ngx_esp_cluster_channel;


/*
 * Revocations made while the store did not answer, per worker, sent once
 * it answers again (a try a second), so that the other nodes hear of them
 * late rather than never; the oldest go when there are too many.
 */

#define NGX_ESP_CLUSTER_PENDING_MAX   1024
#define NGX_ESP_CLUSTER_RETRY         1000

typedef struct {
    ngx_queue_t                  queue;
    time_t                       expires;
    size_t                       len;
    u_char                       member[NGX_ESP_CLUSTER_MSG_LEN];
} ngx_esp_cluster_pending_t;

static ngx_queue_t               ngx_esp_cluster_pending;
static ngx_uint_t                ngx_esp_cluster_npending;
static ngx_uint_t                ngx_esp_cluster_sending;    /* the head */
static ngx_uint_t                ngx_esp_cluster_resent;
static ngx_event_t               ngx_esp_cluster_retry;


/*
 * ARGV: prefix, key, max, reset, unblock, bound, id, count_busy.
 * Returns {0} held, {1} every slot busy, {2, until} blocked, {3, until}
 * refused and counted (until is 0 unless that started a block).
 */
static const char  ngx_esp_cluster_reserve_lua[] =
    "local P, K = ARGV[1], ARGV[2]\n"
    "local now = tonumber(redis.call('TIME')[1])\n"
    "local max, reset = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local unblock, bound = tonumber(ARGV[5]), tonumber(ARGV[6])\n"
    "local lk, rk = P .. ':l:' .. K, P .. ':r:' .. K\n"
    "redis.call('ZREMRANGEBYSCORE', rk, '-inf', now)\n"
    "local h = redis.call('HMGET', lk, 'f', 'e', 'u')\n"
    "local f, e, u = tonumber(h[1]) or 0, tonumber(h[2]) or 0,"
    " tonumber(h[3]) or 0\n"
    "if u > 0 and u <= now then u = 0; f = 0 end\n"
    "if u == 0 and f > 0 and e <= now then f = 0 end\n"
    "if u > 0 then return {2, u} end\n"
    "if f + redis.call('ZCARD', rk) >= max then\n"
    "  if ARGV[8] ~= '1' then return {1, 0} end\n"
    "  f = f + 1; e = now + reset\n"
    "  if f >= max then u = now + unblock end\n"
    "  redis.call('HSET', lk, 'f', f, 'e', e, 'u', u)\n"
    "  redis.call('EXPIREAT', lk, math.max(e, u))\n"
    "  if u > 0 then\n"
    "    redis.call('ZADD', P .. ':blocks', u, K)\n"
    "    redis.call('PUBLISH', P .. ':events', 'b ' .. K .. ' ' .. u)\n"
    "  end\n"
    "  return {3, u}\n"
    "end\n"
    "redis.call('ZADD', rk, now + bound, ARGV[7])\n"
    "redis.call('EXPIREAT', rk, now + bound)\n"
    "return {0, 0}\n";


/*
 * ARGV: prefix, key, max, reset, unblock, id, outcome (0 release,
 * 1 success, 2 failure).  Returns until when a block started, else 0.
 */
static const char  ngx_esp_cluster_settle_lua[] =
    "local P, K = ARGV[1], ARGV[2]\n"
    "local now = tonumber(redis.call('TIME')[1])\n"
    "local max, reset = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local lk, rk = P .. ':l:' .. K, P .. ':r:' .. K\n"
    "redis.call('ZREM', rk, ARGV[6])\n"
    "if ARGV[7] == '1' then\n"
    "  local n = redis.call('DEL', lk)"
    " + redis.call('ZREM', P .. ':blocks', K)\n"
    "  if n > 0 then redis.call('PUBLISH', P .. ':events', 'r ' .. K) end\n"
    "  return 0\n"
    "end\n"
    "if ARGV[7] ~= '2' then return 0 end\n"
    "local h = redis.call('HMGET', lk, 'f', 'e', 'u')\n"
    "local f, e, u = tonumber(h[1]) or 0, tonumber(h[2]) or 0,"
    " tonumber(h[3]) or 0\n"
    "if u > 0 and u <= now then u = 0; f = 0 end\n"
    "if u > 0 then return 0 end\n"
    "if f > 0 and e <= now then f = 0 end\n"
    "f = f + 1; e = now + reset\n"
    "if f >= max then u = now + tonumber(ARGV[5]) end\n"
    "redis.call('HSET', lk, 'f', f, 'e', e, 'u', u)\n"
    "redis.call('EXPIREAT', lk, math.max(e, u))\n"
    "if u > 0 then\n"
    "  redis.call('ZADD', P .. ':blocks', u, K)\n"
    "  redis.call('PUBLISH', P .. ':events', 'b ' .. K .. ' ' .. u)\n"
    "end\n"
    "return u\n";


/* ARGV: prefix, member, expires; the message is member and expires */
static const char  ngx_esp_cluster_revoke_lua[] =
    "local P = ARGV[1]\n"
    "local now = tonumber(redis.call('TIME')[1])\n"
    "redis.call('ZREMRANGEBYSCORE', P .. ':revoked', '-inf', now)\n"
    "local old = tonumber(redis.call('ZSCORE', P .. ':revoked', ARGV[2]))\n"
    "if old == nil or old < tonumber(ARGV[3]) then\n"
    "  redis.call('ZADD', P .. ':revoked', ARGV[3], ARGV[2])\n"
    "end\n"
    "redis.call('PUBLISH', P .. ':events', ARGV[2] .. ' ' .. ARGV[3])\n"
    "return 0\n";


/* ARGV: prefix, key...: the counters go, and their blocks */
static const char  ngx_esp_cluster_unblock_lua[] =
    "local P = ARGV[1]\n"
    "for i = 2, #ARGV do\n"
    "  redis.call('DEL', P .. ':l:' .. ARGV[i])\n"
    "  redis.call('ZREM', P .. ':blocks', ARGV[i])\n"
    "  redis.call('PUBLISH', P .. ':events', 'r ' .. ARGV[i])\n"
    "end\n"
    "return 0\n";


/* the blocks and revocations in force, for a node that catches up */
static const char  ngx_esp_cluster_resync_lua[] =
    "local P = ARGV[1]\n"
    "local now = tonumber(redis.call('TIME')[1])\n"
    "return {redis.call('ZRANGEBYSCORE', P .. ':blocks', now + 1, '+inf',"
    " 'WITHSCORES'),\n"
    "        redis.call('ZRANGEBYSCORE', P .. ':revoked', now + 1, '+inf',"
    " 'WITHSCORES')}\n";


static ngx_int_t ngx_esp_cluster_eval(const char *script, ngx_uint_t argc,
    ngx_str_t *args, ngx_esp_redis_handler_pt handler, void *data);
static void ngx_esp_cluster_reserved(ngx_esp_redis_cmd_t *cmd,
    redisReply *reply);
static void ngx_esp_cluster_send_settle(ngx_esp_cluster_res_t *res,
    ngx_uint_t outcome);
static void ngx_esp_cluster_done(ngx_esp_redis_cmd_t *cmd,
    redisReply *reply);
static void ngx_esp_cluster_count(redisReply *reply);
static void ngx_esp_cluster_publish(ngx_esp_cluster_event_t *ev,
    time_t expires);
static ngx_int_t ngx_esp_cluster_send_revocation(u_char *member, size_t len,
    time_t expires, ngx_esp_redis_handler_pt handler, void *data);
static void ngx_esp_cluster_resent_one(ngx_esp_redis_cmd_t *cmd,
    redisReply *reply);
static void ngx_esp_cluster_keep(u_char *member, size_t len, time_t expires);
static void ngx_esp_cluster_retry_handler(ngx_event_t *ev);
static void ngx_esp_cluster_push(ngx_esp_redis_t *rs, redisReply *reply);
static void ngx_esp_cluster_up(ngx_esp_redis_t *rs);
static void ngx_esp_cluster_down(ngx_esp_redis_t *rs);
static void ngx_esp_cluster_subscribed(ngx_esp_redis_cmd_t *cmd,
    redisReply *reply);
static void ngx_esp_cluster_resynced(ngx_esp_redis_cmd_t *cmd,
    redisReply *reply);
static void ngx_esp_cluster_apply(ngx_esp_cluster_event_t *ev, void *data);
static void ngx_esp_cluster_tick_handler(ngx_event_t *ev);
static ngx_int_t ngx_esp_cluster_init_stats(ngx_shm_zone_t *shm_zone,
    void *data);


ngx_int_t
ngx_esp_cluster_reserve(u_char *key, ngx_esp_shm_policy_t *p,
    ngx_uint_t count_busy, ngx_esp_cluster_handler_pt handler, void *data,
    ngx_esp_cluster_res_t **resp)
{
    u_char                 rnd[NGX_ESP_CLUSTER_ID_LEN / 2];
    u_char                 num[4][NGX_TIME_T_LEN];
    ngx_str_t              args[8];
    ngx_esp_cluster_res_t  *res;

    *resp = NULL;

    if (ngx_esp_cluster_rs == NULL) {
        return NGX_DECLINED;
    }

    res = ngx_calloc(sizeof(ngx_esp_cluster_res_t), ngx_cycle->log);
    if (res == NULL) {
        return NGX_DECLINED;
    }

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        ngx_free(res);
        return NGX_DECLINED;
    }

    res->handler = handler;
    res->data = data;
    res->policy = *p;
    res->state = NGX_ESP_CLUSTER_ASKING;

    ngx_hex_dump(res->key, key, NGX_ESP_SHM_KEY_LEN);
    ngx_hex_dump(res->id, rnd, sizeof(rnd));

    args[0] = ngx_esp_cluster_conf->prefix;
    args[1].data = res->key;
    args[1].len = NGX_ESP_CLUSTER_HEX_LEN;
    args[2].data = num[0];
    args[2].len = ngx_sprintf(num[0], "%ui", p->max) - num[0];
    args[3].data = num[1];
    args[3].len = ngx_sprintf(num[1], "%T", p->reset) - num[1];
    args[4].data = num[2];
    args[4].len = ngx_sprintf(num[2], "%T", p->unblock) - num[2];
    args[5].data = num[3];
    args[5].len = ngx_sprintf(num[3], "%T", p->bound) - num[3];
    args[6].data = res->id;
    args[6].len = NGX_ESP_CLUSTER_ID_LEN;
    args[7].data = (u_char *) (count_busy ? "1" : "0");
    args[7].len = 1;

    if (ngx_esp_cluster_eval(ngx_esp_cluster_reserve_lua, 8, args,
                             ngx_esp_cluster_reserved, res)
        != NGX_OK)
    {
        ngx_free(res);

        if (ngx_esp_cluster_stats) {
            (void) ngx_atomic_fetch_add(&ngx_esp_cluster_stats->local_only,
                                        1);
        }

        return NGX_DECLINED;
    }

    *resp = res;

    return NGX_AGAIN;
}


static void
ngx_esp_cluster_reserved(ngx_esp_redis_cmd_t *cmd, redisReply *reply)
{
    ngx_esp_cluster_res_t *res = cmd->data;

    time_t      until;
    ngx_int_t   rc;

    ngx_esp_cluster_count(reply);

    rc = ngx_esp_cluster_reserve_reply(reply, &until);

    if (rc == NGX_ERROR && reply) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "esp: the cluster store answered a reservation "
                      "with %s%*s", reply->type == REDIS_REPLY_ERROR
                                    ? "an error: " : "something else",
                      reply->type == REDIS_REPLY_ERROR
                      ? ngx_min(reply->len, 200) : 0, reply->str);
    }

    if (ngx_esp_cluster_stats) {
        if (rc == NGX_OK) {
            (void) ngx_atomic_fetch_add(
                                  &ngx_esp_cluster_stats->reservations, 1);

        } else if (rc == NGX_ERROR) {
            (void) ngx_atomic_fetch_add(&ngx_esp_cluster_stats->local_only,
                                        1);

        } else {
            (void) ngx_atomic_fetch_add(&ngx_esp_cluster_stats->refusals, 1);
        }
    }

    res->state = (rc == NGX_OK) ? NGX_ESP_CLUSTER_HELD
                                : NGX_ESP_CLUSTER_NONE;

    if (ngx_esp_cluster_rs->exiting && !res->settled) {
        /* the worker ends: no request runs again; the owner frees it */
        return;
    }

    if (res->settled) {
        /* the login went away meanwhile: give the slot back at once */

        if (res->state == NGX_ESP_CLUSTER_HELD) {
            ngx_esp_cluster_send_settle(res, res->outcome);
        }

        ngx_free(res);
        return;
    }

    /* the owner settles (or, with nothing held, frees) it later */

    res->handler(res->data, rc, until);
}


void
ngx_esp_cluster_settle(ngx_esp_cluster_res_t *res, ngx_uint_t outcome)
{
    if (res == NULL) {
        return;
    }

    if (res->state == NGX_ESP_CLUSTER_ASKING) {
        res->settled = 1;
        res->outcome = outcome;
        return;
    }

    if (res->state == NGX_ESP_CLUSTER_HELD) {
        ngx_esp_cluster_send_settle(res, outcome);
    }

    ngx_free(res);
}


static void
ngx_esp_cluster_send_settle(ngx_esp_cluster_res_t *res, ngx_uint_t outcome)
{
    u_char     num[3][NGX_TIME_T_LEN];
    u_char     out;
    ngx_str_t  args[7];

    out = (u_char) ('0' + outcome);

    args[0] = ngx_esp_cluster_conf->prefix;
    args[1].data = res->key;
    args[1].len = NGX_ESP_CLUSTER_HEX_LEN;
    args[2].data = num[0];
    args[2].len = ngx_sprintf(num[0], "%ui", res->policy.max) - num[0];
    args[3].data = num[1];
    args[3].len = ngx_sprintf(num[1], "%T", res->policy.reset) - num[1];
    args[4].data = num[2];
    args[4].len = ngx_sprintf(num[2], "%T", res->policy.unblock) - num[2];
    args[5].data = res->id;
    args[5].len = NGX_ESP_CLUSTER_ID_LEN;
    args[6].data = &out;
    args[6].len = 1;

    /* when the store is gone the reservation lapses there on its own */

    if (ngx_esp_cluster_eval(ngx_esp_cluster_settle_lua, 7, args,
                             ngx_esp_cluster_done, NULL)
        != NGX_OK
        && ngx_esp_cluster_stats)
    {
        (void) ngx_atomic_fetch_add(&ngx_esp_cluster_stats->failures, 1);
    }
}


void
ngx_esp_cluster_revoke_session(u_char *id, size_t len, time_t expires)
{
    ngx_esp_cluster_event_t  ev;

    if (ngx_esp_cluster_rs == NULL) {
        return;
    }

    ngx_memzero(&ev, sizeof(ngx_esp_cluster_event_t));

    ev.type = 's';
    ngx_esp_shm_session_id_key(id, len, ev.key);

    ngx_esp_cluster_publish(&ev, expires);
}


/*
 * A keyed hash the zone keeps with the revocations (ngx_esp_shm_once(): a
 * pending login or a TOTP code that was used): every node learns it the
 * way it learns a revoked session, so neither is good again elsewhere.
 */

void
ngx_esp_cluster_revoke_key(u_char *key, time_t expires)
{
    ngx_esp_cluster_event_t  ev;

    if (ngx_esp_cluster_rs == NULL) {
        return;
    }

    ngx_memzero(&ev, sizeof(ngx_esp_cluster_event_t));

    ev.type = 's';
    ngx_memcpy(ev.key, key, NGX_ESP_SHM_KEY_LEN);

    ngx_esp_cluster_publish(&ev, expires);
}


void
ngx_esp_cluster_revoke_user(ngx_shm_zone_t *zone, ngx_str_t *domain,
    ngx_str_t *user, time_t since, time_t expires)
{
    u_char                   keys[NGX_ESP_SHM_USER_KEYS][NGX_ESP_SHM_KEY_LEN];
    ngx_esp_cluster_event_t  ev;

    if (ngx_esp_cluster_rs == NULL
        || ngx_esp_shm_user_keys(zone, domain, user, keys) != NGX_OK)
    {
        return;
    }

    ngx_memzero(&ev, sizeof(ngx_esp_cluster_event_t));

    ev.type = 'u';
    ngx_memcpy(ev.key, keys[NGX_ESP_SHM_K_USER], NGX_ESP_SHM_KEY_LEN);
    ngx_memcpy(ev.key2, keys[NGX_ESP_SHM_K_CACHE], NGX_ESP_SHM_KEY_LEN);
    ev.t1 = since;
    ev.t2 = expires;

    ngx_esp_cluster_publish(&ev, expires);
}


void
ngx_esp_cluster_unblock(ngx_shm_zone_t *zone, ngx_str_t *domain,
    ngx_str_t *user)
{
    u_char      hex[4][NGX_ESP_CLUSTER_HEX_LEN];
    u_char      keys[NGX_ESP_SHM_USER_KEYS][NGX_ESP_SHM_KEY_LEN];
    ngx_str_t   args[5];
    ngx_uint_t  i;

    if (ngx_esp_cluster_rs == NULL
        || ngx_esp_shm_user_keys(zone, domain, user, keys) != NGX_OK)
    {
        return;
    }

    /* every counter: passwords and second factors, unknown and familiar */

    args[0] = ngx_esp_cluster_conf->prefix;

    for (i = 0; i < 4; i++) {
        ngx_hex_dump(hex[i], keys[NGX_ESP_SHM_K_LOCKOUT + i],
                     NGX_ESP_SHM_KEY_LEN);
        args[i + 1].data = hex[i];
        args[i + 1].len = NGX_ESP_CLUSTER_HEX_LEN;
    }

    if (ngx_esp_cluster_eval(ngx_esp_cluster_unblock_lua, 5, args,
                             ngx_esp_cluster_done, NULL)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "esp: the cluster store is unreachable: the unblock "
                      "applies to this node only");
    }
}


/* the revocation's member in the sorted set (scored by "expires"), sent */

static void
ngx_esp_cluster_publish(ngx_esp_cluster_event_t *ev, time_t expires)
{
    u_char  member[NGX_ESP_CLUSTER_MSG_LEN];
    size_t  len;

    len = ngx_esp_cluster_format(member, ev, 1) - member;

    if (!ngx_queue_empty(&ngx_esp_cluster_pending)
        || ngx_esp_cluster_send_revocation(member, len, expires,
                                           ngx_esp_cluster_done, NULL)
           != NGX_OK)
    {
        ngx_esp_cluster_keep(member, len, expires);
    }
}


static ngx_int_t
ngx_esp_cluster_send_revocation(u_char *member, size_t len, time_t expires,
    ngx_esp_redis_handler_pt handler, void *data)
{
    u_char     num[NGX_TIME_T_LEN];
    ngx_str_t  args[3];

    args[0] = ngx_esp_cluster_conf->prefix;
    args[1].data = member;
    args[1].len = len;
    args[2].data = num;
    args[2].len = ngx_sprintf(num, "%T", expires) - num;

    return ngx_esp_cluster_eval(ngx_esp_cluster_revoke_lua, 3, args,
                                handler, data);
}


static void
ngx_esp_cluster_keep(u_char *member, size_t len, time_t expires)
{
    ngx_queue_t                *q;
    ngx_esp_cluster_pending_t  *pe;

    if (ngx_esp_cluster_npending >= NGX_ESP_CLUSTER_PENDING_MAX) {
        q = ngx_queue_head(&ngx_esp_cluster_pending);

        if (ngx_esp_cluster_sending) {
            /* the head is on its way: the next one goes */
            q = ngx_queue_next(q);
        }

        ngx_queue_remove(q);
        ngx_free(ngx_queue_data(q, ngx_esp_cluster_pending_t, queue));
        ngx_esp_cluster_npending--;
    }

    pe = ngx_alloc(sizeof(ngx_esp_cluster_pending_t), ngx_cycle->log);
    if (pe == NULL) {
        return;
    }

    pe->expires = expires;
    pe->len = len;
    ngx_memcpy(pe->member, member, len);

    ngx_queue_insert_tail(&ngx_esp_cluster_pending, &pe->queue);
    ngx_esp_cluster_npending++;

    ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                  "esp: the cluster store is unreachable: the revocation "
                  "applies to this node now, to the others when the store "
                  "answers again (%ui waiting)", ngx_esp_cluster_npending);

    if (!ngx_esp_cluster_retry.timer_set) {
        ngx_add_timer(&ngx_esp_cluster_retry, NGX_ESP_CLUSTER_RETRY);
    }
}


/* one at a time, each kept until the store has taken it */

static void
ngx_esp_cluster_retry_handler(ngx_event_t *ev)
{
    ngx_queue_t                *q;
    ngx_esp_cluster_pending_t  *pe;

    if (ngx_esp_cluster_sending) {
        return;
    }

    while (!ngx_queue_empty(&ngx_esp_cluster_pending)) {
        q = ngx_queue_head(&ngx_esp_cluster_pending);
        pe = ngx_queue_data(q, ngx_esp_cluster_pending_t, queue);

        if (pe->expires > ngx_time()) {
            if (ngx_esp_cluster_send_revocation(pe->member, pe->len,
                                                pe->expires,
                                                ngx_esp_cluster_resent_one,
                                                pe)
                == NGX_OK)
            {
                ngx_esp_cluster_sending = 1;
                return;
            }

            break;
        }

        /* an expired one is of no use to anybody */

        ngx_queue_remove(q);
        ngx_free(pe);
        ngx_esp_cluster_npending--;
    }

    if (!ngx_queue_empty(&ngx_esp_cluster_pending)
        && !(ngx_exiting || ngx_terminate || ngx_quit)
        && !ev->timer_set)
    {
        ngx_add_timer(ev, NGX_ESP_CLUSTER_RETRY);
    }
}


static void
ngx_esp_cluster_resent_one(ngx_esp_redis_cmd_t *cmd, redisReply *reply)
{
    ngx_esp_cluster_pending_t  *pe = cmd->data;

    ngx_esp_cluster_sending = 0;

    if (ngx_esp_cluster_rs->exiting) {
        return;
    }

    ngx_esp_cluster_done(cmd, reply);

    if (reply == NULL) {
        /* not taken: tried again a second later */

        if (!ngx_esp_cluster_retry.timer_set) {
            ngx_add_timer(&ngx_esp_cluster_retry, NGX_ESP_CLUSTER_RETRY);
        }

        return;
    }

    ngx_queue_remove(&pe->queue);
    ngx_free(pe);
    ngx_esp_cluster_npending--;
    ngx_esp_cluster_resent++;

    if (ngx_queue_empty(&ngx_esp_cluster_pending)) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "esp: %ui revocations made while the cluster store "
                      "was unreachable were sent to it",
                      ngx_esp_cluster_resent);
        ngx_esp_cluster_resent = 0;
        return;
    }

    ngx_esp_cluster_retry_handler(&ngx_esp_cluster_retry);
}


static ngx_int_t
ngx_esp_cluster_eval(const char *script, ngx_uint_t argc, ngx_str_t *args,
    ngx_esp_redis_handler_pt handler, void *data)
{
    size_t       len[12];
    ngx_uint_t   i;
    const char  *argv[12];

    argv[0] = "EVAL";
    len[0] = 4;
    argv[1] = script;
    len[1] = ngx_strlen(script);
    argv[2] = "0";
    len[2] = 1;

    for (i = 0; i < argc; i++) {
        argv[3 + i] = (const char *) args[i].data;
        len[3 + i] = args[i].len;
    }

    if (ngx_esp_redis_command(ngx_esp_cluster_rs, (int) (3 + argc), argv,
                              len, handler, data)
        == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_esp_cluster_done(ngx_esp_redis_cmd_t *cmd, redisReply *reply)
{
    ngx_esp_cluster_count(reply);

    if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "esp: the cluster store refused a change: %*s",
                      ngx_min(reply->len, 200), reply->str);
    }
}


/* whether the store answers, as every worker sees it */

static void
ngx_esp_cluster_count(redisReply *reply)
{
    ngx_esp_cluster_stats_t  *st;

    st = ngx_esp_cluster_stats;

    if (st == NULL) {
        return;
    }

    if (reply == NULL) {
        (void) ngx_atomic_fetch_add(&st->failures, 1);

        if (ngx_atomic_cmp_set(&st->reachable, 1, 0)) {
            (void) ngx_atomic_fetch_add(&st->outages, 1);
            st->changed = ngx_time();
        }

        return;
    }

    if (ngx_atomic_cmp_set(&st->reachable, 0, 1)) {
        st->changed = ngx_time();
    }
}


/* the subscriber: worker 0 of each node */

static void
ngx_esp_cluster_up(ngx_esp_redis_t *rs)
{
    size_t       len[2];
    const char  *argv[2];

    argv[0] = "SUBSCRIBE";
    len[0] = sizeof("SUBSCRIBE") - 1;
    argv[1] = (const char *) ngx_esp_cluster_channel.data;
    len[1] = ngx_esp_cluster_channel.len;

    (void) ngx_esp_redis_command(rs, 2, argv, len,
                                 ngx_esp_cluster_subscribed, NULL);
}


static void
ngx_esp_cluster_down(ngx_esp_redis_t *rs)
{
    ngx_esp_cluster_count(NULL);
}


/* subscribed: now what was missed meanwhile cannot be missed again */

static void
ngx_esp_cluster_subscribed(ngx_esp_redis_cmd_t *cmd, redisReply *reply)
{
    ngx_str_t  args[1];

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        if (reply) {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "esp: the cluster store refused the "
                          "subscription%s%*s",
                          reply->type == REDIS_REPLY_ERROR ? ": " : "",
                          reply->type == REDIS_REPLY_ERROR
                          ? ngx_min(reply->len, 200) : 0, reply->str);
            ngx_esp_redis_close_all(ngx_esp_cluster_sub);
        }

        return;
    }

    args[0] = ngx_esp_cluster_conf->prefix;

    if (ngx_esp_cluster_eval(ngx_esp_cluster_resync_lua, 1, args,
                             ngx_esp_cluster_resynced, NULL)
        != NGX_OK)
    {
        /* the next connection tries again */
        ngx_esp_redis_close_all(ngx_esp_cluster_sub);
    }
}


static void
ngx_esp_cluster_resynced(ngx_esp_redis_cmd_t *cmd, redisReply *reply)
{
    ngx_int_t  n;

    ngx_esp_cluster_count(reply);

    n = ngx_esp_cluster_resync_reply(reply, ngx_esp_cluster_apply, NULL);

    if (n == NGX_ERROR) {
        if (reply) {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "esp: the cluster store's state could not be "
                          "read: an unexpected reply");
        }

        /* the next connection tries again */
        ngx_esp_redis_close_all(ngx_esp_cluster_sub);
        return;
    }

    if (ngx_esp_cluster_stats) {
        (void) ngx_atomic_fetch_add(&ngx_esp_cluster_stats->resyncs, 1);
    }

    ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                  "esp: cluster state read from the store: %i entries", n);
}


static void
ngx_esp_cluster_push(ngx_esp_redis_t *rs, redisReply *reply)
{
    ngx_esp_cluster_event_t  ev;

    if (ngx_esp_cluster_message(reply, &ev) != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "esp: a malformed message on the cluster channel "
                      "was ignored");
        return;
    }

    ngx_esp_cluster_apply(&ev, NULL);

    if (ngx_esp_cluster_stats) {
        (void) ngx_atomic_fetch_add(&ngx_esp_cluster_stats->events, 1);
    }
}


static void
ngx_esp_cluster_apply(ngx_esp_cluster_event_t *ev, void *data)
{
    ngx_shm_zone_t  *zone;

    zone = ngx_esp_cluster_zone;

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, ngx_cycle->log, 0,
                   "esp cluster: event %c", ev->type);

    switch (ev->type) {

    case 's':
        (void) ngx_esp_shm_revoke_key(zone, ev->key, ev->t1);
        break;

    case 'u':
        (void) ngx_esp_shm_user_revoke_keys(zone, ev->key, ev->key2,
                                            ev->t1, ev->t2);
        break;

    case 'b':
        (void) ngx_esp_shm_counter_block(zone, ev->key, ev->t1);
        break;

    default: /* 'r' */
        (void) ngx_esp_shm_counter_clear(zone, ev->key);
        break;
    }
}


/* the subscriber's heartbeat: a PING a second finds a dead store */

static void
ngx_esp_cluster_tick_handler(ngx_event_t *ev)
{
    size_t       len[1];
    const char  *argv[1];

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    argv[0] = "PING";
    len[0] = 4;

    if (ngx_esp_redis_command(ngx_esp_cluster_sub, 1, argv, len,
                              ngx_esp_cluster_done, NULL)
        == NULL)
    {
        ngx_esp_cluster_count(NULL);
    }

    ngx_add_timer(ev, NGX_ESP_CLUSTER_TICK);
}


ngx_int_t
ngx_esp_cluster_init_worker(ngx_cycle_t *cycle, ngx_esp_main_conf_t *emcf)
{
    ngx_esp_redis_conf_t  *rcf;

    rcf = emcf->cluster;

    if (rcf == NULL || emcf->shm_zone == NULL) {
        return NGX_OK;
    }

    ngx_esp_cluster_conf = rcf;
    ngx_esp_cluster_zone = emcf->shm_zone;

    if (ngx_esp_cluster_stats_zone) {
        ngx_esp_cluster_stats = ngx_esp_cluster_stats_zone->data;
    }

    ngx_esp_cluster_rs = ngx_esp_redis_create(cycle, rcf, rcf->connections);
    if (ngx_esp_cluster_rs == NULL) {
        return NGX_ERROR;
    }

    ngx_esp_cluster_rs->down = ngx_esp_cluster_down;

    ngx_queue_init(&ngx_esp_cluster_pending);

    ngx_esp_cluster_retry.handler = ngx_esp_cluster_retry_handler;
    ngx_esp_cluster_retry.data = &ngx_esp_cluster_tick_conn;
    ngx_esp_cluster_retry.log = cycle->log;
    ngx_esp_cluster_retry.cancelable = 1;

    ngx_esp_cluster_tick_conn.fd = (ngx_socket_t) -1;

    if (ngx_worker != 0) {
        return NGX_OK;
    }

    ngx_esp_cluster_channel.len = rcf->prefix.len + sizeof(":events") - 1;
    ngx_esp_cluster_channel.data = ngx_pnalloc(cycle->pool,
                                               ngx_esp_cluster_channel.len);
    if (ngx_esp_cluster_channel.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(ngx_esp_cluster_channel.data, "%V:events", &rcf->prefix);

    ngx_esp_cluster_sub = ngx_esp_redis_create(cycle, rcf, 1);
    if (ngx_esp_cluster_sub == NULL) {
        return NGX_ERROR;
    }

    ngx_esp_cluster_sub->push = ngx_esp_cluster_push;
    ngx_esp_cluster_sub->up = ngx_esp_cluster_up;
    ngx_esp_cluster_sub->down = ngx_esp_cluster_down;

    ngx_esp_cluster_tick.handler = ngx_esp_cluster_tick_handler;
    ngx_esp_cluster_tick.data = &ngx_esp_cluster_tick_conn;
    ngx_esp_cluster_tick.log = cycle->log;
    ngx_esp_cluster_tick.cancelable = 1;

    /* at once: the first PING connects and subscribes */

    ngx_add_timer(&ngx_esp_cluster_tick, 1);

    return NGX_OK;
}


void
ngx_esp_cluster_exit_worker(ngx_cycle_t *cycle)
{
    ngx_queue_t  *q;

    if (ngx_esp_cluster_tick.timer_set) {
        ngx_del_timer(&ngx_esp_cluster_tick);
    }

    if (ngx_esp_cluster_retry.timer_set) {
        ngx_del_timer(&ngx_esp_cluster_retry);
    }

    /* what waits for a reply hears of the exit before its memory goes */

    if (ngx_esp_cluster_sub) {
        ngx_esp_cluster_sub->exiting = 1;
        ngx_esp_redis_close_all(ngx_esp_cluster_sub);
    }

    if (ngx_esp_cluster_rs) {
        ngx_esp_cluster_rs->exiting = 1;
        ngx_esp_redis_close_all(ngx_esp_cluster_rs);
    }

    if (ngx_esp_cluster_npending) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "esp: %ui revocations never reached the cluster store",
                      ngx_esp_cluster_npending);

        while (!ngx_queue_empty(&ngx_esp_cluster_pending)) {
            q = ngx_queue_head(&ngx_esp_cluster_pending);
            ngx_queue_remove(q);
            ngx_free(ngx_queue_data(q, ngx_esp_cluster_pending_t, queue));
        }

        ngx_esp_cluster_npending = 0;
    }

    if (ngx_esp_cluster_conf && ngx_esp_cluster_conf->password.len) {
        ngx_explicit_memzero(ngx_esp_cluster_conf->password.data,
                             ngx_esp_cluster_conf->password.len);
    }
}


u_char *
ngx_esp_cluster_json(u_char *p, u_char *last)
{
    ngx_esp_cluster_stats_t  *st;

    st = ngx_esp_cluster_stats;

    if (st == NULL) {
        return ngx_slprintf(p, last, "null");
    }

    return ngx_slprintf(p, last, "{\"reachable\":%s,\"since\":%T,"
                        "\"failures\":%uA,\"outages\":%uA,\"events\":%uA,"
                        "\"resyncs\":%uA,\"reservations\":%uA,"
                        "\"refusals\":%uA,\"local_only\":%uA}",
                        st->reachable ? "true" : "false", st->changed,
                        st->failures, st->outages, st->events, st->resyncs,
                        st->reservations, st->refusals, st->local_only);
}


u_char *
ngx_esp_cluster_prometheus(u_char *p, u_char *last)
{
    ngx_esp_cluster_stats_t  *st;

    st = ngx_esp_cluster_stats;

    if (st == NULL) {
        return p;
    }

    return ngx_slprintf(p, last,
        "# HELP esp_cluster_up Whether the cluster store answers (1) "
        "or not (0)\n"
        "# TYPE esp_cluster_up gauge\n"
        "esp_cluster_up %uA\n"
        "# HELP esp_cluster_failures_total Commands the cluster store did "
        "not answer (unreachable, time-out)\n"
        "# TYPE esp_cluster_failures_total counter\n"
        "esp_cluster_failures_total %uA\n"
        "# HELP esp_cluster_outages_total Times the store became "
        "unreachable\n"
        "# TYPE esp_cluster_outages_total counter\n"
        "esp_cluster_outages_total %uA\n"
        "# HELP esp_cluster_events_total Changes of other nodes applied\n"
        "# TYPE esp_cluster_events_total counter\n"
        "esp_cluster_events_total %uA\n"
        "# HELP esp_cluster_resyncs_total Times the state was read again "
        "after a (re)connection\n"
        "# TYPE esp_cluster_resyncs_total counter\n"
        "esp_cluster_resyncs_total %uA\n"
        "# HELP esp_cluster_reservations_total Lockout reservations, by "
        "what the store said\n"
        "# TYPE esp_cluster_reservations_total counter\n"
        "esp_cluster_reservations_total{result=\"granted\"} %uA\n"
        "esp_cluster_reservations_total{result=\"refused\"} %uA\n"
        "esp_cluster_reservations_total{result=\"local_only\"} %uA\n",
        st->reachable, st->failures, st->outages, st->events, st->resyncs,
        st->reservations, st->refusals, st->local_only);
}


/* esp_cluster redis://HOST[:PORT]... [name=value...] */

char *
ngx_esp_cluster(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_esp_main_conf_t *emcf = conf;

    ngx_str_t               *value, v, file;
    ngx_int_t                n;
    ngx_uint_t               i;
    ngx_esp_redis_conf_t    *rcf;
    ngx_esp_redis_server_t  *s;

    if (emcf->cluster) {
        return "is duplicate";
    }

    rcf = ngx_pcalloc(cf->pool, sizeof(ngx_esp_redis_conf_t));
    if (rcf == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_array_init(&rcf->servers, cf->pool, 2,
                       sizeof(ngx_esp_redis_server_t))
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    ngx_str_set(&rcf->prefix, "esp");
    rcf->verify = 1;
    rcf->connect_timeout = 1000;
    rcf->timeout = 500;
    rcf->connections = 2;
    rcf->file = cf->conf_file->file.name.data;
    rcf->line = cf->conf_file->line;

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        v = value[i];

        if (ngx_strncmp(v.data, "redis://", 8) == 0
            || ngx_strncmp(v.data, "rediss://", 9) == 0)
        {
            s = ngx_array_push(&rcf->servers);
            if (s == NULL) {
                return NGX_CONF_ERROR;
            }

            ngx_memzero(s, sizeof(ngx_esp_redis_server_t));

            s->name = v;
            s->tls = (v.data[5] == 's');
            s->url.url.data = v.data + (s->tls ? 9 : 8);
            s->url.url.len = v.len - (s->tls ? 9 : 8);
            s->url.default_port = NGX_ESP_CLUSTER_PORT;
            s->url.no_resolve = 0;

            if (ngx_parse_url(cf->pool, &s->url) != NGX_OK) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "esp_cluster: %s in \"%V\"",
                                   s->url.err ? s->url.err : "bad URL", &v);
                return NGX_CONF_ERROR;
            }

            if (s->url.naddrs == 0 || s->url.host.len == 0
                || (s->url.uri.len && !(s->url.uri.len == 1
                                        && s->url.uri.data[0] == '/')))
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "esp_cluster: \"%V\" is not "
                                   "redis://host[:port]", &v);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(v.data, "user=", 5) == 0 && v.len > 5) {
            rcf->user.data = v.data + 5;
            rcf->user.len = v.len - 5;
            continue;
        }

        if (ngx_strncmp(v.data, "password_file=", 14) == 0 && v.len > 14) {
            file.data = v.data + 14;
            file.len = v.len - 14;

            if (ngx_esp_read_secret_file(cf, &file, &rcf->password)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(v.data, "prefix=", 7) == 0 && v.len > 7) {
            rcf->prefix.data = v.data + 7;
            rcf->prefix.len = v.len - 7;

            for (n = 0; n < (ngx_int_t) rcf->prefix.len; n++) {
                if (rcf->prefix.data[n] <= ' '
                    || rcf->prefix.data[n] >= 0x7f)
                {
                    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                       "esp_cluster: \"prefix=\" takes "
                                       "printable characters and no space");
                    return NGX_CONF_ERROR;
                }
            }

            continue;
        }

        if (ngx_strncmp(v.data, "ca_certificate=", 15) == 0 && v.len > 15) {
            rcf->ca_certificate.data = v.data + 15;
            rcf->ca_certificate.len = v.len - 15;
            continue;
        }

        if (v.len == 9 && ngx_strncmp(v.data, "verify=on", 9) == 0) {
            rcf->verify = 1;
            continue;
        }

        if (v.len == 10 && ngx_strncmp(v.data, "verify=off", 10) == 0) {
            rcf->verify = 0;
            continue;
        }

        if (ngx_strncmp(v.data, "connect_timeout=", 16) == 0) {
            v.data += 16;
            v.len -= 16;
            n = ngx_parse_time(&v, 0);
            if (n == NGX_ERROR || n == 0) {
                goto invalid;
            }

            rcf->connect_timeout = (ngx_msec_t) n;
            continue;
        }

        if (ngx_strncmp(v.data, "timeout=", 8) == 0) {
            v.data += 8;
            v.len -= 8;
            n = ngx_parse_time(&v, 0);
            if (n == NGX_ERROR || n == 0) {
                goto invalid;
            }

            rcf->timeout = (ngx_msec_t) n;
            continue;
        }

        if (ngx_strncmp(v.data, "connections=", 12) == 0) {
            n = ngx_atoi(v.data + 12, v.len - 12);
            if (n <= 0 || n > 64) {
                goto invalid;
            }

            rcf->connections = (ngx_uint_t) n;
            continue;
        }

        goto invalid;
    }

    if (rcf->servers.nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "esp_cluster needs at least one "
                           "redis://host[:port] or rediss://host[:port]");
        return NGX_CONF_ERROR;
    }

    if (rcf->user.len && rcf->password.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "esp_cluster: \"user=\" needs \"password_file=\"");
        return NGX_CONF_ERROR;
    }

    if (rcf->ca_certificate.len
        && ngx_conf_full_name(cf->cycle, &rcf->ca_certificate, 1) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (ngx_esp_redis_init_conf(cf, rcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_str_set(&v, "esp_cluster");

    ngx_esp_cluster_stats_zone = ngx_shared_memory_add(cf, &v,
                                       NGX_ESP_CLUSTER_STATS_SIZE,
                                       &ngx_exchange_esp_module);
    if (ngx_esp_cluster_stats_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_esp_cluster_stats_zone->init = ngx_esp_cluster_init_stats;

    emcf->cluster = rcf;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "esp_cluster: invalid parameter \"%V\"", &value[i]);
    return NGX_CONF_ERROR;
}


/* the zone's secret from the first session key: every node hashes alike */

char *
ngx_esp_cluster_init_conf(ngx_conf_t *cf, ngx_esp_main_conf_t *emcf)
{
    ngx_esp_key_t  *k;

    if (emcf->cluster == NULL) {
        return NGX_CONF_OK;
    }

    if (emcf->keys == NULL || emcf->keys->nelts == 0
        || emcf->shm_zone == NULL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"esp_cluster\" needs \"esp_session_key\", the "
                           "same key file on every node");
        return NGX_CONF_ERROR;
    }

    k = emcf->keys->elts;

    if (ngx_esp_shm_share_secret(emcf->shm_zone, k[0].key, NGX_ESP_KEY_LEN)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_esp_cluster_init_stats(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t          *shpool;
    ngx_esp_cluster_stats_t  *st;

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (data || shm_zone->shm.exists) {
        shm_zone->data = shpool->data;
        return NGX_OK;
    }

    st = ngx_slab_calloc(shpool, sizeof(ngx_esp_cluster_stats_t));
    if (st == NULL) {
        return NGX_ERROR;
    }

    st->reachable = 1;
    st->changed = ngx_time();

    shpool->data = st;
    shm_zone->data = st;

    return NGX_OK;
}
