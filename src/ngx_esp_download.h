
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#ifndef _NGX_ESP_DOWNLOAD_H_INCLUDED_
#define _NGX_ESP_DOWNLOAD_H_INCLUDED_


#include "ngx_esp.h"
#include "ngx_esp_request.h"


/*
 * OWA download domains (CVE-2021-1730): attachments are served from a host
 * name of their own, whose cookies the main host cannot set, since the
 * gate's session cookie is host-only and stays so.  A one-time hand-off
 * carries the session over:
 *
 *   download host, no session:  302 https://MAIN/_esp/download?url=PATH
 *                               &b=BINDING, and the cookie
 *                               esp_handoff=BINDING (Path=/_esp/handoff)
 *   main host, with a session:  302 https://DOWNLOAD/_esp/handoff?t=TOKEN
 *   download host, the token:   if the browser has the token's BINDING,
 *                               its own host-only cookie for the same
 *                               session (same id: a logoff ends both),
 *                               302 to PATH
 *
 * The token is sealed under the session keys for this purpose only, for
 * the download host only, for NGX_ESP_DOWNLOAD_TTL seconds, and used once
 * (its nonce enters the shared zone).
 *
 * "esp_download_host NAME;" (server, on the main host) and
 * "esp_download_for NAME;" (server, on the download host, NAME is the main
 * host).  A module of its own, so that its server settings live apart.
 */

#define NGX_ESP_DOWNLOAD_PATH    "/_esp/download"
#define NGX_ESP_HANDOFF_PATH     "/_esp/handoff"
#define NGX_ESP_DOWNLOAD_TTL     30
#define NGX_ESP_HANDOFF_COOKIE   "esp_handoff"


/*
 * The module's endpoints (called after the host check, as the login's
 * are): NGX_DECLINED when the path is not one of them or this server has
 * no download host relation.
 */
ngx_int_t ngx_esp_download_endpoint(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);

/*
 * A GET without a session on a download host: the 302 to the main host;
 * NGX_DECLINED on any other server.
 */
ngx_int_t ngx_esp_download_redirect(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx, ngx_str_t *back);


extern ngx_module_t  ngx_esp_download_module;


#endif /* _NGX_ESP_DOWNLOAD_H_INCLUDED_ */
