
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#ifndef _NGX_ESP_RADIUS_H_INCLUDED_
#define _NGX_ESP_RADIUS_H_INCLUDED_


#include "ngx_esp.h"


/* RFC 2865: the longest packet, and the longest User-Password */
#define NGX_ESP_RADIUS_MAX_PACKET    4096
#define NGX_ESP_RADIUS_MAX_PASSWORD  128
#define NGX_ESP_RADIUS_MAX_STRING    253
#define NGX_ESP_RADIUS_AUTH_LEN      16

#define NGX_ESP_RADIUS_HDR_LEN       20

/* attribute types */
#define NGX_ESP_RADIUS_USER_NAME         1
#define NGX_ESP_RADIUS_USER_PASSWORD     2
#define NGX_ESP_RADIUS_NAS_IP_ADDRESS    4
#define NGX_ESP_RADIUS_REPLY_MESSAGE     18
#define NGX_ESP_RADIUS_STATE             24
#define NGX_ESP_RADIUS_NAS_IDENTIFIER    32
#define NGX_ESP_RADIUS_MESSAGE_AUTH      80

/* codes */
#define NGX_ESP_RADIUS_ACCESS_REQUEST    1
#define NGX_ESP_RADIUS_ACCESS_ACCEPT     2
#define NGX_ESP_RADIUS_ACCESS_REJECT     3
#define NGX_ESP_RADIUS_ACCESS_CHALLENGE  11

/* radius_password: what goes into User-Password */
#define NGX_ESP_RADIUS_PASSWORD_CODE       0
#define NGX_ESP_RADIUS_PASSWORD_DIRECTORY  1


typedef struct {
    ngx_str_t                  name;         /* as written, for logs */
    ngx_url_t                  url;
    ngx_str_t                  secret;       /* wiped on exit */
    ngx_msec_t                 timeout;
    ngx_uint_t                 retries;      /* sends after the first */
} ngx_esp_radius_server_t;


/* the radius_* directives of one esp_sso_domain { } */
typedef struct {
    ngx_array_t                servers;      /* ngx_esp_radius_server_t */
    ngx_str_t                  nas_identifier;
    in_addr_t                  nas_ip;       /* INADDR_NONE: not sent */
    ngx_uint_t                 password;     /* NGX_ESP_RADIUS_PASSWORD_* */
} ngx_esp_radius_conf_t;


typedef enum {
    NGX_ESP_RADIUS_OK = 0,       /* Access-Accept */
    NGX_ESP_RADIUS_REJECTED,     /* Access-Reject */
    NGX_ESP_RADIUS_CHALLENGED,   /* Access-Challenge: ask for another code */
    NGX_ESP_RADIUS_UNAVAILABLE,  /* no server gave a valid answer in time */
    NGX_ESP_RADIUS_INVALID,      /* refused before sending (too long) */
    NGX_ESP_RADIUS_FAILED        /* internal error */
} ngx_esp_radius_result_e;


/* what ngx_esp_radius_parse() found in a verified reply */
typedef struct {
    ngx_uint_t                 code;
    ngx_str_t                  reply_message;    /* points into the packet */
    ngx_str_t                  state;            /* points into the packet */
    ngx_uint_t                 nreply;           /* Reply-Message count */
} ngx_esp_radius_reply_t;


typedef struct ngx_esp_radius_query_s  ngx_esp_radius_query_t;

typedef void (*ngx_esp_radius_done_pt)(ngx_esp_radius_query_t *q);


struct ngx_esp_radius_query_s {
    /* filled by the caller */
    ngx_esp_radius_conf_t     *conf;
    ngx_str_t                  user;
    ngx_str_t                  password;     /* copied; wiped when done */
    ngx_str_t                  state;        /* a challenge's, or empty */
    ngx_esp_radius_done_pt     handler;
    void                      *data;

    /* filled before the handler is called */
    ngx_esp_radius_result_e    result;
    ngx_str_t                  reply_message;    /* UTF-8 as sent */
    ngx_str_t                  reply_state;      /* Access-Challenge's */
    ngx_str_t                  server;           /* who answered */

    /* private */
    ngx_pool_t                *pool;
    ngx_log_t                  log;
    ngx_log_t                 *parent_log;
    ngx_peer_connection_t      peer;
    ngx_event_t                timer;
    ngx_event_t                finish;
    ngx_uint_t                 index;        /* server being asked */
    ngx_uint_t                 sent;         /* sends to it so far */
    u_char                    *packet;
    size_t                     len;
    u_char                     id;
    unsigned                   running:1;
};


/* domain block directives (called from src/ngx_esp_domain.c) */
char *ngx_esp_radius_server(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_esp_radius_nas_identifier(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_esp_radius_nas_ip_address(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_esp_radius_password(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_esp_radius_init_domain(ngx_conf_t *cf, ngx_esp_domain_t *d);

/*
 * A query allocated from pool; when the pool goes (the request ends) a
 * query still running is cancelled: its socket closed, its timers gone.
 */
ngx_esp_radius_query_t *ngx_esp_radius_create(ngx_pool_t *pool,
    ngx_log_t *log);

/*
 * Sends the Access-Request; the handler is always called later from the
 * event loop, never from within this call.  NGX_ERROR: nothing started.
 */
ngx_int_t ngx_esp_radius_start(ngx_esp_radius_query_t *q);
void ngx_esp_radius_cancel(ngx_esp_radius_query_t *q);

/* packets, without I/O: src/ngx_esp_radius_packet.c */
ssize_t ngx_esp_radius_build(u_char *buf, size_t size, u_char id,
    u_char *auth, ngx_str_t *secret, ngx_str_t *user, ngx_str_t *password,
    ngx_str_t *nas_identifier, in_addr_t nas_ip, ngx_str_t *state);
ngx_int_t ngx_esp_radius_parse(u_char *buf, size_t n, u_char id,
    u_char *auth, ngx_str_t *secret, ngx_esp_radius_reply_t *reply,
    const char **err);


#endif /* _NGX_ESP_RADIUS_H_INCLUDED_ */
