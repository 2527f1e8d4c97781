/* Server-Sent Events, read incrementally, and the token usage they (or a
 * whole answer) report (core: APR + jansson). */
#ifndef OAIP_SSE_H
#define OAIP_SSE_H

#include <apr_pools.h>
#include <jansson.h>

typedef struct {
    long prompt_tokens; /* -1: not reported */
    long completion_tokens;
    long total_tokens;
} oaip_usage;

void oaip_usage_init(oaip_usage *usage);

/* Reads "usage" from an answer (chat.completion, chunk, embeddings list, a
 * Responses API object or event: input_tokens/output_tokens count as
 * prompt/completion tokens); returns 1 and fills *usage when it carries
 * one with at least one count. */
int oaip_usage_from_json(const char *json, apr_size_t len, oaip_usage *usage);

/* The length of the first complete event in `buf` (its blank line
 * included; lines end with CRLF, LF or CR), or 0 when no event is complete
 * yet. */
apr_size_t oaip_sse_event_length(const char *buf, apr_size_t len);

/* The usage one event of a stream reports (its data, as the reader hands
 * it out), wherever the families of OpenAI-compatible servers put it: the
 * chunk's own "usage" (a separate usage chunk, the last content chunk, or
 * every chunk), else Groq's "x_groq"."usage", else a Responses API event's
 * "response"."usage"; failing those, any "usage" object with a count
 * (oaip_usage_from_json). Returns 1 and fills *usage when it reports one
 * with at least one count: a stream's usage is its last report, never a
 * sum. Events that name no usage (or "usage":null) are not parsed. */
int oaip_sse_event_usage(const char *data, apr_size_t len, oaip_usage *usage);

/* Whether a raw event is the usage chunk of a stream alone (a JSON object
 * with an empty "choices" array and a "usage" object, however formatted or
 * split over data lines), which the relay may hide. Fills *usage from any
 * event whose data begins with an object carrying a usage object. */
int oaip_sse_usage_chunk(const char *event, apr_size_t len, oaip_usage *usage);

/* The same checks on an event's data parsed once (core/sse_framer.c):
 * the usage its own, Groq's or a Responses event's usage object reports,
 * and whether it is the usage chunk alone (to be whole: the caller knows
 * the data held one value only). */
int oaip_sse_event_usage_json(json_t *event, oaip_usage *usage);
int oaip_sse_usage_chunk_json(json_t *event, oaip_usage *usage);

/* Whether an event's bytes may carry a usage object worth parsing (not
 * only "usage":null). */
int oaip_sse_may_carry_usage(const char *event, apr_size_t len);

/* A raw event's data as a client reads it: its data lines' values joined
 * by "\n". malloc'd (the caller frees it); NULL without a data line. */
char *oaip_sse_event_data(const char *event, apr_size_t len, apr_size_t *data_len);

/* An incremental SSE reader: bytes go in as they arrive, split anywhere;
 * each complete event's data (its data: lines joined by "\n") comes out,
 * never as NULL. A UTF-8 byte order mark (EF BB BF) at the very start of
 * the stream is skipped, as the SSE standard says, also when it arrives
 * split. */
typedef void oaip_sse_event_fn(void *ctx, const char *data, apr_size_t len);

typedef struct oaip_sse_reader oaip_sse_reader;

oaip_sse_reader *oaip_sse_reader_make(apr_pool_t *p, oaip_sse_event_fn *on_event,
                                      void *ctx);
void oaip_sse_feed(oaip_sse_reader *reader, const char *bytes, apr_size_t len);

/* The stream ended (cleanly, without the blank line after its last event):
 * that event is handed out as if the blank line had come, so that its
 * usage counts (a browser drops it; the proxy relays it as it came). */
void oaip_sse_finish(oaip_sse_reader *reader);

#endif
