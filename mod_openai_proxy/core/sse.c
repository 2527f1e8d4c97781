#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include "core/sse.h"

#include <apr_strings.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/buffer.h"

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
    int bom_seen;      /* bytes of a leading byte order mark seen; BOM_PAST after */
};

/* The UTF-8 byte order mark, and the reader's state once it is past the
 * place where one may stand (skipped, or the stream began otherwise). */
static const char utf8_bom[] = "\xEF\xBB\xBF";
#define BOM_LEN 3
#define BOM_PAST BOM_LEN

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

/* A usage object with at least one count (NULL or another JSON value: 0). */
static int read_usage_object(json_t *u, oaip_usage *usage)
{
    return json_is_object(u) && read_usage(u, usage);
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
        apr_size_t line_end;
        const char *lf = memchr(buf + i, '\n', len - i);
        const char *cr = memchr(buf + i, '\r', (lf ? (apr_size_t)(lf - buf) : len) - i);
        const char *eol = cr ? cr : lf;
        if (eol == NULL) {
            return 0;
        }
        line_end = (apr_size_t)(eol - buf);
        i = line_end +
            ((*eol == '\r' && line_end + 1 < len && buf[line_end + 1] == '\n') ? 2 : 1);
        if (line_end == line_start && line_start > 0) {
            return i;
        }
        line_start = i;
    }
    return 0;
}

/* Whether an event may carry a usage object: it names "usage" other than
 * as "usage":null (in every chunk of an OpenAI stream that asked for
 * usage, not worth parsing), or holds a JSON escape behind which a key
 * could hide. Anything else that looks odd is parsed. */
int oaip_sse_may_carry_usage(const char *event, apr_size_t len)
{
    const char *p, *end = event + len;

    if (len < 5) {
        return 0;
    }
    /* memchr and memmem, not a loop per byte: this runs on every event */
    for (p = event; (p = memchr(p, '\\', (apr_size_t)(end - p))) != NULL; p++) {
        if (end - p >= 5 && p[1] == 'u') {
            return 1;
        }
    }
    for (p = event; (p = memmem(p, (apr_size_t)(end - p), "usage", 5)) != NULL; p++) {
        const char *q = p + 5;
        while (q < end && strchr("\" \t:", *q) != NULL && *q) {
            q++;
        }
        if (!(end - q >= 4 && memcmp(q, "null", 4) == 0)) {
            return 1;
        }
    }
    return 0;
}

int oaip_sse_event_usage(const char *data, apr_size_t len, oaip_usage *usage)
{
    json_t *event;
    int found;

    if (!oaip_sse_may_carry_usage(data, len)) {
        return 0;
    }
    /* the first value only: data that goes on after it ("{...}\n[DONE]"
     * sent as one event) still reports its usage */
    event = json_loadb(data, len, JSON_DISABLE_EOF_CHECK, NULL);
    found = oaip_sse_event_usage_json(event, usage);
    json_decref(event);
    /* not JSON, or the usage is somewhere else: any usage object it names */
    return found || oaip_usage_from_json(data, len, usage);
}

int oaip_sse_event_usage_json(json_t *event, oaip_usage *usage)
{
    return json_is_object(event) &&
           (read_usage_object(json_object_get(event, "usage"), usage) ||
            read_usage_object(json_object_get(json_object_get(event, "x_groq"), "usage"),
                              usage) ||
            read_usage_object(
                json_object_get(json_object_get(event, "response"), "usage"), usage));
}

int oaip_sse_usage_chunk_json(json_t *event, oaip_usage *usage)
{
    json_t *choices = json_object_get(event, "choices");
    json_t *u = json_object_get(event, "usage");

    if (!json_is_object(u)) {
        return 0;
    }
    (void)read_usage(u, usage); /* hidden even when it carries no counts */
    return json_is_array(choices) && json_array_size(choices) == 0;
}

/* An event's data as a client reads it: its data lines' values (one
 * leading space dropped) joined by "\n"; lines end with CRLF, LF or CR.
 * malloc'd (the caller frees it); NULL without a data line. */
char *oaip_sse_event_data(const char *event, apr_size_t len, apr_size_t *data_len)
{
    const char *line = event, *end = event + len;
    char *out = malloc(len + 1);
    apr_size_t n_out = 0;
    int any = 0;

    if (out == NULL) {
        return NULL;
    }

    while (line < end) {
        const char *eol = line;
        apr_size_t n;
        while (eol < end && *eol != '\n' && *eol != '\r') {
            eol++;
        }
        n = (apr_size_t)(eol - line);
        if (n >= 4 && memcmp(line, "data", 4) == 0 && (n == 4 || line[4] == ':')) {
            const char *v = line + (n > 4 ? 5 : 4);
            apr_size_t vn = (apr_size_t)(eol - v);
            if (vn > 0 && *v == ' ') {
                v++;
                vn--;
            }
            if (any) {
                out[n_out++] = '\n';
            }
            memcpy(out + n_out, v, vn);
            n_out += vn;
            any = 1;
        }
        line = (eol < end && *eol == '\r' && eol + 1 < end && eol[1] == '\n') ? eol + 2
                                                                              : eol + 1;
    }
    out[n_out] = '\0';
    *data_len = n_out;
    if (!any) {
        free(out);
        return NULL;
    }
    return out;
}

/* The usage chunk is told by its JSON structure, whatever the upstream's
 * formatting (white space, key order, escapes, the object split over
 * several data lines): an object whose own "choices" is an empty array and
 * whose "usage" is an object. An event that carries more than that object
 * (a second data line such as [DONE]) is no usage chunk to hide, and a
 * content chunk with a usage object (some servers report it in the last
 * one) is none either; their usage is still read, so that no stream goes
 * uncharged. */
int oaip_sse_usage_chunk(const char *event, apr_size_t len, oaip_usage *usage)
{
    char *data;
    apr_size_t data_len;
    json_t *chunk;
    int whole = 1, found;

    if (!oaip_sse_may_carry_usage(event, len) ||
        (data = oaip_sse_event_data(event, len, &data_len)) == NULL) {
        return 0;
    }
    chunk = json_loadb(data, data_len, 0, NULL);
    if (chunk == NULL) {
        whole = 0; /* the first value of the data, for its usage only */
        chunk = json_loadb(data, data_len, JSON_DISABLE_EOF_CHECK, NULL);
    }
    found = oaip_sse_usage_chunk_json(chunk, usage) && whole;
    json_decref(chunk);
    free(data);
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

static void feed_lines(oaip_sse_reader *r, const char *bytes, apr_size_t len)
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

/* The bytes taken for the start of a byte order mark were none: they are
 * the stream's first bytes after all. */
static void give_back_bom(oaip_sse_reader *r)
{
    apr_size_t held = (apr_size_t)r->bom_seen;

    r->bom_seen = BOM_PAST;
    if (held > 0) {
        feed_lines(r, utf8_bom, held);
    }
}

void oaip_sse_feed(oaip_sse_reader *r, const char *bytes, apr_size_t len)
{
    while (r->bom_seen < BOM_PAST && len > 0) {
        if (*bytes != utf8_bom[r->bom_seen]) {
            give_back_bom(r);
            break;
        }
        r->bom_seen++;
        bytes++;
        len--;
    }
    if (len > 0) {
        feed_lines(r, bytes, len);
    }
}

void oaip_sse_finish(oaip_sse_reader *r)
{
    if (r->bom_seen < BOM_PAST) {
        give_back_bom(r);
    }
    if (r->skipping_line) {
        r->skipping_line = 0; /* its event is dropped (overflow) */
    } else if (r->line.len > 0) {
        take_line(r, r->line.data, r->line.len);
    }
    r->line.len = 0;
    r->last_was_cr = 0;
    dispatch(r);
}
