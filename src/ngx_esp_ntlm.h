
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#ifndef _NGX_ESP_NTLM_H_INCLUDED_
#define _NGX_ESP_NTLM_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/*
 * "esp_ntlm" in an upstream {} block: an upstream connection that carried
 * an NTLM or Negotiate handshake stays bound to the client connection that
 * made it, and is never handed to any other client connection.  Every
 * other upstream {} is guarded: such a connection is closed after its
 * response, never cached by "keepalive" (which nginx 1.29.7 turned on by
 * default for every upstream {}).
 */

typedef struct {
    ngx_flag_t                       enable;
    ngx_msec_t                       timeout;       /* idle pinned connection */

    ngx_http_upstream_init_peer_pt   original_init_peer;

    ngx_str_t                       *name;          /* of the upstream {} */

    unsigned                         warned:1;      /* Connection: close */
    unsigned                         guard_warned:1;
} ngx_esp_ntlm_srv_conf_t;


extern ngx_module_t  ngx_esp_ntlm_module;


#endif /* _NGX_ESP_NTLM_H_INCLUDED_ */
