
/*
 * Copyright (C) ngx_exchange_esp authors
 */


/*
 * The directory client: the user's simple bind against Active Directory
 * and, for permitted groups, a service account bind and two searches, over
 * nginx's own event-driven connections (LDAPS, or StartTLS on ldap://),
 * never blocking the worker.
 *
 * Per worker and domain controller (DC) there is a small array of
 * connection slots (ldap_connections).  A login ("op") takes an idle
 * connected slot, or connects a free one, or waits in the DC's queue.
 * Every exchange on a slot runs under one timer (ldap_timeout): a DC that
 * does not connect, handshake or answer in time is marked down for
 * ldap_down_retry seconds, and the op moves on to the next DC.  When that
 * time is over, one op probes the DC while the others still skip it.
 *
 * The op's steps: USER_BIND; then, with groups, SERVICE_BIND, FIND_USER
 * (who did the bind authenticate: the DN behind the UPN or the
 * sAMAccountName, as AD resolves it) and CHECK_GROUPS (is that DN in a
 * permitted group, nested to any depth: LDAP_MATCHING_RULE_IN_CHAIN).
 *
 * LDAP messages are framed here (BER length, bounded size) and decoded
 * with liblber; requests are encoded with liblber, except the bind
 * request, encoded by hand into a buffer of ours so that the password it
 * carries can be wiped as soon as it is sent (liblber may reallocate and
 * free its buffers unwiped).  No libldap I/O is used.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_http.h>

#include <openssl/x509v3.h>

#include <lber.h>
#include <ldap.h>

#include "ngx_esp_ldap.h"


#define NGX_ESP_LDAP_MAX_MESSAGE      (1024 * 1024)
#define NGX_ESP_LDAP_MAX_INPUT        256
#define NGX_ESP_LDAP_BUFFER_SIZE      4096
#define NGX_ESP_LDAP_VERIFY_DEPTH     10

/* well below AD's MaxConnIdleTime (900 s) */
#define NGX_ESP_LDAP_IDLE_TIMEOUT     60000

#define NGX_ESP_LDAP_IN_CHAIN         "1.2.840.113556.1.4.1941"

/* slot states */
#define NGX_ESP_LDAP_FREE             0
#define NGX_ESP_LDAP_CONNECTING       1
#define NGX_ESP_LDAP_STARTTLS         2
#define NGX_ESP_LDAP_HANDSHAKE        3
#define NGX_ESP_LDAP_IDLE             4
#define NGX_ESP_LDAP_BUSY             5

/* op steps */
#define NGX_ESP_LDAP_USER_BIND        0
#define NGX_ESP_LDAP_SERVICE_BIND     1
#define NGX_ESP_LDAP_FIND_USER        2
#define NGX_ESP_LDAP_CHECK_GROUPS     3

/* why a connection failed */
#define NGX_ESP_LDAP_FAIL_CONNECT     0
#define NGX_ESP_LDAP_FAIL_TLS         1
#define NGX_ESP_LDAP_FAIL_VERIFY      2
#define NGX_ESP_LDAP_FAIL_TIMEOUT     3
#define NGX_ESP_LDAP_FAIL_CLOSED      4
#define NGX_ESP_LDAP_FAIL_PROTOCOL    5
#define NGX_ESP_LDAP_FAIL_REFUSED     6
#define NGX_ESP_LDAP_FAIL_INTERNAL    7


typedef struct ngx_esp_ldap_worker_s  ngx_esp_ldap_worker_t;
typedef struct ngx_esp_ldap_dc_s      ngx_esp_ldap_dc_t;
typedef struct ngx_esp_ldap_conn_s    ngx_esp_ldap_conn_t;
typedef struct ngx_esp_ldap_op_s      ngx_esp_ldap_op_t;


/* one LDAPMessage as received; strings point into the input buffer */
typedef struct {
    ber_int_t                  msgid;
    ber_tag_t                  type;
    ber_int_t                  code;
    struct berval              matched;
    struct berval              diag;
    struct berval              dn;
    struct berval              upn;         /* its userPrincipalName */
} ngx_esp_ldap_msg_t;


struct ngx_esp_ldap_conn_s {
    ngx_peer_connection_t      peer;
    ngx_esp_ldap_dc_t         *dc;
    ngx_esp_ldap_op_t         *op;          /* NULL: idle or orphaned */

    ngx_event_t                timer;       /* exchange or idle timeout */
    ngx_log_t                  log;

    ngx_uint_t                 state;
    ber_int_t                  msgid;       /* of the last request */
    ber_int_t                  expect;      /* awaited answer, 0: none */
    ber_tag_t                  expect_type;
    ngx_msec_t                 sent;

    u_char                    *out;         /* request being sent */
    size_t                     out_len;
    size_t                     out_sent;

    u_char                    *in;          /* answers being received */
    size_t                     in_size;
    size_t                     in_pos;
    size_t                     in_len;

    /* an abandoned op's user bind under way: who hears its answer */
    ngx_esp_ldap_orphan_pt     orphan;
    void                      *orphan_data;

    unsigned                   secret:1;    /* "out" holds a password */
    unsigned                   reused:1;    /* from the idle pool, silent */
};


struct ngx_esp_ldap_dc_s {
    ngx_esp_ldap_server_conf_t  *conf;
    ngx_esp_ldap_worker_t       *lw;
    ngx_esp_ldap_dc_stats_t     *stats;

    ngx_str_t                    host;      /* for the certificate check */
    ngx_uint_t                   ip;        /* the host is an address */

    ngx_esp_ldap_conn_t         *conns;
    ngx_uint_t                   nconns;
    ngx_queue_t                  waiting;   /* ops waiting for a slot */

    time_t                       down_until;
    unsigned                     down:1;    /* said so in the log */
    unsigned                     probe:1;   /* an op checks if it is back */
};


struct ngx_esp_ldap_worker_s {
    ngx_esp_domain_t          *domain;
    ngx_esp_ldap_dc_t         *dcs;
    ngx_uint_t                 ndcs;
    ngx_esp_ldap_dc_stats_t   *stats;
};


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

    /* who was bound: by this UPN, or else this sAMAccountName */
    ngx_str_t                  upn;
    ngx_str_t                  account;

    ngx_uint_t                 nupn;        /* entries found by UPN */
    ngx_uint_t                 naccount;    /* by sAMAccountName only */
    ngx_str_t                  upn_dn;
    ngx_str_t                  account_dn;

    unsigned                   retried:1;   /* on a fresh connection */
    unsigned                   waiting:1;
    unsigned                   found:1;
    unsigned                   finished:1;
};


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
static void ngx_esp_ldap_finish(ngx_esp_ldap_op_t *op, ngx_esp_ldap_dc_t *dc,
    ngx_esp_auth_result_e result);
static void ngx_esp_ldap_done_handler(ngx_event_t *ev);

static void ngx_esp_ldap_connect(ngx_esp_ldap_conn_t *conn);
static void ngx_esp_ldap_connect_handler(ngx_event_t *ev);
static void ngx_esp_ldap_connected(ngx_esp_ldap_conn_t *conn);
static void ngx_esp_ldap_ssl_start(ngx_esp_ldap_conn_t *conn);
static void ngx_esp_ldap_ssl_handshake_handler(ngx_connection_t *c);
static ngx_int_t ngx_esp_ldap_ssl_verify(ngx_esp_ldap_conn_t *conn);
static void ngx_esp_ldap_ready(ngx_esp_ldap_conn_t *conn);
static void ngx_esp_ldap_send(ngx_esp_ldap_conn_t *conn, ber_tag_t expect);
static void ngx_esp_ldap_write_handler(ngx_event_t *wev);
static void ngx_esp_ldap_read_handler(ngx_event_t *rev);
static void ngx_esp_ldap_idle_read(ngx_esp_ldap_conn_t *conn);
static ngx_int_t ngx_esp_ldap_message(ngx_esp_ldap_conn_t *conn,
    ngx_esp_ldap_msg_t *m);
static void ngx_esp_ldap_timer_handler(ngx_event_t *ev);
static void ngx_esp_ldap_release(ngx_esp_ldap_conn_t *conn);
static void ngx_esp_ldap_fail(ngx_esp_ldap_conn_t *conn, ngx_uint_t why);
static void ngx_esp_ldap_close(ngx_esp_ldap_conn_t *conn, ngx_uint_t clean);
static void ngx_esp_ldap_close_connection(ngx_connection_t *c);
static void ngx_esp_ldap_orphan_done(ngx_esp_ldap_conn_t *conn,
    ngx_esp_auth_result_e result);
static void ngx_esp_ldap_dummy_handler(ngx_event_t *ev);
static void ngx_esp_ldap_mark_down(ngx_esp_ldap_dc_t *dc, u_char *reason,
    size_t len);
static void ngx_esp_ldap_mark_up(ngx_esp_ldap_dc_t *dc);
static u_char *ngx_esp_ldap_log_error(ngx_log_t *log, u_char *buf,
    size_t len);

static ngx_int_t ngx_esp_ldap_frame(u_char *p, size_t n, size_t *size);
static ngx_int_t ngx_esp_ldap_parse(u_char *p, size_t n,
    ngx_esp_ldap_msg_t *m);
static ber_int_t ngx_esp_ldap_next_msgid(ngx_esp_ldap_conn_t *conn);
static ngx_int_t ngx_esp_ldap_encode_bind(ngx_esp_ldap_conn_t *conn,
    ngx_str_t *dn, ngx_str_t *password);
static ngx_int_t ngx_esp_ldap_encode_search(ngx_esp_ldap_conn_t *conn,
    ngx_esp_ldap_op_t *op);
static ngx_int_t ngx_esp_ldap_encode_starttls(ngx_esp_ldap_conn_t *conn);
static ngx_int_t ngx_esp_ldap_flatten(ngx_esp_ldap_conn_t *conn,
    BerElement *ber);
static void ngx_esp_ldap_free_out(ngx_esp_ldap_conn_t *conn);
static size_t ngx_esp_ldap_printable(u_char *dst, size_t size,
    struct berval *src);
static u_char *ngx_esp_ldap_put_length(u_char *p, size_t len);
static size_t ngx_esp_ldap_length_size(size_t len);
static ngx_uint_t ngx_esp_ldap_ad_code(struct berval *diag);
static ngx_esp_auth_result_e ngx_esp_ldap_ad_result(ngx_uint_t code);
static const char *ngx_esp_ldap_ad_text(ngx_uint_t code);


ngx_int_t
ngx_esp_ldap_init_domain(ngx_conf_t *cf, ngx_esp_domain_t *d)
{
    ngx_uint_t                   i;
    ngx_pool_cleanup_t          *cln;
    ngx_esp_ldap_server_conf_t  *s;

    if (d->ssl) {
        return NGX_OK;
    }

    if (d->servers.nelts == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "esp_sso_domain \"%V\" in %s:%ui has no domain "
                      "controller (\"ldap_server\")",
                      &d->name, d->file, d->line);
        return NGX_ERROR;
    }

    s = d->servers.elts;

    for (i = 0; i < d->servers.nelts; i++) {

        if (!s[i].ldaps && !s[i].starttls) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "esp_sso_domain \"%V\" in %s:%ui: \"%V\" would "
                          "send passwords in clear text: use ldaps:// or "
                          "\"starttls\"", &d->name, d->file, d->line,
                          &s[i].name);
            return NGX_ERROR;
        }

        if (s[i].url.naddrs == 0 || s[i].url.host.len == 0) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "esp_sso_domain \"%V\" in %s:%ui: no address for "
                          "\"%V\"", &d->name, d->file, d->line, &s[i].name);
            return NGX_ERROR;
        }
    }

    if (d->timeout == 0 || d->timeout == NGX_CONF_UNSET_MSEC) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "esp_sso_domain \"%V\" in %s:%ui: \"ldap_timeout\" "
                      "must be set and not zero",
                      &d->name, d->file, d->line);
        return NGX_ERROR;
    }

    d->ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (d->ssl == NULL) {
        return NGX_ERROR;
    }

    d->ssl->log = cf->log;

    if (ngx_ssl_create(d->ssl, NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(d->ssl);
        return NGX_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = d->ssl;

    if (!d->verify) {
        ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                      "ldap_verify is off in domain \"%V\" (%s:%ui): "
                      "domain controller certificates are not checked",
                      &d->name, d->file, d->line);
        return NGX_OK;
    }

    if (d->ca_certificate.len == 0) {

        /* the operating system's trust store */

        if (SSL_CTX_set_default_verify_paths(d->ssl->ctx) != 1) {
            ngx_ssl_error(NGX_LOG_EMERG, cf->log, 0,
                          "esp_sso_domain \"%V\" in %s:%ui: "
                          "SSL_CTX_set_default_verify_paths() failed",
                          &d->name, d->file, d->line);
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    if (ngx_ssl_trusted_certificate(cf, d->ssl, &d->ca_certificate,
                                    NGX_ESP_LDAP_VERIFY_DEPTH)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "esp_sso_domain \"%V\" in %s:%ui: cannot load "
                      "\"ldap_ca_certificate\" \"%V\"",
                      &d->name, d->file, d->line, &d->ca_certificate);
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_esp_ldap_init_worker(ngx_cycle_t *cycle, ngx_esp_domain_t *d)
{
    u_char                      *p;
    ngx_uint_t                   i, j, n;
    ngx_esp_ldap_dc_t           *dc;
    ngx_esp_ldap_conn_t         *conn;
    ngx_esp_ldap_worker_t       *lw;
    ngx_esp_ldap_server_conf_t  *s;
#if (NGX_HAVE_INET6)
    u_char                       addr6[16];
#endif

    lw = ngx_pcalloc(cycle->pool, sizeof(ngx_esp_ldap_worker_t));
    if (lw == NULL) {
        return NGX_ERROR;
    }

    lw->domain = d;
    lw->ndcs = d->servers.nelts;

    lw->dcs = ngx_pcalloc(cycle->pool, lw->ndcs * sizeof(ngx_esp_ldap_dc_t));
    lw->stats = ngx_pcalloc(cycle->pool,
                            lw->ndcs * sizeof(ngx_esp_ldap_dc_stats_t));
    if (lw->dcs == NULL || lw->stats == NULL) {
        return NGX_ERROR;
    }

    n = (d->pool_size > 0) ? (ngx_uint_t) d->pool_size : 1;
    s = d->servers.elts;

    for (i = 0; i < lw->ndcs; i++) {
        dc = &lw->dcs[i];

        dc->conf = &s[i];
        dc->lw = lw;
        dc->stats = &lw->stats[i];
        dc->stats->name = s[i].name;

        ngx_queue_init(&dc->waiting);

        /* "[::1]" is checked as "::1"; SNI wants a NUL-terminated name */

        dc->host = s[i].url.host;

        if (dc->host.len > 2 && dc->host.data[0] == '[') {
            dc->host.data++;
            dc->host.len -= 2;
        }

        p = ngx_pnalloc(cycle->pool, dc->host.len + 1);
        if (p == NULL) {
            return NGX_ERROR;
        }

        *ngx_cpymem(p, dc->host.data, dc->host.len) = '\0';
        dc->host.data = p;

        dc->ip = (ngx_inet_addr(dc->host.data, dc->host.len) != INADDR_NONE);

#if (NGX_HAVE_INET6)
        if (!dc->ip
            && ngx_inet6_addr(dc->host.data, dc->host.len, addr6) == NGX_OK)
        {
            dc->ip = 1;
        }
#endif

        dc->nconns = n;
        dc->conns = ngx_pcalloc(cycle->pool, n * sizeof(ngx_esp_ldap_conn_t));
        if (dc->conns == NULL) {
            return NGX_ERROR;
        }

        for (j = 0; j < n; j++) {
            conn = &dc->conns[j];

            conn->dc = dc;
            conn->log = *cycle->log;
            conn->log.handler = ngx_esp_ldap_log_error;
            conn->log.data = conn;
            conn->log.action = NULL;

            conn->timer.handler = ngx_esp_ldap_timer_handler;
            conn->timer.data = conn;
            conn->timer.log = &conn->log;
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
    ngx_int_t               rc;
    ngx_str_t               domain, account, *g;
    ngx_uint_t              i, upn, ngroups;
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
    lr->op = NULL;

    if (lw == NULL) {
        ngx_log_error(NGX_LOG_ALERT, lr->log, 0,
                      "esp: directory client of domain \"%V\" is not "
                      "initialized", &d->name);
        return NGX_ERROR;
    }

    /* refused before any bind: nothing here may reach a directory */

    if (lr->password.len == 0
        || lr->password.len > NGX_ESP_LDAP_MAX_INPUT
        || ngx_esp_ldap_check_user(&lr->user) != NGX_OK)
    {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, lr->log, 0,
                       "esp ldap: invalid input, user length %uz, "
                       "password length %uz",
                       lr->user.len, lr->password.len);

        lr->result = NGX_ESP_AUTH_INVALID;
        return NGX_OK;
    }

    rc = ngx_esp_ldap_build_logon_name(lr->pool, d, &lr->user,
                                       &lr->logon_name);

    if (rc == NGX_DECLINED) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, lr->log, 0,
                       "esp ldap: \"%V\" is not a logon name", &lr->user);

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

    op->lr = lr;
    op->lw = lw;
    op->step = NGX_ESP_LDAP_USER_BIND;

    op->wait.handler = ngx_esp_ldap_wait_handler;
    op->wait.data = op;
    op->wait.log = lr->log;

    op->done.handler = ngx_esp_ldap_done_handler;
    op->done.data = op;
    op->done.log = lr->log;

    op->ngroups = ngroups;

    if (ngroups) {

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

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, lr->log, 0,
                   "esp ldap: authenticate \"%V\" as \"%V\", %ui groups",
                   &lr->user, &lr->logon_name, ngroups);

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

    } else if (op->step > NGX_ESP_LDAP_USER_BIND) {
        lr->result = NGX_ESP_AUTH_OK;
        rc = NGX_DONE;

    } else if (conn && conn->state == NGX_ESP_LDAP_BUSY && conn->expect
               && conn->expect_type == LDAP_RES_BIND)
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


ngx_int_t
ngx_esp_ldap_escape_filter_value(ngx_pool_t *pool, ngx_str_t *value,
    ngx_str_t *out)
{
    u_char      *p, *s, *last;
    ngx_uint_t   n;

    static u_char  hex[] = "0123456789abcdef";

    n = 0;
    last = value->data + value->len;

    for (s = value->data; s < last; s++) {
        if (*s == '*' || *s == '(' || *s == ')' || *s == '\\'
            || *s < 0x20 || *s == 0x7f)
        {
            n++;
        }
    }

    if (n == 0) {
        *out = *value;
        return NGX_OK;
    }

    p = ngx_pnalloc(pool, value->len + 2 * n);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;

    for (s = value->data; s < last; s++) {
        if (*s == '*' || *s == '(' || *s == ')' || *s == '\\'
            || *s < 0x20 || *s == 0x7f)
        {
            *p++ = '\\';
            *p++ = hex[*s >> 4];
            *p++ = hex[*s & 0xf];

        } else {
            *p++ = *s;
        }
    }

    out->len = p - out->data;

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

static void
ngx_esp_ldap_next_dc(ngx_esp_ldap_op_t *op)
{
    time_t                  now;
    ngx_uint_t              i, all;
    ngx_esp_ldap_dc_t      *dc;
    ngx_esp_ldap_worker_t  *lw;

    lw = op->lw;
    now = ngx_time();

    /* a new connection has no identity: the searches bind again first */

    if (op->step > NGX_ESP_LDAP_SERVICE_BIND) {
        op->step = NGX_ESP_LDAP_SERVICE_BIND;
        ngx_str_null(&op->lr->user_dn);
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
    ngx_uint_t            i;
    ngx_esp_ldap_conn_t  *conn, *idle, *free;

    op->dc = dc;

    idle = NULL;
    free = NULL;

    for (i = 0; i < dc->nconns; i++) {
        conn = &dc->conns[i];

        if (conn->state == NGX_ESP_LDAP_IDLE && idle == NULL) {
            idle = conn;

        } else if (conn->state == NGX_ESP_LDAP_FREE && free == NULL) {
            free = conn;
        }
    }

    if (idle && !fresh) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, &idle->log, 0,
                       "esp ldap: reuse connection to %V #%uA",
                       &dc->conf->name, idle->peer.connection->number);

        if (idle->timer.timer_set) {
            ngx_del_timer(&idle->timer);
        }

        idle->peer.connection->idle = 0;
        idle->state = NGX_ESP_LDAP_BUSY;
        idle->log.action = "talking to domain controller";
        idle->reused = 1;
        idle->op = op;
        op->conn = idle;

        ngx_esp_ldap_send_step(op);
        return;
    }

    if (free == NULL && idle) {

        /* a fresh connection was asked for: the idle one may be dead too */

        ngx_esp_ldap_close(idle, 1);
        free = idle;
    }

    if (free) {
        free->op = op;
        op->conn = free;

        ngx_esp_ldap_connect(free);
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
        ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_INTERNAL);
        return;
    }

    switch (op->step) {

    case NGX_ESP_LDAP_USER_BIND:
        rc = ngx_esp_ldap_encode_bind(conn, &lr->logon_name, &lr->password);
        expect = LDAP_RES_BIND;

        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, lr->log, 0,
                       "esp ldap: bind \"%V\" on %V msgid %d",
                       &lr->logon_name, &conn->dc->conf->name, conn->msgid);
        break;

    case NGX_ESP_LDAP_SERVICE_BIND:
        rc = ngx_esp_ldap_encode_bind(conn, &d->bind_dn, &d->bind_password);
        expect = LDAP_RES_BIND;

        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, lr->log, 0,
                       "esp ldap: service bind \"%V\" on %V msgid %d",
                       &d->bind_dn, &conn->dc->conf->name, conn->msgid);
        break;

    case NGX_ESP_LDAP_FIND_USER:
        op->nupn = 0;
        op->naccount = 0;

        rc = ngx_esp_ldap_encode_search(conn, op);
        expect = LDAP_RES_SEARCH_RESULT;

        ngx_log_debug4(NGX_LOG_DEBUG_HTTP, lr->log, 0,
                       "esp ldap: search \"%V\" for upn \"%V\" or account "
                       "\"%V\" msgid %d",
                       &d->base_dn, &op->upn, &op->account, conn->msgid);
        break;

    default: /* NGX_ESP_LDAP_CHECK_GROUPS */
        op->found = 0;

        rc = ngx_esp_ldap_encode_search(conn, op);
        expect = LDAP_RES_SEARCH_RESULT;

        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, lr->log, 0,
                       "esp ldap: check %ui groups of \"%V\" msgid %d",
                       op->ngroups, &lr->user_dn, conn->msgid);
        break;
    }

    if (rc != NGX_OK) {
        ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_INTERNAL);
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

        if (op->step == NGX_ESP_LDAP_CHECK_GROUPS) {
            op->found = 1;
            return NGX_OK;
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

            if (op->ngroups == 0) {
                ngx_esp_ldap_release(conn);
                ngx_esp_ldap_finish(op, dc, NGX_ESP_AUTH_OK);
                return NGX_DONE;
            }

            if (op->upn.len == 0 && op->account.len == 0) {
                ngx_log_debug1(NGX_LOG_DEBUG_HTTP, lr->log, 0,
                               "esp ldap: \"%V\" is no name of this domain",
                               &lr->logon_name);

                ngx_esp_ldap_release(conn);
                ngx_esp_ldap_finish(op, dc, NGX_ESP_AUTH_NOT_PERMITTED);
                return NGX_DONE;
            }

            op->step = NGX_ESP_LDAP_SERVICE_BIND;
            ngx_esp_ldap_send_step(op);
            return NGX_DONE;
        }

        if (m->code == LDAP_INVALID_CREDENTIALS) {
            dc->stats->binds_failed++;

            code = ngx_esp_ldap_ad_code(&m->diag);
            lr->ad_code = code;

            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, lr->log, 0,
                           "esp ldap: invalid credentials, AD data %xi, "
                           "from %V", code, &dc->conf->name);

            ngx_esp_ldap_release(conn);
            ngx_esp_ldap_finish(op, dc, ngx_esp_ldap_ad_result(code));
            return NGX_DONE;
        }

        break;

    case NGX_ESP_LDAP_SERVICE_BIND:

        if (m->code == LDAP_SUCCESS) {
            op->step = NGX_ESP_LDAP_FIND_USER;
            ngx_esp_ldap_send_step(op);
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

            ngx_esp_ldap_release(conn);
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
                              &lr->logon_name, &op->lw->domain->base_dn);
            }

            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, lr->log, 0,
                           "esp ldap: \"%V\" not found in the base DN",
                           &lr->logon_name);

            ngx_esp_ldap_release(conn);
            ngx_esp_ldap_finish(op, dc, NGX_ESP_AUTH_NOT_PERMITTED);
            return NGX_DONE;
        }

        op->step = NGX_ESP_LDAP_CHECK_GROUPS;
        ngx_esp_ldap_send_step(op);
        return NGX_DONE;

    default: /* NGX_ESP_LDAP_CHECK_GROUPS */

        /* noSuchObject: the user was deleted since it was found */

        if (m->code == LDAP_SUCCESS || m->code == LDAP_SIZELIMIT_EXCEEDED
            || m->code == LDAP_NO_SUCH_OBJECT)
        {
            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, lr->log, 0,
                           "esp ldap: \"%V\" is %sin a permitted group",
                           &lr->user_dn, op->found ? "" : "not ");

            ngx_esp_ldap_release(conn);
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
        ngx_esp_ldap_release(conn);
    }

    ngx_esp_ldap_next_dc(op);

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
                      name, &lr->logon_name, m->code,
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
                      name, &lr->logon_name, &op->lw->domain->base_dn,
                      m->code, ldap_err2string(m->code), n, text);
        break;

    default:
        ngx_log_error(NGX_LOG_ERR, lr->log, 0,
                      "esp: domain controller %V answered the group check "
                      "of \"%V\" with %d (%s) \"%*s\"",
                      name, &lr->user_dn, m->code,
                      ldap_err2string(m->code), n, text);
        break;
    }
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


/* connections */

static void
ngx_esp_ldap_connect(ngx_esp_ldap_conn_t *conn)
{
    ngx_int_t                    rc;
    ngx_connection_t            *c;
    ngx_esp_ldap_dc_t           *dc;
    ngx_esp_ldap_server_conf_t  *s;

    dc = conn->dc;
    s = dc->conf;

    ngx_memzero(&conn->peer, sizeof(ngx_peer_connection_t));

    conn->peer.sockaddr = s->url.addrs[0].sockaddr;
    conn->peer.socklen = s->url.addrs[0].socklen;
    conn->peer.name = &s->url.addrs[0].name;
    conn->peer.get = ngx_event_get_peer;
    conn->peer.log = &conn->log;
    conn->peer.log_error = NGX_ERROR_ERR;
    conn->peer.tries = 1;

    conn->state = NGX_ESP_LDAP_CONNECTING;
    conn->msgid = 0;
    conn->expect = 0;
    conn->reused = 0;
    conn->log.action = "connecting to domain controller";

    /* one timer covers the connect, the handshake and the first answer */

    conn->timer.cancelable = 0;
    ngx_add_timer(&conn->timer, dc->lw->domain->timeout);

    rc = ngx_event_connect_peer(&conn->peer);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, &conn->log, 0,
                   "esp ldap: connect to %V: %i", &s->name, rc);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        ngx_esp_ldap_fail(conn, rc == NGX_DECLINED
                                ? NGX_ESP_LDAP_FAIL_CONNECT
                                : NGX_ESP_LDAP_FAIL_INTERNAL);
        return;
    }

    c = conn->peer.connection;
    c->data = conn;

    c->pool = ngx_create_pool(512, &conn->log);
    if (c->pool == NULL) {
        ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_INTERNAL);
        return;
    }

    c->read->handler = ngx_esp_ldap_connect_handler;
    c->write->handler = ngx_esp_ldap_connect_handler;

    if (rc == NGX_AGAIN) {
        return;
    }

    ngx_esp_ldap_connected(conn);
}


static void
ngx_esp_ldap_connect_handler(ngx_event_t *ev)
{
    int                   err;
    socklen_t             len;
    ngx_connection_t     *c;
    ngx_esp_ldap_conn_t  *conn;

    c = ev->data;
    conn = c->data;

    err = 0;
    len = sizeof(int);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len) == -1) {
        err = ngx_socket_errno;
    }

    if (err) {
        (void) ngx_connection_error(c, err, "connect() failed");
        ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_CONNECT);
        return;
    }

    ngx_esp_ldap_connected(conn);
}


static void
ngx_esp_ldap_connected(ngx_esp_ldap_conn_t *conn)
{
    ngx_connection_t            *c;
    ngx_esp_ldap_server_conf_t  *s;

    c = conn->peer.connection;
    s = conn->dc->conf;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, &conn->log, 0,
                   "esp ldap: connected to %V #%uA", &s->name, c->number);

    if (s->ldaps) {
        ngx_esp_ldap_ssl_start(conn);
        return;
    }

    if (!s->starttls) {
        ngx_log_error(NGX_LOG_ALERT, &conn->log, 0,
                      "esp: LDAP without TLS is refused");
        ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_INTERNAL);
        return;
    }

    conn->state = NGX_ESP_LDAP_STARTTLS;
    conn->log.action = "asking domain controller for StartTLS";

    c->read->handler = ngx_esp_ldap_read_handler;
    c->write->handler = ngx_esp_ldap_write_handler;

    if (ngx_esp_ldap_encode_starttls(conn) != NGX_OK) {
        ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_INTERNAL);
        return;
    }

    ngx_esp_ldap_send(conn, LDAP_RES_EXTENDED);
}


static void
ngx_esp_ldap_ssl_start(ngx_esp_ldap_conn_t *conn)
{
    ngx_int_t           rc;
    ngx_connection_t   *c;
    ngx_esp_domain_t   *d;
    ngx_esp_ldap_dc_t  *dc;

    c = conn->peer.connection;
    dc = conn->dc;
    d = dc->lw->domain;

    conn->state = NGX_ESP_LDAP_HANDSHAKE;
    conn->log.action = "SSL handshaking to domain controller";

    if (!conn->timer.timer_set) {
        conn->timer.cancelable = 0;
        ngx_add_timer(&conn->timer, d->timeout);
    }

    if (ngx_ssl_create_connection(d->ssl, c, NGX_SSL_BUFFER|NGX_SSL_CLIENT)
        != NGX_OK)
    {
        ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_INTERNAL);
        return;
    }

    if (!dc->ip
        && SSL_set_tlsext_host_name(c->ssl->connection,
                                    (char *) dc->host.data)
           == 0)
    {
        ngx_ssl_error(NGX_LOG_ERR, &conn->log, 0,
                      "SSL_set_tlsext_host_name(\"%s\") failed",
                      dc->host.data);
        ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_INTERNAL);
        return;
    }

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {
        c->ssl->handler = ngx_esp_ldap_ssl_handshake_handler;
        return;
    }

    ngx_esp_ldap_ssl_handshake_handler(c);
}


static void
ngx_esp_ldap_ssl_handshake_handler(ngx_connection_t *c)
{
    ngx_esp_ldap_conn_t  *conn;

    conn = c->data;

    if (!c->ssl->handshaked) {
        ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_TLS);
        return;
    }

    if (conn->dc->lw->domain->verify
        && ngx_esp_ldap_ssl_verify(conn) != NGX_OK)
    {
        ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_VERIFY);
        return;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, &conn->log, 0,
                   "esp ldap: %s %s to %V",
                   SSL_get_version(c->ssl->connection),
                   SSL_get_cipher_name(c->ssl->connection),
                   &conn->dc->conf->name);

    ngx_esp_ldap_ready(conn);
}


static ngx_int_t
ngx_esp_ldap_ssl_verify(ngx_esp_ldap_conn_t *conn)
{
    long                rc;
    X509               *cert;
    ngx_int_t           ok;
    ngx_connection_t   *c;
    ngx_esp_ldap_dc_t  *dc;

    c = conn->peer.connection;
    dc = conn->dc;

    rc = SSL_get_verify_result(c->ssl->connection);

    if (rc != X509_V_OK) {
        ngx_log_error(NGX_LOG_ERR, &conn->log, 0,
                      "esp: domain controller %V certificate does not "
                      "verify: (%l:%s)", &dc->conf->name,
                      rc, X509_verify_cert_error_string(rc));
        return NGX_ERROR;
    }

    cert = SSL_get_peer_certificate(c->ssl->connection);

    if (cert == NULL) {
        ngx_log_error(NGX_LOG_ERR, &conn->log, 0,
                      "esp: domain controller %V certificate does not "
                      "verify: it sent none", &dc->conf->name);
        return NGX_ERROR;
    }

    /* ngx_ssl_check_host() knows DNS names only; DCs often carry IP SANs */

    if (dc->ip) {
        ok = (X509_check_ip_asc(cert, (char *) dc->host.data, 0) == 1);

    } else {
        ok = (ngx_ssl_check_host(c, &dc->host) == NGX_OK);
    }

    X509_free(cert);

    if (!ok) {
        ngx_log_error(NGX_LOG_ERR, &conn->log, 0,
                      "esp: domain controller %V certificate does not "
                      "verify: it is not for \"%V\"",
                      &dc->conf->name, &dc->host);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_esp_ldap_ready(ngx_esp_ldap_conn_t *conn)
{
    ngx_connection_t  *c;

    c = conn->peer.connection;

    c->read->handler = ngx_esp_ldap_read_handler;
    c->write->handler = ngx_esp_ldap_write_handler;

    conn->state = NGX_ESP_LDAP_BUSY;
    conn->log.action = "talking to domain controller";

    if (conn->op) {
        ngx_esp_ldap_send_step(conn->op);
        return;
    }

    /* the op went away meanwhile: keep the connection for the next one */

    ngx_esp_ldap_release(conn);
}


static void
ngx_esp_ldap_send(ngx_esp_ldap_conn_t *conn, ber_tag_t expect)
{
    ngx_connection_t  *c;

    c = conn->peer.connection;

    conn->expect = conn->msgid;
    conn->expect_type = expect;
    conn->sent = ngx_current_msec;

    if (!conn->timer.timer_set) {
        conn->timer.cancelable = 0;
        ngx_add_timer(&conn->timer, conn->dc->lw->domain->timeout);
    }

    c->write->handler = ngx_esp_ldap_write_handler;

    ngx_esp_ldap_write_handler(c->write);
}


static void
ngx_esp_ldap_write_handler(ngx_event_t *wev)
{
    ssize_t               n;
    ngx_connection_t     *c;
    ngx_esp_ldap_conn_t  *conn;

    c = wev->data;
    conn = c->data;

    while (conn->out) {

        n = c->send(c, conn->out + conn->out_sent,
                    conn->out_len - conn->out_sent);

        if (n == NGX_ERROR) {
            ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_CLOSED);
            return;
        }

        if (n == NGX_AGAIN || n == 0) {
            if (ngx_handle_write_event(wev, 0) != NGX_OK) {
                ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_INTERNAL);
            }

            return;
        }

        conn->out_sent += n;

        if (conn->out_sent == conn->out_len) {
            ngx_esp_ldap_free_out(conn);
        }
    }

    if (ngx_handle_write_event(wev, 0) != NGX_OK) {
        ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_INTERNAL);
        return;
    }

    /* an answer may already wait, unread, in the socket or in SSL */

    if (c->read->ready || conn->in_pos < conn->in_len) {
        ngx_post_event(c->read, &ngx_posted_events);
    }
}


static void
ngx_esp_ldap_read_handler(ngx_event_t *rev)
{
    size_t                size;
    u_char               *p;
    ssize_t               n;
    ngx_int_t             rc;
    ngx_connection_t     *c;
    ngx_esp_ldap_msg_t    m;
    ngx_esp_ldap_conn_t  *conn;

    c = rev->data;
    conn = c->data;

    if (conn->state == NGX_ESP_LDAP_IDLE) {
        ngx_esp_ldap_idle_read(conn);
        return;
    }

    for ( ;; ) {

        size = 0;

        if (conn->in_pos < conn->in_len) {

            rc = ngx_esp_ldap_frame(conn->in + conn->in_pos,
                                    conn->in_len - conn->in_pos, &size);

            if (rc == NGX_ERROR) {
                ngx_log_error(NGX_LOG_ERR, &conn->log, 0,
                              "esp: domain controller %V sent an invalid "
                              "or oversized LDAP message",
                              &conn->dc->conf->name);
                ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_PROTOCOL);
                return;
            }

            if (rc == NGX_OK) {
                p = conn->in + conn->in_pos;
                conn->in_pos += size;

                if (ngx_esp_ldap_parse(p, size, &m) != NGX_OK) {
                    ngx_log_error(NGX_LOG_ERR, &conn->log, 0,
                                  "esp: domain controller %V sent an LDAP "
                                  "message that cannot be decoded",
                                  &conn->dc->conf->name);
                    ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_PROTOCOL);
                    return;
                }

                if (ngx_esp_ldap_message(conn, &m) == NGX_DONE) {
                    return;
                }

                continue;
            }
        }

        /* make room for the rest of the message */

        if (conn->in_pos) {
            ngx_memmove(conn->in, conn->in + conn->in_pos,
                        conn->in_len - conn->in_pos);
            conn->in_len -= conn->in_pos;
            conn->in_pos = 0;
        }

        if (size < NGX_ESP_LDAP_BUFFER_SIZE) {
            size = NGX_ESP_LDAP_BUFFER_SIZE;
        }

        if (size > conn->in_size) {
            /* liblber peeks at the byte after the last element it reads */
            p = ngx_alloc(size + 1, &conn->log);
            if (p == NULL) {
                ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_INTERNAL);
                return;
            }

            if (conn->in) {
                ngx_memcpy(p, conn->in, conn->in_len);
                ngx_free(conn->in);
            }

            conn->in = p;
            conn->in_size = size;
        }

        n = c->recv(c, conn->in + conn->in_len, conn->in_size - conn->in_len);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(rev, 0) != NGX_OK) {
                ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_INTERNAL);
            }

            return;
        }

        if (n == 0 || n == NGX_ERROR) {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, &conn->log, 0,
                           "esp ldap: %V closed the connection",
                           &conn->dc->conf->name);

            ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_CLOSED);
            return;
        }

        conn->in_len += n;
    }
}


static void
ngx_esp_ldap_idle_read(ngx_esp_ldap_conn_t *conn)
{
    u_char             buf[1];
    ssize_t            n;
    ngx_connection_t  *c;

    c = conn->peer.connection;

    if (c->close) {
        ngx_esp_ldap_close(conn, 1);
        return;
    }

    /* through SSL, so that session tickets and the like are not data */

    n = c->recv(c, buf, 1);

    if (n == NGX_AGAIN) {
        if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
            ngx_esp_ldap_close(conn, 0);
        }

        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, &conn->log, 0,
                   "esp ldap: idle connection to %V closed by it (%z)",
                   &conn->dc->conf->name, n);

    ngx_esp_ldap_close(conn, 0);
}


static ngx_int_t
ngx_esp_ldap_message(ngx_esp_ldap_conn_t *conn, ngx_esp_ldap_msg_t *m)
{
    u_char              text[256];
    size_t              n;
    ngx_esp_ldap_dc_t  *dc;

    dc = conn->dc;

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, &conn->log, 0,
                   "esp ldap: message %d type 0x%xl code %d from %V",
                   m->msgid, m->type, m->code, &dc->conf->name);

    if (m->msgid == 0) {

        /* unsolicited: a notice of disconnection */

        n = ngx_esp_ldap_printable(text, sizeof(text), &m->diag);

        ngx_log_error(NGX_LOG_WARN, &conn->log, 0,
                      "esp: domain controller %V disconnects: %d \"%*s\"",
                      &dc->conf->name, m->code, n, text);

        ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_CLOSED);
        return NGX_DONE;
    }

    if (m->msgid != conn->expect) {
        ngx_log_error(NGX_LOG_ERR, &conn->log, 0,
                      "esp: domain controller %V answered message %d, "
                      "expected %d", &dc->conf->name, m->msgid, conn->expect);
        ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_PROTOCOL);
        return NGX_DONE;
    }

    if (m->type == LDAP_RES_SEARCH_ENTRY
        || m->type == LDAP_RES_SEARCH_REFERENCE)
    {
        if (conn->expect_type != LDAP_RES_SEARCH_RESULT) {
            ngx_log_error(NGX_LOG_ERR, &conn->log, 0,
                          "esp: domain controller %V sent a search result "
                          "to a request that is no search",
                          &dc->conf->name);
            ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_PROTOCOL);
            return NGX_DONE;
        }

        /* referrals are not chased */

        if (m->type == LDAP_RES_SEARCH_ENTRY && conn->op
            && ngx_esp_ldap_op_answer(conn->op, m) != NGX_OK)
        {
            ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_INTERNAL);
            return NGX_DONE;
        }

        return NGX_OK;
    }

    if (m->type != conn->expect_type) {
        ngx_log_error(NGX_LOG_ERR, &conn->log, 0,
                      "esp: domain controller %V sent an answer of type "
                      "0x%xl, expected 0x%xl",
                      &dc->conf->name, m->type, conn->expect_type);
        ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_PROTOCOL);
        return NGX_DONE;
    }

    /* the exchange is over */

    conn->expect = 0;
    conn->reused = 0;

    if (conn->timer.timer_set) {
        ngx_del_timer(&conn->timer);
    }

    if (m->code != LDAP_BUSY && m->code != LDAP_UNAVAILABLE) {
        ngx_esp_ldap_mark_up(dc);
    }

    if (conn->state == NGX_ESP_LDAP_STARTTLS) {

        if (m->code != LDAP_SUCCESS) {
            n = ngx_esp_ldap_printable(text, sizeof(text), &m->diag);

            ngx_log_error(NGX_LOG_ERR, &conn->log, 0,
                          "esp: domain controller %V refused StartTLS: "
                          "%d (%s) \"%*s\"", &dc->conf->name, m->code,
                          ldap_err2string(m->code), n, text);
            ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_REFUSED);
            return NGX_DONE;
        }

        if (conn->in_pos != conn->in_len) {
            ngx_log_error(NGX_LOG_ERR, &conn->log, 0,
                          "esp: domain controller %V sent data after "
                          "accepting StartTLS", &dc->conf->name);
            ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_PROTOCOL);
            return NGX_DONE;
        }

        ngx_esp_ldap_ssl_start(conn);
        return NGX_DONE;
    }

    if (conn->op == NULL) {

        /* the op went away while its request was out */

        if (conn->orphan) {
            ngx_esp_ldap_orphan_done(conn,
                m->code == LDAP_SUCCESS ? NGX_ESP_AUTH_OK
                : m->code == LDAP_INVALID_CREDENTIALS
                  ? ngx_esp_ldap_ad_result(ngx_esp_ldap_ad_code(&m->diag))
                  : NGX_ESP_AUTH_ERROR);
        }

        ngx_esp_ldap_release(conn);
        return NGX_DONE;
    }

    return ngx_esp_ldap_op_answer(conn->op, m);
}


static void
ngx_esp_ldap_timer_handler(ngx_event_t *ev)
{
    ngx_esp_ldap_conn_t  *conn;

    conn = ev->data;

    if (conn->state == NGX_ESP_LDAP_IDLE) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, &conn->log, 0,
                       "esp ldap: idle connection to %V timed out",
                       &conn->dc->conf->name);

        ngx_esp_ldap_close(conn, 1);
        return;
    }

    ngx_esp_ldap_fail(conn, NGX_ESP_LDAP_FAIL_TIMEOUT);
}


/* the connection is healthy and nobody needs it any more on this op */

static void
ngx_esp_ldap_release(ngx_esp_ldap_conn_t *conn)
{
    ngx_queue_t          *q;
    ngx_connection_t     *c;
    ngx_esp_ldap_op_t    *op;
    ngx_esp_ldap_dc_t    *dc;

    c = conn->peer.connection;
    dc = conn->dc;

    if (conn->op) {
        conn->op->conn = NULL;
        conn->op = NULL;
    }

    if (conn->timer.timer_set) {
        ngx_del_timer(&conn->timer);
    }

    ngx_esp_ldap_free_out(conn);

    if (ngx_terminate || ngx_exiting || c->close
        || conn->in_pos != conn->in_len)
    {
        ngx_esp_ldap_close(conn, conn->in_pos == conn->in_len);
        return;
    }

    conn->in_pos = 0;
    conn->in_len = 0;

    if (conn->in_size > NGX_ESP_LDAP_BUFFER_SIZE) {
        ngx_free(conn->in);
        conn->in = NULL;
        conn->in_size = 0;
    }

    if (!ngx_queue_empty(&dc->waiting)) {
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
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, &conn->log, 0,
                   "esp ldap: connection to %V #%uA is idle",
                   &dc->conf->name, c->number);

    conn->state = NGX_ESP_LDAP_IDLE;
    conn->log.action = NULL;

    c->idle = 1;
    c->read->handler = ngx_esp_ldap_read_handler;
    c->write->handler = ngx_esp_ldap_dummy_handler;

    conn->timer.cancelable = 1;
    ngx_add_timer(&conn->timer, NGX_ESP_LDAP_IDLE_TIMEOUT);

    if (c->read->ready) {
        ngx_post_event(c->read, &ngx_posted_events);
    }
}


static void
ngx_esp_ldap_fail(ngx_esp_ldap_conn_t *conn, ngx_uint_t why)
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


static void
ngx_esp_ldap_close(ngx_esp_ldap_conn_t *conn, ngx_uint_t clean)
{
    ber_int_t          id;
    BerElement        *ber;
    struct berval      bv;
    ngx_connection_t  *c;

    /* an abandoned bind that got no answer: failed, time-out, exit */

    ngx_esp_ldap_orphan_done(conn, NGX_ESP_AUTH_UNAVAILABLE);

    if (conn->timer.timer_set) {
        ngx_del_timer(&conn->timer);
    }

    ngx_esp_ldap_free_out(conn);

    if (conn->in) {
        ngx_free(conn->in);
        conn->in = NULL;
    }

    conn->in_size = 0;
    conn->in_pos = 0;
    conn->in_len = 0;
    conn->expect = 0;
    conn->reused = 0;
    conn->log.action = NULL;

    c = conn->peer.connection;
    conn->peer.connection = NULL;

    if (c == NULL) {
        conn->state = NGX_ESP_LDAP_FREE;
        return;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, &conn->log, 0,
                   "esp ldap: close connection to %V #%uA, clean: %ui",
                   &conn->dc->conf->name, c->number, clean);

    /* an unbind says goodbye; best effort, it must not wait */

    if (clean && conn->state == NGX_ESP_LDAP_IDLE) {
        id = ngx_esp_ldap_next_msgid(conn);
        ber = ber_alloc_t(LBER_USE_DER);

        if (ber) {
            if (ber_printf(ber, "{itn}", id, LDAP_REQ_UNBIND) != -1
                && ber_flatten2(ber, &bv, 0) != -1)
            {
                (void) c->send(c, (u_char *) bv.bv_val, bv.bv_len);
            }

            ber_free(ber, 1);
        }
    }

    conn->state = NGX_ESP_LDAP_FREE;

    /* the slot and its log may serve a new connection before this ends */

    c->log = ngx_cycle->log;
    c->read->log = c->log;
    c->write->log = c->log;

    if (c->pool) {
        c->pool->log = c->log;
    }

    c->data = NULL;
    c->idle = 0;

    if (c->ssl) {
        c->ssl->no_wait_shutdown = 1;

        if (!clean) {
            c->ssl->no_send_shutdown = 1;
        }

        if (ngx_ssl_shutdown(c) == NGX_AGAIN) {
            c->ssl->handler = ngx_esp_ldap_close_connection;
            return;
        }
    }

    ngx_esp_ldap_close_connection(c);
}


static void
ngx_esp_ldap_orphan_done(ngx_esp_ldap_conn_t *conn,
    ngx_esp_auth_result_e result)
{
    ngx_esp_ldap_orphan_pt  orphan;

    orphan = conn->orphan;

    if (orphan == NULL) {
        return;
    }

    conn->orphan = NULL;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, &conn->log, 0,
                   "esp ldap: abandoned bind on %V: %s",
                   &conn->dc->conf->name, ngx_esp_auth_result_name(result));

    orphan(conn->orphan_data, result);
}


static void
ngx_esp_ldap_close_connection(ngx_connection_t *c)
{
    ngx_pool_t  *pool;

    pool = c->pool;

    ngx_close_connection(c);

    if (pool) {
        ngx_destroy_pool(pool);
    }
}


static void
ngx_esp_ldap_dummy_handler(ngx_event_t *ev)
{
    return;
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


static u_char *
ngx_esp_ldap_log_error(ngx_log_t *log, u_char *buf, size_t len)
{
    u_char               *p;
    ngx_esp_ldap_conn_t  *conn;

    p = buf;

    if (log->action) {
        p = ngx_snprintf(buf, len, " while %s", log->action);
        len -= p - buf;
        buf = p;
    }

    conn = log->data;

    p = ngx_snprintf(buf, len, ", domain controller: %V, domain: %V",
                     &conn->dc->conf->name, &conn->dc->lw->domain->name);

    return p;
}


/* LDAP messages */

/*
 * An LDAPMessage is a SEQUENCE: 0x30, a definite length (short form or
 * up to 4 length octets), the contents.  NGX_AGAIN: more bytes are needed
 * ("size" is the whole message once the length is known).
 */

static ngx_int_t
ngx_esp_ldap_frame(u_char *p, size_t n, size_t *size)
{
    size_t      len, hdr;
    ngx_uint_t  i, k;

    if (n < 2) {
        return NGX_AGAIN;
    }

    if (p[0] != 0x30) {
        return NGX_ERROR;
    }

    if (p[1] < 0x80) {
        len = p[1];
        hdr = 2;

    } else {
        k = p[1] & 0x7f;

        if (k == 0 || k > 4) {
            return NGX_ERROR;
        }

        if (n < 2 + k) {
            return NGX_AGAIN;
        }

        len = 0;

        for (i = 0; i < k; i++) {
            len = (len << 8) | p[2 + i];
        }

        hdr = 2 + k;
    }

    if (len > NGX_ESP_LDAP_MAX_MESSAGE - hdr) {
        return NGX_ERROR;
    }

    *size = hdr + len;

    return (n >= *size) ? NGX_OK : NGX_AGAIN;
}


/*
 * Decodes one framed LDAPMessage.  Strings are taken in place, without
 * the NUL that ber_scanf("m") would write after each (over the next byte,
 * which may be the next message, or past the end of the buffer).
 */

static ngx_int_t
ngx_esp_ldap_parse(u_char *p, size_t n, ngx_esp_ldap_msg_t *m)
{
    ngx_int_t       rc;
    ber_len_t       len;
    ngx_uint_t      first;
    BerElement     *ber;
    struct berval   bv, type, value;

    ngx_memzero(m, sizeof(ngx_esp_ldap_msg_t));

    ber = ber_alloc_t(LBER_USE_DER);
    if (ber == NULL) {
        return NGX_ERROR;
    }

    bv.bv_val = (char *) p;
    bv.bv_len = n;

    ber_init2(ber, &bv, LBER_USE_DER);

    rc = NGX_ERROR;

    if (ber_skip_tag(ber, &len) != LBER_SEQUENCE
        || ber_get_int(ber, &m->msgid) == LBER_ERROR
        || m->msgid < 0)
    {
        goto done;
    }

    m->type = ber_peek_tag(ber, &len);

    switch (m->type) {

    case LDAP_RES_BIND:
    case LDAP_RES_SEARCH_RESULT:
    case LDAP_RES_EXTENDED:
        if (ber_skip_tag(ber, &len) == LBER_ERROR
            || ber_get_enum(ber, &m->code) == LBER_ERROR
            || ber_get_stringbv(ber, &m->matched, LBER_BV_NOTERM)
               == LBER_ERROR
            || ber_get_stringbv(ber, &m->diag, LBER_BV_NOTERM) == LBER_ERROR)
        {
            goto done;
        }

        break;

    case LDAP_RES_SEARCH_ENTRY:
        if (ber_skip_tag(ber, &len) == LBER_ERROR
            || ber_get_stringbv(ber, &m->dn, LBER_BV_NOTERM) == LBER_ERROR
            || ber_skip_tag(ber, &len) == LBER_ERROR)
        {
            goto done;
        }

        /* the attributes: SEQUENCE { type, SET OF value } each */

        while (ber_peek_tag(ber, &len) == LBER_SEQUENCE) {

            if (ber_skip_tag(ber, &len) == LBER_ERROR
                || ber_get_stringbv(ber, &type, LBER_BV_NOTERM) == LBER_ERROR
                || ber_skip_tag(ber, &len) == LBER_ERROR)
            {
                goto done;
            }

            first = 1;

            while (ber_peek_tag(ber, &len) == LBER_OCTETSTRING) {

                if (ber_get_stringbv(ber, &value, LBER_BV_NOTERM)
                    == LBER_ERROR)
                {
                    goto done;
                }

                if (first
                    && type.bv_len == sizeof("userPrincipalName") - 1
                    && ngx_strncasecmp((u_char *) type.bv_val,
                                       (u_char *) "userPrincipalName",
                                       type.bv_len)
                       == 0)
                {
                    m->upn = value;
                }

                first = 0;
            }
        }

        break;

    case LDAP_RES_SEARCH_REFERENCE:
        break;

    default:
        goto done;
    }

    rc = NGX_OK;

done:

    ber_free(ber, 0);

    return rc;
}


static ber_int_t
ngx_esp_ldap_next_msgid(ngx_esp_ldap_conn_t *conn)
{
    if (conn->msgid <= 0 || conn->msgid >= 0x7ffffffe) {
        conn->msgid = 0;
    }

    return ++conn->msgid;
}


/*
 * BindRequest, by hand: the password goes into this buffer only, which
 * is wiped once sent (ngx_esp_ldap_free_out())
 */

static ngx_int_t
ngx_esp_ldap_encode_bind(ngx_esp_ldap_conn_t *conn, ngx_str_t *dn,
    ngx_str_t *password)
{
    u_char     *p;
    size_t      id_len, op_len, msg_len, len;
    ber_int_t   id;

    ngx_esp_ldap_free_out(conn);

    id = ngx_esp_ldap_next_msgid(conn);

    id_len = (id < 0x80) ? 1 : (id < 0x8000) ? 2 : (id < 0x800000) ? 3 : 4;

    op_len = 3
             + 1 + ngx_esp_ldap_length_size(dn->len) + dn->len
             + 1 + ngx_esp_ldap_length_size(password->len) + password->len;

    msg_len = 2 + id_len + 1 + ngx_esp_ldap_length_size(op_len) + op_len;

    len = 1 + ngx_esp_ldap_length_size(msg_len) + msg_len;

    p = ngx_alloc(len, &conn->log);
    if (p == NULL) {
        return NGX_ERROR;
    }

    conn->out = p;
    conn->out_len = len;
    conn->out_sent = 0;
    conn->secret = 1;

    *p++ = 0x30;
    p = ngx_esp_ldap_put_length(p, msg_len);

    *p++ = 0x02;
    *p++ = (u_char) id_len;

    while (id_len) {
        id_len--;
        *p++ = (u_char) (id >> (8 * id_len));
    }

    *p++ = (u_char) LDAP_REQ_BIND;
    p = ngx_esp_ldap_put_length(p, op_len);

    /* version 3 */
    *p++ = 0x02;
    *p++ = 0x01;
    *p++ = 0x03;

    *p++ = 0x04;
    p = ngx_esp_ldap_put_length(p, dn->len);
    p = ngx_cpymem(p, dn->data, dn->len);

    *p++ = (u_char) LDAP_AUTH_SIMPLE;
    p = ngx_esp_ldap_put_length(p, password->len);
    p = ngx_cpymem(p, password->data, password->len);

    return NGX_OK;
}


/*
 * The filters are built as the filter structure itself: values travel as
 * raw octets and no text the user typed is ever parsed as a filter.
 *
 * Who was bound (attribute userPrincipalName, size limit 2):
 *   (&(objectClass=user)(|(userPrincipalName=UPN)(sAMAccountName=NAME)))
 * or either half alone.  Then, on that user's DN only (scope base):
 *   (|(memberOf:1.2.840.113556.1.4.1941:=GROUP DN)...)
 */

static ngx_int_t
ngx_esp_ldap_encode_search(ngx_esp_ldap_conn_t *conn, ngx_esp_ldap_op_t *op)
{
    int                rc;
    ngx_str_t         *base, *g;
    ber_int_t          id, limit, scope, size;
    ngx_uint_t         i;
    BerElement        *ber;
    ngx_esp_domain_t  *d;

    ngx_esp_ldap_free_out(conn);

    d = op->lw->domain;
    id = ngx_esp_ldap_next_msgid(conn);
    limit = (ber_int_t) ((d->timeout + 999) / 1000);

    if (op->step == NGX_ESP_LDAP_FIND_USER) {
        base = &d->base_dn;
        scope = LDAP_SCOPE_SUBTREE;
        size = 2;

    } else {
        base = &op->lr->user_dn;
        scope = LDAP_SCOPE_BASE;
        size = 1;
    }

    ber = ber_alloc_t(LBER_USE_DER);
    if (ber == NULL) {
        return NGX_ERROR;
    }

    rc = ber_printf(ber, "{it{oeeiib",
                    id, LDAP_REQ_SEARCH,
                    (char *) base->data, (ber_len_t) base->len,
                    scope, (ber_int_t) LDAP_DEREF_NEVER,
                    size, limit, (ber_int_t) 0);

    if (op->step == NGX_ESP_LDAP_FIND_USER) {

        if (rc != -1) {
            rc = ber_printf(ber, "t[t{ss}", LDAP_FILTER_AND,
                            LDAP_FILTER_EQUALITY, "objectClass", "user");
        }

        if (rc != -1 && op->upn.len && op->account.len) {
            rc = ber_printf(ber, "t[", LDAP_FILTER_OR);
        }

        if (rc != -1 && op->upn.len) {
            rc = ber_printf(ber, "t{so}", LDAP_FILTER_EQUALITY,
                            "userPrincipalName",
                            (char *) op->upn.data, (ber_len_t) op->upn.len);
        }

        if (rc != -1 && op->account.len) {
            rc = ber_printf(ber, "t{so}", LDAP_FILTER_EQUALITY,
                            "sAMAccountName",
                            (char *) op->account.data,
                            (ber_len_t) op->account.len);
        }

        if (rc != -1 && op->upn.len && op->account.len) {
            rc = ber_printf(ber, "]");
        }

        if (rc != -1) {
            rc = ber_printf(ber, "]{s}}}", "userPrincipalName");
        }

    } else {

        if (rc != -1) {
            rc = ber_printf(ber, "t[", LDAP_FILTER_OR);
        }

        g = op->lr->groups->elts;

        for (i = 0; rc != -1 && i < op->lr->groups->nelts; i++) {

            if (g[i].len == 0) {
                continue;
            }

            rc = ber_printf(ber, "t{tststo}",
                            LDAP_FILTER_EXT,
                            LDAP_FILTER_EXT_OID, NGX_ESP_LDAP_IN_CHAIN,
                            LDAP_FILTER_EXT_TYPE, "memberOf",
                            LDAP_FILTER_EXT_VALUE,
                            (char *) g[i].data, (ber_len_t) g[i].len);
        }

        if (rc != -1) {
            rc = ber_printf(ber, "]{s}}}", LDAP_NO_ATTRS);
        }
    }

    if (rc == -1) {
        ngx_log_error(NGX_LOG_ALERT, &conn->log, 0,
                      "esp: ber_printf() failed for a search request");
        ber_free(ber, 1);
        return NGX_ERROR;
    }

    return ngx_esp_ldap_flatten(conn, ber);
}


static ngx_int_t
ngx_esp_ldap_encode_starttls(ngx_esp_ldap_conn_t *conn)
{
    ber_int_t    id;
    BerElement  *ber;

    ngx_esp_ldap_free_out(conn);

    id = ngx_esp_ldap_next_msgid(conn);

    ber = ber_alloc_t(LBER_USE_DER);
    if (ber == NULL) {
        return NGX_ERROR;
    }

    if (ber_printf(ber, "{it{ts}}", id, LDAP_REQ_EXTENDED,
                   LDAP_TAG_EXOP_REQ_OID, LDAP_EXOP_START_TLS)
        == -1)
    {
        ngx_log_error(NGX_LOG_ALERT, &conn->log, 0,
                      "esp: ber_printf() failed for a StartTLS request");
        ber_free(ber, 1);
        return NGX_ERROR;
    }

    return ngx_esp_ldap_flatten(conn, ber);
}


/* takes the request out of "ber" (which holds no secret) and frees it */

static ngx_int_t
ngx_esp_ldap_flatten(ngx_esp_ldap_conn_t *conn, BerElement *ber)
{
    struct berval  bv;

    if (ber_flatten2(ber, &bv, 0) == -1) {
        ber_free(ber, 1);
        return NGX_ERROR;
    }

    conn->out = ngx_alloc(bv.bv_len, &conn->log);
    if (conn->out == NULL) {
        ber_free(ber, 1);
        return NGX_ERROR;
    }

    ngx_memcpy(conn->out, bv.bv_val, bv.bv_len);

    conn->out_len = bv.bv_len;
    conn->out_sent = 0;
    conn->secret = 0;

    ber_free(ber, 1);

    return NGX_OK;
}


static void
ngx_esp_ldap_free_out(ngx_esp_ldap_conn_t *conn)
{
    if (conn->out == NULL) {
        return;
    }

    if (conn->secret) {
        ngx_explicit_memzero(conn->out, conn->out_len);
        conn->secret = 0;
    }

    ngx_free(conn->out);

    conn->out = NULL;
    conn->out_len = 0;
    conn->out_sent = 0;
}


static size_t
ngx_esp_ldap_length_size(size_t len)
{
    if (len < 0x80) {
        return 1;
    }

    if (len < 0x100) {
        return 2;
    }

    if (len < 0x10000) {
        return 3;
    }

    if (len < 0x1000000) {
        return 4;
    }

    return 5;
}


static u_char *
ngx_esp_ldap_put_length(u_char *p, size_t len)
{
    size_t  n;

    if (len < 0x80) {
        *p++ = (u_char) len;
        return p;
    }

    n = ngx_esp_ldap_length_size(len) - 1;

    *p++ = (u_char) (0x80 | n);

    while (n) {
        n--;
        *p++ = (u_char) (len >> (8 * n));
    }

    return p;
}


/* a server's text, fit for a log line */

static size_t
ngx_esp_ldap_printable(u_char *dst, size_t size, struct berval *src)
{
    u_char  *s;
    size_t   i, n;

    n = ngx_min(size, src->bv_len);
    s = (u_char *) src->bv_val;

    for (i = 0; i < n; i++) {
        dst[i] = (s[i] < 0x20 || s[i] == 0x7f || s[i] == '"') ? '?' : s[i];
    }

    return n;
}


/* "80090308: LdapErr: DSID-0C0903A9, comment: ..., data 52e, v1db1" */

static ngx_uint_t
ngx_esp_ldap_ad_code(struct berval *diag)
{
    u_char      *p, *last, ch;
    ngx_uint_t   code, n;

    if (diag->bv_len == 0) {
        return 0;
    }

    p = (u_char *) diag->bv_val;
    last = p + diag->bv_len;

    p = ngx_strlcasestrn(p, last, (u_char *) "data ", 5 - 1);

    if (p == NULL) {
        return 0;
    }

    p += 5;
    code = 0;

    for (n = 0; p < last && n < 8; p++, n++) {
        ch = *p;

        if (ch >= '0' && ch <= '9') {
            code = code * 16 + (ch - '0');
            continue;
        }

        ch |= 0x20;

        if (ch >= 'a' && ch <= 'f') {
            code = code * 16 + (ch - 'a' + 10);

        } else {
            break;
        }
    }

    return code;
}


static ngx_esp_auth_result_e
ngx_esp_ldap_ad_result(ngx_uint_t code)
{
    switch (code) {
    case 0x530:
        return NGX_ESP_AUTH_LOGON_HOURS;
    case 0x531:
        return NGX_ESP_AUTH_WORKSTATION;
    case 0x532:
        return NGX_ESP_AUTH_PASSWORD_EXPIRED;
    case 0x533:
        return NGX_ESP_AUTH_DISABLED;
    case 0x701:
        return NGX_ESP_AUTH_ACCOUNT_EXPIRED;
    case 0x773:
        return NGX_ESP_AUTH_MUST_CHANGE;
    case 0x775:
        return NGX_ESP_AUTH_LOCKED;
    default: /* 525, 52e, and anything else */
        return NGX_ESP_AUTH_BAD_CREDENTIALS;
    }
}


static const char *
ngx_esp_ldap_ad_text(ngx_uint_t code)
{
    switch (code) {
    case 0x525:
        return "no such account";
    case 0x52e:
        return "wrong password";
    case 0x530:
        return "not permitted at this time";
    case 0x531:
        return "not permitted from this workstation";
    case 0x532:
        return "its password expired";
    case 0x533:
        return "account disabled";
    case 0x701:
        return "account expired";
    case 0x773:
        return "it must change its password";
    case 0x775:
        return "account locked out";
    default:
        return "refused";
    }
}
