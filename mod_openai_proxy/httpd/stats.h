/* Counters for the status page, for the whole server: one block of shared
 * memory that every process and thread updates atomically. They start at
 * zero when httpd (re)starts. */
#ifndef OAIP_STATS_H
#define OAIP_STATS_H

#include <httpd.h>

#include "core/outcome.h"
#include "httpd/request_record.h"

#define OAIP_STATS_OUTCOMES OAIP_OUTCOME__COUNT
#define OAIP_STATS_MODELS 64
#define OAIP_STATS_MODEL_NAME 64
#define OAIP_STATS_BUCKETS 12 /* latency buckets, +Inf not counted */
#define OAIP_STATS_STATUSES 600

typedef struct {
    apr_uint64_t count;
    apr_uint64_t sum_usec;
    apr_uint64_t buckets[OAIP_STATS_BUCKETS + 1]; /* per bucket, not cumulative */
} oaip_histogram;

typedef struct {
    apr_uint32_t state; /* 0 free, 1 being named, 2 in use */
    char name[OAIP_STATS_MODEL_NAME];
    apr_uint64_t requests;
    apr_uint64_t prompt_tokens;
    apr_uint64_t completion_tokens;
} oaip_model_stats;

typedef struct {
    apr_time_t started;
    apr_uint64_t requests;
    apr_uint64_t by_outcome[OAIP_STATS_OUTCOMES];
    apr_uint64_t by_status[OAIP_STATS_STATUSES];
    apr_uint32_t active_requests;
    apr_uint32_t active_streams;
    apr_uint64_t rate_limited;
    apr_uint64_t budget_exhausted;
    apr_uint64_t store_errors;
    apr_uint64_t second_attempts; /* upstream attempts after a request's first */
    oaip_histogram duration;      /* whole request, as the client sees it */
    oaip_histogram first_byte;    /* until the upstream's first byte */
    oaip_model_stats models[OAIP_STATS_MODELS];
} oaip_stats;

/* Upper bounds of the latency buckets, in seconds. */
extern const double oaip_stats_bucket_bounds[OAIP_STATS_BUCKETS];

/* post_config: the shared block. */
apr_status_t oaip_stats_post_config(apr_pool_t *pconf, server_rec *s);

/* The block; NULL when it could not be made. */
oaip_stats *oaip_stats_get(void);

/* A request reached the proxy handler / opened a stream: counted as active
 * until its pool is gone. */
void oaip_stats_request_begin(request_rec *r);
void oaip_stats_stream_begin(request_rec *r);

/* From log_transaction: outcome, status, latency and tokens of a finished
 * request (`r` the one the handler ran for, with its `record`; `last` the
 * final one). */
void oaip_stats_request_end(request_rec *r, const oaip_request_record *record,
                            request_rec *last);

#define OAIP_STATS_ADD(field, n)                                                         \
    do {                                                                                 \
        oaip_stats *stats_ = oaip_stats_get();                                           \
        if (stats_ != NULL) {                                                            \
            apr_atomic_add64(&stats_->field, (n));                                       \
        }                                                                                \
    } while (0)

#endif
