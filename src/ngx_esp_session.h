
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#ifndef _NGX_ESP_SESSION_H_INCLUDED_
#define _NGX_ESP_SESSION_H_INCLUDED_


#include "ngx_esp.h"


#define NGX_ESP_SESSION_ID_LEN    16
#define NGX_ESP_KEY_LEN           32
#define NGX_ESP_KEY_ID_LEN        4
#define NGX_ESP_GROUPS_LEN        8

#define NGX_ESP_SESSION_PRIVATE   0x01


typedef struct {
    u_char                     key[NGX_ESP_KEY_LEN];
    u_char                     id[NGX_ESP_KEY_ID_LEN];
    ngx_str_t                  file;
    void                      *ctx[2];      /* per worker: open, seal */
    void                      *kdf;         /* per worker: password keys */
} ngx_esp_key_t;


/* what a session cookie holds, sealed with AES-256-GCM */
typedef struct {
    u_char                     id[NGX_ESP_SESSION_ID_LEN];
    time_t                     issued;
    time_t                     last_seen;
    ngx_uint_t                 flags;
    u_char                     groups[NGX_ESP_GROUPS_LEN];  /* checked */
    ngx_str_t                  domain;
    ngx_str_t                  user;

    /*
     * Only for server auth basic: the password, sealed a second time
     * under esp_password_key (see ngx_esp_session_open_password()).
     */
    ngx_str_t                  sealed_password;
} ngx_esp_session_t;


char *ngx_esp_session_key(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_esp_password_key(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
ngx_int_t ngx_esp_session_random_key(ngx_conf_t *cf, ngx_array_t **keys);

/* per location, after the merge: a password key for those that need one */
ngx_int_t ngx_esp_session_password_conf(ngx_conf_t *cf,
    ngx_esp_loc_conf_t *conf);

ngx_int_t ngx_esp_session_seal(ngx_pool_t *pool, ngx_array_t *keys,
    ngx_esp_session_t *s, ngx_str_t *out);

/*
 * NGX_OK: "s" is filled (its strings point into memory from "pool" that
 * is wiped when the pool goes); NGX_DECLINED: not a session of ours
 * ("reason" says why); NGX_ERROR: out of memory.
 */
ngx_int_t ngx_esp_session_open(ngx_pool_t *pool, ngx_array_t *keys,
    ngx_str_t *cookie, ngx_esp_session_t *s, const char **reason);

/*
 * The password of a session with server auth basic: sealed into
 * s->sealed_password (s->id, domain and user set first), and opened from
 * it into "password" (memory from "pool", wiped when the pool goes).
 * Open: NGX_OK; NGX_DECLINED when there is none or it does not open
 * ("reason" says why), the session then needs a new login; NGX_ERROR.
 */
ngx_int_t ngx_esp_session_seal_password(ngx_pool_t *pool, ngx_array_t *keys,
    ngx_esp_session_t *s, ngx_str_t *password);
ngx_int_t ngx_esp_session_open_password(ngx_pool_t *pool, ngx_array_t *keys,
    ngx_esp_session_t *s, ngx_str_t *password, const char **reason);


/*
 * Other sealed values (src/ngx_esp_mfa.c): AES-256-GCM under the first of
 * "keys" with "aad" bound in; raw bytes.  open: NGX_OK ("plain" is wiped
 * when the pool goes), NGX_DECLINED (unknown key, does not authenticate,
 * truncated), NGX_ERROR.
 */
ngx_int_t ngx_esp_seal_value(ngx_pool_t *pool, ngx_array_t *keys,
    ngx_str_t *aad, ngx_str_t *plain, ngx_str_t *sealed);
ngx_int_t ngx_esp_open_value(ngx_pool_t *pool, ngx_array_t *keys,
    ngx_str_t *aad, ngx_str_t *sealed, ngx_str_t *plain);

/* "file [file ...]" of a directive into *keys (NULL or UNSET before) */
char *ngx_esp_key_files(ngx_conf_t *cf, ngx_array_t **keys, char *what);


#endif /* _NGX_ESP_SESSION_H_INCLUDED_ */
