
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#ifndef _NGX_ESP_FORM_H_INCLUDED_
#define _NGX_ESP_FORM_H_INCLUDED_


#include "ngx_esp.h"
#include "ngx_esp_request.h"


/*
 * "esp_client_auth form": the login and logout pages, sessions, the OWA
 * hand-off.
 *
 * endpoint: the module's own paths (/_esp/login, /_esp/logout), and the
 * form on its way to its return URL's location; NGX_DECLINED elsewhere.
 * Called after the host check, before the path checks.
 * access: step 5 of the design, and the second half of a form login.
 * header_filter: what Exchange answers a form session or a logoff, and
 * the form's cookies.
 * strip_cookies: the gate's cookies leave the request for Exchange.
 */
ngx_int_t ngx_esp_form_endpoint(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);
ngx_int_t ngx_esp_form_access(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);
ngx_int_t ngx_esp_form_header_filter(ngx_http_request_t *r,
    ngx_esp_ctx_t *ctx);
ngx_int_t ngx_esp_form_strip_cookies(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf);


/*
 * For the download host's hand-off (src/ngx_esp_download.c).
 * find_session: NGX_OK with ctx->session set, NGX_DECLINED (*stale: 0 no
 * cookie of ours, 1 a bad one, 2 an expired one), NGX_ERROR.
 * issue_cookie: ctx->session, sealed, for the header filter.
 * add_cookie: a Set-Cookie for the header filter (max_age -1: none).
 * redirect: 302 to url.  valid_return_url: a local path only.
 * self_url: scheme://host[:port]path as the browser reached us, with
 * "other" as host if not NULL.
 */
ngx_int_t ngx_esp_find_session(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx, ngx_uint_t *stale);
ngx_int_t ngx_esp_issue_cookie(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);
ngx_int_t ngx_esp_add_cookie(ngx_http_request_t *r, ngx_esp_ctx_t *ctx,
    ngx_str_t *name, ngx_str_t *value, char *path, time_t max_age,
    ngx_uint_t samesite);
ngx_int_t ngx_esp_redirect(ngx_http_request_t *r, ngx_str_t *url);
ngx_uint_t ngx_esp_valid_return_url(ngx_str_t *url);
ngx_int_t ngx_esp_self_url(ngx_http_request_t *r, ngx_str_t *other,
    ngx_str_t *path, ngx_str_t *out);


/*
 * For the other pages of the form (src/ngx_esp_password.c and
 * src/ngx_esp_mfa.c): the same token, cookies, templates, redirects and
 * login.  render: "{{name}}" in "tpl" becomes the HTML-escaped value (raw:
 * as it is); render_mfa: the same with the second factor's page;
 * form_send: the page ends the request (returns NGX_DONE).  is_german: the
 * pages' language.  continue_at: an internal redirect to the location of
 * "url", where the login goes on (NGX_DECLINED: not a path to go to).
 * form_token_ok: the posted CSRF token matches the browser's cookie and
 * the post is same-site.  form_csrf: the page's token (a new cookie if the
 * browser has none).  form_again: the login form, "start again".
 * session_start: every factor passed: the session and on to Exchange
 * (ctx->lr.logon_name, ctx->password, return_url and private set).
 */

#define NGX_ESP_CSRF_COOKIE     "esp_csrf"
#define NGX_ESP_MAX_LOGIN_BODY  8192
#define NGX_ESP_MAX_VARS        24

typedef struct {
    ngx_str_t                  name;
    ngx_str_t                  value;
    ngx_uint_t                 raw;          /* already HTML */
} ngx_esp_var_t;

/* "{{name}}" of "tpl" become the values, HTML-escaped unless raw */
ngx_int_t ngx_esp_render(ngx_http_request_t *r, u_char *tpl, size_t len,
    ngx_esp_var_t *vars, ngx_uint_t n, ngx_str_t *out);
ngx_int_t ngx_esp_form_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *body);
ngx_int_t ngx_esp_continue_at(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_str_t *url, ngx_uint_t with_args);
ngx_int_t ngx_esp_form_continue(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);
ngx_int_t ngx_esp_arg_url(ngx_http_request_t *r, ngx_str_t *url);
ngx_int_t ngx_esp_csrf_token(ngx_http_request_t *r, ngx_str_t *token,
    ngx_uint_t *fresh);
ngx_uint_t ngx_esp_form_token_ok(ngx_http_request_t *r, ngx_str_t *csrf,
    const char *what);
ngx_uint_t ngx_esp_is_german(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf);
void ngx_esp_form_body_handler(ngx_http_request_t *r);

/*
 * The form body's fields into the ngx_str_t members of "f" that "fields"
 * names (a table ending in a null name): each at most once, decoded,
 * strict UTF-8, wiped with the pool; unknown ones ignored.  NGX_OK, or
 * the status to refuse the form with ("reason" says why).
 */
typedef struct {
    ngx_str_t                  name;
    size_t                     offset;
} ngx_esp_form_field_t;

ngx_int_t ngx_esp_form_fields(ngx_http_request_t *r, void *f,
    ngx_esp_form_field_t *fields, const char **reason);

/* the embedded templates of the other pages (src/ngx_esp_pages.h) */
#define NGX_ESP_TEMPLATE_PASSWORD  0
#define NGX_ESP_TEMPLATE_EXPIRY    1

u_char *ngx_esp_form_template(ngx_uint_t which, size_t *len);

ngx_int_t ngx_esp_form_render_mfa(ngx_http_request_t *r,
    ngx_esp_var_t *vars, ngx_uint_t n, ngx_str_t *out);
ngx_int_t ngx_esp_form_csrf(ngx_http_request_t *r, ngx_esp_ctx_t *ctx,
    ngx_str_t *token);
ngx_int_t ngx_esp_form_again(ngx_http_request_t *r, ngx_esp_loc_conf_t *elcf,
    ngx_esp_ctx_t *ctx, ngx_str_t *url);
ngx_int_t ngx_esp_form_session_start(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);

/* a login decided in the return URL's place: the session, or the form */
ngx_int_t ngx_esp_form_login_done(ngx_http_request_t *r,
    ngx_esp_loc_conf_t *elcf, ngx_esp_ctx_t *ctx);


/* the form's directives: conf is ngx_esp_loc_conf_t */
char *ngx_esp_cookie(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_esp_login_page(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

/* esp_default_url, esp_owa_auth; esp_password_form */
extern ngx_conf_post_handler_pt  ngx_esp_local_url_p;
extern ngx_conf_post_handler_pt  ngx_esp_password_form_p;


#endif /* _NGX_ESP_FORM_H_INCLUDED_ */
