
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#ifndef _NGX_ESP_H_INCLUDED_
#define _NGX_ESP_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/* esp_client_auth */
#define NGX_ESP_CLIENT_FORM       1
#define NGX_ESP_CLIENT_BASIC      2
#define NGX_ESP_CLIENT_DELEGATE   3

/* esp_server_auth */
#define NGX_ESP_SERVER_NONE       1
#define NGX_ESP_SERVER_BASIC      2
#define NGX_ESP_SERVER_FORM       3

/* esp_delegate_basic */
#define NGX_ESP_DELEGATE_VERIFY   1
#define NGX_ESP_DELEGATE_PASS     2
#define NGX_ESP_DELEGATE_REFUSE   3

/* esp_bearer */
#define NGX_ESP_BEARER_OFF        1
#define NGX_ESP_BEARER_PASS       2
#define NGX_ESP_BEARER_VERIFY     3

/* esp_cookie samesite= */
#define NGX_ESP_SAMESITE_OFF      1
#define NGX_ESP_SAMESITE_LAX      2
#define NGX_ESP_SAMESITE_STRICT   3
#define NGX_ESP_SAMESITE_NONE     4

/* esp_language */
#define NGX_ESP_LANG_AUTO         0
#define NGX_ESP_LANG_EN           1
#define NGX_ESP_LANG_DE           2

/* esp_login_messages */
#define NGX_ESP_MESSAGES_GENERIC  1
#define NGX_ESP_MESSAGES_DETAILED 2

/* logon_format */
#define NGX_ESP_LOGON_PRINCIPAL   1
#define NGX_ESP_LOGON_USERNAME    2
#define NGX_ESP_LOGON_UNSPECIFIED 3


#define ngx_esp_isalnum(c)                                                    \
    (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z')                 \
     || ((c) >= '0' && (c) <= '9'))


typedef struct ngx_esp_domain_s  ngx_esp_domain_t;


typedef struct {
    ngx_str_t                  name;         /* as written, for logs */
    ngx_url_t                  url;          /* host and port */
    ngx_uint_t                 ldaps;        /* ldaps:// */
    ngx_uint_t                 starttls;     /* ldap:// ... starttls */
} ngx_esp_ldap_server_conf_t;


/* one esp_sso_domain { } block */
struct ngx_esp_domain_s {
    ngx_str_t                  name;
    ngx_array_t                servers;      /* ngx_esp_ldap_server_conf_t */
    ngx_str_t                  ca_certificate;
    ngx_flag_t                 verify;
    ngx_str_t                  bind_dn;
    ngx_str_t                  bind_password;    /* wiped on exit */
    ngx_str_t                  base_dn;
    ngx_msec_t                 timeout;
    ngx_uint_t                 logon_format;
    ngx_str_t                  logon_domain;
    ngx_str_t                  netbios_domain;
    ngx_int_t                  max_failed_auths;
    time_t                     reset_fail_timeout;
    time_t                     unblock_timeout;
    ngx_flag_t                 smart_lockout;
    ngx_int_t                  familiar_failed_auths;
    time_t                     familiar_remember;
    time_t                     public_idle;
    time_t                     public_max;
    time_t                     private_idle;
    time_t                     private_max;
    time_t                     retry_down;       /* ldap_down_retry */
    ngx_int_t                  pool_size;        /* ldap_connections */
    time_t                     expiry_warning;   /* 0: off */

    /* the second factor (src/ngx_esp_mfa.c, src/ngx_esp_totp.c) */
    ngx_str_t                  totp_attribute;
    ngx_array_t               *totp_keys;        /* ngx_esp_key_t */
    ngx_str_t                  totp_issuer;
    ngx_array_t               *totp_attrs;       /* what a login reads */

    ngx_ssl_t                 *ssl;              /* set in init_module */

    /* per worker: the directory client's state (src/ngx_esp_ldap.c) */
    void                      *ldap;
    /* per worker: how long the directory takes to refuse (refusal.c) */
    void                      *refusals;
    /* radius_* directives: ngx_esp_radius_conf_t, or NULL (radius.c) */
    void                      *radius;

    ngx_uint_t                 defined;
    u_char                    *file;             /* where it was defined, */
    ngx_uint_t                 line;
    u_char                    *used_file;        /* or first used */
    ngx_uint_t                 used_line;
};


typedef struct {
    ngx_array_t                domains;      /* ngx_esp_domain_t * */
    ngx_array_t               *keys;         /* ngx_esp_key_t */
    ngx_array_t               *password_keys;    /* ngx_esp_key_t */
    ngx_shm_zone_t            *shm_zone;
    void                      *cluster;      /* ngx_esp_redis_conf_t */
} ngx_esp_main_conf_t;


/* a directory pattern such as "/owa/" and a star, case-insensitive */
typedef struct {
    ngx_str_t                  pattern;
} ngx_esp_path_pattern_t;


/* a host pattern: "mail.contoso.com" or "*.contoso.com" */
typedef struct {
    ngx_str_t                  name;         /* lowercase; without "*." */
    ngx_uint_t                 wildcard;
} ngx_esp_host_pattern_t;


typedef struct {
    ngx_esp_domain_t          *domain;       /* NULL: esp off */

    ngx_array_t               *allowed_hosts;    /* ngx_esp_host_pattern_t */
    ngx_array_t               *allowed_dirs;     /* ngx_esp_path_pattern_t */
    ngx_array_t               *excluded_dirs;    /* ngx_esp_path_pattern_t */

    ngx_uint_t                 client_auth;
    ngx_uint_t                 server_auth;
    ngx_uint_t                 delegate_basic;   /* esp_delegate_basic */
    ngx_str_t                  realm;            /* esp_realm */
    ngx_uint_t                 login_messages;   /* esp_login_messages */
    time_t                     basic_cache;      /* esp_basic_cache */

    /* OAuth Bearer (src/ngx_esp_bearer.c) */
    ngx_uint_t                 bearer;           /* esp_bearer */
    ngx_array_t               *bearer_keys;      /* ngx_esp_jwk_t */
    ngx_array_t               *bearer_issuers;   /* ngx_str_t */
    ngx_array_t               *bearer_audiences; /* ngx_str_t */
    ngx_str_t                  bearer_authorization_uri;
    time_t                     bearer_clock_skew;

    /* form login */
    ngx_str_t                  greeting;
    ngx_flag_t                 public_private;
    ngx_flag_t                 password_change;  /* /_esp/password */
    ngx_str_t                  password_form;
    ngx_array_t               *logoff;           /* ngx_esp_path_pattern_t */
    ngx_array_t               *permitted_groups; /* ngx_str_t DNs */
    ngx_str_t                  cookie_name;
    ngx_uint_t                 samesite;
    ngx_str_t                  login_page;       /* custom template */
    ngx_str_t                  owa_auth;         /* where auth.owa is */
    ngx_str_t                  default_url;
    ngx_str_t                  title;
    ngx_uint_t                 lang;

    /* the second factor (src/ngx_esp_mfa.c) */
    ngx_uint_t                 mfa;              /* NGX_ESP_MFA_* */
    ngx_flag_t                 mfa_enroll;
    time_t                     mfa_timeout;
    u_char                    *mfa_file;         /* where it was set */
    ngx_uint_t                 mfa_line;

    u_char                    *esp_file;         /* where "esp" was set */
    ngx_uint_t                 esp_line;
} ngx_esp_loc_conf_t;


extern ngx_module_t  ngx_exchange_esp_module;


/*
 * A walk over the request's Cookie headers.  nginx 1.23 replaced the
 * array r->headers_in.cookies with the chain r->headers_in.cookie; this is
 * the one place that knows both.  Start with a zeroed walk.
 */

typedef struct {
    ngx_table_elt_t           *h;            /* the current header */
    ngx_uint_t                 n;            /* headers taken so far */
} ngx_esp_cookie_walk_t;


static ngx_inline ngx_table_elt_t *
ngx_esp_cookie_header_next(ngx_http_request_t *r, ngx_esp_cookie_walk_t *w)
{
#if (nginx_version >= 1023000)

    if (w->n++ == 0) {
        w->h = r->headers_in.cookie;

    } else if (w->h) {
        w->h = w->h->next;
    }

#else

    ngx_table_elt_t  **elts;

    elts = r->headers_in.cookies.elts;
    w->h = (w->n < r->headers_in.cookies.nelts) ? elts[w->n++] : NULL;

#endif

    return w->h;
}


/*
 * The header the walk stands on leaves nginx's list of cookie headers
 * (not r->headers_in.headers); the walk goes on with the next one.
 */

static ngx_inline void
ngx_esp_cookie_header_drop(ngx_http_request_t *r, ngx_esp_cookie_walk_t *w)
{
#if (nginx_version >= 1023000)

    ngx_table_elt_t  **hp;

    /* w->h keeps its "next": the walk goes on from it */

    for (hp = &r->headers_in.cookie; *hp; hp = &(*hp)->next) {
        if (*hp == w->h) {
            *hp = w->h->next;
            return;
        }
    }

#else

    ngx_table_elt_t  **elts;

    elts = r->headers_in.cookies.elts;

    if (w->n == 0 || elts[w->n - 1] != w->h) {
        return;
    }

    ngx_memmove(&elts[w->n - 1], &elts[w->n],
                (r->headers_in.cookies.nelts - w->n)
                * sizeof(ngx_table_elt_t *));

    r->headers_in.cookies.nelts--;
    w->n--;

#endif
}


#endif /* _NGX_ESP_H_INCLUDED_ */
