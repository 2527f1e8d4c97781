#include "stores/counters.h"

#include <apr_strings.h>
#include <util_mutex.h>

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

int oaip_counters_used(void)
{
    return limits_configured;
}

oaip_counter_client *oaip_counters_client_make(apr_pool_t *pchild, server_rec *s,
                                               const oaip_store_spec *spec)
{
    switch (spec->kind) {
    case OAIP_STORE_SHM:
        return oaip_counters_shm_client();
    case OAIP_STORE_REDIS:
        return oaip_counters_redis_client(pchild, s, spec);
    case OAIP_STORE_MEMCACHE:
        return oaip_counters_memcache_client(pchild, s, spec);
    }
    return NULL;
}
