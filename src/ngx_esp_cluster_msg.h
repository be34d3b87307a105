
/*
 * Copyright (C) ngx_exchange_esp authors
 */


/*
 * What the cluster store says, read into the module's own structures
 * (src/ngx_esp_cluster.c uses them; fuzz/fuzz_cluster_*.c tries them on
 * any bytes): the channel's messages and the sorted sets' members, and
 * the replies of the reservation and resynchronisation scripts as
 * hiredis's reader hands them over.  Everything the store sends is
 * untrusted: a member or message is taken only whole and well-formed.
 *
 *   s KEY EXPIRES              a session revoked (KEY: its zone key)
 *   u KEY CKEY SINCE EXPIRES   a user's sessions up to SINCE, and the
 *                              user's cached credential (CKEY)
 *   b KEY UNTIL                a lockout counter blocked
 *   r KEY                      a lockout counter reset or unblocked
 *
 * KEY is 64 hex digits, times are decimal Unix seconds.
 */


#ifndef _NGX_ESP_CLUSTER_MSG_H_INCLUDED_
#define _NGX_ESP_CLUSTER_MSG_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include <hiredis/hiredis.h>

#include "ngx_esp_shm.h"


#define NGX_ESP_CLUSTER_HEX_LEN   (2 * NGX_ESP_SHM_KEY_LEN)
#define NGX_ESP_CLUSTER_TIME_LEN  12
#define NGX_ESP_CLUSTER_MSG_LEN   (2 + 2 * (NGX_ESP_CLUSTER_HEX_LEN + 1)     \
                                   + 2 * (NGX_ESP_CLUSTER_TIME_LEN + 1))


typedef struct {
    u_char                     type;         /* s u b r */
    u_char                     key[NGX_ESP_SHM_KEY_LEN];
    u_char                     key2[NGX_ESP_SHM_KEY_LEN];
    time_t                     t1;           /* expires, since, until */
    time_t                     t2;           /* u: expires */
} ngx_esp_cluster_event_t;


typedef void (*ngx_esp_cluster_apply_pt)(ngx_esp_cluster_event_t *ev,
    void *data);


/* a message: NGX_OK, or NGX_ERROR if it is not one whole and well-formed */
ngx_int_t ngx_esp_cluster_parse(u_char *p, size_t len,
    ngx_esp_cluster_event_t *ev);

/*
 * The message (at most NGX_ESP_CLUSTER_MSG_LEN bytes); with "member" the
 * sorted set's member only, without the time that is its score.
 */
u_char *ngx_esp_cluster_format(u_char *p, ngx_esp_cluster_event_t *ev,
    ngx_uint_t member);

/*
 * The reservation script's reply: NGX_OK (held), NGX_AGAIN (every slot
 * busy), NGX_BUSY (blocked, *until when known), NGX_ERROR (anything else).
 */
ngx_int_t ngx_esp_cluster_reserve_reply(redisReply *reply, time_t *until);

/*
 * The resynchronisation script's reply: {blocks, revocations}, each a
 * list of member, score; "apply" gets every well-formed one.  The number
 * applied, or NGX_ERROR if the reply has not that shape.
 */
ngx_int_t ngx_esp_cluster_resync_reply(redisReply *reply,
    ngx_esp_cluster_apply_pt apply, void *data);

/* a subscriber's push ["message", channel, text]: NGX_OK or NGX_ERROR */
ngx_int_t ngx_esp_cluster_message(redisReply *reply,
    ngx_esp_cluster_event_t *ev);


#endif /* _NGX_ESP_CLUSTER_MSG_H_INCLUDED_ */
