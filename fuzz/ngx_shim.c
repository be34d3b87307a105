
/*
 * Copyright (C) ngx_exchange_esp authors
 */


/*
 * The few nginx core functions the fuzz targets link against, written
 * for the targets (nginx's .c files are not installed here), with the
 * prototypes and the behaviour of nginx 1.22:
 *
 * - every pool allocation is a malloc() of its own, so that the
 *   sanitizers see the exact bounds of each one (nginx would carve them
 *   out of a larger block, where an overflow goes unseen);
 * - the string helpers decode exactly as nginx does, quirks included
 *   (ngx_decode_base64 stops at the first "=", ngx_utf8_decode accepts
 *   what nginx accepts), since the module's checks rely on them;
 * - logging formats every message into a buffer (so that a wrong
 *   argument is caught) and prints it only with ESP_FUZZ_LOG=1.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>


/* a cleanup and the data ngx_pool_cleanup_add() allocated for it */
typedef struct {
    ngx_pool_cleanup_t         c;            /* first: the cast back */
    void                      *own;
} ngx_shim_cleanup_t;


static u_char *ngx_shim_num(u_char *buf, u_char *last, uint64_t ui64,
    u_char zero, ngx_uint_t hexadecimal, ngx_uint_t width);
static void ngx_shim_log(ngx_uint_t level, ngx_err_t err, const char *fmt,
    va_list args);


static ngx_time_t   ngx_shim_time = { 1700000000, 0, 0 };

volatile ngx_time_t  *ngx_cached_time = &ngx_shim_time;
volatile ngx_msec_t   ngx_current_msec = 1700000000000ULL;
ngx_uint_t            ngx_pagesize = 4096;
ngx_uint_t            ngx_pagesize_shift = 12;
ngx_uint_t            ngx_cacheline_size = 64;


/* pools */

ngx_pool_t *
ngx_create_pool(size_t size, ngx_log_t *log)
{
    ngx_pool_t  *p;

    p = calloc(1, sizeof(ngx_pool_t));
    if (p == NULL) {
        return NULL;
    }

    p->max = size;
    p->current = p;
    p->log = log;

    return p;
}


void
ngx_destroy_pool(ngx_pool_t *pool)
{
    ngx_pool_large_t    *l, *next;
    ngx_pool_cleanup_t  *c, *cnext;

    /* as nginx: the cleanups first, while all the memory is there */

    for (c = pool->cleanup; c; c = c->next) {
        if (c->handler) {
            c->handler(c->data);
        }
    }

    /* only what ngx_pool_cleanup_add() allocated: a handler's data of
       its own (a cleanup added with size 0) is the handler's */

    for (c = pool->cleanup; c; c = cnext) {
        cnext = c->next;
        free(((ngx_shim_cleanup_t *) c)->own);
        free(c);
    }

    for (l = pool->large; l; l = next) {
        next = l->next;
        free(l->alloc);
        free(l);
    }

    free(pool);
}


void *
ngx_palloc(ngx_pool_t *pool, size_t size)
{
    void              *p;
    ngx_pool_large_t  *l;

    /* malloc(0) may give NULL: nginx never fails a zero-sized palloc */

    p = malloc(size ? size : 1);
    if (p == NULL) {
        return NULL;
    }

    l = malloc(sizeof(ngx_pool_large_t));
    if (l == NULL) {
        free(p);
        return NULL;
    }

    l->alloc = p;
    l->next = pool->large;
    pool->large = l;

    return p;
}


void *
ngx_pnalloc(ngx_pool_t *pool, size_t size)
{
    return ngx_palloc(pool, size);
}


void *
ngx_pcalloc(ngx_pool_t *pool, size_t size)
{
    void  *p;

    p = ngx_palloc(pool, size);
    if (p) {
        ngx_memzero(p, size);
    }

    return p;
}


ngx_pool_cleanup_t *
ngx_pool_cleanup_add(ngx_pool_t *p, size_t size)
{
    ngx_shim_cleanup_t  *sc;

    sc = malloc(sizeof(ngx_shim_cleanup_t));
    if (sc == NULL) {
        return NULL;
    }

    sc->own = NULL;
    sc->c.data = NULL;

    if (size) {
        sc->own = malloc(size);
        if (sc->own == NULL) {
            free(sc);
            return NULL;
        }

        sc->c.data = sc->own;
    }

    sc->c.handler = NULL;
    sc->c.next = p->cleanup;
    p->cleanup = &sc->c;

    return &sc->c;
}


void *
ngx_alloc(size_t size, ngx_log_t *log)
{
    return malloc(size);
}


void *
ngx_calloc(size_t size, ngx_log_t *log)
{
    return calloc(1, size);
}


ngx_array_t *
ngx_array_create(ngx_pool_t *p, ngx_uint_t n, size_t size)
{
    ngx_array_t  *a;

    a = ngx_palloc(p, sizeof(ngx_array_t));
    if (a == NULL) {
        return NULL;
    }

    if (ngx_array_init(a, p, n, size) != NGX_OK) {
        return NULL;
    }

    return a;
}


void *
ngx_array_push(ngx_array_t *a)
{
    void  *elt, *new;

    if (a->nelts == a->nalloc) {
        new = ngx_palloc(a->pool, 2 * (a->nalloc ? a->nalloc : 1) * a->size);
        if (new == NULL) {
            return NULL;
        }

        ngx_memcpy(new, a->elts, a->nelts * a->size);
        a->elts = new;
        a->nalloc = 2 * (a->nalloc ? a->nalloc : 1);
    }

    elt = (u_char *) a->elts + a->size * a->nelts;
    a->nelts++;

    return elt;
}


/* lists: a part is full at l->nalloc elements, the next one is new */

void *
ngx_list_push(ngx_list_t *l)
{
    ngx_list_part_t  *part;

    part = l->last;

    if (part->nelts == l->nalloc) {
        part = ngx_palloc(l->pool, sizeof(ngx_list_part_t));
        if (part == NULL) {
            return NULL;
        }

        part->elts = ngx_palloc(l->pool, l->nalloc * l->size);
        if (part->elts == NULL) {
            return NULL;
        }

        part->nelts = 0;
        part->next = NULL;

        l->last->next = part;
        l->last = part;
    }

    return (u_char *) part->elts + l->size * part->nelts++;
}


ngx_uint_t
ngx_hash_key(u_char *data, size_t len)
{
    size_t      i;
    ngx_uint_t  key;

    key = 0;

    for (i = 0; i < len; i++) {
        key = ngx_hash(key, data[i]);
    }

    return key;
}


/* strings */

void
ngx_explicit_memzero(void *buf, size_t n)
{
    explicit_bzero(buf, n);
}


u_char *
ngx_cpystrn(u_char *dst, u_char *src, size_t n)
{
    if (n == 0) {
        return dst;
    }

    while (--n) {
        *dst = *src;

        if (*dst == '\0') {
            return dst;
        }

        dst++;
        src++;
    }

    *dst = '\0';

    return dst;
}


u_char *
ngx_pstrdup(ngx_pool_t *pool, ngx_str_t *src)
{
    u_char  *dst;

    dst = ngx_pnalloc(pool, src->len);
    if (dst == NULL) {
        return NULL;
    }

    ngx_memcpy(dst, src->data, src->len);

    return dst;
}


void
ngx_strlow(u_char *dst, u_char *src, size_t n)
{
    while (n) {
        *dst = ngx_tolower(*src);
        dst++;
        src++;
        n--;
    }
}


ngx_int_t
ngx_strncasecmp(u_char *s1, u_char *s2, size_t n)
{
    ngx_uint_t  c1, c2;

    while (n) {
        c1 = (ngx_uint_t) *s1++;
        c2 = (ngx_uint_t) *s2++;

        c1 = (c1 >= 'A' && c1 <= 'Z') ? (c1 | 0x20) : c1;
        c2 = (c2 >= 'A' && c2 <= 'Z') ? (c2 | 0x20) : c2;

        if (c1 == c2) {

            if (c1) {
                n--;
                continue;
            }

            return 0;
        }

        return c1 - c2;
    }

    return 0;
}


ngx_int_t
ngx_strcasecmp(u_char *s1, u_char *s2)
{
    return ngx_strncasecmp(s1, s2, (size_t) -1);
}


/* nginx: "n" is the length of "s2" minus 1; NULL if not found */

u_char *
ngx_strlcasestrn(u_char *s1, u_char *last, u_char *s2, size_t n)
{
    ngx_uint_t  c1, c2;

    c2 = (ngx_uint_t) *s2++;
    c2 = (c2 >= 'A' && c2 <= 'Z') ? (c2 | 0x20) : c2;

    if ((size_t) (last - s1) <= n) {
        return NULL;
    }

    last -= n;

    do {
        do {
            if (s1 >= last) {
                return NULL;
            }

            c1 = (ngx_uint_t) *s1++;
            c1 = (c1 >= 'A' && c1 <= 'Z') ? (c1 | 0x20) : c1;

        } while (c1 != c2);

    } while (ngx_strncasecmp(s1, s2, n) != 0);

    return --s1;
}


ngx_int_t
ngx_atoi(u_char *line, size_t n)
{
    ngx_int_t  value, cutoff, cutlim;

    if (n == 0) {
        return NGX_ERROR;
    }

    cutoff = NGX_MAX_INT_T_VALUE / 10;
    cutlim = NGX_MAX_INT_T_VALUE % 10;

    for (value = 0; n--; line++) {
        if (*line < '0' || *line > '9') {
            return NGX_ERROR;
        }

        if (value >= cutoff && (value > cutoff || *line - '0' > cutlim)) {
            return NGX_ERROR;
        }

        value = value * 10 + (*line - '0');
    }

    return value;
}


time_t
ngx_atotm(u_char *line, size_t n)
{
    time_t  value, cutoff, cutlim;

    if (n == 0) {
        return NGX_ERROR;
    }

    cutoff = NGX_MAX_TIME_T_VALUE / 10;
    cutlim = NGX_MAX_TIME_T_VALUE % 10;

    for (value = 0; n--; line++) {
        if (*line < '0' || *line > '9') {
            return NGX_ERROR;
        }

        if (value >= cutoff && (value > cutoff || *line - '0' > cutlim)) {
            return NGX_ERROR;
        }

        value = value * 10 + (*line - '0');
    }

    return value;
}


ngx_int_t
ngx_hextoi(u_char *line, size_t n)
{
    u_char     c, ch;
    ngx_int_t  value, cutoff;

    if (n == 0) {
        return NGX_ERROR;
    }

    cutoff = NGX_MAX_INT_T_VALUE / 16;

    for (value = 0; n--; line++) {
        if (value > cutoff) {
            return NGX_ERROR;
        }

        ch = *line;

        if (ch >= '0' && ch <= '9') {
            value = value * 16 + (ch - '0');
            continue;
        }

        c = (u_char) (ch | 0x20);

        if (c >= 'a' && c <= 'f') {
            value = value * 16 + (c - 'a' + 10);
            continue;
        }

        return NGX_ERROR;
    }

    return value;
}


u_char *
ngx_hex_dump(u_char *dst, u_char *src, size_t len)
{
    static u_char  hex[] = "0123456789abcdef";

    while (len--) {
        *dst++ = hex[*src >> 4];
        *dst++ = hex[*src++ & 0xf];
    }

    return dst;
}


static void
ngx_shim_encode_base64(ngx_str_t *dst, ngx_str_t *src, const u_char *basis,
    ngx_uint_t padding)
{
    u_char  *d, *s;
    size_t   len;

    len = src->len;
    s = src->data;
    d = dst->data;

    while (len > 2) {
        *d++ = basis[(s[0] >> 2) & 0x3f];
        *d++ = basis[((s[0] & 3) << 4) | (s[1] >> 4)];
        *d++ = basis[((s[1] & 0x0f) << 2) | (s[2] >> 6)];
        *d++ = basis[s[2] & 0x3f];

        s += 3;
        len -= 3;
    }

    if (len) {
        *d++ = basis[(s[0] >> 2) & 0x3f];

        if (len == 1) {
            *d++ = basis[(s[0] & 3) << 4];
            if (padding) {
                *d++ = '=';
            }

        } else {
            *d++ = basis[((s[0] & 3) << 4) | (s[1] >> 4)];
            *d++ = basis[(s[1] & 0x0f) << 2];
        }

        if (padding) {
            *d++ = '=';
        }
    }

    dst->len = d - dst->data;
}


void
ngx_encode_base64(ngx_str_t *dst, ngx_str_t *src)
{
    static u_char  basis64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    ngx_shim_encode_base64(dst, src, basis64, 1);
}


void
ngx_encode_base64url(ngx_str_t *dst, ngx_str_t *src)
{
    static u_char  basis64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    ngx_shim_encode_base64(dst, src, basis64, 0);
}


/* as nginx: stops at the first "=", leftover bits are not checked */

static ngx_int_t
ngx_shim_decode_base64(ngx_str_t *dst, ngx_str_t *src, ngx_uint_t url)
{
    u_char  *d, *s, b[4], c;
    size_t   len, i;
    int      v;

    for (len = 0; len < src->len; len++) {
        c = src->data[len];

        if (c == '=') {
            break;
        }

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
              || (c >= '0' && c <= '9')
              || (url ? (c == '-' || c == '_') : (c == '+' || c == '/'))))
        {
            return NGX_ERROR;
        }
    }

    if (len % 4 == 1) {
        return NGX_ERROR;
    }

    s = src->data;
    d = dst->data;

    while (len) {
        for (i = 0; i < 4 && i < len; i++) {
            c = s[i];

            if (c >= 'A' && c <= 'Z') {
                v = c - 'A';

            } else if (c >= 'a' && c <= 'z') {
                v = c - 'a' + 26;

            } else if (c >= '0' && c <= '9') {
                v = c - '0' + 52;

            } else if (c == '+' || c == '-') {
                v = 62;

            } else {
                v = 63;
            }

            b[i] = (u_char) v;
        }

        if (i > 1) {
            *d++ = (u_char) (b[0] << 2 | b[1] >> 4);
        }

        if (i > 2) {
            *d++ = (u_char) (b[1] << 4 | b[2] >> 2);
        }

        if (i > 3) {
            *d++ = (u_char) (b[2] << 6 | b[3]);
        }

        s += i;
        len -= i;
    }

    dst->len = d - dst->data;

    return NGX_OK;
}


ngx_int_t
ngx_decode_base64(ngx_str_t *dst, ngx_str_t *src)
{
    return ngx_shim_decode_base64(dst, src, 0);
}


ngx_int_t
ngx_decode_base64url(ngx_str_t *dst, ngx_str_t *src)
{
    return ngx_shim_decode_base64(dst, src, 1);
}


/*
 * as nginx: 0x80-0x10ffff valid, 0xfffffffe incomplete, other values
 * invalid; lead bytes 0xf5-0xff are taken as 4-byte forms like 0xf0-0xf4
 */

uint32_t
ngx_utf8_decode(u_char **p, size_t n)
{
    size_t    len;
    uint32_t  u, i, valid;

    u = **p;

    if (u >= 0xf0) {
        u &= 0x07;
        valid = 0xffff;
        len = 3;

    } else if (u >= 0xe0) {
        u &= 0x0f;
        valid = 0x7ff;
        len = 2;

    } else if (u >= 0xc2) {
        u &= 0x1f;
        valid = 0x7f;
        len = 1;

    } else {
        (*p)++;
        return 0xffffffff;
    }

    if (n - 1 < len) {
        return 0xfffffffe;
    }

    (*p)++;

    while (len) {
        i = *(*p)++;

        if (i < 0x80) {
            return 0xffffffff;
        }

        u = (u << 6) | (i & 0x3f);
        len--;
    }

    if (u > valid) {
        return u;
    }

    return 0xffffffff;
}


/* as nginx, for the types the module uses: 0, NGX_UNESCAPE_URI */

void
ngx_unescape_uri(u_char **dst, u_char **src, size_t size, ngx_uint_t type)
{
    u_char  *d, *s, ch, c, decoded;
    enum {
        sw_usual = 0,
        sw_quoted,
        sw_quoted_second
    } state;

    if (type & ~NGX_UNESCAPE_URI) {
        fprintf(stderr, "ngx_shim: ngx_unescape_uri() type %lu\n",
                (unsigned long) type);
        abort();
    }

    d = *dst;
    s = *src;
    state = sw_usual;
    decoded = 0;

    while (size--) {

        ch = *s++;

        switch (state) {

        case sw_usual:
            if (ch == '?' && (type & NGX_UNESCAPE_URI)) {
                *d++ = ch;
                goto done;
            }

            if (ch == '%') {
                state = sw_quoted;
                break;
            }

            *d++ = ch;
            break;

        case sw_quoted:
            if (ch >= '0' && ch <= '9') {
                decoded = (u_char) (ch - '0');
                state = sw_quoted_second;
                break;
            }

            c = (u_char) (ch | 0x20);
            if (c >= 'a' && c <= 'f') {
                decoded = (u_char) (c - 'a' + 10);
                state = sw_quoted_second;
                break;
            }

            /* the invalid quoted character */
            state = sw_usual;
            *d++ = ch;
            break;

        case sw_quoted_second:
            state = sw_usual;

            if (ch >= '0' && ch <= '9') {
                *d++ = (u_char) ((decoded << 4) + ch - '0');
                break;
            }

            c = (u_char) (ch | 0x20);
            if (c >= 'a' && c <= 'f') {
                ch = (u_char) ((decoded << 4) + c - 'a' + 10);

                if ((type & NGX_UNESCAPE_URI) && ch == '?') {
                    *d++ = ch;
                    goto done;
                }

                *d++ = ch;
                break;
            }

            /* the invalid quoted character: dropped, as nginx does */
            break;
        }
    }

done:

    *dst = d;
    *src = s;
}


/*
 * ngx_sprintf() and friends: nginx's conversions (see ngx_string.c),
 * without %f, %v and %r, which the module does not use
 */

u_char *
ngx_vslprintf(u_char *buf, u_char *last, const char *fmt, va_list args)
{
    u_char       *p, zero;
    int64_t       i64;
    uint64_t      ui64;
    ngx_str_t    *v;
    ngx_uint_t    width, sign, hex, max_width;
    size_t        slen, len;

    while (*fmt && buf < last) {

        if (*fmt != '%') {
            *buf++ = *fmt++;
            continue;
        }

        i64 = 0;
        ui64 = 0;

        zero = (u_char) ((*++fmt == '0') ? '0' : ' ');
        width = 0;
        sign = 1;
        hex = 0;
        max_width = 0;
        slen = (size_t) -1;

        while (*fmt >= '0' && *fmt <= '9') {
            width = width * 10 + (*fmt++ - '0');
        }

        for ( ;; ) {
            switch (*fmt) {

            case 'u':
                sign = 0;
                fmt++;
                continue;

            case 'm':
                max_width = 1;
                fmt++;
                continue;

            case 'X':
                hex = 2;
                sign = 0;
                fmt++;
                continue;

            case 'x':
                hex = 1;
                sign = 0;
                fmt++;
                continue;

            case '*':
                slen = va_arg(args, size_t);
                fmt++;
                continue;

            default:
                break;
            }

            break;
        }

        switch (*fmt) {

        case 'V':
            v = va_arg(args, ngx_str_t *);
            len = ngx_min((size_t) (last - buf), v->len);
            buf = ngx_cpymem(buf, v->data, len);
            fmt++;
            continue;

        case 's':
            p = va_arg(args, u_char *);

            if (slen == (size_t) -1) {
                while (*p && buf < last) {
                    *buf++ = *p++;
                }

            } else {
                len = ngx_min((size_t) (last - buf), slen);
                buf = ngx_cpymem(buf, p, len);
            }

            fmt++;
            continue;

        case 'O':
            i64 = (int64_t) va_arg(args, off_t);
            sign = 1;
            break;

        case 'P':
            i64 = (int64_t) va_arg(args, ngx_pid_t);
            sign = 1;
            break;

        case 'T':
            i64 = (int64_t) va_arg(args, time_t);
            sign = 1;
            break;

        case 'M':
            ui64 = (uint64_t) va_arg(args, ngx_msec_t);
            sign = 0;
            break;

        case 'z':
            if (sign) {
                i64 = (int64_t) va_arg(args, ssize_t);
            } else {
                ui64 = (uint64_t) va_arg(args, size_t);
            }
            break;

        case 'i':
            if (sign) {
                i64 = (int64_t) va_arg(args, ngx_int_t);
            } else {
                ui64 = (uint64_t) va_arg(args, ngx_uint_t);
            }

            if (max_width) {
                width = NGX_INT_T_LEN;
            }
            break;

        case 'd':
            if (sign) {
                i64 = (int64_t) va_arg(args, int);
            } else {
                ui64 = (uint64_t) va_arg(args, u_int);
            }
            break;

        case 'l':
            if (sign) {
                i64 = (int64_t) va_arg(args, long);
            } else {
                ui64 = (uint64_t) va_arg(args, u_long);
            }
            break;

        case 'D':
            if (sign) {
                i64 = (int64_t) va_arg(args, int32_t);
            } else {
                ui64 = (uint64_t) va_arg(args, uint32_t);
            }
            break;

        case 'L':
            if (sign) {
                i64 = va_arg(args, int64_t);
            } else {
                ui64 = va_arg(args, uint64_t);
            }
            break;

        case 'A':
            if (sign) {
                i64 = (int64_t) va_arg(args, ngx_atomic_int_t);
            } else {
                ui64 = (uint64_t) va_arg(args, ngx_atomic_uint_t);
            }

            if (max_width) {
                width = NGX_ATOMIC_T_LEN;
            }
            break;

        case 'p':
            ui64 = (uintptr_t) va_arg(args, void *);
            hex = 2;
            sign = 0;
            zero = '0';
            width = 2 * sizeof(void *);
            break;

        case 'c':
            *buf++ = (u_char) (va_arg(args, int) & 0xff);
            fmt++;
            continue;

        case 'Z':
            *buf++ = '\0';
            fmt++;
            continue;

        case 'N':
            *buf++ = LF;
            fmt++;
            continue;

        case '%':
            *buf++ = '%';
            fmt++;
            continue;

        default:
            fprintf(stderr, "ngx_shim: unsupported conversion \"%%%c\" "
                    "in \"%s\"\n", *fmt, fmt);
            abort();
        }

        if (sign) {
            if (i64 < 0) {
                *buf++ = '-';
                ui64 = (uint64_t) -(i64 + 1) + 1;

            } else {
                ui64 = (uint64_t) i64;
            }
        }

        buf = ngx_shim_num(buf, last, ui64, zero, hex, width);

        fmt++;
    }

    return buf;
}


static u_char *
ngx_shim_num(u_char *buf, u_char *last, uint64_t ui64, u_char zero,
    ngx_uint_t hexadecimal, ngx_uint_t width)
{
    u_char         *p, temp[NGX_INT64_LEN + 1];
    size_t          len;
    static u_char   hex[] = "0123456789abcdef";
    static u_char   HEX[] = "0123456789ABCDEF";

    p = temp + NGX_INT64_LEN;

    do {
        if (hexadecimal == 0) {
            *--p = (u_char) (ui64 % 10 + '0');
            ui64 /= 10;

        } else {
            *--p = (hexadecimal == 1 ? hex : HEX)[ui64 & 0xf];
            ui64 >>= 4;
        }

    } while (ui64 != 0);

    len = (temp + NGX_INT64_LEN) - p;

    while (len++ < width && buf < last) {
        *buf++ = zero;
    }

    len = (temp + NGX_INT64_LEN) - p;

    if (buf + len > last) {
        len = last - buf;
    }

    return ngx_cpymem(buf, p, len);
}


u_char * ngx_cdecl
ngx_sprintf(u_char *buf, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, (void *) -1, fmt, args);
    va_end(args);

    return p;
}


u_char * ngx_cdecl
ngx_snprintf(u_char *buf, size_t max, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, buf + max, fmt, args);
    va_end(args);

    return p;
}


u_char * ngx_cdecl
ngx_slprintf(u_char *buf, u_char *last, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, last, fmt, args);
    va_end(args);

    return p;
}


/* logging: formatted (so that bad arguments show), then dropped */

static void
ngx_shim_log(ngx_uint_t level, ngx_err_t err, const char *fmt, va_list args)
{
    u_char       buf[NGX_MAX_ERROR_STR], *p;
    static int   print = -1;

    p = ngx_vslprintf(buf, buf + sizeof(buf), fmt, args);

    if (print == -1) {
        print = getenv("ESP_FUZZ_LOG") != NULL;
    }

    if (print) {
        fprintf(stderr, "[log %lu] %.*s (err %d)\n", (unsigned long) level,
                (int) (p - buf), buf, (int) err);
    }
}


void
ngx_log_error_core(ngx_uint_t level, ngx_log_t *log, ngx_err_t err,
    const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    ngx_shim_log(level, err, fmt, args);
    va_end(args);
}


void ngx_cdecl
ngx_log_debug_core(ngx_log_t *log, ngx_err_t err, const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    ngx_shim_log(NGX_LOG_DEBUG, err, fmt, args);
    va_end(args);
}


void ngx_cdecl
ngx_conf_log_error(ngx_uint_t level, ngx_conf_t *cf, ngx_err_t err,
    const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    ngx_shim_log(level, err, fmt, args);
    va_end(args);
}
