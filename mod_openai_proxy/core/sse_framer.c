#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include "core/sse_framer.h"

#include <stdlib.h>
#include <string.h>

#include "core/buffer.h"
#include "core/content_scan.h"

struct oaip_sse_framer {
    apr_pool_t *pool;
    oaip_sse_framed_fn *fn;
    void *ctx;
    oaip_buffer pending; /* the start of an event whose end has not come */
};

oaip_sse_framer *oaip_sse_framer_make(apr_pool_t *p, oaip_sse_framed_fn *fn, void *ctx)
{
    oaip_sse_framer *f = apr_pcalloc(p, sizeof(*f));

    f->pool = p;
    f->fn = fn;
    f->ctx = ctx;
    return f;
}

static int names(const char *data, apr_size_t len, const char *word)
{
    return memmem(data, len, word, strlen(word)) != NULL;
}

/* One parse of the data, for every question, when any needs it: content
 * (data that begins an object), usage (data that may carry one), the
 * sequence number. A value followed by more (a second data line such as
 * [DONE]) is read for its usage only, as oaip_sse_event_usage does. */
static void inspect_data(const char *data, apr_size_t len, oaip_sse_event_facts *facts)
{
    int object = len > 0 && data[0] == '{';
    int usage_possible = oaip_sse_may_carry_usage(data, len);
    int numbered = names(data, len, "sequence_number");
    int whole = 0;
    apr_int64_t bytes;
    json_t *root = NULL;

    /* a content chunk, the usual event: no tree when the scan can read it */
    if (object && !usage_possible && !numbered && oaip_content_scan(data, len, &bytes)) {
        oaip_content_count_add(&facts->content, bytes);
        return;
    }
    if (object || usage_possible) {
        root = json_loadb(data, len, 0, NULL);
        whole = root != NULL;
        if (root == NULL && usage_possible) {
            root = json_loadb(data, len, JSON_DISABLE_EOF_CHECK, NULL);
        }
    }
    if (whole && object) {
        oaip_content_count_json(&facts->content, root);
    }
    if (usage_possible) {
        oaip_usage found;
        oaip_usage_init(&found);
        facts->usage_chunk = oaip_sse_usage_chunk_json(root, &found) && whole;
        oaip_usage_init(&found);
        facts->reports_usage = oaip_sse_event_usage_json(root, &found) ||
                               oaip_usage_from_json(data, len, &found);
        if (facts->reports_usage) {
            facts->usage = found;
        }
    }
    if (whole && numbered) {
        json_t *n = json_object_get(root, "sequence_number");
        if (json_is_integer(n) && json_integer_value(n) >= 0) {
            facts->sequence = (apr_int64_t)json_integer_value(n);
        }
    }
    json_decref(root);
}

/* The value of an event's only data line, in place; NULL when it has none
 * or several (which are joined in a copy). */
static const char *single_data_line(const char *raw, apr_size_t len, apr_size_t *n_out,
                                    int *lines)
{
    const char *line = raw, *end = raw + len, *found = NULL;
    apr_size_t found_len = 0;

    *lines = 0;
    while (line < end) {
        const char *lf = memchr(line, '\n', (apr_size_t)(end - line));
        const char *cr = memchr(line, '\r', (apr_size_t)((lf ? lf : end) - line));
        const char *eol = cr ? cr : lf ? lf : end;
        apr_size_t n = (apr_size_t)(eol - line);
        if (n >= 4 && memcmp(line, "data", 4) == 0 && (n == 4 || line[4] == ':')) {
            const char *v = line + (n > 4 ? 5 : 4);
            found_len = (apr_size_t)(eol - v);
            if (found_len > 0 && *v == ' ') {
                v++;
                found_len--;
            }
            found = v;
            (*lines)++;
        }
        line = (eol < end && *eol == '\r' && eol + 1 < end && eol[1] == '\n') ? eol + 2
                                                                              : eol + 1;
    }
    *n_out = found_len;
    return *lines == 1 ? found : NULL;
}

void oaip_sse_event_inspect(const char *raw, apr_size_t len, oaip_sse_event_facts *facts)
{
    apr_size_t data_len;
    const char *data;
    char *joined;
    int lines;

    memset(facts, 0, sizeof(*facts));
    oaip_usage_init(&facts->usage);
    facts->sequence = -1;
    data = single_data_line(raw, len, &data_len, &lines);
    if (lines == 0) {
        return;
    }
    facts->has_data = 1;
    if (data != NULL) {
        facts->done_marker = data_len == 6 && memcmp(data, "[DONE]", 6) == 0;
        inspect_data(data, data_len, facts);
        return;
    }
    joined = oaip_sse_event_data(raw, len, &data_len);
    if (joined != NULL) {
        inspect_data(joined, data_len, facts);
        free(joined);
    }
}

static void hand_out(oaip_sse_framer *f, const char *raw, apr_size_t len)
{
    oaip_sse_event_facts facts;

    oaip_sse_event_inspect(raw, len, &facts);
    f->fn(f->ctx, raw, len, &facts);
}

/* The whole events at the start of `buf`, handed out; returns the bytes
 * they took. */
static apr_size_t hand_out_events(oaip_sse_framer *f, const char *buf, apr_size_t len)
{
    apr_size_t pos = 0, n;

    while ((n = oaip_sse_event_length(buf + pos, len - pos)) > 0) {
        hand_out(f, buf + pos, n);
        pos += n;
    }
    return pos;
}

void oaip_sse_framer_feed(oaip_sse_framer *f, const char *bytes, apr_size_t len)
{
    apr_size_t used;

    if (len == 0) {
        return;
    }
    if (f->pending.len == 0) {
        /* the usual case, an event or more in one read: read in place */
        used = hand_out_events(f, bytes, len);
        if (used < len) {
            oaip_buffer_append(f->pool, &f->pending, bytes + used, len - used);
        }
    } else {
        oaip_buffer_append(f->pool, &f->pending, bytes, len);
        used = hand_out_events(f, f->pending.data, f->pending.len);
        memmove(f->pending.data, f->pending.data + used, f->pending.len - used);
        f->pending.len -= used;
    }
    if (f->pending.len > OAIP_SSE_FRAMER_MAX_EVENT) {
        f->fn(f->ctx, f->pending.data, f->pending.len, NULL);
        f->pending.len = 0;
    }
}

void oaip_sse_framer_finish(oaip_sse_framer *f)
{
    if (f->pending.len > 0) {
        hand_out(f, f->pending.data, f->pending.len);
        f->pending.len = 0;
    }
}
