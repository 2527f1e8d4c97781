#include "engine/upstream.h"

#include <apr_atomic.h>
#include <apr_portable.h>
#include <apr_strings.h>
#include <http_core.h>
#include <http_protocol.h>
#include <http_request.h>

#include "core/buffer.h"
#include "core/header_check.h"
#include "core/secret_mask.h"
#include "core/sse.h"
#include "core/sse_framer.h"
#include "core/token_estimate.h"
#include "core/version.h"
#include "engine/curl_pool.h"
#include "engine/transfer.h"
#include "httpd/relay.h"
#include "httpd/request_record.h"
#include "httpd/stats.h"
#include "mod_openai_proxy.h"

/* A non-streamed answer larger than this is not relayed (chat answers are a
 * few KiB; this only stops a broken upstream from eating memory). */
#define MAX_BUFFERED_ANSWER ((apr_size_t)64 * 1024 * 1024)

#define HANGUP_CHECK_INTERVAL apr_time_from_msec(250)

/* How long a stream that sent data: [DONE] may take to end its body: some
 * servers keep the connection open after it, and the client would wait
 * for the end of the response until the idle timeout, then get an error
 * event after a stream that was complete. */
#define AFTER_DONE_GRACE apr_time_from_sec(2)

/* Where an exchange is. It changes in enter() only; the body's state is
 * chosen once, when the upstream's head is complete. */
typedef enum {
    X_CONNECTING, /* no byte of an answer yet */
    X_HEAD,       /* a status line came; its headers are coming */
    X_EVENTS,     /* a 2xx event stream: relayed event by event */
    X_PASSING,    /* a 2xx answer that is neither SSE nor JSON (audio, images,
                   * files): passed through as it comes */
    X_BUFFERING,  /* a JSON answer the proxy reads, or an error answer: held
                   * whole (masked, offered for a second attempt) */
    X_DONE,       /* the upstream's answer ended */
    X_FAILED,     /* the transfer failed or was stopped (why: timed_out,
                   * bad_content_type, answer_too_large, the curl code) */
    X_CLIENT_GONE
} exchange_state;
typedef enum {
    NO_TIMEOUT,
    FIRST_BYTE_TIMEOUT,
    IDLE_TIMEOUT,
    ENDED_AFTER_DONE /* silent after [DONE]: ended by the proxy, no failure */
} timeout_kind;
/* the header field the last header line set, which an obs-fold line would
 * continue */
typedef enum { FIELD_OTHER, FIELD_CONTENT_TYPE, FIELD_PASSED } field_kind;

typedef struct {
    request_rec *r;
    const oaip_dir_conf *conf;
    int stream_requested;
    oaip_relay relay;
    /* the upstream's answer */
    long status; /* of the last status line seen; 0 before the first byte */
    const char *content_type;
    apr_table_t *pass_headers;
    exchange_state state;
    /* the answer has a Content-Encoding: its head waits for the first
     * decoded byte, so that one libcurl cannot decode is still a JSON 502 */
    int encoded;
    int head_waits;
    /* the state the body was in when the exchange ended (for the record) */
    exchange_state body;
    apr_bucket_brigade *buffer; /* a whole (non-streamed) answer */
    apr_size_t buffered;
    int answer_too_large;
    /* what the answer reported, for the access log */
    oaip_usage usage;
    oaip_sse_framer *events;
    /* for an answer without usage: what was generated */
    oaip_content_count content;
    apr_int64_t answer_tokens;
    /* the usage chunk the proxy asked for is held back from the client, so
     * a stream is relayed event by event, the unfinished one kept here */
    /* the usage chunk the proxy asked for is kept back from the client */
    int hide_usage;
    /* bytes of a UTF-8 byte order mark matched at the body's start (held
     * back), or BOM_DECIDED */
    int bom_seen;
    apr_time_t first_byte;
    /* timing */
    apr_time_t started;
    apr_time_t last_upstream_byte;
    apr_time_t last_hangup_check; /* without the client's socket (HTTP/2) */
    timeout_kind timed_out;
    /* the keys this exchange sent (configured, or the client's own): masked
     * in the upstream's error answers and in the headers passed on */
    oaip_secret_mask *mask;
    field_kind last_field;
    const char *last_field_name;
    int bad_content_type; /* the transfer was stopped: answered 502 */
    /* the error events the proxy writes: the endpoint's shape, and for the
     * Responses API the sequence_number of the last event passed on and the
     * number of events (for an upstream that numbers none) */
    oaip_sse_error_shape error_events;
    apr_int64_t last_sequence; /* -1: none yet */
    int saw_done;              /* a data: [DONE] event was relayed */
    apr_int64_t events_passed;
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

static apr_status_t free_headers(void *list)
{
    curl_slist_free_all(list);
    return APR_SUCCESS;
}

/* The request headers: no "Expect: 100-continue" wait, no Accept-Encoding
 * (libcurl decodes what comes compressed anyway, see configure), the key's
 * line and the body's Content-Type, freed with the request. NULL: no
 * memory. */
static struct curl_slist *request_headers(apr_pool_t *pool,
                                          const oaip_upstream_request *req)
{
    const char *lines[] = {
        "Expect:", "Accept-Encoding:", req->auth_line,
        req->content_type ? apr_pstrcat(pool, "Content-Type: ", req->content_type, NULL)
                          : NULL};
    struct curl_slist *list = NULL, *next;
    apr_size_t i;

    for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        if (lines[i] == NULL) {
            continue;
        }
        next = curl_slist_append(list, lines[i]);
        if (next == NULL) {
            curl_slist_free_all(list);
            return NULL;
        }
        list = next;
    }
    apr_pool_cleanup_register(pool, list, free_headers, apr_pool_cleanup_null);
    return list;
}

static const char *masked_copy(exchange *x, const char *value, apr_size_t len)
{
    char *copy = apr_pstrmemdup(x->r->pool, value, len);

    oaip_secret_mask_apply(x->mask, copy, len);
    return copy;
}

/* An obs-fold line continues the field before it: that field is not
 * relayed cut short (a Content-Type is refused, see below). */
static int drop_folded_field(exchange *x)
{
    if (x->last_field == FIELD_CONTENT_TYPE) {
        return 0;
    }
    if (x->last_field == FIELD_PASSED) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, x->r,
                      "dropped the upstream's folded %s header",
                      ap_escape_logitem(x->r->pool, x->last_field_name));
        apr_table_unset(x->pass_headers, x->last_field_name);
    }
    x->last_field = FIELD_OTHER;
    return 1;
}

/* A bad Content-Type stops the transfer (the answer becomes a JSON 502):
 * the body's meaning, streamed or whole, depends on it. */
static size_t refuse_content_type(exchange *x)
{
    x->bad_content_type = 1;
    return 0;
}

static void choose_body(exchange *x);

static void enter(exchange *x, exchange_state state)
{
    x->state = state;
}

/* libcurl hands over each header line, status lines included (one per
 * interim 1xx answer too): only the last response's headers count. A line
 * is split at LF only, so a bare CR or a NUL inside stays in the value;
 * such a value, an overlong one, or one continued by an obs-fold line is
 * never copied into headers_out, where httpd's header filter would turn it
 * into its own HTML 500 without CORS headers. */
static size_t on_header(char *line, size_t size, size_t nitems, void *userdata)
{
    exchange *x = userdata;
    size_t len = size * nitems;
    const char *colon, *value, *end;
    apr_size_t name_len;
    int valid;

    x->last_upstream_byte = apr_time_now();
    if (x->first_byte == 0) {
        x->first_byte = x->last_upstream_byte;
    }
    if (len > 5 && strncmp(line, "HTTP/", 5) == 0) {
        const char *sp = memchr(line, ' ', len);
        x->status = sp ? strtol(sp + 1, NULL, 10) : -1;
        x->content_type = NULL;
        x->encoded = 0;
        enter(x, X_HEAD);
        x->last_field = FIELD_OTHER;
        apr_table_clear(x->pass_headers);
        return len;
    }
    if (x->state != X_HEAD) {
        return len; /* trailers: the head that counts is out or decided */
    }
    if (oaip_header_line_is_fold(line, len)) {
        return drop_folded_field(x) ? len : refuse_content_type(x);
    }
    x->last_field = FIELD_OTHER;
    colon = memchr(line, ':', len);
    if (colon == NULL) {
        if (len <= 2 && x->status >= 200) {
            /* the blank line after a final head: the client has its head
             * now, as mod_proxy_http gives it, not with the first event
             * (a model that thinks for a minute sends none before) */
            choose_body(x);
        }
        return len;
    }
    name_len = (apr_size_t)(colon - line);
    value = colon + 1;
    end = line + len;
    while (value < end && (*value == ' ' || *value == '\t')) {
        value++;
    }
    while (end > value &&
           (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t')) {
        end--;
    }
    valid = oaip_header_value_valid(value, (apr_size_t)(end - value));
    if (name_len == 16 && strncasecmp(line, "content-encoding", 16) == 0) {
        x->encoded =
            !(end - value == 8 && strncasecmp(value, "identity", 8) == 0) && end > value;
    } else if (name_len == 12 && strncasecmp(line, "content-type", 12) == 0) {
        if (!valid) {
            return refuse_content_type(x);
        }
        x->content_type = masked_copy(x, value, (apr_size_t)(end - value));
        x->last_field = FIELD_CONTENT_TYPE;
    } else if (oaip_header_is_passed(line, name_len)) {
        x->last_field_name = apr_pstrmemdup(x->r->pool, line, name_len);
        if (!valid || !oaip_header_name_valid(line, name_len)) {
            ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, x->r,
                          "dropped the upstream's %s header: a control byte in its "
                          "name or value, or a value over %d bytes",
                          ap_escape_logitem(x->r->pool, x->last_field_name),
                          OAIP_MAX_UPSTREAM_HEADER_VALUE);
            return len;
        }
        apr_table_addn(x->pass_headers, x->last_field_name,
                       masked_copy(x, value, (apr_size_t)(end - value)));
        x->last_field = FIELD_PASSED;
    }
    return len;
}

static int is_event_stream(const char *content_type)
{
    return content_type != NULL &&
           strncasecmp(content_type, "text/event-stream", 17) == 0;
}

static const char *content_type_or_json(const exchange *x)
{
    return x->content_type ? x->content_type : "application/json";
}

/* A Responses API stream numbers its events: an error event of the proxy's
 * continues the count. */
static void note_sequence(exchange *x, const oaip_sse_event_facts *facts)
{
    if (x->error_events != OAIP_SSE_ERRORS_RESPONSES || !facts->has_data) {
        return;
    }
    x->events_passed++;
    if (facts->sequence >= 0) {
        x->last_sequence = facts->sequence;
    }
}

/* The sequence_number of an error event written now: one after the last
 * one relayed, and never below the number of events relayed (an upstream
 * that numbers none, or not from 0). */
static apr_int64_t next_sequence(const exchange *x)
{
    apr_int64_t next =
        x->last_sequence < APR_INT64_MAX ? x->last_sequence + 1 : x->last_sequence;

    return next > x->events_passed ? next : x->events_passed;
}

static void add_content(oaip_content_count *to, const oaip_content_count *event)
{
    if (event->events > 0) {
        to->events += event->events;
        to->bytes = to->bytes + event->bytes < OAIP_TOKENS_MAX ? to->bytes + event->bytes
                                                               : OAIP_TOKENS_MAX;
        to->tokens = to->tokens + event->tokens < OAIP_TOKENS_MAX
                         ? to->tokens + event->tokens
                         : OAIP_TOKENS_MAX;
    }
}

/* The one decision per event of a stream: it is passed on as it came,
 * unless it is the usage chunk the proxy asked for itself (hidden). Each
 * event's usage replaces what an earlier one reported: servers put it in
 * a separate last chunk, in the last content chunk, in every chunk
 * (growing: the last report counts, never a sum), under Groq's x_groq, or
 * in the Responses API's response.completed. The content is counted too,
 * for a stream that ends without any (the client left, the upstream
 * ignores stream_options). */
static void on_event(void *ctx, const char *raw, apr_size_t len,
                     const oaip_sse_event_facts *facts)
{
    exchange *x = ctx;

    if (facts != NULL) {
        if (facts->reports_usage) {
            x->usage = facts->usage;
        }
        add_content(&x->content, &facts->content);
        note_sequence(x, facts);
        x->saw_done |= facts->done_marker;
        if (x->hide_usage && facts->usage_chunk) {
            return;
        }
    }
    oaip_relay_stage(&x->relay, raw, len);
}

#define BOM_DECIDED 3
static const char utf8_bom[] = "\xEF\xBB\xBF";

/* A UTF-8 byte order mark before an event stream's first event or a JSON
 * answer is dropped: the SSE standard and RFC 8259 let readers ignore one,
 * but many clients do not ("\xEF\xBB\xBFdata: ..." is no data line to a
 * hand-written SSE parser; Python's json.loads refuses the answer). Other
 * bodies (audio, text) are relayed as they are. */
static int drops_bom(const exchange *x)
{
    return is_event_stream(x->content_type) || x->content_type == NULL ||
           strncasecmp(x->content_type, "application/json", 16) == 0;
}

/* The answers the proxy reads whole: JSON (for its usage), and anything
 * without a type; other successful answers pass through as they come. */
static int read_whole(const exchange *x)
{
    const char *type = x->content_type;

    return type == NULL || strncasecmp(type, "application/json", 16) == 0;
}

/* Once, when the head is complete (or, without one, on the first byte of a
 * body): a successful event stream is relayed event by event, another
 * successful answer that is not JSON passes through as it comes (both with
 * their head sent at once), anything else is held whole. */
static void send_head(exchange *x)
{
    x->head_waits = 0;
    if (x->relay.committed) {
        return; /* heartbeats sent a stream's head: the body is its data */
    }
    if (x->state == X_EVENTS) {
        oaip_relay_start_stream(&x->relay, (int)x->status, x->content_type,
                                x->pass_headers);
    } else {
        oaip_relay_start_body(&x->relay, (int)x->status, x->content_type,
                              x->pass_headers);
    }
    oaip_relay_stage_head(&x->relay);
}

static void choose_body(exchange *x)
{
    int ok = x->status >= 200 && x->status < 300;

    if (ok && is_event_stream(x->content_type)) {
        enter(x, X_EVENTS);
    } else if (ok && !read_whole(x)) {
        enter(x, X_PASSING);
    } else {
        enter(x, X_BUFFERING);
    }
    x->body = x->state;
    x->bom_seen = drops_bom(x) ? 0 : BOM_DECIDED;
    if (x->state == X_BUFFERING) {
        return;
    }
    if (x->encoded) {
        x->head_waits = 1;
        return;
    }
    send_head(x);
}

/* Bytes of the body (decoded: libcurl undoes a Content-Encoding), relayed
 * as they come or kept for the whole answer. 0: stop the transfer. */
static int take_body(exchange *x, const char *data, apr_size_t len)
{
    if (x->head_waits) {
        send_head(x); /* the first decoded byte: the head goes now */
    }
    switch (x->state) {
    case X_EVENTS:
        oaip_sse_framer_feed(x->events, data, len);
        return 1;
    case X_PASSING:
        oaip_relay_stage(&x->relay, data, len);
        return 1;
    default:
        if (x->buffered + len > MAX_BUFFERED_ANSWER) {
            x->answer_too_large = 1;
            return 0;
        }
        x->buffered += len;
        apr_brigade_write(x->buffer, NULL, NULL, data, len);
        return 1;
    }
}

/* The bytes held as the start of a byte order mark were none: they go on. */
static int give_back_bom(exchange *x)
{
    apr_size_t held = (apr_size_t)x->bom_seen;

    x->bom_seen = BOM_DECIDED;
    return held == 0 || take_body(x, utf8_bom, held);
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    exchange *x = userdata;
    size_t len = size * nmemb, skip = 0;

    x->last_upstream_byte = apr_time_now();
    if (x->state == X_CONNECTING || x->state == X_HEAD) {
        choose_body(x); /* a body without the blank line after its head */
    }
    /* a byte order mark, whole or split over reads, is held until it is
     * complete (dropped) or turns out to be none (relayed) */
    while (x->bom_seen < BOM_DECIDED && skip < len) {
        if (data[skip] != utf8_bom[x->bom_seen]) {
            if (!give_back_bom(x)) {
                return 0;
            }
            break;
        }
        x->bom_seen++;
        skip++;
    }
    if (skip < len && !take_body(x, data + skip, len - skip)) {
        return 0;
    }
    return len;
}

/* Heartbeats go into an event stream, or before the upstream's head,
 * never into an answer held whole or passed through. */
static int takes_heartbeats(const exchange *x)
{
    return x->stream_requested && oaip_conf_heartbeat(x->conf) > 0 &&
           x->state != X_BUFFERING && x->state != X_PASSING;
}

/* An SSE comment keeps idle connections of proxies and load balancers in
 * between alive; it may only go between two of the upstream's events. */
static int send_heartbeat(exchange *x, apr_time_t now)
{
    static const char comment[] = ": keep-alive\n\n";

    if (!takes_heartbeats(x) ||
        now - x->relay.last_write < oaip_conf_heartbeat(x->conf) ||
        !oaip_relay_at_event_boundary(&x->relay)) {
        return 1;
    }
    if (!x->relay.committed) {
        /* the upstream's status is not known yet: a failure will become an
         * SSE error event */
        oaip_relay_start_stream(&x->relay, HTTP_OK, "text/event-stream", NULL);
    }
    return oaip_relay_write(&x->relay, comment, sizeof(comment) - 1);
}

/* When the exchange must look at the time again: its first-byte or idle
 * timeout, its next heartbeat, and without the client's socket to watch
 * (HTTP/2), its next look at the connection. */
static apr_interval_time_t idle_allowed(const exchange *x)
{
    apr_interval_time_t idle = oaip_conf_idle_timeout(x->conf);

    return x->saw_done && AFTER_DONE_GRACE < idle ? AFTER_DONE_GRACE : idle;
}

static apr_time_t next_deadline(const exchange *x, int watching_client)
{
    apr_time_t due = x->status == 0 ? x->started + oaip_conf_first_byte_timeout(x->conf)
                                    : x->last_upstream_byte + idle_allowed(x);

    if (takes_heartbeats(x) && x->relay.last_write + oaip_conf_heartbeat(x->conf) < due) {
        due = x->relay.last_write + oaip_conf_heartbeat(x->conf);
    }
    if (!watching_client && x->last_hangup_check + HANGUP_CHECK_INTERVAL < due) {
        due = x->last_hangup_check + HANGUP_CHECK_INTERVAL;
    }
    return due;
}

/* After each wake-up: the timeouts, heartbeats, and (without the client's
 * socket) a look at the connection. 0: stop the transfer. */
static int tick(exchange *x, apr_time_t now, int watching_client)
{
    const oaip_dir_conf *conf = x->conf;

    if (!watching_client && now - x->last_hangup_check >= HANGUP_CHECK_INTERVAL) {
        x->last_hangup_check = now;
        if (oaip_relay_client_hung_up(&x->relay)) {
            return 0;
        }
    }
    if (x->status == 0) {
        if (now - x->started >= oaip_conf_first_byte_timeout(conf)) {
            x->timed_out = FIRST_BYTE_TIMEOUT;
            return 0;
        }
    } else if (now - x->last_upstream_byte >= idle_allowed(x)) {
        x->timed_out = x->saw_done ? ENDED_AFTER_DONE : IDLE_TIMEOUT;
        return 0;
    }
    return send_heartbeat(x, now);
}

static void configure(CURL *h, exchange *x, const oaip_upstream_request *req,
                      struct curl_slist *headers, char *errbuf)
{
    const oaip_dir_conf *conf = x->conf;

    curl_easy_setopt(h, CURLOPT_URL, req->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    if (req->post) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body ? req->body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    } else {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    /* an upstream may compress its answer though nobody asked (the request
     * says no Accept-Encoding): libcurl decodes every encoding it knows, so
     * that neither compressed bytes nor their Content-Encoding reach the
     * client, the Content-Length is the decoded one, and error answers are
     * masked in clear; one it cannot decode fails the transfer (502) */
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(h, CURLOPT_USERAGENT, "mod_openai_proxy/" OAIP_VERSION);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)apr_time_as_msec(oaip_conf_connect_timeout(conf)));
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
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
}

static void fail(oaip_upstream_outcome *outcome, oaip_error_kind kind, const char *detail)
{
    outcome->refusal.kind = kind;
    outcome->refusal.detail = detail;
}

/* "30 seconds", or "500 ms" for a time that is not whole seconds. */
static const char *duration_text(apr_pool_t *p, apr_interval_time_t t)
{
    if (t % APR_USEC_PER_SEC == 0) {
        return apr_psprintf(p, "%" APR_TIME_T_FMT " seconds", apr_time_sec(t));
    }
    return apr_psprintf(p, "%" APR_TIME_T_FMT " ms", apr_time_as_msec(t));
}

static void describe_failure(exchange *x, CURLcode code, oaip_upstream_outcome *outcome)
{
    apr_pool_t *p = x->r->pool;
    const char *reason = curl_easy_strerror(code);

    if (x->timed_out == FIRST_BYTE_TIMEOUT) {
        fail(outcome, OAIP_ERR_UPSTREAM_TIMEOUT,
             apr_psprintf(p, "The upstream API did not answer within %s",
                          duration_text(p, oaip_conf_first_byte_timeout(x->conf))));
    } else if (x->timed_out == IDLE_TIMEOUT) {
        fail(outcome, OAIP_ERR_UPSTREAM_TIMEOUT,
             apr_psprintf(p, "The upstream API fell silent for more than %s",
                          duration_text(p, oaip_conf_idle_timeout(x->conf))));
    } else if (x->bad_content_type) {
        fail(outcome, OAIP_ERR_UPSTREAM_INVALID,
             "The upstream API sent an invalid Content-Type header");
    } else if (x->answer_too_large) {
        fail(outcome, OAIP_ERR_UPSTREAM_INVALID,
             "The upstream API's answer is too large to relay");
    } else if (code == CURLE_OPERATION_TIMEDOUT) {
        fail(outcome, OAIP_ERR_UPSTREAM_TIMEOUT,
             apr_psprintf(p, "Could not connect to the upstream API in time (%s)",
                          reason));
    } else if (code == CURLE_COULDNT_RESOLVE_HOST || code == CURLE_COULDNT_CONNECT ||
               code == CURLE_SSL_CONNECT_ERROR ||
               code == CURLE_PEER_FAILED_VERIFICATION ||
               code == CURLE_SSL_CACERT_BADFILE) {
        fail(outcome, OAIP_ERR_UPSTREAM_UNREACHABLE,
             apr_psprintf(p, "Could not reach the upstream API (%s)", reason));
    } else {
        fail(outcome, OAIP_ERR_UPSTREAM_INVALID,
             apr_psprintf(p, "The upstream API failed to send a valid response (%s)",
                          reason));
    }
}

static void read_whole_usage(exchange *x)
{
    char *body = apr_palloc(x->r->pool, x->buffered);
    apr_size_t len = x->buffered;

    if (apr_brigade_flatten(x->buffer, body, &len) == APR_SUCCESS &&
        !oaip_usage_from_json(body, len, &x->usage)) {
        x->answer_tokens = oaip_content_tokens_of_answer(body, len);
    }
}

/* An error answer may quote the key it was sent: masked whole, in place,
 * before any byte of it is relayed (the length, hence the Content-Length,
 * stays the same). */
static void mask_error_answer(exchange *x)
{
    apr_pool_t *p = x->r->pool;
    apr_size_t len = x->buffered, masked;
    char *body;

    if (len == 0 || oaip_secret_mask_count(x->mask) == 0) {
        return;
    }
    body = apr_palloc(p, len);
    if (apr_brigade_flatten(x->buffer, body, &len) != APR_SUCCESS) {
        len = 0;
    }
    apr_brigade_cleanup(x->buffer);
    masked = oaip_secret_mask_apply(x->mask, body, len);
    APR_BRIGADE_INSERT_TAIL(
        x->buffer, apr_bucket_pool_create(body, len, p, x->buffer->bucket_alloc));
    x->buffered = len;
    if (masked > 0) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, x->r,
                      "masked %" APR_SIZE_T_FMT " bytes of the upstream's %ld answer "
                      "that repeated a key",
                      masked, x->status);
    }
}

/* A complete answer that was not streamed through: relayed whole, or, when
 * heartbeats already committed the stream's head, turned into an SSE error
 * event (a success that is not an event stream is passed on as data). */
static void relay_buffered_answer(exchange *x, oaip_upstream_outcome *outcome)
{
    if (x->status < 200 || x->status > 599) {
        fail(outcome, OAIP_ERR_UPSTREAM_INVALID,
             "The upstream API sent an invalid response");
        return;
    }
    if (x->status < 300 && x->buffered > 0) {
        read_whole_usage(x);
    }
    if (x->status >= 300) {
        mask_error_answer(x);
    }
    if (!x->relay.committed) {
        oaip_relay_whole(&x->relay, (int)x->status, content_type_or_json(x),
                         x->pass_headers, x->buffer, (apr_off_t)x->buffered);
        outcome->responded = 1;
        return;
    }
    if (x->status < 300) {
        /* the upstream ignored "stream": its answer is all the stream has */
        oaip_relay_write_brigade(&x->relay, x->buffer);
    } else {
        char *body = apr_palloc(x->r->pool, x->buffered + 1);
        apr_size_t len = x->buffered;
        apr_brigade_flatten(x->buffer, body, &len);
        /* masked again once parsed and re-encoded: a key the upstream wrote
         * with JSON escapes is plain text by now */
        oaip_relay_end_with_event(
            &x->relay,
            oaip_secret_mask_string(x->r->pool, x->mask,
                                    oaip_error_sse_from_upstream(
                                        x->r->pool, x->error_events, next_sequence(x),
                                        (int)x->status, body, len)));
    }
    outcome->responded = 1;
}

static void finish(exchange *x, CURLcode code, const char *errbuf,
                   oaip_upstream_outcome *outcome)
{
    request_rec *r = x->r;

    if (x->relay.client_gone) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                      "client went away after %" APR_SIZE_T_FMT
                      " bytes; upstream transfer stopped",
                      x->relay.bytes);
        outcome->responded = outcome->client_gone = 1;
        return;
    }
    if (code == CURLE_OK) {
        if (x->bom_seen < BOM_DECIDED) { /* a body of 1 or 2 bytes of a mark */
            give_back_bom(x);
        }
        if (x->head_waits) {
            send_head(x); /* an encoded answer whose body was empty */
        }
        if (x->body == X_PASSING) {
            oaip_relay_flush(&x->relay);
            outcome->responded = 1;
        } else if (x->body == X_EVENTS) {
            /* the stream ended without [DONE], or without the blank line
             * after its last event: no error, the client's stream just ends.
             * That event's usage counts; it is relayed as it came, unless it
             * is the usage chunk the proxy asked for itself */
            oaip_sse_framer_finish(x->events);
            oaip_relay_flush(&x->relay);
            outcome->responded = 1;
        } else {
            relay_buffered_answer(x, outcome);
        }
        return;
    }
    describe_failure(x, code, outcome);
    ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "upstream request failed: %s [%s]",
                  outcome->refusal.detail, errbuf[0] ? errbuf : curl_easy_strerror(code));
    if (x->body == X_EVENTS) {
        oaip_sse_framer_finish(x->events); /* a cut event goes as it came */
    }
    if (x->body == X_PASSING && x->relay.committed && !x->head_waits) {
        oaip_relay_break(&x->relay);
        outcome->responded = 1;
    } else if (x->relay.committed) {
        oaip_relay_end_with_event(
            &x->relay,
            oaip_error_sse_event(r->pool, x->error_events, next_sequence(x),
                                 outcome->refusal.kind, outcome->refusal.detail));
        outcome->responded = 1;
    }
}

static int usage_reported(const oaip_usage *u)
{
    return u->prompt_tokens >= 0 || u->completion_tokens >= 0 || u->total_tokens >= 0;
}

/* Whether a request generates tokens: it names an output limit or streams
 * (chat, legacy completions, Responses), or its answer carried generated
 * content. Moderations, images, speech and model lists do not: an answer of
 * theirs without usage costs the budget nothing. */
static int generative(exchange *x, const char *body, apr_size_t len)
{
    oaip_request_cost cost;

    if (x->stream_requested || x->answer_tokens > 0) {
        return 1;
    }
    oaip_request_cost_of(body, len, &cost);
    return cost.output_limit > 0;
}

/* An exchange that may have cost tokens but reported none: the upstream
 * answered 2xx (a stream cut short, one whose upstream ignores
 * stream_options, a whole answer without usage), or it had the request
 * and was still working on it when the client left or the first byte
 * timed out. Its cost is estimated (README "OpenAIProxyTokenBudget"): the
 * prompt from the body's length, the output from what was generated. An
 * error status or an upstream never reached costs nothing. */
static void estimate_usage(exchange *x, const oaip_upstream_request *req,
                           oaip_request_record *record)
{
    int answered = x->status >= 200 && x->status < 300;
    int working =
        x->status == 0 && (x->relay.client_gone || x->timed_out == FIRST_BYTE_TIMEOUT);
    apr_int64_t prompt, output;

    if (usage_reported(&x->usage) || !(answered || working) || req->body == NULL ||
        req->content_type == NULL || strcmp(req->content_type, "application/json") != 0 ||
        !generative(x, req->body, req->body_len)) {
        return;
    }
    prompt = oaip_prompt_estimate(req->body_len);
    output = x->body == X_EVENTS ? x->content.tokens : x->answer_tokens;
    record->usage.prompt_tokens = (long)prompt;
    record->usage.completion_tokens = (long)output;
    record->usage.total_tokens = (long)(prompt + output);
    record->usage_estimated = 1;
}

/* How the exchange went and what it cost, in the request's record: the
 * last attempt's answer, its first byte counted from the first attempt's
 * start (what the client waited). */
static void record_exchange(exchange *x, const oaip_upstream_request *req, CURLcode code,
                            const oaip_upstream_outcome *outcome, apr_time_t started,
                            int attempts)
{
    oaip_request_record *record = oaip_request_record_of(x->r);
    oaip_outcome how;

    if (x->relay.client_gone) {
        how = OAIP_OUTCOME_CLIENT_GONE;
    } else if (x->timed_out != NO_TIMEOUT || code == CURLE_OPERATION_TIMEDOUT) {
        how = OAIP_OUTCOME_TIMEOUT;
    } else if (code != CURLE_OK || !outcome->responded) {
        how = OAIP_OUTCOME_UPSTREAM_FAILED;
    } else {
        how = (x->status >= 200 && x->status < 300) ? OAIP_OUTCOME_OK
                                                    : OAIP_OUTCOME_UPSTREAM_ERROR;
    }
    oaip_request_record_end(x->r, how);
    record->upstream_status = x->status;
    record->first_byte_ms =
        x->first_byte ? (long)apr_time_as_msec(x->first_byte - started) : -1;
    record->attempts = attempts;
    record->usage = x->usage;
    estimate_usage(x, req, record);
}

/* The keys an exchange sends (configured, or the client's own): masked in
 * the upstream's error answers and in the headers passed on. */
static oaip_secret_mask *keys_of(request_rec *r, const oaip_dir_conf *conf,
                                 const oaip_upstream_request *req)
{
    oaip_secret_mask *mask = oaip_secret_mask_make(r->pool);
    int i;

    for (i = 0; req->secret_keys != NULL && i < req->secret_keys->nelts; i++) {
        oaip_secret_mask_add(mask, APR_ARRAY_IDX(req->secret_keys, i, const char *));
    }

    oaip_secret_mask_add(mask, conf->api_key);
    if (oaip_conf_allows_client_key(conf)) { /* the key the client may have sent */
        oaip_secret_mask_add(mask, apr_table_get(r->headers_in, "x-openai-key"));
    }
    return mask;
}

/* A fresh exchange for one attempt. `relay` is the client side so far
 * (NULL for the first attempt): a later attempt goes on where it is. */
static void exchange_init(exchange *x, request_rec *r, const oaip_dir_conf *conf,
                          const oaip_upstream_request *req, const oaip_relay *relay,
                          oaip_secret_mask *mask)
{
    memset(x, 0, sizeof(*x));
    x->r = r;
    x->conf = conf;
    x->stream_requested = req->stream;
    x->hide_usage = req->hide_usage;
    x->error_events = req->error_events;
    x->last_sequence = -1;
    if (relay != NULL) {
        x->relay = *relay;
    } else {
        oaip_relay_init(&x->relay, r);
    }
    x->buffer = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    x->pass_headers = apr_table_make(r->pool, 12);
    x->started = x->last_upstream_byte = x->last_hangup_check = apr_time_now();
    oaip_usage_init(&x->usage);
    x->events = oaip_sse_framer_make(r->pool, on_event, x);
    x->mask = mask;
}

/* The client's socket, watched for a hang-up while the upstream is
 * silent; -1 on HTTP/2 (mod_http2 sets c->aborted on a reset instead). */
static int client_socket(request_rec *r)
{
    conn_rec *c = r->connection;
    apr_socket_t *sock;
    apr_os_sock_t fd;

    if (c->master != NULL || (sock = ap_get_conn_socket(c)) == NULL ||
        apr_os_sock_get(&fd, sock) != APR_SUCCESS) {
        return -1;
    }
    return fd;
}

/* Runs the transfer until it ends, the client leaves or a deadline of the
 * exchange stops it. What the upstream gave in one wake-up goes out in
 * one flush: chunks that arrive together are written together, and none
 * waits for a later one. */
static CURLcode drive(exchange *x, oaip_curl_handle *h)
{
    int client_fd = client_socket(x->r);
    CURLcode code = CURLE_OK;
    oaip_transfer *t = oaip_transfer_start(x->r->pool, h, client_fd, &code);
    oaip_transfer_event event;

    if (t == NULL) {
        return code;
    }
    for (;;) {
        event = oaip_transfer_wait(t, next_deadline(x, client_fd >= 0), &code);
        if (!oaip_relay_flush(&x->relay) || event == OAIP_TRANSFER_CLIENT_HUP) {
            x->relay.client_gone = 1;
            if (event != OAIP_TRANSFER_DONE) {
                code = CURLE_ABORTED_BY_CALLBACK;
            }
            break;
        }
        if (event == OAIP_TRANSFER_DONE) {
            break;
        }
        if (!tick(x, apr_time_now(), client_fd >= 0)) {
            code = CURLE_ABORTED_BY_CALLBACK;
            if (x->timed_out == ENDED_AFTER_DONE) {
                ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, x->r,
                              "the upstream kept its stream open after data: [DONE]; "
                              "ended it");
                x->timed_out = NO_TIMEOUT;
                code = CURLE_OK;
            }
            break;
        }
    }
    oaip_transfer_end(t);
    return code;
}

/* One attempt through a pooled handle. 0: no memory for it. */
static int perform(exchange *x, const oaip_upstream_request *req, int number,
                   char *errbuf, CURLcode *code)
{
    request_rec *r = x->r;
    struct curl_slist *headers = request_headers(r->pool, req);
    oaip_curl_handle *h = headers ? oaip_curl_acquire() : NULL;

    if (h == NULL) {
        return 0;
    }
    errbuf[0] = '\0';
    configure(h->easy, x, req, headers, errbuf);
    /* without the configured query: some APIs take a key there */
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                  "upstream %s %.*s model=%s stream=%d attempt=%d",
                  req->post ? "POST" : "GET", (int)strcspn(req->url, "?"), req->url,
                  req->model ? ap_escape_logitem(r->pool, req->model) : "(none)",
                  req->stream, number);
    *code = drive(x, h);
    enter(x, x->relay.client_gone ? X_CLIENT_GONE
             : *code == CURLE_OK  ? X_DONE
                                  : X_FAILED);
    ap_log_rerror(
        APLOG_MARK, APLOG_DEBUG, 0, r,
        "upstream answered %ld (%s) in %" APR_TIME_T_FMT " ms, curl: %s", x->status,
        x->body == X_EVENTS    ? "streamed"
        : x->body == X_PASSING ? "passed through"
                               : "whole",
        apr_time_as_msec(apr_time_now() - x->started), curl_easy_strerror(*code));
    /* the handle points into this request's memory: unhook it before another
     * request may take it */
    curl_easy_setopt(h->easy, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(h->easy, CURLOPT_ERRORBUFFER, NULL);
    oaip_curl_release(h);
    return 1;
}

/* Failures before any byte of the request went out. */
static int never_sent(CURLcode code)
{
    switch (code) {
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT: /* only the connect phase has a curl timeout */
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
        return 1;
    default:
        return 0;
    }
}

/* Whether the attempt may be sent again, and what it got: nothing of the
 * upstream's answer reached the client (an error answer is held whole; a
 * stream, even cut, was relayed as it came), the client is still there,
 * and the upstream cannot be generating (an answer that ended, or a
 * request that never left; not a timeout after the request was sent, not
 * a connection closed without an answer). Heartbeat comments that went
 * out are no part of any answer: the next attempt's events follow them. */
static int offer(exchange *x, const oaip_upstream_request *req, CURLcode code, int number,
                 oaip_attempt *attempt)
{
    apr_size_t len = x->buffered;
    char *body;

    memset(attempt, 0, sizeof(*attempt));
    attempt->number = number;
    if (x->relay.client_gone || x->relay.r->connection->aborted) {
        return 0;
    }
    if (code == CURLE_OK) {
        if (x->body != X_BUFFERING || x->status < 300 || x->status > 599) {
            return 0;
        }
        attempt->kind = OAIP_ATTEMPT_ANSWERED;
        attempt->status = x->status;
        attempt->content_type = x->content_type;
        attempt->headers = x->pass_headers;
        if (len > OAIP_UPSTREAM_MAX_OFFERED) {
            return 1;
        }
        /* a masked copy: the relay still has the answer if it goes out */
        body = apr_palloc(x->r->pool, len + 1);
        if (apr_brigade_flatten(x->buffer, body, &len) != APR_SUCCESS) {
            len = 0;
        }
        body[len] = '\0';
        oaip_secret_mask_apply(x->mask, body, len);
        attempt->body = body;
        attempt->body_len = len;
        return 1;
    }
    if (x->status == 0 && x->timed_out == FIRST_BYTE_TIMEOUT &&
        req->offer_first_byte_timeout) {
        attempt->kind = OAIP_ATTEMPT_TIMED_OUT;
        return 1;
    }
    if (x->status != 0 || x->timed_out != NO_TIMEOUT || x->bad_content_type ||
        x->answer_too_large || !never_sent(code)) {
        return 0;
    }
    attempt->kind = OAIP_ATTEMPT_NOT_SENT;
    return 1;
}

void oaip_upstream_forward(request_rec *r, const oaip_dir_conf *conf,
                           const oaip_upstream_request *req,
                           oaip_upstream_outcome *outcome)
{
    char errbuf[CURL_ERROR_SIZE] = "";
    oaip_secret_mask *mask = keys_of(r, conf, req);
    apr_time_t started = apr_time_now();
    const oaip_upstream_request *next;
    oaip_attempt attempt;
    oaip_relay relay;
    exchange x;
    CURLcode code = CURLE_OK;
    int number;

    memset(outcome, 0, sizeof(*outcome));
    for (number = 1;; number++) {
        exchange_init(&x, r, conf, req, number > 1 ? &relay : NULL, mask);
        if (!perform(&x, req, number, errbuf, &code)) {
            fail(outcome, OAIP_ERR_INTERNAL, "Out of memory");
            if (x.relay.committed) { /* by heartbeats of an attempt before */
                oaip_relay_end_with_event(
                    &x.relay,
                    oaip_error_sse_event(r->pool, x.error_events, next_sequence(&x),
                                         OAIP_ERR_INTERNAL, outcome->refusal.detail));
                outcome->responded = 1;
            }
            return;
        }
        if (number >= OAIP_UPSTREAM_MAX_ATTEMPTS || req->again == NULL ||
            !offer(&x, req, code, number, &attempt) ||
            (next = req->again(req->again_ctx, r, &attempt)) == NULL) {
            break;
        }
        OAIP_STATS_ADD(second_attempts, 1);
        relay = x.relay;
        req = next;
    }
    finish(&x, code, errbuf, outcome);
    record_exchange(&x, req, code, outcome, started, number);
}
