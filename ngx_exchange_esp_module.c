
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_esp.h"
#include "ngx_esp_auth.h"
#include "ngx_esp_basic.h"
#include "ngx_esp_bearer.h"
#include "ngx_esp_cluster.h"
#include "ngx_esp_domain.h"
#include "ngx_esp_form.h"
#include "ngx_esp_gate.h"
#include "ngx_esp_http.h"
#include "ngx_esp_ldap.h"
#include "ngx_esp_log.h"
#include "ngx_esp_match.h"
#include "ngx_esp_mfa.h"
#include "ngx_esp_refusal.h"
#include "ngx_esp_request.h"
#include "ngx_esp_session.h"
#include "ngx_esp_shm.h"
#include "ngx_esp_status.h"


static ngx_int_t ngx_esp_access_handler(ngx_http_request_t *r);
static ngx_int_t ngx_esp_access(ngx_http_request_t *r,
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

static ngx_esp_patterns_t  ngx_esp_bearer_strings = {
    sizeof(ngx_str_t), ngx_esp_bearer_parse_string
};


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;


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


static ngx_conf_enum_t  ngx_esp_bearer_modes[] = {
    { ngx_string("off"), NGX_ESP_BEARER_OFF },
    { ngx_string("pass"), NGX_ESP_BEARER_PASS },
    { ngx_string("verify"), NGX_ESP_BEARER_VERIFY },
    { ngx_null_string, 0 }
};


static ngx_conf_post_t  ngx_esp_bearer_uri_p = { ngx_esp_bearer_uri };
static ngx_conf_post_t  ngx_esp_bearer_skew_p = { ngx_esp_bearer_skew };


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

    { ngx_string("esp_bearer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_esp_loc_conf_t, bearer),
      &ngx_esp_bearer_modes },

    { ngx_string("esp_bearer_jwks"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_esp_bearer_jwks,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("esp_bearer_issuer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_esp_patterns,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_esp_loc_conf_t, bearer_issuers),
      &ngx_esp_bearer_strings },

    { ngx_string("esp_bearer_audience"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_esp_patterns,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_esp_loc_conf_t, bearer_audiences),
      &ngx_esp_bearer_strings },

    { ngx_string("esp_bearer_authorization_uri"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_esp_loc_conf_t, bearer_authorization_uri),
      &ngx_esp_bearer_uri_p },

    { ngx_string("esp_bearer_clock_skew"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_esp_loc_conf_t, bearer_clock_skew),
      &ngx_esp_bearer_skew_p },

    { ngx_string("esp_login_messages"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_esp_loc_conf_t, login_messages),
      &ngx_esp_login_messages_modes },

    { ngx_string("esp_mfa"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_esp_mfa_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_esp_loc_conf_t, mfa),
      &ngx_esp_mfa_kinds },

    { ngx_string("esp_mfa_enroll"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_esp_loc_conf_t, mfa_enroll),
      NULL },

    { ngx_string("esp_mfa_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_esp_loc_conf_t, mfa_timeout),
      NULL },

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

    { ngx_string("esp_cluster"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_esp_cluster,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("esp_password_key"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_esp_password_key,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_esp_main_conf_t, password_keys),
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

    { ngx_string("esp_password_change"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_esp_loc_conf_t, password_change),
      NULL },

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
 * The access phase: steps 1 to 7 of the design, and the form login's
 * detours.  Whatever the decision, a request that goes on to Exchange
 * carries none of the gate's own cookies.
 */

static ngx_int_t
ngx_esp_access_handler(ngx_http_request_t *r)
{
    ngx_int_t            rc;
    ngx_esp_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_exchange_esp_module);

    rc = ngx_esp_access(r, elcf);

    if ((rc == NGX_OK || rc == NGX_DECLINED) && elcf->domain
        && ngx_esp_form_strip_cookies(r, elcf) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return rc;
}


static ngx_int_t
ngx_esp_access(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf)
{
    ngx_int_t       rc;
    ngx_uint_t      excluded;
    ngx_esp_ctx_t  *ctx;

    ctx = ngx_esp_get_ctx(r, 0);

    if (ctx && ngx_esp_auth_redirected(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (elcf->domain == NULL) {

        /* FORM_PAGE to DECIDED: a login on its way */

        if (ctx && ctx->state >= NGX_ESP_STATE_FORM_PAGE
            && ctx->state <= NGX_ESP_STATE_DECIDED)
        {
            /* a login must never pass as a plain POST to where esp is off */
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "esp: login refused: esp is off at \"%V\"",
                          ngx_esp_log_escape(r->pool, &r->uri));
            return NGX_HTTP_FORBIDDEN;
        }

        return NGX_DECLINED;
    }

    if (ctx) {
        switch (ctx->state) {

        case NGX_ESP_STATE_WAITING:
        case NGX_ESP_STATE_DELAYED:
            return NGX_AGAIN;

        case NGX_ESP_STATE_SLOT:
        case NGX_ESP_STATE_DECIDED:
        case NGX_ESP_STATE_DONE:
            return ngx_esp_auth_resume(r, elcf, ctx);

        default:
            break;
        }
    }

    rc = ngx_esp_gate_host(r, elcf);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ctx == NULL) {
        ctx = ngx_esp_get_ctx(r, 1);
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (ctx->state != NGX_ESP_STATE_FORM_LOGIN) {
        rc = ngx_esp_form_endpoint(r, elcf, ctx);
        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    rc = ngx_esp_gate_path(r, elcf, &excluded);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ctx->state == NGX_ESP_STATE_FORM_LOGIN) {
        return ngx_esp_form_access(r, elcf, ctx);
    }

    if (elcf->client_auth == NGX_ESP_CLIENT_DELEGATE) {
        return ngx_esp_basic_delegate(r, elcf, ctx);
    }

    if (excluded) {
        return ngx_esp_gate_excluded(r);
    }

    switch (elcf->client_auth) {

    case NGX_ESP_CLIENT_BASIC:
        return ngx_esp_basic_access(r, elcf, ctx);

    default: /* NGX_ESP_CLIENT_FORM */
        return ngx_esp_form_access(r, elcf, ctx);
    }
}


/* our cookies, and the form login's say on Exchange's answers */

static ngx_int_t
ngx_esp_header_filter(ngx_http_request_t *r)
{
    ngx_esp_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_exchange_esp_module);

    if (ctx && r == r->main && ngx_esp_form_header_filter(r, ctx) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_next_header_filter(r);
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

    if (ctx == NULL || ctx->state != NGX_ESP_STATE_DONE) {
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
     *     emcf->password_keys = NULL;
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

    if (ngx_esp_shm_default_zone(cf, emcf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    return ngx_esp_cluster_init_conf(cf, emcf);
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
     *     conf->bearer_authorization_uri = { 0, NULL };
     *     conf->mfa_file = NULL;
     *     conf->mfa_line = 0;
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
    conf->bearer = NGX_CONF_UNSET_UINT;
    conf->bearer_keys = NGX_CONF_UNSET_PTR;
    conf->bearer_issuers = NGX_CONF_UNSET_PTR;
    conf->bearer_audiences = NGX_CONF_UNSET_PTR;
    conf->bearer_clock_skew = NGX_CONF_UNSET;
    conf->login_messages = NGX_CONF_UNSET_UINT;
    conf->basic_cache = NGX_CONF_UNSET;
    conf->public_private = NGX_CONF_UNSET;
    conf->password_change = NGX_CONF_UNSET;
    conf->logoff = NGX_CONF_UNSET_PTR;
    conf->permitted_groups = NGX_CONF_UNSET_PTR;
    conf->samesite = NGX_CONF_UNSET_UINT;
    conf->lang = NGX_CONF_UNSET_UINT;
    conf->mfa = NGX_CONF_UNSET_UINT;
    conf->mfa_enroll = NGX_CONF_UNSET;
    conf->mfa_timeout = NGX_CONF_UNSET;

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
    ngx_conf_merge_uint_value(conf->login_messages, prev->login_messages,
                              NGX_ESP_MESSAGES_GENERIC);
    ngx_conf_merge_sec_value(conf->basic_cache, prev->basic_cache, 300);
    ngx_conf_merge_str_value(conf->greeting, prev->greeting, "");
    ngx_conf_merge_value(conf->public_private, prev->public_private, 1);
    ngx_conf_merge_value(conf->password_change, prev->password_change, 1);
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
    ngx_conf_merge_uint_value(conf->mfa, prev->mfa, NGX_ESP_MFA_OFF);
    ngx_conf_merge_value(conf->mfa_enroll, prev->mfa_enroll, 0);
    ngx_conf_merge_sec_value(conf->mfa_timeout, prev->mfa_timeout, 300);

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

    if (ngx_esp_bearer_merge(cf, prev, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
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

    if (ngx_esp_session_password_conf(cf, conf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_esp_mfa_conf(cf, conf) != NGX_OK) {
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

    return ngx_esp_http_init(cf);
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

    /* what runs, once per start or reload, for a report or a bug */

    if (ngx_worker == 0 && emcf->domains.nelts) {
        ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                      "esp: ngx_exchange_esp " NGX_ESP_VERSION " on "
                      NGINX_VER ", %s", OpenSSL_version(OPENSSL_VERSION));
    }

    if (ngx_esp_cluster_init_worker(cycle, emcf) != NGX_OK) {
        return NGX_ERROR;
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

    ngx_esp_cluster_exit_worker(cycle);

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
