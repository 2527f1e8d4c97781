/* Fuzzes the relay's SSE framer (sse_framer.c) against the single-question
 * functions it stands in for.
 *
 * Input: byte 0 gives the number of split points (0-15), each taken from
 * the next two bytes; the rest is the stream, fed in one read, split at
 * those points, and one byte at a time, then finished.
 *
 * Invariants: the three feedings hand out the same raw events, and these
 * put together are the input: nothing lost, nothing added, nothing
 * reordered (the relay passes each on or hides it whole). Each event the
 * framer read says what the single-question functions say of it: the
 * usage chunk exactly when oaip_sse_usage_chunk says so, the usage
 * oaip_sse_event_usage reads from its data, the content
 * oaip_content_count_event counts, the sequence number
 * oaip_error_sse_sequence_of finds. Only bytes longer than the framer's
 * limit without an event end come out unread. */
#include "fuzz.h"

#include <apr_tables.h>

#include "core/errors.h"
#include "core/sse_framer.h"

typedef struct {
    apr_pool_t *pool;
    apr_array_header_t *events; /* const char *raw, apr_size_t len pairs */
    apr_size_t total;
} collector;

typedef struct {
    const char *raw;
    apr_size_t len;
    int unread;
    const char *data; /* what a client dispatches; NULL: nothing */
    apr_size_t data_len;
} framed;

static void check_facts(const char *raw, apr_size_t len, const oaip_sse_event_facts *f)
{
    char *exact = fuzz_exact_copy(raw, len);
    apr_size_t data_len = 0;
    char *data = oaip_sse_event_data(exact, len, &data_len);
    oaip_usage chunk_usage, usage;
    oaip_content_count count = {0, 0, 0};
    int chunk, reports;

    oaip_usage_init(&chunk_usage);
    oaip_usage_init(&usage);
    chunk = oaip_sse_usage_chunk(exact, len, &chunk_usage);
    FUZZ_CHECK(f->has_data == (data != NULL), "has_data %d", f->has_data);
    FUZZ_CHECK(f->usage_chunk == chunk, "usage chunk %d, the reference %d: \"%.*s\"",
               f->usage_chunk, chunk, (int)len, exact);
    if (data != NULL) {
        reports = oaip_sse_event_usage(data, data_len, &usage);
        FUZZ_CHECK(f->reports_usage == reports, "reports usage %d, the reference %d",
                   f->reports_usage, reports);
        FUZZ_CHECK(!reports || (f->usage.prompt_tokens == usage.prompt_tokens &&
                                f->usage.completion_tokens == usage.completion_tokens &&
                                f->usage.total_tokens == usage.total_tokens),
                   "a usage other than the reference's");
        oaip_content_count_event(&count, data, data_len);
        FUZZ_CHECK(f->content.bytes == count.bytes && f->content.tokens == count.tokens,
                   "content %ld bytes, the reference %ld", (long)f->content.bytes,
                   (long)count.bytes);
        FUZZ_CHECK(f->sequence == oaip_error_sse_sequence_of(data, data_len),
                   "sequence %ld", (long)f->sequence);
        free(data);
    }
    free(exact);
}

static void collect(void *ctx, const char *raw, apr_size_t len,
                    const oaip_sse_event_facts *facts)
{
    collector *c = ctx;
    framed *e = apr_array_push(c->events);

    FUZZ_CHECK(len > 0, "an empty event");
    e->raw = fuzz_pool_copy(c->pool, raw, len);
    e->len = len;
    e->unread = facts == NULL;
    e->data = NULL;
    if (facts != NULL && facts->has_data) {
        apr_size_t n = 0;
        char *d = oaip_sse_event_data(raw, len, &n);
        e->data = fuzz_pool_copy(c->pool, d, n);
        e->data_len = n;
        free(d);
    }
    c->total += len;
    if (facts != NULL) {
        check_facts(raw, len, facts);
    } else {
        FUZZ_CHECK(len > OAIP_SSE_FRAMER_MAX_EVENT, "%zu bytes left unread", len);
    }
}

static collector *collector_make(apr_pool_t *p)
{
    collector *c = apr_pcalloc(p, sizeof(*c));

    c->pool = p;
    c->events = apr_array_make(p, 8, sizeof(framed));
    return c;
}

static void check_is_input(const collector *c, const char *s, size_t len, const char *how)
{
    size_t at = 0;
    int i;

    FUZZ_CHECK(c->total == len, "%s: %zu bytes out of %zu", how, c->total, len);
    for (i = 0; i < c->events->nelts; i++) {
        const framed *e = &APR_ARRAY_IDX(c->events, i, framed);
        FUZZ_CHECK(memcmp(e->raw, s + at, e->len) == 0, "%s: event %d is not the input's",
                   how, i);
        at += e->len;
    }
}

/* The events a client dispatches, in order. Where an event's raw bytes
 * end may differ with the reads (a CRLF's LF split off after a CR that
 * ended the event goes with the next one, a blank line to a client), so
 * the raw cuts are not compared, only what they mean. */
static void check_same(const collector *a, const collector *b, const char *how)
{
    int i = 0, j = 0;

    for (;;) {
        const framed *x = NULL, *y = NULL;
        while (i < a->events->nelts &&
               (x = &APR_ARRAY_IDX(a->events, i, framed))->data == NULL) {
            if (x->unread) {
                return; /* where the limit cuts depends on the reads */
            }
            x = NULL;
            i++;
        }
        while (j < b->events->nelts &&
               (y = &APR_ARRAY_IDX(b->events, j, framed))->data == NULL) {
            if (y->unread) {
                return;
            }
            y = NULL;
            j++;
        }
        FUZZ_CHECK((x == NULL) == (y == NULL), "%s: a different number of events", how);
        if (x == NULL) {
            return;
        }
        FUZZ_CHECK(x->data_len == y->data_len &&
                       memcmp(x->data, y->data, x->data_len) == 0,
                   "%s: event %d differs", how, i);
        i++;
        j++;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p = fuzz_pool();
    size_t splits[FUZZ_MAX_SPLITS], n_splits, i, start, len;
    collector *whole, *split, *bytes;
    oaip_sse_framer *f;
    const char *s;

    n_splits = fuzz_stream_splits(data, size, splits, &s, &len);
    if (n_splits == 0) {
        return 0;
    }

    whole = collector_make(p);
    f = oaip_sse_framer_make(p, collect, whole);
    oaip_sse_framer_feed(f, s, len);
    oaip_sse_framer_finish(f);
    check_is_input(whole, s, len, "one read");

    split = collector_make(p);
    f = oaip_sse_framer_make(p, collect, split);
    for (i = 0, start = 0; i < n_splits; i++) {
        oaip_sse_framer_feed(f, s + start, splits[i] - start);
        start = splits[i];
    }
    oaip_sse_framer_finish(f);
    check_is_input(split, s, len, "split reads");

    bytes = collector_make(p);
    f = oaip_sse_framer_make(p, collect, bytes);
    for (i = 0; i < len; i++) {
        oaip_sse_framer_feed(f, s + i, 1);
    }
    oaip_sse_framer_finish(f);
    check_is_input(bytes, s, len, "one byte at a time");

    check_same(whole, split, "split reads");
    check_same(whole, bytes, "one byte at a time");
    return 0;
}
