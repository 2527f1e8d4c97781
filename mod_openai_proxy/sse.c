#include "sse.h"

#include "buffer.h"

#include <apr_strings.h>
#include <jansson.h>
#include <string.h>

/* An event larger than this is not a chat chunk: its data is dropped (the
 * bytes still reach the client; only usage reading skips it). */
#ifndef OAIP_SSE_MAX_EVENT_DATA /* tests/fuzz lowers it to reach the limits */
#define OAIP_SSE_MAX_EVENT_DATA ((apr_size_t)1024 * 1024)
#endif
#define MAX_EVENT_DATA ((apr_size_t)(OAIP_SSE_MAX_EVENT_DATA))

struct oaip_sse_reader {
    apr_pool_t *pool;
    oaip_sse_event_fn *on_event;
    void *ctx;
    oaip_buffer line; /* the unfinished line */
    oaip_buffer data; /* the current event's data */
    int has_data, overflow, last_was_cr;
    int skipping_line; /* inside a line too long to keep, until its end */
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
                return v < end ? v : NULL; /* the caller reads *v */
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

/* An event ends with a blank line, and a line ends with CRLF, LF or CR alone,
 * as for the reader below and for browsers: looking only for "\n\n" and
 * "\r\n\r\n" missed "\n\r\n" and CR-only streams, whose events the relay then
 * held back. An empty line at the very start is no event end: it is the LF of
 * a CRLF split after the previous cut (or a stray blank line), and goes out
 * with the next event. */
apr_size_t oaip_sse_event_length(const char *buf, apr_size_t len)
{
    apr_size_t i = 0, line_start = 0;

    while (i < len) {
        apr_size_t line_end = i;
        if (buf[i] != '\r' && buf[i] != '\n') {
            i++;
            continue;
        }
        i += (buf[i] == '\r' && i + 1 < len && buf[i + 1] == '\n') ? 2 : 1;
        if (line_end == line_start && line_start > 0) {
            return i;
        }
        line_start = i;
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

/* The value of an event's data line, when it has exactly one: with several,
 * a client reads them joined, which is then no usage chunk alone. */
static const char *single_data_value(const char *event, apr_size_t len,
                                     apr_size_t *value_len)
{
    const char *line = event, *end = event + len, *found = NULL;

    while (line < end) {
        const char *eol = line;
        apr_size_t n;
        while (eol < end && *eol != '\n' && *eol != '\r') {
            eol++;
        }
        n = (apr_size_t)(eol - line);
        if (n >= 4 && memcmp(line, "data", 4) == 0 && (n == 4 || line[4] == ':')) {
            if (found != NULL) {
                return NULL;
            }
            found = line + (n > 4 ? 5 : 4);
            *value_len = (apr_size_t)(eol - found);
        }
        line = eol + 1;
    }
    return found;
}

/* The relay hides the usage chunk from the client, so only a real one counts:
 * a JSON object whose own "choices" is empty and whose "usage" is an object.
 * The substring test alone also took a garbled event, or a content chunk
 * with "choices":[] nested in it, for the usage chunk and hid it. It stays as
 * a cheap filter, so that only the last chunk of a stream is parsed. */
int oaip_sse_usage_chunk(const char *event, apr_size_t len, oaip_usage *usage)
{
    const char *data;
    apr_size_t data_len;
    json_t *chunk, *choices, *u;
    int found;

    if (!find(event, len, "\"choices\":[]") || !find(event, len, "\"usage\":{") ||
        (data = single_data_value(event, len, &data_len)) == NULL) {
        return 0;
    }
    chunk = json_loadb(data, data_len, 0, NULL);
    choices = json_object_get(chunk, "choices");
    u = json_object_get(chunk, "usage");
    found = json_is_array(choices) && json_array_size(choices) == 0 && json_is_object(u);
    if (found) {
        (void)read_usage(u, usage); /* hidden even when it carries no counts */
    }
    json_decref(chunk);
    return found;
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
        /* an empty value ("data" or "data:") allocated nothing: never hand out
         * NULL, on which even NULL + 0 is undefined */
        r->on_event(r->ctx, r->data.data ? r->data.data : "", r->data.len);
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
    /* whatever its field, as when it arrives in pieces and cannot be kept */
    if (len > MAX_EVENT_DATA) {
        r->overflow = 1;
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
        if (r->skipping_line) {
            r->skipping_line = 0; /* the end of a line already dropped */
        } else if (r->line.len > 0) {
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
        if (r->skipping_line) {
            /* more of a dropped line */
        } else if (r->line.len + (len - start) > MAX_EVENT_DATA) {
            /* too long to keep: drop it and its event, and skip its rest, which
             * is no line of its own (as take_line does for a whole one) */
            r->line.len = 0;
            r->skipping_line = 1;
            r->overflow = 1;
        } else {
            oaip_buffer_append(r->pool, &r->line, bytes + start, len - start);
        }
        r->last_was_cr = 0;
    }
}
