/* The one SSE framer of a relayed stream: bytes go in as they arrive, split
 * anywhere; each whole event comes out as the bytes it came as (comments,
 * event:, id: and retry: lines included, its blank line too) with what it
 * says, read with one parse of its data (core: APR + jansson). */
#ifndef OAIP_SSE_FRAMER_H
#define OAIP_SSE_FRAMER_H

#include <apr_pools.h>

#include "core/sse.h"
#include "core/token_estimate.h"

typedef struct {
    int has_data;      /* a data line: an event a client dispatches */
    int reports_usage; /* `usage` holds the counts it reports */
    oaip_usage usage;
    /* the usage chunk alone (an object whose choices are empty and whose
     * usage is an object, nothing after it), which the relay may hide */
    int usage_chunk;
    /* generated content in it (added to nothing: the caller's count) */
    oaip_content_count content;
    apr_int64_t sequence; /* its sequence_number (Responses API), -1: none */
    int done_marker;      /* its data is "[DONE]": a chat stream's last event */
} oaip_sse_event_facts;

/* `facts` is NULL for bytes that are no event the framer could read: one
 * longer than OAIP_SSE_FRAMER_MAX_EVENT without an end, passed on as it
 * is. `raw` is valid during the call only. */
typedef void oaip_sse_framed_fn(void *ctx, const char *raw, apr_size_t raw_len,
                                const oaip_sse_event_facts *facts);

#ifndef OAIP_SSE_FRAMER_MAX_EVENT /* tests/fuzz lowers it to reach the limit */
#define OAIP_SSE_FRAMER_MAX_EVENT ((apr_size_t)1024 * 1024)
#endif

typedef struct oaip_sse_framer oaip_sse_framer;

oaip_sse_framer *oaip_sse_framer_make(apr_pool_t *p, oaip_sse_framed_fn *fn, void *ctx);
void oaip_sse_framer_feed(oaip_sse_framer *f, const char *bytes, apr_size_t len);

/* The stream ended: an event without its blank line comes out as it is
 * (its usage counts; a browser would drop it). */
void oaip_sse_framer_finish(oaip_sse_framer *f);

/* What one event (as the framer hands it out) says. */
void oaip_sse_event_inspect(const char *raw, apr_size_t len, oaip_sse_event_facts *facts);

#endif
