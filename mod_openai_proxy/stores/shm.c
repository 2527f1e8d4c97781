/* The counter store of one machine: a fixed hash table in shared memory,
 * changed under a global mutex so that every process and thread sees each
 * increment exactly once. */
#include <apr_sha1.h>
#include <apr_shm.h>
#include <util_mutex.h>

#include "mod_openai_proxy.h"
#include "stores/counters.h"

#define SLOTS 65536 /* 2.5 MiB: callers with a live window, over all limits */
#define PROBES 64   /* slots looked at per key before the table counts as full */

typedef struct {
    unsigned char digest[APR_SHA1_DIGESTSIZE]; /* of the key */
    apr_uint32_t unused;
    apr_int64_t expires; /* seconds since the epoch; a slot past it is free */
    apr_uint64_t value;
} slot;

static slot *table;
static apr_global_mutex_t *mutex;

/* The table and its mutex live in the parent's process pool, made once: a
 * graceful restart keeps the counts (a reload must not hand every caller a
 * fresh budget), and the old generation's children, which keep their
 * mapping, count and settle in the same table under the same mutex as the
 * new one's. */
#define TABLE_KEY "openai_proxy:counters_table"
#define MUTEX_KEY "openai_proxy:counters_mutex"

void oaip_counters_shm_forget(void)
{
    /* a generation without shm counters maps none in its children */
    table = NULL;
    mutex = NULL;
}

apr_status_t oaip_counters_shm_create(apr_pool_t *pconf, server_rec *s)
{
    apr_pool_t *kept_in = s->process->pool;
    void *kept_table = NULL, *kept_mutex = NULL;
    apr_shm_t *shm;
    apr_status_t rv;

    (void)pconf;
    apr_pool_userdata_get(&kept_table, TABLE_KEY, kept_in);
    apr_pool_userdata_get(&kept_mutex, MUTEX_KEY, kept_in);
    if (kept_table != NULL && kept_mutex != NULL) {
        table = kept_table;
        mutex = kept_mutex;
        return APR_SUCCESS;
    }
    rv = apr_shm_create(&shm, sizeof(slot) * SLOTS, NULL, kept_in);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     "cannot create shared memory for the rate limit counters");
        return rv;
    }
    table = apr_shm_baseaddr_get(shm);
    memset(table, 0, sizeof(slot) * SLOTS);
    rv = ap_global_mutex_create(&mutex, NULL, OAIP_COUNTERS_MUTEX, NULL, s, kept_in, 0);
    if (rv != APR_SUCCESS) {
        table = NULL;
        return rv;
    }
    apr_pool_userdata_set(table, TABLE_KEY, apr_pool_cleanup_null, kept_in);
    apr_pool_userdata_set(mutex, MUTEX_KEY, apr_pool_cleanup_null, kept_in);
    return APR_SUCCESS;
}

apr_status_t oaip_counters_shm_child_init(apr_pool_t *pchild, server_rec *s)
{
    apr_status_t rv;

    if (table == NULL) {
        return APR_SUCCESS;
    }
    rv = apr_global_mutex_child_init(&mutex, apr_global_mutex_lockfile(mutex), pchild);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     "cannot attach the rate limit counters' mutex");
        table = NULL;
    }
    return rv;
}

/* Under the mutex: the slot of `digest`, or a free one made its own. */
static slot *find_or_claim(const unsigned char *digest, apr_int64_t now, apr_uint32_t ttl)
{
    apr_uint32_t start = ((apr_uint32_t)digest[0] << 24 | (apr_uint32_t)digest[1] << 16 |
                          (apr_uint32_t)digest[2] << 8 | digest[3]) %
                         SLOTS;
    slot *free_slot = NULL;
    int i;

    for (i = 0; i < PROBES; i++) {
        slot *s = &table[(start + (apr_uint32_t)i) % SLOTS];
        if (s->expires <= now) {
            if (free_slot == NULL) {
                free_slot = s;
            }
        } else if (memcmp(s->digest, digest, APR_SHA1_DIGESTSIZE) == 0) {
            return s;
        }
    }
    if (free_slot != NULL) {
        memcpy(free_slot->digest, digest, APR_SHA1_DIGESTSIZE);
        free_slot->expires = now + ttl;
        free_slot->value = 0;
    }
    return free_slot;
}

static apr_status_t shm_add(oaip_counter_client *c, const char *key, apr_int64_t delta,
                            apr_uint32_t ttl, apr_uint64_t *total)
{
    unsigned char digest[APR_SHA1_DIGESTSIZE];
    apr_sha1_ctx_t sha;
    apr_status_t rv;
    slot *s;

    (void)c;
    if (table == NULL) {
        return APR_ENOSHMAVAIL;
    }
    apr_sha1_init(&sha);
    apr_sha1_update_binary(&sha, (const unsigned char *)key, strlen(key));
    apr_sha1_final(digest, &sha);
    rv = apr_global_mutex_lock(mutex);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    s = find_or_claim(digest, (apr_int64_t)apr_time_sec(apr_time_now()), ttl);
    if (s != NULL) {
        /* a settlement larger than the counter (it expired and was made
         * anew since the reservation) leaves 0, as memcached's decr does */
        if (delta >= 0) {
            s->value += (apr_uint64_t)delta;
        } else {
            s->value =
                s->value > (apr_uint64_t)-delta ? s->value - (apr_uint64_t)-delta : 0;
        }
        *total = s->value;
    }
    apr_global_mutex_unlock(mutex);
    return s != NULL ? APR_SUCCESS : APR_ENOSPC;
}

oaip_counter_client *oaip_counters_shm_client(void)
{
    static oaip_counter_client client = {.name = "shm", .add = shm_add};

    return &client;
}
