#include "upstream.h"

#include <apr_strings.h>
#include <http_connection.h>
#include <http_protocol.h>
#include <http_request.h>
#include <util_filter.h>

#include "curl_pool.h"
#include "mod_openai_proxy.h"

/* A non-streamed answer larger than this is not relayed (chat answers are a
 * few KiB; this only stops a broken upstream from eating memory). */
#define MAX_BUFFERED_ANSWER ((apr_size_t)64 * 1024 * 1024)

typedef enum { RELAY_UNDECIDED, RELAY_STREAM, RELAY_BUFFER } relay_mode;

typedef struct {
    request_rec *r;
    apr_bucket_brigade *bb;
    long status; /* of the last status line seen */
    const char *content_type;
    apr_table_t *pass_headers;
    relay_mode mode;
    apr_size_t buffered;
    int client_gone;
    int answer_too_large;
    apr_size_t bytes_relayed;
} exchange;

apr_status_t oaip_upstream_global_init(apr_pool_t *pconf, server_rec *s)
{
    apr_status_t rv = oaip_curl_global_init(pconf);

    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, "curl_global_init failed");
    }
    return rv;
}

void oaip_upstream_child_init(apr_pool_t *pchild, server_rec *s)
{
    apr_status_t rv = oaip_curl_pool_child_init(pchild);

    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     "cannot set up the libcurl handle pool");
    }
}

static int is_passed_header(const char *name, apr_size_t len)
{
    static const char *const exact[] = {"x-request-id", "openai-processing-ms",
                                        "openai-version", "retry-after"};
    apr_size_t i;

    if (len > 12 && strncasecmp(name, "x-ratelimit-", 12) == 0) {
        return 1;
    }
    for (i = 0; i < sizeof(exact) / sizeof(exact[0]); i++) {
        if (strlen(exact[i]) == len && strncasecmp(name, exact[i], len) == 0) {
            return 1;
        }
    }
    return 0;
}

/* libcurl hands over each header line, status lines included (one per
 * interim 1xx answer too): only the last response's headers count. */
static size_t on_header(char *line, size_t size, size_t nitems, void *userdata)
{
    exchange *x = userdata;
    size_t len = size * nitems;
    const char *colon;
    const char *value, *end;

    if (len > 5 && strncmp(line, "HTTP/", 5) == 0) {
        const char *sp = memchr(line, ' ', len);
        x->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        x->content_type = NULL;
        apr_table_clear(x->pass_headers);
        return len;
    }
    colon = memchr(line, ':', len);
    if (colon == NULL) {
        return len;
    }
    value = colon + 1;
    end = line + len;
    while (value < end && (*value == ' ' || *value == '\t')) {
        value++;
    }
    while (end > value && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ')) {
        end--;
    }
    if ((size_t)(colon - line) == 12 && strncasecmp(line, "content-type", 12) == 0) {
        x->content_type = apr_pstrndup(x->r->pool, value, (apr_size_t)(end - value));
    } else if (is_passed_header(line, (apr_size_t)(colon - line))) {
        apr_table_addn(x->pass_headers,
                       apr_pstrndup(x->r->pool, line, (apr_size_t)(colon - line)),
                       apr_pstrndup(x->r->pool, value, (apr_size_t)(end - value)));
    }
    return len;
}

static int is_event_stream(const char *content_type)
{
    return content_type != NULL &&
           strncasecmp(content_type, "text/event-stream", 17) == 0;
}

/* Status, content type and pass-through headers of the upstream's answer. */
static void set_response_head(exchange *x)
{
    request_rec *r = x->r;

    r->status = (int)x->status;
    ap_set_content_type(r, x->content_type ? x->content_type : "application/json");
    apr_table_overlap(r->headers_out, x->pass_headers, APR_OVERLAP_TABLES_SET);
}

static void start_stream(exchange *x)
{
    request_rec *r = x->r;

    set_response_head(x);
    apr_table_setn(r->headers_out, "Cache-Control", "no-cache");
    apr_table_setn(r->headers_out, "X-Accel-Buffering", "no");
    apr_table_unset(r->headers_out, "Content-Length");
    /* compression would hold back chunks until its buffer fills */
    apr_table_setn(r->subprocess_env, "no-gzip", "1");
    apr_table_setn(r->subprocess_env, "no-brotli", "1");
}

static int client_is_gone(exchange *x, apr_status_t rv)
{
    if (rv != APR_SUCCESS || x->r->connection->aborted) {
        x->client_gone = 1;
    }
    return x->client_gone;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    exchange *x = userdata;
    size_t len = size * nmemb;
    apr_bucket_alloc_t *ba = x->r->connection->bucket_alloc;
    apr_status_t rv;

    if (x->mode == RELAY_UNDECIDED) {
        int streaming =
            x->status >= 200 && x->status < 300 && is_event_stream(x->content_type);
        x->mode = streaming ? RELAY_STREAM : RELAY_BUFFER;
        if (streaming) {
            start_stream(x);
        }
    }
    if (x->mode == RELAY_BUFFER) {
        if (x->buffered + len > MAX_BUFFERED_ANSWER) {
            x->answer_too_large = 1;
            return 0;
        }
        x->buffered += len;
        apr_brigade_write(x->bb, NULL, NULL, data, len);
        return len;
    }
    if (client_is_gone(x, APR_SUCCESS)) {
        return 0;
    }
    /* transient: the core output filter copies only what it cannot send now */
    APR_BRIGADE_INSERT_TAIL(x->bb, apr_bucket_transient_create(data, len, ba));
    APR_BRIGADE_INSERT_TAIL(x->bb, apr_bucket_flush_create(ba));
    rv = ap_pass_brigade(x->r->output_filters, x->bb);
    apr_brigade_cleanup(x->bb);
    if (client_is_gone(x, rv)) {
        return 0;
    }
    x->bytes_relayed += len;
    return len;
}

/* About once a second while the transfer runs, even while the upstream is
 * silent: a non-zero return aborts the transfer. */
static int on_progress(void *userdata, curl_off_t dltotal, curl_off_t dlnow,
                       curl_off_t ultotal, curl_off_t ulnow)
{
    exchange *x = userdata;

    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    return client_is_gone(x, APR_SUCCESS);
}

static struct curl_slist *request_headers(const char *auth_header)
{
    struct curl_slist *list = NULL, *next;
    const char *lines[] = {"Content-Type: application/json", "Expect:", auth_header};
    apr_size_t i;

    for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        next = curl_slist_append(list, lines[i]);
        if (next == NULL) {
            curl_slist_free_all(list);
            return NULL;
        }
        list = next;
    }
    return list;
}

static void configure(CURL *h, exchange *x, const oaip_dir_conf *conf,
                      const oaip_chat_request *req, struct curl_slist *headers,
                      char *errbuf)
{
    curl_easy_setopt(h, CURLOPT_URL, oaip_conf_chat_url(conf));
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "mod_openai_proxy/" OAIP_VERSION);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (conf->ca_file != NULL) {
        curl_easy_setopt(h, CURLOPT_CAINFO, conf->ca_file);
    }
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, x);
}

static oaip_error_kind classify_failure(CURLcode code)
{
    switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
        return OAIP_ERR_UPSTREAM_TIMEOUT;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
        return OAIP_ERR_UPSTREAM_UNREACHABLE;
    default:
        return OAIP_ERR_UPSTREAM_INVALID;
    }
}

/* Ends a stream that the upstream broke off with an SSE error event, so the
 * client can tell a cut answer from a finished one. */
static void end_stream_with_error(exchange *x, oaip_error_kind kind, const char *detail)
{
    apr_bucket_alloc_t *ba = x->r->connection->bucket_alloc;
    const char *event = oaip_error_sse_event(x->r->pool, kind, detail);

    /* an event cut in the middle would swallow ours: close it first */
    APR_BRIGADE_INSERT_TAIL(x->bb, apr_bucket_immortal_create("\n\n", 2, ba));
    APR_BRIGADE_INSERT_TAIL(x->bb,
                            apr_bucket_pool_create(event, strlen(event), x->r->pool, ba));
    APR_BRIGADE_INSERT_TAIL(x->bb, apr_bucket_flush_create(ba));
    ap_pass_brigade(x->r->output_filters, x->bb);
    apr_brigade_cleanup(x->bb);
}

static void relay_buffered(exchange *x)
{
    set_response_head(x);
    ap_set_content_length(x->r, (apr_off_t)x->buffered);
    APR_BRIGADE_INSERT_TAIL(x->bb, apr_bucket_eos_create(x->r->connection->bucket_alloc));
    ap_pass_brigade(x->r->output_filters, x->bb);
    apr_brigade_cleanup(x->bb);
}

static void finish(exchange *x, CURLcode code, const char *errbuf,
                   oaip_upstream_outcome *outcome)
{
    request_rec *r = x->r;
    const char *reason = curl_easy_strerror(code);

    if (x->client_gone) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                      "client went away after %" APR_SIZE_T_FMT
                      " bytes; upstream transfer stopped",
                      x->bytes_relayed);
        outcome->responded = 1;
        return;
    }
    if (code == CURLE_OK && x->mode != RELAY_STREAM) {
        if (x->status < 200 || x->status > 599) {
            outcome->error = OAIP_ERR_UPSTREAM_INVALID;
            outcome->error_detail = "The upstream API sent an invalid response";
            return;
        }
        relay_buffered(x);
        outcome->responded = 1;
        return;
    }
    if (code == CURLE_OK) {
        outcome->responded = 1;
        return;
    }
    ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "upstream request failed: %s (%s)", reason,
                  errbuf[0] ? errbuf : "no detail");
    if (x->answer_too_large) {
        outcome->error = OAIP_ERR_UPSTREAM_INVALID;
        outcome->error_detail = "The upstream API's answer is too large to relay";
        return;
    }
    outcome->error = classify_failure(code);
    outcome->error_detail =
        apr_psprintf(r->pool, "%s (%s)",
                     outcome->error == OAIP_ERR_UPSTREAM_TIMEOUT
                         ? "The upstream API did not answer in time"
                     : outcome->error == OAIP_ERR_UPSTREAM_UNREACHABLE
                         ? "Could not reach the upstream API"
                         : "The upstream API failed to send a valid response",
                     reason);
    if (x->mode == RELAY_STREAM) {
        end_stream_with_error(x, outcome->error, outcome->error_detail);
        outcome->responded = 1;
    }
}

void oaip_upstream_chat(request_rec *r, const oaip_dir_conf *conf,
                        const char *auth_header, const oaip_chat_request *req,
                        oaip_upstream_outcome *outcome)
{
    char errbuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *headers;
    exchange x;
    CURL *h;
    CURLcode code;

    memset(outcome, 0, sizeof(*outcome));
    memset(&x, 0, sizeof(x));
    x.r = r;
    x.bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    x.pass_headers = apr_table_make(r->pool, 12);

    headers = request_headers(auth_header);
    h = oaip_curl_acquire();
    if (headers == NULL || h == NULL) {
        curl_slist_free_all(headers);
        oaip_curl_release(h);
        outcome->error = OAIP_ERR_INTERNAL;
        outcome->error_detail = "Out of memory";
        return;
    }
    configure(h, &x, conf, req, headers, errbuf);
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "upstream POST %s model=%s stream=%d",
                  oaip_conf_chat_url(conf), req->model ? req->model : "(none)",
                  req->stream);
    code = curl_easy_perform(h);
    /* the handle keeps pointers to this request's memory: drop them before
     * another thread may pick it up */
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    curl_slist_free_all(headers);
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "upstream answered %ld (%s), curl: %s",
                  x.status, x.mode == RELAY_STREAM ? "stream" : "whole",
                  curl_easy_strerror(code));
    finish(&x, code, errbuf, outcome);
    oaip_curl_release(h);
}
