
/*
 * Copyright (C) ngx_exchange_esp authors
 */


/*
 * What a domain controller sends: the fuzzer's bytes are the stream read
 * from an LDAP connection, handed over in pieces (size % 5 picks 1, 7,
 * 64, 1000 bytes or everything at once), framed with ngx_esp_ldap_frame()
 * and decoded with ngx_esp_ldap_parse() as ngx_esp_ldap_read_handler()
 * does, each answer then read as ngx_esp_ldap_op_answer() and
 * ngx_esp_ldap_log_answer() read it: the AD "data NNN" code
 * (ngx_esp_ldap_ad_code()), the printable diagnostic text.  The same
 * bytes also go out as the DN and password of a hand-encoded bind
 * request (ngx_esp_ldap_encode_bind()), which liblber must read back.
 * All of them are src/ngx_esp_ldap_ber.c's, compiled here alone.
 *
 * Properties:
 * - framing depends on the bytes, not on how they arrive; a frame is
 *   at most 1 MiB and starts with a SEQUENCE;
 * - every string of a decoded message lies inside its frame;
 * - the AD code is the hex number after the first "data ";
 * - the bind request is one frame, decodes to the DN, the password and
 *   the message ID given, for every length and ID size.
 *
 * liblber reads the byte after the last element it decodes (in
 * ber_skip_element(), for the next tag): one past the end of a frame that
 * ends its buffer.  Each frame is therefore decoded with one byte to spare
 * after it, as ngx_esp_ldap_read_handler() allocates its buffer;
 * ESP_FUZZ_STRICT=1 puts an unreadable page right after that spare byte,
 * so that any read further crashes (fuzz/README.md).
 */


#include "fuzz_common.h"

#include <sys/mman.h>

#include "../src/ngx_esp_ldap_ber.c"


/* a copy of a frame for liblber: a spare byte after it, or a guard page */

static u_char *
fuzz_frame(u_char *data, size_t n, size_t *mapped)
{
    u_char  *p;
    size_t   pages;

    *mapped = 0;

    if (!getenv("ESP_FUZZ_STRICT")) {
        p = malloc(n + 1);
        FUZZ_ASSERT(p != NULL);
        ngx_memcpy(p, data, n);
        p[n] = 0xa5;
        return p;
    }

    pages = (n + 1 + 4095) / 4096 + 1;

    p = mmap(NULL, pages * 4096, PROT_READ|PROT_WRITE,
             MAP_PRIVATE|MAP_ANONYMOUS, -1, 0);
    FUZZ_ASSERT(p != MAP_FAILED);
    FUZZ_ASSERT(mprotect(p + (pages - 1) * 4096, 4096, PROT_NONE) == 0);

    *mapped = pages * 4096;

    p = ngx_cpymem(p + (pages - 1) * 4096 - n - 1, data, n) - n;
    p[n] = 0xa5;

    return p;
}


static void
fuzz_frame_free(u_char *p, size_t n, size_t mapped)
{
    if (mapped) {
        munmap(p + n + 1 - (mapped - 4096), mapped);

    } else {
        free(p);
    }
}


static void
fuzz_inside(struct berval *bv, u_char *start, size_t n)
{
    if (bv->bv_len == 0) {
        return;
    }

    FUZZ_ASSERT((u_char *) bv->bv_val >= start);
    FUZZ_ASSERT((u_char *) bv->bv_val + bv->bv_len <= start + n);
}


static void
fuzz_ad_code(struct berval *diag)
{
    u_char      *p, *last, c, *text;
    size_t       n;
    ngx_uint_t   code, ref, quirk, digits;

    code = ngx_esp_ldap_ad_code(diag);

    /* the reference: first "data " (any case), up to 8 hex digits */

    p = (u_char *) diag->bv_val;
    last = diag->bv_len ? p + diag->bv_len : p;
    ref = 0;
    quirk = 0;

    for ( /* void */ ; p && p + 5 <= last; p++) {
        if ((p[0] | 0x20) == 'd' && (p[1] | 0x20) == 'a'
            && (p[2] | 0x20) == 't' && (p[3] | 0x20) == 'a' && p[4] == ' ')
        {
            break;
        }
    }

    if (p && p + 5 <= last) {
        p += 5;

        for (digits = 0; p < last && digits < 8; p++, digits++) {
            c = *p;

            if (c >= '0' && c <= '9') {
                ref = ref * 16 + (c - '0');

            } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
                ref = ref * 16 + ((c | 0x20) - 'a' + 10);

            } else {
                quirk = (c >= 0x10 && c <= 0x19);
                break;
            }
        }
    }

    /* bytes 0x10-0x19 once counted as digits (regressions/ldap_response) */
    (void) quirk;
    FUZZ_ASSERT(code == ref);

    FUZZ_ASSERT(code <= 0xffffffff);

    (void) ngx_esp_ldap_ad_result(code);
    FUZZ_ASSERT(ngx_esp_ldap_ad_text(code) != NULL);

    /* the log line's buffer is 256 bytes: an exact-size one here */

    text = malloc(256);
    n = ngx_esp_ldap_printable(text, 256, diag);

    FUZZ_ASSERT(n <= 256 && n <= diag->bv_len);

    for (p = text; p < text + n; p++) {
        FUZZ_ASSERT(*p >= 0x20 && *p != 0x7f && *p != '"');
    }

    free(text);
}


static void
fuzz_stream(const uint8_t *data, size_t size)
{
    u_char              *in, *msg;
    size_t               in_pos, in_len, fsize, fsize2, chunk, mapped;
    ngx_int_t            rc, rc2;
    ngx_esp_ldap_msg_t   m;
    static size_t        chunks[] = { 1, 7, 64, 1000, (size_t) -1 };

    chunk = chunks[size % 5];

    /* the connection's buffer, exactly as long as what has arrived */

    in = NULL;
    in_pos = 0;
    in_len = 0;

    while (in_len < size || in_pos < in_len) {

        fsize = 0;
        rc = (in_pos < in_len)
             ? ngx_esp_ldap_frame(in + in_pos, in_len - in_pos, &fsize)
             : NGX_AGAIN;

        if (rc == NGX_ERROR) {
            break;
        }

        if (rc == NGX_AGAIN) {
            if (fsize) {
                FUZZ_ASSERT(fsize > in_len - in_pos);
            }

            if (in_len == size) {
                break;
            }

            /* more bytes: a new exact-size buffer */

            in_len += ngx_min(chunk, size - in_len);
            free(in);
            in = fuzz_dup(data, in_len);
            continue;
        }

        FUZZ_ASSERT(rc == NGX_OK);
        FUZZ_ASSERT(fsize >= 2 && fsize <= in_len - in_pos);
        FUZZ_ASSERT(fsize <= NGX_ESP_LDAP_MAX_MESSAGE);
        FUZZ_ASSERT(in[in_pos] == 0x30);

        /* the same frame whatever follows it, or with nothing after it */

        fsize2 = 0;
        rc2 = ngx_esp_ldap_frame(in + in_pos, size - in_pos, &fsize2);
        FUZZ_ASSERT(rc2 == NGX_OK && fsize2 == fsize);

        msg = fuzz_frame(in + in_pos, fsize, &mapped);
        in_pos += fsize;

        rc = ngx_esp_ldap_parse(msg, fsize, &m);

        if (rc != NGX_OK) {
            FUZZ_ASSERT(rc == NGX_ERROR);
            fuzz_frame_free(msg, fsize, mapped);
            break;
        }

        FUZZ_ASSERT(m.msgid >= 0);
        FUZZ_ASSERT(m.type == LDAP_RES_BIND || m.type == LDAP_RES_SEARCH_RESULT
                    || m.type == LDAP_RES_MODIFY || m.type == LDAP_RES_EXTENDED
                    || m.type == LDAP_RES_SEARCH_ENTRY
                    || m.type == LDAP_RES_SEARCH_REFERENCE);

        fuzz_inside(&m.matched, msg, fsize);
        fuzz_inside(&m.diag, msg, fsize);
        fuzz_inside(&m.dn, msg, fsize);
        fuzz_inside(&m.upn, msg, fsize);

        fuzz_ad_code(&m.diag);

        fuzz_frame_free(msg, fsize, mapped);
    }

    free(in);
}


static void
fuzz_bind(const uint8_t *data, size_t size)
{
    u_char                *big, *out;
    size_t                 fsize, n, mapped;
    ngx_str_t              dn, pw;
    ber_len_t              len;
    ber_int_t              id, version;
    BerElement            *ber;
    ngx_log_t              log;
    struct berval          bv, bdn, bpw;
    ngx_esp_ldap_out_t     req;
    static ber_int_t       ids[] = { 0, 0x7e, 0x7f, 0x7ffe, 0x7fff,
                                     0x7ffffe, 0x7fffff, 0x7ffffffd, -5 };

    ngx_memzero(&log, sizeof(ngx_log_t));
    log.log_level = NGX_LOG_DEBUG_ALL;

    ngx_memzero(&req, sizeof(ngx_esp_ldap_out_t));
    req.log = &log;
    req.msgid = ids[size % (sizeof(ids) / sizeof(ids[0]))];

    big = NULL;

    /* DN and password: the input split in two, or made long */

    n = size ? data[0] % (size + 1) : 0;
    dn.data = (u_char *) data;
    dn.len = n;
    pw.data = (u_char *) data + n;
    pw.len = size - n;

    if (size % 16 == 15) {
        n = 0x100 * (size % 300) + size;
        big = malloc(n);
        ngx_memset(big, 'x', n);
        dn.data = big;
        dn.len = n;
    }

    FUZZ_ASSERT(ngx_esp_ldap_encode_bind(&req, &dn, &pw) == NGX_OK);
    FUZZ_ASSERT(req.secret == 1 && req.sent == 0);

    fsize = 0;
    FUZZ_ASSERT(req.len <= NGX_ESP_LDAP_MAX_MESSAGE
                || dn.len > NGX_ESP_LDAP_MAX_MESSAGE / 2);

    if (req.len <= NGX_ESP_LDAP_MAX_MESSAGE) {
        FUZZ_ASSERT(ngx_esp_ldap_frame(req.data, req.len, &fsize)
                    == NGX_OK);
        FUZZ_ASSERT(fsize == req.len);
    }

    /* liblber reads it back: { id, [APPLICATION 0] { 3, dn, [0] pw } } */

    ber = ber_alloc_t(LBER_USE_DER);
    FUZZ_ASSERT(ber != NULL);

    out = fuzz_frame(req.data, req.len, &mapped);
    bv.bv_val = (char *) out;
    bv.bv_len = req.len;
    ber_init2(ber, &bv, LBER_USE_DER);

    FUZZ_ASSERT(ber_skip_tag(ber, &len) == LBER_SEQUENCE);
    FUZZ_ASSERT(len == req.len - 1 - ngx_esp_ldap_length_size(len));
    FUZZ_ASSERT(ber_get_int(ber, &id) != LBER_ERROR);
    FUZZ_ASSERT(id == req.msgid && id >= 1 && id <= 0x7ffffffe);
    FUZZ_ASSERT(ber_skip_tag(ber, &len) == LDAP_REQ_BIND);
    FUZZ_ASSERT(ber_get_int(ber, &version) != LBER_ERROR && version == 3);
    FUZZ_ASSERT(ber_get_stringbv(ber, &bdn, LBER_BV_NOTERM)
                == LBER_OCTETSTRING);
    FUZZ_ASSERT(ber_peek_tag(ber, &len) == LDAP_AUTH_SIMPLE);
    FUZZ_ASSERT(ber_get_stringbv(ber, &bpw, LBER_BV_NOTERM)
                == LDAP_AUTH_SIMPLE);

    FUZZ_ASSERT(bdn.bv_len == dn.len
                && ngx_memcmp(bdn.bv_val, dn.data, dn.len) == 0);
    FUZZ_ASSERT(bpw.bv_len == pw.len
                && ngx_memcmp(bpw.bv_val, pw.data, pw.len) == 0);

    /* and nothing after it */

    FUZZ_ASSERT((u_char *) bpw.bv_val + bpw.bv_len == out + req.len);

    ber_free(ber, 0);
    fuzz_frame_free(out, req.len, mapped);

    /* the buffer held a password: wiped before it is freed */

    ngx_esp_ldap_free_out(&req);
    FUZZ_ASSERT(req.data == NULL && req.secret == 0);

    free(big);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_stream(data, size);
    fuzz_bind(data, size);

    return 0;
}
