
/*
 * Copyright (C) ngx_exchange_esp authors
 */


/*
 * Private to the directory client (src/ngx_esp_ldap*.c): LDAP messages
 * in BER, as src/ngx_esp_ldap_ber.c frames, decodes and encodes them.
 * Nothing here does I/O or knows a connection or a login.
 */


#ifndef _NGX_ESP_LDAP_BER_H_INCLUDED_
#define _NGX_ESP_LDAP_BER_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include <lber.h>
#include <ldap.h>

#include "ngx_esp_ldap.h"


#define NGX_ESP_LDAP_MAX_MESSAGE      (1024 * 1024)


/* one LDAPMessage as received; strings point into the input buffer */
typedef struct {
    ber_int_t                  msgid;
    ber_tag_t                  type;
    ber_int_t                  code;
    struct berval              matched;
    struct berval              diag;
    struct berval              dn;
    struct berval              upn;         /* its userPrincipalName */
    u_char                    *raw;         /* the whole message */
    size_t                     raw_len;
} ngx_esp_ldap_msg_t;


/* the request being sent on a connection, and the last message ID used */
typedef struct {
    u_char                    *data;
    size_t                     len;
    size_t                     sent;
    ber_int_t                  msgid;       /* of the last request */
    ngx_log_t                 *log;
    unsigned                   secret:1;    /* "data" holds a password */
} ngx_esp_ldap_out_t;


/*
 * NGX_OK: p holds a whole LDAPMessage of "size" bytes; NGX_AGAIN: more
 * bytes are needed; NGX_ERROR: no LDAPMessage, or one over the limit
 */
ngx_int_t ngx_esp_ldap_frame(u_char *p, size_t n, size_t *size);

/* one framed message; p must have one readable byte after p + n */
ngx_int_t ngx_esp_ldap_parse(u_char *p, size_t n, ngx_esp_ldap_msg_t *m);

/*
 * Requests, each into out->data under the next message ID (out->msgid);
 * a bind's buffer is wiped when it is freed.  A search with "groups"
 * checks them on the entry "base"; without, it looks for the user by
 * "upn" and/or "account" under "base".
 */
ngx_int_t ngx_esp_ldap_encode_bind(ngx_esp_ldap_out_t *out, ngx_str_t *dn,
    ngx_str_t *password);
ngx_int_t ngx_esp_ldap_encode_search(ngx_esp_ldap_out_t *out,
    ngx_str_t *base, ngx_msec_t timeout, ngx_str_t *upn, ngx_str_t *account,
    ngx_array_t *groups, ngx_array_t *attrs);

/* a base-object search of "dn" for the attributes "attrs" (ngx_str_t) */
ngx_int_t ngx_esp_ldap_encode_read(ngx_esp_ldap_out_t *out, ngx_str_t *dn,
    ngx_msec_t timeout, ngx_array_t *attrs);

/*
 * A ModifyRequest of "dn" with "changes" (ngx_esp_ldap_change_t), by
 * hand like a bind: values may be passwords, the buffer is wiped.
 */
ngx_int_t ngx_esp_ldap_encode_modify(ngx_esp_ldap_out_t *out, ngx_str_t *dn,
    ngx_array_t *changes);
ngx_int_t ngx_esp_ldap_encode_starttls(ngx_esp_ldap_out_t *out);
ngx_int_t ngx_esp_ldap_encode_unbind(ngx_esp_ldap_out_t *out);
void ngx_esp_ldap_free_out(ngx_esp_ldap_out_t *out);

/*
 * The values of a search entry "m" for the names in "attrs" (ngx_str_t),
 * copied into "pool": fills "values" (ngx_esp_ldap_attr_t, one per name,
 * in order); an attribute the entry lacks keeps values == NULL.  Names
 * compare without case; ";range=" and other options are not handled.
 */
ngx_int_t ngx_esp_ldap_entry_values(ngx_esp_ldap_msg_t *m,
    ngx_array_t *attrs, ngx_array_t *values, ngx_pool_t *pool);

/* a server's text, fit for a log line: returns the length written */
size_t ngx_esp_ldap_printable(u_char *dst, size_t size, struct berval *src);

/* AD's "data NNN" in a diagnostic message, what it means, how to say it */
ngx_uint_t ngx_esp_ldap_ad_code(struct berval *diag);
ngx_esp_auth_result_e ngx_esp_ldap_ad_result(ngx_uint_t code);
ngx_esp_auth_result_e ngx_esp_ldap_modify_result(ngx_esp_ldap_msg_t *m);
const char *ngx_esp_ldap_ad_text(ngx_uint_t code);


#endif /* _NGX_ESP_LDAP_BER_H_INCLUDED_ */
