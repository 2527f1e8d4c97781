/* The client side of an exchange: the response head, streamed chunks with a
 * flush each, SSE comments and error events, whole answers. */
#ifndef OAIP_RELAY_H
#define OAIP_RELAY_H

#include <httpd.h>

typedef struct {
    request_rec *r;
    apr_bucket_brigade *bb;
    int committed;         /* a stream head went out: status and headers are final */
    int client_gone;       /* a write failed or the connection was closed */
    apr_size_t bytes;      /* body bytes handed to the output filters */
    char tail[4];          /* the last bytes sent, to find SSE event boundaries */
    apr_time_t last_write; /* of the last flush */
    int staged;            /* bytes or a head wait for the next flush */
} oaip_relay;

void oaip_relay_init(oaip_relay *relay, request_rec *r);

/* Sends the head of an event stream: `status`, `content_type`, `headers`
 * (may be NULL), no-cache, no compression, no proxy buffering. */
void oaip_relay_start_stream(oaip_relay *relay, int status, const char *content_type,
                             apr_table_t *headers);

/* Sends the head of an answer passed through as it comes (no
 * Content-Length: libcurl decodes what was compressed). */
void oaip_relay_start_body(oaip_relay *relay, int status, const char *content_type,
                           apr_table_t *headers);

/* Adds `len` bytes (copied) to what the next flush sends: what arrives
 * together goes out in one write. */
void oaip_relay_stage(oaip_relay *relay, const char *data, apr_size_t len);

/* The next flush sends the head (after oaip_relay_start_stream) even with
 * no body byte yet. */
void oaip_relay_stage_head(oaip_relay *relay);

/* Sends what is staged and flushes; nothing staged, nothing done. Returns
 * 0 once the client is gone. */
int oaip_relay_flush(oaip_relay *relay);

/* Stages `len` bytes and flushes. Returns 0 once the client is gone. */
int oaip_relay_write(oaip_relay *relay, const char *data, apr_size_t len);

/* Passes a brigade of data to the client and flushes. */
void oaip_relay_write_brigade(oaip_relay *relay, apr_bucket_brigade *data);

/* Whether what was sent so far ends between two SSE events, where a comment
 * or an event of our own may go without corrupting the upstream's. */
int oaip_relay_at_event_boundary(const oaip_relay *relay);

/* Ends the stream with `event` (an SSE event), closing a cut event first. */
void oaip_relay_end_with_event(oaip_relay *relay, const char *event);

/* Sends a whole answer with a Content-Length. */
void oaip_relay_whole(oaip_relay *relay, int status, const char *content_type,
                      apr_table_t *headers, apr_bucket_brigade *body, apr_off_t len);

/* Ends an answer passed through whose upstream broke after its head went
 * out: the client sees it cut (no last chunk, the connection closed), not
 * an error written into its bytes. */
void oaip_relay_break(oaip_relay *relay);

/* Whether the client closed its connection, noticed without writing: for
 * the long silences while the upstream thinks. HTTP/1 only; on HTTP/2,
 * mod_http2 sets c->aborted when the stream is reset. */
int oaip_relay_client_hung_up(oaip_relay *relay);

#endif
