/* The shared counters behind rate limits and token budgets: one table in
 * shared memory for this machine, or a redis / memcache server that every
 * httpd of a cluster shares (OpenAIProxyCounterStore). */
#ifndef OAIP_COUNTERS_H
#define OAIP_COUNTERS_H

#include <httpd.h>

#include "core/limit_spec.h"

/* One store as a child process uses it. */
typedef struct oaip_counter_client oaip_counter_client;

struct oaip_counter_client {
    const char *name; /* for log lines; never holds a password */
    /* Adds `delta` (0 reads; negative subtracts, as a token budget's
     * settlement does, never below 0) to the counter `key`, which starts at 0
     * and is forgotten `ttl` seconds after its creation; `*total` is its new
     * value. |delta| is at most OAIP_COUNTER_MAX_DELTA. */
    apr_status_t (*add)(oaip_counter_client *c, const char *key, apr_int64_t delta,
                        apr_uint32_t ttl, apr_uint64_t *total);
    void *backend;
};

/* memcached's incr/decr (apr_memcache) take a 32-bit signed step. */
#define OAIP_COUNTER_MAX_DELTA ((apr_int64_t)0x7fffffff)

/* The shm table's mutex, for httpd's Mutex directive. */
#define OAIP_COUNTERS_MUTEX "openai-proxy-counters"

/* pre_config: registers that mutex. */
void oaip_counters_pre_config(apr_pool_t *pconf);

/* A limit directive was read: the shm table is needed. */
void oaip_counters_mark_used(void);

/* Whether some limit directive was read since pre_config. */
int oaip_counters_used(void);

/* A process's client of the store `spec` (the table of backends below);
 * NULL when it could not be made. */
oaip_counter_client *oaip_counters_client_make(apr_pool_t *pchild, server_rec *s,
                                               const oaip_store_spec *spec);

/* The backends. */
void oaip_counters_shm_forget(void);
apr_status_t oaip_counters_shm_create(apr_pool_t *pconf, server_rec *s);
apr_status_t oaip_counters_shm_child_init(apr_pool_t *pchild, server_rec *s);
oaip_counter_client *oaip_counters_shm_client(void);
oaip_counter_client *oaip_counters_redis_client(apr_pool_t *pchild, server_rec *s,
                                                const oaip_store_spec *spec);
oaip_counter_client *oaip_counters_memcache_client(apr_pool_t *pchild, server_rec *s,
                                                   const oaip_store_spec *spec);

#endif
