
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_esp_auth.h"
#include "ngx_esp_basic.h"
#include "ngx_esp_bearer.h"
#include "ngx_esp_http.h"
#include "ngx_esp_refusal.h"


static ngx_int_t ngx_esp_basic_done(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);
static ngx_int_t ngx_esp_basic_challenge(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf);


ngx_int_t
ngx_esp_basic_access(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx)
{
    ngx_int_t  rc;

    rc = ngx_esp_bearer_access(r, elcf);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    rc = ngx_esp_auth_reuse(r, elcf, ctx);

    if (rc == NGX_OK) {
        /* an earlier location checked the same: its answer again, here */
        return ngx_esp_basic_done(r, elcf, ctx);
    }

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /*
     * An earlier location of this request (internal redirect) may have
     * kept the client's Authorization from its Exchange: the credentials
     * are then those decoded there.  nginx's own copy is no guide: its
     * decoder, asked again without the header ($remote_user), spoils it.
     */

    if (r->headers_in.authorization || ctx->basic_user.len == 0) {

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

        ctx->basic_user = r->headers_in.user;
        ctx->basic_password = r->headers_in.passwd;
    }

    ctx->user = ctx->basic_user;
    ctx->password = ctx->basic_password;

    return ngx_esp_auth_start(r, elcf, ctx, ngx_esp_basic_done,
                              NGX_ESP_AUTH_CACHE);
}


ngx_int_t
ngx_esp_basic_delegate(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx)
{
    ngx_int_t   rc;
    ngx_str_t  *auth;

    rc = ngx_esp_bearer_access(r, elcf);
    if (rc != NGX_DECLINED) {
        return (rc == NGX_OK) ? NGX_DECLINED : rc;
    }

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

    return ngx_esp_basic_access(r, elcf, ctx);
}


/*
 * The directory (or the cache, or the lockout) has decided; on success,
 * step 8: what Exchange gets to see of the client's credentials.
 */

static ngx_int_t
ngx_esp_basic_done(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx)
{
    switch (ngx_esp_refusal_shown(elcf, ctx->result)) {

    case NGX_ESP_AUTH_OK:

        /* delegate: verified Basic goes on as it came, Exchange checks it */

        if (elcf->client_auth != NGX_ESP_CLIENT_DELEGATE
            && elcf->server_auth != NGX_ESP_SERVER_BASIC
            && r->headers_in.authorization
            && ngx_esp_http_set_header(r, &r->headers_in.headers,
                                       "Authorization", NULL,
                                       &r->headers_in.authorization)
               != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return NGX_OK;

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


static ngx_int_t
ngx_esp_basic_challenge(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf)
{
    u_char     *p;
    size_t      len;
    ngx_str_t   value;

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

    if (ngx_esp_http_set_header(r, &r->headers_out.headers, "WWW-Authenticate",
                                &value, &r->headers_out.www_authenticate)
        != NGX_OK
        || ngx_esp_bearer_challenge(r, elcf, 0) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_HTTP_UNAUTHORIZED;
}
