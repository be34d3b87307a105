
/*
 * Copyright (C) ngx_exchange_esp authors
 */


/*
 * Private to the directory client (src/ngx_esp_ldap*.c): a worker's
 * domain controllers and their pools of connections, as
 * src/ngx_esp_ldap_conn.c runs them for the logins of src/ngx_esp_ldap.c.
 * The connections call the logins only through ngx_esp_ldap_handlers_t.
 */


#ifndef _NGX_ESP_LDAP_CONN_H_INCLUDED_
#define _NGX_ESP_LDAP_CONN_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>

#include "ngx_esp_ldap.h"
#include "ngx_esp_ldap_ber.h"
#include "ngx_esp_tls.h"


/* slot states */
#define NGX_ESP_LDAP_FREE             0
#define NGX_ESP_LDAP_CONNECTING       1
#define NGX_ESP_LDAP_STARTTLS         2
#define NGX_ESP_LDAP_HANDSHAKE        3
#define NGX_ESP_LDAP_IDLE             4
#define NGX_ESP_LDAP_BUSY             5

/* why a connection failed */
#define NGX_ESP_LDAP_FAIL_CONNECT     0
#define NGX_ESP_LDAP_FAIL_TLS         1
#define NGX_ESP_LDAP_FAIL_VERIFY      2
#define NGX_ESP_LDAP_FAIL_TIMEOUT     3
#define NGX_ESP_LDAP_FAIL_CLOSED      4
#define NGX_ESP_LDAP_FAIL_PROTOCOL    5
#define NGX_ESP_LDAP_FAIL_REFUSED     6
#define NGX_ESP_LDAP_FAIL_INTERNAL    7


typedef struct ngx_esp_ldap_worker_s  ngx_esp_ldap_worker_t;
typedef struct ngx_esp_ldap_dc_s      ngx_esp_ldap_dc_t;
typedef struct ngx_esp_ldap_conn_s    ngx_esp_ldap_conn_t;

/* a login, defined in src/ngx_esp_ldap.c: a connection only points to it */
typedef struct ngx_esp_ldap_op_s      ngx_esp_ldap_op_t;


/*
 * What a connection tells the logins (src/ngx_esp_ldap.c sets them):
 *   send    conn->op may send its request: the connection is up, BUSY;
 *   answer  a search entry (NGX_OK or NGX_ERROR), or the answer that ends
 *           an exchange of conn->op (NGX_DONE: conn is no longer its);
 *   fail    the connection failed: close it, and fail conn->op over;
 *   idle    a healthy connection has nobody: NGX_OK if a login waiting
 *           for its DC took it, NGX_DECLINED if it is to be pooled;
 *   up      the DC answered.
 */
typedef struct {
    void                     (*send)(ngx_esp_ldap_op_t *op);
    ngx_int_t                (*answer)(ngx_esp_ldap_op_t *op,
                                       ngx_esp_ldap_msg_t *m);
    void                     (*fail)(ngx_esp_ldap_conn_t *conn,
                                     ngx_uint_t why);
    ngx_int_t                (*idle)(ngx_esp_ldap_conn_t *conn);
    void                     (*up)(ngx_esp_ldap_dc_t *dc);
} ngx_esp_ldap_handlers_t;


struct ngx_esp_ldap_conn_s {
    ngx_peer_connection_t      peer;
    ngx_esp_ldap_dc_t         *dc;
    ngx_esp_ldap_op_t         *op;          /* NULL: idle or orphaned */

    ngx_event_t                timer;       /* exchange or idle timeout */
    ngx_log_t                  log;

    ngx_uint_t                 state;
    ber_int_t                  expect;      /* awaited answer, 0: none */
    ber_tag_t                  expect_type;
    ngx_msec_t                 sent;

    ngx_esp_ldap_out_t         out;         /* request being sent */

    u_char                    *in;          /* answers being received */
    size_t                     in_size;
    size_t                     in_pos;
    size_t                     in_len;

    /* an abandoned op's user bind under way: who hears its answer */
    ngx_esp_ldap_orphan_pt     orphan;
    void                      *orphan_data;

    unsigned                   reused:1;    /* from the idle pool, silent */
};


struct ngx_esp_ldap_dc_s {
    ngx_esp_ldap_server_conf_t  *conf;
    ngx_esp_ldap_worker_t       *lw;
    ngx_esp_ldap_dc_stats_t     *stats;

    ngx_esp_tls_peer_t           peer;      /* for the certificate check */

    ngx_esp_ldap_conn_t         *conns;
    ngx_uint_t                   nconns;

    /* the logins' */
    ngx_queue_t                  waiting;   /* ops waiting for a slot */

    time_t                       down_until;
    unsigned                     down:1;    /* said so in the log */
    unsigned                     probe:1;   /* an op checks if it is back */
};


struct ngx_esp_ldap_worker_s {
    ngx_esp_domain_t          *domain;
    ngx_esp_ldap_dc_t         *dcs;
    ngx_uint_t                 ndcs;
    ngx_esp_ldap_dc_stats_t   *stats;
    ngx_esp_ldap_handlers_t    handlers;
};


/* the DC's slots (ldap_connections), its host name for SNI and checks */
ngx_int_t ngx_esp_ldap_init_conns(ngx_cycle_t *cycle, ngx_esp_ldap_dc_t *dc);

/*
 * A connection to "dc": an idle one, made BUSY, unless "fresh" is asked
 * for; else a FREE slot, for ngx_esp_ldap_connect(); NULL if all are busy.
 */
ngx_esp_ldap_conn_t *ngx_esp_ldap_get(ngx_esp_ldap_dc_t *dc,
    ngx_uint_t fresh);
void ngx_esp_ldap_connect(ngx_esp_ldap_conn_t *conn);

/* sends conn->out, then waits for the answer to it, of type "expect" */
void ngx_esp_ldap_send(ngx_esp_ldap_conn_t *conn, ber_tag_t expect);

/* the exchange is over, conn->op let go of it: the pool takes it back */
void ngx_esp_ldap_release(ngx_esp_ldap_conn_t *conn);
void ngx_esp_ldap_close(ngx_esp_ldap_conn_t *conn, ngx_uint_t clean);


#endif /* _NGX_ESP_LDAP_CONN_H_INCLUDED_ */
