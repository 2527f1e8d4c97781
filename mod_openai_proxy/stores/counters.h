/* The shared counters behind rate limits and token budgets: one table in
 * shared memory for this machine, or a redis / memcache server that every
 * httpd of a cluster shares (OpenAIProxyCounterStore). */
#ifndef OAIP_COUNTERS_H
#define OAIP_COUNTERS_H

#include <httpd.h>

#include "core/limit_spec.h"

/* One store as a child process uses it. */
typedef struct oaip_counter_client oaip_counter_client;

/* One counter of a batch (oaip_counters_add_all). */
typedef struct {
    const char *key;
    apr_int64_t delta; /* as for add: 0 reads */
    apr_uint32_t ttl;
    apr_int64_t ceiling; /* refused when the new value is above it */
    apr_uint64_t total;  /* out: the new value */
    int done;            /* out: delta was added and stays added */
} oaip_counter_step;

#define OAIP_COUNTER_NO_CEILING APR_INT64_MAX

/* A refusal takes back every step of the batch up to the refused one. */
#define OAIP_COUNTERS_UNDO_REFUSED 1
/* The caller reads no total and no refusal (a settlement): a remote store
 * may send the batch without waiting for its answer. */
#define OAIP_COUNTERS_NO_REPLY 2

struct oaip_counter_client {
    const char *name; /* for log lines; never holds a password */
    /* Adds `delta` (0 reads; negative subtracts, as a token budget's
     * settlement does, never below 0) to the counter `key`, which starts at 0
     * and is forgotten `ttl` seconds after its creation; `*total` is its new
     * value. |delta| is at most OAIP_COUNTER_MAX_DELTA. */
    apr_status_t (*add)(oaip_counter_client *c, const char *key, apr_int64_t delta,
                        apr_uint32_t ttl, apr_uint64_t *total);
    /* oaip_counters_add_all in one exchange with the store; NULL: the steps
     * are added one by one. */
    apr_status_t (*add_all)(oaip_counter_client *c, oaip_counter_step *steps, int n,
                            int flags, int *refused);
    void *backend;
};

/* memcached's incr/decr (apr_memcache) take a 32-bit signed step. */
#define OAIP_COUNTER_MAX_DELTA ((apr_int64_t)0x7fffffff)

/* Adds the steps in order and stops after the first whose new value is
 * above its ceiling: *refused is its index, else -1. Without
 * OAIP_COUNTERS_UNDO_REFUSED the steps up to the refused one stay added (a
 * rate limit counts the refused request too). On a failure the steps marked
 * done stay added, the others were not (a remote store's batch is atomic:
 * none is done). */
apr_status_t oaip_counters_add_all(oaip_counter_client *c, oaip_counter_step *steps,
                                   int n, int flags, int *refused);

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
