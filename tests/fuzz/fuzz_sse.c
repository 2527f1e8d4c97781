/* Fuzzes the incremental SSE reader and the usage extraction.
 *
 * Input: byte 0 gives the number of extra split points (0-15), each taken
 * from the next two bytes; the rest is the stream. The stream is fed in one
 * read, split at those points, and one byte at a time.
 *
 * Invariants: the three feedings yield the same events, and those are the
 * events a plain reference reader of the whole text finds (lines end with
 * CRLF, LF or CR; "data" lines joined by "\n", one leading space dropped; an
 * event whose data or one of whose lines passes the limit is dropped); every raw event
 * found by oaip_sse_event_length lies within the input and ends with a blank line; an
 * event is taken for the usage chunk exactly when the reference reader's one
 * event is a JSON object with an empty "choices" array and a "usage" object,
 * whatever its formatting (issue 9); usage reading never reads outside what
 * it is given (ASan). At the end of the stream (oaip_sse_finish), each
 * feeding adds what the reference finds once an unfinished last event is
 * taken as ended. A UTF-8 byte order mark in front of a stream that has
 * none, whole or split, changes none of its events. An event whose data is
 * a JSON object with a "usage" object holding a count reports exactly that
 * usage (oaip_sse_event_usage: a chunk's own usage comes before any nested
 * one, such as Groq's x_groq). */
#include "fuzz.h"

#include <apr_strings.h>
#include <apr_tables.h>

#include "core/sse.h"

/* The fuzz build lowers the reader's limit (run.sh: -DOAIP_SSE_MAX_EVENT_DATA)
 * so that short inputs reach the overflow paths. */
#ifndef OAIP_SSE_MAX_EVENT_DATA
#define OAIP_SSE_MAX_EVENT_DATA ((apr_size_t)1024 * 1024)
#endif

typedef struct {
    const char *data;
    apr_size_t len;
} event;

typedef struct {
    apr_pool_t *pool;
    apr_array_header_t *events;
} collector;

/* What read_usage takes from a usage object: an integer count, -1 when
 * there is none; input/output_tokens stand in for a prompt/completion
 * count below 0. */
static long count_of(json_t *u, const char *name, const char *instead)
{
    json_t *v = json_object_get(u, name);
    long n = json_is_integer(v) ? (long)json_integer_value(v) : -1;

    if (n < 0 && instead != NULL) {
        v = json_object_get(u, instead);
        n = json_is_integer(v) ? (long)json_integer_value(v) : -1;
    }
    return n;
}

static void check_event_usage(const char *data, size_t len)
{
    json_t *event = fuzz_json(data, len, JSON_DISABLE_EOF_CHECK);
    json_t *own = json_object_get(event, "usage");
    oaip_usage usage;
    int found;

    oaip_usage_init(&usage);
    found = oaip_sse_event_usage(data, len, &usage);
    if (json_is_object(event) && json_is_object(own)) {
        long prompt = count_of(own, "prompt_tokens", "input_tokens");
        long completion = count_of(own, "completion_tokens", "output_tokens");
        long total = count_of(own, "total_tokens", NULL);
        if (prompt >= 0 || completion >= 0 || total >= 0) {
            FUZZ_CHECK(
                found && usage.prompt_tokens == prompt &&
                    usage.completion_tokens == completion && usage.total_tokens == total,
                "the chunk's own usage was not the one read: \"%.*s\"", (int)len, data);
        }
    }
    json_decref(event);
}

static void collect(void *ctx, const char *data, apr_size_t len)
{
    collector *c = ctx;
    event *e = apr_array_push(c->events);
    oaip_usage usage;
    char *exact = fuzz_exact_copy(data, len);

    e->data = fuzz_pool_copy(c->pool, data, len);
    e->len = len;
    oaip_usage_init(&usage);
    (void)oaip_usage_from_json(exact, len, &usage);
    /* the relay reads usage from each event's data (upstream.c on_event) */
    check_event_usage(exact, len);
    free(exact);
}

static collector *collector_make(apr_pool_t *p)
{
    collector *c = apr_palloc(p, sizeof(*c));

    c->pool = p;
    c->events = apr_array_make(p, 8, sizeof(event));
    return c;
}

/* How the reference reads a text: SKIP_MARK, as a whole stream (a leading
 * byte order mark skipped), else as it is (one raw event cut out of a
 * stream: the relay cuts events after the engine dropped the stream's
 * mark); ENDED: the stream ended there (oaip_sse_finish). */
enum { AS_IS = 0, SKIP_MARK = 1, ENDED = 2 };

typedef struct {
    apr_pool_t *pool;
    apr_array_header_t *events;
    char *data;
    size_t data_len, max;
    int has_data, overflow;
} reference;

/* One line, without its end; an empty one ends the event. */
static void reference_line(reference *ref, const char *line, size_t len)
{
    if (len == 0) {
        if (ref->has_data && !ref->overflow) {
            event *e = apr_array_push(ref->events);
            e->data = fuzz_pool_copy(ref->pool, ref->data, ref->data_len);
            e->len = ref->data_len;
        }
        ref->data_len = 0;
        ref->has_data = ref->overflow = 0;
    } else if (len > ref->max) {
        ref->overflow = 1; /* too long a line drops its event, whatever its field */
    } else if (len >= 4 && memcmp(line, "data", 4) == 0 && (len == 4 || line[4] == ':')) {
        const char *value = line + (len > 4 ? 5 : 4);
        size_t value_len = len - (size_t)(value - line);
        if (value_len > 0 && *value == ' ') {
            value++;
            value_len--;
        }
        if (ref->data_len + value_len + 1 > ref->max) {
            ref->overflow = 1;
            return;
        }
        if (ref->has_data) {
            ref->data[ref->data_len++] = '\n';
        }
        memcpy(ref->data + ref->data_len, value, value_len);
        ref->data_len += value_len;
        ref->has_data = 1;
    }
}

/* The reference: the whole text at once, written for clarity, not speed. */
static apr_array_header_t *reference_events(apr_pool_t *p, const char *s, size_t len,
                                            size_t max, int how)
{
    reference ref = {
        p, apr_array_make(p, 8, sizeof(event)), apr_palloc(p, len + 1), 0, max, 0, 0};
    size_t i = 0;

    if ((how & SKIP_MARK) && len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
        i = 3;
    }
    for (;;) {
        size_t start = i;
        while (i < len && s[i] != '\r' && s[i] != '\n') {
            i++;
        }
        if (i == len) {
            /* an unfinished line is no line yet; at the end of the stream it
             * is one, and the blank line after the last event comes */
            if (how & ENDED) {
                if (i > start) {
                    reference_line(&ref, s + start, i - start);
                }
                reference_line(&ref, "", 0);
            }
            return ref.events;
        }
        reference_line(&ref, s + start, i - start);
        i += (s[i] == '\r' && i + 1 < len && s[i + 1] == '\n') ? 2 : 1;
    }
}

static void check_same(const apr_array_header_t *a, const apr_array_header_t *b,
                       const char *what)
{
    int i;

    FUZZ_CHECK(a->nelts == b->nelts, "%s: %d events instead of %d", what, b->nelts,
               a->nelts);
    for (i = 0; i < a->nelts; i++) {
        const event *x = &APR_ARRAY_IDX(a, i, event), *y = &APR_ARRAY_IDX(b, i, event);
        FUZZ_CHECK(x->len == y->len && memcmp(x->data, y->data, x->len) == 0,
                   "%s: event %d differs: \"%.*s\" instead of \"%.*s\"", what, i,
                   (int)y->len, y->data, (int)x->len, x->data);
    }
}

/* Whether an event's data is a usage chunk: a JSON object whose "choices" is
 * an empty array and whose "usage" is an object. */
static int is_usage_chunk(const char *data, size_t len)
{
    json_t *chunk = fuzz_json(data, len, 0), *choices;
    int yes;

    choices = json_object_get(chunk, "choices");
    yes = json_is_array(choices) && json_array_size(choices) == 0 &&
          json_is_object(json_object_get(chunk, "usage"));
    json_decref(chunk);
    return yes;
}

/* The raw events the relay cuts out of its buffer (oaip_sse_event_length)
 * when it hides the usage chunk: each lies within the buffer and ends with a
 * blank line; no complete event is left behind in the rest (the relay would
 * hold it back from the client); only a usage chunk is taken for one. */
static void check_raw_events(apr_pool_t *p, const char *s, size_t len,
                             const apr_array_header_t *all_events)
{
    size_t at = 0, n;
    collector *prefix = collector_make(p);
    oaip_sse_reader *r;

    while ((n = oaip_sse_event_length(s + at, len - at)) != 0) {
        char *copy = fuzz_exact_copy(s + at, n);
        oaip_usage usage;
        FUZZ_CHECK(n >= 1 && n <= len - at, "event length %zu of %zu bytes", n, len - at);
        FUZZ_CHECK(copy[n - 1] == '\n' || copy[n - 1] == '\r',
                   "an event does not end with a line end");
        oaip_usage_init(&usage);
        {
            apr_array_header_t *one = reference_events(p, copy, n, (size_t)-1, AS_IS);
            int reference =
                one->nelts == 1 && is_usage_chunk(APR_ARRAY_IDX(one, 0, event).data,
                                                  APR_ARRAY_IDX(one, 0, event).len);
            int found = oaip_sse_usage_chunk(copy, n, &usage);
            FUZZ_CHECK(!found || reference,
                       "an event taken for the usage chunk is none: \"%.*s\"", (int)n,
                       copy);
            /* issue 9: known by its structure, however it is formatted */
            FUZZ_CHECK(found || !reference, "a usage chunk was not recognised: \"%.*s\"",
                       (int)n, copy);
        }
        free(copy);
        at += n;
    }
    r = oaip_sse_reader_make(p, collect, prefix);
    oaip_sse_feed(r, s, at);
    check_same(all_events, prefix->events, "complete raw events vs all events");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p = fuzz_pool();
    size_t splits[FUZZ_MAX_SPLITS], n_splits, i, start;
    collector *whole, *split, *bytes;
    const char *s;
    size_t len;
    oaip_sse_reader *r, *readers[3];

    n_splits = fuzz_stream_splits(data, size, splits, &s, &len);
    if (n_splits == 0) {
        return 0;
    }

    whole = collector_make(p);
    r = readers[0] = oaip_sse_reader_make(p, collect, whole);
    oaip_sse_feed(r, s, len);

    split = collector_make(p);
    r = readers[1] = oaip_sse_reader_make(p, collect, split);
    for (i = 0, start = 0; i < n_splits; i++) {
        oaip_sse_feed(r, s + start, splits[i] - start); /* may be an empty read */
        start = splits[i];
    }

    bytes = collector_make(p);
    r = readers[2] = oaip_sse_reader_make(p, collect, bytes);
    for (i = 0; i < len; i++) {
        oaip_sse_feed(r, s + i, 1);
    }

    check_same(reference_events(p, s, len, OAIP_SSE_MAX_EVENT_DATA, SKIP_MARK),
               whole->events, "one read vs reference");
    check_same(whole->events, split->events, "split reads vs one read");
    check_same(whole->events, bytes->events, "byte reads vs one read");
    check_raw_events(p, s, len, whole->events);

    /* the stream ends there: an unfinished last event is handed out */
    for (i = 0; i < 3; i++) {
        oaip_sse_finish(readers[i]);
    }
    check_same(reference_events(p, s, len, OAIP_SSE_MAX_EVENT_DATA, SKIP_MARK | ENDED),
               whole->events, "one read, ended, vs reference");
    check_same(whole->events, split->events, "split reads, ended, vs one read");
    check_same(whole->events, bytes->events, "byte reads, ended, vs one read");

    /* a byte order mark in front, split where byte 0 says: skipped, and
     * only that one (a mark the text starts with is data then) */
    {
        char *marked = apr_palloc(p, len + 3);
        size_t cut = (size_t)(data[0] >> 4) % 4;
        collector *c = collector_make(p);
        memcpy(marked, "\xEF\xBB\xBF", 3);
        memcpy(marked + 3, s, len);
        r = oaip_sse_reader_make(p, collect, c);
        oaip_sse_feed(r, marked, cut);
        oaip_sse_feed(r, marked + cut, len + 3 - cut);
        check_same(reference_events(p, s, len, OAIP_SSE_MAX_EVENT_DATA, AS_IS), c->events,
                   "after a byte order mark vs reference");
        oaip_sse_finish(r);
        check_same(reference_events(p, s, len, OAIP_SSE_MAX_EVENT_DATA, ENDED), c->events,
                   "after a byte order mark, ended, vs reference");
    }
    return 0;
}
