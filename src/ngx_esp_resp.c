
/*
 * Copyright (C) ngx_exchange_esp authors
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_esp_resp.h"


static void *ngx_esp_resp_array(const redisReadTask *task, int elements);


/* hiredis's own functions, the array's wrapped; set by the first reader */
static redisReplyObjectFunctions   ngx_esp_resp_fn;
static redisReplyObjectFunctions  *ngx_esp_resp_default;


redisReader *
ngx_esp_resp_reader(void)
{
    redisReader  *r;

    r = redisReaderCreate();
    if (r == NULL) {
        return NULL;
    }

    if (ngx_esp_resp_default == NULL) {
        ngx_esp_resp_default = r->fn;
        ngx_esp_resp_fn = *r->fn;
        ngx_esp_resp_fn.createArray = ngx_esp_resp_array;
    }

    r->fn = &ngx_esp_resp_fn;

    return r;
}


static void *
ngx_esp_resp_array(const redisReadTask *task, int elements)
{
    if (elements < 0 || elements > NGX_ESP_RESP_MAX_ELEMENTS) {
        /* the reader reports it as "Out of memory" */
        return NULL;
    }

    return ngx_esp_resp_default->createArray(task, elements);
}
