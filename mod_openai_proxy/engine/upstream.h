/* The libcurl engine: one upstream exchange per request, its answer streamed
 * or relayed to the client through the output filters. */
#ifndef OAIP_UPSTREAM_H
#define OAIP_UPSTREAM_H

#include <httpd.h>

#include "core/errors.h"
#include "core/request.h"
#include "httpd/config.h"

/* Once per server start, before the MPM forks (post_config). */
apr_status_t oaip_upstream_global_init(apr_pool_t *pconf, server_rec *s);

/* Once per child process: the pool of reusable easy handles. */
void oaip_upstream_child_init(apr_pool_t *pchild, server_rec *s);

/* Where an exchange ended up (how, what it cost: the request's record). */
typedef struct {
    int responded;        /* something was sent to the client */
    int client_gone;      /* the client left before the answer's end */
    oaip_refusal refusal; /* when !responded: the error to answer with */
} oaip_upstream_outcome;

/* Most attempts of one exchange: a policy that keeps answering "again"
 * stops here. */
#define OAIP_UPSTREAM_MAX_ATTEMPTS                                                       \
    16 /* a route of 8 backends, each taking back a field */
#define OAIP_UPSTREAM_MAX_OFFERED ((apr_size_t)64 * 1024)

/* What an attempt got, offered to the request's `again` policy before
 * any byte of it reaches the client (README "Second attempts"). Only
 * attempts after which the upstream cannot be generating are offered. */
typedef enum {
    /* a whole non-2xx answer, held back: nothing was generated */
    OAIP_ATTEMPT_ANSWERED,
    /* no connection (DNS, TCP connect, TLS handshake, connect timeout): the
     * request never left */
    OAIP_ATTEMPT_NOT_SENT,
    /* the request was sent but no byte of an answer came within the
     * first-byte timeout: the upstream may be generating, so this is
     * offered only when the request asks for it (offer_first_byte_timeout) */
    OAIP_ATTEMPT_TIMED_OUT
} oaip_attempt_kind;

typedef struct {
    oaip_attempt_kind kind;
    int number;               /* 1 for the first attempt */
    long status;              /* ANSWERED: the upstream's status */
    const char *content_type; /* ANSWERED: its Content-Type; may be NULL */
    /* ANSWERED: the answer, keys masked; NULL when it is larger than
     * OAIP_UPSTREAM_MAX_OFFERED (error answers are a few hundred bytes) */
    const char *body;
    apr_size_t body_len;
    /* ANSWERED: the headers the proxy passes on (Retry-After,
     * x-ratelimit-*...), keys masked; never NULL */
    const apr_table_t *headers;
} oaip_attempt;

typedef struct oaip_upstream_request oaip_upstream_request;

/* A retry policy: the request of the next attempt (another body, another
 * URL, another key), or NULL to give the client what `attempt` got. */
typedef const oaip_upstream_request *(*oaip_upstream_again)(void *ctx, request_rec *r,
                                                            const oaip_attempt *attempt);

/* One request to the upstream, whatever the endpoint. */
struct oaip_upstream_request {
    const char *url;          /* with the configured query, never the client's */
    const char *auth_line;    /* the key's header line (core/header_check.h) */
    int post;                 /* 0: GET */
    const char *content_type; /* of `body`; NULL: no body */
    const char *body;
    apr_size_t body_len;
    int stream;        /* the client asked for a stream (heartbeats apply) */
    int hide_usage;    /* the proxy asked for the usage chunk: keep it back */
    const char *model; /* for the debug log; may be NULL */
    /* the endpoint's shape of the SSE error events the proxy writes into a
     * stream that started (core/errors.h) */
    oaip_sse_error_shape error_events;
    /* asked after an attempt that may be sent again (see oaip_attempt);
     * NULL: one attempt */
    oaip_upstream_again again;
    void *again_ctx;
    /* offer an attempt whose first byte timed out to `again` (an operator's
     * choice: the upstream may still be generating) */
    int offer_first_byte_timeout;
    /* keys besides the configured one and the client's that no answer may
     * show (const char *; e.g. every backend's of a route), read from the
     * first request only; may be NULL */
    const apr_array_header_t *secret_keys;
};

/* Sends `req` with its key's header line and relays the answer: a stream
 * chunk by chunk with a flush each, anything else whole, with the
 * upstream's status, content type and pass-through headers. Applies the
 * timeouts and heartbeats of `conf`; writes the request's record
 * (httpd/request_record.h): outcome, upstream status, first byte, usage,
 * attempts. An attempt that got a whole error answer, or no connection,
 * is offered to req->again before anything of it is relayed; when that
 * returns a request, it is sent instead (on the same relay: heartbeats
 * that went out stay the stream's), up to OAIP_UPSTREAM_MAX_ATTEMPTS.
 * The record and the client see the last attempt only. */
void oaip_upstream_forward(request_rec *r, const oaip_dir_conf *conf,
                           const oaip_upstream_request *req,
                           oaip_upstream_outcome *outcome);

#endif
