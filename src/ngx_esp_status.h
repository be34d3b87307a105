
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#ifndef _NGX_ESP_STATUS_H_INCLUDED_
#define _NGX_ESP_STATUS_H_INCLUDED_


#include "ngx_esp.h"
#include "ngx_esp_ldap.h"


#ifndef NGX_ESP_VERSION
#define NGX_ESP_VERSION  "0.1.0"
#endif


/*
 * "esp_status;" (location): the operator's status page, JSON or
 * Prometheus text, and the admin actions (POST unblock, revoke).  The
 * location is never gated by "esp" (it implies "esp off" there): protect
 * it with allow/deny or auth_basic.  conf is ngx_esp_loc_conf_t.
 */
char *ngx_esp_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);


#endif /* _NGX_ESP_STATUS_H_INCLUDED_ */
