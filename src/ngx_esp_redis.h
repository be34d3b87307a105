
/*
 * Copyright (C) ngx_exchange_esp authors
 */


/*
 * A Redis (or Valkey) client on nginx's event loop, for the cluster store
 * (src/ngx_esp_cluster.c): never a thread, never a blocking call.  The
 * connections are nginx's own (TLS through nginx's OpenSSL, the server's
 * certificate checked as the directory client checks a DC's); hiredis
 * only formats commands (redisFormatCommandArgv) and parses replies
 * (redisReader) on buffers.
 *
 * A client is a worker's small pool of pipelined connections to the
 * first server that answers, of the esp_cluster servers in their order.
 * Every command has a time-out; when no server can be reached the client
 * is down for a second and every command fails at once, so that nothing
 * waits for a store that is not there.
 */


#ifndef _NGX_ESP_REDIS_H_INCLUDED_
#define _NGX_ESP_REDIS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>

#include <hiredis/hiredis.h>

#include "ngx_esp_tls.h"


typedef struct ngx_esp_redis_s       ngx_esp_redis_t;
typedef struct ngx_esp_redis_cmd_s   ngx_esp_redis_cmd_t;


/* "reply" is NULL when the command failed: no connection, time-out */
typedef void (*ngx_esp_redis_handler_pt)(ngx_esp_redis_cmd_t *cmd,
    redisReply *reply);

/* a client's events: a pushed message (subscriber), up, down */
typedef void (*ngx_esp_redis_push_pt)(ngx_esp_redis_t *rs,
    redisReply *reply);
typedef void (*ngx_esp_redis_event_pt)(ngx_esp_redis_t *rs);


typedef struct {
    ngx_str_t                  name;         /* as written, for logs */
    ngx_url_t                  url;
    ngx_uint_t                 tls;          /* rediss:// */
    ngx_esp_tls_peer_t         peer;
} ngx_esp_redis_server_t;


/* the esp_cluster directive */
typedef struct {
    ngx_array_t                servers;      /* ngx_esp_redis_server_t */
    ngx_str_t                  user;         /* ACL user, or empty */
    ngx_str_t                  password;     /* wiped on exit */
    ngx_str_t                  prefix;
    ngx_str_t                  ca_certificate;
    ngx_flag_t                 verify;
    ngx_msec_t                 connect_timeout;
    ngx_msec_t                 timeout;
    ngx_uint_t                 connections;  /* per worker */
    ngx_ssl_t                 *ssl;
    u_char                    *file;
    ngx_uint_t                 line;
} ngx_esp_redis_conf_t;


struct ngx_esp_redis_cmd_s {
    ngx_queue_t                queue;
    ngx_esp_redis_handler_pt   handler;      /* NULL: nobody waits */
    void                      *data;
    char                      *buf;          /* the formatted command */
    size_t                     len;
};


struct ngx_esp_redis_s {
    ngx_esp_redis_conf_t      *conf;
    void                      *conns;        /* ngx_esp_redis_conn_t */
    ngx_uint_t                 nconns;
    ngx_uint_t                 next;         /* round robin */
    ngx_uint_t                 server;       /* the one in use */
    ngx_msec_t                 down_until;   /* ngx_current_msec */
    ngx_uint_t                 failures;     /* servers failed in a row */
    ngx_log_t                 *log;

    ngx_esp_redis_push_pt      push;         /* subscriber, or NULL */
    ngx_esp_redis_event_pt     up;           /* a connection is ready */
    ngx_esp_redis_event_pt     down;         /* no server answers */
    void                      *data;

    unsigned                   is_down:1;
    unsigned                   exiting:1;
};


/* config time: TLS context and password checks */
ngx_int_t ngx_esp_redis_init_conf(ngx_conf_t *cf, ngx_esp_redis_conf_t *rc);

/* a worker's client of "n" connections; NULL on no memory */
ngx_esp_redis_t *ngx_esp_redis_create(ngx_cycle_t *cycle,
    ngx_esp_redis_conf_t *conf, ngx_uint_t n);

/*
 * Sends a command (argv as Redis takes it); the handler is called once,
 * later, with the reply or NULL.  Returns the command (set its handler
 * to NULL to stop waiting for it), or NULL at once if the store is down
 * or memory is short: the handler is then never called.
 */
ngx_esp_redis_cmd_t *ngx_esp_redis_command(ngx_esp_redis_t *rs, int argc,
    const char **argv, const size_t *argvlen,
    ngx_esp_redis_handler_pt handler, void *data);

/* closes every connection, failing what waits (exit, or a reset) */
void ngx_esp_redis_close_all(ngx_esp_redis_t *rs);


#endif /* _NGX_ESP_REDIS_H_INCLUDED_ */
