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

/* Takes back the done steps of steps[0..n). */
static void undo(oaip_counter_client *c, oaip_counter_step *steps, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        apr_uint64_t ignored;

        if (steps[i].done &&
            (steps[i].delta == 0 || c->add(c, steps[i].key, -steps[i].delta, steps[i].ttl,
                                           &ignored) == APR_SUCCESS)) {
            steps[i].done = 0;
        }
    }
}

apr_status_t oaip_counters_add_all(oaip_counter_client *c, oaip_counter_step *steps,
                                   int n, int flags, int *refused)
{
    int i;

    *refused = -1;
    for (i = 0; i < n; i++) {
        steps[i].done = 0;
        steps[i].total = 0;
    }
    if (c->add_all != NULL) {
        return c->add_all(c, steps, n, flags, refused);
    }
    for (i = 0; i < n; i++) {
        apr_status_t rv =
            c->add(c, steps[i].key, steps[i].delta, steps[i].ttl, &steps[i].total);

        if (rv != APR_SUCCESS) {
            return rv;
        }
        steps[i].done = 1;
        if (steps[i].ceiling < 0 || steps[i].total > (apr_uint64_t)steps[i].ceiling) {
            *refused = i;
            if (flags & OAIP_COUNTERS_UNDO_REFUSED) {
                undo(c, steps, i + 1);
            }
            return APR_SUCCESS;
        }
    }
    return APR_SUCCESS;
}
