
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#ifndef _NGX_ESP_MATCH_H_INCLUDED_
#define _NGX_ESP_MATCH_H_INCLUDED_


#include "ngx_esp.h"


ngx_uint_t ngx_esp_glob_match(u_char *pattern, size_t plen, u_char *s,
    size_t len);
ngx_uint_t ngx_esp_match_paths(ngx_array_t *patterns, ngx_str_t *path);
ngx_uint_t ngx_esp_match_hosts(ngx_array_t *hosts, ngx_str_t *host);

ngx_int_t ngx_esp_canonical_path(u_char *raw, size_t len, ngx_str_t *out,
    const char **reason);
ngx_uint_t ngx_esp_path_is_plain(u_char *raw, size_t len);

char *ngx_esp_parse_path_pattern(ngx_conf_t *cf, ngx_str_t *value,
    void *elt);
char *ngx_esp_parse_host_pattern(ngx_conf_t *cf, ngx_str_t *value,
    void *elt);


#endif /* _NGX_ESP_MATCH_H_INCLUDED_ */
