
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "ngx_esp_cluster.h"
#include "ngx_esp_lockout.h"
#include "ngx_esp_log.h"
#include "ngx_esp_request.h"
#include "ngx_esp_session.h"
#include "ngx_esp_shm.h"


/*
 * The policy over the shared zone's counters (src/ngx_esp_shm.c):
 *
 * - Every login that may reach the directory holds a slot of its user's
 *   counter from before the bind to the answer; while the failures and the
 *   slots in flight reach max_failed_auths, more logins are refused at
 *   once.  So the directory never sees more than max_failed_auths wrong
 *   passwords for one account within reset_fail_timeout, however many
 *   connections or HTTP/2 streams send them at once.
 * - A login that finds every slot taken by logins under way (a client's
 *   parallel connections after its cached credential expired, say) waits
 *   for one, at most ldap_timeout for each DC and once more: it then often
 *   finds its password in the cache.  Then it is refused.
 * - The cache is asked only while the user is not blocked, and a password
 *   that the cache holds another one for and that finds every slot busy
 *   counts as a failure at once: the cache never answers guesses the
 *   directory would not have been asked.  A cache hit resets nothing: only
 *   a bind the directory accepted does.
 * - Smart lockout: a client that logged in as the user before (a device
 *   cookie, or its address within smart_lockout_remember) uses a budget
 *   of its own, so that somebody failing logins for the user elsewhere
 *   does not lock the user's own devices out.
 *
 * A device cookie is base64url (no padding) of
 *
 *     key id (4) | version (1) | issued (8) | MAC (16)
 *
 * where the MAC is HMAC-SHA256 under a key derived from the session key,
 * over a label, version, issued, domain and user: it names nobody, and
 * proves only to the holders of the key that this client logged in as
 * that user at "issued".
 */


#define NGX_ESP_DEVICE_VERSION    1
#define NGX_ESP_DEVICE_MAC_LEN    16
#define NGX_ESP_DEVICE_LEN        (NGX_ESP_KEY_ID_LEN + 1 + 8                \
                                   + NGX_ESP_DEVICE_MAC_LEN)
#define NGX_ESP_DEVICE_LABEL      "ngx_esp device v1"
#define NGX_ESP_DEVICE_KEY_LABEL  "ngx_esp device key v1"

/* device cookies looked at per request, and the clock skew allowed */
#define NGX_ESP_DEVICE_TRIES      4
#define NGX_ESP_DEVICE_SKEW       60

/*
 * A slot lapses after the longest a login can take: per domain
 * controller, a wait for a connection and up to four exchanges, twice
 * (a dead pooled connection is retried on a fresh one), each within
 * ldap_timeout.
 */
#define NGX_ESP_LOCKOUT_STEPS     10

/*
 * A login waiting for a slot looks again after 10, 20, 40, then every
 * 100 ms (logins that come later may take the slots first), for as long
 * as one login may take to fail over all DCs, and a little more.
 */
#define NGX_ESP_LOCKOUT_WAIT      10
#define NGX_ESP_LOCKOUT_WAIT_MAX  100

/* logins waiting at once in a worker; more are refused at once */
#define NGX_ESP_LOCKOUT_WAITERS   1024


struct ngx_esp_lockout_s {
    ngx_shm_zone_t            *zone;
    ngx_esp_domain_t          *domain;
    ngx_str_t                  key;          /* the lowercased logon name */
    ngx_log_t                 *log;

    ngx_esp_shm_policy_t       policy;
    ngx_esp_shm_slot_t         slot;

    ngx_http_request_t        *request;
    ngx_pool_t                *pool;         /* r->pool: NULL in cleanups */
    ngx_esp_ldap_req_t        *lr;           /* the bind */
    ngx_event_t                wait;         /* for a slot */
    ngx_msec_t                 waited;
    ngx_uint_t                 tries;

    unsigned                   familiar:1;
    unsigned                   device:1;     /* a valid device cookie */
    unsigned                   address:1;    /* a familiar address */
    /* the cluster store's slot (esp_cluster), besides the zone's */
    ngx_esp_cluster_res_t     *cres;
    ngx_int_t                  cluster_rc;
    time_t                     cluster_until;
    ngx_uint_t                 mismatch;

    unsigned                   waiting:1;
    unsigned                   asking:1;     /* the store, for its slot */
    unsigned                   answered:1;
    unsigned                   ended:1;
    unsigned                   mfa:1;        /* a second factor's */
};


/* a login that went away during its bind: its slot, until the answer */

typedef struct {
    ngx_shm_zone_t            *zone;
    ngx_esp_domain_t          *domain;
    ngx_esp_shm_policy_t       policy;
    ngx_esp_shm_slot_t         slot;
    ngx_str_t                  key;          /* escaped, for the log */
    ngx_str_t                  client;
    ngx_uint_t                 familiar;
    ngx_esp_cluster_res_t     *cres;
} ngx_esp_lockout_orphan_t;


/* logins of this worker waiting for a slot */
static ngx_uint_t  ngx_esp_lockout_waiters;


static ngx_int_t ngx_esp_lockout_start(ngx_http_request_t *r,
    ngx_esp_domain_t *d, ngx_str_t *key, ngx_str_t *password,
    ngx_esp_ldap_req_t *lr, ngx_uint_t kind, ngx_esp_lockout_t **lkp);
static ngx_int_t ngx_esp_lockout_wait(ngx_esp_lockout_t *lk);
static ngx_int_t ngx_esp_lockout_cluster(ngx_esp_lockout_t *lk);
static void ngx_esp_lockout_cluster_done(void *data, ngx_int_t rc,
    time_t until);
static void ngx_esp_lockout_resume(ngx_esp_lockout_t *lk);
static void ngx_esp_lockout_wake(ngx_event_t *ev);
static void ngx_esp_lockout_cleanup(void *data);
static void ngx_esp_lockout_orphan(void *data, ngx_esp_auth_result_e result);
static ngx_uint_t ngx_esp_lockout_outcome(ngx_esp_auth_result_e result);
static void ngx_esp_lockout_blocked(ngx_log_t *log, ngx_esp_domain_t *d,
    ngx_str_t *key, ngx_esp_shm_policy_t *p, ngx_uint_t familiar);
static ngx_int_t ngx_esp_device_mac(ngx_esp_lockout_t *lk, ngx_esp_key_t *k,
    u_char *head, u_char *mac);
static ngx_uint_t ngx_esp_device_valid(ngx_http_request_t *r,
    ngx_esp_lockout_t *lk, ngx_array_t *keys);
static ngx_int_t ngx_esp_device_cookie(ngx_http_request_t *r,
    ngx_esp_lockout_t *lk, ngx_array_t *keys, ngx_str_t *set_cookie);


ngx_int_t
ngx_esp_lockout_begin(ngx_http_request_t *r, ngx_esp_domain_t *d,
    ngx_str_t *key, ngx_str_t *password, ngx_esp_ldap_req_t *lr,
    ngx_esp_lockout_t **lkp)
{
    return ngx_esp_lockout_start(r, d, key, password, lr, 0, lkp);
}


/*
 * A second factor's check has a counter of its own: a user's wrong codes
 * and wrong passwords do not add up, and a code is checked here, with
 * nothing left running when the request goes (no "lr").
 */

ngx_int_t
ngx_esp_lockout_begin_mfa(ngx_http_request_t *r, ngx_esp_domain_t *d,
    ngx_str_t *key, ngx_esp_lockout_t **lkp)
{
    return ngx_esp_lockout_start(r, d, key, NULL, NULL,
                                 NGX_ESP_SHM_COUNTER_MFA, lkp);
}


static ngx_int_t
ngx_esp_lockout_start(ngx_http_request_t *r, ngx_esp_domain_t *d,
    ngx_str_t *key, ngx_str_t *password, ngx_esp_ldap_req_t *lr,
    ngx_uint_t kind, ngx_esp_lockout_t **lkp)
{
    ngx_int_t             rc;
    ngx_uint_t            mismatch, started;
    ngx_shm_zone_t       *zone;
    ngx_esp_lockout_t    *lk;
    ngx_pool_cleanup_t   *cln;
    ngx_esp_main_conf_t  *emcf;

    emcf = ngx_http_get_module_main_conf(r, ngx_exchange_esp_module);
    zone = emcf->shm_zone;

    lk = *lkp;

    if (lk && lk->request == r && lk->domain == d && !lk->ended) {

        if (lk->answered) {
            /* the cluster store has answered for its slot */
            return ngx_esp_lockout_cluster(lk);
        }

        if (!lk->slot.held) {
            /* woken up after waiting for a slot: the same login again */
            goto again;
        }
    }

    *lkp = NULL;

    if (zone == NULL) {
        return NGX_OK;
    }

    if (d->max_failed_auths <= 0) {
        if (password
            && ngx_esp_cache_lookup(zone, &d->name, key, password) == NGX_OK)
        {
            return NGX_DONE;
        }

        return NGX_OK;
    }

    lk = ngx_pcalloc(r->pool, sizeof(ngx_esp_lockout_t));
    if (lk == NULL) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_esp_lockout_cleanup;
    cln->data = lk;

    lk->zone = zone;
    lk->domain = d;
    lk->key = *key;
    lk->log = r->connection->log;
    lk->request = r;
    lk->pool = r->pool;
    lk->lr = lr;

    if (d->smart_lockout) {
        lk->device = ngx_esp_device_valid(r, lk, emcf->keys);
        lk->address = (ngx_esp_familiar_find(zone, &d->name, key,
                                             &r->connection->addr_text)
                       == NGX_OK);
        lk->familiar = lk->device || lk->address;
    }

    lk->policy.max = lk->familiar ? (ngx_uint_t) d->familiar_failed_auths
                                  : (ngx_uint_t) d->max_failed_auths;
    lk->policy.reset = d->reset_fail_timeout;
    lk->policy.unblock = d->unblock_timeout;
    lk->policy.bound = (time_t) (NGX_ESP_LOCKOUT_STEPS * d->servers.nelts + 1)
                       * (time_t) ((d->timeout + 999) / 1000);

    lk->mfa = (kind & NGX_ESP_SHM_COUNTER_MFA) ? 1 : 0;

    if (ngx_esp_shm_counter_key(zone, &d->name, key,
                                kind | (lk->familiar
                                        ? NGX_ESP_SHM_COUNTER_FAMILIAR : 0),
                                &lk->slot)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    *lkp = lk;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, lk->log, 0,
                   "esp lockout: familiar %d (device %d, address %d)",
                   lk->familiar, lk->device, lk->address);

again:

    mismatch = 0;

    if (password) {

        /* a blocked user's cached password is not compared: no guessing */

        if (ngx_esp_shm_blocked(zone, &lk->policy, &lk->slot, NULL)
            == NGX_BUSY)
        {
            return NGX_BUSY;
        }

        rc = ngx_esp_cache_lookup(zone, &d->name, key, password);

        if (rc == NGX_OK) {
            return NGX_DONE;
        }

        mismatch = (rc == NGX_DONE);
    }

    rc = ngx_esp_shm_reserve(zone, &lk->policy, &lk->slot, mismatch,
                             &started);

    if (started) {
        ngx_esp_lockout_blocked(lk->log, d,
                                ngx_esp_log_escape(r->pool, &lk->key),
                                &lk->policy, lk->familiar | (lk->mfa << 1));
    }

    if (rc == NGX_AGAIN) {
        return ngx_esp_lockout_wait(lk);
    }

    if (rc != NGX_OK) {
        return rc;
    }

    /* the zone's slot is held: now the cluster's, across the nodes */

    lk->mismatch = mismatch;

    if (ngx_esp_cluster_reserve(lk->slot.key, &lk->policy, mismatch,
                                ngx_esp_lockout_cluster_done, lk, &lk->cres)
        == NGX_AGAIN)
    {
        lk->asking = 1;
        return NGX_AGAIN;
    }

    return NGX_OK;
}


/* the store's answer, the zone's slot still held */

static ngx_int_t
ngx_esp_lockout_cluster(ngx_esp_lockout_t *lk)
{
    ngx_uint_t  started;

    lk->answered = 0;

    switch (lk->cluster_rc) {

    case NGX_OK:
        return NGX_OK;

    case NGX_BUSY:

        /* blocked across the nodes; or refused and counted there */

        started = ngx_esp_shm_settle(lk->zone, &lk->policy, &lk->slot,
                                     lk->mismatch ? NGX_ESP_SHM_FAILURE
                                                  : NGX_ESP_SHM_RELEASE);

        if (lk->cluster_until) {
            (void) ngx_esp_shm_counter_block(lk->zone, lk->slot.key,
                                             lk->cluster_until);
        }

        if (started) {
            ngx_esp_lockout_blocked(lk->log, lk->domain,
                                    ngx_esp_log_escape(lk->request->pool,
                                                       &lk->key),
                                    &lk->policy, lk->familiar);
        }

        return NGX_BUSY;

    case NGX_AGAIN:
        (void) ngx_esp_shm_settle(lk->zone, &lk->policy, &lk->slot,
                                  NGX_ESP_SHM_RELEASE);
        return ngx_esp_lockout_wait(lk);

    default:
        /* the store did not answer: the zone's count alone */
        return NGX_OK;
    }
}


static void
ngx_esp_lockout_cluster_done(void *data, ngx_int_t rc, time_t until)
{
    ngx_esp_lockout_t  *lk = data;

    lk->asking = 0;
    lk->answered = 1;
    lk->cluster_rc = rc;
    lk->cluster_until = until;

    if (rc != NGX_OK) {
        /* nothing held there: the reservation is over */
        ngx_esp_cluster_settle(lk->cres, NGX_ESP_SHM_RELEASE);
        lk->cres = NULL;
    }

    ngx_esp_lockout_resume(lk);
}


ngx_uint_t
ngx_esp_lockout_waiting(ngx_esp_lockout_t *lk)
{
    return lk && (lk->waiting || lk->asking);
}


/* NGX_AGAIN while the wait goes on, NGX_BUSY when it is over */

static ngx_int_t
ngx_esp_lockout_wait(ngx_esp_lockout_t *lk)
{
    ngx_msec_t  delay;

    if (lk->waited >= lk->domain->timeout * (lk->domain->servers.nelts + 1)
        || ngx_esp_lockout_waiters >= NGX_ESP_LOCKOUT_WAITERS)
    {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, lk->log, 0,
                       "esp lockout: no slot after %Mms", lk->waited);
        return NGX_BUSY;
    }

    delay = (lk->tries < 4) ? (ngx_msec_t) NGX_ESP_LOCKOUT_WAIT << lk->tries
                            : NGX_ESP_LOCKOUT_WAIT_MAX;
    delay = ngx_min(delay, NGX_ESP_LOCKOUT_WAIT_MAX);

    lk->tries++;
    lk->waited += delay;

    lk->wait.handler = ngx_esp_lockout_wake;
    lk->wait.data = lk;
    lk->wait.log = lk->log;

    ngx_add_timer(&lk->wait, delay);

    lk->waiting = 1;
    ngx_esp_lockout_waiters++;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, lk->log, 0,
                   "esp lockout: every slot is busy, waiting %Mms", delay);

    return NGX_AGAIN;
}


/* the login runs again from the access phase, with the same lockout */

static void
ngx_esp_lockout_wake(ngx_event_t *ev)
{
    ngx_esp_lockout_t  *lk = ev->data;

    lk->waiting = 0;
    ngx_esp_lockout_waiters--;

    ngx_esp_lockout_resume(lk);
}


static void
ngx_esp_lockout_resume(ngx_esp_lockout_t *lk)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = lk->request;
    c = r->connection;

    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = ngx_http_core_run_phases;

    ngx_http_core_run_phases(r);
    ngx_http_run_posted_requests(c);
}


void
ngx_esp_lockout_end(ngx_http_request_t *r, ngx_esp_lockout_t *lk,
    ngx_esp_auth_result_e result, ngx_str_t *set_cookie)
{
    ngx_esp_domain_t     *d;
    ngx_esp_main_conf_t  *emcf;

    if (lk == NULL || lk->ended) {
        return;
    }

    lk->ended = 1;
    d = lk->domain;

    ngx_esp_cluster_settle(lk->cres, ngx_esp_lockout_outcome(result));
    lk->cres = NULL;

    if (lk->slot.held
        && ngx_esp_shm_settle(lk->zone, &lk->policy, &lk->slot,
                              ngx_esp_lockout_outcome(result)))
    {
        ngx_esp_lockout_blocked(lk->log, d,
                                ngx_esp_log_escape(r->pool, &lk->key),
                                &lk->policy, lk->familiar | (lk->mfa << 1));
    }

    if (result != NGX_ESP_AUTH_OK || !d->smart_lockout) {
        return;
    }

    if (!lk->address) {
        (void) ngx_esp_familiar_add(lk->zone, &d->name, &lk->key,
                                    &r->connection->addr_text,
                                    d->familiar_remember);
    }

    if (!lk->device && set_cookie) {
        emcf = ngx_http_get_module_main_conf(r, ngx_exchange_esp_module);

        if (ngx_esp_device_cookie(r, lk, emcf->keys, set_cookie) != NGX_OK) {
            ngx_log_error(NGX_LOG_ALERT, lk->log, 0,
                          "esp: could not make a device cookie");
        }
    }
}


/*
 * The login ends without an outcome: the client went away while the
 * directory was asked.  The bind goes on without it and counts as the
 * directory answers it: releasing its slot now would let a client that
 * closes its connections try passwords without limit, counting it now
 * would block the users whose clients give up while a DC hangs.
 *
 * This runs before the request's own cleanup aborts the bind: it was
 * registered later (pool cleanups run last in, first out).
 */

static void
ngx_esp_lockout_cleanup(void *data)
{
    ngx_esp_lockout_t  *lk = data;

    u_char                    *p;
    ngx_int_t                  rc;
    ngx_str_t                 *addr, *key;
    ngx_uint_t                 outcome;
    ngx_esp_lockout_orphan_t  *o;

    if (lk->waiting) {
        lk->waiting = 0;
        ngx_esp_lockout_waiters--;

        if (lk->wait.timer_set) {
            ngx_del_timer(&lk->wait);
        }
    }

    if (lk->asking) {
        /* gone while the store is asked: its slot is given back */
        lk->asking = 0;
        ngx_esp_cluster_settle(lk->cres, NGX_ESP_SHM_RELEASE);
        lk->cres = NULL;
    }

    if (lk->ended || !lk->slot.held) {
        ngx_esp_cluster_settle(lk->cres, NGX_ESP_SHM_RELEASE);
        lk->cres = NULL;
        return;
    }

    lk->ended = 1;

    if (lk->lr == NULL) {
        /* nothing runs on without the request: the slot is given back */
        (void) ngx_esp_shm_settle(lk->zone, &lk->policy, &lk->slot,
                                  NGX_ESP_SHM_RELEASE);
        return;
    }

    addr = &lk->request->connection->addr_text;

    /*
     * the request's pool is going (r->pool is NULL already), but its
     * memory stays until its cleanups have run
     */
    key = ngx_esp_log_escape(lk->pool, &lk->key);

    o = ngx_alloc(sizeof(ngx_esp_lockout_orphan_t) + key->len + addr->len,
                  lk->log);

    rc = ngx_esp_ldap_abort(lk->lr, o ? ngx_esp_lockout_orphan : NULL, o);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, lk->log, 0,
                   "esp lockout: the login went away, its bind: %i", rc);

    if (rc == NGX_AGAIN && o) {
        o->zone = lk->zone;
        o->domain = lk->domain;
        o->policy = lk->policy;
        o->slot = lk->slot;
        o->familiar = lk->familiar;
        o->cres = lk->cres;
        lk->cres = NULL;

        p = (u_char *) o + sizeof(ngx_esp_lockout_orphan_t);
        o->key.data = p;
        o->key.len = key->len;
        p = ngx_cpymem(p, key->data, key->len);
        o->client.data = p;
        o->client.len = addr->len;
        ngx_memcpy(p, addr->data, addr->len);

        return;
    }

    if (o) {
        ngx_free(o);
    }

    /* known now; or out of memory: counted, to be safe */

    outcome = (rc == NGX_DONE) ? ngx_esp_lockout_outcome(lk->lr->result)
              : (rc == NGX_AGAIN) ? NGX_ESP_SHM_FAILURE
                                  : NGX_ESP_SHM_RELEASE;

    ngx_esp_cluster_settle(lk->cres, outcome);
    lk->cres = NULL;

    if (ngx_esp_shm_settle(lk->zone, &lk->policy, &lk->slot, outcome)) {
        ngx_esp_lockout_blocked(lk->log, lk->domain, key, &lk->policy,
                                lk->familiar);
    }
}


static void
ngx_esp_lockout_orphan(void *data, ngx_esp_auth_result_e result)
{
    ngx_esp_lockout_orphan_t  *o = data;

    ngx_uint_t  outcome, started, level;

    outcome = ngx_esp_lockout_outcome(result);

    ngx_esp_cluster_settle(o->cres, outcome);

    started = ngx_esp_shm_settle(o->zone, &o->policy, &o->slot, outcome);

    /* a line of its own, without the name (fail2ban counts the failed) */

    level = (outcome == NGX_ESP_SHM_FAILURE) ? NGX_LOG_WARN : NGX_LOG_INFO;

    ngx_log_error(level, ngx_cycle->log, 0,
                  "esp: abandoned login client=%V domain=%V result=%s",
                  &o->client, &o->domain->name,
                  ngx_esp_auth_result_name(result));

    if (started) {
        ngx_esp_lockout_blocked(ngx_cycle->log, o->domain, &o->key,
                                &o->policy, o->familiar);
    }

    ngx_free(o);
}


static ngx_uint_t
ngx_esp_lockout_outcome(ngx_esp_auth_result_e result)
{
    switch (result) {

    case NGX_ESP_AUTH_OK:
    case NGX_ESP_AUTH_NOT_PERMITTED:
        /* the directory accepted the password */
        return NGX_ESP_SHM_SUCCESS;

    case NGX_ESP_AUTH_BAD_CREDENTIALS:
        return NGX_ESP_SHM_FAILURE;

    default:
        /* not counted: no answer, or refused whatever the password */
        return NGX_ESP_SHM_RELEASE;
    }
}


/* "key": escaped (ngx_esp_log_escape()), it is what the client wrote */

static void
ngx_esp_lockout_blocked(ngx_log_t *log, ngx_esp_domain_t *d, ngx_str_t *key,
    ngx_esp_shm_policy_t *p, ngx_uint_t familiar)
{
    /* familiar: bit 0, familiar clients; bit 1, second factors */

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "esp: user \"%V\" of domain %V is blocked for %T s after "
                  "%ui failed %s%s", key, &d->name, p->unblock, p->max,
                  (familiar & 2) ? "second factors" : "logins",
                  (familiar & 1) ? " from familiar clients" : "");
}


/* head: version (1) | issued (8) */

static ngx_int_t
ngx_esp_device_mac(ngx_esp_lockout_t *lk, ngx_esp_key_t *k, u_char *head,
    u_char *mac)
{
    u_char        *p, *data, key[EVP_MAX_MD_SIZE], out[EVP_MAX_MD_SIZE];
    size_t         len;
    ngx_str_t     *domain;
    unsigned int   klen, olen;

    domain = &lk->domain->name;

    len = sizeof(NGX_ESP_DEVICE_LABEL) + 9 + 2 + domain->len + 2
          + lk->key.len;

    data = ngx_alloc(len, lk->log);
    if (data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(data, NGX_ESP_DEVICE_LABEL, sizeof(NGX_ESP_DEVICE_LABEL));
    p = ngx_cpymem(p, head, 9);
    *p++ = (u_char) (domain->len >> 8);
    *p++ = (u_char) domain->len;
    p = ngx_cpymem(p, domain->data, domain->len);
    *p++ = (u_char) (lk->key.len >> 8);
    *p++ = (u_char) lk->key.len;
    p = ngx_cpymem(p, lk->key.data, lk->key.len);

    /* a key of its own, derived from the session key */

    if (HMAC(EVP_sha256(), k->key, NGX_ESP_KEY_LEN,
             (u_char *) NGX_ESP_DEVICE_KEY_LABEL,
             sizeof(NGX_ESP_DEVICE_KEY_LABEL) - 1, key, &klen)
        == NULL
        || HMAC(EVP_sha256(), key, (int) klen, data, p - data, out, &olen)
           == NULL)
    {
        ngx_explicit_memzero(key, sizeof(key));
        ngx_free(data);
        return NGX_ERROR;
    }

    ngx_memcpy(mac, out, NGX_ESP_DEVICE_MAC_LEN);

    ngx_explicit_memzero(key, sizeof(key));
    ngx_free(data);

    return NGX_OK;
}


static ngx_uint_t
ngx_esp_device_valid(ngx_http_request_t *r, ngx_esp_lockout_t *lk,
    ngx_array_t *keys)
{
    u_char                  raw[NGX_ESP_DEVICE_LEN + 3];
    u_char                  mac[NGX_ESP_DEVICE_MAC_LEN];
    time_t                  issued, now;
    uint64_t                v;
    ngx_str_t               name, value, decoded;
    ngx_uint_t              i, n, tries;
    ngx_esp_key_t          *k;
    ngx_esp_cookies_t       c;

    if (keys == NULL) {
        return 0;
    }

    k = keys->elts;
    now = ngx_time();
    tries = 0;

    ngx_memzero(&c, sizeof(ngx_esp_cookies_t));

    while (ngx_esp_http_cookie_next(r, &c, &name, &value) == NGX_OK) {

        if (name.len != sizeof(NGX_ESP_DEVICE_COOKIE) - 1
            || ngx_strncmp(name.data, NGX_ESP_DEVICE_COOKIE, name.len) != 0)
        {
            continue;
        }

        /* each one costs two HMACs: a client gets a few */

        if (tries++ == NGX_ESP_DEVICE_TRIES) {
            return 0;
        }

        if (value.len != ngx_base64_encoded_length(NGX_ESP_DEVICE_LEN) - 1) {
            continue;
        }

        decoded.data = raw;

        if (ngx_decode_base64url(&decoded, &value) != NGX_OK
            || decoded.len != NGX_ESP_DEVICE_LEN
            || raw[NGX_ESP_KEY_ID_LEN] != NGX_ESP_DEVICE_VERSION)
        {
            continue;
        }

        for (i = 0; i < keys->nelts; i++) {
            if (ngx_memcmp(k[i].id, raw, NGX_ESP_KEY_ID_LEN) == 0) {
                break;
            }
        }

        if (i == keys->nelts) {
            continue;
        }

        v = 0;

        for (n = 0; n < 8; n++) {
            v = (v << 8) | raw[NGX_ESP_KEY_ID_LEN + 1 + n];
        }

        issued = (time_t) v;

        if (issued > now + NGX_ESP_DEVICE_SKEW
            || issued + lk->domain->familiar_remember <= now)
        {
            continue;
        }

        if (ngx_esp_device_mac(lk, &k[i], raw + NGX_ESP_KEY_ID_LEN, mac)
            == NGX_OK
            && CRYPTO_memcmp(mac, raw + NGX_ESP_KEY_ID_LEN + 9,
                             NGX_ESP_DEVICE_MAC_LEN)
               == 0)
        {
            return 1;
        }
    }

    return 0;
}


static ngx_int_t
ngx_esp_device_cookie(ngx_http_request_t *r, ngx_esp_lockout_t *lk,
    ngx_array_t *keys, ngx_str_t *set_cookie)
{
    u_char         *p, raw[NGX_ESP_DEVICE_LEN];
    size_t          len;
    uint64_t        v;
    ngx_str_t       src, value;
    ngx_uint_t      n, secure;
    ngx_esp_key_t  *k;

    if (keys == NULL || keys->nelts == 0) {
        return NGX_ERROR;
    }

    k = keys->elts;

    p = ngx_cpymem(raw, k[0].id, NGX_ESP_KEY_ID_LEN);
    *p++ = NGX_ESP_DEVICE_VERSION;

    v = (uint64_t) ngx_time();

    for (n = 8; n--; /* void */) {
        p[n] = (u_char) v;
        v >>= 8;
    }

    if (ngx_esp_device_mac(lk, &k[0], raw + NGX_ESP_KEY_ID_LEN, p + 8)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    src.data = raw;
    src.len = NGX_ESP_DEVICE_LEN;

    value.data = ngx_pnalloc(r->pool, ngx_base64_encoded_length(src.len));
    if (value.data == NULL) {
        return NGX_ERROR;
    }

    ngx_encode_base64url(&value, &src);

    secure = 0;

#if (NGX_HTTP_SSL)
    secure = (r->connection->ssl != NULL);
#endif

    len = set_cookie->len + 1 + sizeof(NGX_ESP_DEVICE_COOKIE "=") - 1
          + value.len + sizeof("; Path=/; Max-Age=") - 1 + NGX_TIME_T_LEN
          + sizeof("; Secure; HttpOnly; SameSite=Lax") - 1;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    len = set_cookie->len;

    if (len) {
        ngx_memcpy(p, set_cookie->data, len);
        p[len++] = '\n';
    }

    set_cookie->data = p;
    p += len;

    p = ngx_sprintf(p, NGX_ESP_DEVICE_COOKIE "=%V; Path=/; Max-Age=%T%s"
                    "; HttpOnly; SameSite=Lax", &value,
                    lk->domain->familiar_remember,
                    secure ? "; Secure" : "");

    set_cookie->len = p - set_cookie->data;

    return NGX_OK;
}
