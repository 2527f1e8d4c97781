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
    oaip_refusal refusal; /* when !responded: the error to answer with */
} oaip_upstream_outcome;

/* One request to the upstream, whatever the endpoint. */
typedef struct {
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
} oaip_upstream_request;

/* Sends `req` with its key's header line and relays the answer: a stream
 * chunk by chunk with a flush each, anything else whole, with the
 * upstream's status, content type and pass-through headers. Applies the
 * timeouts and heartbeats of `conf`; writes the request's record
 * (httpd/request_record.h): outcome, upstream status, first byte, usage. */
void oaip_upstream_forward(request_rec *r, const oaip_dir_conf *conf,
                           const oaip_upstream_request *req,
                           oaip_upstream_outcome *outcome);

#endif
