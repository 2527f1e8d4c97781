#include "httpd/stats.h"

#include <apr_atomic.h>
#include <apr_shm.h>
#include <apr_strings.h>

#include "mod_openai_proxy.h"

const double oaip_stats_bucket_bounds[OAIP_STATS_BUCKETS] = {
    0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};

static oaip_stats *stats;

/* The block lives in the parent's process pool, made once: a graceful
 * restart (or a restart) keeps the counters and the start time, and the
 * old generation's children, which keep their mapping of the same block,
 * count their last requests where the new generation's status page sees
 * them (README, "Graceful restarts and key rotation"). */
#define STATS_KEY "openai_proxy:stats"

apr_status_t oaip_stats_post_config(apr_pool_t *pconf, server_rec *s)
{
    apr_pool_t *kept_in = s->process->pool;
    void *kept = NULL;
    apr_shm_t *shm;
    apr_status_t rv;

    (void)pconf;
    apr_pool_userdata_get(&kept, STATS_KEY, kept_in);
    if (kept != NULL) {
        stats = kept;
        return APR_SUCCESS;
    }
    rv = apr_shm_create(&shm, sizeof(oaip_stats), NULL, kept_in);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     "cannot create shared memory for the proxy's statistics");
        stats = NULL;
        return rv;
    }
    stats = apr_shm_baseaddr_get(shm);
    memset(stats, 0, sizeof(*stats));
    stats->started = apr_time_now();
    apr_pool_userdata_set(stats, STATS_KEY, apr_pool_cleanup_null, kept_in);
    return APR_SUCCESS;
}

oaip_stats *oaip_stats_get(void)
{
    return stats;
}

static apr_status_t leave(void *gauge)
{
    apr_atomic_dec32(gauge);
    return APR_SUCCESS;
}

static void enter(request_rec *r, apr_uint32_t *gauge)
{
    apr_atomic_inc32(gauge);
    apr_pool_cleanup_register(r->pool, gauge, leave, apr_pool_cleanup_null);
}

void oaip_stats_request_begin(request_rec *r)
{
    if (stats != NULL) {
        enter(r, &stats->active_requests);
    }
}

void oaip_stats_stream_begin(request_rec *r)
{
    if (stats != NULL) {
        enter(r, &stats->active_streams);
    }
}

static void observe(oaip_histogram *h, apr_interval_time_t usec)
{
    double seconds = (double)usec / APR_USEC_PER_SEC;
    int i = 0;

    while (i < OAIP_STATS_BUCKETS && seconds > oaip_stats_bucket_bounds[i]) {
        i++;
    }
    apr_atomic_inc64(&h->buckets[i]);
    apr_atomic_add64(&h->sum_usec, usec > 0 ? (apr_uint64_t)usec : 0);
    apr_atomic_inc64(&h->count);
}

/* A model name cut to the row's size at a character boundary: JSON and the
 * Prometheus text both need valid UTF-8 (the client's JSON was). */
static void copy_name(char *to, const char *model)
{
    apr_size_t n = strlen(model);

    if (n >= OAIP_STATS_MODEL_NAME) {
        n = OAIP_STATS_MODEL_NAME - 1;
        while (n > 0 && ((unsigned char)model[n] & 0xC0) == 0x80) {
            n--; /* model[n] continues a character: cut before its start */
        }
    }
    memcpy(to, model, n);
    to[n] = '\0';
}

/* The row of `model`, claimed when new; NULL when every row is taken. Two
 * processes naming the same new model at once may take two rows: the status
 * page adds rows of one name together. */
static oaip_model_stats *model_row(const char *model)
{
    char name[OAIP_STATS_MODEL_NAME];
    int i;

    copy_name(name, model);
    for (i = 0; i < OAIP_STATS_MODELS; i++) {
        oaip_model_stats *m = &stats->models[i];
        apr_uint32_t state = apr_atomic_read32(&m->state);
        if (state == 2 && strcmp(m->name, name) == 0) {
            return m;
        }
        if (state == 0 && apr_atomic_cas32(&m->state, 1, 0) == 0) {
            memcpy(m->name, name, sizeof(name));
            apr_atomic_set32(&m->state, 2);
            return m;
        }
    }
    return NULL;
}

static void count_tokens(const oaip_request_record *record)
{
    long prompt = record->usage.prompt_tokens;
    long completion = record->usage.completion_tokens;
    oaip_model_stats *m;

    /* only models the upstream answered for get a row: a client cannot
     * fill the table with made-up names */
    if (record->model == NULL || (prompt < 0 && completion < 0) ||
        (m = model_row(record->model)) == NULL) {
        return;
    }
    apr_atomic_inc64(&m->requests);
    apr_atomic_add64(&m->prompt_tokens, prompt > 0 ? (apr_uint64_t)prompt : 0);
    apr_atomic_add64(&m->completion_tokens,
                     completion > 0 ? (apr_uint64_t)completion : 0);
}

void oaip_stats_request_end(request_rec *r, const oaip_request_record *record,
                            request_rec *last)
{
    oaip_outcome outcome = record->outcome;

    if (stats == NULL) {
        return;
    }
    apr_atomic_inc64(&stats->requests);
    if (outcome < 0 || outcome >= OAIP_OUTCOME__COUNT) {
        outcome = OAIP_OUTCOME_OTHER;
    }
    apr_atomic_inc64(&stats->by_outcome[outcome]);
    if (last->status > 0 && last->status < OAIP_STATS_STATUSES) {
        apr_atomic_inc64(&stats->by_status[last->status]);
    }
    observe(&stats->duration, apr_time_now() - r->request_time);
    if (record->first_byte_ms >= 0) {
        observe(&stats->first_byte, (apr_interval_time_t)record->first_byte_ms * 1000);
    }
    count_tokens(record);
}
