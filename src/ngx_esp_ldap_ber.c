
/*
 * Copyright (C) ngx_exchange_esp authors
 */


/*
 * The directory client's LDAP on the wire: framing and decoding of what a
 * domain controller sends (BER length, bounded size, decoded in place
 * with liblber), the requests it is sent (bind, the two searches,
 * StartTLS, unbind), the AD "data" codes of a refused bind, and RFC 4515
 * filter value escaping.  Pure functions over buffers: no I/O, no
 * connection, no login; src/ngx_esp_ldap_conn.c and src/ngx_esp_ldap.c
 * call them, they call nothing of either.
 *
 * Requests are encoded with liblber, except the bind request, encoded by
 * hand into a buffer of ours so that the password it carries can be
 * wiped as soon as it is sent (liblber may reallocate and free its
 * buffers unwiped).
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_esp_ldap_ber.h"


#define NGX_ESP_LDAP_IN_CHAIN         "1.2.840.113556.1.4.1941"


static ber_int_t ngx_esp_ldap_next_msgid(ngx_esp_ldap_out_t *out);
static ngx_int_t ngx_esp_ldap_flatten(ngx_esp_ldap_out_t *out,
    BerElement *ber);
static u_char *ngx_esp_ldap_put_length(u_char *p, size_t len);
static size_t ngx_esp_ldap_length_size(size_t len);


/*
 * An LDAPMessage is a SEQUENCE: 0x30, a definite length (short form or
 * up to 4 length octets), the contents.  NGX_AGAIN: more bytes are needed
 * ("size" is the whole message once the length is known).
 */

ngx_int_t
ngx_esp_ldap_frame(u_char *p, size_t n, size_t *size)
{
    size_t      len, hdr;
    ngx_uint_t  i, k;

    if (n < 2) {
        return NGX_AGAIN;
    }

    if (p[0] != 0x30) {
        return NGX_ERROR;
    }

    if (p[1] < 0x80) {
        len = p[1];
        hdr = 2;

    } else {
        k = p[1] & 0x7f;

        if (k == 0 || k > 4) {
            return NGX_ERROR;
        }

        if (n < 2 + k) {
            return NGX_AGAIN;
        }

        len = 0;

        for (i = 0; i < k; i++) {
            len = (len << 8) | p[2 + i];
        }

        hdr = 2 + k;
    }

    if (len > NGX_ESP_LDAP_MAX_MESSAGE - hdr) {
        return NGX_ERROR;
    }

    *size = hdr + len;

    return (n >= *size) ? NGX_OK : NGX_AGAIN;
}


/*
 * Decodes one framed LDAPMessage.  Strings are taken in place, without
 * the NUL that ber_scanf("m") would write after each (over the next byte,
 * which may be the next message, or past the end of the buffer).
 */

ngx_int_t
ngx_esp_ldap_parse(u_char *p, size_t n, ngx_esp_ldap_msg_t *m)
{
    ngx_int_t       rc;
    ber_len_t       len;
    ngx_uint_t      first;
    BerElement     *ber;
    struct berval   bv, type, value;

    ngx_memzero(m, sizeof(ngx_esp_ldap_msg_t));

    ber = ber_alloc_t(LBER_USE_DER);
    if (ber == NULL) {
        return NGX_ERROR;
    }

    bv.bv_val = (char *) p;
    bv.bv_len = n;

    ber_init2(ber, &bv, LBER_USE_DER);

    rc = NGX_ERROR;

    if (ber_skip_tag(ber, &len) != LBER_SEQUENCE
        || ber_get_int(ber, &m->msgid) == LBER_ERROR
        || m->msgid < 0)
    {
        goto done;
    }

    m->type = ber_peek_tag(ber, &len);

    switch (m->type) {

    case LDAP_RES_BIND:
    case LDAP_RES_SEARCH_RESULT:
    case LDAP_RES_EXTENDED:
        if (ber_skip_tag(ber, &len) == LBER_ERROR
            || ber_get_enum(ber, &m->code) == LBER_ERROR
            || ber_get_stringbv(ber, &m->matched, LBER_BV_NOTERM)
               == LBER_ERROR
            || ber_get_stringbv(ber, &m->diag, LBER_BV_NOTERM) == LBER_ERROR)
        {
            goto done;
        }

        break;

    case LDAP_RES_SEARCH_ENTRY:
        if (ber_skip_tag(ber, &len) == LBER_ERROR
            || ber_get_stringbv(ber, &m->dn, LBER_BV_NOTERM) == LBER_ERROR
            || ber_skip_tag(ber, &len) == LBER_ERROR)
        {
            goto done;
        }

        /* the attributes: SEQUENCE { type, SET OF value } each */

        while (ber_peek_tag(ber, &len) == LBER_SEQUENCE) {

            if (ber_skip_tag(ber, &len) == LBER_ERROR
                || ber_get_stringbv(ber, &type, LBER_BV_NOTERM) == LBER_ERROR
                || ber_skip_tag(ber, &len) == LBER_ERROR)
            {
                goto done;
            }

            first = 1;

            while (ber_peek_tag(ber, &len) == LBER_OCTETSTRING) {

                if (ber_get_stringbv(ber, &value, LBER_BV_NOTERM)
                    == LBER_ERROR)
                {
                    goto done;
                }

                if (first
                    && type.bv_len == sizeof("userPrincipalName") - 1
                    && ngx_strncasecmp((u_char *) type.bv_val,
                                       (u_char *) "userPrincipalName",
                                       type.bv_len)
                       == 0)
                {
                    m->upn = value;
                }

                first = 0;
            }
        }

        break;

    case LDAP_RES_SEARCH_REFERENCE:
        break;

    default:
        goto done;
    }

    rc = NGX_OK;

done:

    ber_free(ber, 0);

    return rc;
}


static ber_int_t
ngx_esp_ldap_next_msgid(ngx_esp_ldap_out_t *out)
{
    if (out->msgid <= 0 || out->msgid >= 0x7ffffffe) {
        out->msgid = 0;
    }

    return ++out->msgid;
}


/*
 * BindRequest, by hand: the password goes into this buffer only, which
 * is wiped once sent (ngx_esp_ldap_free_out())
 */

ngx_int_t
ngx_esp_ldap_encode_bind(ngx_esp_ldap_out_t *out, ngx_str_t *dn,
    ngx_str_t *password)
{
    u_char     *p;
    size_t      id_len, op_len, msg_len, len;
    ber_int_t   id;

    ngx_esp_ldap_free_out(out);

    id = ngx_esp_ldap_next_msgid(out);

    id_len = (id < 0x80) ? 1 : (id < 0x8000) ? 2 : (id < 0x800000) ? 3 : 4;

    op_len = 3
             + 1 + ngx_esp_ldap_length_size(dn->len) + dn->len
             + 1 + ngx_esp_ldap_length_size(password->len) + password->len;

    msg_len = 2 + id_len + 1 + ngx_esp_ldap_length_size(op_len) + op_len;

    len = 1 + ngx_esp_ldap_length_size(msg_len) + msg_len;

    p = ngx_alloc(len, out->log);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;
    out->len = len;
    out->sent = 0;
    out->secret = 1;

    *p++ = 0x30;
    p = ngx_esp_ldap_put_length(p, msg_len);

    *p++ = 0x02;
    *p++ = (u_char) id_len;

    while (id_len) {
        id_len--;
        *p++ = (u_char) (id >> (8 * id_len));
    }

    *p++ = (u_char) LDAP_REQ_BIND;
    p = ngx_esp_ldap_put_length(p, op_len);

    /* version 3 */
    *p++ = 0x02;
    *p++ = 0x01;
    *p++ = 0x03;

    *p++ = 0x04;
    p = ngx_esp_ldap_put_length(p, dn->len);
    p = ngx_cpymem(p, dn->data, dn->len);

    *p++ = (u_char) LDAP_AUTH_SIMPLE;
    p = ngx_esp_ldap_put_length(p, password->len);
    p = ngx_cpymem(p, password->data, password->len);

    return NGX_OK;
}


/*
 * The filters are built as the filter structure itself: values travel as
 * raw octets and no text the user typed is ever parsed as a filter.
 *
 * Who was bound (attribute userPrincipalName, size limit 2):
 *   (&(objectClass=user)(|(userPrincipalName=UPN)(sAMAccountName=NAME)))
 * or either half alone.  Then, on that user's DN only (scope base):
 *   (|(memberOf:1.2.840.113556.1.4.1941:=GROUP DN)...)
 */

ngx_int_t
ngx_esp_ldap_encode_search(ngx_esp_ldap_out_t *out, ngx_str_t *base,
    ngx_msec_t timeout, ngx_str_t *upn, ngx_str_t *account,
    ngx_array_t *groups)
{
    int          rc;
    ngx_str_t   *g;
    ber_int_t    id, limit, scope, size;
    ngx_uint_t   i;
    BerElement  *ber;

    ngx_esp_ldap_free_out(out);

    id = ngx_esp_ldap_next_msgid(out);
    limit = (ber_int_t) ((timeout + 999) / 1000);

    if (groups == NULL) {
        scope = LDAP_SCOPE_SUBTREE;
        size = 2;

    } else {
        scope = LDAP_SCOPE_BASE;
        size = 1;
    }

    ber = ber_alloc_t(LBER_USE_DER);
    if (ber == NULL) {
        return NGX_ERROR;
    }

    rc = ber_printf(ber, "{it{oeeiib",
                    id, LDAP_REQ_SEARCH,
                    (char *) base->data, (ber_len_t) base->len,
                    scope, (ber_int_t) LDAP_DEREF_NEVER,
                    size, limit, (ber_int_t) 0);

    if (groups == NULL) {

        if (rc != -1) {
            rc = ber_printf(ber, "t[t{ss}", LDAP_FILTER_AND,
                            LDAP_FILTER_EQUALITY, "objectClass", "user");
        }

        if (rc != -1 && upn->len && account->len) {
            rc = ber_printf(ber, "t[", LDAP_FILTER_OR);
        }

        if (rc != -1 && upn->len) {
            rc = ber_printf(ber, "t{so}", LDAP_FILTER_EQUALITY,
                            "userPrincipalName",
                            (char *) upn->data, (ber_len_t) upn->len);
        }

        if (rc != -1 && account->len) {
            rc = ber_printf(ber, "t{so}", LDAP_FILTER_EQUALITY,
                            "sAMAccountName",
                            (char *) account->data,
                            (ber_len_t) account->len);
        }

        if (rc != -1 && upn->len && account->len) {
            rc = ber_printf(ber, "]");
        }

        if (rc != -1) {
            rc = ber_printf(ber, "]{s}}}", "userPrincipalName");
        }

    } else {

        if (rc != -1) {
            rc = ber_printf(ber, "t[", LDAP_FILTER_OR);
        }

        g = groups->elts;

        for (i = 0; rc != -1 && i < groups->nelts; i++) {

            if (g[i].len == 0) {
                continue;
            }

            rc = ber_printf(ber, "t{tststo}",
                            LDAP_FILTER_EXT,
                            LDAP_FILTER_EXT_OID, NGX_ESP_LDAP_IN_CHAIN,
                            LDAP_FILTER_EXT_TYPE, "memberOf",
                            LDAP_FILTER_EXT_VALUE,
                            (char *) g[i].data, (ber_len_t) g[i].len);
        }

        if (rc != -1) {
            rc = ber_printf(ber, "]{s}}}", LDAP_NO_ATTRS);
        }
    }

    if (rc == -1) {
        ngx_log_error(NGX_LOG_ALERT, out->log, 0,
                      "esp: ber_printf() failed for a search request");
        ber_free(ber, 1);
        return NGX_ERROR;
    }

    return ngx_esp_ldap_flatten(out, ber);
}


ngx_int_t
ngx_esp_ldap_escape_filter_value(ngx_pool_t *pool, ngx_str_t *value,
    ngx_str_t *out)
{
    u_char      *p, *s, *last;
    ngx_uint_t   n;

    static u_char  hex[] = "0123456789abcdef";

    n = 0;
    last = value->data + value->len;

    for (s = value->data; s < last; s++) {
        if (*s == '*' || *s == '(' || *s == ')' || *s == '\\'
            || *s < 0x20 || *s == 0x7f)
        {
            n++;
        }
    }

    if (n == 0) {
        *out = *value;
        return NGX_OK;
    }

    p = ngx_pnalloc(pool, value->len + 2 * n);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;

    for (s = value->data; s < last; s++) {
        if (*s == '*' || *s == '(' || *s == ')' || *s == '\\'
            || *s < 0x20 || *s == 0x7f)
        {
            *p++ = '\\';
            *p++ = hex[*s >> 4];
            *p++ = hex[*s & 0xf];

        } else {
            *p++ = *s;
        }
    }

    out->len = p - out->data;

    return NGX_OK;
}


ngx_int_t
ngx_esp_ldap_encode_starttls(ngx_esp_ldap_out_t *out)
{
    ber_int_t    id;
    BerElement  *ber;

    ngx_esp_ldap_free_out(out);

    id = ngx_esp_ldap_next_msgid(out);

    ber = ber_alloc_t(LBER_USE_DER);
    if (ber == NULL) {
        return NGX_ERROR;
    }

    if (ber_printf(ber, "{it{ts}}", id, LDAP_REQ_EXTENDED,
                   LDAP_TAG_EXOP_REQ_OID, LDAP_EXOP_START_TLS)
        == -1)
    {
        ngx_log_error(NGX_LOG_ALERT, out->log, 0,
                      "esp: ber_printf() failed for a StartTLS request");
        ber_free(ber, 1);
        return NGX_ERROR;
    }

    return ngx_esp_ldap_flatten(out, ber);
}


/* an UnbindRequest, to say goodbye: nothing answers it */

ngx_int_t
ngx_esp_ldap_encode_unbind(ngx_esp_ldap_out_t *out)
{
    ber_int_t    id;
    BerElement  *ber;

    ngx_esp_ldap_free_out(out);

    id = ngx_esp_ldap_next_msgid(out);

    ber = ber_alloc_t(LBER_USE_DER);
    if (ber == NULL) {
        return NGX_ERROR;
    }

    if (ber_printf(ber, "{itn}", id, LDAP_REQ_UNBIND) == -1) {
        ber_free(ber, 1);
        return NGX_ERROR;
    }

    return ngx_esp_ldap_flatten(out, ber);
}


/* takes the request out of "ber" (which holds no secret) and frees it */

static ngx_int_t
ngx_esp_ldap_flatten(ngx_esp_ldap_out_t *out, BerElement *ber)
{
    struct berval  bv;

    if (ber_flatten2(ber, &bv, 0) == -1) {
        ber_free(ber, 1);
        return NGX_ERROR;
    }

    out->data = ngx_alloc(bv.bv_len, out->log);
    if (out->data == NULL) {
        ber_free(ber, 1);
        return NGX_ERROR;
    }

    ngx_memcpy(out->data, bv.bv_val, bv.bv_len);

    out->len = bv.bv_len;
    out->sent = 0;
    out->secret = 0;

    ber_free(ber, 1);

    return NGX_OK;
}


void
ngx_esp_ldap_free_out(ngx_esp_ldap_out_t *out)
{
    if (out->data == NULL) {
        return;
    }

    if (out->secret) {
        ngx_explicit_memzero(out->data, out->len);
        out->secret = 0;
    }

    ngx_free(out->data);

    out->data = NULL;
    out->len = 0;
    out->sent = 0;
}


static size_t
ngx_esp_ldap_length_size(size_t len)
{
    if (len < 0x80) {
        return 1;
    }

    if (len < 0x100) {
        return 2;
    }

    if (len < 0x10000) {
        return 3;
    }

    if (len < 0x1000000) {
        return 4;
    }

    return 5;
}


static u_char *
ngx_esp_ldap_put_length(u_char *p, size_t len)
{
    size_t  n;

    if (len < 0x80) {
        *p++ = (u_char) len;
        return p;
    }

    n = ngx_esp_ldap_length_size(len) - 1;

    *p++ = (u_char) (0x80 | n);

    while (n) {
        n--;
        *p++ = (u_char) (len >> (8 * n));
    }

    return p;
}


/* a server's text, fit for a log line */

size_t
ngx_esp_ldap_printable(u_char *dst, size_t size, struct berval *src)
{
    u_char  *s;
    size_t   i, n;

    n = ngx_min(size, src->bv_len);
    s = (u_char *) src->bv_val;

    for (i = 0; i < n; i++) {
        dst[i] = (s[i] < 0x20 || s[i] == 0x7f || s[i] == '"') ? '?' : s[i];
    }

    return n;
}


/* "80090308: LdapErr: DSID-0C0903A9, comment: ..., data 52e, v1db1" */

ngx_uint_t
ngx_esp_ldap_ad_code(struct berval *diag)
{
    u_char      *p, *last, ch;
    ngx_uint_t   code, n;

    if (diag->bv_len == 0) {
        return 0;
    }

    p = (u_char *) diag->bv_val;
    last = p + diag->bv_len;

    p = ngx_strlcasestrn(p, last, (u_char *) "data ", 5 - 1);

    if (p == NULL) {
        return 0;
    }

    p += 5;
    code = 0;

    for (n = 0; p < last && n < 8; p++, n++) {
        ch = *p;

        if (ch >= '0' && ch <= '9') {
            code = code * 16 + (ch - '0');
            continue;
        }

        ch |= 0x20;

        if (ch >= 'a' && ch <= 'f') {
            code = code * 16 + (ch - 'a' + 10);

        } else {
            break;
        }
    }

    return code;
}


ngx_esp_auth_result_e
ngx_esp_ldap_ad_result(ngx_uint_t code)
{
    switch (code) {
    case 0x530:
        return NGX_ESP_AUTH_LOGON_HOURS;
    case 0x531:
        return NGX_ESP_AUTH_WORKSTATION;
    case 0x532:
        return NGX_ESP_AUTH_PASSWORD_EXPIRED;
    case 0x533:
        return NGX_ESP_AUTH_DISABLED;
    case 0x701:
        return NGX_ESP_AUTH_ACCOUNT_EXPIRED;
    case 0x773:
        return NGX_ESP_AUTH_MUST_CHANGE;
    case 0x775:
        return NGX_ESP_AUTH_LOCKED;
    default: /* 525, 52e, and anything else */
        return NGX_ESP_AUTH_BAD_CREDENTIALS;
    }
}


const char *
ngx_esp_ldap_ad_text(ngx_uint_t code)
{
    switch (code) {
    case 0x525:
        return "no such account";
    case 0x52e:
        return "wrong password";
    case 0x530:
        return "not permitted at this time";
    case 0x531:
        return "not permitted from this workstation";
    case 0x532:
        return "its password expired";
    case 0x533:
        return "account disabled";
    case 0x701:
        return "account expired";
    case 0x773:
        return "it must change its password";
    case 0x775:
        return "account locked out";
    default:
        return "refused";
    }
}
