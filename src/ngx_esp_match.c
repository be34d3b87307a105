
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_esp_http.h"
#include "ngx_esp_match.h"


static ngx_int_t ngx_esp_unhex(u_char c);
static ngx_uint_t ngx_esp_plain_char(u_char c);
static void ngx_esp_path_pattern_warn(ngx_conf_t *cf, ngx_str_t *value);


/*
 * Case-insensitive (ASCII, as IIS compares paths) glob match where "*"
 * is any run of bytes within one path segment: it never takes a "/".
 * Only stars that end the pattern right after a "/" ("/owa/" and a star)
 * take the rest of the path, "/" included.  Otherwise "/ecp/" star ".js"
 * would also match "/ecp/x.aspx/y.js", which IIS hands to x.aspx
 * (PathInfo): the shape of ProxyLogon's way past authentication.  The
 * single-star backtracking keeps it at O(plen * len) for any input, with
 * no recursion; a star that meets a "/" ends the search, since no
 * earlier star can take it either.
 */

ngx_uint_t
ngx_esp_glob_match(u_char *p, size_t plen, u_char *s, size_t len)
{
    size_t      pi, si, star_p, star_s, rest;
    ngx_uint_t  star;

    /* where a trailing "/" and stars begin to stand for the rest */

    rest = plen;

    while (rest > 0 && p[rest - 1] == '*') {
        rest--;
    }

    if (rest == plen || rest == 0 || p[rest - 1] != '/') {
        rest = plen + 1;
    }

    pi = 0;
    si = 0;
    star = 0;
    star_p = 0;
    star_s = 0;

    while (si < len) {

        if (pi == rest) {
            return 1;
        }

        if (pi < plen && p[pi] == '*') {
            star = 1;
            star_p = ++pi;
            star_s = si;
            continue;
        }

        if (pi < plen && ngx_tolower(p[pi]) == ngx_tolower(s[si])) {
            pi++;
            si++;
            continue;
        }

        if (!star || s[star_s] == '/') {
            return 0;
        }

        pi = star_p;
        si = ++star_s;
    }

    while (pi < plen && p[pi] == '*') {
        pi++;
    }

    return pi == plen;
}


/*
 * A pattern ending in "/" and a star also matches the directory itself
 * ("/owa"), which IIS answers with a redirect to "/owa/".  The rule is
 * the same for every list of patterns (esp_allowed_dirs,
 * esp_preauth_excluded_dirs, esp_logoff): a star stays within its segment
 * unless the pattern ends in "/" and a star.
 */

ngx_uint_t
ngx_esp_match_paths(ngx_array_t *patterns, ngx_str_t *path)
{
    size_t                   n;
    ngx_uint_t               i;
    ngx_esp_path_pattern_t  *pp;

    if (patterns == NULL) {
        return 0;
    }

    pp = patterns->elts;

    for (i = 0; i < patterns->nelts; i++) {

        if (ngx_esp_glob_match(pp[i].pattern.data, pp[i].pattern.len,
                               path->data, path->len))
        {
            return 1;
        }

        n = pp[i].pattern.len;

        if (n > 2
            && pp[i].pattern.data[n - 1] == '*'
            && pp[i].pattern.data[n - 2] == '/'
            && path->len == n - 2
            && ngx_strncasecmp(pp[i].pattern.data, path->data, n - 2) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* "host" is nginx's validated host: lowercase, no port, no trailing dot */

ngx_uint_t
ngx_esp_match_hosts(ngx_array_t *hosts, ngx_str_t *host)
{
    ngx_uint_t               i;
    ngx_esp_host_pattern_t  *hp;

    if (hosts == NULL || host->len == 0) {
        return 0;
    }

    hp = hosts->elts;

    for (i = 0; i < hosts->nelts; i++) {

        if (!hp[i].wildcard) {
            if (host->len == hp[i].name.len
                && ngx_strncasecmp(host->data, hp[i].name.data, host->len)
                   == 0)
            {
                return 1;
            }

            continue;
        }

        /* "*.contoso.com": one or more labels before ".contoso.com" */

        if (host->len > hp[i].name.len + 1
            && host->data[host->len - hp[i].name.len - 1] == '.'
            && ngx_strncasecmp(host->data + host->len - hp[i].name.len,
                               hp[i].name.data, hp[i].name.len)
               == 0)
        {
            return 1;
        }
    }

    return 0;
}


/*
 * The path as a backend that decodes it once (IIS) sees it: percent
 * escapes decoded, empty and "." segments dropped, ".." applied.
 * Backslashes, NULs, control characters, broken escapes and paths that
 * climb above the root are refused: Exchange has no such URLs, and IIS
 * would read them differently from nginx.  "out" must have room for
 * "len" + 1 bytes.
 */

ngx_int_t
ngx_esp_canonical_path(u_char *raw, size_t len, ngx_str_t *out,
    const char **reason)
{
    u_char     *d, *start, c;
    size_t      i, seg;
    ngx_int_t   h1, h2;
    ngx_uint_t  slash;

    if (len == 0 || raw[0] != '/') {
        *reason = "path does not start with \"/\"";
        return NGX_DECLINED;
    }

    d = out->data;
    start = d;
    slash = 0;

    for (i = 0; i < len; /* void */) {

        c = raw[i++];

        if (c == '%') {
            if (i + 2 > len) {
                *reason = "broken percent-encoding";
                return NGX_DECLINED;
            }

            h1 = ngx_esp_unhex(raw[i]);
            h2 = ngx_esp_unhex(raw[i + 1]);

            if (h1 < 0 || h2 < 0) {
                *reason = "broken percent-encoding";
                return NGX_DECLINED;
            }

            c = (u_char) (h1 * 16 + h2);
            i += 2;
        }

        if (c == '\\') {
            *reason = "backslash in path";
            return NGX_DECLINED;
        }

        if (c < 0x20 || c == 0x7f) {
            *reason = "control character in path";
            return NGX_DECLINED;
        }

        if (c != '/') {
            *d++ = c;
            slash = 0;
            continue;
        }

        /* a segment ends: drop it if empty or ".", apply ".." */

        seg = d - start;

        if (d > out->data && d[-1] == '/' && seg == 0) {
            /* "//" */
            slash = 1;
            continue;
        }

        if (seg == 1 && start[0] == '.') {
            d = start;
            slash = 1;
            continue;
        }

        if (seg == 2 && start[0] == '.' && start[1] == '.') {

            if (start == out->data + 1 || start == out->data) {
                *reason = "path climbs above the root";
                return NGX_DECLINED;
            }

            /* back to the start of the previous segment */
            d = start - 1;
            while (d > out->data && d[-1] != '/') {
                d--;
            }

            start = d;
            slash = 1;
            continue;
        }

        *d++ = '/';
        start = d;
        slash = 1;
    }

    /* the last segment, if any, may also be "." or ".." */

    seg = d - start;

    if (!slash && seg == 1 && start[0] == '.') {
        d = start;

    } else if (!slash && seg == 2 && start[0] == '.' && start[1] == '.') {

        if (start == out->data + 1 || start == out->data) {
            *reason = "path climbs above the root";
            return NGX_DECLINED;
        }

        d = start - 1;
        while (d > out->data && d[-1] != '/') {
            d--;
        }
    }

    out->len = d - out->data;

    if (out->len == 0) {
        out->data[0] = '/';
        out->len = 1;
    }

    /*
     * Exchange's URLs are UTF-8; overlong forms ("%c0%ae" for ".") and
     * other broken sequences are how paths get past filters that compare
     * text, so they are refused, encoded or not
     */

    if (!ngx_esp_utf8_valid(out->data, out->len)) {
        *reason = "invalid UTF-8 in path";
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * A path that every server reads the same way: no escapes that change
 * its structure, no dot or empty segments, no segment ending in a dot or
 * a space (Windows drops them), no ";", ":" or "\".  Only such paths may
 * skip pre-authentication through an excluded directory.
 */

ngx_uint_t
ngx_esp_path_is_plain(u_char *raw, size_t len)
{
    u_char      c, prev;
    size_t      i, seg, dots;
    uint32_t    u, min;
    ngx_int_t   h1, h2;
    ngx_uint_t  need;

    if (len == 0 || raw[0] != '/') {
        return 0;
    }

    seg = 0;
    dots = 0;
    prev = '/';
    need = 0;
    u = 0;
    min = 0;

    for (i = 1; i <= len; i++) {

        if (i == len || raw[i] == '/') {

            if (need) {
                /* a UTF-8 sequence cut short */
                return 0;
            }

            if (seg == 0) {
                /* empty segment: only a trailing slash is fine */
                if (i != len) {
                    return 0;
                }

                break;
            }

            if (dots == seg || prev == '.' || prev == ' ') {
                return 0;
            }

            seg = 0;
            dots = 0;
            prev = '/';
            continue;
        }

        c = raw[i];

        if (c == '%') {
            if (i + 2 >= len) {
                return 0;
            }

            h1 = ngx_esp_unhex(raw[i + 1]);
            h2 = ngx_esp_unhex(raw[i + 2]);

            if (h1 < 0 || h2 < 0) {
                return 0;
            }

            c = (u_char) (h1 * 16 + h2);
            i += 2;

            if (c != ' ' && c < 0x80 && (c == '.' || !ngx_esp_plain_char(c)))
            {
                return 0;
            }

        } else if (c < 0x80 && !ngx_esp_plain_char(c)) {
            return 0;
        }

        /* bytes above 0x7f, raw or escaped, must be strict UTF-8 */

        if (need) {
            if ((c & 0xc0) != 0x80) {
                return 0;
            }

            u = (u << 6) | (c & 0x3f);

            if (--need == 0
                && (u < min || u > 0x10ffff || (u >= 0xd800 && u <= 0xdfff)))
            {
                return 0;
            }

        } else if (c >= 0x80) {

            if (c >= 0xc2 && c <= 0xdf) {
                need = 1;
                u = c & 0x1f;
                min = 0x80;

            } else if (c >= 0xe0 && c <= 0xef) {
                need = 2;
                u = c & 0x0f;
                min = 0x800;

            } else if (c >= 0xf0 && c <= 0xf4) {
                need = 3;
                u = c & 0x07;
                min = 0x10000;

            } else {
                return 0;
            }
        }

        seg++;

        if (c == '.') {
            dots++;
        }

        prev = c;
    }

    return 1;
}


static ngx_uint_t
ngx_esp_plain_char(u_char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
        || (c >= '0' && c <= '9'))
    {
        return 1;
    }

    switch (c) {
    case '-': case '.': case '_': case '~': case '@': case '!': case '$':
    case '&': case '\'': case '(': case ')': case '*': case '+': case ',':
    case '=':
        return 1;
    }

    return 0;
}


static ngx_int_t
ngx_esp_unhex(u_char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c = (u_char) (c | 0x20);

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    return -1;
}


char *
ngx_esp_parse_path_pattern(ngx_conf_t *cf, ngx_str_t *value, void *elt)
{
    ngx_esp_path_pattern_t  *pp = elt;

    ngx_uint_t  i;

    if (value->len == 0 || value->data[0] != '/') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid directory pattern \"%V\": "
                           "it must start with \"/\"", value);
        return NGX_CONF_ERROR;
    }

    for (i = 0; i < value->len; i++) {
        if (value->data[i] == '?' || value->data[i] == '\\'
            || value->data[i] <= 0x20 || value->data[i] == 0x7f)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid directory pattern \"%V\": "
                               "it must be a path without query, "
                               "spaces or backslashes", value);
            return NGX_CONF_ERROR;
        }
    }

    pp->pattern = *value;

    ngx_esp_path_pattern_warn(cf, value);

    return NGX_CONF_OK;
}


/*
 * "/ecp/" star ".js" as an exclusion: the star matches within one
 * segment only (see ngx_esp_glob_match()), but an exclusion by what a
 * path ends with still lets unauthenticated requests reach whatever the
 * backend serves under such names; say so where it is configured.
 * cf->args is NULL when the fuzz targets call the parser.
 */

static void
ngx_esp_path_pattern_warn(ngx_conf_t *cf, ngx_str_t *value)
{
    u_char     *star;
    ngx_str_t  *args;

    if (cf->args == NULL || cf->args->nelts == 0) {
        return;
    }

    args = cf->args->elts;

    if (args[0].len != sizeof("esp_preauth_excluded_dirs") - 1
        || ngx_strncmp(args[0].data, "esp_preauth_excluded_dirs",
                       args[0].len) != 0)
    {
        return;
    }

    star = ngx_strlchr(value->data, value->data + value->len, '*');

    while (star && star < value->data + value->len && *star == '*') {
        star++;
    }

    if (star == NULL || star == value->data + value->len) {
        return;
    }

    ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                       "\"esp_preauth_excluded_dirs\" pattern \"%V\": the "
                       "\"*\" before \"%*s\" matches within one path "
                       "segment only, yet lets every such name past the "
                       "login; list the exact paths if you can", value,
                       (size_t) (value->data + value->len - star), star);
}


char *
ngx_esp_parse_host_pattern(ngx_conf_t *cf, ngx_str_t *value, void *elt)
{
    ngx_esp_host_pattern_t  *hp = elt;

    u_char      *p, c;
    ngx_uint_t   i;
    ngx_str_t    name;

    name = *value;
    hp->wildcard = 0;

    if (name.len > 2 && name.data[0] == '*' && name.data[1] == '.') {
        hp->wildcard = 1;
        name.data += 2;
        name.len -= 2;
    }

    if (name.len && name.data[name.len - 1] == '.') {
        name.len--;
    }

    if (name.len == 0) {
        goto invalid;
    }

    p = ngx_pnalloc(cf->pool, name.len);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 0; i < name.len; i++) {
        c = ngx_tolower(name.data[i]);

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
              || c == '-' || c == '.' || c == '_' || c == '[' || c == ']'
              || c == ':'))
        {
            goto invalid;
        }

        p[i] = c;
    }

    if (p[0] == '.'
        || ngx_strlcasestrn(p, p + name.len, (u_char *) "..", 2 - 1) != NULL
        || (p[0] != '[' && ngx_strlchr(p, p + name.len, ':') != NULL))
    {
        goto invalid;
    }

    hp->name.data = p;
    hp->name.len = name.len;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid host name \"%V\": expected a name such as "
                       "\"mail.contoso.com\" or \"*.contoso.com\", "
                       "without a port", value);
    return NGX_CONF_ERROR;
}
