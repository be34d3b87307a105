
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#ifndef _NGX_ESP_DOMAIN_H_INCLUDED_
#define _NGX_ESP_DOMAIN_H_INCLUDED_


#include "ngx_esp.h"


ngx_esp_domain_t *ngx_esp_domain_get(ngx_conf_t *cf, ngx_str_t *name,
    ngx_uint_t create);
char *ngx_esp_sso_domain_block(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_esp_domains_check(ngx_conf_t *cf, ngx_esp_main_conf_t *emcf);
char *ngx_esp_conf_read_secret(ngx_conf_t *cf, ngx_str_t *file,
    ngx_str_t *secret);


#endif /* _NGX_ESP_DOMAIN_H_INCLUDED_ */
