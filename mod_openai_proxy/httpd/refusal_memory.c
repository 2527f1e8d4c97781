#include "httpd/refusal_memory.h"

#include <apr_atomic.h>
#include <apr_shm.h>
#include <http_log.h>

#include "mod_openai_proxy.h"

/* One remembered refusal: the 64-bit hash of (upstream, model, field) and
 * the second it expires. Only hashes are kept, never a URL (which may
 * carry a key in its configured query) or a model name. */
typedef struct {
    apr_uint64_t key; /* 0: never used */
    apr_uint32_t until;
    apr_uint32_t unused;
} slot;

/* how many slots from the hash's own one an entry may take */
#define PROBES 16

static apr_shm_t *shm;
static slot *slots;

void oaip_refusal_memory_post_config(apr_pool_t *pconf, server_rec *s)
{
    apr_size_t size = sizeof(slot) * OAIP_REFUSAL_MEMORY_SLOTS;
    apr_status_t rv = apr_shm_create(&shm, size, NULL, pconf);

    slots = NULL;
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, rv, s,
                     "no shared memory for the refusal memory: requests whose upstream "
                     "refuses a field the proxy adds will each take a second attempt");
        return;
    }
    slots = apr_shm_baseaddr_get(shm);
    memset(slots, 0, size);
}

/* FNV-1a over the three strings, each with its terminating NUL, so that
 * ("ab", "c") and ("a", "bc") differ. */
static apr_uint64_t hash_of(const char *upstream, const char *model, const char *field)
{
    const char *parts[3] = {upstream, model ? model : "", field};
    apr_uint64_t h = APR_UINT64_C(14695981039346656037);
    int i;

    for (i = 0; i < 3; i++) {
        const unsigned char *c = (const unsigned char *)parts[i];
        do {
            h ^= *c;
            h *= APR_UINT64_C(1099511628211);
        } while (*c++ != '\0');
    }
    return h ? h : 1;
}

static apr_uint32_t now_seconds(void)
{
    return (apr_uint32_t)apr_time_sec(apr_time_now());
}

static slot *slot_at(apr_uint64_t key, int probe)
{
    return &slots[(key + (apr_uint64_t)probe) % OAIP_REFUSAL_MEMORY_SLOTS];
}

/* The key of (upstream, model, field); 0 when there is no table or
 * nothing to remember. */
static apr_uint64_t key_of(const char *upstream, const char *model, const char *field)
{
    return slots != NULL && upstream != NULL && field != NULL
               ? hash_of(upstream, model, field)
               : 0;
}

int oaip_refusal_memory_known(const char *upstream, const char *model, const char *field)
{
    apr_uint64_t key = key_of(upstream, model, field);
    apr_uint32_t now = now_seconds();
    int i;

    if (key == 0) {
        return 0;
    }
    for (i = 0; i < PROBES; i++) {
        slot *s = slot_at(key, i);
        apr_uint64_t k = apr_atomic_read64(&s->key);
        if (k == key) {
            return apr_atomic_read32(&s->until) > now;
        }
        if (k == 0) {
            return 0; /* entries never move: nothing is further on */
        }
    }
    return 0;
}

/* A slot is claimed by swapping its key: a free one (0) or an expired
 * one. A reader that sees the new key before its expiry is written sees
 * the old, past one: "not known" for an instant, never a wrong "known". */
int oaip_refusal_memory_remember(const char *upstream, const char *model,
                                 const char *field)
{
    apr_uint64_t key = key_of(upstream, model, field);
    apr_uint32_t now = now_seconds();
    int i;

    if (key == 0) {
        return 0;
    }
    for (i = 0; i < PROBES; i++) {
        slot *s = slot_at(key, i);
        apr_uint64_t k = apr_atomic_read64(&s->key);
        if (k != key && k != 0 && apr_atomic_read32(&s->until) > now) {
            continue; /* another upstream's live entry */
        }
        if (k == key || apr_atomic_cas64(&s->key, key, k) == k) {
            apr_atomic_set32(&s->until, now + OAIP_REFUSAL_MEMORY_SECONDS);
            return 1;
        }
    }
    return 0;
}
