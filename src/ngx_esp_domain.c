
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_esp_domain.h"
#include "ngx_esp_ldap.h"


#define NGX_ESP_MAX_SECRET  1024


static char *ngx_esp_domain_handler(ngx_conf_t *cf, ngx_command_t *dummy,
    void *conf);
static ngx_uint_t ngx_esp_domain_nargs_ok(ngx_uint_t type, ngx_uint_t n);
static char *ngx_esp_domain_finish(ngx_conf_t *cf, ngx_esp_domain_t *d);
static void ngx_esp_domain_wipe(void *data);
static char *ngx_esp_ldap_server(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_esp_ldap_bind_password_file(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_esp_session_timeout(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_conf_enum_t  ngx_esp_logon_formats[] = {
    { ngx_string("principalname"), NGX_ESP_LOGON_PRINCIPAL },
    { ngx_string("username"), NGX_ESP_LOGON_USERNAME },
    { ngx_string("not_specified"), NGX_ESP_LOGON_UNSPECIFIED },
    { ngx_null_string, 0 }
};


typedef struct {
    ngx_conf_post_handler_pt   post_handler;
    ngx_int_t                  low;
    ngx_int_t                  high;
    char                      *name;
} ngx_esp_num_bounds_t;


static char *ngx_esp_check_bounds(ngx_conf_t *cf, void *post, void *data);


static ngx_esp_num_bounds_t  ngx_esp_max_failed_bounds = {
    ngx_esp_check_bounds, 0, 999, "max_failed_auths"
};

static ngx_esp_num_bounds_t  ngx_esp_smart_failed_bounds = {
    ngx_esp_check_bounds, 1, 999, "smart_lockout_max_failed_auths"
};

static ngx_esp_num_bounds_t  ngx_esp_connections_bounds = {
    ngx_esp_check_bounds, 1, 64, "ldap_connections"
};


/* the directives inside "esp_sso_domain NAME { }" */

static ngx_command_t  ngx_esp_domain_commands[] = {

    { ngx_string("ldap_server"),
      NGX_CONF_TAKE12,
      ngx_esp_ldap_server,
      0,
      0,
      NULL },

    { ngx_string("ldap_ca_certificate"),
      NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      0,
      offsetof(ngx_esp_domain_t, ca_certificate),
      NULL },

    { ngx_string("ldap_verify"),
      NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      0,
      offsetof(ngx_esp_domain_t, verify),
      NULL },

    { ngx_string("ldap_bind_dn"),
      NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      0,
      offsetof(ngx_esp_domain_t, bind_dn),
      NULL },

    { ngx_string("ldap_bind_password_file"),
      NGX_CONF_TAKE1,
      ngx_esp_ldap_bind_password_file,
      0,
      0,
      NULL },

    { ngx_string("ldap_base_dn"),
      NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      0,
      offsetof(ngx_esp_domain_t, base_dn),
      NULL },

    { ngx_string("ldap_timeout"),
      NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      0,
      offsetof(ngx_esp_domain_t, timeout),
      NULL },

    { ngx_string("ldap_connections"),
      NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      0,
      offsetof(ngx_esp_domain_t, pool_size),
      &ngx_esp_connections_bounds },

    { ngx_string("ldap_down_retry"),
      NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      0,
      offsetof(ngx_esp_domain_t, retry_down),
      NULL },

    { ngx_string("logon_format"),
      NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      0,
      offsetof(ngx_esp_domain_t, logon_format),
      &ngx_esp_logon_formats },

    { ngx_string("logon_domain"),
      NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      0,
      offsetof(ngx_esp_domain_t, logon_domain),
      NULL },

    { ngx_string("netbios_domain"),
      NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      0,
      offsetof(ngx_esp_domain_t, netbios_domain),
      NULL },

    { ngx_string("max_failed_auths"),
      NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      0,
      offsetof(ngx_esp_domain_t, max_failed_auths),
      &ngx_esp_max_failed_bounds },

    { ngx_string("reset_fail_timeout"),
      NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      0,
      offsetof(ngx_esp_domain_t, reset_fail_timeout),
      NULL },

    { ngx_string("unblock_timeout"),
      NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      0,
      offsetof(ngx_esp_domain_t, unblock_timeout),
      NULL },

    { ngx_string("smart_lockout"),
      NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      0,
      offsetof(ngx_esp_domain_t, smart_lockout),
      NULL },

    { ngx_string("smart_lockout_max_failed_auths"),
      NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      0,
      offsetof(ngx_esp_domain_t, familiar_failed_auths),
      &ngx_esp_smart_failed_bounds },

    { ngx_string("smart_lockout_remember"),
      NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      0,
      offsetof(ngx_esp_domain_t, familiar_remember),
      NULL },

    { ngx_string("session_timeout"),
      NGX_CONF_TAKE23,
      ngx_esp_session_timeout,
      0,
      0,
      NULL },

      ngx_null_command
};


ngx_esp_domain_t *
ngx_esp_domain_get(ngx_conf_t *cf, ngx_str_t *name, ngx_uint_t create)
{
    ngx_uint_t            i;
    ngx_esp_domain_t    **dp, *d;
    ngx_esp_main_conf_t  *emcf;

    emcf = ngx_http_conf_get_module_main_conf(cf, ngx_exchange_esp_module);

    dp = emcf->domains.elts;

    for (i = 0; i < emcf->domains.nelts; i++) {
        if (dp[i]->name.len == name->len
            && ngx_strncmp(dp[i]->name.data, name->data, name->len) == 0)
        {
            return dp[i];
        }
    }

    if (!create) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     d->ca_certificate = { 0, NULL };
     *     d->bind_dn = { 0, NULL };
     *     d->bind_password = { 0, NULL };
     *     d->base_dn = { 0, NULL };
     *     d->logon_domain = { 0, NULL };
     *     d->netbios_domain = { 0, NULL };
     *     d->ssl = NULL;
     *     d->ldap = NULL;
     *     d->defined = 0;
     *     d->file = NULL;
     *     d->used_file = NULL;
     */

    d = ngx_pcalloc(cf->pool, sizeof(ngx_esp_domain_t));
    if (d == NULL) {
        return NULL;
    }

    d->name = *name;

    if (ngx_array_init(&d->servers, cf->pool, 2,
                       sizeof(ngx_esp_ldap_server_conf_t))
        != NGX_OK)
    {
        return NULL;
    }

    d->verify = NGX_CONF_UNSET;
    d->timeout = NGX_CONF_UNSET_MSEC;
    d->logon_format = NGX_CONF_UNSET_UINT;
    d->max_failed_auths = NGX_CONF_UNSET;
    d->reset_fail_timeout = NGX_CONF_UNSET;
    d->unblock_timeout = NGX_CONF_UNSET;
    d->smart_lockout = NGX_CONF_UNSET;
    d->familiar_failed_auths = NGX_CONF_UNSET;
    d->familiar_remember = NGX_CONF_UNSET;
    d->public_idle = NGX_CONF_UNSET;
    d->public_max = NGX_CONF_UNSET;
    d->private_idle = NGX_CONF_UNSET;
    d->private_max = NGX_CONF_UNSET;
    d->retry_down = NGX_CONF_UNSET;
    d->pool_size = NGX_CONF_UNSET;

    dp = ngx_array_push(&emcf->domains);
    if (dp == NULL) {
        return NULL;
    }

    *dp = d;

    return d;
}


char *
ngx_esp_sso_domain_block(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char              *rv;
    ngx_str_t         *value;
    ngx_uint_t         i;
    ngx_conf_t         save;
    ngx_esp_domain_t  *d;

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "has an empty name";
    }

    for (i = 0; i < value[1].len; i++) {
        if (value[1].data[i] <= 0x20 || value[1].data[i] == 0x7f
            || value[1].data[i] == '"')
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid SSO domain name \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    d = ngx_esp_domain_get(cf, &value[1], 1);
    if (d == NULL) {
        return NGX_CONF_ERROR;
    }

    if (d->defined) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate esp_sso_domain \"%V\", first defined "
                           "in %s:%ui", &value[1], d->file, d->line);
        return NGX_CONF_ERROR;
    }

    d->defined = 1;
    d->file = cf->conf_file->file.name.data;
    d->line = cf->conf_file->line;

    save = *cf;
    cf->handler = ngx_esp_domain_handler;
    cf->handler_conf = (char *) d;

    rv = ngx_conf_parse(cf, NULL);

    *cf = save;

    if (rv != NGX_CONF_OK) {
        return rv;
    }

    return ngx_esp_domain_finish(cf, d);
}


/* called by ngx_conf_parse() for each directive inside the block */

static char *
ngx_esp_domain_handler(ngx_conf_t *cf, ngx_command_t *dummy, void *conf)
{
    char           *rv;
    ngx_str_t      *value;
    ngx_command_t  *cmd;

    value = cf->args->elts;

    for (cmd = ngx_esp_domain_commands; cmd->name.len; cmd++) {

        if (cmd->name.len != value[0].len
            || ngx_strcmp(cmd->name.data, value[0].data) != 0)
        {
            continue;
        }

        if (!ngx_esp_domain_nargs_ok(cmd->type, cf->args->nelts)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid number of arguments in \"%V\" "
                               "directive", &cmd->name);
            return NGX_CONF_ERROR;
        }

        rv = cmd->set(cf, cmd, conf);

        if (rv == NGX_CONF_OK || rv == NGX_CONF_ERROR) {
            return rv;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" directive %s", &cmd->name, rv);
        return NGX_CONF_ERROR;
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "unknown directive \"%V\" in esp_sso_domain",
                       &value[0]);
    return NGX_CONF_ERROR;
}


static ngx_uint_t
ngx_esp_domain_nargs_ok(ngx_uint_t type, ngx_uint_t n)
{
    /* n counts the directive name too */

    if (type & NGX_CONF_FLAG) {
        return n == 2;
    }

    switch (n) {
    case 2:
        return (type & NGX_CONF_TAKE1) != 0;
    case 3:
        return (type & NGX_CONF_TAKE2) != 0;
    case 4:
        return (type & NGX_CONF_TAKE3) != 0;
    default:
        return 0;
    }
}


static char *
ngx_esp_domain_finish(ngx_conf_t *cf, ngx_esp_domain_t *d)
{
    u_char              *p, *last, *dst;
    ngx_str_t            rdn;
    ngx_uint_t           i;
    ngx_pool_cleanup_t  *cln;

    if (d->servers.nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "esp_sso_domain \"%V\" has no \"ldap_server\"",
                           &d->name);
        return NGX_CONF_ERROR;
    }

    ngx_conf_init_value(d->verify, 1);

    if (d->verify && d->ca_certificate.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "esp_sso_domain \"%V\" needs "
                           "\"ldap_ca_certificate\" to verify its domain "
                           "controllers (or \"ldap_verify off\")", &d->name);
        return NGX_CONF_ERROR;
    }

    if (d->ca_certificate.len
        && ngx_conf_full_name(cf->cycle, &d->ca_certificate, 1) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if ((d->bind_dn.len == 0) != (d->bind_password.data == NULL)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "esp_sso_domain \"%V\": \"ldap_bind_dn\" and "
                           "\"ldap_bind_password_file\" go together",
                           &d->name);
        return NGX_CONF_ERROR;
    }

    ngx_conf_init_msec_value(d->timeout, 5000);
    ngx_conf_init_value(d->pool_size, 2);
    ngx_conf_init_value(d->retry_down, 30);
    ngx_conf_init_uint_value(d->logon_format, NGX_ESP_LOGON_PRINCIPAL);
    ngx_conf_init_value(d->max_failed_auths, 0);
    ngx_conf_init_value(d->reset_fail_timeout, 60);
    ngx_conf_init_value(d->unblock_timeout, 1800);
    ngx_conf_init_value(d->smart_lockout, 0);
    ngx_conf_init_value(d->familiar_failed_auths, d->max_failed_auths);
    ngx_conf_init_value(d->familiar_remember, 14 * 86400);
    ngx_conf_init_value(d->public_idle, 900);
    ngx_conf_init_value(d->public_max, 1800);
    ngx_conf_init_value(d->private_idle, 900);
    ngx_conf_init_value(d->private_max, 28800);

    if (d->timeout == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "esp_sso_domain \"%V\": \"ldap_timeout\" must not "
                           "be zero", &d->name);
        return NGX_CONF_ERROR;
    }

    if (d->reset_fail_timeout == 0 || d->unblock_timeout == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "esp_sso_domain \"%V\": \"reset_fail_timeout\" "
                           "and \"unblock_timeout\" must not be zero",
                           &d->name);
        return NGX_CONF_ERROR;
    }

    if (d->smart_lockout
        && (d->max_failed_auths == 0 || d->familiar_remember == 0))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "esp_sso_domain \"%V\": \"smart_lockout\" needs "
                           "\"max_failed_auths\" and a non-zero "
                           "\"smart_lockout_remember\"", &d->name);
        return NGX_CONF_ERROR;
    }

    if (d->public_idle > d->public_max || d->private_idle > d->private_max) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "esp_sso_domain \"%V\": a session's idle timeout "
                           "cannot exceed its maximum", &d->name);
        return NGX_CONF_ERROR;
    }

    /* logon_domain defaults to the DNS name in the base DN */

    if (d->logon_domain.len == 0 && d->base_dn.len) {

        dst = ngx_pnalloc(cf->pool, d->base_dn.len);
        if (dst == NULL) {
            return NGX_CONF_ERROR;
        }

        d->logon_domain.data = dst;
        p = d->base_dn.data;
        last = p + d->base_dn.len;

        while (p < last) {
            rdn.data = p;
            while (p < last && *p != ',') {
                p++;
            }
            rdn.len = p - rdn.data;
            p++;

            while (rdn.len && rdn.data[0] == ' ') {
                rdn.data++;
                rdn.len--;
            }

            if (rdn.len > 3 && ngx_strncasecmp(rdn.data, (u_char *) "DC=", 3)
                               == 0)
            {
                if (dst != d->logon_domain.data) {
                    *dst++ = '.';
                }
                dst = ngx_cpymem(dst, rdn.data + 3, rdn.len - 3);
            }
        }

        d->logon_domain.len = dst - d->logon_domain.data;
    }

    /* netbios_domain defaults to the first label, upper case */

    if (d->netbios_domain.len == 0 && d->logon_domain.len) {

        p = ngx_strlchr(d->logon_domain.data,
                        d->logon_domain.data + d->logon_domain.len, '.');

        d->netbios_domain.len = p ? (size_t) (p - d->logon_domain.data)
                                  : d->logon_domain.len;
        d->netbios_domain.data = ngx_pnalloc(cf->pool, d->netbios_domain.len);
        if (d->netbios_domain.data == NULL) {
            return NGX_CONF_ERROR;
        }

        for (i = 0; i < d->netbios_domain.len; i++) {
            d->netbios_domain.data[i] = ngx_toupper(d->logon_domain.data[i]);
        }
    }

    if (d->logon_format == NGX_ESP_LOGON_USERNAME
        && d->netbios_domain.len == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "esp_sso_domain \"%V\": \"logon_format username\" "
                           "needs \"netbios_domain\"", &d->name);
        return NGX_CONF_ERROR;
    }

    if (d->bind_password.data) {
        cln = ngx_pool_cleanup_add(cf->pool, 0);
        if (cln == NULL) {
            return NGX_CONF_ERROR;
        }

        cln->handler = ngx_esp_domain_wipe;
        cln->data = d;
    }

    return NGX_CONF_OK;
}


static void
ngx_esp_domain_wipe(void *data)
{
    ngx_esp_domain_t  *d = data;

    ngx_explicit_memzero(d->bind_password.data, d->bind_password.len);
}


static char *
ngx_esp_check_bounds(ngx_conf_t *cf, void *post, void *data)
{
    ngx_esp_num_bounds_t  *b = post;
    ngx_int_t             *np = data;

    if (*np < b->low || *np > b->high) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\" must be between %i and %i",
                           b->name, b->low, b->high);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* "esp" refers to domains that may be defined later in the file */

ngx_int_t
ngx_esp_domains_check(ngx_conf_t *cf, ngx_esp_main_conf_t *emcf)
{
    ngx_uint_t          i;
    ngx_esp_domain_t  **dp;

    dp = emcf->domains.elts;

    for (i = 0; i < emcf->domains.nelts; i++) {

        if (!dp[i]->defined) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "unknown SSO domain \"%V\" in \"esp\" directive "
                          "in %s:%ui: no esp_sso_domain of that name",
                          &dp[i]->name, dp[i]->used_file, dp[i]->used_line);
            return NGX_ERROR;
        }

        if (ngx_esp_ldap_init_domain(cf, dp[i]) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static char *
ngx_esp_ldap_server(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_esp_domain_t  *d = conf;

    ngx_str_t                   *value, rest;
    ngx_esp_ldap_server_conf_t  *s;

    value = cf->args->elts;

    s = ngx_array_push(&d->servers);
    if (s == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(s, sizeof(ngx_esp_ldap_server_conf_t));

    s->name = value[1];

    if (value[1].len > 8
        && ngx_strncasecmp(value[1].data, (u_char *) "ldaps://", 8) == 0)
    {
        s->ldaps = 1;
        rest.data = value[1].data + 8;
        rest.len = value[1].len - 8;
        s->url.default_port = 636;

    } else if (value[1].len > 7
               && ngx_strncasecmp(value[1].data, (u_char *) "ldap://", 7)
                  == 0)
    {
        rest.data = value[1].data + 7;
        rest.len = value[1].len - 7;
        s->url.default_port = 389;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid LDAP URL \"%V\": expected "
                           "\"ldaps://host[:port]\" or "
                           "\"ldap://host[:port] starttls\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (cf->args->nelts == 3) {
        if (ngx_strcmp(value[2].data, "starttls") != 0 || s->ldaps) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\": only an ldap:// "
                               "server takes \"starttls\"", &value[2]);
            return NGX_CONF_ERROR;
        }

        s->starttls = 1;
    }

    if (!s->ldaps && !s->starttls) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" would send passwords in clear text: use "
                           "ldaps:// or add \"starttls\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (rest.len && rest.data[rest.len - 1] == '/') {
        rest.len--;
    }

    s->url.url = rest;

    if (ngx_parse_url(cf->pool, &s->url) != NGX_OK) {
        if (s->url.err) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%s in LDAP URL \"%V\"", s->url.err,
                               &value[1]);
        }

        return NGX_CONF_ERROR;
    }

    if (s->url.uri.len || s->url.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid LDAP URL \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_esp_ldap_bind_password_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_esp_domain_t  *d = conf;

    ngx_str_t  *value;

    if (d->bind_password.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    return ngx_esp_conf_read_secret(cf, &value[1], &d->bind_password);
}


/* a password from a file, its last line ends trimmed; wipe it on exit */

char *
ngx_esp_conf_read_secret(ngx_conf_t *cf, ngx_str_t *file, ngx_str_t *secret)
{
    char             *rv;
    u_char           *buf;
    size_t            len;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_str_t         name;
    ngx_file_info_t   fi;

    name = *file;

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    fd = ngx_open_file(name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%s\" failed", name.data);
        return NGX_CONF_ERROR;
    }

    rv = NGX_CONF_ERROR;
    buf = NULL;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_fd_info_n " \"%s\" failed", name.data);
        goto done;
    }

    len = ngx_file_size(&fi);

    if (len == 0 || len > NGX_ESP_MAX_SECRET) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "password file \"%s\" must hold 1 to %d bytes",
                           name.data, NGX_ESP_MAX_SECRET);
        goto done;
    }

    if (fi.st_mode & (S_IROTH|S_IWOTH)) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "password file \"%s\" is readable by other users",
                           name.data);
    }

    buf = ngx_pnalloc(cf->pool, len);
    if (buf == NULL) {
        goto done;
    }

    n = ngx_read_fd(fd, buf, len);

    if (n == -1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_read_fd_n " \"%s\" failed", name.data);
        goto done;
    }

    len = n;

    while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) {
        len--;
    }

    if (len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "password file \"%s\" is empty", name.data);
        goto done;
    }

    secret->data = buf;
    secret->len = len;
    buf = NULL;
    rv = NGX_CONF_OK;

done:

    if (buf) {
        ngx_explicit_memzero(buf, len);
    }

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_ALERT, cf, ngx_errno,
                           ngx_close_file_n " \"%s\" failed", name.data);
    }

    return rv;
}


/* session_timeout public|private idle=TIME [max=TIME] */

static char *
ngx_esp_session_timeout(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_esp_domain_t  *d = conf;

    time_t      *idle, *max, t;
    ngx_str_t   *value, s;
    ngx_uint_t   i;

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "public") == 0) {
        idle = &d->public_idle;
        max = &d->public_max;

    } else if (ngx_strcmp(value[1].data, "private") == 0) {
        idle = &d->private_idle;
        max = &d->private_max;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\": expected \"public\" "
                           "or \"private\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (*idle != NGX_CONF_UNSET || *max != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "idle=", 5) == 0) {
            s.data = value[i].data + 5;
            s.len = value[i].len - 5;

        } else if (ngx_strncmp(value[i].data, "max=", 4) == 0) {
            s.data = value[i].data + 4;
            s.len = value[i].len - 4;

        } else {
            goto invalid;
        }

        t = ngx_parse_time(&s, 1);
        if (t == (time_t) NGX_ERROR || t == 0) {
            goto invalid;
        }

        if (value[i].data[0] == 'i') {
            if (*idle != NGX_CONF_UNSET) {
                goto invalid;
            }
            *idle = t;

        } else {
            if (*max != NGX_CONF_UNSET) {
                goto invalid;
            }
            *max = t;
        }
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\": expected \"idle=TIME\" or "
                       "\"max=TIME\"", &value[i]);
    return NGX_CONF_ERROR;
}
