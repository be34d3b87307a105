
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "ngx_esp_auth.h"
#include "ngx_esp_log.h"
#include "ngx_esp_mfa.h"
#include "ngx_esp_refusal.h"
#include "ngx_esp_shm.h"


/* not a name an operator would give an esp_shared_zone */
#define NGX_ESP_COUNTERS_ZONE      "ngx_exchange_esp_status"
#define NGX_ESP_COUNTERS_ZONE_SIZE (8 * ngx_pagesize)


static void ngx_esp_ctx_cleanup(void *data);
static void ngx_esp_auth_ldap_done(ngx_esp_ldap_req_t *lr);
static void ngx_esp_auth_wake(ngx_http_request_t *r);
static void ngx_esp_auth_book(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);
static void ngx_esp_auth_log(ngx_http_request_t *r, ngx_esp_ctx_t *ctx);
static void ngx_esp_auth_count(ngx_esp_auth_result_e rc);
static ngx_int_t ngx_esp_counters_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);


/* the zone's tag: our own, so that no esp_shared_zone can be taken for it */
static ngx_uint_t               ngx_esp_counters_tag;

/* looked up once per cycle: a worker's cycle never changes */
static volatile ngx_cycle_t    *ngx_esp_counters_cycle;
static ngx_esp_counters_t      *ngx_esp_counters_sh;


/*
 * The state survives internal redirects (a login continues in the
 * location of its return URL), which clear module contexts: it is found
 * again through its pool cleanup, as the realip module does, and marked
 * for ngx_esp_auth_redirected().
 */

ngx_esp_ctx_t *
ngx_esp_get_ctx(ngx_http_request_t *r, ngx_uint_t create)
{
    ngx_esp_ctx_t       *ctx;
    ngx_pool_cleanup_t  *cln;

    ctx = ngx_http_get_module_ctx(r, ngx_exchange_esp_module);

    if (ctx || !(r->internal || create)) {
        return ctx;
    }

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_esp_ctx_cleanup) {
            ctx = cln->data;
            ctx->redirected = 1;
            ngx_http_set_ctx(r, ctx, ngx_exchange_esp_module);
            return ctx;
        }
    }

    if (!create) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_esp_ctx_t));
    if (cln == NULL) {
        return NULL;
    }

    ctx = cln->data;
    ngx_memzero(ctx, sizeof(ngx_esp_ctx_t));

    cln->handler = ngx_esp_ctx_cleanup;

    ngx_http_set_ctx(r, ctx, ngx_exchange_esp_module);

    return ctx;
}


/*
 * Every location judges a request by its own settings: a decision, and
 * what the gate added to the request, belong to the location that made
 * them.  The context survives an internal redirect only so that a form
 * login can go on in its return URL's location, and so that a decision
 * can be reused where it is provably the same (ngx_esp_auth_reuse()).
 */

ngx_int_t
ngx_esp_auth_redirected(ngx_http_request_t *r, ngx_esp_ctx_t *ctx)
{
    if (!ctx->redirected) {
        return NGX_OK;
    }

    ctx->redirected = 0;

    switch (ctx->state) {

    case NGX_ESP_STATE_NEW:
    case NGX_ESP_STATE_DONE:
        break;

    case NGX_ESP_STATE_FORM_PAGE:
    case NGX_ESP_STATE_FORM_LOGIN:

        if (ctx->continued) {
            /* the gate's own redirect: the login goes on there */
            ctx->continued = 0;
            return NGX_OK;
        }

        /* the operator's (error_page...): the login ends here */

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "esp: login abandoned: an internal redirect took it "
                      "to \"%V\"", ngx_esp_log_escape(r->pool, &r->uri));
        break;

    default:
        /* a body or the directory is awaited: no redirect meanwhile */
        return NGX_OK;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "esp: \"%V\" judged anew after an internal redirect",
                   ngx_esp_log_escape(r->pool, &r->uri));

    ctx->state = NGX_ESP_STATE_NEW;
    ctx->authenticated = 0;
    ctx->has_session = 0;
    ctx->handoff = 0;

    if (ctx->set_authorization) {
        ctx->set_authorization = 0;

        /* the session's password, as Basic, was for that location only */

        if (ngx_esp_http_set_header(r, &r->headers_in.headers,
                                    "Authorization", NULL,
                                    &r->headers_in.authorization)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (ctx->gate_body) {
        ctx->gate_body = 0;
        ngx_esp_http_drop_body(r);
    }

    return NGX_OK;
}


ngx_int_t
ngx_esp_auth_reuse(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx)
{
    u_char              groups[NGX_ESP_GROUPS_LEN];
    ngx_esp_checked_t  *ch;

    ch = &ctx->checked;

    if (ch->domain == NULL) {
        return NGX_DECLINED;
    }

    if (ch->domain != elcf->domain || ch->client_auth != elcf->client_auth) {
        goto afresh;
    }

    /*
     * anybody the domain authenticated may pass where no group is asked;
     * bad credentials, a blocked or disabled account... are refused
     * whatever the groups
     */

    if (ch->ok ? elcf->permitted_groups != NULL
               : ctx->result == NGX_ESP_AUTH_NOT_PERMITTED)
    {
        if (ngx_esp_groups_fingerprint(r, elcf->permitted_groups, groups)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (CRYPTO_memcmp(groups, ch->groups, NGX_ESP_GROUPS_LEN) != 0) {
            goto afresh;
        }
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "esp: the earlier decision stands at \"%V\"",
                   ngx_esp_log_escape(r->pool, &r->uri));

    ctx->authenticated = ch->ok;

    if (ch->login) {
        ctx->state = NGX_ESP_STATE_DONE;
    }

    return NGX_OK;

afresh:

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "esp: \"%V\" is checked again: an internal redirect "
                  "brought it from a location that checks otherwise",
                  ngx_esp_log_escape(r->pool, &r->uri));

    return NGX_DECLINED;
}


ngx_int_t
ngx_esp_auth_checked(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx, u_char *groups)
{
    ngx_esp_checked_t  *ch;

    ch = &ctx->checked;

    if (groups) {
        ngx_memcpy(ch->groups, groups, NGX_ESP_GROUPS_LEN);
        ch->login = 0;

    } else {
        if (ngx_esp_groups_fingerprint(r, elcf->permitted_groups, ch->groups)
            != NGX_OK)
        {
            ch->domain = NULL;
            return NGX_ERROR;
        }

        ch->login = 1;
    }

    ch->domain = elcf->domain;
    ch->client_auth = elcf->client_auth;
    ch->ok = ctx->authenticated;

    return NGX_OK;
}


ngx_int_t
ngx_esp_groups_fingerprint(ngx_http_request_t *r, ngx_array_t *groups,
    u_char *fp)
{
    u_char      *buf, *p, digest[EVP_MAX_MD_SIZE];
    size_t       len;
    ngx_str_t   *dn;
    ngx_uint_t   i;

    ngx_memzero(fp, NGX_ESP_GROUPS_LEN);

    if (groups == NULL || groups->nelts == 0) {
        return NGX_OK;
    }

    dn = groups->elts;
    len = 0;

    for (i = 0; i < groups->nelts; i++) {
        len += dn[i].len + 1;
    }

    buf = ngx_pnalloc(r->pool, len);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    p = buf;

    for (i = 0; i < groups->nelts; i++) {
        ngx_strlow(p, dn[i].data, dn[i].len);
        p += dn[i].len;
        *p++ = '\n';
    }

    if (EVP_Digest(buf, len, digest, NULL, EVP_sha256(), NULL) != 1) {
        return NGX_ERROR;
    }

    ngx_memcpy(fp, digest, NGX_ESP_GROUPS_LEN);

    return NGX_OK;
}


static void
ngx_esp_ctx_cleanup(void *data)
{
    ngx_esp_ctx_t  *ctx = data;

    /*
     * A login's lockout has a cleanup of its own, registered after this
     * one, so it ran first: it has aborted the bind, asking what became
     * of the password.  This abort is then harmless.
     */

    if (ctx->state == NGX_ESP_STATE_WAITING) {
        ctx->state = NGX_ESP_STATE_DECIDED;
        (void) ngx_esp_ldap_abort(&ctx->lr, NULL, NULL);
    }

    if (ctx->password.len) {
        ngx_explicit_memzero(ctx->password.data, ctx->password.len);
    }

    if (ctx->basic_password.len) {
        ngx_explicit_memzero(ctx->basic_password.data,
                             ctx->basic_password.len);
    }
}


/*
 * One login: the gate's own lockout first (a blocked user never reaches a
 * domain controller, and a slot is held for the bind), then the Basic
 * cache, then the directory.  A login that waited for a slot comes here
 * again (ngx_esp_auth_resume()) with the same lockout.
 */

ngx_int_t
ngx_esp_auth_start(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx, ngx_esp_auth_done_pt done, ngx_uint_t flags)
{
    ngx_int_t            rc;
    ngx_str_t            key;
    ngx_esp_ldap_req_t  *lr;

    lr = &ctx->lr;

    ctx->done = done;
    ctx->use_cache = (flags & NGX_ESP_AUTH_CACHE) ? 1 : 0;
    ctx->cached = 0;

    /*
     * the directory ignores spaces around a name (phones add them): so
     * must the lockout, or each spelling would get a budget of its own
     */

    while (ctx->user.len && (ctx->user.data[0] == ' '
                             || ctx->user.data[0] == '\t'))
    {
        ctx->user.data++;
        ctx->user.len--;
    }

    while (ctx->user.len && (ctx->user.data[ctx->user.len - 1] == ' '
                             || ctx->user.data[ctx->user.len - 1] == '\t'))
    {
        ctx->user.len--;
    }

    lr->domain = elcf->domain;
    lr->user = ctx->user;
    lr->password = ctx->password;
    lr->groups = elcf->permitted_groups;
    lr->attrs = ngx_esp_mfa_attrs(elcf);
    lr->handler = ngx_esp_auth_ldap_done;
    lr->data = r;
    lr->log = r->connection->log;
    lr->pool = r->pool;

    if (ctx->user.len == 0 || ctx->password.len == 0
        || ctx->user.len > NGX_ESP_MAX_USER
        || ctx->password.len > NGX_ESP_MAX_PASSWORD
        || ngx_esp_ldap_build_logon_name(r->pool, elcf->domain, &ctx->user,
                                         &lr->logon_name)
           != NGX_OK)
    {
        lr->result = NGX_ESP_AUTH_INVALID;
        goto decided;
    }

    if (ngx_esp_user_key(r, elcf->domain, &lr->logon_name, &key) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->key = key;

    /* the lockout's slot (or the cache's answer) before any bind */

    rc = ngx_esp_lockout_begin(r, elcf->domain, &key,
                               (ctx->use_cache && elcf->basic_cache
                                && elcf->permitted_groups == NULL)
                               ? &ctx->password : NULL,
                               lr, &ctx->lockout);

    switch (rc) {

    case NGX_OK:
        break;

    case NGX_AGAIN:
        /* every slot is taken: the access phase runs again on a timer */
        ctx->state = NGX_ESP_STATE_SLOT;
        r->read_event_handler = ngx_http_test_reading;
        return NGX_AGAIN;

    case NGX_BUSY:
        lr->result = NGX_ESP_AUTH_BLOCKED;
        goto decided;

    case NGX_DONE:
        lr->result = NGX_ESP_AUTH_OK;
        ngx_str_set(&lr->dc, "cache");
        ctx->cached = 1;
        goto decided;

    default: /* NGX_ERROR */
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->started = ngx_current_msec;

    rc = ngx_esp_ldap_authenticate(lr);

    if (rc == NGX_AGAIN) {
        ctx->state = NGX_ESP_STATE_WAITING;
        r->read_event_handler = ngx_http_test_reading;
        return NGX_AGAIN;
    }

    if (rc == NGX_ERROR) {
        ngx_esp_lockout_end(r, ctx->lockout, NGX_ESP_AUTH_ERROR, NULL);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

decided:

    if (lr->result != NGX_ESP_AUTH_OK) {

        /* decided without the directory: not measurably sooner than it */

        if (ngx_esp_refusal_delay(r, elcf->domain, ngx_esp_auth_wake)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->state = NGX_ESP_STATE_DELAYED;
        r->read_event_handler = ngx_http_test_reading;
        return NGX_AGAIN;
    }

    ctx->state = NGX_ESP_STATE_DECIDED;

    return ngx_esp_auth_resume(r, elcf, ctx);
}


static void
ngx_esp_auth_ldap_done(ngx_esp_ldap_req_t *lr)
{
    ngx_http_request_t  *r = lr->data;

    ngx_esp_ctx_t  *ctx;

    ctx = ngx_esp_get_ctx(r, 0);

    if (lr->result == NGX_ESP_AUTH_BAD_CREDENTIALS) {
        ngx_esp_refusal_sample(lr->domain, ngx_current_msec - ctx->started);
    }

    ngx_esp_auth_wake(r);
}


/* the directory has answered, or a refusal has waited long enough */

static void
ngx_esp_auth_wake(ngx_http_request_t *r)
{
    ngx_connection_t  *c;
    ngx_esp_ctx_t     *ctx;

    c = r->connection;
    ctx = ngx_esp_get_ctx(r, 0);

    ctx->state = NGX_ESP_STATE_DECIDED;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "esp: resuming \"%V\" with the decision",
                   ngx_esp_log_escape(r->pool, &r->uri));

    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = ngx_http_core_run_phases;

    ngx_http_core_run_phases(r);
    ngx_http_run_posted_requests(c);
}


ngx_int_t
ngx_esp_auth_resume(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx)
{
    if (ctx->state == NGX_ESP_STATE_SLOT) {

        if (ngx_esp_lockout_waiting(ctx->lockout)) {
            return NGX_AGAIN;
        }

        /* woken up: the same login asks the lockout again */

        ctx->state = NGX_ESP_STATE_NEW;

        return ngx_esp_auth_start(r, elcf, ctx, ctx->done,
                                  ctx->use_cache ? NGX_ESP_AUTH_CACHE : 0);
    }

    if (ctx->state != NGX_ESP_STATE_DECIDED) {
        /* acted upon already in this location: the same answer */
        return ctx->authenticated ? NGX_DECLINED : NGX_HTTP_FORBIDDEN;
    }

    ctx->state = NGX_ESP_STATE_DONE;
    ctx->result = ctx->lr.result;

    ngx_esp_auth_log(r, ctx);

    /* the lockout hears the outcome: only a bind's success resets it */

    ngx_esp_lockout_end(r, ctx->lockout, ctx->result, &ctx->set_cookie);

    ngx_esp_auth_count(ctx->result);
    ngx_esp_auth_book(r, elcf, ctx);

    if (ctx->result == NGX_ESP_AUTH_OK) {
        ctx->authenticated = 1;
        ctx->user = ctx->lr.logon_name;
    }

    if (ngx_esp_auth_checked(r, elcf, ctx, NULL) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ctx->done(r, elcf, ctx);
}


/* the decision in the shared zone: the Basic cache */

static void
ngx_esp_auth_book(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx)
{
    ngx_esp_main_conf_t  *emcf;

    emcf = ngx_http_get_module_main_conf(r, ngx_exchange_esp_module);

    if (emcf->shm_zone == NULL || ctx->key.len == 0) {
        return;
    }

    switch (ctx->result) {

    case NGX_ESP_AUTH_OK:

        if (ctx->use_cache && elcf->basic_cache && !ctx->cached
            && elcf->permitted_groups == NULL)
        {
            (void) ngx_esp_cache_store(emcf->shm_zone, &elcf->domain->name,
                                       &ctx->key, &ctx->password,
                                       elcf->basic_cache);
        }

        break;

    case NGX_ESP_AUTH_BAD_CREDENTIALS:
    case NGX_ESP_AUTH_BLOCKED:
    case NGX_ESP_AUTH_INVALID:
    case NGX_ESP_AUTH_UNAVAILABLE:
    case NGX_ESP_AUTH_SERVICE_ACCOUNT:
    case NGX_ESP_AUTH_ERROR:
        break;

    default:
        /* locked, disabled, expired...: no cached way around it */
        ngx_esp_cache_forget(emcf->shm_zone, &elcf->domain->name,
                             &ctx->key);
        break;
    }
}


/*
 * The key of a user for the lockout and the cache: the logon name as AD
 * compares it, case-insensitively (ASCII and Latin-1 letters, as "Jürgen"
 * and "JÜRGEN" are one account) and with the NetBIOS name after "@"
 * standing for the DNS domain (AD accepts "alice@CONTOSO" too).
 */

ngx_int_t
ngx_esp_user_key(ngx_http_request_t *r, ngx_esp_domain_t *d,
    ngx_str_t *logon, ngx_str_t *key)
{
    u_char      *at, *p, *q, *last;
    size_t       local;
    ngx_str_t    dom;

    at = NULL;

    for (p = logon->data + logon->len; p > logon->data; p--) {
        if (p[-1] == '@') {
            at = p - 1;
            break;
        }
    }

    dom.len = 0;
    local = logon->len;

    if (at) {
        local = at - logon->data;
        dom.data = at + 1;
        dom.len = logon->data + logon->len - dom.data;

        if (d->netbios_domain.len && d->logon_domain.len
            && dom.len == d->netbios_domain.len
            && ngx_strncasecmp(dom.data, d->netbios_domain.data, dom.len)
               == 0)
        {
            dom = d->logon_domain;
        }
    }

    key->data = ngx_pnalloc(r->pool, local + 1 + dom.len);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    q = key->data;
    p = logon->data;
    last = logon->data + local;

    while (p < last) {

        /* U+00C0..U+00DE but U+00D7 (x): their lower case is 0x20 above */

        if (p[0] == 0xc3 && p + 1 < last
            && p[1] >= 0x80 && p[1] <= 0x9e && p[1] != 0x97)
        {
            *q++ = 0xc3;
            *q++ = (u_char) (p[1] + 0x20);
            p += 2;
            continue;
        }

        *q++ = ngx_tolower(*p);
        p++;
    }

    if (at) {
        *q++ = '@';

        for (p = dom.data; p < dom.data + dom.len; p++) {
            *q++ = ngx_tolower(*p);
        }
    }

    key->len = q - key->data;

    return NGX_OK;
}


/*
 * One line per login decision, stable for log watchers (fail2ban):
 * esp: login user="alice" client=192.0.2.7 domain=contoso
 *      dc=ldaps://192.0.2.11:636 result=ok ad_code=none
 */

static void
ngx_esp_auth_log(ngx_http_request_t *r, ngx_esp_ctx_t *ctx)
{
    ngx_str_t            dc;
    ngx_uint_t           level;
    ngx_esp_ldap_req_t  *lr;

    lr = &ctx->lr;

    dc = lr->dc;
    if (dc.len == 0) {
        ngx_str_set(&dc, "none");
    }

    /* a cache hit repeats a decision logged at its bind */
    level = (lr->result != NGX_ESP_AUTH_OK) ? NGX_LOG_WARN
            : ctx->cached ? NGX_LOG_INFO : NGX_LOG_NOTICE;

    if (lr->ad_code) {
        ngx_log_error(level, r->connection->log, 0,
                      "esp: login user=\"%V\" client=%V domain=%V dc=%V "
                      "result=%s ad_code=%xi",
                      ngx_esp_log_escape(r->pool, &ctx->user),
                      &r->connection->addr_text,
                      &lr->domain->name, &dc,
                      ngx_esp_auth_result_name(lr->result), lr->ad_code);

    } else {
        ngx_log_error(level, r->connection->log, 0,
                      "esp: login user=\"%V\" client=%V domain=%V dc=%V "
                      "result=%s ad_code=none",
                      ngx_esp_log_escape(r->pool, &ctx->user),
                      &r->connection->addr_text,
                      &lr->domain->name, &dc,
                      ngx_esp_auth_result_name(lr->result));
    }
}


/*
 * Each login decision (Basic cache hits included) is counted once, in a
 * small shared zone of its own, so the counts are those of all workers
 * and survive reloads; while no "esp_status" is configured there is no
 * zone and nothing is counted.
 */

static void
ngx_esp_auth_count(ngx_esp_auth_result_e rc)
{
    ngx_esp_counters_t  *sh;

    sh = ngx_esp_counters();

    if (sh == NULL || (ngx_uint_t) rc >= NGX_ESP_AUTH_RESULTS) {
        return;
    }

    (void) ngx_atomic_fetch_add(&sh->logins[rc], 1);
}


ngx_esp_counters_t *
ngx_esp_counters(void)
{
    ngx_uint_t        i;
    ngx_shm_zone_t   *zone;
    ngx_list_part_t  *part;

    if (ngx_esp_counters_cycle == ngx_cycle) {
        return ngx_esp_counters_sh;
    }

    ngx_esp_counters_sh = NULL;

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

        if (zone[i].tag == &ngx_esp_counters_tag) {
            ngx_esp_counters_sh = zone[i].data;
            break;
        }
    }

    ngx_esp_counters_cycle = ngx_cycle;

    return ngx_esp_counters_sh;
}


char *
ngx_esp_counters_zone(ngx_conf_t *cf)
{
    ngx_str_t        name;
    ngx_shm_zone_t  *zone;

    ngx_str_set(&name, NGX_ESP_COUNTERS_ZONE);

    zone = ngx_shared_memory_add(cf, &name, NGX_ESP_COUNTERS_ZONE_SIZE,
                                 &ngx_esp_counters_tag);
    if (zone == NULL) {
        return NGX_CONF_ERROR;
    }

    zone->init = ngx_esp_counters_init_zone;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_esp_counters_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t     *shpool;
    ngx_esp_counters_t  *sh;

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (data || shm_zone->shm.exists) {

        /* the previous cycle's zone: the counters go on */

        sh = shpool->data;

        if (sh == NULL || sh->size != sizeof(ngx_esp_counters_t)) {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "the status counters were made by another build "
                          "of the module: restart nginx");
            return NGX_ERROR;
        }

        shm_zone->data = sh;

        return NGX_OK;
    }

    sh = ngx_slab_calloc(shpool, sizeof(ngx_esp_counters_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    sh->size = sizeof(ngx_esp_counters_t);
    sh->since = ngx_time();

    shpool->data = sh;
    shm_zone->data = sh;

    return NGX_OK;
}
