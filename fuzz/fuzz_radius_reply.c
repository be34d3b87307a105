
/*
 * Copyright (C) ngx_exchange_esp authors
 */


/*
 * What a RADIUS server (or anyone who can send a datagram to the gate's
 * port) sends: the fuzzer's bytes after the first are a reply to an
 * Access-Request with id 0x42 and a fixed Request Authenticator, checked
 * with ngx_esp_radius_parse() (src/ngx_esp_radius_packet.c, compiled here
 * alone).  The first byte's bit 0 sets a correct Response Authenticator
 * and bit 1 a correct Message-Authenticator (where the packet has one
 * that the parser would find) before the check, so that the fuzzer gets
 * past both.
 *
 * Properties:
 * - a reply is accepted only with both authenticators right: never one
 *   the fixer did not sign (a forgery would need an MD5/HMAC-MD5 hit);
 * - an accepted reply is an Accept, Reject or Challenge with id 0x42,
 *   its length field inside the datagram; Reply-Message and State lie
 *   inside the packet's attributes;
 * - the parser does not change its input;
 * - the same bytes also go into an Access-Request as user name, password
 *   and state (ngx_esp_radius_build()): its User-Password, unhidden with
 *   the RFC 2865 chain computed here, is the password, zero padded; its
 *   Message-Authenticator is HMAC-MD5 over the packet.
 */


#include "fuzz_common.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "../src/ngx_esp_radius_packet.c"


static u_char  fuzz_auth[16] = "0123456789abcdef";
static u_char  fuzz_secret_data[] = "s3cret-of-the-gate";


static void
fuzz_md5(u_char *out, u_char *a, size_t alen, u_char *b, size_t blen,
    u_char *c, size_t clen, u_char *d, size_t dlen)
{
    unsigned int   len;
    EVP_MD_CTX    *md;

    md = EVP_MD_CTX_new();
    FUZZ_ASSERT(md != NULL);
    FUZZ_ASSERT(EVP_DigestInit_ex(md, EVP_md5(), NULL) == 1);
    FUZZ_ASSERT(EVP_DigestUpdate(md, a, alen) == 1);
    FUZZ_ASSERT(EVP_DigestUpdate(md, b, blen) == 1);
    FUZZ_ASSERT(EVP_DigestUpdate(md, c, clen) == 1);
    FUZZ_ASSERT(EVP_DigestUpdate(md, d, dlen) == 1);
    FUZZ_ASSERT(EVP_DigestFinal_ex(md, out, &len) == 1 && len == 16);
    EVP_MD_CTX_free(md);
}


/* the first Message-Authenticator a well-formed walk meets, or NULL */

static u_char *
fuzz_find_ma(u_char *buf, size_t len)
{
    u_char  *p, *last;

    p = buf + 20;
    last = buf + len;

    while (p < last) {
        if (last - p < 2 || p[1] < 2 || p[1] > last - p) {
            return NULL;
        }

        if (p[0] == 80 && p[1] == 18) {
            return p;
        }

        p += p[1];
    }

    return NULL;
}


static void
fuzz_sign(u_char *buf, size_t n, ngx_uint_t flags)
{
    u_char        *ma, mac[EVP_MAX_MD_SIZE], copy[4096];
    size_t         len;
    unsigned int   maclen;

    if (n < 20) {
        return;
    }

    len = ((size_t) buf[2] << 8) | buf[3];

    if (len < 20 || len > n || len > 4096) {
        return;
    }

    ma = fuzz_find_ma(buf, len);

    if ((flags & 2) && ma) {
        ngx_memcpy(copy, buf, len);
        ngx_memcpy(copy + 4, fuzz_auth, 16);
        ngx_memzero(copy + (ma - buf) + 2, 16);
        FUZZ_ASSERT(HMAC(EVP_md5(), fuzz_secret_data,
                         sizeof(fuzz_secret_data) - 1, copy, len, mac,
                         &maclen)
                    != NULL);
        ngx_memcpy(ma + 2, mac, 16);
    }

    if (flags & 1) {
        fuzz_md5(buf + 4, buf, 4, fuzz_auth, 16, buf + 20, len - 20,
                 fuzz_secret_data, sizeof(fuzz_secret_data) - 1);
    }
}


static void
fuzz_request(const uint8_t *data, size_t size, ngx_str_t *secret)
{
    u_char        *p, *last, *hidden, b[16], prev[16];
    u_char         buf[NGX_ESP_RADIUS_MAX_PACKET];
    u_char         copy[NGX_ESP_RADIUS_MAX_PACKET], mac[EVP_MAX_MD_SIZE];
    u_char        *ma;
    size_t         i, off, hlen;
    ssize_t        n;
    ngx_str_t      user, password, nas, state;
    unsigned int   maclen;

    /* user = first third, password = second, state = the rest */

    user.data = (u_char *) data;
    user.len = size / 3;
    password.data = (u_char *) data + user.len;
    password.len = size / 3;
    state.data = password.data + password.len;
    state.len = size - 2 * (size / 3);
    ngx_str_set(&nas, "fuzz");

    n = ngx_esp_radius_build(buf, sizeof(buf), 0x17, fuzz_auth, secret,
                             &user, &password, &nas, htonl(0x7f000001),
                             &state);

    if (user.len == 0 || user.len > 253 || password.len > 128
        || state.len > 253)
    {
        FUZZ_ASSERT(n == NGX_ERROR);
        return;
    }

    FUZZ_ASSERT(n > 20);
    FUZZ_ASSERT(buf[0] == 1 && buf[1] == 0x17);
    FUZZ_ASSERT((size_t) ((buf[2] << 8) | buf[3]) == (size_t) n);

    ma = NULL;
    hidden = NULL;
    hlen = 0;
    p = buf + 20;
    last = buf + n;

    while (p < last) {
        FUZZ_ASSERT(last - p >= 2 && p[1] >= 2 && p[1] <= last - p);

        if (p[0] == 80) {
            FUZZ_ASSERT(p[1] == 18 && ma == NULL);
            ma = p;
        }

        if (p[0] == 2) {
            hidden = p + 2;
            hlen = p[1] - 2;
        }

        if (p[0] == 1) {
            FUZZ_ASSERT(p[1] - 2 == (int) user.len
                        && ngx_memcmp(p + 2, user.data, user.len) == 0);
        }

        p += p[1];
    }

    FUZZ_ASSERT(ma != NULL && hidden != NULL);
    FUZZ_ASSERT(hlen % 16 == 0 && hlen >= 16 && hlen >= password.len
                && hlen < password.len + 16 + (password.len == 0 ? 1 : 0));

    ngx_memcpy(prev, fuzz_auth, 16);

    for (off = 0; off < hlen; off += 16) {
        fuzz_md5(b, secret->data, secret->len, prev, 16, NULL, 0, NULL, 0);

        for (i = 0; i < 16; i++) {
            FUZZ_ASSERT((u_char) (hidden[off + i] ^ b[i])
                        == (off + i < password.len
                            ? password.data[off + i] : 0));
        }

        ngx_memcpy(prev, hidden + off, 16);
    }

    ngx_memcpy(copy, buf, n);
    ngx_memzero(copy + (ma - buf) + 2, 16);
    FUZZ_ASSERT(HMAC(EVP_md5(), secret->data, secret->len, copy, n, mac,
                     &maclen)
                != NULL);
    FUZZ_ASSERT(ngx_memcmp(mac, ma + 2, 16) == 0);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                  *buf, *before, *attrs, *end;
    size_t                   n, len;
    ngx_int_t                rc;
    ngx_uint_t               flags;
    ngx_str_t                secret;
    const char              *err;
    ngx_esp_radius_reply_t   reply;

    secret.data = fuzz_secret_data;
    secret.len = sizeof(fuzz_secret_data) - 1;

    fuzz_request(data, size, &secret);

    if (size < 1) {
        return 0;
    }

    flags = data[0];
    n = size - 1;

    buf = fuzz_dup(data + 1, n);
    fuzz_sign(buf, n, flags);

    before = fuzz_dup(buf, n);
    err = NULL;

    rc = ngx_esp_radius_parse(buf, n, 0x42, fuzz_auth, &secret, &reply,
                              &err);

    FUZZ_ASSERT(ngx_memcmp(before, buf, n) == 0);
    FUZZ_ASSERT(rc == NGX_OK || rc == NGX_DECLINED);

    if (rc == NGX_DECLINED) {
        FUZZ_ASSERT(err != NULL && *err != '\0');

    } else {
        FUZZ_ASSERT((flags & 3) == 3);
        FUZZ_ASSERT(n >= 20 && buf[1] == 0x42);

        len = ((size_t) buf[2] << 8) | buf[3];
        FUZZ_ASSERT(len >= 20 && len <= n && len <= 4096);
        FUZZ_ASSERT(reply.code == buf[0]);
        FUZZ_ASSERT(reply.code == 2 || reply.code == 3 || reply.code == 11);
        FUZZ_ASSERT(fuzz_find_ma(buf, len) != NULL);

        attrs = buf + 20;
        end = buf + len;

        if (reply.reply_message.data) {
            FUZZ_ASSERT(reply.nreply > 0);
            FUZZ_ASSERT(reply.reply_message.data >= attrs + 2
                        && reply.reply_message.data
                           + reply.reply_message.len <= end);
        }

        if (reply.state.data) {
            FUZZ_ASSERT(reply.state.data >= attrs + 2
                        && reply.state.data + reply.state.len <= end);
        }
    }

    free(before);
    free(buf);

    return 0;
}
