
/*
 * Copyright (C) ngx_exchange_esp authors
 */


/*
 * A Basic login from the Authorization header to the name bound at the
 * directory: the fuzzer's bytes are the header value, decoded as
 * nginx 1.22's ngx_http_auth_basic_user() does (reproduced below), then
 * checked as src/ngx_esp_auth.c and ngx_esp_ldap_authenticate()
 * check them: ngx_esp_ldap_check_user(), ngx_esp_ldap_build_logon_name()
 * under every logon_format, and ngx_esp_ldap_escape_filter_value().
 *
 * Properties:
 * - the user name accepted is 1-256 bytes of strict UTF-8 without C0 or
 *   C1 controls or DEL;
 * - a logon name is refused exactly when the name has two separators
 *   ("@", "\"), an empty account, or nothing after "@"; a built one
 *   holds at most one separator and is what logon_format says
 *   (a UPN as typed; NETBIOS\account; account@logon_domain);
 * - an escaped filter value has no "*", "(", ")", NUL or control byte
 *   left bare, and unescapes to the value.
 */


#include "fuzz_common.h"

#include "../src/ngx_esp_ldap.c"
#include "../src/ngx_esp_ldap_ber.c"
#include "../src/ngx_esp_log.c"

#include "fuzz_http.h"


/* nginx 1.22's ngx_http_auth_basic_user() (ngx_http_core_module.c) */

static ngx_int_t
fuzz_auth_basic_user(ngx_http_request_t *r)
{
    ngx_str_t   auth, encoded;
    ngx_uint_t  len;

    if (r->headers_in.user.len == 0 && r->headers_in.user.data != NULL) {
        return NGX_DECLINED;
    }

    if (r->headers_in.authorization == NULL) {
        r->headers_in.user.data = (u_char *) "";
        return NGX_DECLINED;
    }

    encoded = r->headers_in.authorization->value;

    if (encoded.len < sizeof("Basic ") - 1
        || ngx_strncasecmp(encoded.data, (u_char *) "Basic ",
                           sizeof("Basic ") - 1)
           != 0)
    {
        r->headers_in.user.data = (u_char *) "";
        return NGX_DECLINED;
    }

    encoded.len -= sizeof("Basic ") - 1;
    encoded.data += sizeof("Basic ") - 1;

    while (encoded.len && encoded.data[0] == ' ') {
        encoded.len--;
        encoded.data++;
    }

    if (encoded.len == 0) {
        r->headers_in.user.data = (u_char *) "";
        return NGX_DECLINED;
    }

    auth.len = ngx_base64_decoded_length(encoded.len);
    auth.data = ngx_pnalloc(r->pool, auth.len + 1);
    if (auth.data == NULL) {
        return NGX_ERROR;
    }

    if (ngx_decode_base64(&auth, &encoded) != NGX_OK) {
        r->headers_in.user.data = (u_char *) "";
        return NGX_DECLINED;
    }

    auth.data[auth.len] = '\0';

    for (len = 0; len < auth.len; len++) {
        if (auth.data[len] == ':') {
            break;
        }
    }

    if (len == 0 || len == auth.len) {
        r->headers_in.user.data = (u_char *) "";
        return NGX_DECLINED;
    }

    r->headers_in.user.len = len;
    r->headers_in.user.data = auth.data;
    r->headers_in.passwd.len = auth.len - len - 1;
    r->headers_in.passwd.data = &auth.data[len + 1];

    return NGX_OK;
}


static size_t
fuzz_count(ngx_str_t *s, u_char c)
{
    size_t  i, n;

    n = 0;

    for (i = 0; i < s->len; i++) {
        n += (s->data[i] == c);
    }

    return n;
}


static ngx_uint_t
fuzz_ref_user_ok(ngx_str_t *u)
{
    u_char  *p, *last;
    size_t   i;

    if (u->len == 0 || u->len > NGX_ESP_LDAP_MAX_INPUT) {
        return 0;
    }

    for (i = 0; i < u->len; i++) {
        if (u->data[i] < 0x20 || u->data[i] == 0x7f) {
            return 0;
        }
    }

    if (!fuzz_utf8_valid(u->data, u->len)) {
        return 0;
    }

    /* C1 controls, U+0080-U+009F, are "\xc2\x80"-"\xc2\x9f" */

    p = u->data;
    last = p + u->len;

    for ( /* void */ ; p + 1 < last; p++) {
        if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
            return 0;
        }
    }

    return 1;
}


static void
fuzz_logon_names(ngx_pool_t *pool, ngx_str_t *user)
{
    u_char            *at, *bs;
    size_t             nat, nbs;
    ngx_int_t          rc;
    ngx_str_t          out, account, expect;
    ngx_uint_t         fmt, domains, refused, upn;
    ngx_esp_domain_t   d;

    nat = fuzz_count(user, '@');
    nbs = fuzz_count(user, '\\');
    at = ngx_strlchr(user->data, user->data + user->len, '@');
    bs = ngx_strlchr(user->data, user->data + user->len, '\\');

    /* the reference split */

    upn = (nat == 1 && nbs == 0);

    if (upn) {
        account.data = user->data;
        account.len = at - user->data;

    } else if (nbs == 1 && nat == 0) {
        account.data = bs + 1;
        account.len = user->data + user->len - account.data;

    } else {
        account = *user;
    }

    refused = (nat + nbs > 1) || account.len == 0
              || (upn && at == user->data + user->len - 1);

    for (fmt = NGX_ESP_LOGON_PRINCIPAL; fmt <= NGX_ESP_LOGON_UNSPECIFIED;
         fmt++)
    {
        for (domains = 0; domains < 2; domains++) {

            ngx_memzero(&d, sizeof(ngx_esp_domain_t));
            d.logon_format = fmt;

            if (domains) {
                ngx_str_set(&d.logon_domain, "contoso.local");
                ngx_str_set(&d.netbios_domain, "CONTOSO");
            }

            ngx_str_null(&out);
            rc = ngx_esp_ldap_build_logon_name(pool, &d, user, &out);

            FUZZ_ASSERT(rc == NGX_OK || rc == NGX_DECLINED);
            FUZZ_ASSERT((rc == NGX_DECLINED) == refused);

            if (rc != NGX_OK) {
                continue;
            }

            FUZZ_ASSERT(out.len > 0);
            FUZZ_ASSERT(fuzz_count(&out, '@') + fuzz_count(&out, '\\') <= 1);

            if (upn || fmt == NGX_ESP_LOGON_UNSPECIFIED || !domains) {
                expect = *user;

            } else {
                expect.len = account.len + 16;
                expect.data = ngx_pnalloc(pool, expect.len);
                FUZZ_ASSERT(expect.data != NULL);

                if (fmt == NGX_ESP_LOGON_USERNAME) {
                    expect.len = ngx_sprintf(expect.data, "CONTOSO\\%V",
                                             &account)
                                 - expect.data;
                } else {
                    expect.len = ngx_sprintf(expect.data, "%V@contoso.local",
                                             &account)
                                 - expect.data;
                }
            }

            FUZZ_ASSERT(out.len == expect.len);
            FUZZ_ASSERT(ngx_memcmp(out.data, expect.data, out.len) == 0);
        }
    }
}


static void
fuzz_escape(ngx_pool_t *pool, ngx_str_t *value)
{
    u_char     c;
    size_t     i, n;
    ngx_str_t  out;
    ngx_int_t  h;

    FUZZ_ASSERT(ngx_esp_ldap_escape_filter_value(pool, value, &out)
                == NGX_OK);

    n = 0;

    for (i = 0; i < out.len; i++) {
        c = out.data[i];

        FUZZ_ASSERT(c != '*' && c != '(' && c != ')' && c >= 0x20
                    && c != 0x7f);

        if (c == '\\') {
            FUZZ_ASSERT(i + 2 < out.len);
            h = ngx_hextoi(&out.data[i + 1], 2);
            FUZZ_ASSERT(h != NGX_ERROR);
            c = (u_char) h;
            i += 2;
        }

        FUZZ_ASSERT(n < value->len && value->data[n] == c);
        n++;
    }

    FUZZ_ASSERT(n == value->len);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ngx_int_t            rc;
    ngx_str_t            value;
    ngx_pool_t          *pool;
    ngx_table_elt_t      auth;
    ngx_http_request_t  *r;

    pool = fuzz_pool();
    r = fuzz_request(pool);

    ngx_memzero(&auth, sizeof(ngx_table_elt_t));
    ngx_str_set(&auth.key, "Authorization");
    auth.value.data = fuzz_dup(data, size);
    auth.value.len = size;
    r->headers_in.authorization = &auth;

    rc = fuzz_auth_basic_user(r);

    if (rc == NGX_OK) {
        FUZZ_ASSERT((ngx_esp_ldap_check_user(&r->headers_in.user) == NGX_OK)
                    == fuzz_ref_user_ok(&r->headers_in.user));

        fuzz_logon_names(pool, &r->headers_in.user);
        fuzz_escape(pool, &r->headers_in.user);
        fuzz_escape(pool, &r->headers_in.passwd);
    }

    /* the raw bytes as a name too: Basic is not the only way in */

    value.data = auth.value.data;
    value.len = size;

    FUZZ_ASSERT((ngx_esp_ldap_check_user(&value) == NGX_OK)
                == fuzz_ref_user_ok(&value));

    fuzz_logon_names(pool, &value);
    fuzz_escape(pool, &value);

    ngx_destroy_pool(pool);
    free(auth.value.data);

    return 0;
}
