#include "sse.h"

#include "buffer.h"

#include <apr_strings.h>
#include <jansson.h>
#include <string.h>

/* An event larger than this is not a chat chunk: its data is dropped (the
 * bytes still reach the client; only usage reading skips it). */
#define MAX_EVENT_DATA ((apr_size_t)1024 * 1024)

struct oaip_sse_reader {
    apr_pool_t *pool;
    oaip_sse_event_fn *on_event;
    void *ctx;
    oaip_buffer line; /* the unfinished line */
    oaip_buffer data; /* the current event's data */
    int has_data, overflow, last_was_cr;
};

void oaip_usage_init(oaip_usage *usage)
{
    usage->prompt_tokens = usage->completion_tokens = usage->total_tokens = -1;
}

static long count_field(json_t *usage, const char *name)
{
    json_t *value = json_object_get(usage, name);

    return json_is_integer(value) ? (long)json_integer_value(value) : -1;
}

/* The value after the next "usage" key from `p` on: only that object is
 * parsed, not the whole answer (a key's quotes cannot occur unescaped inside
 * a string). */
static const char *usage_value(const char *p, const char *end)
{
    while ((p = memchr(p, '"', (apr_size_t)(end - p))) != NULL) {
        if ((apr_size_t)(end - p) > 7 && memcmp(p, "\"usage\"", 7) == 0) {
            const char *v = p + 7;
            while (v < end && (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r')) {
                v++;
            }
            if (v < end && *v == ':') {
                for (v++; v < end && strchr(" \t\r\n", *v) != NULL && *v; v++) {
                }
                return v;
            }
        }
        p++;
    }
    return NULL;
}

/* Chat Completions and Embeddings count prompt_tokens/completion_tokens;
 * the Responses API input_tokens/output_tokens. */
static int read_usage(json_t *u, oaip_usage *usage)
{
    long prompt = count_field(u, "prompt_tokens");
    long completion = count_field(u, "completion_tokens");
    long total = count_field(u, "total_tokens");

    if (prompt < 0) {
        prompt = count_field(u, "input_tokens");
    }
    if (completion < 0) {
        completion = count_field(u, "output_tokens");
    }
    if (prompt < 0 && completion < 0 && total < 0) {
        return 0;
    }
    usage->prompt_tokens = prompt;
    usage->completion_tokens = completion;
    usage->total_tokens = total;
    return 1;
}

int oaip_usage_from_json(const char *json, apr_size_t len, oaip_usage *usage)
{
    const char *end = json + len, *value = json;
    int found = 0;

    /* a "usage" that is null (a stream's first events) or carries no counts
     * (a key inside metadata) is not the one: look further */
    while (!found && value < end && (value = usage_value(value, end)) != NULL) {
        if (value < end && *value == '{') {
            json_t *u = json_loadb(value, (apr_size_t)(end - value),
                                   JSON_DISABLE_EOF_CHECK, NULL);
            found = json_is_object(u) && read_usage(u, usage);
            json_decref(u);
        }
        value++;
    }
    return found;
}

apr_size_t oaip_sse_event_length(const char *buf, apr_size_t len)
{
    apr_size_t i;

    for (i = 0; i + 1 < len; i++) {
        if (buf[i] == '\n' && buf[i + 1] == '\n') {
            return i + 2;
        }
        if (buf[i] == '\r' && buf[i + 1] == '\n' && i + 3 < len && buf[i + 2] == '\r' &&
            buf[i + 3] == '\n') {
            return i + 4;
        }
    }
    return 0;
}

static const char *find(const char *hay, apr_size_t len, const char *needle)
{
    apr_size_t n = strlen(needle), i;

    for (i = 0; i + n <= len; i++) {
        if (memcmp(hay + i, needle, n) == 0) {
            return hay + i;
        }
    }
    return NULL;
}

int oaip_sse_usage_chunk(const char *event, apr_size_t len, oaip_usage *usage)
{
    const char *data = find(event, len, "data:");
    const char *end;

    if (data == NULL || !find(event, len, "\"choices\":[]") ||
        !find(event, len, "\"usage\":{")) {
        return 0;
    }
    data += 5;
    end = memchr(data, '\n', len - (apr_size_t)(data - event));
    if (end == NULL) {
        end = event + len;
    }
    return oaip_usage_from_json(data, (apr_size_t)(end - data), usage);
}

oaip_sse_reader *oaip_sse_reader_make(apr_pool_t *p, oaip_sse_event_fn *on_event,
                                      void *ctx)
{
    oaip_sse_reader *reader = apr_pcalloc(p, sizeof(*reader));

    reader->pool = p;
    reader->on_event = on_event;
    reader->ctx = ctx;
    return reader;
}

static void dispatch(oaip_sse_reader *r)
{
    if (r->has_data && !r->overflow) {
        r->on_event(r->ctx, r->data.data, r->data.len);
    }
    r->data.len = 0;
    r->has_data = r->overflow = 0;
}

/* One complete line, without its end of line. */
static void take_line(oaip_sse_reader *r, const char *line, apr_size_t len)
{
    const char *value;
    apr_size_t value_len;

    if (len == 0) {
        dispatch(r);
        return;
    }
    if (len < 4 || memcmp(line, "data", 4) != 0 || (len > 4 && line[4] != ':')) {
        return; /* comments, event:, id:, retry: and other fields */
    }
    value = line + (len > 4 ? 5 : 4);
    value_len = len - (apr_size_t)(value - line);
    if (value_len > 0 && *value == ' ') {
        value++;
        value_len--;
    }
    if (r->data.len + value_len + 1 > MAX_EVENT_DATA) {
        r->overflow = 1;
        return;
    }
    if (r->has_data) {
        oaip_buffer_append(r->pool, &r->data, "\n", 1);
    }
    oaip_buffer_append(r->pool, &r->data, value, value_len);
    r->has_data = 1;
}

void oaip_sse_feed(oaip_sse_reader *r, const char *bytes, apr_size_t len)
{
    apr_size_t i, start = 0;

    for (i = 0; i < len; i++) {
        char c = bytes[i];
        if (c != '\r' && c != '\n') {
            continue;
        }
        /* "\r\n" is one end of line, also when split across two reads */
        if (c == '\n' && i == start && r->last_was_cr && r->line.len == 0) {
            r->last_was_cr = 0;
            start = i + 1;
            continue;
        }
        if (r->line.len > 0) {
            oaip_buffer_append(r->pool, &r->line, bytes + start, i - start);
            take_line(r, r->line.data, r->line.len);
            r->line.len = 0;
        } else {
            take_line(r, bytes + start, i - start);
        }
        r->last_was_cr = (c == '\r');
        start = i + 1;
    }
    if (start < len) {
        if (r->line.len + (len - start) > MAX_EVENT_DATA) {
            r->line.len = 0; /* an endless line: drop it */
            r->overflow = 1;
        } else {
            oaip_buffer_append(r->pool, &r->line, bytes + start, len - start);
        }
        r->last_was_cr = 0;
    }
}
