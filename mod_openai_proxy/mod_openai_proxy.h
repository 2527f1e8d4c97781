/* Shared by the httpd glue files: the module record and its log index. */
#ifndef MOD_OPENAI_PROXY_H
#define MOD_OPENAI_PROXY_H

#include <httpd.h>
#include <http_config.h>
#include <http_log.h>

extern module AP_MODULE_DECLARE_DATA openai_proxy_module;

/* AP_DECLARE_MODULE declares the log index in mod_openai_proxy.c */
#ifndef OAIP_MODULE_RECORD_FILE
APLOG_USE_MODULE(openai_proxy);
#endif

#define OAIP_HANDLER_NAME "openai-proxy"

/* What the module keeps about one request it handles (r->request_config),
 * for the accounting done after the answer. */
typedef struct {
    apr_array_header_t *budget_charges; /* limits.c: budgets to charge */
    struct oaip_counter_client *store;  /* where those budgets are counted */
} oaip_request_state;

static APR_INLINE oaip_request_state *oaip_request_state_get(request_rec *r, int create)
{
    oaip_request_state *state =
        ap_get_module_config(r->request_config, &openai_proxy_module);

    if (state == NULL && create) {
        state = apr_pcalloc(r->pool, sizeof(*state));
        ap_set_module_config(r->request_config, &openai_proxy_module, state);
    }
    return state;
}
#define OAIP_VERSION "0.1.0"

#endif
