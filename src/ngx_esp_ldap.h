
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

/* what a modify does with an attribute (RFC 4511 4.6) */
#define NGX_ESP_LDAP_MOD_ADD          0
#define NGX_ESP_LDAP_MOD_DELETE       1
#define NGX_ESP_LDAP_MOD_REPLACE      2

/* one change of ngx_esp_ldap_modify() */
typedef struct {
    ngx_uint_t                 op;           /* NGX_ESP_LDAP_MOD_* */
    ngx_str_t                  attr;
    ngx_array_t               *values;       /* ngx_str_t, binary; or NULL */
} ngx_esp_ldap_change_t;

/* the values of one attribute read from the user's entry */
typedef struct {
    ngx_str_t                  name;         /* as asked in lr->attrs */
    ngx_array_t               *values;       /* ngx_str_t; NULL: none */
} ngx_esp_ldap_attr_t;

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

    /*
     * Optional: attributes (ngx_str_t names) to read from the user's
     * entry once the bind succeeded: in the group check when there is
     * one, else in a base-object search, as the service account
     * (ldap_bind_dn) or, without one, as the user; needs ldap_base_dn.
     */
    ngx_array_t               *attrs;

    /* ngx_esp_ldap_modify() and ngx_esp_ldap_read() only */
    ngx_str_t                  dn;           /* the entry; "": the user's */
    ngx_array_t               *changes;      /* ngx_esp_ldap_change_t */
    unsigned                   service:1;    /* bind as ldap_bind_dn */

    /* filled by the directory client before the handler is called */
    ngx_esp_auth_result_e      result;
    ngx_uint_t                 ad_code;      /* 0x773 etc., 0 if none */
    ngx_str_t                  dc;           /* the server that answered */
    ngx_str_t                  logon_name;   /* the name that was bound */
    ngx_str_t                  user_dn;      /* if it was looked up */

    /* with "attrs": ngx_esp_ldap_attr_t per name; NULL: entry not read */
    ngx_array_t               *values;

    /*
     * A modify's answer: its LDAP result code (-1: none came), the
     * server's diagnostic text (binary: escape it for a log line), and
     * in ad_code the Windows error code that starts it (see
     * ngx_esp_ldap_error_code()), else its "data" code
     */
    ngx_int_t                  ldap_code;
    ngx_str_t                  diag;

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
 * An LDAP Modify of lr->dn (or, when empty, of the user's entry, looked
 * up under ldap_base_dn like a group check does) with lr->changes, on a
 * connection bound as the user (lr->user, lr->password: a wrong password
 * ends it with that bind's result, as a login) or, with lr->service, as
 * the service account.  Returns and calls back as
 * ngx_esp_ldap_authenticate() does; lr->result NGX_ESP_AUTH_OK means the
 * directory ANSWERED the modify: lr->ldap_code says how (0: done),
 * lr->diag and lr->ad_code why not.  NGX_ESP_AUTH_NOT_PERMITTED: the
 * user's entry was not found.  DCs fail over until the modify is sent,
 * never after: a modify that timed out may have been applied
 * (NGX_ESP_AUTH_UNAVAILABLE with lr->ldap_code -1).
 */
ngx_int_t ngx_esp_ldap_modify(ngx_esp_ldap_req_t *lr);

/*
 * Reads lr->attrs of lr->dn (or, when empty, of the user's entry) into
 * lr->values, bound as ngx_esp_ldap_modify() binds; lr->values stays
 * NULL when the entry is not there or not readable.  Fails over freely.
 */
ngx_int_t ngx_esp_ldap_read(ngx_esp_ldap_req_t *lr);

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
 * A modify as the service account for lr->user (a password change with
 * the old password in it) counts as that user's bind: its outcome is
 * NGX_ESP_AUTH_BAD_CREDENTIALS when AD says the old password is wrong.
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

/*
 * The Windows error code first in a directory's text, "0000052D: ...";
 * 0 if none.  For a password change: 0x52d a password restriction
 * (length, complexity, history, minimum age), 0x56 a wrong old password.
 */
ngx_uint_t ngx_esp_ldap_error_code(u_char *p, size_t len);

#define NGX_ESP_LDAP_ERROR_INVALID_PASSWORD     0x56
#define NGX_ESP_LDAP_ERROR_PASSWORD_RESTRICTION 0x52d

/* this worker's counters, one per ldap_server; NULL before init_worker */
ngx_esp_ldap_dc_stats_t *ngx_esp_ldap_stats(ngx_esp_domain_t *d,
    ngx_uint_t *n);

/* "ok", "bad_credentials", ...: stable names for logs and variables */
const char *ngx_esp_auth_result_name(ngx_esp_auth_result_e rc);


#endif /* _NGX_ESP_LDAP_H_INCLUDED_ */
