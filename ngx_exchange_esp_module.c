
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


#define NGX_ESP_LOG_USER_LEN  256


typedef struct {
    ngx_esp_ldap_req_t         lr;
    ngx_str_t                  user;
    ngx_int_t                  status;       /* the decision on re-entry */
    ngx_esp_auth_result_e      result;
    unsigned                   waiting:1;
    unsigned                   done:1;
    unsigned                   authenticated:1;
} ngx_esp_ctx_t;


static ngx_int_t ngx_esp_access_handler(ngx_http_request_t *r);
static ngx_int_t ngx_esp_gate(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_uint_t *excluded);
static ngx_int_t ngx_esp_basic(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);
static void ngx_esp_basic_done(ngx_esp_ldap_req_t *lr);
static void ngx_esp_ctx_cleanup(void *data);
static ngx_int_t ngx_esp_basic_challenge(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf);
static ngx_int_t ngx_esp_server_auth(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf);
static void ngx_esp_remove_header(ngx_list_t *list, ngx_table_elt_t *h);
static void ngx_esp_log_login(ngx_http_request_t *r, ngx_esp_ctx_t *ctx);

static ngx_int_t ngx_esp_user_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_esp_auth_result_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

static ngx_int_t ngx_esp_add_variables(ngx_conf_t *cf);
static void *ngx_esp_create_main_conf(ngx_conf_t *cf);
static void *ngx_esp_create_loc_conf(ngx_conf_t *cf);
static char *ngx_esp_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_esp_init(ngx_conf_t *cf);
static ngx_int_t ngx_esp_init_worker(ngx_cycle_t *cycle);
static void ngx_esp_exit_worker(ngx_cycle_t *cycle);

static char *ngx_esp(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_esp_allowed_hosts(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_esp_dirs(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);


static ngx_conf_enum_t  ngx_esp_client_auth_modes[] = {
    { ngx_string("form"), NGX_ESP_CLIENT_FORM },
    { ngx_string("basic"), NGX_ESP_CLIENT_BASIC },
    { ngx_string("delegate"), NGX_ESP_CLIENT_DELEGATE },
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
      ngx_esp_allowed_hosts,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_esp_loc_conf_t, allowed_hosts),
      NULL },

    { ngx_string("esp_allowed_dirs"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_esp_dirs,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_esp_loc_conf_t, allowed_dirs),
      NULL },

    { ngx_string("esp_preauth_excluded_dirs"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_esp_dirs,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_esp_loc_conf_t, excluded_dirs),
      NULL },

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

    { ngx_string("esp_realm"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_esp_loc_conf_t, realm),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_esp_module_ctx = {
    ngx_esp_add_variables,                 /* preconfiguration */
    ngx_esp_init,                          /* postconfiguration */

    ngx_esp_create_main_conf,              /* create main configuration */
    NULL,                                  /* init main configuration */

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
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_variable_t  ngx_esp_vars[] = {

    { ngx_string("esp_user"), NULL, ngx_esp_user_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("esp_auth_result"), NULL, ngx_esp_auth_result_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_int_t
ngx_esp_access_handler(ngx_http_request_t *r)
{
    ngx_int_t            rc;
    ngx_uint_t           excluded;
    ngx_esp_ctx_t       *ctx;
    ngx_pool_cleanup_t  *cln;
    ngx_esp_loc_conf_t  *elcf;

    elcf = ngx_http_get_module_loc_conf(r, ngx_exchange_esp_module);

    if (elcf->domain == NULL) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_exchange_esp_module);

    if (ctx) {
        if (ctx->waiting) {
            return NGX_AGAIN;
        }

        if (ctx->done) {
            if (ctx->status != NGX_OK) {
                return ctx->status;
            }

            return ngx_esp_server_auth(r, elcf);
        }
    }

    rc = ngx_esp_gate(r, elcf, &excluded);

    if (rc != NGX_OK) {
        return rc;
    }

    if (excluded || elcf->client_auth == NGX_ESP_CLIENT_DELEGATE) {
        return NGX_DECLINED;
    }

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_esp_ctx_t));
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        cln->handler = ngx_esp_ctx_cleanup;
        cln->data = ctx;

        ngx_http_set_ctx(r, ctx, ngx_exchange_esp_module);
    }

    switch (elcf->client_auth) {

    case NGX_ESP_CLIENT_BASIC:
        return ngx_esp_basic(r, elcf, ctx);

    default: /* NGX_ESP_CLIENT_FORM */
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "esp: \"%V\" needs a login", &r->uri);
        return ngx_esp_basic_challenge(r, elcf);
    }
}


/*
 * Steps 2 and 3 of the design: the host must be allowed, the path must be
 * inside the allowed directories as nginx reads it (r->uri) and as a
 * backend that decodes the raw request line once reads it; a path is
 * excluded from pre-authentication only if it is written plainly, so
 * that no encoding can make an excluded pattern cover a protected path.
 */

static ngx_int_t
ngx_esp_gate(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_uint_t *excluded)
{
    u_char      *q;
    ngx_str_t    raw, canon;
    const char  *reason;

    *excluded = 0;

    if (!ngx_esp_match_hosts(elcf->allowed_hosts, &r->headers_in.server)) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "esp: host \"%V\" is not allowed",
                      &r->headers_in.server);
        return NGX_HTTP_FORBIDDEN;
    }

    raw = r->unparsed_uri;

    q = ngx_strlchr(raw.data, raw.data + raw.len, '?');
    if (q) {
        raw.len = q - raw.data;
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


static ngx_int_t
ngx_esp_basic(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx)
{
    ngx_int_t            rc;
    ngx_esp_ldap_req_t  *lr;

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

    lr = &ctx->lr;
    lr->domain = elcf->domain;
    lr->user = r->headers_in.user;
    lr->password = r->headers_in.passwd;
    lr->groups = NULL;
    lr->handler = ngx_esp_basic_done;
    lr->data = r;
    lr->log = r->connection->log;
    lr->pool = r->pool;

    rc = ngx_esp_ldap_authenticate(lr);

    if (rc == NGX_AGAIN) {
        ctx->waiting = 1;
        r->read_event_handler = ngx_http_test_reading;
        return NGX_AGAIN;
    }

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_esp_basic_done(lr);

    return ctx->status == NGX_OK ? ngx_esp_server_auth(r, elcf)
                                 : ctx->status;
}


static void
ngx_esp_basic_done(ngx_esp_ldap_req_t *lr)
{
    ngx_http_request_t  *r = lr->data;

    ngx_uint_t           resume;
    ngx_connection_t    *c;
    ngx_esp_ctx_t       *ctx;
    ngx_esp_loc_conf_t  *elcf;

    ctx = ngx_http_get_module_ctx(r, ngx_exchange_esp_module);
    elcf = ngx_http_get_module_loc_conf(r, ngx_exchange_esp_module);

    resume = ctx->waiting;
    ctx->waiting = 0;
    ctx->done = 1;
    ctx->result = lr->result;

    ngx_esp_log_login(r, ctx);

    switch (lr->result) {

    case NGX_ESP_AUTH_OK:
        ctx->authenticated = 1;
        ctx->status = NGX_OK;
        break;

    case NGX_ESP_AUTH_UNAVAILABLE:
    case NGX_ESP_AUTH_SERVICE_ACCOUNT:
    case NGX_ESP_AUTH_ERROR:
        ctx->status = NGX_HTTP_SERVICE_UNAVAILABLE;
        break;

    default:
        ctx->status = ngx_esp_basic_challenge(r, elcf);
        break;
    }

    if (!resume) {
        return;
    }

    c = r->connection;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "esp: resuming \"%V\" after the directory", &r->uri);

    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = ngx_http_core_run_phases;

    ngx_http_core_run_phases(r);
    ngx_http_run_posted_requests(c);
}


static void
ngx_esp_ctx_cleanup(void *data)
{
    ngx_esp_ctx_t  *ctx = data;

    if (ctx->waiting) {
        ctx->waiting = 0;
        ngx_esp_ldap_abort(&ctx->lr);
    }
}


static ngx_int_t
ngx_esp_basic_challenge(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf)
{
    size_t            len;
    u_char           *p;
    ngx_table_elt_t  *h;

    len = sizeof("Basic realm=\"\", charset=\"UTF-8\"") - 1 + elcf->realm.len;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "WWW-Authenticate");
    h->value.data = p;

    p = ngx_cpymem(p, "Basic realm=\"", sizeof("Basic realm=\"") - 1);
    p = ngx_cpymem(p, elcf->realm.data, elcf->realm.len);
    p = ngx_cpymem(p, "\", charset=\"UTF-8\"",
                   sizeof("\", charset=\"UTF-8\"") - 1);

    h->value.len = p - h->value.data;

    r->headers_out.www_authenticate = h;

    return NGX_HTTP_UNAUTHORIZED;
}


/* step 8: what Exchange gets to see of the client's credentials */

static ngx_int_t
ngx_esp_server_auth(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf)
{
    if (elcf->server_auth == NGX_ESP_SERVER_NONE
        && r->headers_in.authorization)
    {
        ngx_esp_remove_header(&r->headers_in.headers,
                              r->headers_in.authorization);
        r->headers_in.authorization = NULL;
    }

    return NGX_OK;
}


static void
ngx_esp_remove_header(ngx_list_t *list, ngx_table_elt_t *h)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *elts;

    for (part = &list->part; part; part = part->next) {

        elts = part->elts;

        for (i = 0; i < part->nelts; i++) {

            if (&elts[i] != h) {
                continue;
            }

            ngx_memmove(&elts[i], &elts[i + 1],
                        (part->nelts - i - 1) * sizeof(ngx_table_elt_t));
            part->nelts--;

            if (part == list->last || part->nelts) {
                return;
            }

            /* an empty part in the middle is fine for list walkers */
            return;
        }
    }
}


/*
 * One line per login decision, stable for log watchers (fail2ban):
 * esp: login user="alice" client=192.0.2.7 domain=contoso
 *      dc=ldaps://192.0.2.11:636 result=ok ad_code=none
 */

static void
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

    level = (lr->result == NGX_ESP_AUTH_OK) ? NGX_LOG_NOTICE : NGX_LOG_WARN;

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

    if (ngx_array_init(&emcf->domains, cf->pool, 2,
                       sizeof(ngx_esp_domain_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return emcf;
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
     *     conf->off = 0;
     *     conf->realm = { 0, NULL };
     *     conf->esp_file = NULL;
     *     conf->esp_line = 0;
     */

    conf->domain = NGX_CONF_UNSET_PTR;
    conf->allowed_hosts = NGX_CONF_UNSET_PTR;
    conf->allowed_dirs = NGX_CONF_UNSET_PTR;
    conf->excluded_dirs = NGX_CONF_UNSET_PTR;
    conf->client_auth = NGX_CONF_UNSET_UINT;
    conf->server_auth = NGX_CONF_UNSET_UINT;

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
    ngx_conf_merge_str_value(conf->realm, prev->realm, "Exchange");

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

    if (conf->domain && conf->allowed_hosts == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"esp\" in %s:%ui needs \"esp_allowed_hosts\": the "
                      "host names this service may be reached by",
                      conf->esp_file, conf->esp_line);
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

    return NGX_OK;
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
        elcf->off = 1;
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


static char *
ngx_esp_allowed_hosts(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t                *value;
    ngx_uint_t                i;
    ngx_array_t             **a;
    ngx_esp_host_pattern_t   *hp;

    a = (ngx_array_t **) (p + cmd->offset);

    if (*a != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    *a = ngx_array_create(cf->pool, cf->args->nelts - 1,
                          sizeof(ngx_esp_host_pattern_t));
    if (*a == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        hp = ngx_array_push(*a);
        if (hp == NULL) {
            return NGX_CONF_ERROR;
        }

        if (ngx_esp_parse_host_pattern(cf, &value[i], hp) != NGX_CONF_OK) {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static char *
ngx_esp_dirs(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t                *value;
    ngx_uint_t                i;
    ngx_array_t             **a;
    ngx_esp_path_pattern_t   *pp;

    a = (ngx_array_t **) (p + cmd->offset);

    if (*a != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    *a = ngx_array_create(cf->pool, cf->args->nelts - 1,
                          sizeof(ngx_esp_path_pattern_t));
    if (*a == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        pp = ngx_array_push(*a);
        if (pp == NULL) {
            return NGX_CONF_ERROR;
        }

        if (ngx_esp_parse_path_pattern(cf, &value[i], pp) != NGX_CONF_OK) {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}
