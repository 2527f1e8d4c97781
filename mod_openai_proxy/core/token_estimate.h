/* What a request may cost before it runs, and what an answer without a
 * usage report cost, in tokens (core: APR + jansson). Token budgets reserve
 * the first and charge the second; see README "OpenAIProxyTokenBudget". */
#ifndef OAIP_TOKEN_ESTIMATE_H
#define OAIP_TOKEN_ESTIMATE_H

#include <apr.h>
#include <jansson.h>

/* Bytes of relayed text per estimated token (OpenAI's rule of thumb for
 * English is about 4; other languages have fewer bytes per token, which the
 * one-token-per-event floor partly makes up for). */
#define OAIP_BYTES_PER_TOKEN 4

/* The cost of a JSON request body before it runs. */
typedef struct {
    /* the most output tokens the upstream may generate: the largest of
     * max_tokens, max_completion_tokens and max_output_tokens, times the
     * choices asked for (n, best_of, a legacy prompt array); -1 when the
     * body names no limit, so the output is unbounded */
    apr_int64_t output_limit;
    /* an upper bound of the prompt tokens for text: the body's byte length
     * (a token is at least one byte of text, and the JSON around it only
     * adds bytes); images, audio and files make it an estimate */
    apr_int64_t prompt_bound;
    /* what the prompt likely cost, for answers without a usage report:
     * ceil(bytes / OAIP_BYTES_PER_TOKEN) of the body */
    apr_int64_t prompt_estimate;
} oaip_request_cost;

/* Reads the cost of a JSON body (one the proxy validated, but any bytes
 * are safe). The sums saturate at OAIP_TOKENS_MAX. */
void oaip_request_cost_of(const char *body, apr_size_t len, oaip_request_cost *cost);

/* The prompt estimate of a JSON body of `len` bytes. */
apr_int64_t oaip_prompt_estimate(apr_size_t len);

/* What a budget reserves for a request: prompt_bound + output_limit, or
 * prompt_bound alone when the output is unbounded; at most OAIP_TOKENS_MAX. */
apr_int64_t oaip_request_cost_worst(const oaip_request_cost *cost);

#define OAIP_TOKENS_MAX ((apr_int64_t)0x7fffffff)

/* The content of a stream as it is relayed, for a stream whose usage chunk
 * never came (the client left, the upstream ignores stream_options). */
typedef struct {
    apr_int64_t tokens; /* estimated so far */
    apr_int64_t events; /* events that carried content */
    apr_int64_t bytes;  /* content bytes seen */
} oaip_content_count;

/* Counts the generated content of one event's data (a chat.completion.chunk:
 * delta.content, delta.reasoning_content / delta.reasoning, delta.refusal,
 * delta.tool_calls[].function.arguments; a legacy completion chunk's
 * choices[].text; a Responses API *.delta event: output text, reasoning,
 * refusal, function-call arguments). An event with content counts
 * max(1, ceil(bytes / OAIP_BYTES_PER_TOKEN)) tokens. Anything else
 * ([DONE], not JSON, no content) counts nothing. */
void oaip_content_count_event(oaip_content_count *count, const char *data,
                              apr_size_t len);

/* One event's content of `bytes` (core/content_scan.h read it). */
void oaip_content_count_add(oaip_content_count *count, apr_int64_t bytes);

/* The same for an event's data already parsed (an object, else nothing). */
void oaip_content_count_json(oaip_content_count *count, json_t *event);

/* The generated content of a whole (non-streamed) answer: choices[].message
 * (same fields as a chunk's delta), choices[].text, and a Responses API
 * object's output[] (message text, refusals, function-call arguments,
 * reasoning summaries), as for one event. 0 for anything else (a model
 * list, embeddings). */
apr_int64_t oaip_content_tokens_of_answer(const char *json, apr_size_t len);

#endif
