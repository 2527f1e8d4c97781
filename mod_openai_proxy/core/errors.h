/* JSON error bodies made by the proxy itself (core: APR + jansson only). */
#ifndef OAIP_ERRORS_H
#define OAIP_ERRORS_H

#include <apr_pools.h>

typedef enum {
    /* the original Cloudflare Worker's shape (OpenAIProxyErrorFormat seed):
     * {"error":"<title>","message":"<detail>"} */
    OAIP_ERRFMT_WORKER = 0,
    OAIP_ERRFMT_OPENAI = 1 /* {"error":{"message","type","param","code"}} for SDKs */
} oaip_error_format;

typedef enum {
    OAIP_ERR_EMPTY_BODY,
    OAIP_ERR_INVALID_JSON,
    OAIP_ERR_NOT_OBJECT,
    OAIP_ERR_INVALID_MESSAGES,
    OAIP_ERR_BAD_REQUEST,
    OAIP_ERR_MODEL_NOT_ALLOWED,
    OAIP_ERR_ORIGIN_FORBIDDEN,
    OAIP_ERR_NOT_FOUND,
    OAIP_ERR_METHOD_NOT_ALLOWED,
    OAIP_ERR_BODY_TOO_LARGE,
    OAIP_ERR_BODY_TIMEOUT,
    OAIP_ERR_NO_API_KEY,
    OAIP_ERR_INTERNAL,
    OAIP_ERR_UPSTREAM_UNREACHABLE,
    OAIP_ERR_UPSTREAM_INVALID,
    OAIP_ERR_UPSTREAM_TIMEOUT,
    OAIP_ERR_TOO_MANY_STREAMS,
    OAIP_ERR_RATE_LIMITED,
    OAIP_ERR_TOKEN_BUDGET_EXHAUSTED,
    OAIP_ERR_LIMITS_UNAVAILABLE,
    OAIP_ERR_MODEL_NOT_ROUTED, /* no backend of the route serves the model */
    OAIP_ERR__COUNT
} oaip_error_kind;

/* Why the proxy answers with its own error instead of the upstream's
 * answer: what the limits, the stream cap and the engine hand back. */
typedef struct {
    oaip_error_kind kind;
    const char *detail;       /* a sentence for the client, no secrets; NULL: the title */
    apr_uint32_t retry_after; /* seconds for a Retry-After header; 0: none */
} oaip_refusal;

typedef struct {
    int status;        /* HTTP status the proxy answers with */
    const char *title; /* short title, the "error" string of the seed format */
    const char *type;  /* OpenAI "type" */
    const char *code;  /* OpenAI "code" */
} oaip_error_info;

const oaip_error_info *oaip_error_info_get(oaip_error_kind kind);

/* The response body for an error of `kind`, with `detail` as the human message
 * (NULL: the title). Always valid JSON, whatever bytes `detail` holds. */
const char *oaip_error_body(apr_pool_t *p, oaip_error_format fmt, oaip_error_kind kind,
                            const char *detail);

/* The same for an error that is not one of the kinds (httpd's own errors
 * taken over by error_pages.c): `info` gives title, type and code. */
const char *oaip_error_body_info(apr_pool_t *p, oaip_error_format fmt,
                                 const oaip_error_info *info, const char *detail);

/* The shape of the SSE error events the proxy writes into a stream that
 * already started (the upstream cut it, fell silent, or answered an error
 * after heartbeats sent the head): the endpoint's own, which its clients
 * parse. */
typedef enum {
    /* Chat Completions and legacy completions: the OpenAI error object,
     * data: {"error":{"message","type","param","code"}} */
    OAIP_SSE_ERRORS_CHAT = 0,
    /* the Responses API's error event, data: {"type":"error","code",
     * "message","param","sequence_number"} */
    OAIP_SSE_ERRORS_RESPONSES = 1
} oaip_sse_error_shape;

/* The same error as one Server-Sent Event ("event: error" + one data line)
 * in `shape`, for failures after a stream has started. `sequence_number`
 * is the Responses event's (one after the last event relayed; below 0
 * counts as 0); the chat shape has none. */
const char *oaip_error_sse_event(apr_pool_t *p, oaip_sse_error_shape shape,
                                 apr_int64_t sequence_number, oaip_error_kind kind,
                                 const char *detail);

/* An upstream error answer (`status`, `body`) as an SSE error event in
 * `shape`, for a stream whose head already went out (heartbeats). Chat: the
 * upstream's own error object when it sent one, with "status" added; else
 * a wrapped excerpt. Responses: the upstream error's message, code (a
 * string: its code, else its type, else "upstream_error") and param, or
 * the excerpt as message. */
const char *oaip_error_sse_from_upstream(apr_pool_t *p, oaip_sse_error_shape shape,
                                         apr_int64_t sequence_number, int status,
                                         const char *body, apr_size_t len);

/* The "sequence_number" of a Responses API event's data (a JSON object with
 * that member, a whole number from 0), or -1: what an error event written
 * after it counts on from. */
apr_int64_t oaip_error_sse_sequence_of(const char *data, apr_size_t len);

#endif
