/* Counters in a memcached server through apr_memcache: incr is atomic on
 * the server; a counter that does not exist yet is created with add (which
 * only one process can win) and its expiry, then incremented. A negative
 * step (a budget's settlement) is a decr, which memcached stops at 0. */
#include <ap_mpm.h>
#include <apr_memcache.h>
#include <apr_strings.h>

#include "mod_openai_proxy.h"
#include "stores/counters.h"

#define CONN_TTL apr_time_from_sec(60)

static apr_status_t memcache_subtract(apr_memcache_t *mc, const char *key,
                                      apr_int64_t delta, apr_uint64_t *total)
{
    apr_uint32_t value = 0;
    apr_status_t rv = apr_memcache_decr(mc, (char *)key, (apr_int32_t)-delta, &value);

    if (rv == APR_NOTFOUND) {
        /* the window's counter expired: there is nothing left to give back */
        *total = 0;
        return APR_SUCCESS;
    }
    if (rv == APR_SUCCESS) {
        *total = value;
    }
    return rv;
}

static apr_status_t memcache_add(oaip_counter_client *c, const char *key,
                                 apr_int64_t delta, apr_uint32_t ttl, apr_uint64_t *total)
{
    apr_memcache_t *mc = c->backend;
    apr_uint32_t value = 0;
    char initial[16];
    apr_status_t rv;
    int attempt;

    if (delta < 0) {
        return memcache_subtract(mc, key, delta, total);
    }
    for (attempt = 0; attempt < 2; attempt++) {
        rv = apr_memcache_incr(mc, (char *)key, (apr_int32_t)delta, &value);
        if (rv != APR_NOTFOUND) {
            break;
        }
        /* missing (or no server answering: then add fails too) */
        apr_snprintf(initial, sizeof(initial), "%" APR_INT64_T_FMT, delta);
        rv = apr_memcache_add(mc, key, initial, strlen(initial), ttl, 0);
        if (rv == APR_SUCCESS) {
            value = (apr_uint32_t)delta;
            break;
        }
        if (rv != APR_EEXIST) {
            return rv == APR_NOTFOUND ? APR_ECONNREFUSED : rv;
        }
        /* another process created it in between: increment that one */
    }
    if (rv != APR_SUCCESS) {
        return rv;
    }
    *total = value;
    return APR_SUCCESS;
}

oaip_counter_client *oaip_counters_memcache_client(apr_pool_t *pchild, server_rec *s,
                                                   const oaip_store_spec *spec)
{
    oaip_counter_client *client = apr_pcalloc(pchild, sizeof(*client));
    apr_memcache_server_t *server;
    apr_memcache_t *mc;
    int threads = 1;
    apr_status_t rv;

    ap_mpm_query(AP_MPMQ_MAX_THREADS, &threads);
    threads = threads > 0 ? threads : 1;
    rv = apr_memcache_create(pchild, 1, 0, &mc);
    if (rv == APR_SUCCESS) {
        rv = apr_memcache_server_create(pchild, spec->host, spec->port, 0, threads,
                                        threads, CONN_TTL, &server);
    }
    if (rv == APR_SUCCESS) {
        rv = apr_memcache_add_server(mc, server);
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s, "cannot set up counter store %s",
                     spec->name);
        return NULL;
    }
    client->name = spec->name;
    client->add = memcache_add;
    client->backend = mc;
    return client;
}
