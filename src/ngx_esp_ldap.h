
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#ifndef _NGX_ESP_LDAP_H_INCLUDED_
#define _NGX_ESP_LDAP_H_INCLUDED_


#include "ngx_esp.h"


/*
 * The outcome of one authentication; the AD "data" code that led to it
 * is kept beside it in ngx_esp_ldap_req_t.ad_code.
 */
typedef enum {
    NGX_ESP_AUTH_OK = 0,
    NGX_ESP_AUTH_BAD_CREDENTIALS,     /* 525, 52e, and any other 49 */
    NGX_ESP_AUTH_LOGON_HOURS,         /* 530 */
    NGX_ESP_AUTH_WORKSTATION,         /* 531 */
    NGX_ESP_AUTH_PASSWORD_EXPIRED,    /* 532 */
    NGX_ESP_AUTH_DISABLED,            /* 533 */
    NGX_ESP_AUTH_ACCOUNT_EXPIRED,     /* 701 */
    NGX_ESP_AUTH_MUST_CHANGE,         /* 773 */
    NGX_ESP_AUTH_LOCKED,              /* 775 */
    NGX_ESP_AUTH_NOT_PERMITTED,       /* not in a permitted group */
    NGX_ESP_AUTH_BLOCKED,             /* the gate's own lockout */
    NGX_ESP_AUTH_INVALID,             /* refused before any bind */
    NGX_ESP_AUTH_UNAVAILABLE,         /* no domain controller answered */
    NGX_ESP_AUTH_SERVICE_ACCOUNT,     /* the bind account was refused */
    NGX_ESP_AUTH_ERROR
} ngx_esp_auth_result_e;


typedef struct ngx_esp_ldap_req_s  ngx_esp_ldap_req_t;

typedef void (*ngx_esp_ldap_done_pt)(ngx_esp_ldap_req_t *lr);

/* the outcome of a bind whose caller went away (ngx_esp_ldap_abort()) */
typedef void (*ngx_esp_ldap_orphan_pt)(void *data,
    ngx_esp_auth_result_e result);


struct ngx_esp_ldap_req_s {
    /* filled by the caller */
    ngx_esp_domain_t          *domain;
    ngx_str_t                  user;         /* as the user typed it */
    ngx_str_t                  password;
    ngx_array_t               *groups;       /* ngx_str_t DNs, or NULL */
    ngx_esp_ldap_done_pt       handler;
    void                      *data;
    ngx_log_t                 *log;
    ngx_pool_t                *pool;         /* for the results below */

    /* filled by the directory client before the handler is called */
    ngx_esp_auth_result_e      result;
    ngx_uint_t                 ad_code;      /* 0x773 etc., 0 if none */
    ngx_str_t                  dc;           /* the server that answered */
    ngx_str_t                  logon_name;   /* the name that was bound */
    ngx_str_t                  user_dn;      /* if it was looked up */

    /* private to the directory client */
    void                      *op;
};


/*
 * What one worker knows about one domain controller, for status output:
 * ngx_esp_ldap_stats() returns one per "ldap_server", in their order.
 */
typedef struct {
    ngx_str_t                  name;         /* "ldaps://192.0.2.11:636" */
    ngx_uint_t                 binds_ok;     /* user binds accepted */
    ngx_uint_t                 binds_failed; /* user binds refused (49) */
    ngx_uint_t                 errors;       /* connect, TLS, timeouts... */
    ngx_uint_t                 timeouts;     /* of which timed out */
    ngx_msec_t                 last_latency; /* of the last user bind */
    time_t                     down_until;   /* 0: up; else skipped until */
    ngx_uint_t                 connections;  /* open now */
    ngx_uint_t                 idle;         /* of which idle in the pool */
} ngx_esp_ldap_dc_stats_t;


ngx_int_t ngx_esp_ldap_init_domain(ngx_conf_t *cf, ngx_esp_domain_t *d);
ngx_int_t ngx_esp_ldap_init_worker(ngx_cycle_t *cycle, ngx_esp_domain_t *d);
void ngx_esp_ldap_exit_worker(ngx_cycle_t *cycle, ngx_esp_domain_t *d);

/*
 * Starts an authentication.  Returns NGX_AGAIN when lr->handler will be
 * called later (never from inside this call), NGX_OK when lr->result was
 * decided at once (e.g. invalid input: no directory was contacted; the
 * handler is then not called), or NGX_ERROR.
 *
 * The handler runs from a posted event: like any event handler that
 * touches a request, it should end with ngx_http_run_posted_requests().
 * A caller whose request may go away first (client closed, timeout) must
 * call ngx_esp_ldap_abort() from a request pool cleanup.
 */
ngx_int_t ngx_esp_ldap_authenticate(ngx_esp_ldap_req_t *lr);

/*
 * The caller goes away: lr->handler will never be called and lr is not
 * touched again; a bind already sent finishes in the background and its
 * connection returns to the pool.  Harmless when nothing is running.
 * Returns what the directory makes of the user's password: NGX_DECLINED,
 * nothing (no user bind was sent); NGX_DONE, the outcome is known and in
 * lr->result (the bind was answered, or accepted and a group check was
 * under way: NGX_ESP_AUTH_OK); NGX_AGAIN, the bind is out: "orphan", if
 * not NULL, is called once with its outcome when it comes, or with
 * NGX_ESP_AUTH_UNAVAILABLE when no answer does (also at worker exit).
 */
ngx_int_t ngx_esp_ldap_abort(ngx_esp_ldap_req_t *lr,
    ngx_esp_ldap_orphan_pt orphan, void *data);

/*
 * The name to bind as, per the domain's logon_format.  NGX_DECLINED: the
 * name cannot be a logon name ("a\b\c", "user@", "DOMAIN\", ...).
 */
ngx_int_t ngx_esp_ldap_build_logon_name(ngx_pool_t *pool,
    ngx_esp_domain_t *d, ngx_str_t *user, ngx_str_t *out);

/*
 * RFC 4515 escaping of a value for a string filter: "*", "(", ")", "\",
 * NUL and control characters become \XX; UTF-8 stays as it is.  "out"
 * may point to "value" itself when nothing needed escaping.
 */
ngx_int_t ngx_esp_ldap_escape_filter_value(ngx_pool_t *pool,
    ngx_str_t *value, ngx_str_t *out);

/* this worker's counters, one per ldap_server; NULL before init_worker */
ngx_esp_ldap_dc_stats_t *ngx_esp_ldap_stats(ngx_esp_domain_t *d,
    ngx_uint_t *n);

/* "ok", "bad_credentials", ...: stable names for logs and variables */
const char *ngx_esp_auth_result_name(ngx_esp_auth_result_e rc);


#endif /* _NGX_ESP_LDAP_H_INCLUDED_ */
