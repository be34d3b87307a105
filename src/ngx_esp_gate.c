
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_esp_gate.h"
#include "ngx_esp_http.h"
#include "ngx_esp_log.h"
#include "ngx_esp_match.h"


ngx_int_t
ngx_esp_gate_host(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf)
{
    if (!ngx_esp_match_hosts(elcf->allowed_hosts, &r->headers_in.server)) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "esp: host \"%V\" is not allowed",
                      ngx_esp_log_escape(r->pool, &r->headers_in.server));
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

ngx_int_t
ngx_esp_gate_path(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
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
                      ngx_esp_log_escape(r->pool, &r->uri));
        return NGX_HTTP_FORBIDDEN;
    }

    if (elcf->excluded_dirs
        && ngx_esp_match_paths(elcf->excluded_dirs, &r->uri)
        && ngx_esp_match_paths(elcf->excluded_dirs, &canon))
    {
        if (ngx_esp_path_is_plain(raw.data, raw.len)) {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "esp: \"%V\" is excluded from pre-authentication",
                           ngx_esp_log_escape(r->pool, &r->uri));
            *excluded = 1;

        } else {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "esp: \"%V\" matches an excluded directory but is "
                          "not written plainly: authentication required",
                          ngx_esp_log_escape(r->pool, &r->uri));
        }
    }

    return NGX_OK;
}


/*
 * Nobody may try passwords against Exchange past the gate: the lockout
 * and the login log would never see them.
 */

ngx_int_t
ngx_esp_gate_excluded(ngx_http_request_t *r)
{
    if (r->headers_in.authorization
        && ngx_esp_http_set_header(r, &r->headers_in.headers,
                                   "Authorization", NULL,
                                   &r->headers_in.authorization)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_DECLINED;
}
