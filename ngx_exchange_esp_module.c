
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_esp.h"
#include "ngx_esp_match.h"
#include "ngx_esp_domain.h"
#include "ngx_esp_ldap.h"
#include "ngx_esp_lockout.h"
#include "ngx_esp_request.h"
#include "ngx_esp_session.h"
#include "ngx_esp_shm.h"
#include "ngx_esp_status.h"


#define NGX_ESP_LOG_USER_LEN  256


static ngx_int_t ngx_esp_access_handler(ngx_http_request_t *r);
static ngx_int_t ngx_esp_access(ngx_http_request_t *r);
static ngx_int_t ngx_esp_strip_cookies(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf);
static ngx_int_t ngx_esp_remove_header_elt(ngx_http_request_t *r,
    ngx_list_t *headers, ngx_table_elt_t *elt);
static ngx_int_t ngx_esp_copy_headers(ngx_http_request_t *r,
    ngx_list_t *headers, ngx_uint_t n, char *name, ngx_table_elt_t *elt);
static ngx_int_t ngx_esp_host_allowed(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf);
static ngx_int_t ngx_esp_gate(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_uint_t *excluded);
static ngx_int_t ngx_esp_delegate(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);
static ngx_int_t ngx_esp_basic(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);
static void ngx_esp_ldap_done(ngx_esp_ldap_req_t *lr);
static ngx_int_t ngx_esp_auth_finish(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);
static void ngx_esp_ctx_cleanup(void *data);
static ngx_int_t ngx_esp_basic_challenge(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf);
static ngx_int_t ngx_esp_server_auth(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf);
static ngx_int_t ngx_esp_header_filter(ngx_http_request_t *r);

static ngx_int_t ngx_esp_user_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_esp_auth_result_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

static ngx_int_t ngx_esp_add_variables(ngx_conf_t *cf);
static void *ngx_esp_create_main_conf(ngx_conf_t *cf);
static char *ngx_esp_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_esp_create_loc_conf(ngx_conf_t *cf);
static char *ngx_esp_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_esp_init(ngx_conf_t *cf);
static ngx_int_t ngx_esp_init_worker(ngx_cycle_t *cycle);
static void ngx_esp_exit_worker(ngx_cycle_t *cycle);
static void ngx_esp_exit_master(ngx_cycle_t *cycle);

static char *ngx_esp(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_esp_patterns(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


typedef struct {
    size_t                     size;
    char                    *(*parse)(ngx_conf_t *cf, ngx_str_t *value,
                                      void *elt);
} ngx_esp_patterns_t;


static ngx_esp_patterns_t  ngx_esp_host_patterns = {
    sizeof(ngx_esp_host_pattern_t), ngx_esp_parse_host_pattern
};

static ngx_esp_patterns_t  ngx_esp_path_patterns = {
    sizeof(ngx_esp_path_pattern_t), ngx_esp_parse_path_pattern
};
static char *ngx_esp_cookie(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_esp_login_page(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_esp_local_url(ngx_conf_t *cf, void *post, void *data);
static char *ngx_esp_password_form(ngx_conf_t *cf, void *post, void *data);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;


static ngx_conf_post_handler_pt  ngx_esp_local_url_p = ngx_esp_local_url;
static ngx_conf_post_handler_pt  ngx_esp_password_form_p =
    ngx_esp_password_form;


static ngx_conf_enum_t  ngx_esp_languages[] = {
    { ngx_string("auto"), NGX_ESP_LANG_AUTO },
    { ngx_string("en"), NGX_ESP_LANG_EN },
    { ngx_string("de"), NGX_ESP_LANG_DE },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_esp_client_auth_modes[] = {
    { ngx_string("form"), NGX_ESP_CLIENT_FORM },
    { ngx_string("basic"), NGX_ESP_CLIENT_BASIC },
    { ngx_string("delegate"), NGX_ESP_CLIENT_DELEGATE },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_esp_delegate_basic_modes[] = {
    { ngx_string("verify"), NGX_ESP_DELEGATE_VERIFY },
    { ngx_string("pass"), NGX_ESP_DELEGATE_PASS },
    { ngx_string("refuse"), NGX_ESP_DELEGATE_REFUSE },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_esp_server_auth_modes[] = {
    { ngx_string("none"), NGX_ESP_SERVER_NONE },
    { ngx_string("basic"), NGX_ESP_SERVER_BASIC },
    { ngx_string("form"), NGX_ESP_SERVER_FORM },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_esp_commands[] = {

    { ngx_string("esp_sso_domain"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_BLOCK|NGX_CONF_TAKE1,
      ngx_esp_sso_domain_block,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("esp"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_esp,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("esp_allowed_hosts"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_esp_patterns,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_esp_loc_conf_t, allowed_hosts),
      &ngx_esp_host_patterns },

    { ngx_string("esp_allowed_dirs"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_esp_patterns,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_esp_loc_conf_t, allowed_dirs),
      &ngx_esp_path_patterns },

    { ngx_string("esp_preauth_excluded_dirs"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_esp_patterns,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_esp_loc_conf_t, excluded_dirs),
      &ngx_esp_path_patterns },

    { ngx_string("esp_client_auth"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_esp_loc_conf_t, client_auth),
      &ngx_esp_client_auth_modes },

    { ngx_string("esp_server_auth"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_esp_loc_conf_t, server_auth),
      &ngx_esp_server_auth_modes },

    { ngx_string("esp_delegate_basic"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_esp_loc_conf_t, delegate_basic),
      &ngx_esp_delegate_basic_modes },

    { ngx_string("esp_realm"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_esp_loc_conf_t, realm),
      NULL },

    { ngx_string("esp_shared_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE123,
      ngx_esp_shared_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("esp_session_key"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_esp_session_key,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_esp_main_conf_t, keys),
      NULL },

    { ngx_string("esp_basic_cache"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_esp_loc_conf_t, basic_cache),
      NULL },

    { ngx_string("esp_greeting"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_esp_loc_conf_t, greeting),
      NULL },

    { ngx_string("esp_title"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_esp_loc_conf_t, title),
      NULL },

    { ngx_string("esp_language"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_esp_loc_conf_t, lang),
      &ngx_esp_languages },

    { ngx_string("esp_public_private"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_esp_loc_conf_t, public_private),
      NULL },

    { ngx_string("esp_password_form"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_esp_loc_conf_t, password_form),
      &ngx_esp_password_form_p },

    { ngx_string("esp_logoff"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_esp_patterns,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_esp_loc_conf_t, logoff),
      &ngx_esp_path_patterns },

    { ngx_string("esp_permitted_groups"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_conf_set_str_array_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_esp_loc_conf_t, permitted_groups),
      NULL },

    { ngx_string("esp_cookie"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_esp_cookie,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("esp_login_page"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_esp_login_page,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("esp_default_url"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_esp_loc_conf_t, default_url),
      &ngx_esp_local_url_p },

    { ngx_string("esp_owa_auth"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_esp_loc_conf_t, owa_auth),
      &ngx_esp_local_url_p },

    { ngx_string("esp_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_esp_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_esp_module_ctx = {
    ngx_esp_add_variables,                 /* preconfiguration */
    ngx_esp_init,                          /* postconfiguration */

    ngx_esp_create_main_conf,              /* create main configuration */
    ngx_esp_init_main_conf,                /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_esp_create_loc_conf,               /* create location configuration */
    ngx_esp_merge_loc_conf                 /* merge location configuration */
};


ngx_module_t  ngx_exchange_esp_module = {
    NGX_MODULE_V1,
    &ngx_esp_module_ctx,                   /* module context */
    ngx_esp_commands,                      /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_esp_init_worker,                   /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_esp_exit_worker,                   /* exit process */
    ngx_esp_exit_master,                   /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_variable_t  ngx_esp_vars[] = {

    { ngx_string("esp_user"), NULL, ngx_esp_user_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("esp_auth_result"), NULL, ngx_esp_auth_result_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


/*
 * Whatever the decision, a request that goes on to Exchange carries none
 * of the gate's own cookies: the session is our bearer token, not
 * Exchange's business.
 */

static ngx_int_t
ngx_esp_access_handler(ngx_http_request_t *r)
{
    ngx_int_t            rc;
    ngx_esp_loc_conf_t  *elcf;

    rc = ngx_esp_access(r);

    if (rc == NGX_OK || rc == NGX_DECLINED) {
        elcf = ngx_http_get_module_loc_conf(r, ngx_exchange_esp_module);

        if (elcf->domain && ngx_esp_strip_cookies(r, elcf) != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return rc;
}


static ngx_int_t
ngx_esp_access(ngx_http_request_t *r)
{
    ngx_int_t            rc;
    ngx_uint_t           excluded;
    ngx_esp_ctx_t       *ctx;
    ngx_esp_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_exchange_esp_module);

    ctx = ngx_esp_get_ctx(r, 0);

    if (ctx && ctx->login && !ctx->done && elcf->domain == NULL) {
        /* a login must never pass as a plain POST to where esp is off */
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "esp: login refused: esp is off at \"%V\"", &r->uri);
        return NGX_HTTP_FORBIDDEN;
    }

    if (elcf->domain == NULL) {
        return NGX_DECLINED;
    }

    if (ctx) {
        if (ctx->waiting || ngx_esp_lockout_waiting(ctx->lockout)) {
            return NGX_AGAIN;
        }

        if (ctx->done) {
            return ngx_esp_auth_finish(r, elcf, ctx);
        }
    }

    rc = ngx_esp_host_allowed(r, elcf);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ctx == NULL) {
        ctx = ngx_esp_get_ctx(r, 1);
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (ctx->login != NGX_ESP_LOGIN_FORM) {
        rc = ngx_esp_form_endpoint(r, elcf, ctx);
        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    rc = ngx_esp_gate(r, elcf, &excluded);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ctx->login == NGX_ESP_LOGIN_FORM) {
        return ngx_esp_form_access(r, elcf, ctx);
    }

    if (elcf->client_auth == NGX_ESP_CLIENT_DELEGATE) {
        return ngx_esp_delegate(r, elcf, ctx);
    }

    if (excluded) {
        /*
         * nobody may try passwords against Exchange past the gate: the
         * lockout and the login log would never see them
         */

        if (r->headers_in.authorization
            && ngx_esp_set_header(r, &r->headers_in.headers, "Authorization",
                                  NULL, &r->headers_in.authorization)
               != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return NGX_DECLINED;
    }

    switch (elcf->client_auth) {

    case NGX_ESP_CLIENT_BASIC:
        return ngx_esp_basic(r, elcf, ctx);

    default: /* NGX_ESP_CLIENT_FORM */
        return ngx_esp_form_access(r, elcf, ctx);
    }
}


/*
 * The state survives internal redirects (a login continues in the
 * location of its return URL), which clear module contexts: it is found
 * again through its pool cleanup, as the realip module does.
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


ngx_esp_main_conf_t *
ngx_esp_main_conf(ngx_http_request_t *r)
{
    return ngx_http_get_module_main_conf(r, ngx_exchange_esp_module);
}


static ngx_int_t
ngx_esp_host_allowed(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf)
{
    if (!ngx_esp_match_hosts(elcf->allowed_hosts, &r->headers_in.server)) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "esp: host \"%V\" is not allowed",
                      &r->headers_in.server);
        return NGX_HTTP_FORBIDDEN;
    }

    return NGX_OK;
}


/*
 * Step 3 of the design: the path must be inside the allowed directories
 * as nginx reads it (r->uri) and as a backend that decodes the raw
 * request line once reads it; a path is excluded from pre-authentication
 * only if it is written plainly, so that no encoding can make an excluded
 * pattern cover a protected path.
 */

static ngx_int_t
ngx_esp_gate(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_uint_t *excluded)
{
    u_char      *q;
    ngx_str_t    raw, canon;
    const char  *reason;

    *excluded = 0;

    if (r->internal) {
        /* a redirect of ours or the operator's: r->uri is what counts */
        raw = r->uri;

    } else {
        raw = r->unparsed_uri;

        q = ngx_strlchr(raw.data, raw.data + raw.len, '?');
        if (q) {
            raw.len = q - raw.data;
        }
    }

    canon.data = ngx_pnalloc(r->pool, raw.len + 1);
    if (canon.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_esp_canonical_path(raw.data, raw.len, &canon, &reason)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "esp: refused request path: %s", reason);
        return NGX_HTTP_BAD_REQUEST;
    }

    if (ngx_strlchr(r->uri.data, r->uri.data + r->uri.len, '\\') != NULL
        || ngx_strlchr(r->uri.data, r->uri.data + r->uri.len, '\0') != NULL)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "esp: refused request path: backslash or NUL");
        return NGX_HTTP_BAD_REQUEST;
    }

    if (!ngx_esp_match_paths(elcf->allowed_dirs, &r->uri)
        || !ngx_esp_match_paths(elcf->allowed_dirs, &canon))
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "esp: path \"%V\" is outside the allowed directories",
                      &r->uri);
        return NGX_HTTP_FORBIDDEN;
    }

    if (elcf->excluded_dirs
        && ngx_esp_match_paths(elcf->excluded_dirs, &r->uri)
        && ngx_esp_match_paths(elcf->excluded_dirs, &canon))
    {
        if (ngx_esp_path_is_plain(raw.data, raw.len)) {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "esp: \"%V\" is excluded from pre-authentication",
                           &r->uri);
            *excluded = 1;

        } else {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "esp: \"%V\" matches an excluded directory but is "
                          "not written plainly: authentication required",
                          &r->uri);
        }
    }

    return NGX_OK;
}


/*
 * Exchange authenticates here (NTLM, Negotiate, OAuth pass on as they
 * are), but a Basic password is one more guess at the directory: it goes
 * through the lockout, the cache and the login log first (verify), or
 * passes unchecked (pass), or is refused (refuse).
 */

static ngx_int_t
ngx_esp_delegate(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx)
{
    ngx_str_t  *auth;

    if (r->headers_in.authorization == NULL
        || elcf->delegate_basic == NGX_ESP_DELEGATE_PASS)
    {
        return NGX_DECLINED;
    }

    auth = &r->headers_in.authorization->value;

    /*
     * the scheme as a backend may read it, in any case and followed by
     * any blank: what nginx cannot parse as Basic is refused, not passed
     */

    if (auth->len < sizeof("Basic") - 1
        || ngx_strncasecmp(auth->data, (u_char *) "Basic",
                           sizeof("Basic") - 1)
           != 0
        || (auth->len > sizeof("Basic") - 1
            && auth->data[sizeof("Basic") - 1] != ' '
            && auth->data[sizeof("Basic") - 1] != '\t'))
    {
        return NGX_DECLINED;
    }

    if (elcf->delegate_basic == NGX_ESP_DELEGATE_REFUSE) {
        /* nothing the client wrote before nginx's ", client: " (fail2ban) */
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "esp: Basic authentication refused "
                      "(esp_delegate_basic refuse)");
        return NGX_HTTP_FORBIDDEN;
    }

    return ngx_esp_basic(r, elcf, ctx);
}


static ngx_int_t
ngx_esp_basic(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx)
{
    ngx_int_t  rc;

    rc = ngx_http_auth_basic_user(r);

    if (rc == NGX_DECLINED) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "esp: no Basic credentials");
        return ngx_esp_basic_challenge(r, elcf);
    }

    if (rc == NGX_ERROR) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "esp: malformed Authorization header");
        return ngx_esp_basic_challenge(r, elcf);
    }

    ctx->user = r->headers_in.user;
    ctx->password = r->headers_in.passwd;
    ctx->login = NGX_ESP_LOGIN_BASIC;

    return ngx_esp_authenticate(r, elcf, ctx);
}


/*
 * One login: the gate's own lockout first (a blocked user never reaches a
 * domain controller, and a slot is held for the bind), then the Basic
 * cache, then the directory.
 */

ngx_int_t
ngx_esp_authenticate(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx)
{
    ngx_int_t            rc;
    ngx_str_t            key;
    ngx_esp_ldap_req_t  *lr;

    lr = &ctx->lr;

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
    lr->handler = ngx_esp_ldap_done;
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
        ctx->done = 1;
        return ngx_esp_auth_finish(r, elcf, ctx);
    }

    if (ngx_esp_user_key(r, elcf->domain, &lr->logon_name, &key) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->key = key;

    /* the lockout's slot (or the cache's answer) before any bind */

    rc = ngx_esp_lockout_begin(r, elcf->domain, &key,
                               (ctx->login == NGX_ESP_LOGIN_BASIC
                                && elcf->basic_cache
                                && elcf->permitted_groups == NULL)
                               ? &ctx->password : NULL,
                               lr, &ctx->lockout);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_AGAIN) {
        /* every slot is taken: the access phase runs again on a timer */
        r->read_event_handler = ngx_http_test_reading;
        return NGX_AGAIN;
    }

    if (rc == NGX_BUSY || rc == NGX_DONE) {
        lr->result = (rc == NGX_DONE) ? NGX_ESP_AUTH_OK : NGX_ESP_AUTH_BLOCKED;

        if (rc == NGX_DONE) {
            ngx_str_set(&lr->dc, "cache");
            ctx->cached = 1;
        }

        ctx->done = 1;
        return ngx_esp_auth_finish(r, elcf, ctx);
    }

    rc = ngx_esp_ldap_authenticate(lr);

    if (rc == NGX_AGAIN) {
        ctx->waiting = 1;
        r->read_event_handler = ngx_http_test_reading;
        return NGX_AGAIN;
    }

    if (rc == NGX_ERROR) {
        ngx_esp_lockout_end(r, ctx->lockout, NGX_ESP_AUTH_ERROR, NULL);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->done = 1;

    return ngx_esp_auth_finish(r, elcf, ctx);
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


/* our cookies out of every Cookie header; an emptied header goes */

static ngx_int_t
ngx_esp_strip_cookies(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf)
{
    u_char                 *p, *last, *start, *end, *eq, *dst;
    size_t                  len;
    ngx_str_t               name;
    ngx_uint_t              ours, changed;
    ngx_table_elt_t        *h;
    ngx_esp_cookie_walk_t   w;

    ngx_memzero(&w, sizeof(ngx_esp_cookie_walk_t));

    while ((h = ngx_esp_cookie_header_next(r, &w)) != NULL) {

        p = h->value.data;
        last = p + h->value.len;

        if (ngx_strlcasestrn(p, last, (u_char *) "esp_", 4 - 1) == NULL
            && ngx_strlcasestrn(p, last, elcf->cookie_name.data,
                                elcf->cookie_name.len - 1) == NULL)
        {
            continue;
        }

        /* "; " between the cookies kept may be longer than what was sent */
        dst = ngx_pnalloc(r->pool, 2 * h->value.len);
        if (dst == NULL) {
            return NGX_ERROR;
        }

        len = 0;
        changed = 0;

        while (p < last) {

            while (p < last && (*p == ' ' || *p == ';')) {
                p++;
            }

            start = p;

            while (p < last && *p != ';') {
                p++;
            }

            end = p;

            if (end == start) {
                continue;
            }

            eq = ngx_strlchr(start, end, '=');
            name.data = start;
            name.len = (eq ? eq : end) - start;

            while (name.len && name.data[name.len - 1] == ' ') {
                name.len--;
            }

            ours = (name.len == elcf->cookie_name.len
                    && ngx_strncmp(name.data, elcf->cookie_name.data,
                                   name.len) == 0)
                   || (name.len == sizeof("esp_csrf") - 1
                       && ngx_strncmp(name.data, "esp_csrf", name.len) == 0)
                   || (name.len == sizeof(NGX_ESP_DEVICE_COOKIE) - 1
                       && ngx_strncmp(name.data, NGX_ESP_DEVICE_COOKIE,
                                      name.len) == 0);

            if (ours) {
                changed = 1;
                continue;
            }

            if (len) {
                dst[len++] = ';';
                dst[len++] = ' ';
            }

            ngx_memcpy(dst + len, start, end - start);
            len += end - start;
        }

        if (!changed) {
            continue;
        }

        if (len == 0) {
            /* a cookie header with nothing left: remove that one */
            if (ngx_esp_remove_header_elt(r, &r->headers_in.headers, h)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            continue;
        }

        h->value.data = dst;
        h->value.len = len;
    }

    return NGX_OK;
}


static void
ngx_esp_ldap_done(ngx_esp_ldap_req_t *lr)
{
    ngx_http_request_t  *r = lr->data;

    ngx_connection_t  *c;
    ngx_esp_ctx_t     *ctx;

    c = r->connection;
    ctx = ngx_esp_get_ctx(r, 0);

    ctx->waiting = 0;
    ctx->done = 1;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "esp: resuming \"%V\" after the directory", &r->uri);

    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = ngx_http_core_run_phases;

    ngx_http_core_run_phases(r);
    ngx_http_run_posted_requests(c);
}


/* the directory (or the cache, or the lockout) has decided */

static ngx_int_t
ngx_esp_auth_finish(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx)
{
    ngx_uint_t            login;
    ngx_esp_ldap_req_t   *lr;
    ngx_esp_main_conf_t  *emcf;

    emcf = ngx_esp_main_conf(r);
    lr = &ctx->lr;
    login = ctx->login;

    if (login == 0) {
        /* decided earlier in this request: a later pass, e.g. error_page */
        return ctx->authenticated ? NGX_DECLINED : NGX_HTTP_FORBIDDEN;
    }

    ctx->login = 0;
    ctx->result = lr->result;

    ngx_esp_log_login(r, ctx);

    /* the lockout hears the outcome: only a bind's success resets it */

    ngx_esp_lockout_end(r, ctx->lockout, lr->result, &ctx->set_cookie);

    if (emcf->shm_zone && ctx->key.len) {

        switch (lr->result) {

        case NGX_ESP_AUTH_OK:

            if (login == NGX_ESP_LOGIN_BASIC && elcf->basic_cache
                && !ctx->cached && elcf->permitted_groups == NULL)
            {
                (void) ngx_esp_cache_store(emcf->shm_zone,
                                           &elcf->domain->name, &ctx->key,
                                           &ctx->password,
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

    if (lr->result == NGX_ESP_AUTH_OK) {
        ctx->authenticated = 1;
        ctx->user = lr->logon_name;
    }

    if (login == NGX_ESP_LOGIN_FORM) {
        return ngx_esp_form_login_done(r, elcf, ctx);
    }

    switch (lr->result) {

    case NGX_ESP_AUTH_OK:
        return ngx_esp_server_auth(r, elcf);

    case NGX_ESP_AUTH_UNAVAILABLE:
    case NGX_ESP_AUTH_SERVICE_ACCOUNT:
    case NGX_ESP_AUTH_ERROR:
        return NGX_HTTP_SERVICE_UNAVAILABLE;

    case NGX_ESP_AUTH_NOT_PERMITTED:
        return NGX_HTTP_FORBIDDEN;

    default:
        return ngx_esp_basic_challenge(r, elcf);
    }
}


static void
ngx_esp_ctx_cleanup(void *data)
{
    ngx_esp_ctx_t  *ctx = data;

    if (ctx->waiting) {
        ctx->waiting = 0;
        (void) ngx_esp_ldap_abort(&ctx->lr, NULL, NULL);
    }

    if (ctx->password.len) {
        ngx_explicit_memzero(ctx->password.data, ctx->password.len);
    }
}


static ngx_int_t
ngx_esp_basic_challenge(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf)
{
    size_t  len;
    u_char  *p;
    ngx_str_t  value;

    len = sizeof("Basic realm=\"\", charset=\"UTF-8\"") - 1 + elcf->realm.len;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    value.data = p;
    p = ngx_cpymem(p, "Basic realm=\"", sizeof("Basic realm=\"") - 1);
    p = ngx_cpymem(p, elcf->realm.data, elcf->realm.len);
    p = ngx_cpymem(p, "\", charset=\"UTF-8\"",
                   sizeof("\", charset=\"UTF-8\"") - 1);
    value.len = p - value.data;

    if (ngx_esp_set_header(r, &r->headers_out.headers, "WWW-Authenticate",
                           &value, &r->headers_out.www_authenticate)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_HTTP_UNAUTHORIZED;
}


/* step 8: what Exchange gets to see of the client's credentials */

static ngx_int_t
ngx_esp_server_auth(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf)
{
    if (elcf->client_auth == NGX_ESP_CLIENT_DELEGATE) {
        /* verified Basic goes on as it came: Exchange checks it again */
        return NGX_OK;
    }

    if (elcf->server_auth != NGX_ESP_SERVER_BASIC
        && r->headers_in.authorization)
    {
        if (ngx_esp_set_header(r, &r->headers_in.headers, "Authorization",
                               NULL, &r->headers_in.authorization)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * Sets (value != NULL) or removes (value == NULL) a header; "slot" is the
 * shortcut pointer nginx keeps for it, if any.
 */

ngx_int_t
ngx_esp_set_header(ngx_http_request_t *r, ngx_list_t *headers, char *name,
    ngx_str_t *value, ngx_table_elt_t **slot)
{
    size_t            len;
    ngx_uint_t        i, n, found;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    len = ngx_strlen(name);
    found = 0;
    n = 0;

    for (part = &headers->part; part; part = part->next) {

        h = part->elts;

        for (i = 0; i < part->nelts; i++) {

            n++;

            if (h[i].key.len != len
                || ngx_strncasecmp(h[i].key.data, (u_char *) name, len) != 0)
            {
                continue;
            }

            if (value) {
                h[i].value = *value;

                if (headers == &r->headers_out.headers) {
                    h[i].hash = 1;
                }

                if (slot) {
                    *slot = &h[i];
                }

                return NGX_OK;
            }

            found++;
        }
    }

    if (value == NULL) {

        if (slot) {
            *slot = NULL;
        }

        if (found == 0) {
            return NGX_OK;
        }

        return ngx_esp_copy_headers(r, headers, n, name, NULL);
    }

    h = ngx_list_push(headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    /* zeroed: h->next, since nginx 1.23, must be NULL */
    ngx_memzero(h, sizeof(ngx_table_elt_t));

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = len;
    h->value = *value;
    h->lowcase_key = (u_char *) name;

    if (headers == &r->headers_in.headers) {
        h->lowcase_key = ngx_pnalloc(r->pool, len);
        if (h->lowcase_key == NULL) {
            return NGX_ERROR;
        }

        ngx_strlow(h->lowcase_key, (u_char *) name, len);
        h->hash = ngx_hash_key(h->lowcase_key, len);
    }

    if (slot) {
        *slot = h;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_esp_remove_header_elt(ngx_http_request_t *r, ngx_list_t *headers,
    ngx_table_elt_t *elt)
{
    ngx_uint_t        n;
    ngx_list_part_t  *part;

    n = 0;

    for (part = &headers->part; part; part = part->next) {
        n += part->nelts;
    }

    return ngx_esp_copy_headers(r, headers, n, NULL, elt);
}


/*
 * The list again without the headers called "name" (or without "elt"):
 * the proxy module walks the list, while nginx's shortcut pointers
 * (r->headers_in.host, the cookies array) keep pointing at intact
 * elements of the old one.
 */

static ngx_int_t
ngx_esp_copy_headers(ngx_http_request_t *r, ngx_list_t *headers,
    ngx_uint_t n, char *name, ngx_table_elt_t *elt)
{
    size_t            len;
    ngx_uint_t        i;
    ngx_list_t        copy;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *nh;

    len = name ? ngx_strlen(name) : 0;

    if (ngx_list_init(&copy, r->pool, ngx_max(n, 1), sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (part = &headers->part; part; part = part->next) {

        h = part->elts;

        for (i = 0; i < part->nelts; i++) {

            if (&h[i] == elt
                || (name && h[i].key.len == len
                    && ngx_strncasecmp(h[i].key.data, (u_char *) name, len)
                       == 0))
            {
                continue;
            }

            nh = ngx_list_push(&copy);
            if (nh == NULL) {
                return NGX_ERROR;
            }

            *nh = h[i];
        }
    }

    *headers = copy;

    return NGX_OK;
}


/* our cookies, and the form login's say on Exchange's answers */

static ngx_int_t
ngx_esp_header_filter(ngx_http_request_t *r)
{
    u_char            *p, *last, *nl;
    ngx_esp_ctx_t     *ctx;
    ngx_table_elt_t   *h;

    ctx = ngx_http_get_module_ctx(r, ngx_exchange_esp_module);

    if (ctx == NULL || r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    if (ngx_esp_form_header_filter(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    p = ctx->set_cookie.data;
    last = p + ctx->set_cookie.len;

    while (p < last) {
        nl = ngx_strlchr(p, last, '\n');
        if (nl == NULL) {
            nl = last;
        }

        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        /* zeroed: h->next, since nginx 1.23, must be NULL */
        ngx_memzero(h, sizeof(ngx_table_elt_t));

        h->hash = 1;
        ngx_str_set(&h->key, "Set-Cookie");
        h->value.data = p;
        h->value.len = nl - p;

        p = nl + 1;
    }

    ctx->set_cookie.len = 0;

    return ngx_http_next_header_filter(r);
}


/*
 * One line per login decision, stable for log watchers (fail2ban):
 * esp: login user="alice" client=192.0.2.7 domain=contoso
 *      dc=ldaps://192.0.2.11:636 result=ok ad_code=none
 */

void
ngx_esp_log_login(ngx_http_request_t *r, ngx_esp_ctx_t *ctx)
{
    u_char               c, *p, *last, buf[NGX_ESP_LOG_USER_LEN * 4];
    size_t               i;
    ngx_str_t            dc;
    ngx_uint_t           level;
    ngx_esp_ldap_req_t  *lr;

    lr = &ctx->lr;

    /* the user name is client input: escape it inside its quotes */

    p = buf;
    last = buf + sizeof(buf) - 4;

    for (i = 0; i < ctx->user.len && i < NGX_ESP_LOG_USER_LEN && p < last;
         i++)
    {
        c = ctx->user.data[i];

        if (c == '"' || c == '\\') {
            *p++ = '\\';
            *p++ = c;

        } else if (c < 0x20 || c == 0x7f) {
            p = ngx_sprintf(p, "\\x%02xd", c);

        } else {
            *p++ = c;
        }
    }

    dc = lr->dc;
    if (dc.len == 0) {
        ngx_str_set(&dc, "none");
    }

    /* a cache hit repeats a decision logged at its bind */
    level = (lr->result != NGX_ESP_AUTH_OK) ? NGX_LOG_WARN
            : ctx->cached ? NGX_LOG_INFO : NGX_LOG_NOTICE;

    if (lr->ad_code) {
        ngx_log_error(level, r->connection->log, 0,
                      "esp: login user=\"%*s\" client=%V domain=%V dc=%V "
                      "result=%s ad_code=%xi",
                      p - buf, buf, &r->connection->addr_text,
                      &lr->domain->name, &dc,
                      ngx_esp_auth_result_name(lr->result), lr->ad_code);

    } else {
        ngx_log_error(level, r->connection->log, 0,
                      "esp: login user=\"%*s\" client=%V domain=%V dc=%V "
                      "result=%s ad_code=none",
                      p - buf, buf, &r->connection->addr_text,
                      &lr->domain->name, &dc,
                      ngx_esp_auth_result_name(lr->result));
    }

    ngx_esp_status_count(lr->result);
}


static ngx_int_t
ngx_esp_user_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    ngx_esp_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_exchange_esp_module);

    if (ctx == NULL || !ctx->authenticated) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = ctx->user.data;
    v->len = ctx->user.len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_esp_auth_result_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    const char     *name;
    ngx_esp_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_exchange_esp_module);

    if (ctx == NULL || !ctx->done) {
        v->not_found = 1;
        return NGX_OK;
    }

    name = ngx_esp_auth_result_name(ctx->result);

    v->data = (u_char *) name;
    v->len = ngx_strlen(name);
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_esp_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_esp_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static void *
ngx_esp_create_main_conf(ngx_conf_t *cf)
{
    ngx_esp_main_conf_t  *emcf;

    emcf = ngx_pcalloc(cf->pool, sizeof(ngx_esp_main_conf_t));
    if (emcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     emcf->shm_zone = NULL;
     */

    if (ngx_array_init(&emcf->domains, cf->pool, 2,
                       sizeof(ngx_esp_domain_t *))
        != NGX_OK)
    {
        return NULL;
    }

    emcf->keys = NGX_CONF_UNSET_PTR;

    return emcf;
}


static char *
ngx_esp_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_esp_main_conf_t *emcf = conf;

    ngx_conf_init_ptr_value(emcf->keys, NULL);

    if (emcf->domains.nelts == 0) {
        return NGX_CONF_OK;
    }

    if (emcf->keys == NULL) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "\"esp_session_key\" is not set: form login "
                           "sessions are sealed with a key drawn at start, "
                           "end at every reload or restart and are not "
                           "shared between nodes");

        if (ngx_esp_session_random_key(cf, &emcf->keys) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    return ngx_esp_shm_default_zone(cf, emcf);
}


static void *
ngx_esp_create_loc_conf(ngx_conf_t *cf)
{
    ngx_esp_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_esp_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->realm = { 0, NULL };
     *     conf->greeting = { 0, NULL };
     *     conf->password_form = { 0, NULL };
     *     conf->cookie_name = { 0, NULL };
     *     conf->login_page = { 0, NULL };
     *     conf->owa_auth = { 0, NULL };
     *     conf->default_url = { 0, NULL };
     *     conf->title = { 0, NULL };
     *     conf->esp_file = NULL;
     *     conf->esp_line = 0;
     */

    conf->domain = NGX_CONF_UNSET_PTR;
    conf->allowed_hosts = NGX_CONF_UNSET_PTR;
    conf->allowed_dirs = NGX_CONF_UNSET_PTR;
    conf->excluded_dirs = NGX_CONF_UNSET_PTR;
    conf->client_auth = NGX_CONF_UNSET_UINT;
    conf->server_auth = NGX_CONF_UNSET_UINT;
    conf->delegate_basic = NGX_CONF_UNSET_UINT;
    conf->basic_cache = NGX_CONF_UNSET;
    conf->public_private = NGX_CONF_UNSET;
    conf->logoff = NGX_CONF_UNSET_PTR;
    conf->permitted_groups = NGX_CONF_UNSET_PTR;
    conf->samesite = NGX_CONF_UNSET_UINT;
    conf->lang = NGX_CONF_UNSET_UINT;

    return conf;
}


static char *
ngx_esp_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_esp_loc_conf_t *prev = parent;
    ngx_esp_loc_conf_t *conf = child;

    ngx_esp_path_pattern_t  *pp;

    if (conf->domain == NGX_CONF_UNSET_PTR) {
        conf->domain = prev->domain;
        conf->esp_file = prev->esp_file;
        conf->esp_line = prev->esp_line;
    }

    ngx_conf_merge_ptr_value(conf->domain, prev->domain, NULL);
    ngx_conf_merge_ptr_value(conf->allowed_hosts, prev->allowed_hosts, NULL);
    ngx_conf_merge_ptr_value(conf->allowed_dirs, prev->allowed_dirs, NULL);
    ngx_conf_merge_ptr_value(conf->excluded_dirs, prev->excluded_dirs, NULL);
    ngx_conf_merge_uint_value(conf->client_auth, prev->client_auth,
                              NGX_ESP_CLIENT_FORM);
    ngx_conf_merge_uint_value(conf->server_auth, prev->server_auth,
                              NGX_ESP_SERVER_NONE);
    ngx_conf_merge_uint_value(conf->delegate_basic, prev->delegate_basic,
                              NGX_ESP_DELEGATE_VERIFY);
    ngx_conf_merge_str_value(conf->realm, prev->realm, "Exchange");
    ngx_conf_merge_sec_value(conf->basic_cache, prev->basic_cache, 300);
    ngx_conf_merge_str_value(conf->greeting, prev->greeting, "");
    ngx_conf_merge_value(conf->public_private, prev->public_private, 1);
    ngx_conf_merge_str_value(conf->password_form, prev->password_form, "");
    ngx_conf_merge_ptr_value(conf->logoff, prev->logoff, NULL);
    ngx_conf_merge_ptr_value(conf->permitted_groups, prev->permitted_groups,
                             NULL);
    ngx_conf_merge_str_value(conf->cookie_name, prev->cookie_name,
                             "esp_session");
    ngx_conf_merge_uint_value(conf->samesite, prev->samesite,
                              NGX_ESP_SAMESITE_LAX);
    ngx_conf_merge_str_value(conf->login_page, prev->login_page, "");
    ngx_conf_merge_str_value(conf->owa_auth, prev->owa_auth,
                             "/owa/auth.owa");
    ngx_conf_merge_str_value(conf->default_url, prev->default_url, "/owa/");
    ngx_conf_merge_str_value(conf->title, prev->title, "Outlook");
    ngx_conf_merge_uint_value(conf->lang, prev->lang, NGX_ESP_LANG_AUTO);

    if (conf->allowed_dirs == NULL) {
        conf->allowed_dirs = ngx_array_create(cf->pool, 1,
                                              sizeof(ngx_esp_path_pattern_t));
        if (conf->allowed_dirs == NULL) {
            return NGX_CONF_ERROR;
        }

        pp = ngx_array_push(conf->allowed_dirs);
        if (pp == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_str_set(&pp->pattern, "/*");
    }

    if (conf->domain == NULL) {
        return NGX_CONF_OK;
    }

    if (conf->allowed_hosts == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"esp\" in %s:%ui needs \"esp_allowed_hosts\": the "
                      "host names this service may be reached by",
                      conf->esp_file, conf->esp_line);
        return NGX_CONF_ERROR;
    }

    if (conf->permitted_groups && conf->domain->bind_dn.len == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"esp_permitted_groups\" needs \"ldap_bind_dn\" in "
                      "esp_sso_domain \"%V\" for the group search",
                      &conf->domain->name);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_esp_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_esp_main_conf_t        *emcf;
    ngx_http_core_main_conf_t  *cmcf;

    emcf = ngx_http_conf_get_module_main_conf(cf, ngx_exchange_esp_module);

    if (ngx_esp_domains_check(cf, emcf) != NGX_OK) {
        return NGX_ERROR;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_esp_access_handler;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_esp_header_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_esp_init_worker(ngx_cycle_t *cycle)
{
    ngx_uint_t            i;
    ngx_esp_domain_t    **dp;
    ngx_esp_main_conf_t  *emcf;

    emcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_exchange_esp_module);
    if (emcf == NULL) {
        return NGX_OK;
    }

    dp = emcf->domains.elts;

    for (i = 0; i < emcf->domains.nelts; i++) {
        if (ngx_esp_ldap_init_worker(cycle, dp[i]) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (emcf->shm_zone) {
        return ngx_esp_shm_init_worker(cycle, emcf->shm_zone);
    }

    return NGX_OK;
}


/* the state file gets the zone's last word when nginx stops */

static void
ngx_esp_exit_master(ngx_cycle_t *cycle)
{
    ngx_esp_main_conf_t  *emcf;

    emcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_exchange_esp_module);

    if (emcf && emcf->shm_zone) {
        ngx_esp_shm_exit_master(cycle, emcf->shm_zone);
    }
}


static void
ngx_esp_exit_worker(ngx_cycle_t *cycle)
{
    ngx_uint_t            i;
    ngx_esp_domain_t    **dp;
    ngx_esp_main_conf_t  *emcf;

    emcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_exchange_esp_module);
    if (emcf == NULL) {
        return;
    }

    dp = emcf->domains.elts;

    for (i = 0; i < emcf->domains.nelts; i++) {
        ngx_esp_ldap_exit_worker(cycle, dp[i]);
    }
}


static char *
ngx_esp(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_esp_loc_conf_t *elcf = conf;

    ngx_str_t         *value;
    ngx_esp_domain_t  *d;

    if (elcf->domain != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    elcf->esp_file = cf->conf_file->file.name.data;
    elcf->esp_line = cf->conf_file->line;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        elcf->domain = NULL;
        return NGX_CONF_OK;
    }

    d = ngx_esp_domain_get(cf, &value[1], 1);
    if (d == NULL) {
        return NGX_CONF_ERROR;
    }

    if (d->used_file == NULL) {
        d->used_file = elcf->esp_file;
        d->used_line = elcf->esp_line;
    }

    elcf->domain = d;

    return NGX_CONF_OK;
}


/* a list of patterns, each parsed by the function in cmd->post */

static char *
ngx_esp_patterns(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    void                 *elt;
    ngx_str_t            *value;
    ngx_uint_t            i;
    ngx_array_t         **a;
    ngx_esp_patterns_t   *pt;

    a = (ngx_array_t **) (p + cmd->offset);
    pt = cmd->post;

    if (*a != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    *a = ngx_array_create(cf->pool, cf->args->nelts - 1, pt->size);
    if (*a == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        elt = ngx_array_push(*a);
        if (elt == NULL) {
            return NGX_CONF_ERROR;
        }

        if (pt->parse(cf, &value[i], elt) != NGX_CONF_OK) {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/* esp_cookie name [samesite=lax|strict|none|off] */

static char *
ngx_esp_cookie(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_esp_loc_conf_t *elcf = conf;

    ngx_str_t   *value, v;
    ngx_uint_t   i;

    if (elcf->cookie_name.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (i = 0; i < value[1].len; i++) {
        if (!(ngx_esp_isalnum(value[1].data[i]) || value[1].data[i] == '_'
              || value[1].data[i] == '-'))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid cookie name \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    if (value[1].len == 0) {
        return "has an empty cookie name";
    }

    elcf->cookie_name = value[1];

    if (cf->args->nelts == 2) {
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(value[2].data, "samesite=", 9) != 0) {
        goto invalid;
    }

    v.data = value[2].data + 9;
    v.len = value[2].len - 9;

    if (v.len == 3 && ngx_strncasecmp(v.data, (u_char *) "lax", 3) == 0) {
        elcf->samesite = NGX_ESP_SAMESITE_LAX;

    } else if (v.len == 6
               && ngx_strncasecmp(v.data, (u_char *) "strict", 6) == 0)
    {
        elcf->samesite = NGX_ESP_SAMESITE_STRICT;

    } else if (v.len == 4
               && ngx_strncasecmp(v.data, (u_char *) "none", 4) == 0)
    {
        elcf->samesite = NGX_ESP_SAMESITE_NONE;

    } else if (v.len == 3 && ngx_strncasecmp(v.data, (u_char *) "off", 3) == 0)
    {
        elcf->samesite = NGX_ESP_SAMESITE_OFF;

    } else {
        goto invalid;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\": expected "
                       "\"samesite=lax|strict|none|off\"", &value[2]);
    return NGX_CONF_ERROR;
}


/* esp_login_page file: a custom template, read once */

static char *
ngx_esp_login_page(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_esp_loc_conf_t *elcf = conf;

    u_char           *p, *last, *end;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_str_t        *value, name;
    ngx_uint_t        i, known;
    ngx_file_info_t   fi;

    static char  *names[] = {
        "lang", "title", "greeting", "action", "url", "csrf", "username",
        "message", "message_class", "public_private", "t_heading",
        "t_username", "t_username_hint", "t_password", "t_submit",
        "t_footer", NULL
    };

    if (elcf->login_page.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    name = value[1];

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    fd = ngx_open_file(name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%s\" failed", name.data);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) == 0 || ngx_file_size(&fi) > 256 * 1024)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "login page \"%s\" must hold 1 byte to 256k",
                           name.data);
        (void) ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    elcf->login_page.len = ngx_file_size(&fi);
    elcf->login_page.data = ngx_pnalloc(cf->pool, elcf->login_page.len);
    if (elcf->login_page.data == NULL) {
        (void) ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    n = ngx_read_fd(fd, elcf->login_page.data, elcf->login_page.len);
    (void) ngx_close_file(fd);

    if (n != (ssize_t) elcf->login_page.len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_read_fd_n " \"%s\" failed", name.data);
        return NGX_CONF_ERROR;
    }

    /* every placeholder must be one the module fills */

    p = elcf->login_page.data;
    last = p + elcf->login_page.len;

    while ((p = ngx_strlcasestrn(p, last, (u_char *) "{{", 2 - 1)) != NULL) {

        end = ngx_strlcasestrn(p + 2, last, (u_char *) "}}", 2 - 1);
        if (end == NULL) {
            break;
        }

        known = 0;

        for (i = 0; names[i]; i++) {
            if ((size_t) (end - p - 2) == ngx_strlen(names[i])
                && ngx_strncmp(p + 2, names[i], end - p - 2) == 0)
            {
                known = 1;
                break;
            }
        }

        if (!known) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "unknown placeholder \"%*s\" in login page "
                               "\"%s\"", end - p + 2, p, name.data);
            return NGX_CONF_ERROR;
        }

        p = end + 2;
    }

    if (ngx_strlcasestrn(elcf->login_page.data, last,
                         (u_char *) "{{csrf}}", 8 - 1) == NULL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "login page \"%s\" has no {{csrf}}: the form "
                           "would always be refused", name.data);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* a path on this site: "/..." */

static char *
ngx_esp_local_url(ngx_conf_t *cf, void *post, void *data)
{
    ngx_str_t  *url = data;

    if (url->len == 0 || url->data[0] != '/'
        || (url->len > 1 && (url->data[1] == '/' || url->data[1] == '\\')))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must be a path on this site, such as "
                           "\"/owa/\"", url);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* the User Password Form: a path, or an https URL */

static char *
ngx_esp_password_form(ngx_conf_t *cf, void *post, void *data)
{
    ngx_str_t  *url = data;

    ngx_uint_t  i;

    for (i = 0; i < url->len; i++) {
        if (url->data[i] <= 0x20 || url->data[i] == 0x7f) {
            goto invalid;
        }
    }

    if (url->len > 8
        && ngx_strncasecmp(url->data, (u_char *) "https://", 8) == 0)
    {
        return NGX_CONF_OK;
    }

    if (url->len && url->data[0] == '/'
        && !(url->len > 1 && (url->data[1] == '/' || url->data[1] == '\\')))
    {
        return NGX_CONF_OK;
    }

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"%V\" must be an https:// URL or a path, such as "
                       "\"https://mail.contoso.com/owa/auth/"
                       "expiredpassword.aspx?url=/owa/auth.owa\"", url);
    return NGX_CONF_ERROR;
}
