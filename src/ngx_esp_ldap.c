
/*
 * Copyright (C) ngx_exchange_esp authors
 */


/*
 * The directory client: what a login asks of Active Directory, and which
 * domain controller (DC) it asks.  The user's simple bind and, for
 * permitted groups, a service account bind and two searches; the DCs in
 * failover order, a DC's up and down state, retries; the client's
 * public API (src/ngx_esp_ldap.h) and its per-worker state, except
 * ngx_esp_ldap_init_domain() (the TLS context, src/ngx_esp_ldap_conn.c)
 * and ngx_esp_ldap_escape_filter_value() (src/ngx_esp_ldap_ber.c).
 *
 * A login ("op") takes a connection to its DC from
 * src/ngx_esp_ldap_conn.c (an idle one, a new one, or it waits in the
 * DC's queue), which tells it of answers and failures through
 * ngx_esp_ldap_handlers_t; requests and answers are encoded and decoded
 * by src/ngx_esp_ldap_ber.c.  A DC that does not connect, handshake or
 * answer within ldap_timeout is marked down for ldap_down_retry seconds,
 * and the op moves on to the next DC.  When that time is over, one op
 * probes the DC while the others still skip it.
 *
 * The op's steps: USER_BIND; then, with groups, SERVICE_BIND, FIND_USER
 * (who did the bind authenticate: the DN behind the UPN or the
 * sAMAccountName, as AD resolves it) and CHECK_GROUPS (is that DN in a
 * permitted group, nested to any depth: LDAP_MATCHING_RULE_IN_CHAIN),
 * which also reads the attributes asked for (lr->attrs); without groups,
 * READ_ATTRS reads them, a base-object search of the user's DN.
 *
 * ngx_esp_ldap_modify() and ngx_esp_ldap_read() run the same op: a bind
 * as the user or the service account, FIND_USER unless given a DN, then
 * MODIFY or READ_ATTRS.  A modify is never sent twice: once out, a
 * failure ends the op (op->sent).  No libldap I/O is used.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include "ngx_esp_ldap.h"
#include "ngx_esp_ldap_ber.h"
#include "ngx_esp_ldap_conn.h"
#include "ngx_esp_log.h"


#define NGX_ESP_LDAP_MAX_INPUT        256

/* op steps */
#define NGX_ESP_LDAP_USER_BIND        0
#define NGX_ESP_LDAP_SERVICE_BIND     1
#define NGX_ESP_LDAP_FIND_USER        2
#define NGX_ESP_LDAP_CHECK_GROUPS     3
#define NGX_ESP_LDAP_READ_ATTRS       4
#define NGX_ESP_LDAP_MODIFY           5

/* what an op is for */
#define NGX_ESP_LDAP_OP_LOGIN         0
#define NGX_ESP_LDAP_OP_MODIFY        1
#define NGX_ESP_LDAP_OP_READ          2


struct ngx_esp_ldap_op_s {
    ngx_esp_ldap_req_t        *lr;
    ngx_esp_ldap_worker_t     *lw;
    ngx_esp_ldap_dc_t         *dc;          /* being tried */
    ngx_esp_ldap_conn_t       *conn;
    ngx_uint_t                 next;        /* the next DC to try */
    ngx_uint_t                 step;

    ngx_queue_t                queue;       /* in dc->waiting */
    ngx_event_t                wait;        /* while in dc->waiting */
    ngx_event_t                done;        /* posted: calls lr->handler */

    ngx_uint_t                 ngroups;
    ngx_str_t                 *target;      /* read or modified */

    /* who was bound: by this UPN, or else this sAMAccountName */
    ngx_str_t                  upn;
    ngx_str_t                  account;

    ngx_uint_t                 nupn;        /* entries found by UPN */
    ngx_uint_t                 naccount;    /* by sAMAccountName only */
    ngx_str_t                  upn_dn;
    ngx_str_t                  account_dn;

    unsigned                   kind:2;      /* NGX_ESP_LDAP_OP_* */
    unsigned                   read:1;      /* lr->attrs are read */
    unsigned                   user_bound:1; /* the password was right */
    unsigned                   sent:1;      /* the modify went out */
    unsigned                   retried:1;   /* on a fresh connection */
    unsigned                   waiting:1;
    unsigned                   found:1;
    unsigned                   finished:1;
};


static ngx_int_t ngx_esp_ldap_start(ngx_esp_ldap_req_t *lr,
    ngx_uint_t kind);
static ngx_uint_t ngx_esp_ldap_first_step(ngx_esp_ldap_op_t *op);
static void ngx_esp_ldap_after_bind(ngx_esp_ldap_op_t *op,
    ngx_esp_ldap_dc_t *dc);
static ngx_int_t ngx_esp_ldap_modify_answer(ngx_esp_ldap_op_t *op,
    ngx_esp_ldap_msg_t *m);
static ngx_int_t ngx_esp_ldap_check_user(ngx_str_t *user);
static ngx_int_t ngx_esp_ldap_split_user(ngx_str_t *user, ngx_str_t *domain,
    ngx_str_t *account, ngx_uint_t *upn);

static void ngx_esp_ldap_next_dc(ngx_esp_ldap_op_t *op);
static void ngx_esp_ldap_use_dc(ngx_esp_ldap_op_t *op, ngx_esp_ldap_dc_t *dc,
    ngx_uint_t fresh);
static void ngx_esp_ldap_wait_handler(ngx_event_t *ev);
static void ngx_esp_ldap_send_step(ngx_esp_ldap_op_t *op);
static ngx_int_t ngx_esp_ldap_op_answer(ngx_esp_ldap_op_t *op,
    ngx_esp_ldap_msg_t *m);
static void ngx_esp_ldap_log_answer(ngx_esp_ldap_op_t *op,
    ngx_esp_ldap_msg_t *m);
static void ngx_esp_ldap_op_release(ngx_esp_ldap_op_t *op);
static void ngx_esp_ldap_finish(ngx_esp_ldap_op_t *op, ngx_esp_ldap_dc_t *dc,
    ngx_esp_auth_result_e result);
static void ngx_esp_ldap_done_handler(ngx_event_t *ev);

static void ngx_esp_ldap_conn_failed(ngx_esp_ldap_conn_t *conn,
    ngx_uint_t why);
static ngx_int_t ngx_esp_ldap_hand_over(ngx_esp_ldap_conn_t *conn);
static void ngx_esp_ldap_mark_down(ngx_esp_ldap_dc_t *dc, u_char *reason,
    size_t len);
static void ngx_esp_ldap_mark_up(ngx_esp_ldap_dc_t *dc);


ngx_int_t
ngx_esp_ldap_init_worker(ngx_cycle_t *cycle, ngx_esp_domain_t *d)
{
    ngx_uint_t                   i;
    ngx_esp_ldap_dc_t           *dc;
    ngx_esp_ldap_worker_t       *lw;
    ngx_esp_ldap_server_conf_t  *s;

    lw = ngx_pcalloc(cycle->pool, sizeof(ngx_esp_ldap_worker_t));
    if (lw == NULL) {
        return NGX_ERROR;
    }

    lw->domain = d;
    lw->ndcs = d->servers.nelts;

    lw->handlers.send = ngx_esp_ldap_send_step;
    lw->handlers.answer = ngx_esp_ldap_op_answer;
    lw->handlers.fail = ngx_esp_ldap_conn_failed;
    lw->handlers.idle = ngx_esp_ldap_hand_over;
    lw->handlers.up = ngx_esp_ldap_mark_up;

    lw->dcs = ngx_pcalloc(cycle->pool, lw->ndcs * sizeof(ngx_esp_ldap_dc_t));
    lw->stats = ngx_pcalloc(cycle->pool,
                            lw->ndcs * sizeof(ngx_esp_ldap_dc_stats_t));
    if (lw->dcs == NULL || lw->stats == NULL) {
        return NGX_ERROR;
    }

    s = d->servers.elts;

    for (i = 0; i < lw->ndcs; i++) {
        dc = &lw->dcs[i];

        dc->conf = &s[i];
        dc->lw = lw;
        dc->stats = &lw->stats[i];
        dc->stats->name = s[i].name;

        ngx_queue_init(&dc->waiting);

        if (ngx_esp_ldap_init_conns(cycle, dc) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    d->ldap = lw;

    return NGX_OK;
}


void
ngx_esp_ldap_exit_worker(ngx_cycle_t *cycle, ngx_esp_domain_t *d)
{
    ngx_uint_t              i, j;
    ngx_queue_t            *q;
    ngx_esp_ldap_op_t      *op;
    ngx_esp_ldap_dc_t      *dc;
    ngx_esp_ldap_conn_t    *conn;
    ngx_esp_ldap_worker_t  *lw;

    lw = d->ldap;

    if (lw == NULL) {
        return;
    }

    for (i = 0; i < lw->ndcs; i++) {
        dc = &lw->dcs[i];

        /* requests are gone by now: forget whoever still waits */

        while (!ngx_queue_empty(&dc->waiting)) {
            q = ngx_queue_head(&dc->waiting);
            ngx_queue_remove(q);

            op = ngx_queue_data(q, ngx_esp_ldap_op_t, queue);
            op->waiting = 0;

            if (op->wait.timer_set) {
                ngx_del_timer(&op->wait);
            }
        }

        for (j = 0; j < dc->nconns; j++) {
            conn = &dc->conns[j];

            if (conn->op) {
                conn->op->conn = NULL;
                conn->op = NULL;
            }

            ngx_esp_ldap_close(conn, conn->state == NGX_ESP_LDAP_IDLE);
        }
    }

    d->ldap = NULL;
}


ngx_int_t
ngx_esp_ldap_authenticate(ngx_esp_ldap_req_t *lr)
{
    return ngx_esp_ldap_start(lr, NGX_ESP_LDAP_OP_LOGIN);
}


ngx_int_t
ngx_esp_ldap_modify(ngx_esp_ldap_req_t *lr)
{
    return ngx_esp_ldap_start(lr, NGX_ESP_LDAP_OP_MODIFY);
}


ngx_int_t
ngx_esp_ldap_read(ngx_esp_ldap_req_t *lr)
{
    return ngx_esp_ldap_start(lr, NGX_ESP_LDAP_OP_READ);
}


static ngx_int_t
ngx_esp_ldap_start(ngx_esp_ldap_req_t *lr, ngx_uint_t kind)
{
    ngx_int_t               rc;
    ngx_str_t               domain, account, *g;
    ngx_uint_t              i, upn, ngroups, read, find, anonymous;
    ngx_esp_domain_t       *d;
    ngx_esp_ldap_op_t      *op;
    ngx_esp_ldap_worker_t  *lw;

    d = lr->domain;
    lw = d->ldap;

    lr->result = NGX_ESP_AUTH_ERROR;
    lr->ad_code = 0;
    ngx_str_null(&lr->dc);
    ngx_str_null(&lr->logon_name);
    ngx_str_null(&lr->user_dn);
    lr->values = NULL;
    lr->ldap_code = -1;
    ngx_str_null(&lr->diag);
    lr->op = NULL;

    if (lw == NULL) {
        ngx_log_error(NGX_LOG_ALERT, lr->log, 0,
                      "esp: directory client of domain \"%V\" is not "
                      "initialized", &d->name);
        return NGX_ERROR;
    }

    if (kind == NGX_ESP_LDAP_OP_LOGIN) {
        lr->service = 0;

    } else if ((kind == NGX_ESP_LDAP_OP_MODIFY
                && (lr->changes == NULL || lr->changes->nelts == 0))
               || (kind == NGX_ESP_LDAP_OP_READ
                   && (lr->attrs == NULL || lr->attrs->nelts == 0))
               || (lr->service && d->bind_dn.len == 0)
               || (lr->dn.len == 0 && d->base_dn.len == 0))
    {
        ngx_log_error(NGX_LOG_ERR, lr->log, 0,
                      "esp: a %s in domain \"%V\" needs %s, "
                      "\"ldap_base_dn\" to find the user, and "
                      "\"ldap_bind_dn\" to act as the service account",
                      kind == NGX_ESP_LDAP_OP_READ ? "read" : "change",
                      &d->name,
                      kind == NGX_ESP_LDAP_OP_READ ? "attributes"
                                                   : "changes");
        return NGX_ERROR;
    }

    /* the service account on a DN it was given needs no user */

    anonymous = (lr->service && lr->dn.len);

    /* refused before any bind: nothing here may reach a directory */

    if ((!lr->service
         && (lr->password.len == 0
             || lr->password.len > NGX_ESP_LDAP_MAX_INPUT))
        || (!anonymous && ngx_esp_ldap_check_user(&lr->user) != NGX_OK))
    {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, lr->log, 0,
                       "esp ldap: invalid input, user length %uz, "
                       "password length %uz",
                       lr->user.len, lr->password.len);

        lr->result = NGX_ESP_AUTH_INVALID;
        return NGX_OK;
    }

    rc = anonymous ? NGX_OK
                   : ngx_esp_ldap_build_logon_name(lr->pool, d, &lr->user,
                                                   &lr->logon_name);

    if (rc == NGX_DECLINED) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, lr->log, 0,
                       "esp ldap: \"%V\" is not a logon name",
                       ngx_esp_log_escape(lr->pool, &lr->user));

        lr->result = NGX_ESP_AUTH_INVALID;
        return NGX_OK;
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    ngroups = 0;

    if (lr->groups) {
        g = lr->groups->elts;

        for (i = 0; i < lr->groups->nelts; i++) {
            if (g[i].len) {
                ngroups++;
            }
        }
    }

    if (ngroups && (d->bind_dn.len == 0 || d->base_dn.len == 0)) {
        ngx_log_error(NGX_LOG_ERR, lr->log, 0,
                      "esp: permitted groups in domain \"%V\" need "
                      "\"ldap_bind_dn\" and \"ldap_base_dn\"", &d->name);
        return NGX_ERROR;
    }

    op = ngx_pcalloc(lr->pool, sizeof(ngx_esp_ldap_op_t));
    if (op == NULL) {
        return NGX_ERROR;
    }

    if (kind == NGX_ESP_LDAP_OP_LOGIN) {
        read = (lr->attrs && lr->attrs->nelts && d->base_dn.len);
        find = (ngroups || read);
        op->target = &lr->user_dn;

    } else {
        read = (kind == NGX_ESP_LDAP_OP_READ);
        find = (lr->dn.len == 0);
        op->target = find ? &lr->user_dn : &lr->dn;
    }

    if (kind == NGX_ESP_LDAP_OP_LOGIN && lr->attrs && lr->attrs->nelts
        && !read)
    {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, lr->log, 0,
                       "esp ldap: no \"ldap_base_dn\", no attributes read");
    }

    op->lr = lr;
    op->lw = lw;
    op->kind = kind;
    op->read = read;
    op->step = ngx_esp_ldap_first_step(op);

    op->wait.handler = ngx_esp_ldap_wait_handler;
    op->wait.data = op;
    op->wait.log = lr->log;

    op->done.handler = ngx_esp_ldap_done_handler;
    op->done.data = op;
    op->done.log = lr->log;

    op->ngroups = ngroups;

    if (find) {

        /*
         * who the bind will have authenticated, as AD resolves the name:
         * a UPN is an explicit userPrincipalName or else, in the domain's
         * own DNS name, sAMAccountName@domain; DOMAIN\user is the
         * sAMAccountName in that domain.  Only what names this domain is
         * looked for.
         */

        (void) ngx_esp_ldap_split_user(&lr->logon_name, &domain, &account,
                                       &upn);

        if (upn) {
            op->upn = lr->logon_name;

            if (domain.len == d->logon_domain.len
                && ngx_strncasecmp(domain.data, d->logon_domain.data,
                                   domain.len)
                   == 0)
            {
                op->account = account;
            }

        } else if (domain.len == 0
                   || (domain.len == d->netbios_domain.len
                       && ngx_strncasecmp(domain.data, d->netbios_domain.data,
                                          domain.len)
                          == 0))
        {
            op->account = account;
        }
    }

    lr->op = op;

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, lr->log, 0,
                   "esp ldap: %s \"%V\" as \"%V\", %ui groups",
                   kind == NGX_ESP_LDAP_OP_MODIFY ? "modify for"
                   : kind == NGX_ESP_LDAP_OP_READ ? "read for" : "authenticate",
                   ngx_esp_log_escape(lr->pool, &lr->user),
                   ngx_esp_log_escape(lr->pool, &lr->logon_name), ngroups);

    ngx_esp_ldap_next_dc(op);

    return NGX_AGAIN;
}


ngx_int_t
ngx_esp_ldap_abort(ngx_esp_ldap_req_t *lr, ngx_esp_ldap_orphan_pt orphan,
    void *data)
{
    ngx_int_t             rc;
    ngx_esp_ldap_op_t    *op;
    ngx_esp_ldap_conn_t  *conn;

    op = lr->op;

    if (op == NULL) {
        return NGX_DECLINED;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, lr->log, 0, "esp ldap: abort");

    /*
     * What the directory makes of the password: an answer that came (the
     * handler is posted), a bind accepted before a later step, a bind
     * still out, or nothing sent yet.
     */

    conn = op->conn;

    if (op->finished) {
        rc = NGX_DONE;

    } else if (op->user_bound) {
        lr->result = NGX_ESP_AUTH_OK;
        rc = NGX_DONE;

    } else if (conn && conn->state == NGX_ESP_LDAP_BUSY && conn->expect
               && ((conn->expect_type == LDAP_RES_BIND
                    && op->step == NGX_ESP_LDAP_USER_BIND)
                   || (conn->expect_type == LDAP_RES_MODIFY
                       && lr->service && lr->user.len)))
    {
        conn->orphan = orphan;
        conn->orphan_data = data;
        rc = NGX_AGAIN;

    } else {
        rc = NGX_DECLINED;
    }

    lr->op = NULL;
    op->finished = 1;

    if (op->done.posted) {
        ngx_delete_posted_event(&op->done);
    }

    if (op->wait.timer_set) {
        ngx_del_timer(&op->wait);
    }

    if (op->waiting) {
        ngx_queue_remove(&op->queue);
        op->waiting = 0;
    }

    if (op->conn) {

        /* the exchange under way ends on its own; the slot is kept */

        op->conn->op = NULL;
        op->conn = NULL;
    }

    return rc;
}


static ngx_int_t
ngx_esp_ldap_check_user(ngx_str_t *user)
{
    u_char      *p, *last;
    uint32_t     u, min;
    ngx_uint_t   n;

    if (user->len == 0 || user->len > NGX_ESP_LDAP_MAX_INPUT) {
        return NGX_DECLINED;
    }

    p = user->data;
    last = p + user->len;

    /*
     * strict UTF-8 (no overlong forms, surrogates, or code points past
     * U+10FFFF) without control characters, C0 or C1
     */

    while (p < last) {
        u = *p++;

        if (u < 0x80) {
            if (u < 0x20 || u == 0x7f) {
                return NGX_DECLINED;
            }

            continue;
        }

        if (u >= 0xc2 && u <= 0xdf) {
            n = 1;
            u &= 0x1f;
            min = 0x80;

        } else if (u >= 0xe0 && u <= 0xef) {
            n = 2;
            u &= 0x0f;
            min = 0x800;

        } else if (u >= 0xf0 && u <= 0xf4) {
            n = 3;
            u &= 0x07;
            min = 0x10000;

        } else {
            return NGX_DECLINED;
        }

        if ((size_t) (last - p) < n) {
            return NGX_DECLINED;
        }

        while (n--) {
            if ((*p & 0xc0) != 0x80) {
                return NGX_DECLINED;
            }

            u = (u << 6) | (*p++ & 0x3f);
        }

        if (u < min || u <= 0x9f || (u >= 0xd800 && u <= 0xdfff)
            || u > 0x10ffff)
        {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


/*
 * "user@example.com" (upn), "DOMAIN\user" or "user": the account part
 * must not be empty, and there is at most one separator.
 */

static ngx_int_t
ngx_esp_ldap_split_user(ngx_str_t *user, ngx_str_t *domain,
    ngx_str_t *account, ngx_uint_t *upn)
{
    u_char  *p, *at, *bs, *last;

    at = NULL;
    bs = NULL;
    last = user->data + user->len;

    for (p = user->data; p < last; p++) {

        if (*p == '@') {
            if (at || bs) {
                return NGX_DECLINED;
            }

            at = p;

        } else if (*p == '\\') {
            if (at || bs) {
                return NGX_DECLINED;
            }

            bs = p;
        }
    }

    *upn = 0;
    ngx_str_null(domain);

    if (at) {
        *upn = 1;
        account->data = user->data;
        account->len = at - user->data;
        domain->data = at + 1;
        domain->len = last - domain->data;

        if (domain->len == 0) {
            return NGX_DECLINED;
        }

    } else if (bs) {
        domain->data = user->data;
        domain->len = bs - user->data;
        account->data = bs + 1;
        account->len = last - account->data;

    } else {
        *account = *user;
    }

    if (account->len == 0) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


ngx_int_t
ngx_esp_ldap_build_logon_name(ngx_pool_t *pool, ngx_esp_domain_t *d,
    ngx_str_t *user, ngx_str_t *out)
{
    ngx_str_t   domain, account;
    ngx_uint_t  upn;

    if (ngx_esp_ldap_split_user(user, &domain, &account, &upn) != NGX_OK) {
        return NGX_DECLINED;
    }

    /* a UPN is bound as typed: AD accepts it in every logon format */

    if (upn || d->logon_format == NGX_ESP_LOGON_UNSPECIFIED) {
        *out = *user;
        return NGX_OK;
    }

    if (d->logon_format == NGX_ESP_LOGON_USERNAME) {

        if (d->netbios_domain.len == 0) {
            *out = *user;
            return NGX_OK;
        }

        out->len = d->netbios_domain.len + 1 + account.len;
        out->data = ngx_pnalloc(pool, out->len);
        if (out->data == NULL) {
            return NGX_ERROR;
        }

        ngx_sprintf(out->data, "%V\\%V", &d->netbios_domain, &account);

        return NGX_OK;
    }

    /* principalname: DOMAIN\user and user become user@logon_domain */

    if (d->logon_domain.len == 0) {
        *out = *user;
        return NGX_OK;
    }

    out->len = account.len + 1 + d->logon_domain.len;
    out->data = ngx_pnalloc(pool, out->len);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(out->data, "%V@%V", &account, &d->logon_domain);

    return NGX_OK;
}


ngx_esp_ldap_dc_stats_t *
ngx_esp_ldap_stats(ngx_esp_domain_t *d, ngx_uint_t *n)
{
    ngx_uint_t              i, j;
    ngx_esp_ldap_dc_t      *dc;
    ngx_esp_ldap_worker_t  *lw;

    lw = d->ldap;

    if (lw == NULL) {
        *n = 0;
        return NULL;
    }

    for (i = 0; i < lw->ndcs; i++) {
        dc = &lw->dcs[i];

        dc->stats->down_until = (dc->down_until > ngx_time())
                                ? dc->down_until : 0;
        dc->stats->connections = 0;
        dc->stats->idle = 0;

        for (j = 0; j < dc->nconns; j++) {
            if (dc->conns[j].state != NGX_ESP_LDAP_FREE) {
                dc->stats->connections++;
            }

            if (dc->conns[j].state == NGX_ESP_LDAP_IDLE) {
                dc->stats->idle++;
            }
        }
    }

    *n = lw->ndcs;

    return lw->stats;
}


const char *
ngx_esp_auth_result_name(ngx_esp_auth_result_e rc)
{
    switch (rc) {
    case NGX_ESP_AUTH_OK:
        return "ok";
    case NGX_ESP_AUTH_BAD_CREDENTIALS:
        return "bad_credentials";
    case NGX_ESP_AUTH_LOGON_HOURS:
        return "logon_hours";
    case NGX_ESP_AUTH_WORKSTATION:
        return "workstation";
    case NGX_ESP_AUTH_PASSWORD_EXPIRED:
        return "password_expired";
    case NGX_ESP_AUTH_DISABLED:
        return "disabled";
    case NGX_ESP_AUTH_ACCOUNT_EXPIRED:
        return "account_expired";
    case NGX_ESP_AUTH_MUST_CHANGE:
        return "must_change";
    case NGX_ESP_AUTH_LOCKED:
        return "locked";
    case NGX_ESP_AUTH_NOT_PERMITTED:
        return "not_permitted";
    case NGX_ESP_AUTH_BLOCKED:
        return "blocked";
    case NGX_ESP_AUTH_INVALID:
        return "invalid";
    case NGX_ESP_AUTH_UNAVAILABLE:
        return "unavailable";
    case NGX_ESP_AUTH_SERVICE_ACCOUNT:
        return "service_account";
    default:
        return "error";
    }
}


/* the op: which DC, which step, what the answers mean */

/* the bind that starts the op on a connection, or again on another DC */

static ngx_uint_t
ngx_esp_ldap_first_step(ngx_esp_ldap_op_t *op)
{
    if (op->lr->service) {
        return NGX_ESP_LDAP_SERVICE_BIND;
    }

    /* the password was right: a login's searches are the service's */

    if (op->user_bound && op->kind == NGX_ESP_LDAP_OP_LOGIN
        && op->lw->domain->bind_dn.len)
    {
        return NGX_ESP_LDAP_SERVICE_BIND;
    }

    return NGX_ESP_LDAP_USER_BIND;
}


/*
 * After the op's bind: the next step, or the end.  The user's entry is
 * looked up for the group check, the attributes and a modify of the
 * user's own entry; a modify runs as whoever was bound.
 */

static void
ngx_esp_ldap_after_bind(ngx_esp_ldap_op_t *op, ngx_esp_ldap_dc_t *dc)
{
    ngx_esp_domain_t    *d;
    ngx_esp_ldap_req_t  *lr;

    lr = op->lr;
    d = op->lw->domain;

    if (op->kind != NGX_ESP_LDAP_OP_LOGIN && lr->dn.len) {
        op->step = (op->kind == NGX_ESP_LDAP_OP_MODIFY)
                   ? NGX_ESP_LDAP_MODIFY : NGX_ESP_LDAP_READ_ATTRS;
        ngx_esp_ldap_send_step(op);
        return;
    }

    if (op->kind == NGX_ESP_LDAP_OP_LOGIN && op->ngroups == 0 && !op->read) {
        ngx_esp_ldap_op_release(op);
        ngx_esp_ldap_finish(op, dc, NGX_ESP_AUTH_OK);
        return;
    }

    if (op->upn.len == 0 && op->account.len == 0) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, lr->log, 0,
                       "esp ldap: \"%V\" is no name of this domain",
                       ngx_esp_log_escape(lr->pool, &lr->logon_name));

        ngx_esp_ldap_op_release(op);
        ngx_esp_ldap_finish(op, dc,
                            (op->kind != NGX_ESP_LDAP_OP_LOGIN || op->ngroups)
                            ? NGX_ESP_AUTH_NOT_PERMITTED : NGX_ESP_AUTH_OK);
        return;
    }

    /* a login's searches are the service account's when there is one */

    if (op->step == NGX_ESP_LDAP_USER_BIND
        && op->kind == NGX_ESP_LDAP_OP_LOGIN && d->bind_dn.len)
    {
        op->step = NGX_ESP_LDAP_SERVICE_BIND;

    } else {
        op->step = NGX_ESP_LDAP_FIND_USER;
    }

    ngx_esp_ldap_send_step(op);
}

static void
ngx_esp_ldap_next_dc(ngx_esp_ldap_op_t *op)
{
    time_t                  now;
    ngx_uint_t              i, all;
    ngx_esp_ldap_dc_t      *dc;
    ngx_esp_ldap_worker_t  *lw;

    lw = op->lw;
    now = ngx_time();

    /*
     * A modify that went out may have been applied: it is not sent again
     * elsewhere, the caller decides.
     */

    if (op->sent) {
        ngx_esp_ldap_finish(op, NULL, NGX_ESP_AUTH_UNAVAILABLE);
        return;
    }

    /* a new connection has no identity: the searches bind again first */

    if (op->step > NGX_ESP_LDAP_USER_BIND) {
        op->step = ngx_esp_ldap_first_step(op);
        ngx_str_null(&op->lr->user_dn);
        op->lr->values = NULL;
    }

    /*
     * A DC that is down is skipped until its retry time, when one login
     * probes it.  While every DC is down, a DC that nobody is probing and
     * that failed at least a second ago is probed by this login: a short
     * outage of all DCs ends within a second of their return, and dead
     * DCs see at most one attempt a second from each worker, while the
     * other logins fail at once.
     */

    all = 1;

    for (i = 0; i < lw->ndcs; i++) {
        if (lw->dcs[i].down_until <= now) {
            all = 0;
            break;
        }
    }

    while (op->next < lw->ndcs) {
        dc = &lw->dcs[op->next++];

        if (dc->down_until) {

            if (dc->down_until > now
                && !(all && !dc->probe
                     && now >= dc->down_until - lw->domain->retry_down + 1))
            {
                continue;
            }

            /* this login probes it, the others skip it while it runs */

            dc->down_until = now + (time_t) (lw->domain->timeout / 1000) + 1;
            dc->probe = 1;
        }

        op->retried = 0;

        ngx_esp_ldap_use_dc(op, dc, 0);
        return;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, op->lr->log, 0,
                   "esp ldap: no domain controller left");

    ngx_esp_ldap_finish(op, NULL, NGX_ESP_AUTH_UNAVAILABLE);
}


static void
ngx_esp_ldap_use_dc(ngx_esp_ldap_op_t *op, ngx_esp_ldap_dc_t *dc,
    ngx_uint_t fresh)
{
    ngx_esp_ldap_conn_t  *conn;

    op->dc = dc;

    conn = ngx_esp_ldap_get(dc, fresh);

    if (conn) {
        conn->op = op;
        op->conn = conn;

        if (conn->state == NGX_ESP_LDAP_BUSY) {
            ngx_esp_ldap_send_step(op);
            return;
        }

        ngx_esp_ldap_connect(conn);
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, op->lr->log, 0,
                   "esp ldap: all connections to %V are busy, waiting",
                   &dc->conf->name);

    ngx_queue_insert_tail(&dc->waiting, &op->queue);
    op->waiting = 1;

    ngx_add_timer(&op->wait, dc->lw->domain->timeout);
}


static void
ngx_esp_ldap_wait_handler(ngx_event_t *ev)
{
    ngx_esp_ldap_op_t  *op;

    op = ev->data;

    ngx_queue_remove(&op->queue);
    op->waiting = 0;

    ngx_log_error(NGX_LOG_WARN, op->lr->log, 0,
                  "esp: no connection to domain controller %V was free "
                  "within %Mms (ldap_connections %i)",
                  &op->dc->conf->name, op->lw->domain->timeout,
                  op->lw->domain->pool_size);

    ngx_esp_ldap_next_dc(op);
}


static void
ngx_esp_ldap_send_step(ngx_esp_ldap_op_t *op)
{
    ber_tag_t             expect;
    ngx_int_t             rc;
    ngx_str_t            *dn;
    ngx_connection_t     *c;
    ngx_esp_domain_t     *d;
    ngx_esp_ldap_req_t   *lr;
    ngx_esp_ldap_conn_t  *conn;

    lr = op->lr;
    conn = op->conn;
    d = op->lw->domain;
    c = conn->peer.connection;

    /* never a password over a connection that is not TLS */

    if (c->ssl == NULL || !c->ssl->handshaked) {
        ngx_log_error(NGX_LOG_ALERT, &conn->log, 0,
                      "esp: refusing to bind over a connection without TLS");
        ngx_esp_ldap_conn_failed(conn, NGX_ESP_LDAP_FAIL_INTERNAL);
        return;
    }

    switch (op->step) {

    case NGX_ESP_LDAP_USER_BIND:
        rc = ngx_esp_ldap_encode_bind(&conn->out, &lr->logon_name,
                                      &lr->password);
        expect = LDAP_RES_BIND;

        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, lr->log, 0,
                       "esp ldap: bind \"%V\" on %V msgid %d",
                       ngx_esp_log_escape(lr->pool, &lr->logon_name),
                       &conn->dc->conf->name, conn->out.msgid);
        break;

    case NGX_ESP_LDAP_SERVICE_BIND:
        rc = ngx_esp_ldap_encode_bind(&conn->out, &d->bind_dn,
                                      &d->bind_password);
        expect = LDAP_RES_BIND;

        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, lr->log, 0,
                       "esp ldap: service bind \"%V\" on %V msgid %d",
                       &d->bind_dn, &conn->dc->conf->name, conn->out.msgid);
        break;

    case NGX_ESP_LDAP_FIND_USER:
        op->nupn = 0;
        op->naccount = 0;

        rc = ngx_esp_ldap_encode_search(&conn->out, &d->base_dn, d->timeout,
                                        &op->upn, &op->account, NULL, NULL);
        expect = LDAP_RES_SEARCH_RESULT;

        ngx_log_debug4(NGX_LOG_DEBUG_HTTP, lr->log, 0,
                       "esp ldap: search \"%V\" for upn \"%V\" or account "
                       "\"%V\" msgid %d",
                       &d->base_dn, ngx_esp_log_escape(lr->pool, &op->upn),
                       ngx_esp_log_escape(lr->pool, &op->account),
                       conn->out.msgid);
        break;

    case NGX_ESP_LDAP_READ_ATTRS:
        op->found = 0;

        rc = ngx_esp_ldap_encode_read(&conn->out, op->target, d->timeout,
                                      lr->attrs);
        expect = LDAP_RES_SEARCH_RESULT;

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, lr->log, 0,
                       "esp ldap: read \"%V\" msgid %d",
                       ngx_esp_log_escape(lr->pool, op->target),
                       conn->out.msgid);
        break;

    case NGX_ESP_LDAP_MODIFY:
        dn = op->target;

        rc = ngx_esp_ldap_encode_modify(&conn->out, dn, lr->changes);
        expect = LDAP_RES_MODIFY;
        op->sent = 1;

        ngx_log_debug4(NGX_LOG_DEBUG_HTTP, lr->log, 0,
                       "esp ldap: modify \"%V\", %ui changes, as %s "
                       "msgid %d",
                       ngx_esp_log_escape(lr->pool, dn), lr->changes->nelts,
                       lr->service ? "the service account" : "the user",
                       conn->out.msgid);
        break;

    default: /* NGX_ESP_LDAP_CHECK_GROUPS */
        op->found = 0;

        rc = ngx_esp_ldap_encode_search(&conn->out, &lr->user_dn, d->timeout,
                                        NULL, NULL, lr->groups,
                                        op->read ? lr->attrs : NULL);
        expect = LDAP_RES_SEARCH_RESULT;

        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, lr->log, 0,
                       "esp ldap: check %ui groups of \"%V\" msgid %d",
                       op->ngroups, ngx_esp_log_escape(lr->pool, &lr->user_dn),
                       conn->out.msgid);
        break;
    }

    if (rc != NGX_OK) {
        ngx_esp_ldap_conn_failed(conn, NGX_ESP_LDAP_FAIL_INTERNAL);
        return;
    }

    ngx_esp_ldap_send(conn, expect);
}


static ngx_int_t
ngx_esp_ldap_op_answer(ngx_esp_ldap_op_t *op, ngx_esp_ldap_msg_t *m)
{
    u_char                  text[256];
    size_t                  n;
    ngx_str_t              *dn;
    ngx_uint_t              code;
    ngx_esp_ldap_dc_t      *dc;
    ngx_esp_ldap_req_t     *lr;
    ngx_esp_ldap_conn_t    *conn;

    lr = op->lr;
    conn = op->conn;
    dc = conn->dc;

    /*
     * "m" points into the connection's buffer, which a release may hand
     * to another op that may fail and free it: use "m" before a release
     */

    if (m->type == LDAP_RES_SEARCH_ENTRY) {

        if (op->step == NGX_ESP_LDAP_CHECK_GROUPS
            || op->step == NGX_ESP_LDAP_READ_ATTRS)
        {
            op->found = 1;

            if (!op->read) {
                return NGX_OK;
            }

            if (lr->values == NULL) {
                lr->values = ngx_array_create(lr->pool, lr->attrs->nelts,
                                              sizeof(ngx_esp_ldap_attr_t));
                if (lr->values == NULL) {
                    return NGX_ERROR;
                }
            }

            return ngx_esp_ldap_entry_values(m, lr->attrs, lr->values,
                                             lr->pool);
        }

        /* NGX_ESP_LDAP_FIND_USER */

        if (op->upn.len && m->upn.bv_len == op->upn.len
            && ngx_strncasecmp((u_char *) m->upn.bv_val, op->upn.data,
                               op->upn.len)
               == 0)
        {
            dn = (op->nupn++ == 0) ? &op->upn_dn : NULL;

        } else {
            dn = (op->naccount++ == 0) ? &op->account_dn : NULL;
        }

        if (dn) {
            dn->data = ngx_pnalloc(lr->pool, m->dn.bv_len);
            if (dn->data == NULL) {
                return NGX_ERROR;
            }

            dn->len = m->dn.bv_len;
            ngx_memcpy(dn->data, m->dn.bv_val, dn->len);
        }

        return NGX_OK;
    }

    switch (op->step) {

    case NGX_ESP_LDAP_USER_BIND:

        dc->stats->last_latency = ngx_current_msec - conn->sent;

        if (m->code == LDAP_SUCCESS) {
            dc->stats->binds_ok++;
            op->user_bound = 1;

            ngx_esp_ldap_after_bind(op, dc);
            return NGX_DONE;
        }

        if (m->code == LDAP_INVALID_CREDENTIALS) {
            dc->stats->binds_failed++;

            code = ngx_esp_ldap_ad_code(&m->diag);
            lr->ad_code = code;

            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, lr->log, 0,
                           "esp ldap: invalid credentials, AD data %xi, "
                           "from %V", code, &dc->conf->name);

            ngx_esp_ldap_op_release(op);
            ngx_esp_ldap_finish(op, dc, ngx_esp_ldap_ad_result(code));
            return NGX_DONE;
        }

        break;

    case NGX_ESP_LDAP_SERVICE_BIND:

        if (m->code == LDAP_SUCCESS) {

            if (op->user_bound) {
                op->step = NGX_ESP_LDAP_FIND_USER;
                ngx_esp_ldap_send_step(op);

            } else {
                ngx_esp_ldap_after_bind(op, dc);
            }

            return NGX_DONE;
        }

        if (m->code == LDAP_INVALID_CREDENTIALS) {

            /* a configuration problem: every DC would say the same */

            code = ngx_esp_ldap_ad_code(&m->diag);

            if (code) {
                ngx_log_error(NGX_LOG_ERR, lr->log, 0,
                              "esp: the service account %V was refused by "
                              "%V: AD data %xi (%s)",
                              &op->lw->domain->bind_dn, &dc->conf->name,
                              code, ngx_esp_ldap_ad_text(code));

            } else {
                n = ngx_esp_ldap_printable(text, sizeof(text), &m->diag);

                ngx_log_error(NGX_LOG_ERR, lr->log, 0,
                              "esp: the service account %V was refused by "
                              "%V: invalid credentials \"%*s\"",
                              &op->lw->domain->bind_dn, &dc->conf->name,
                              n, text);
            }

            ngx_esp_ldap_op_release(op);
            ngx_esp_ldap_finish(op, dc, NGX_ESP_AUTH_SERVICE_ACCOUNT);
            return NGX_DONE;
        }

        break;

    case NGX_ESP_LDAP_FIND_USER:

        if (m->code != LDAP_SUCCESS && m->code != LDAP_SIZELIMIT_EXCEEDED) {
            break;
        }

        /* an explicit UPN wins, as it does in AD's own name resolution */

        if (op->nupn == 1) {
            lr->user_dn = op->upn_dn;

        } else if (op->nupn == 0 && op->naccount == 1) {
            lr->user_dn = op->account_dn;

        } else {
            if (op->nupn + op->naccount) {
                ngx_log_error(NGX_LOG_WARN, lr->log, 0,
                              "esp: \"%V\" names more than one user in "
                              "\"%V\": not permitted",
                              ngx_esp_log_escape(lr->pool, &lr->logon_name),
                              &op->lw->domain->base_dn);
            }

            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, lr->log, 0,
                           "esp ldap: \"%V\" not found in the base DN",
                           ngx_esp_log_escape(lr->pool, &lr->logon_name));

            ngx_esp_ldap_op_release(op);
            ngx_esp_ldap_finish(op, dc,
                                (op->kind != NGX_ESP_LDAP_OP_LOGIN
                                 || op->ngroups)
                                ? NGX_ESP_AUTH_NOT_PERMITTED
                                : NGX_ESP_AUTH_OK);
            return NGX_DONE;
        }

        op->step = (op->kind == NGX_ESP_LDAP_OP_MODIFY) ? NGX_ESP_LDAP_MODIFY
                   : op->ngroups ? NGX_ESP_LDAP_CHECK_GROUPS
                   : NGX_ESP_LDAP_READ_ATTRS;
        ngx_esp_ldap_send_step(op);
        return NGX_DONE;

    case NGX_ESP_LDAP_READ_ATTRS:

        /* noSuchObject: the user was deleted since it was found */

        if (m->code == LDAP_SUCCESS || m->code == LDAP_SIZELIMIT_EXCEEDED
            || m->code == LDAP_NO_SUCH_OBJECT)
        {
            ngx_esp_ldap_op_release(op);
            ngx_esp_ldap_finish(op, dc, NGX_ESP_AUTH_OK);
            return NGX_DONE;
        }

        break;

    case NGX_ESP_LDAP_MODIFY:
        return ngx_esp_ldap_modify_answer(op, m);

    default: /* NGX_ESP_LDAP_CHECK_GROUPS */

        if (m->code == LDAP_SUCCESS || m->code == LDAP_SIZELIMIT_EXCEEDED
            || m->code == LDAP_NO_SUCH_OBJECT)
        {
            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, lr->log, 0,
                           "esp ldap: \"%V\" is %sin a permitted group",
                           ngx_esp_log_escape(lr->pool, &lr->user_dn),
                           op->found ? "" : "not ");

            ngx_esp_ldap_op_release(op);
            ngx_esp_ldap_finish(op, dc, op->found ? NGX_ESP_AUTH_OK
                                                  : NGX_ESP_AUTH_NOT_PERMITTED);
            return NGX_DONE;
        }

        break;
    }

    /* any other answer: this DC cannot do it now, the next one may */

    ngx_esp_ldap_log_answer(op, m);

    dc->stats->errors++;

    if (m->code == LDAP_BUSY || m->code == LDAP_UNAVAILABLE) {
        ngx_esp_ldap_close(conn, 1);
        op->conn = NULL;
        conn->op = NULL;

        ngx_esp_ldap_mark_down(dc, (u_char *) "busy or unavailable",
                               sizeof("busy or unavailable") - 1);

    } else {
        ngx_esp_ldap_op_release(op);
    }

    ngx_esp_ldap_next_dc(op);

    return NGX_DONE;
}


/*
 * The modify was answered: whatever it says is the caller's, except
 * busy or unavailable (not done, and not tried elsewhere: op->sent)
 */

static ngx_int_t
ngx_esp_ldap_modify_answer(ngx_esp_ldap_op_t *op, ngx_esp_ldap_msg_t *m)
{
    ngx_esp_ldap_dc_t    *dc;
    ngx_esp_ldap_req_t   *lr;
    ngx_esp_ldap_conn_t  *conn;

    lr = op->lr;
    conn = op->conn;
    dc = conn->dc;

    if (m->code == LDAP_BUSY || m->code == LDAP_UNAVAILABLE) {
        ngx_esp_ldap_log_answer(op, m);

        dc->stats->errors++;

        ngx_esp_ldap_close(conn, 1);
        op->conn = NULL;
        conn->op = NULL;

        ngx_esp_ldap_finish(op, dc, NGX_ESP_AUTH_UNAVAILABLE);
        return NGX_DONE;
    }

    lr->ldap_code = m->code;
    lr->ad_code = ngx_esp_ldap_error_code((u_char *) m->diag.bv_val,
                                          m->diag.bv_len);

    if (lr->ad_code == 0) {
        lr->ad_code = ngx_esp_ldap_ad_code(&m->diag);
    }

    if (m->diag.bv_len) {
        lr->diag.data = ngx_pnalloc(lr->pool, m->diag.bv_len);

        if (lr->diag.data) {
            lr->diag.len = m->diag.bv_len;
            ngx_memcpy(lr->diag.data, m->diag.bv_val, m->diag.bv_len);
        }
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, lr->log, 0,
                   "esp ldap: modify answered %d, AD data %xi, by %V",
                   m->code, lr->ad_code, &dc->conf->name);

    ngx_esp_ldap_op_release(op);
    ngx_esp_ldap_finish(op, dc, NGX_ESP_AUTH_OK);

    return NGX_DONE;
}


static void
ngx_esp_ldap_log_answer(ngx_esp_ldap_op_t *op, ngx_esp_ldap_msg_t *m)
{
    u_char               text[256];
    size_t               n;
    ngx_str_t           *name;
    ngx_esp_ldap_req_t  *lr;

    lr = op->lr;
    name = &op->conn->dc->conf->name;
    n = ngx_esp_ldap_printable(text, sizeof(text), &m->diag);

    switch (op->step) {

    case NGX_ESP_LDAP_USER_BIND:
        ngx_log_error(NGX_LOG_ERR, lr->log, 0,
                      "esp: domain controller %V answered the bind of "
                      "\"%V\" with %d (%s) \"%*s\"",
                      name, ngx_esp_log_escape(lr->pool, &lr->logon_name),
                      m->code,
                      ldap_err2string(m->code), n, text);
        break;

    case NGX_ESP_LDAP_SERVICE_BIND:
        ngx_log_error(NGX_LOG_ERR, lr->log, 0,
                      "esp: domain controller %V answered the bind of the "
                      "service account %V with %d (%s) \"%*s\"",
                      name, &op->lw->domain->bind_dn, m->code,
                      ldap_err2string(m->code), n, text);
        break;

    case NGX_ESP_LDAP_FIND_USER:
        ngx_log_error(NGX_LOG_ERR, lr->log, 0,
                      "esp: domain controller %V answered the search for "
                      "\"%V\" in \"%V\" with %d (%s) \"%*s\"",
                      name, ngx_esp_log_escape(lr->pool, &lr->logon_name),
                      &op->lw->domain->base_dn,
                      m->code, ldap_err2string(m->code), n, text);
        break;

    case NGX_ESP_LDAP_READ_ATTRS:
        ngx_log_error(NGX_LOG_ERR, lr->log, 0,
                      "esp: domain controller %V answered the read of "
                      "\"%V\" with %d (%s) \"%*s\"",
                      name, ngx_esp_log_escape(lr->pool, op->target),
                      m->code,
                      ldap_err2string(m->code), n, text);
        break;

    case NGX_ESP_LDAP_MODIFY:
        ngx_log_error(NGX_LOG_ERR, lr->log, 0,
                      "esp: domain controller %V answered the modify of "
                      "\"%V\" with %d (%s) \"%*s\"",
                      name, ngx_esp_log_escape(lr->pool, op->target),
                      m->code,
                      ldap_err2string(m->code), n, text);
        break;

    default:
        ngx_log_error(NGX_LOG_ERR, lr->log, 0,
                      "esp: domain controller %V answered the group check "
                      "of \"%V\" with %d (%s) \"%*s\"",
                      name, ngx_esp_log_escape(lr->pool, &lr->user_dn),
                      m->code,
                      ldap_err2string(m->code), n, text);
        break;
    }
}


/* the op is done with its connection, the pool has it back */

static void
ngx_esp_ldap_op_release(ngx_esp_ldap_op_t *op)
{
    ngx_esp_ldap_conn_t  *conn;

    conn = op->conn;

    op->conn = NULL;
    conn->op = NULL;

    ngx_esp_ldap_release(conn);
}


static void
ngx_esp_ldap_finish(ngx_esp_ldap_op_t *op, ngx_esp_ldap_dc_t *dc,
    ngx_esp_auth_result_e result)
{
    ngx_esp_ldap_req_t  *lr;

    if (op->finished) {
        return;
    }

    lr = op->lr;

    op->finished = 1;
    lr->result = result;

    if (dc) {
        lr->dc.data = ngx_pstrdup(lr->pool, &dc->conf->name);
        lr->dc.len = lr->dc.data ? dc->conf->name.len : 0;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, lr->log, 0,
                   "esp ldap: result %s", ngx_esp_auth_result_name(result));

    /* the caller hears of it from the event loop, never from its own call */

    ngx_post_event(&op->done, &ngx_posted_events);
}


static void
ngx_esp_ldap_done_handler(ngx_event_t *ev)
{
    ngx_esp_ldap_op_t   *op;
    ngx_esp_ldap_req_t  *lr;

    op = ev->data;
    lr = op->lr;

    lr->op = NULL;

    lr->handler(lr);
}


/* a connection failed: close it, and try again elsewhere */

static void
ngx_esp_ldap_conn_failed(ngx_esp_ldap_conn_t *conn, ngx_uint_t why)
{
    u_char              *p, reason[64];
    ngx_uint_t           retry;
    ngx_queue_t         *q;
    ngx_esp_ldap_op_t   *op, *waiter;
    ngx_esp_ldap_dc_t   *dc;

    dc = conn->dc;
    op = conn->op;

    if (op) {
        op->conn = NULL;
        conn->op = NULL;
    }

    /* a pooled connection found dead gets one fresh try on the same DC */

    retry = (op && conn->reused && !op->retried
             && why == NGX_ESP_LDAP_FAIL_CLOSED);

    if (why == NGX_ESP_LDAP_FAIL_TIMEOUT) {
        dc->stats->timeouts++;

        if (conn->peer.connection) {
            conn->peer.connection->timedout = 1;
        }
    }

    if (!retry) {
        dc->stats->errors++;
    }

    ngx_esp_ldap_close(conn, 0);

    if (retry) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, op->lr->log, 0,
                       "esp ldap: pooled connection to %V was dead, "
                       "retrying on a fresh one", &dc->conf->name);

        op->retried = 1;
        ngx_esp_ldap_use_dc(op, dc, 1);
        return;
    }

    if (why != NGX_ESP_LDAP_FAIL_INTERNAL) {

        switch (why) {
        case NGX_ESP_LDAP_FAIL_CONNECT:
            p = ngx_cpymem(reason, "could not connect",
                           sizeof("could not connect") - 1);
            break;
        case NGX_ESP_LDAP_FAIL_TLS:
            p = ngx_cpymem(reason, "TLS handshake failed",
                           sizeof("TLS handshake failed") - 1);
            break;
        case NGX_ESP_LDAP_FAIL_VERIFY:
            p = ngx_cpymem(reason, "certificate does not verify",
                           sizeof("certificate does not verify") - 1);
            break;
        case NGX_ESP_LDAP_FAIL_TIMEOUT:
            p = ngx_snprintf(reason, sizeof(reason), "timed out after %Mms",
                             dc->lw->domain->timeout);
            break;
        case NGX_ESP_LDAP_FAIL_CLOSED:
            p = ngx_cpymem(reason, "closed the connection",
                           sizeof("closed the connection") - 1);
            break;
        case NGX_ESP_LDAP_FAIL_PROTOCOL:
            p = ngx_cpymem(reason, "protocol error",
                           sizeof("protocol error") - 1);
            break;
        default: /* NGX_ESP_LDAP_FAIL_REFUSED */
            p = ngx_cpymem(reason, "refused StartTLS",
                           sizeof("refused StartTLS") - 1);
            break;
        }

        ngx_esp_ldap_mark_down(dc, reason, p - reason);
    }

    if (op) {
        ngx_esp_ldap_next_dc(op);
    }

    /* the slot is free again: an op waiting for this DC may have it */

    if (!ngx_queue_empty(&dc->waiting) && dc->down_until <= ngx_time()) {
        q = ngx_queue_head(&dc->waiting);
        ngx_queue_remove(q);

        waiter = ngx_queue_data(q, ngx_esp_ldap_op_t, queue);
        waiter->waiting = 0;

        if (waiter->wait.timer_set) {
            ngx_del_timer(&waiter->wait);
        }

        ngx_esp_ldap_use_dc(waiter, dc, 0);
    }
}


/* a healthy connection is free: the first op waiting for its DC has it */

static ngx_int_t
ngx_esp_ldap_hand_over(ngx_esp_ldap_conn_t *conn)
{
    ngx_queue_t          *q;
    ngx_esp_ldap_op_t    *op;
    ngx_esp_ldap_dc_t    *dc;

    dc = conn->dc;

    if (ngx_queue_empty(&dc->waiting)) {
        return NGX_DECLINED;
    }

    q = ngx_queue_head(&dc->waiting);
    ngx_queue_remove(q);

    op = ngx_queue_data(q, ngx_esp_ldap_op_t, queue);
    op->waiting = 0;

    if (op->wait.timer_set) {
        ngx_del_timer(&op->wait);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, op->lr->log, 0,
                   "esp ldap: connection to %V handed over",
                   &dc->conf->name);

    conn->state = NGX_ESP_LDAP_BUSY;
    conn->reused = 1;
    conn->op = op;
    op->conn = conn;

    ngx_esp_ldap_send_step(op);

    return NGX_OK;
}


static void
ngx_esp_ldap_mark_down(ngx_esp_ldap_dc_t *dc, u_char *reason, size_t len)
{
    ngx_uint_t            i;
    ngx_queue_t          *q;
    ngx_esp_ldap_op_t    *op;
    ngx_esp_domain_t     *d;

    d = dc->lw->domain;

    /* said once per change, or per failed probe; not per connection */

    if (!dc->down || dc->probe) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "esp: domain controller %V of domain %V is %s: %*s; "
                      "next try in %Ts",
                      &dc->conf->name, &d->name,
                      dc->down ? "still down" : "down", len, reason,
                      d->retry_down);
    }

    dc->down = 1;
    dc->probe = 0;
    dc->down_until = ngx_time() + d->retry_down;

    /* its idle connections are no better */

    for (i = 0; i < dc->nconns; i++) {
        if (dc->conns[i].state == NGX_ESP_LDAP_IDLE) {
            ngx_esp_ldap_close(&dc->conns[i], 0);
        }
    }

    /* and whoever waits for one of its connections moves on */

    while (!ngx_queue_empty(&dc->waiting)) {
        q = ngx_queue_head(&dc->waiting);
        ngx_queue_remove(q);

        op = ngx_queue_data(q, ngx_esp_ldap_op_t, queue);
        op->waiting = 0;

        if (op->wait.timer_set) {
            ngx_del_timer(&op->wait);
        }

        ngx_esp_ldap_next_dc(op);
    }
}


static void
ngx_esp_ldap_mark_up(ngx_esp_ldap_dc_t *dc)
{
    if (dc->down) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "esp: domain controller %V of domain %V is up again",
                      &dc->conf->name, &dc->lw->domain->name);
    }

    dc->down = 0;
    dc->probe = 0;
    dc->down_until = 0;
}
