
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <qrencode.h>

#include "ngx_esp_http.h"
#include "ngx_esp_log.h"
#include "ngx_esp_mfa.h"
#include "ngx_esp_session.h"
#include "ngx_esp_totp.h"


/*
 * TOTP (RFC 6238) as authenticator apps do it: HMAC-SHA-1, 6 digits, a
 * 30 s step, and one step either side for clocks that drift.
 *
 * The secret lives in the directory, in the attribute the domain names
 * (totp_attribute), as
 *
 *     "esp1:" base64(key id (4) | nonce (12) | ciphertext | tag (16))
 *
 * sealed with AES-256-GCM under totp_key_file with
 *
 *     NGX_ESP_TOTP_AAD | the user's key (lowercased logon name)
 *
 * as additional data: whoever reads the directory cannot use the secret,
 * and a value copied to another account does not open there.
 *
 * The method's state in the pending state is one byte, 'S' (the secret
 * came from the directory) or 'E' (enrolment: a new secret), then the
 * secret.
 */


#define NGX_ESP_TOTP_STEP         30
#define NGX_ESP_TOTP_DIGITS       6
#define NGX_ESP_TOTP_WINDOW       1
#define NGX_ESP_TOTP_SECRET_LEN   20            /* 160 bits, RFC 4226 */
#define NGX_ESP_TOTP_MAX_SECRET   64
#define NGX_ESP_TOTP_PREFIX       "esp1:"
#define NGX_ESP_TOTP_AAD          "ngx_exchange_esp totp v1"
#define NGX_ESP_TOTP_ONCE         "ngx_esp totp used v1"

#define NGX_ESP_TOTP_STORED       'S'
#define NGX_ESP_TOTP_ENROL        'E'


/* an admin's reset, while the directory works */
typedef struct {
    ngx_esp_ldap_req_t         lr;
    ngx_http_request_t        *request;
    ngx_esp_totp_reset_pt      done;
    unsigned                   running:1;
} ngx_esp_totp_reset_t;


static ngx_esp_mfa_result_e ngx_esp_totp_start(ngx_esp_mfa_req_t *mr);
static ngx_esp_mfa_result_e ngx_esp_totp_verify(ngx_esp_mfa_req_t *mr);
static ngx_int_t ngx_esp_totp_init(ngx_conf_t *cf, ngx_esp_domain_t *d,
    ngx_esp_loc_conf_t *elcf);
static ngx_int_t ngx_esp_totp_aad(ngx_pool_t *pool, ngx_str_t *key,
    ngx_str_t *aad);
static ngx_int_t ngx_esp_totp_enrol(ngx_esp_mfa_req_t *mr);
static ngx_int_t ngx_esp_totp_enrol_page(ngx_esp_mfa_req_t *mr);
static ngx_int_t ngx_esp_totp_code(u_char *secret, size_t len,
    uint64_t step, u_char *code);
static ngx_array_t *ngx_esp_totp_attrs(ngx_esp_domain_t *d);
static void ngx_esp_totp_stored_handler(ngx_esp_ldap_req_t *lr);
static ngx_esp_mfa_result_e ngx_esp_totp_stored_result(
    ngx_esp_mfa_req_t *mr, ngx_esp_ldap_req_t *lr);
static void ngx_esp_totp_abort(ngx_esp_mfa_req_t *mr);
static void ngx_esp_totp_reset_handler(ngx_esp_ldap_req_t *lr);
static ngx_int_t ngx_esp_totp_reset_result(ngx_esp_totp_reset_t *rs);
static void ngx_esp_totp_reset_cleanup(void *data);


ngx_esp_mfa_method_t  ngx_esp_totp_method = {
    "totp",
    ngx_esp_totp_init,
    ngx_esp_totp_start,
    ngx_esp_totp_verify,
    ngx_esp_totp_abort,
    ngx_esp_totp_attrs
};


static ngx_esp_mfa_result_e
ngx_esp_totp_start(ngx_esp_mfa_req_t *mr)
{
    u_char     *p;
    ngx_int_t   rc;
    ngx_str_t   stored, secret;

    rc = ngx_esp_totp_stored(mr, &stored);

    if (rc == NGX_ERROR) {
        return NGX_ESP_MFA_ERROR;
    }

    if (rc == NGX_DECLINED) {

        if (!mr->elcf->mfa_enroll) {
            ngx_log_error(NGX_LOG_NOTICE, mr->log, 0,
                          "esp: second factor refused: user \"%V\" has no "
                          "TOTP secret and esp_mfa_enroll is off",
                          ngx_esp_log_escape(mr->pool, &mr->user));
            mr->text = NGX_ESP_MFA_T_NO_SECRET;
            return NGX_ESP_MFA_REJECT;
        }

        if (ngx_esp_totp_enrol(mr) != NGX_OK) {
            return NGX_ESP_MFA_ERROR;
        }

        return NGX_ESP_MFA_CHALLENGE;
    }

    rc = ngx_esp_totp_open(mr->pool, mr->domain, &mr->key, &stored, &secret);

    if (rc == NGX_ERROR) {
        return NGX_ESP_MFA_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_ERR, mr->log, 0,
                      "esp: second factor refused: the TOTP secret of user "
                      "\"%V\" in \"%V\" does not open (tampered with, "
                      "another user's, or sealed with an unknown "
                      "totp_key_file)",
                      ngx_esp_log_escape(mr->pool, &mr->user),
                      &mr->domain->totp_attribute);
        mr->text = NGX_ESP_MFA_T_BAD_SECRET;
        return NGX_ESP_MFA_REJECT;
    }

    p = ngx_pnalloc(mr->pool, 1 + secret.len);
    if (p == NULL || ngx_esp_http_wipe_later(mr->pool, p, 1 + secret.len)
                     != NGX_OK)
    {
        return NGX_ESP_MFA_ERROR;
    }

    p[0] = NGX_ESP_TOTP_STORED;
    ngx_memcpy(p + 1, secret.data, secret.len);

    mr->state.data = p;
    mr->state.len = 1 + secret.len;

    return NGX_ESP_MFA_CHALLENGE;
}


/* enrolment: a new secret, shown as a QR code and as text */

static ngx_int_t
ngx_esp_totp_enrol(ngx_esp_mfa_req_t *mr)
{
    u_char  *p;

    p = ngx_pnalloc(mr->pool, 1 + NGX_ESP_TOTP_SECRET_LEN);
    if (p == NULL
        || ngx_esp_http_wipe_later(mr->pool, p, 1 + NGX_ESP_TOTP_SECRET_LEN)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    p[0] = NGX_ESP_TOTP_ENROL;

    if (RAND_bytes(p + 1, NGX_ESP_TOTP_SECRET_LEN) != 1) {
        return NGX_ERROR;
    }

    mr->state.data = p;
    mr->state.len = 1 + NGX_ESP_TOTP_SECRET_LEN;

    return ngx_esp_totp_enrol_page(mr);
}


/* the enrolment page's QR code and key, of the secret in mr->state */

static ngx_int_t
ngx_esp_totp_enrol_page(ngx_esp_mfa_req_t *mr)
{
    u_char     *p;
    size_t      len;
    ngx_str_t   secret, issuer, user;

    secret.data = mr->state.data + 1;
    secret.len = mr->state.len - 1;

    if (ngx_esp_base32(mr->pool, &secret, &mr->enrol_secret) != NGX_OK) {
        return NGX_ERROR;
    }

    /* otpauth://totp/ISSUER:USER?secret=...&issuer=ISSUER&... */

    issuer = mr->domain->totp_issuer;
    user = mr->user;

    len = sizeof("otpauth://totp/:?secret=&issuer=&algorithm=SHA1&digits=6"
                 "&period=30") - 1
          + 2 * (issuer.len + 2 * ngx_escape_uri(NULL, issuer.data,
                                                issuer.len,
                                                NGX_ESCAPE_URI_COMPONENT))
          + user.len + 2 * ngx_escape_uri(NULL, user.data, user.len,
                                          NGX_ESCAPE_URI_COMPONENT)
          + mr->enrol_secret.len;

    p = ngx_pnalloc(mr->pool, len);
    if (p == NULL || ngx_esp_http_wipe_later(mr->pool, p, len) != NGX_OK) {
        return NGX_ERROR;
    }

    mr->enrol_uri.data = p;

    p = ngx_cpymem(p, "otpauth://totp/", sizeof("otpauth://totp/") - 1);
    p = (u_char *) ngx_escape_uri(p, issuer.data, issuer.len,
                                  NGX_ESCAPE_URI_COMPONENT);
    *p++ = ':';
    p = (u_char *) ngx_escape_uri(p, user.data, user.len,
                                  NGX_ESCAPE_URI_COMPONENT);
    p = ngx_cpymem(p, "?secret=", sizeof("?secret=") - 1);
    p = ngx_cpymem(p, mr->enrol_secret.data, mr->enrol_secret.len);
    p = ngx_cpymem(p, "&issuer=", sizeof("&issuer=") - 1);
    p = (u_char *) ngx_escape_uri(p, issuer.data, issuer.len,
                                  NGX_ESCAPE_URI_COMPONENT);
    p = ngx_cpymem(p, "&algorithm=SHA1&digits=6&period=30",
                   sizeof("&algorithm=SHA1&digits=6&period=30") - 1);

    mr->enrol_uri.len = p - mr->enrol_uri.data;
    mr->enrol = 1;

    return NGX_OK;
}


static ngx_esp_mfa_result_e
ngx_esp_totp_verify(ngx_esp_mfa_req_t *mr)
{
    u_char       code[NGX_ESP_TOTP_DIGITS], want[NGX_ESP_TOTP_DIGITS];
    u_char       stepb[8];
    time_t       now;
    uint64_t     step, t, found;
    ngx_str_t    fields[3];
    ngx_int_t    rc;
    ngx_uint_t   i, n, match, hit;

    if (mr->state.len < 2
        || (mr->state.data[0] != NGX_ESP_TOTP_STORED
            && mr->state.data[0] != NGX_ESP_TOTP_ENROL))
    {
        ngx_log_error(NGX_LOG_ALERT, mr->log, 0,
                      "esp: second factor: a TOTP state of another kind");
        return NGX_ESP_MFA_ERROR;
    }

    /* a wrong code during an enrolment shows the same secret again */

    if (mr->state.data[0] == NGX_ESP_TOTP_ENROL
        && ngx_esp_totp_enrol_page(mr) != NGX_OK)
    {
        return NGX_ESP_MFA_ERROR;
    }

    /* six digits; spaces (as apps group them) are ignored */

    n = 0;

    for (i = 0; i < mr->code.len; i++) {
        if (mr->code.data[i] == ' ') {
            continue;
        }

        if (mr->code.data[i] < '0' || mr->code.data[i] > '9'
            || n == NGX_ESP_TOTP_DIGITS)
        {
            mr->text = NGX_ESP_MFA_T_WRONG_CODE;
            return NGX_ESP_MFA_REJECT;
        }

        code[n++] = mr->code.data[i];
    }

    if (n != NGX_ESP_TOTP_DIGITS) {
        mr->text = NGX_ESP_MFA_T_WRONG_CODE;
        return NGX_ESP_MFA_REJECT;
    }

    now = ngx_time();
    step = (uint64_t) now / NGX_ESP_TOTP_STEP;
    found = 0;
    hit = 0;

    /* every step of the window is computed and compared: no early exit */

    for (t = step - NGX_ESP_TOTP_WINDOW; t <= step + NGX_ESP_TOTP_WINDOW;
         t++)
    {
        if (ngx_esp_totp_code(mr->state.data + 1, mr->state.len - 1, t, want)
            != NGX_OK)
        {
            return NGX_ESP_MFA_ERROR;
        }

        match = (CRYPTO_memcmp(want, code, NGX_ESP_TOTP_DIGITS) == 0);
        found = match ? t : found;
        hit |= match;
    }

    ngx_explicit_memzero(want, sizeof(want));

    if (!hit) {
        mr->text = NGX_ESP_MFA_T_WRONG_CODE;
        return NGX_ESP_MFA_REJECT;
    }

    /* a code is good once: kept until its last step has passed */

    for (i = 0; i < 8; i++) {
        stepb[i] = (u_char) (found >> (56 - 8 * i));
    }

    fields[0] = mr->domain->name;
    fields[1] = mr->key;
    fields[2].data = stepb;
    fields[2].len = sizeof(stepb);

    rc = ngx_esp_mfa_once(mr, NGX_ESP_TOTP_ONCE, fields, 3,
                          (time_t) ((found + NGX_ESP_TOTP_WINDOW + 1)
                                    * NGX_ESP_TOTP_STEP));

    if (rc == NGX_ERROR) {
        return NGX_ESP_MFA_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_NOTICE, mr->log, 0,
                      "esp: second factor refused: user \"%V\" sent a TOTP "
                      "code that was used already",
                      ngx_esp_log_escape(mr->pool, &mr->user));
        mr->text = NGX_ESP_MFA_T_USED_CODE;
        return NGX_ESP_MFA_REJECT;
    }

    if (mr->state.data[0] == NGX_ESP_TOTP_ENROL) {
        return ngx_esp_totp_store(mr);
    }

    return NGX_ESP_MFA_ACCEPT;
}


/* RFC 4226 HOTP of one step: the digits, ASCII */

static ngx_int_t
ngx_esp_totp_code(u_char *secret, size_t len, uint64_t step, u_char *code)
{
    u_char        msg[8], mac[EVP_MAX_MD_SIZE];
    uint32_t      bin;
    ngx_uint_t    i, off;
    unsigned int  maclen;

    for (i = 0; i < 8; i++) {
        msg[i] = (u_char) (step >> (56 - 8 * i));
    }

    if (HMAC(EVP_sha1(), secret, (int) len, msg, sizeof(msg), mac, &maclen)
        == NULL
        || maclen != 20)
    {
        return NGX_ERROR;
    }

    off = mac[19] & 0x0f;
    bin = ((uint32_t) (mac[off] & 0x7f) << 24)
          | ((uint32_t) mac[off + 1] << 16)
          | ((uint32_t) mac[off + 2] << 8)
          | (uint32_t) mac[off + 3];

    bin %= 1000000;

    for (i = NGX_ESP_TOTP_DIGITS; i--; /* void */) {
        code[i] = (u_char) ('0' + bin % 10);
        bin /= 10;
    }

    ngx_explicit_memzero(mac, sizeof(mac));

    return NGX_OK;
}


ngx_int_t
ngx_esp_totp_open(ngx_pool_t *pool, ngx_esp_domain_t *d, ngx_str_t *key,
    ngx_str_t *stored, ngx_str_t *secret)
{
    ngx_int_t  rc;
    ngx_str_t  aad, enc, raw;

    if (stored->len <= sizeof(NGX_ESP_TOTP_PREFIX) - 1
        || stored->len > 512
        || ngx_strncmp(stored->data, NGX_ESP_TOTP_PREFIX,
                       sizeof(NGX_ESP_TOTP_PREFIX) - 1) != 0)
    {
        return NGX_DECLINED;
    }

    enc.data = stored->data + sizeof(NGX_ESP_TOTP_PREFIX) - 1;
    enc.len = stored->len - (sizeof(NGX_ESP_TOTP_PREFIX) - 1);

    raw.data = ngx_pnalloc(pool, ngx_base64_decoded_length(enc.len));
    if (raw.data == NULL) {
        return NGX_ERROR;
    }

    if (ngx_decode_base64(&raw, &enc) != NGX_OK) {
        return NGX_DECLINED;
    }

    if (ngx_esp_totp_aad(pool, key, &aad) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_esp_open_value(pool, d->totp_keys, &aad, &raw, secret);

    if (rc == NGX_OK
        && (secret->len < 10 || secret->len > NGX_ESP_TOTP_MAX_SECRET))
    {
        return NGX_DECLINED;
    }

    return rc;
}


ngx_int_t
ngx_esp_totp_seal(ngx_pool_t *pool, ngx_esp_domain_t *d, ngx_str_t *key,
    ngx_str_t *secret, ngx_str_t *stored)
{
    ngx_str_t  aad, raw, enc;

    if (ngx_esp_totp_aad(pool, key, &aad) != NGX_OK
        || ngx_esp_seal_value(pool, d->totp_keys, &aad, secret, &raw)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    stored->len = sizeof(NGX_ESP_TOTP_PREFIX) - 1
                  + ngx_base64_encoded_length(raw.len);
    stored->data = ngx_pnalloc(pool, stored->len);
    if (stored->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(stored->data, NGX_ESP_TOTP_PREFIX,
               sizeof(NGX_ESP_TOTP_PREFIX) - 1);

    enc.data = stored->data + sizeof(NGX_ESP_TOTP_PREFIX) - 1;
    ngx_encode_base64(&enc, &raw);
    stored->len = sizeof(NGX_ESP_TOTP_PREFIX) - 1 + enc.len;

    return NGX_OK;
}


static ngx_int_t
ngx_esp_totp_aad(ngx_pool_t *pool, ngx_str_t *key, ngx_str_t *aad)
{
    u_char  *p;

    aad->len = sizeof(NGX_ESP_TOTP_AAD) - 1 + key->len;
    aad->data = ngx_pnalloc(pool, aad->len);
    if (aad->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(aad->data, NGX_ESP_TOTP_AAD,
                   sizeof(NGX_ESP_TOTP_AAD) - 1);
    ngx_memcpy(p, key->data, key->len);

    return NGX_OK;
}


/* RFC 4648 base32, upper case, no padding (as otpauth URIs want it) */

ngx_int_t
ngx_esp_base32(ngx_pool_t *pool, ngx_str_t *src, ngx_str_t *dst)
{
    u_char      *p;
    uint32_t     buf;
    ngx_uint_t   i, bits;

    static u_char  alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

    p = ngx_pnalloc(pool, (src->len * 8 + 4) / 5);
    if (p == NULL
        || ngx_esp_http_wipe_later(pool, p, (src->len * 8 + 4) / 5) != NGX_OK)
    {
        return NGX_ERROR;
    }

    dst->data = p;
    buf = 0;
    bits = 0;

    for (i = 0; i < src->len; i++) {
        buf = (buf << 8) | src->data[i];
        bits += 8;

        while (bits >= 5) {
            *p++ = alphabet[(buf >> (bits - 5)) & 0x1f];
            bits -= 5;
        }
    }

    if (bits) {
        *p++ = alphabet[(buf << (5 - bits)) & 0x1f];
    }

    dst->len = p - dst->data;

    return NGX_OK;
}


/*
 * The QR code of "text" as inline SVG (no external image: the pages'
 * CSP allows nothing else), one path of runs of dark modules, with the
 * quiet zone of four modules the standard asks for.
 */

ngx_int_t
ngx_esp_qr_svg(ngx_pool_t *pool, ngx_str_t *text, ngx_str_t *svg)
{
    u_char      *p, *z;
    size_t       len;
    QRcode      *qr;
    ngx_int_t    rc;
    ngx_uint_t   x, y, run, w, side;

    z = ngx_pnalloc(pool, text->len + 1);
    if (z == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(z, text->data, text->len);
    z[text->len] = '\0';

    qr = QRcode_encodeString((char *) z, 0, QR_ECLEVEL_M, QR_MODE_8, 1);

    ngx_explicit_memzero(z, text->len);

    if (qr == NULL) {
        return NGX_ERROR;
    }

    w = (ngx_uint_t) qr->width;
    side = w + 8;

    /* at most one run per two modules, each "M%ui %uih%uiv1h-%uiz" */

    len = 256 + (w * w / 2 + w) * (4 * NGX_INT_T_LEN + 8);

    rc = NGX_ERROR;

    p = ngx_pnalloc(pool, len);
    if (p == NULL) {
        goto done;
    }

    svg->data = p;

    p = ngx_sprintf(p, "<svg xmlns=\"http://www.w3.org/2000/svg\" "
                    "viewBox=\"0 0 %ui %ui\" width=\"%ui\" height=\"%ui\" "
                    "shape-rendering=\"crispEdges\" role=\"img\" "
                    "aria-label=\"QR code\" class=\"qr\">"
                    "<rect width=\"%ui\" height=\"%ui\" fill=\"#fff\"/>"
                    "<path fill=\"#000\" d=\"",
                    side, side, side * 5, side * 5, side, side);

    for (y = 0; y < w; y++) {
        for (x = 0; x < w; /* void */) {

            if (!(qr->data[y * w + x] & 1)) {
                x++;
                continue;
            }

            for (run = 0; x + run < w && (qr->data[y * w + x + run] & 1);
                 run++)
            {
                /* void */
            }

            p = ngx_sprintf(p, "M%ui %uih%uiv1h-%uiz", x + 4, y + 4, run,
                            run);
            x += run;
        }
    }

    p = ngx_cpymem(p, "\"/></svg>", sizeof("\"/></svg>") - 1);
    svg->len = p - svg->data;

    rc = NGX_OK;

done:

    QRcode_free(qr);

    return rc;
}


static ngx_int_t
ngx_esp_totp_init(ngx_conf_t *cf, ngx_esp_domain_t *d,
    ngx_esp_loc_conf_t *elcf)
{
    ngx_str_t  *a;

    if (d->totp_attribute.len == 0 || d->totp_keys == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"esp_mfa totp\" needs \"totp_attribute\" and "
                           "\"totp_key_file\" in esp_sso_domain \"%V\"",
                           &d->name);
        return NGX_ERROR;
    }

    if (d->base_dn.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"esp_mfa totp\" needs \"ldap_base_dn\" in "
                           "esp_sso_domain \"%V\": the secret is read from "
                           "the user's entry", &d->name);
        return NGX_ERROR;
    }

    if (d->totp_attrs == NULL) {
        d->totp_attrs = ngx_array_create(cf->pool, 1, sizeof(ngx_str_t));
        if (d->totp_attrs == NULL) {
            return NGX_ERROR;
        }

        a = ngx_array_push(d->totp_attrs);
        if (a == NULL) {
            return NGX_ERROR;
        }

        *a = d->totp_attribute;
    }

    if (elcf->mfa_enroll && d->bind_dn.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"esp_mfa_enroll on\" needs \"ldap_bind_dn\" in "
                           "esp_sso_domain \"%V\": the service account "
                           "writes the secret", &d->name);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* totp_key_file file [file ...]: the first seals, all open */

char *
ngx_esp_totp_key_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_esp_domain_t  *d = conf;

    return ngx_esp_key_files(cf, &d->totp_keys, "TOTP key");
}


/*
 * The directory's side: the attribute is read after the bind, and
 * written by the service account (src/ngx_esp_ldap.c).  An entry that
 * could not be read is an error, never "no secret": an enrolment then
 * would let whoever has the password set up a factor of their own.
 */

ngx_int_t
ngx_esp_totp_stored(ngx_esp_mfa_req_t *mr, ngx_str_t *value)
{
    ngx_str_t            *v;
    ngx_uint_t            i;
    ngx_esp_ldap_attr_t  *a;

    if (mr->lr == NULL || mr->lr->values == NULL) {
        ngx_log_error(NGX_LOG_ERR, mr->log, 0,
                      "esp: second factor: the entry of user \"%V\" was not "
                      "read (is \"%V\" readable by the service account?)",
                      ngx_esp_log_escape(mr->pool, &mr->user),
                      &mr->domain->totp_attribute);
        return NGX_ERROR;
    }

    a = mr->lr->values->elts;

    for (i = 0; i < mr->lr->values->nelts; i++) {

        if (a[i].name.len != mr->domain->totp_attribute.len
            || ngx_strncasecmp(a[i].name.data,
                               mr->domain->totp_attribute.data,
                               a[i].name.len) != 0)
        {
            continue;
        }

        if (a[i].values == NULL || a[i].values->nelts == 0) {
            return NGX_DECLINED;
        }

        v = a[i].values->elts;

        if (v[0].len == 0) {
            return NGX_DECLINED;
        }

        *value = v[0];
        return NGX_OK;
    }

    return NGX_DECLINED;
}


/* the attributes a login reads for the method */

static ngx_array_t *
ngx_esp_totp_attrs(ngx_esp_domain_t *d)
{
    return d->totp_attrs;
}


/*
 * The user confirmed a new secret with a good code: the service account
 * writes it, sealed (replace), and the login waits for the directory.
 */

ngx_esp_mfa_result_e
ngx_esp_totp_store(ngx_esp_mfa_req_t *mr)
{
    ngx_str_t              secret, *v;
    ngx_esp_ldap_req_t    *lr;
    ngx_esp_ldap_change_t *ch;

    secret.data = mr->state.data + 1;
    secret.len = mr->state.len - 1;

    lr = ngx_pcalloc(mr->pool, sizeof(ngx_esp_ldap_req_t));
    if (lr == NULL) {
        return NGX_ESP_MFA_ERROR;
    }

    lr->changes = ngx_array_create(mr->pool, 1,
                                   sizeof(ngx_esp_ldap_change_t));
    if (lr->changes == NULL) {
        return NGX_ESP_MFA_ERROR;
    }

    ch = ngx_array_push(lr->changes);
    if (ch == NULL) {
        return NGX_ESP_MFA_ERROR;
    }

    ch->op = NGX_ESP_LDAP_MOD_REPLACE;
    ch->attr = mr->domain->totp_attribute;
    ch->values = ngx_array_create(mr->pool, 1, sizeof(ngx_str_t));
    if (ch->values == NULL) {
        return NGX_ESP_MFA_ERROR;
    }

    v = ngx_array_push(ch->values);
    if (v == NULL) {
        return NGX_ESP_MFA_ERROR;
    }

    if (ngx_esp_totp_seal(mr->pool, mr->domain, &mr->key, &secret, v)
        != NGX_OK)
    {
        return NGX_ESP_MFA_ERROR;
    }

    lr->domain = mr->domain;
    lr->user = mr->user;
    lr->service = 1;
    lr->handler = ngx_esp_totp_stored_handler;
    lr->data = mr;
    lr->log = mr->log;
    lr->pool = mr->pool;

    mr->data = lr;

    switch (ngx_esp_ldap_modify(lr)) {

    case NGX_AGAIN:
        return NGX_ESP_MFA_WAIT;

    case NGX_OK:
        return ngx_esp_totp_stored_result(mr, lr);

    default:
        mr->data = NULL;
        return NGX_ESP_MFA_ERROR;
    }
}


static void
ngx_esp_totp_stored_handler(ngx_esp_ldap_req_t *lr)
{
    ngx_esp_mfa_req_t  *mr = lr->data;

    mr->result = ngx_esp_totp_stored_result(mr, lr);
    mr->data = NULL;
    mr->done(mr);
}


static ngx_esp_mfa_result_e
ngx_esp_totp_stored_result(ngx_esp_mfa_req_t *mr, ngx_esp_ldap_req_t *lr)
{
    if (lr->result == NGX_ESP_AUTH_OK && lr->ldap_code == 0) {
        ngx_log_error(NGX_LOG_NOTICE, mr->log, 0,
                      "esp: user \"%V\" enrolled a TOTP secret (%V written "
                      "on %V)", ngx_esp_log_escape(mr->pool, &mr->user),
                      &mr->domain->totp_attribute, &lr->dc);
        return NGX_ESP_MFA_ACCEPT;
    }

    ngx_log_error(NGX_LOG_ERR, mr->log, 0,
                  "esp: enrolment of user \"%V\" failed: writing %V: %s, "
                  "LDAP result %i \"%V\" (may the service account write "
                  "it? see README)",
                  ngx_esp_log_escape(mr->pool, &mr->user),
                  &mr->domain->totp_attribute,
                  ngx_esp_auth_result_name(lr->result), lr->ldap_code,
                  ngx_esp_log_escape(mr->pool, &lr->diag));

    return NGX_ESP_MFA_ERROR;
}


/* the request went away while the directory was writing */

static void
ngx_esp_totp_abort(ngx_esp_mfa_req_t *mr)
{
    if (mr->data) {
        (void) ngx_esp_ldap_abort(mr->data, NULL, NULL);
        mr->data = NULL;
    }
}


ngx_int_t
ngx_esp_totp_reset(ngx_http_request_t *r, ngx_esp_domain_t *d,
    ngx_str_t *user, ngx_esp_totp_reset_pt done)
{
    ngx_int_t               rc;
    ngx_pool_cleanup_t     *cln;
    ngx_esp_totp_reset_t   *rs;
    ngx_esp_ldap_change_t  *ch;

    rs = ngx_pcalloc(r->pool, sizeof(ngx_esp_totp_reset_t));
    if (rs == NULL) {
        return NGX_ERROR;
    }

    rs->lr.changes = ngx_array_create(r->pool, 1,
                                      sizeof(ngx_esp_ldap_change_t));
    if (rs->lr.changes == NULL) {
        return NGX_ERROR;
    }

    ch = ngx_array_push(rs->lr.changes);
    if (ch == NULL) {
        return NGX_ERROR;
    }

    /* a replace with no values: gone, whether there was one or not */
    ch->op = NGX_ESP_LDAP_MOD_REPLACE;
    ch->attr = d->totp_attribute;
    ch->values = NULL;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_esp_totp_reset_cleanup;
    cln->data = rs;

    rs->request = r;
    rs->done = done;
    rs->lr.domain = d;
    rs->lr.user = *user;
    rs->lr.service = 1;
    rs->lr.handler = ngx_esp_totp_reset_handler;
    rs->lr.data = rs;
    rs->lr.log = r->connection->log;
    rs->lr.pool = r->pool;

    rc = ngx_esp_ldap_modify(&rs->lr);

    if (rc == NGX_AGAIN) {
        rs->running = 1;
        return NGX_AGAIN;
    }

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    return ngx_esp_totp_reset_result(rs);
}


static void
ngx_esp_totp_reset_handler(ngx_esp_ldap_req_t *lr)
{
    ngx_esp_totp_reset_t  *rs = lr->data;

    ngx_connection_t  *c;

    c = rs->request->connection;
    rs->running = 0;

    rs->done(rs->request, ngx_esp_totp_reset_result(rs));

    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_esp_totp_reset_result(ngx_esp_totp_reset_t *rs)
{
    ngx_esp_ldap_req_t  *lr = &rs->lr;

    if (lr->result == NGX_ESP_AUTH_NOT_PERMITTED) {
        return NGX_DECLINED;
    }

    if (lr->result == NGX_ESP_AUTH_OK && lr->ldap_code == 0) {
        ngx_log_error(NGX_LOG_NOTICE, lr->log, 0,
                      "esp: the TOTP secret of user \"%V\" was cleared (%V "
                      "on %V)", ngx_esp_log_escape(lr->pool, &lr->user),
                      &lr->domain->totp_attribute, &lr->dc);
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_ERR, lr->log, 0,
                  "esp: clearing the TOTP secret of user \"%V\" failed: %s, "
                  "LDAP result %i \"%V\"",
                  ngx_esp_log_escape(lr->pool, &lr->user),
                  ngx_esp_auth_result_name(lr->result), lr->ldap_code,
                  ngx_esp_log_escape(lr->pool, &lr->diag));

    return NGX_ERROR;
}


static void
ngx_esp_totp_reset_cleanup(void *data)
{
    ngx_esp_totp_reset_t  *rs = data;

    if (rs->running) {
        rs->running = 0;
        (void) ngx_esp_ldap_abort(&rs->lr, NULL, NULL);
    }
}
