
/*
 * Copyright (C) ngx_exchange_esp authors
 */


/*
 * The directory client's LDAP on the wire: framing and decoding of what a
 * domain controller sends (BER length, bounded size, decoded in place
 * with liblber), the requests it is sent (bind, the searches, the read
 * of one entry, modify, StartTLS, unbind), the values of an entry, the
 * AD "data" codes of a refused bind and the Windows error code of a
 * refused change, and RFC 4515 filter value escaping.  Pure functions over buffers: no I/O, no
 * connection, no login; src/ngx_esp_ldap_conn.c and src/ngx_esp_ldap.c
 * call them, they call nothing of either.
 *
 * Requests are encoded with liblber, except the bind and modify
 * requests, encoded by hand into a buffer of ours so that the passwords
 * they carry can be wiped as soon as they are sent (liblber may
 * reallocate and free its buffers unwiped).
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_esp_ldap_ber.h"


#define NGX_ESP_LDAP_IN_CHAIN         "1.2.840.113556.1.4.1941"


static ber_int_t ngx_esp_ldap_next_msgid(ngx_esp_ldap_out_t *out);
static ngx_int_t ngx_esp_ldap_flatten(ngx_esp_ldap_out_t *out,
    BerElement *ber);
static int ngx_esp_ldap_put_attrs(BerElement *ber, ngx_array_t *attrs);
static u_char *ngx_esp_ldap_put_length(u_char *p, size_t len);
static size_t ngx_esp_ldap_length_size(size_t len);
static size_t ngx_esp_ldap_tlv_size(size_t len);


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

    m->raw = p;
    m->raw_len = n;

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
    case LDAP_RES_MODIFY:
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
    ngx_array_t *groups, ngx_array_t *attrs)
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
            rc = ber_printf(ber, "]");
        }

        if (rc != -1) {
            rc = ngx_esp_ldap_put_attrs(ber, attrs);
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


/* (objectClass=*) on "dn" alone: its attributes "attrs" */

ngx_int_t
ngx_esp_ldap_encode_read(ngx_esp_ldap_out_t *out, ngx_str_t *dn,
    ngx_msec_t timeout, ngx_array_t *attrs)
{
    int          rc;
    ber_int_t    id, limit;
    BerElement  *ber;

    ngx_esp_ldap_free_out(out);

    id = ngx_esp_ldap_next_msgid(out);
    limit = (ber_int_t) ((timeout + 999) / 1000);

    ber = ber_alloc_t(LBER_USE_DER);
    if (ber == NULL) {
        return NGX_ERROR;
    }

    rc = ber_printf(ber, "{it{oeeiibts",
                    id, LDAP_REQ_SEARCH,
                    (char *) dn->data, (ber_len_t) dn->len,
                    (ber_int_t) LDAP_SCOPE_BASE, (ber_int_t) LDAP_DEREF_NEVER,
                    (ber_int_t) 1, limit, (ber_int_t) 0,
                    LDAP_FILTER_PRESENT, "objectClass");

    if (rc != -1) {
        rc = ngx_esp_ldap_put_attrs(ber, attrs);
    }

    if (rc == -1) {
        ngx_log_error(NGX_LOG_ALERT, out->log, 0,
                      "esp: ber_printf() failed for a read request");
        ber_free(ber, 1);
        return NGX_ERROR;
    }

    return ngx_esp_ldap_flatten(out, ber);
}


/* the attribute list that ends a search request, and the request */

static int
ngx_esp_ldap_put_attrs(BerElement *ber, ngx_array_t *attrs)
{
    int          rc;
    ngx_str_t   *a;
    ngx_uint_t   i;

    if (attrs == NULL || attrs->nelts == 0) {
        return ber_printf(ber, "{s}}}", LDAP_NO_ATTRS);
    }

    rc = ber_printf(ber, "{");

    a = attrs->elts;

    for (i = 0; rc != -1 && i < attrs->nelts; i++) {
        rc = ber_printf(ber, "o", (char *) a[i].data, (ber_len_t) a[i].len);
    }

    if (rc != -1) {
        rc = ber_printf(ber, "}}}");
    }

    return rc;
}


/*
 * ModifyRequest ::= [APPLICATION 6] SEQUENCE { object LDAPDN,
 *     changes SEQUENCE OF change SEQUENCE { operation ENUMERATED,
 *     modification SEQUENCE { type, vals SET OF value } } }
 */

ngx_int_t
ngx_esp_ldap_encode_modify(ngx_esp_ldap_out_t *out, ngx_str_t *dn,
    ngx_array_t *changes)
{
    u_char                 *p;
    size_t                  id_len, op_len, msg_len, list_len, len;
    size_t                  vals_len, attr_len, change_len;
    ber_int_t               id;
    ngx_str_t              *v;
    ngx_uint_t              i, j, nv;
    ngx_esp_ldap_change_t  *ch;

    ngx_esp_ldap_free_out(out);

    if (changes == NULL || changes->nelts == 0) {
        return NGX_ERROR;
    }

    ch = changes->elts;
    list_len = 0;

    for (i = 0; i < changes->nelts; i++) {
        if (ch[i].op > NGX_ESP_LDAP_MOD_REPLACE
            || ch[i].attr.len == 0
            || ch[i].attr.len > 256)
        {
            return NGX_ERROR;
        }

        vals_len = 0;
        nv = ch[i].values ? ch[i].values->nelts : 0;
        v = nv ? ch[i].values->elts : NULL;

        for (j = 0; j < nv; j++) {
            if (v[j].len > NGX_ESP_LDAP_MAX_MESSAGE / 4) {
                return NGX_ERROR;
            }

            vals_len += ngx_esp_ldap_tlv_size(v[j].len);
        }

        attr_len = ngx_esp_ldap_tlv_size(ch[i].attr.len)
                   + ngx_esp_ldap_tlv_size(vals_len);
        change_len = 3 + ngx_esp_ldap_tlv_size(attr_len);

        list_len += ngx_esp_ldap_tlv_size(change_len);

        if (list_len > NGX_ESP_LDAP_MAX_MESSAGE) {
            return NGX_ERROR;
        }
    }

    id = ngx_esp_ldap_next_msgid(out);

    id_len = (id < 0x80) ? 1 : (id < 0x8000) ? 2 : (id < 0x800000) ? 3 : 4;

    op_len = ngx_esp_ldap_tlv_size(dn->len) + ngx_esp_ldap_tlv_size(list_len);
    msg_len = 2 + id_len + ngx_esp_ldap_tlv_size(op_len);
    len = ngx_esp_ldap_tlv_size(msg_len);

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

    *p++ = (u_char) LDAP_REQ_MODIFY;
    p = ngx_esp_ldap_put_length(p, op_len);

    *p++ = 0x04;
    p = ngx_esp_ldap_put_length(p, dn->len);
    p = ngx_cpymem(p, dn->data, dn->len);

    *p++ = 0x30;
    p = ngx_esp_ldap_put_length(p, list_len);

    for (i = 0; i < changes->nelts; i++) {
        vals_len = 0;
        nv = ch[i].values ? ch[i].values->nelts : 0;
        v = nv ? ch[i].values->elts : NULL;

        for (j = 0; j < nv; j++) {
            vals_len += ngx_esp_ldap_tlv_size(v[j].len);
        }

        attr_len = ngx_esp_ldap_tlv_size(ch[i].attr.len)
                   + ngx_esp_ldap_tlv_size(vals_len);
        change_len = 3 + ngx_esp_ldap_tlv_size(attr_len);

        *p++ = 0x30;
        p = ngx_esp_ldap_put_length(p, change_len);

        *p++ = 0x0a;
        *p++ = 0x01;
        *p++ = (u_char) ch[i].op;

        *p++ = 0x30;
        p = ngx_esp_ldap_put_length(p, attr_len);

        *p++ = 0x04;
        p = ngx_esp_ldap_put_length(p, ch[i].attr.len);
        p = ngx_cpymem(p, ch[i].attr.data, ch[i].attr.len);

        *p++ = 0x31;
        p = ngx_esp_ldap_put_length(p, vals_len);

        for (j = 0; j < nv; j++) {
            *p++ = 0x04;
            p = ngx_esp_ldap_put_length(p, v[j].len);
            p = ngx_cpymem(p, v[j].data, v[j].len);
        }
    }

    return NGX_OK;
}


/*
 * SearchResultEntry ::= [APPLICATION 4] SEQUENCE { objectName,
 *     attributes SEQUENCE OF SEQUENCE { type, vals SET OF value } }
 */

ngx_int_t
ngx_esp_ldap_entry_values(ngx_esp_ldap_msg_t *m, ngx_array_t *attrs,
    ngx_array_t *values, ngx_pool_t *pool)
{
    ber_int_t             msgid;
    ber_len_t             len;
    ngx_int_t             rc;
    ngx_str_t            *name, *val;
    ngx_uint_t            i;
    BerElement           *ber;
    struct berval         bv, type, value, dn;
    ngx_esp_ldap_attr_t  *a;

    name = attrs->elts;

    while (values->nelts < attrs->nelts) {
        a = ngx_array_push(values);
        if (a == NULL) {
            return NGX_ERROR;
        }

        a->name = name[values->nelts - 1];
        a->values = NULL;
    }

    ber = ber_alloc_t(LBER_USE_DER);
    if (ber == NULL) {
        return NGX_ERROR;
    }

    bv.bv_val = (char *) m->raw;
    bv.bv_len = m->raw_len;

    ber_init2(ber, &bv, LBER_USE_DER);

    rc = NGX_ERROR;

    if (ber_skip_tag(ber, &len) != LBER_SEQUENCE
        || ber_get_int(ber, &msgid) == LBER_ERROR
        || ber_skip_tag(ber, &len) != LDAP_RES_SEARCH_ENTRY
        || ber_get_stringbv(ber, &dn, LBER_BV_NOTERM) == LBER_ERROR
        || ber_skip_tag(ber, &len) == LBER_ERROR)
    {
        goto done;
    }

    a = values->elts;

    while (ber_peek_tag(ber, &len) == LBER_SEQUENCE) {

        if (ber_skip_tag(ber, &len) == LBER_ERROR
            || ber_get_stringbv(ber, &type, LBER_BV_NOTERM) == LBER_ERROR
            || ber_skip_tag(ber, &len) == LBER_ERROR)
        {
            goto done;
        }

        for (i = 0; i < attrs->nelts; i++) {
            if (name[i].len == type.bv_len
                && ngx_strncasecmp(name[i].data, (u_char *) type.bv_val,
                                   type.bv_len)
                   == 0)
            {
                break;
            }
        }

        while (ber_peek_tag(ber, &len) == LBER_OCTETSTRING) {

            if (ber_get_stringbv(ber, &value, LBER_BV_NOTERM) == LBER_ERROR) {
                goto done;
            }

            if (i == attrs->nelts) {
                continue;
            }

            if (a[i].values == NULL) {
                a[i].values = ngx_array_create(pool, 1, sizeof(ngx_str_t));
                if (a[i].values == NULL) {
                    goto done;
                }
            }

            val = ngx_array_push(a[i].values);
            if (val == NULL) {
                goto done;
            }

            val->len = value.bv_len;
            val->data = ngx_pnalloc(pool, value.bv_len + 1);
            if (val->data == NULL) {
                goto done;
            }

            /* NUL-terminated for the caller's convenience, not counted */

            ngx_memcpy(val->data, value.bv_val, value.bv_len);
            val->data[value.bv_len] = '\0';
        }
    }

    rc = NGX_OK;

done:

    ber_free(ber, 0);

    return rc;
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


/* tag, length and contents of "len" bytes */

static size_t
ngx_esp_ldap_tlv_size(size_t len)
{
    return 1 + ngx_esp_ldap_length_size(len) + len;
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


/*
 * "0000052D: Constraint violation - ...": the Windows error code that AD
 * and Samba put first in the text of a refused change; 0 if none
 */

ngx_uint_t
ngx_esp_ldap_error_code(u_char *p, size_t len)
{
    u_char      ch;
    ngx_uint_t  i, code;

    if (len < 9 || p[8] != ':') {
        return 0;
    }

    code = 0;

    for (i = 0; i < 8; i++) {
        ch = p[i];

        if (ch >= '0' && ch <= '9') {
            code = code * 16 + (ch - '0');
            continue;
        }

        ch |= 0x20;

        if (ch < 'a' || ch > 'f') {
            return 0;
        }

        code = code * 16 + (ch - 'a' + 10);
    }

    return code;
}


/* what an orphaned modify of a password said of the old password */

ngx_esp_auth_result_e
ngx_esp_ldap_modify_result(ngx_esp_ldap_msg_t *m)
{
    if (m->code == LDAP_SUCCESS) {
        return NGX_ESP_AUTH_OK;
    }

    if (m->code == LDAP_CONSTRAINT_VIOLATION
        && ngx_esp_ldap_error_code((u_char *) m->diag.bv_val, m->diag.bv_len)
           == NGX_ESP_LDAP_ERROR_INVALID_PASSWORD)
    {
        return NGX_ESP_AUTH_BAD_CREDENTIALS;
    }

    return NGX_ESP_AUTH_ERROR;
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
