#include "handler.h"

#include <apr_strings.h>
#include <http_core.h>
#include <http_protocol.h>
#include <http_request.h>

#include "body.h"
#include "config.h"
#include "cors.h"
#include "usage_limits.h"
#include "mod_openai_proxy.h"
#include "request.h"
#include "stats.h"
#include "streams.h"
#include "upstream.h"

#define ALLOWED_METHODS "POST, OPTIONS"

static int send_error(request_rec *r, const oaip_dir_conf *conf, oaip_error_kind kind,
                      const char *detail)
{
    const oaip_error_info *info = oaip_error_info_get(kind);
    const char *body =
        oaip_error_body(r->pool, oaip_conf_error_format(conf), kind, detail);
    apr_size_t len = strlen(body);

    /* upstream failures were logged where they happened; client mistakes
     * and limits are the client's business: only our own faults are errors */
    int level = (kind == OAIP_ERR_NO_API_KEY || kind == OAIP_ERR_INTERNAL) ? APLOG_ERR
                                                                           : APLOG_INFO;

    ap_log_rerror(APLOG_MARK, level, 0, r, "answering %d %s: %s", info->status,
                  info->code, detail ? detail : info->title);
    if (apr_table_get(r->notes, OAIP_NOTE_OUTCOME) == NULL) {
        apr_table_setn(r->notes, OAIP_NOTE_OUTCOME, info->code);
    }
    r->status = info->status;
    ap_set_content_type(r, "application/json");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    ap_set_content_length(r, (apr_off_t)len);
    ap_rwrite(body, (int)len, r);
    return OK;
}

/* Answers an error before the body was read: the unread body is drained so
 * the connection can serve the next request. */
static int refuse(request_rec *r, const oaip_dir_conf *conf, oaip_error_kind kind,
                  const char *detail)
{
    if (ap_discard_request_body(r) != OK) {
        r->connection->keepalive = AP_CONN_CLOSE;
    }
    return send_error(r, conf, kind, detail);
}

/* A browser sends Origin on same-origin POSTs too: a page served by this
 * virtual host under its ServerName needs no allow-list entry. The name is
 * checked, not just the Host header, so that a catch-all host does not take
 * any domain pointed at it for its own. */
static int is_same_origin(request_rec *r, const char *origin)
{
    const char *host = apr_table_get(r->headers_in, "Host");
    const char *name = r->server->server_hostname;
    apr_size_t name_len = name ? strlen(name) : 0;

    if (host == NULL || name == NULL || strncasecmp(host, name, name_len) != 0 ||
        (host[name_len] != '\0' && host[name_len] != ':')) {
        return 0;
    }
    return strcasecmp(origin,
                      apr_pstrcat(r->pool, ap_http_scheme(r), "://", host, NULL)) == 0;
}

/* Sets the CORS response headers (in err_headers_out, so that every answer,
 * errors included, carries them). Returns 0 when the origin is refused. */
static int apply_cors(request_rec *r, const oaip_dir_conf *conf, const char *origin)
{
    int any = oaip_origin_rules_any(conf->origins);

    if (!any) {
        apr_table_mergen(r->err_headers_out, "Vary", "Origin");
    }
    if (origin == NULL) {
        return 1;
    }
    if (!oaip_origin_allowed(conf->origins, origin) && !is_same_origin(r, origin)) {
        return 0;
    }
    apr_table_setn(r->err_headers_out, "Access-Control-Allow-Origin", any ? "*" : origin);
    apr_table_setn(r->err_headers_out, "Access-Control-Expose-Headers",
                   OAIP_EXPOSED_HEADERS);
    return 1;
}

static int answer_options(request_rec *r, const char *origin)
{
    apr_table_setn(r->headers_out, "Allow", ALLOWED_METHODS);
    if (origin != NULL && apr_table_get(r->headers_in, "Access-Control-Request-Method")) {
        apr_table_setn(r->err_headers_out, "Access-Control-Allow-Methods",
                       OAIP_CORS_ALLOW_METHODS);
        apr_table_setn(
            r->err_headers_out, "Access-Control-Allow-Headers",
            oaip_cors_allow_headers(
                r->pool, apr_table_get(r->headers_in, "Access-Control-Request-Headers")));
        apr_table_setn(r->err_headers_out, "Access-Control-Max-Age", OAIP_CORS_MAX_AGE);
    }
    ap_discard_request_body(r);
    apr_table_setn(r->notes, OAIP_NOTE_OUTCOME, "preflight");
    r->status = HTTP_NO_CONTENT;
    return OK;
}

/* The <Location> (or other section) the handler was set in: core keeps the
 * path of the innermost section that applies. NULL for regex sections. */
static const char *section_path(request_rec *r)
{
    const core_dir_config *core = ap_get_core_module_config(r->per_dir_config);

    if (core == NULL || core->d == NULL || core->d[0] != '/' || core->d_is_fnmatch) {
        return NULL;
    }
    return core->d;
}

/* The request path below the section: "", "/" and "/chat/completions" reach
 * the chat endpoint (so an SDK's baseURL can be the Location itself). */
static int is_chat_path(request_rec *r)
{
    const char *base = section_path(r);
    const char *sub = r->uri;

    if (base != NULL) {
        apr_size_t n = strlen(base);
        while (n > 0 && base[n - 1] == '/') {
            n--;
        }
        if (strncmp(sub, base, n) == 0 && (sub[n] == '\0' || sub[n] == '/')) {
            sub += n;
        }
    }
    return strcmp(sub, "") == 0 || strcmp(sub, "/") == 0 ||
           strcmp(sub, "/chat/completions") == 0 ||
           strcmp(sub, "/chat/completions/") == 0;
}

/* The upstream request headers: with the client's own key where the
 * operator allows it, else the configured key's. NULL: no key at all. */
static struct curl_slist *choose_headers(request_rec *r, const oaip_dir_conf *conf,
                                         int *bad_client_key)
{
    const char *client_key = apr_table_get(r->headers_in, "x-openai-key");

    *bad_client_key = 0;
    if (conf->allow_client_key != 1 || client_key == NULL || *client_key == '\0') {
        return conf->upstream_headers;
    }
    if (!oaip_upstream_header_safe(client_key)) {
        *bad_client_key = 1;
        return NULL;
    }
    return oaip_upstream_headers_make(
        r->pool, apr_pstrcat(r->pool, "Authorization: Bearer ", client_key, NULL));
}

static int body_error(request_rec *r, const oaip_dir_conf *conf, int status)
{
    switch (status) {
    case HTTP_REQUEST_ENTITY_TOO_LARGE:
        return send_error(
            r, conf, OAIP_ERR_BODY_TOO_LARGE,
            apr_psprintf(r->pool,
                         "The request body is larger than the %" APR_OFF_T_FMT
                         " bytes this endpoint accepts",
                         oaip_conf_max_body(conf)));
    case HTTP_REQUEST_TIME_OUT:
        r->connection->keepalive = AP_CONN_CLOSE;
        return send_error(r, conf, OAIP_ERR_BODY_TIMEOUT,
                          "The request body did not arrive in time");
    default:
        r->connection->keepalive = AP_CONN_CLOSE;
        return send_error(r, conf, OAIP_ERR_BAD_REQUEST,
                          "The request body could not be read");
    }
}

static int proxy_chat(request_rec *r, const oaip_dir_conf *conf,
                      struct curl_slist *headers)
{
    oaip_chat_request chat;
    oaip_upstream_outcome outcome;
    oaip_error_kind kind;
    const char *detail;
    apr_size_t len;
    char *body;
    int rc;

    rc = oaip_body_read(r, oaip_conf_max_body(conf), &body, &len);
    if (rc == AP_FILTER_ERROR) {
        return rc; /* an input filter already answered */
    }
    if (rc != OK) {
        return body_error(r, conf, rc);
    }
    if (!oaip_chat_request_prepare(r->pool, body, len, conf->defaults, &chat, &kind,
                                   &detail)) {
        return send_error(r, conf, kind, detail);
    }
    if (chat.model != NULL) {
        apr_table_setn(r->notes, "OPENAI_MODEL", chat.model);
    }
    apr_table_setn(r->notes, "OPENAI_STREAM", chat.stream ? "1" : "0");
    if (conf->max_tokens != OAIP_UNSET &&
        oaip_chat_request_cap_tokens(r->pool, &chat, conf->max_tokens)) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "token limit lowered to %d",
                      conf->max_tokens);
    }
    if (conf->models != NULL && !oaip_model_allowed(conf->models, chat.model)) {
        return send_error(
            r, conf, OAIP_ERR_MODEL_NOT_ALLOWED,
            chat.model
                ? apr_psprintf(r->pool, "The model %s is not available here", chat.model)
                : "model must be a string");
    }
    /* usage is counted for every stream; the client sees the usage chunk
     * only if it asked for it */
    oaip_chat_request_ask_usage(r->pool, &chat);
    if (chat.stream && !oaip_streams_acquire(r)) {
        apr_table_setn(r->err_headers_out, "Retry-After", OAIP_STREAMS_RETRY_AFTER);
        return send_error(r, conf, OAIP_ERR_TOO_MANY_STREAMS,
                          "Too many streams are open on this server; retry shortly");
    }
    if (chat.stream) {
        oaip_stats_stream_begin(r);
    }
    oaip_upstream_chat(r, conf, headers, &chat, &outcome);
    if (!outcome.responded) {
        return send_error(r, conf, outcome.error, outcome.error_detail);
    }
    return OK;
}

#define FILENAME_PREFIX OAIP_HANDLER_NAME ":"

/* Whether the Location that applies says "SetHandler openai-proxy". */
static int location_is_ours(request_rec *r)
{
    const core_dir_config *core = ap_get_core_module_config(r->per_dir_config);
    const char *handler, *err = NULL;

    if (core == NULL || core->expr_handler == NULL) {
        return 0;
    }
    handler = ap_expr_str_exec(r, core->expr_handler, &err);
    return err == NULL && handler != NULL && strcmp(handler, OAIP_HANDLER_NAME) == 0;
}

int oaip_translate_name(request_rec *r)
{
    /* nothing of ours is a file: like mod_proxy, take the URI off the file
     * system so httpd does not stat DocumentRoot paths for every request */
    if (!location_is_ours(r)) {
        return DECLINED;
    }
    r->filename = apr_pstrcat(r->pool, FILENAME_PREFIX, r->uri, NULL);
    return OK;
}

int oaip_map_to_storage(request_rec *r)
{
    if (r->filename != NULL &&
        strncmp(r->filename, FILENAME_PREFIX, sizeof(FILENAME_PREFIX) - 1) == 0) {
        return OK; /* no <Directory> or <Files> walk; <Location> still applies */
    }
    return DECLINED;
}

int oaip_handler(request_rec *r)
{
    const oaip_dir_conf *conf;
    struct curl_slist *headers;
    oaip_limit_refusal refusal;
    const char *origin;
    int bad_client_key;

    if (r->handler == NULL || strcmp(r->handler, OAIP_HANDLER_NAME) != 0) {
        return DECLINED;
    }
    conf = ap_get_module_config(r->per_dir_config, &openai_proxy_module);
    origin = apr_table_get(r->headers_in, "Origin");
    oaip_request_state_get(r, 1); /* marks the request for the accounting */
    oaip_stats_request_begin(r);

    if (!apply_cors(r, conf, origin)) {
        return refuse(r, conf, OAIP_ERR_ORIGIN_FORBIDDEN,
                      apr_psprintf(r->pool, "Origin %s is not allowed to use this API",
                                   ap_escape_logitem(r->pool, origin)));
    }
    if (!is_chat_path(r)) {
        return refuse(r, conf, OAIP_ERR_NOT_FOUND,
                      apr_psprintf(r->pool, "No API endpoint at %s",
                                   ap_escape_logitem(r->pool, r->uri)));
    }
    if (r->method_number == M_OPTIONS) {
        return answer_options(r, origin);
    }
    if (r->method_number != M_POST) {
        apr_table_setn(r->err_headers_out, "Allow", ALLOWED_METHODS);
        return refuse(r, conf, OAIP_ERR_METHOD_NOT_ALLOWED,
                      apr_psprintf(r->pool, "%s is not allowed; use POST",
                                   ap_escape_logitem(r->pool, r->method)));
    }
    headers = choose_headers(r, conf, &bad_client_key);
    if (bad_client_key) {
        return refuse(r, conf, OAIP_ERR_BAD_REQUEST,
                      "The x-openai-key header contains invalid characters");
    }
    if (headers == NULL) {
        return refuse(r, conf, OAIP_ERR_NO_API_KEY, "OpenAI API key is not configured");
    }
    if (!oaip_limits_check(r, conf, &refusal)) {
        if (refusal.retry_after > 0) {
            apr_table_setn(r->err_headers_out, "Retry-After",
                           apr_psprintf(r->pool, "%u", refusal.retry_after));
        }
        return refuse(r, conf, refusal.kind, refusal.detail);
    }
    return proxy_chat(r, conf, headers);
}
