/* mod_openai_proxy: an OpenAI API proxy for browser chat front-ends.
 * This file only registers the module's hooks; each concern has its own file. */
#define OAIP_MODULE_RECORD_FILE
#include "mod_openai_proxy.h"

#include <http_protocol.h>
#include <http_request.h>

#include "engine/upstream.h"
#include "httpd/backend_directives.h"
#include "httpd/backend_state.h"
#include "httpd/config.h"
#include "httpd/counter_stores.h"
#include "httpd/error_pages.h"
#include "httpd/handler.h"
#include "httpd/limits.h"
#include "httpd/preflight.h"
#include "httpd/refusal_memory.h"
#include "httpd/request_record.h"
#include "httpd/stats.h"
#include "httpd/status.h"
#include "httpd/streams.h"

static int oaip_pre_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp)
{
    (void)plog;
    (void)ptemp;
    oaip_counters_pre_config(pconf);
    return OK;
}

static int oaip_check_backends(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                               server_rec *s)
{
    (void)pconf;
    (void)plog;
    return oaip_backends_check_config(ptemp, s);
}

static int oaip_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                            server_rec *s)
{
    (void)plog;
    (void)ptemp;
    if (oaip_upstream_global_init(pconf, s) != APR_SUCCESS ||
        oaip_streams_post_config(pconf, s) != APR_SUCCESS ||
        oaip_stats_post_config(pconf, s) != APR_SUCCESS ||
        oaip_backend_state_post_config(pconf, s) != APR_SUCCESS ||
        oaip_counter_stores_post_config(pconf, s) != APR_SUCCESS) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    oaip_refusal_memory_post_config(pconf, s);
    return OK;
}

static void oaip_child_init(apr_pool_t *pchild, server_rec *s)
{
    oaip_upstream_child_init(pchild, s);
    oaip_streams_child_init(pchild, s);
    oaip_counter_stores_child_init(pchild, s);
}

/* The request of the chain `r` starts that the handler served: `r` or,
 * after an internal redirect, a later one. NULL: none. */
static request_rec *served_request(request_rec *r, oaip_request_record **record)
{
    for (; r != NULL; r = r->next) {
        *record = oaip_request_record_find(r);
        if (*record != NULL && (*record)->served) {
            return r;
        }
    }
    return NULL;
}

/* Before mod_log_config writes its line: the record of each request of the
 * chain as OPENAI_* notes for the access log. */
static int oaip_log_notes(request_rec *r)
{
    request_rec *one;

    for (one = r; one != NULL; one = one->next) {
        oaip_request_record *record = oaip_request_record_find(one);
        if (record != NULL) {
            oaip_request_record_notes(one, record);
        }
    }
    return DECLINED;
}

/* After the access log line: what the served request cost (token budgets)
 * and how it went (the status page), so that a client that sees it
 * counted there also finds its log line. */
static int oaip_log_accounting(request_rec *r)
{
    oaip_request_record *record = NULL;
    request_rec *served = served_request(r, &record), *last = r;

    while (last->next != NULL) {
        last = last->next;
    }
    if (served != NULL) {
        oaip_limits_charge(served, record);
        oaip_stats_request_end(served, record, last);
    }
    return DECLINED;
}

static void oaip_register_hooks(apr_pool_t *p)
{
    ap_hook_pre_config(oaip_pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_check_config(oaip_check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_check_config(oaip_check_backends, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(oaip_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(oaip_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_translate_name(oaip_translate_name, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_map_to_storage(oaip_map_to_storage, NULL, NULL, APR_HOOK_MIDDLE);
    /* before authentication (which comes after header_parser) */
    ap_hook_header_parser(oaip_preflight_header_parser, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(oaip_handler, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_insert_error_filter(oaip_error_pages_insert, NULL, NULL, APR_HOOK_MIDDLE);
    oaip_error_pages_register(p);
    ap_hook_handler(oaip_status_handler, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_log_transaction(oaip_log_notes, NULL, NULL, APR_HOOK_FIRST);
    ap_hook_log_transaction(oaip_log_accounting, NULL, NULL, APR_HOOK_LAST);
}

AP_DECLARE_MODULE(openai_proxy) = {
    STANDARD20_MODULE_STUFF, oaip_create_dir_conf,   oaip_merge_dir_conf,
    oaip_create_server_conf, oaip_merge_server_conf, oaip_directives,
    oaip_register_hooks,     AP_MODULE_FLAG_NONE,
};
