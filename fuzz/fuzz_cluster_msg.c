
/*
 * Copyright (C) ngx_exchange_esp authors
 */


/*
 * What the cluster store sends (src/ngx_esp_cluster_msg.c, compiled here
 * alone).  The first byte picks:
 *
 * - even: the rest is a channel message or a sorted set's member and
 *   score, as ngx_esp_cluster_parse() reads it;
 * - odd: the rest is the byte stream of a Redis connection, handed to
 *   the module's hiredis reader (ngx_esp_resp_reader()) in pieces (the byte's upper bits pick their size, as
 *   ngx_esp_redis_read_handler() gets them), every reply then read as a
 *   reservation's, a resynchronisation's and a pushed message.
 *
 * Properties:
 * - a message parses only whole: formatting what was parsed gives a
 *   message that parses to the same event, no longer than
 *   NGX_ESP_CLUSTER_MSG_LEN, and its member form is shorter still;
 * - a reservation reply is one of four answers, a block's time never
 *   negative; a resynchronisation applies no more blocks than the first
 *   list has members, no more revocations than the second, and never a
 *   reset.
 */


#include "fuzz_common.h"

#include "../src/ngx_esp_cluster_msg.c"
#include "../src/ngx_esp_resp.c"


static ngx_int_t   fuzz_applied;
static ngx_uint_t  fuzz_blocks;           /* of them, blocks */


static void
fuzz_check_event(ngx_esp_cluster_event_t *ev)
{
    u_char                   buf[NGX_ESP_CLUSTER_MSG_LEN], *p, *m;
    u_char                   mbuf[NGX_ESP_CLUSTER_MSG_LEN];
    ngx_esp_cluster_event_t  again;

    FUZZ_ASSERT(ev->type == 's' || ev->type == 'u' || ev->type == 'b'
                || ev->type == 'r');
    FUZZ_ASSERT(ev->t1 >= 0 && ev->t2 >= 0);

    p = ngx_esp_cluster_format(buf, ev, 0);
    FUZZ_ASSERT((size_t) (p - buf) <= NGX_ESP_CLUSTER_MSG_LEN);

    FUZZ_ASSERT(ngx_esp_cluster_parse(buf, p - buf, &again) == NGX_OK);
    FUZZ_ASSERT(ngx_memcmp(&again, ev, sizeof(ngx_esp_cluster_event_t)) == 0);

    m = ngx_esp_cluster_format(mbuf, ev, 1);
    FUZZ_ASSERT(m - mbuf <= p - buf);
}


static void
fuzz_apply(ngx_esp_cluster_event_t *ev, void *data)
{
    fuzz_check_event(ev);

    FUZZ_ASSERT(ev->type != 'r');

    fuzz_blocks += (ev->type == 'b');
    fuzz_applied++;
}


/* the members (pairs) of list i of a {blocks, revocations} reply */

static ngx_uint_t
fuzz_members(redisReply *reply, ngx_uint_t i)
{
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || reply->element[i]->type != REDIS_REPLY_ARRAY)
    {
        return 0;
    }

    return reply->element[i]->elements / 2;
}


static void
fuzz_reply(redisReply *reply)
{
    time_t                   until;
    ngx_int_t                rc, n;
    ngx_esp_cluster_event_t  ev;

    rc = ngx_esp_cluster_reserve_reply(reply, &until);

    FUZZ_ASSERT(rc == NGX_OK || rc == NGX_AGAIN || rc == NGX_BUSY
                || rc == NGX_ERROR);
    FUZZ_ASSERT(until >= 0);
    FUZZ_ASSERT(rc == NGX_BUSY || until == 0);

    fuzz_applied = 0;
    fuzz_blocks = 0;
    n = ngx_esp_cluster_resync_reply(reply, fuzz_apply, NULL);

    /* blocks only from the first list, revocations from the second */

    FUZZ_ASSERT(n == NGX_ERROR || n == fuzz_applied);
    FUZZ_ASSERT(n == NGX_ERROR || fuzz_blocks <= fuzz_members(reply, 0));
    FUZZ_ASSERT(n == NGX_ERROR
                || fuzz_applied - fuzz_blocks <= fuzz_members(reply, 1));

    if (ngx_esp_cluster_message(reply, &ev) == NGX_OK) {
        fuzz_check_event(&ev);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                   *p;
    void                     *reply;
    size_t                    off, piece, chunk;
    redisReader              *r;
    ngx_esp_cluster_event_t   ev;
    static const size_t       pieces[4] = { 1, 7, 64, 1 << 20 };

    if (size == 0) {
        return 0;
    }

    p = fuzz_dup(data + 1, size - 1);
    size--;

    if ((data[0] & 1) == 0) {
        if (ngx_esp_cluster_parse(p, size, &ev) == NGX_OK) {
            fuzz_check_event(&ev);
        }

        free(p);
        return 0;
    }

    r = ngx_esp_resp_reader();
    if (r == NULL) {
        abort();
    }

    piece = pieces[(data[0] >> 1) & 3];

    for (off = 0; off < size; off += chunk) {
        chunk = ngx_min(piece, size - off);

        if (redisReaderFeed(r, (const char *) p + off, chunk) != REDIS_OK) {
            break;
        }

        for ( ;; ) {
            reply = NULL;

            if (redisReaderGetReply(r, &reply) != REDIS_OK || reply == NULL)
            {
                break;
            }

            fuzz_reply(reply);
            freeReplyObject(reply);
        }

        if (r->err) {
            break;
        }
    }

    redisReaderFree(r);
    free(p);

    return 0;
}
