/* What every process of the server knows of each OpenAIProxyBackend: the
 * attempts in flight (least-busy), until when it cools down after a
 * failure, and its counters for the status page. One slot per backend in
 * one block of shared memory, made in post_config (before the MPM forks,
 * so every child has it), changed with atomics only. They start at zero
 * when httpd (re)starts. */
#ifndef OAIP_BACKEND_STATE_H
#define OAIP_BACKEND_STATE_H

#include <httpd.h>
#include <jansson.h>

#include "core/sse.h"
#include "httpd/config.h"

/* Why a backend failed a request (the status page's failures by cause). */
typedef enum {
    OAIP_BACKEND_FAILED_CONNECT, /* DNS, TCP, TLS: never sent */
    OAIP_BACKEND_FAILED_TIMEOUT, /* no first byte in time */
    OAIP_BACKEND_FAILED_429,     /* rate limited */
    OAIP_BACKEND_FAILED_5XX,     /* a server error */
    OAIP_BACKEND_FAILED_OTHER,   /* another status of OpenAIProxyFailover */
    OAIP_BACKEND_FAILED__COUNT
} oaip_backend_failure;

/* post_config: a slot for every backend of every server. */
apr_status_t oaip_backend_state_post_config(apr_pool_t *pconf, server_rec *s);

/* An attempt goes to / is done with `b` (requests, in flight). */
void oaip_backend_attempt_begin(const oaip_backend *b);
void oaip_backend_attempt_end(const oaip_backend *b);

/* Attempts in flight to `b` over every process. */
apr_uint32_t oaip_backend_in_flight(const oaip_backend *b);

/* `b` failed an attempt: counted; skipped for `cooldown` from now (0: not
 * skipped), unless it already cools down longer. */
void oaip_backend_failed(const oaip_backend *b, oaip_backend_failure cause,
                         apr_interval_time_t cooldown);

/* Whether `b` cools down at `now`. */
int oaip_backend_cooling(const oaip_backend *b, apr_time_t now);

/* `b` gave the client its answer, with this usage (-1: none). */
void oaip_backend_answered(const oaip_backend *b, const oaip_usage *usage);

/* The status page: a JSON array of one object per backend; the Prometheus
 * lines. */
json_t *oaip_backend_state_json(void);
void oaip_backend_state_prometheus(request_rec *r);

#endif
