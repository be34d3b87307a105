
/*
 * Copyright (C) ngx_exchange_esp authors
 */


/*
 * "esp_mfa radius": the second factor asked of a RADIUS server
 * (src/ngx_esp_radius.c), through the framework of src/ngx_esp_mfa.h.
 *
 * radius_password code (the default): after the password the code page
 * asks for a code, which goes into User-Password.  radius_password
 * directory: for servers that check the AD password and the second
 * factor themselves (Duo's Authentication Proxy in auto/push mode, the
 * NPS extension for Microsoft Entra MFA), the Access-Request with the
 * directory password is sent as soon as the password has passed, and the
 * login request is held on the event loop (no worker waits) until the
 * server answers after the user approved on the phone, or until the
 * server's timeout= ends.
 *
 * Access-Challenge (both modes) shows its Reply-Message on the code page
 * and the next code goes back with its State, carried as the method's
 * state in the sealed pending state.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_esp_mfa.h"
#include "ngx_esp_radius.h"


static ngx_int_t ngx_esp_mfa_radius_init(ngx_conf_t *cf, ngx_esp_domain_t *d,
    ngx_esp_loc_conf_t *elcf);
static ngx_esp_mfa_result_e ngx_esp_mfa_radius_start(ngx_esp_mfa_req_t *mr);
static ngx_esp_mfa_result_e ngx_esp_mfa_radius_verify(ngx_esp_mfa_req_t *mr);
static void ngx_esp_mfa_radius_abort(ngx_esp_mfa_req_t *mr);
static ngx_esp_mfa_result_e ngx_esp_mfa_radius_ask(ngx_esp_mfa_req_t *mr,
    ngx_str_t *password);
static void ngx_esp_mfa_radius_done(ngx_esp_radius_query_t *q);


ngx_esp_mfa_method_t  ngx_esp_radius_method = {
    "radius",
    ngx_esp_mfa_radius_init,
    ngx_esp_mfa_radius_start,
    ngx_esp_mfa_radius_verify,
    ngx_esp_mfa_radius_abort,
    NULL                                /* attrs: reads none */
};


static ngx_int_t
ngx_esp_mfa_radius_init(ngx_conf_t *cf, ngx_esp_domain_t *d,
    ngx_esp_loc_conf_t *elcf)
{
    if (d->radius == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"esp_mfa radius\" needs \"radius_server\" in "
                           "esp_sso_domain \"%V\"", &d->name);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_esp_mfa_result_e
ngx_esp_mfa_radius_start(ngx_esp_mfa_req_t *mr)
{
    ngx_esp_radius_conf_t  *rc;

    rc = mr->domain->radius;

    if (rc->password == NGX_ESP_RADIUS_PASSWORD_DIRECTORY) {
        ngx_str_null(&mr->state);
        return ngx_esp_mfa_radius_ask(mr, &mr->password);
    }

    /* the code page: the code goes to the server in verify */

    ngx_str_null(&mr->state);
    ngx_str_null(&mr->message);
    mr->text = NGX_ESP_MFA_T_RADIUS_CODE;
    mr->result = NGX_ESP_MFA_CHALLENGE;

    return mr->result;
}


static ngx_esp_mfa_result_e
ngx_esp_mfa_radius_verify(ngx_esp_mfa_req_t *mr)
{
    return ngx_esp_mfa_radius_ask(mr, &mr->code);
}


static ngx_esp_mfa_result_e
ngx_esp_mfa_radius_ask(ngx_esp_mfa_req_t *mr, ngx_str_t *password)
{
    ngx_esp_radius_query_t  *q;

    q = ngx_esp_radius_create(mr->pool, mr->log);
    if (q == NULL) {
        mr->result = NGX_ESP_MFA_ERROR;
        return mr->result;
    }

    q->conf = mr->domain->radius;
    q->user = mr->user;
    q->password = *password;
    q->state = mr->state;
    q->handler = ngx_esp_mfa_radius_done;
    q->data = mr;

    mr->data = q;

    if (ngx_esp_radius_start(q) != NGX_OK) {
        mr->result = NGX_ESP_MFA_ERROR;
        return mr->result;
    }

    mr->result = NGX_ESP_MFA_WAIT;

    return mr->result;
}


static void
ngx_esp_mfa_radius_done(ngx_esp_radius_query_t *q)
{
    ngx_esp_mfa_req_t  *mr = q->data;

    /* the server's Reply-Message is shown instead of the text, if any */

    ngx_str_null(&mr->state);
    mr->message = q->reply_message;

    switch (q->result) {

    case NGX_ESP_RADIUS_OK:
        mr->text = NGX_ESP_MFA_T_NONE;
        mr->result = NGX_ESP_MFA_ACCEPT;
        break;

    case NGX_ESP_RADIUS_CHALLENGED:
        mr->state = q->reply_state;
        mr->text = NGX_ESP_MFA_T_RADIUS_CODE;
        mr->result = NGX_ESP_MFA_CHALLENGE;
        break;

    case NGX_ESP_RADIUS_REJECTED:
    case NGX_ESP_RADIUS_INVALID:

        /* a refused push ends the login; a wrong code asks again */
        mr->text = mr->code.len ? NGX_ESP_MFA_T_RADIUS_WRONG
                                : NGX_ESP_MFA_T_RADIUS_DENIED;
        mr->result = NGX_ESP_MFA_REJECT;
        break;

    default: /* unavailable, failed: nothing is counted */
        ngx_str_null(&mr->message);
        mr->text = NGX_ESP_MFA_T_NONE;
        mr->result = NGX_ESP_MFA_ERROR;
        break;
    }

    mr->done(mr);
}


static void
ngx_esp_mfa_radius_abort(ngx_esp_mfa_req_t *mr)
{
    if (mr->data) {
        ngx_esp_radius_cancel(mr->data);
    }
}
