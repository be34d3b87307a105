
/*
 * Copyright (C) ngx_exchange_esp authors
 */


/*
 * RADIUS packets without I/O (RFC 2865, RFC 3579): the Access-Request
 * with its hidden User-Password and Message-Authenticator, and the check
 * of a reply.  Apart from the query code so that fuzz/fuzz_radius_reply.c
 * compiles it alone.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "ngx_esp_radius.h"


static ngx_int_t ngx_esp_radius_md5(u_char *out, ngx_str_t *parts,
    ngx_uint_t n);
static u_char *ngx_esp_radius_hide(u_char *p, u_char *auth,
    ngx_str_t *secret, ngx_str_t *password);


ssize_t
ngx_esp_radius_build(u_char *buf, size_t size, u_char id, u_char *auth,
    ngx_str_t *secret, ngx_str_t *user, ngx_str_t *password,
    ngx_str_t *nas_identifier, in_addr_t nas_ip, ngx_str_t *state)
{
    u_char        *p, *ma;
    size_t         len, hidden;
    unsigned int   mdlen;

    if (user->len == 0 || user->len > NGX_ESP_RADIUS_MAX_STRING
        || password->len > NGX_ESP_RADIUS_MAX_PASSWORD
        || nas_identifier->len > NGX_ESP_RADIUS_MAX_STRING
        || state->len > NGX_ESP_RADIUS_MAX_STRING)
    {
        return NGX_ERROR;
    }

    /* at least one block of 16, padded with zeros */
    hidden = password->len ? (password->len + 15) & ~(size_t) 15 : 16;

    len = NGX_ESP_RADIUS_HDR_LEN + 18 + 2 + user->len + 2 + hidden;

    if (nas_identifier->len) {
        len += 2 + nas_identifier->len;
    }

    if (nas_ip != INADDR_NONE) {
        len += 6;
    }

    if (state->len) {
        len += 2 + state->len;
    }

    if (len > size || len > NGX_ESP_RADIUS_MAX_PACKET) {
        return NGX_ERROR;
    }

    p = buf;
    *p++ = NGX_ESP_RADIUS_ACCESS_REQUEST;
    *p++ = id;
    *p++ = (u_char) (len >> 8);
    *p++ = (u_char) len;
    p = ngx_cpymem(p, auth, NGX_ESP_RADIUS_AUTH_LEN);

    /* first, as the BlastRADIUS advisories recommend */
    ma = p;
    *p++ = NGX_ESP_RADIUS_MESSAGE_AUTH;
    *p++ = 18;
    ngx_memzero(p, 16);
    p += 16;

    *p++ = NGX_ESP_RADIUS_USER_NAME;
    *p++ = (u_char) (2 + user->len);
    p = ngx_cpymem(p, user->data, user->len);

    *p++ = NGX_ESP_RADIUS_USER_PASSWORD;
    *p++ = (u_char) (2 + hidden);
    p = ngx_esp_radius_hide(p, auth, secret, password);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (nas_identifier->len) {
        *p++ = NGX_ESP_RADIUS_NAS_IDENTIFIER;
        *p++ = (u_char) (2 + nas_identifier->len);
        p = ngx_cpymem(p, nas_identifier->data, nas_identifier->len);
    }

    if (nas_ip != INADDR_NONE) {
        *p++ = NGX_ESP_RADIUS_NAS_IP_ADDRESS;
        *p++ = 6;
        p = ngx_cpymem(p, &nas_ip, 4);    /* network order already */
    }

    if (state->len) {
        *p++ = NGX_ESP_RADIUS_STATE;
        *p++ = (u_char) (2 + state->len);
        p = ngx_cpymem(p, state->data, state->len);
    }

    if (HMAC(EVP_md5(), secret->data, (int) secret->len, buf, len, ma + 2,
             &mdlen)
        == NULL || mdlen != 16)
    {
        return NGX_ERROR;
    }

    return (ssize_t) len;
}


/* RFC 2865 5.2: c(1) = p(1) ^ MD5(S + RA), c(i) = p(i) ^ MD5(S + c(i-1)) */

static u_char *
ngx_esp_radius_hide(u_char *p, u_char *auth, ngx_str_t *secret,
    ngx_str_t *password)
{
    u_char      *prev, b[16];
    size_t       i, off, hidden;
    ngx_str_t    parts[2];

    hidden = password->len ? (password->len + 15) & ~(size_t) 15 : 16;
    prev = auth;

    for (off = 0; off < hidden; off += 16) {
        parts[0] = *secret;
        parts[1].data = prev;
        parts[1].len = 16;

        if (ngx_esp_radius_md5(b, parts, 2) != NGX_OK) {
            return NULL;
        }

        for (i = 0; i < 16; i++) {
            p[i] = b[i] ^ (off + i < password->len
                           ? password->data[off + i] : 0);
        }

        prev = p;
        p += 16;
    }

    ngx_explicit_memzero(b, sizeof(b));

    return p;
}


static ngx_int_t
ngx_esp_radius_md5(u_char *out, ngx_str_t *parts, ngx_uint_t n)
{
    ngx_int_t      rc;
    ngx_uint_t     i;
    unsigned int   len;
    EVP_MD_CTX    *md;

    md = EVP_MD_CTX_new();
    if (md == NULL) {
        return NGX_ERROR;
    }

    rc = NGX_ERROR;

    if (EVP_DigestInit_ex(md, EVP_md5(), NULL) != 1) {
        goto done;
    }

    for (i = 0; i < n; i++) {
        if (EVP_DigestUpdate(md, parts[i].data, parts[i].len) != 1) {
            goto done;
        }
    }

    if (EVP_DigestFinal_ex(md, out, &len) == 1 && len == 16) {
        rc = NGX_OK;
    }

done:

    EVP_MD_CTX_free(md);

    return rc;
}


/*
 * Checks a reply to the request with this id and Request Authenticator:
 * NGX_OK with *reply filled (pointers into buf), NGX_DECLINED with *err
 * naming why it must be dropped, NGX_ERROR if the crypto library failed.
 * buf is not changed.
 */

ngx_int_t
ngx_esp_radius_parse(u_char *buf, size_t n, u_char id, u_char *auth,
    ngx_str_t *secret, ngx_esp_radius_reply_t *reply, const char **err)
{
    u_char        *p, *last, *ma, digest[16], mac[EVP_MAX_MD_SIZE];
    u_char         copy[NGX_ESP_RADIUS_MAX_PACKET];
    size_t         len;
    ngx_str_t      parts[4];
    unsigned int   maclen;

    ngx_memzero(reply, sizeof(ngx_esp_radius_reply_t));

    if (n < NGX_ESP_RADIUS_HDR_LEN) {
        *err = "truncated packet";
        return NGX_DECLINED;
    }

    len = ((size_t) buf[2] << 8) | buf[3];

    /* RFC 2865 3: longer datagrams are padded, shorter ones dropped */

    if (len < NGX_ESP_RADIUS_HDR_LEN || len > n
        || len > NGX_ESP_RADIUS_MAX_PACKET)
    {
        *err = "length field does not fit the datagram";
        return NGX_DECLINED;
    }

    if (buf[0] != NGX_ESP_RADIUS_ACCESS_ACCEPT
        && buf[0] != NGX_ESP_RADIUS_ACCESS_REJECT
        && buf[0] != NGX_ESP_RADIUS_ACCESS_CHALLENGE)
    {
        *err = "not an answer to an Access-Request";
        return NGX_DECLINED;
    }

    if (buf[1] != id) {
        *err = "wrong identifier";
        return NGX_DECLINED;
    }

    ma = NULL;
    p = buf + NGX_ESP_RADIUS_HDR_LEN;
    last = buf + len;

    while (p < last) {

        if (last - p < 2 || p[1] < 2 || p[1] > last - p) {
            *err = "attribute overruns the packet";
            return NGX_DECLINED;
        }

        switch (p[0]) {

        case NGX_ESP_RADIUS_MESSAGE_AUTH:
            if (p[1] != 18 || ma != NULL) {
                *err = "malformed Message-Authenticator";
                return NGX_DECLINED;
            }

            ma = p;
            break;

        case NGX_ESP_RADIUS_REPLY_MESSAGE:
            if (reply->nreply++ == 0) {
                reply->reply_message.data = p + 2;
                reply->reply_message.len = p[1] - 2;
            }

            break;

        case NGX_ESP_RADIUS_STATE:
            if (reply->state.data == NULL) {
                reply->state.data = p + 2;
                reply->state.len = p[1] - 2;
            }

            break;

        default:
            break;
        }

        p += p[1];
    }

    if (ma == NULL) {
        *err = "no Message-Authenticator (required against BlastRADIUS)";
        return NGX_DECLINED;
    }

    /* Response Authenticator: MD5(Code+ID+Length+RequestAuth+Attrs+Secret) */

    parts[0].data = buf;
    parts[0].len = 4;
    parts[1].data = auth;
    parts[1].len = NGX_ESP_RADIUS_AUTH_LEN;
    parts[2].data = buf + NGX_ESP_RADIUS_HDR_LEN;
    parts[2].len = len - NGX_ESP_RADIUS_HDR_LEN;
    parts[3] = *secret;

    if (ngx_esp_radius_md5(digest, parts, 4) != NGX_OK) {
        return NGX_ERROR;
    }

    if (CRYPTO_memcmp(digest, buf + 4, 16) != 0) {
        *err = "wrong Response Authenticator (is the shared secret right?)";
        return NGX_DECLINED;
    }

    /* RFC 3579 3.2: over the reply with the Request Authenticator */

    ngx_memcpy(copy, buf, len);
    ngx_memcpy(copy + 4, auth, NGX_ESP_RADIUS_AUTH_LEN);
    ngx_memzero(copy + (ma - buf) + 2, 16);

    if (HMAC(EVP_md5(), secret->data, (int) secret->len, copy, len, mac,
             &maclen)
        == NULL || maclen != 16)
    {
        return NGX_ERROR;
    }

    if (CRYPTO_memcmp(mac, ma + 2, 16) != 0) {
        *err = "wrong Message-Authenticator";
        return NGX_DECLINED;
    }

    reply->code = buf[0];

    return NGX_OK;
}
