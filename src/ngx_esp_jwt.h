
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#ifndef _NGX_ESP_JWT_H_INCLUDED_
#define _NGX_ESP_JWT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include <openssl/evp.h>


/*
 * JSON Web Tokens signed with RS256 or ES256 (RFC 7515, 7518, 7519) and
 * the JSON Web Key Sets that hold their keys (RFC 7517), for
 * "esp_bearer verify".  Nothing here knows HTTP: the fuzz target takes
 * this file as it is.
 *
 * The JSON reader is strict RFC 8259 and small on purpose: one value,
 * nothing after it but blanks, no duplicate member names, strings in
 * valid UTF-8 without NUL, bounded depth and size.  Whatever it cannot
 * read is refused, never guessed.
 */


/* the longest token read, and the deepest and largest JSON */
#define NGX_ESP_JWT_MAX_LEN       8192
#define NGX_ESP_JSON_MAX_DEPTH    8
#define NGX_ESP_JSON_MAX_NODES    4096
#define NGX_ESP_JSON_MAX_MEMBERS  256

#define NGX_ESP_JSON_NULL         0
#define NGX_ESP_JSON_FALSE        1
#define NGX_ESP_JSON_TRUE         2
#define NGX_ESP_JSON_NUMBER       3
#define NGX_ESP_JSON_STRING       4
#define NGX_ESP_JSON_ARRAY        5
#define NGX_ESP_JSON_OBJECT       6

/* the signature algorithms a key serves */
#define NGX_ESP_JWT_RS256         1
#define NGX_ESP_JWT_ES256         2


typedef struct ngx_esp_json_s  ngx_esp_json_t;

struct ngx_esp_json_s {
    ngx_uint_t                 type;
    ngx_str_t                  name;         /* of an object's member */
    ngx_str_t                  value;        /* a string, decoded; a
                                                number as written */
    ngx_esp_json_t            *child;        /* an array's or object's
                                                first element */
    ngx_esp_json_t            *next;
};


typedef struct {
    ngx_str_t                  kid;
    ngx_uint_t                 alg;          /* NGX_ESP_JWT_RS256, ES256 */
    EVP_PKEY                  *pkey;         /* freed by the pool cleanup */
} ngx_esp_jwk_t;


/* what a token must satisfy */
typedef struct {
    ngx_array_t               *keys;         /* ngx_esp_jwk_t */
    ngx_array_t               *issuers;      /* ngx_str_t, one must match */
    ngx_array_t               *audiences;    /* ngx_str_t, one must match */
    time_t                     now;
    time_t                     skew;         /* for exp and nbf */
} ngx_esp_jwt_policy_t;


/* what a verified token told */
typedef struct {
    ngx_str_t                  kid;
    ngx_str_t                  alg;
    ngx_str_t                  user;         /* upn, unique_name or sub */
    time_t                     exp;
} ngx_esp_jwt_t;


/*
 * Reads one JSON text; NULL with *reason if it is not strictly JSON
 * (or too deep or too large) or memory ran out.
 */
ngx_esp_json_t *ngx_esp_json_parse(ngx_pool_t *pool, u_char *p, size_t len,
    const char **reason);

/* an object's member, or NULL */
ngx_esp_json_t *ngx_esp_json_get(ngx_esp_json_t *obj, char *name);

/*
 * Strict base64url without padding: every character of the alphabet,
 * a length that decodes, unused bits zero (one spelling per value).
 */
ngx_int_t ngx_esp_jwt_base64url(ngx_pool_t *pool, ngx_str_t *src,
    ngx_str_t *dst);

/*
 * The keys of a JWKS document, pushed to "keys": RSA (2048 bits or more)
 * and EC P-256 keys for signatures with a "kid".  Keys of other types or
 * uses are skipped (*skipped counts them); a malformed key, a repeated
 * kid or a set without a usable key is an error (*reason, NGX_ERROR).
 */
ngx_int_t ngx_esp_jwks_parse(ngx_pool_t *pool, u_char *p, size_t len,
    ngx_array_t *keys, ngx_uint_t *skipped, const char **reason);

/*
 * Verifies a JWS compact token (its three parts, as sent) under the
 * policy: NGX_OK and *jwt filled, or NGX_DECLINED with *reason (a fixed
 * text, nothing of the token), or NGX_ERROR (memory).
 */
ngx_int_t ngx_esp_jwt_verify(ngx_pool_t *pool, ngx_str_t *token,
    ngx_esp_jwt_policy_t *policy, ngx_esp_jwt_t *jwt, const char **reason);


#endif /* _NGX_ESP_JWT_H_INCLUDED_ */
