#include "counters.h"

#include <apr_hash.h>
#include <apr_strings.h>
#include <util_mutex.h>

#include "config.h"
#include "mod_openai_proxy.h"

/* Set while the configuration is read when some limit is configured; the
 * shared table is made only then. */
static int limits_configured;

void oaip_counters_pre_config(apr_pool_t *pconf)
{
    limits_configured = 0;
    ap_mutex_register(pconf, OAIP_COUNTERS_MUTEX, NULL, APR_LOCK_DEFAULT, 0);
}

void oaip_counters_mark_used(void)
{
    limits_configured = 1;
}

static const oaip_store_spec *store_of(server_rec *s)
{
    static const oaip_store_spec shm_spec = {OAIP_STORE_SHM, NULL, 0, NULL, "shm"};
    const oaip_server_conf *conf =
        ap_get_module_config(s->module_config, &openai_proxy_module);

    return conf->store ? conf->store : &shm_spec;
}

apr_status_t oaip_counters_post_config(apr_pool_t *pconf, server_rec *s)
{
    server_rec *vs;
    apr_status_t rv = APR_SUCCESS;

    oaip_counters_shm_forget();
    for (vs = s; limits_configured && vs != NULL; vs = vs->next) {
        if (store_of(vs)->kind == OAIP_STORE_SHM) {
            rv = oaip_counters_shm_create(pconf, s);
            break;
        }
    }
    return rv;
}

void oaip_counters_child_init(apr_pool_t *pchild, server_rec *s)
{
    /* virtual hosts naming the same store share one client (one pool of
     * connections) per process */
    apr_hash_t *clients = apr_hash_make(pchild);
    server_rec *vs;

    oaip_counters_shm_child_init(pchild, s);
    for (vs = s; vs != NULL; vs = vs->next) {
        oaip_server_conf *conf =
            ap_get_module_config(vs->module_config, &openai_proxy_module);
        const oaip_store_spec *spec = store_of(vs);
        const char *id = apr_pstrcat(pchild, spec->name, "\n", spec->password, NULL);
        oaip_counter_client *client = apr_hash_get(clients, id, APR_HASH_KEY_STRING);

        if (client == NULL) {
            switch (spec->kind) {
            case OAIP_STORE_SHM:
                client = oaip_counters_shm_client();
                break;
            case OAIP_STORE_REDIS:
                client = oaip_counters_redis_client(pchild, vs, spec);
                break;
            case OAIP_STORE_MEMCACHE:
                client = oaip_counters_memcache_client(pchild, vs, spec);
                break;
            }
            apr_hash_set(clients, id, APR_HASH_KEY_STRING, client);
        }
        conf->counter_client = client;
    }
}

oaip_counter_client *oaip_counters_for(server_rec *s)
{
    const oaip_server_conf *conf =
        ap_get_module_config(s->module_config, &openai_proxy_module);

    return conf->counter_client;
}
