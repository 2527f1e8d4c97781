#include "httpd/counter_stores.h"

#include <apr_hash.h>
#include <apr_strings.h>

#include "httpd/config.h"
#include "mod_openai_proxy.h"

static const oaip_store_spec *store_of(server_rec *s)
{
    static const oaip_store_spec shm_spec = {.kind = OAIP_STORE_SHM, .name = "shm"};
    const oaip_server_conf *conf =
        ap_get_module_config(s->module_config, &openai_proxy_module);

    return conf->store ? conf->store : &shm_spec;
}

/* The store of `s` with what other directives add to it (the CA file of
 * rediss://). */
static const oaip_store_spec *full_store_of(apr_pool_t *p, server_rec *s)
{
    const oaip_server_conf *conf =
        ap_get_module_config(s->module_config, &openai_proxy_module);
    const oaip_store_spec *spec = store_of(s);
    oaip_store_spec *full;

    if (spec->kind != OAIP_STORE_REDIS || !spec->tls || conf->store_ca_file == NULL) {
        return spec;
    }
    full = apr_pmemdup(p, spec, sizeof(*spec));
    full->ca_file = conf->store_ca_file;
    return full;
}

apr_status_t oaip_counter_stores_post_config(apr_pool_t *pconf, server_rec *s)
{
    server_rec *vs;

    oaip_counters_shm_forget();
    for (vs = s; oaip_counters_used() && vs != NULL; vs = vs->next) {
        if (store_of(vs)->kind == OAIP_STORE_SHM) {
            return oaip_counters_shm_create(pconf, s);
        }
    }
    return APR_SUCCESS;
}

void oaip_counter_stores_child_init(apr_pool_t *pchild, server_rec *s)
{
    apr_hash_t *clients = apr_hash_make(pchild);
    server_rec *vs;

    oaip_counters_shm_child_init(pchild, s);
    for (vs = s; vs != NULL; vs = vs->next) {
        oaip_server_conf *conf =
            ap_get_module_config(vs->module_config, &openai_proxy_module);
        const oaip_store_spec *spec = full_store_of(pchild, vs);
        /* the name holds all of the spec but the password and the CA */
        const char *id =
            apr_pstrcat(pchild, spec->name, "\n", spec->password ? spec->password : "",
                        "\n", spec->ca_file ? spec->ca_file : "", NULL);
        oaip_counter_client *client = apr_hash_get(clients, id, APR_HASH_KEY_STRING);

        if (client == NULL) {
            client = oaip_counters_client_make(pchild, vs, spec);
            apr_hash_set(clients, id, APR_HASH_KEY_STRING, client);
        }
        conf->counter_client = client;
    }
}

oaip_counter_client *oaip_counter_store_for(server_rec *s)
{
    const oaip_server_conf *conf =
        ap_get_module_config(s->module_config, &openai_proxy_module);

    return conf->counter_client;
}
