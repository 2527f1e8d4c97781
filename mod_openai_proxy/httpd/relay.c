#include "httpd/relay.h"

#include <apr_portable.h>
#include <apr_strings.h>
#include <http_connection.h>
#include <http_core.h>
#include <http_protocol.h>
#include <poll.h>
#include <sys/socket.h>
#include <util_filter.h>

#include "mod_openai_proxy.h"

void oaip_relay_init(oaip_relay *relay, request_rec *r)
{
    memset(relay, 0, sizeof(*relay));
    relay->r = r;
    relay->bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    relay->last_write = apr_time_now();
}

void oaip_relay_start_body(oaip_relay *relay, int status, const char *content_type,
                           apr_table_t *headers)
{
    request_rec *r = relay->r;

    r->status = status;
    ap_set_content_type(r, content_type);
    if (headers != NULL) {
        apr_table_overlap(r->headers_out, headers, APR_OVERLAP_TABLES_SET);
    }
    apr_table_unset(r->headers_out, "Content-Length");
    relay->committed = 1;
}

void oaip_relay_start_stream(oaip_relay *relay, int status, const char *content_type,
                             apr_table_t *headers)
{
    request_rec *r = relay->r;

    oaip_relay_start_body(relay, status, content_type, headers);
    apr_table_setn(r->headers_out, "Cache-Control", "no-cache");
    apr_table_setn(r->headers_out, "X-Accel-Buffering", "no");
    /* compression would hold chunks back until its buffer fills */
    apr_table_setn(r->subprocess_env, "no-gzip", "1");
    apr_table_setn(r->subprocess_env, "no-brotli", "1");
}

static void remember_tail(oaip_relay *relay, const char *data, apr_size_t len)
{
    apr_size_t keep = sizeof(relay->tail);

    if (len >= keep) {
        memcpy(relay->tail, data + len - keep, keep);
    } else {
        memmove(relay->tail, relay->tail + len, keep - len);
        memcpy(relay->tail + keep - len, data, len);
    }
}

void oaip_relay_stage(oaip_relay *relay, const char *data, apr_size_t len)
{
    if (relay->client_gone || len == 0) {
        return;
    }
    /* copied, as it is: the caller's buffer (libcurl's) is reused before
     * the flush, and an 8 KB heap bucket per piece would stay in the
     * connection's allocator for the length of a stream */
    APR_BRIGADE_INSERT_TAIL(
        relay->bb,
        apr_bucket_heap_create(data, len, NULL, relay->r->connection->bucket_alloc));
    relay->staged = 1;
    relay->bytes += len;
    remember_tail(relay, data, len);
}

void oaip_relay_stage_head(oaip_relay *relay)
{
    relay->staged = 1;
}

int oaip_relay_flush(oaip_relay *relay)
{
    apr_status_t rv;

    if (relay->client_gone || relay->r->connection->aborted) {
        apr_brigade_cleanup(relay->bb);
        relay->client_gone = 1;
        return 0;
    }
    if (!relay->staged) {
        return 1;
    }
    relay->staged = 0;
    APR_BRIGADE_INSERT_TAIL(relay->bb,
                            apr_bucket_flush_create(relay->r->connection->bucket_alloc));
    rv = ap_pass_brigade(relay->r->output_filters, relay->bb);
    apr_brigade_cleanup(relay->bb);
    if (rv != APR_SUCCESS || relay->r->connection->aborted) {
        relay->client_gone = 1;
        return 0;
    }
    relay->last_write = apr_time_now();
    return 1;
}

int oaip_relay_write(oaip_relay *relay, const char *data, apr_size_t len)
{
    if (relay->client_gone || relay->r->connection->aborted) {
        relay->client_gone = 1;
        return 0;
    }
    oaip_relay_stage(relay, data, len);
    return oaip_relay_flush(relay);
}

void oaip_relay_write_brigade(oaip_relay *relay, apr_bucket_brigade *data)
{
    apr_off_t len = 0;

    if (!oaip_relay_flush(relay)) {
        apr_brigade_cleanup(data);
        return;
    }
    apr_brigade_length(data, 0, &len);
    APR_BRIGADE_INSERT_TAIL(data,
                            apr_bucket_flush_create(relay->r->connection->bucket_alloc));
    if (ap_pass_brigade(relay->r->output_filters, data) != APR_SUCCESS) {
        relay->client_gone = 1;
    }
    apr_brigade_cleanup(data);
    relay->bytes += (apr_size_t)len;
}

int oaip_relay_at_event_boundary(const oaip_relay *relay)
{
    return relay->bytes == 0 || memcmp(relay->tail + 2, "\n\n", 2) == 0 ||
           memcmp(relay->tail, "\r\n\r\n", 4) == 0;
}

void oaip_relay_end_with_event(oaip_relay *relay, const char *event)
{
    if (!oaip_relay_at_event_boundary(relay)) {
        oaip_relay_write(relay, "\n\n", 2);
    }
    oaip_relay_write(relay, event, strlen(event));
}

void oaip_relay_whole(oaip_relay *relay, int status, const char *content_type,
                      apr_table_t *headers, apr_bucket_brigade *body, apr_off_t len)
{
    request_rec *r = relay->r;

    r->status = status;
    ap_set_content_type(r, content_type);
    if (headers != NULL) {
        apr_table_overlap(r->headers_out, headers, APR_OVERLAP_TABLES_SET);
    }
    ap_set_content_length(r, len);
    APR_BRIGADE_INSERT_TAIL(body, apr_bucket_eos_create(r->connection->bucket_alloc));
    if (ap_pass_brigade(r->output_filters, body) != APR_SUCCESS) {
        relay->client_gone = 1;
    }
    apr_brigade_cleanup(body);
}

void oaip_relay_break(oaip_relay *relay)
{
    request_rec *r = relay->r;
    conn_rec *c = r->connection;

    if (relay->client_gone || c->aborted) {
        return;
    }
    oaip_relay_flush(relay);
    /* as mod_proxy's ap_proxy_backend_broke: the chunk filter leaves out
     * the last chunk, and the connection is closed after this response */
    r->no_cache = 1;
    APR_BRIGADE_INSERT_TAIL(relay->bb, ap_bucket_error_create(HTTP_BAD_GATEWAY, NULL,
                                                              r->pool, c->bucket_alloc));
    APR_BRIGADE_INSERT_TAIL(relay->bb, apr_bucket_eos_create(c->bucket_alloc));
    ap_pass_brigade(r->output_filters, relay->bb);
    apr_brigade_cleanup(relay->bb);
}

int oaip_relay_client_hung_up(oaip_relay *relay)
{
    conn_rec *c = relay->r->connection;
    apr_socket_t *sock;
    apr_os_sock_t fd;
    struct pollfd pfd;
    char byte;

    if (relay->client_gone || c->aborted) {
        return relay->client_gone = 1;
    }
    if (c->master != NULL || (sock = ap_get_conn_socket(c)) == NULL ||
        apr_os_sock_get(&fd, sock) != APR_SUCCESS) {
        return 0;
    }
    pfd.fd = fd;
    pfd.events = POLLIN | POLLRDHUP;
    pfd.revents = 0;
    if (poll(&pfd, 1, 0) <= 0) {
        return 0;
    }
    /* readable with data is a pipelined request, not a hang-up */
    if ((pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)) ||
        recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0) {
        relay->client_gone = 1;
    }
    return relay->client_gone;
}
