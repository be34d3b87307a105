
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#ifndef _NGX_ESP_REQUEST_H_INCLUDED_
#define _NGX_ESP_REQUEST_H_INCLUDED_


#include "ngx_esp.h"
#include "ngx_esp_ldap.h"
#include "ngx_esp_lockout.h"
#include "ngx_esp_session.h"


/* the module's reserved endpoints */
#define NGX_ESP_LOGIN_PATH      "/_esp/login"
#define NGX_ESP_LOGOUT_PATH     "/_esp/logout"

#define NGX_ESP_MAX_USER        256
#define NGX_ESP_MAX_PASSWORD    256
#define NGX_ESP_MAX_URL         2048


/* what a login is for */
#define NGX_ESP_LOGIN_BASIC     1
#define NGX_ESP_LOGIN_FORM      2


/* the per-request state; it survives internal redirects (see get_ctx) */
typedef struct {
    ngx_esp_ldap_req_t         lr;

    ngx_str_t                  user;         /* as the client gave it */
    ngx_str_t                  password;     /* wiped with the pool */
    ngx_str_t                  return_url;   /* form login: where to go */
    ngx_str_t                  key;          /* lowercased logon name */

    ngx_esp_session_t          session;      /* a valid session cookie */
    ngx_esp_lockout_t         *lockout;      /* this login's, or NULL */

    ngx_str_t                  set_cookie;   /* added by the header filter */
    ngx_str_t                  location;     /* replaces Exchange's */

    ngx_int_t                  status;       /* the decision on re-entry */
    ngx_esp_auth_result_e      result;
    ngx_uint_t                 login;        /* NGX_ESP_LOGIN_* */

    unsigned                   waiting:1;
    unsigned                   done:1;
    unsigned                   authenticated:1;
    unsigned                   body_read:1;
    unsigned                   has_session:1;
    unsigned                   private:1;
    unsigned                   handoff:1;    /* POST auth.owa sent */
    unsigned                   logoff:1;
    unsigned                   cached:1;     /* Basic: from the cache */
    unsigned                   de:1;         /* German pages */
} ngx_esp_ctx_t;


ngx_esp_ctx_t *ngx_esp_get_ctx(ngx_http_request_t *r, ngx_uint_t create);
ngx_esp_main_conf_t *ngx_esp_main_conf(ngx_http_request_t *r);
ngx_int_t ngx_esp_user_key(ngx_http_request_t *r, ngx_esp_domain_t *d,
    ngx_str_t *logon, ngx_str_t *key);
void ngx_esp_log_login(ngx_http_request_t *r, ngx_esp_ctx_t *ctx);
ngx_int_t ngx_esp_authenticate(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);
ngx_int_t ngx_esp_set_header(ngx_http_request_t *r, ngx_list_t *headers,
    char *name, ngx_str_t *value, ngx_table_elt_t **slot);

/* src/ngx_esp_form.c */
ngx_int_t ngx_esp_form_endpoint(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);
ngx_int_t ngx_esp_form_access(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);
ngx_int_t ngx_esp_form_login_done(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);
ngx_int_t ngx_esp_form_header_filter(ngx_http_request_t *r,
    ngx_esp_ctx_t *ctx);
ngx_int_t ngx_esp_form_server_basic(ngx_http_request_t *r,
    ngx_esp_ctx_t *ctx);
ngx_int_t ngx_esp_form_init(ngx_conf_t *cf);

/*
 * Every "name=value" pair of every Cookie header, unquoted: start with a
 * zeroed walk and *pos NULL; NGX_OK for each pair, then NGX_DECLINED.
 */
ngx_int_t ngx_esp_cookie_next(ngx_http_request_t *r,
    ngx_esp_cookie_walk_t *w, u_char **pos, ngx_str_t *name,
    ngx_str_t *value);


#endif /* _NGX_ESP_REQUEST_H_INCLUDED_ */
