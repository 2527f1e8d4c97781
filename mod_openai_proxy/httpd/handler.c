#include "httpd/handler.h"

#include <apr_strings.h>
#include <http_core.h>
#include <http_protocol.h>
#include <http_request.h>

#include "core/cors.h"
#include "core/endpoint.h"
#include "core/upstream_url.h"
#include "core/header_check.h"
#include "core/model_alias.h"
#include "core/multipart.h"
#include "core/request.h"
#include "engine/upstream.h"
#include "httpd/body.h"
#include "httpd/config.h"
#include "httpd/cors_headers.h"
#include "httpd/failover.h"
#include "httpd/limits.h"
#include "httpd/refusal_memory.h"
#include "httpd/request_record.h"
#include "httpd/stats.h"
#include "httpd/streams.h"
#include "mod_openai_proxy.h"

#define POST_METHODS "POST, OPTIONS"
#define GET_METHODS "GET, HEAD, OPTIONS"

static int send_error(request_rec *r, const oaip_dir_conf *conf, oaip_error_kind kind,
                      const char *detail)
{
    const oaip_error_info *info = oaip_error_info_get(kind);
    const char *body = oaip_error_body(
        r->pool, oaip_conf_error_format(conf, oaip_path_below_location(r)), kind, detail);
    apr_size_t len = strlen(body);

    /* upstream failures were logged where they happened; client mistakes
     * and limits are the client's business: only our own faults are errors */
    int level = (kind == OAIP_ERR_NO_API_KEY || kind == OAIP_ERR_INTERNAL) ? APLOG_ERR
                                                                           : APLOG_INFO;

    ap_log_rerror(APLOG_MARK, level, 0, r, "answering %d %s: %s", info->status,
                  info->code, detail ? detail : info->title);
    oaip_request_record_end(r, oaip_outcome_of_error(kind));
    r->status = info->status;
    ap_set_content_type(r, "application/json");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    ap_set_content_length(r, (apr_off_t)len);
    ap_rwrite(body, (int)len, r);
    return OK;
}

/* A refused request's body is never read: reading would send the client a
 * "100 Continue" it is waiting for, and take a 50 MB upload (or a slow one,
 * up to Timeout) to say no. When a body is announced, the connection is
 * closed after the answer instead, which also makes httpd's own
 * ap_discard_request_body skip it (it returns at once for AP_CONN_CLOSE) and
 * sends "Connection: close". A request without a body keeps its
 * connection. */
static void leave_body_unread(request_rec *r)
{
    const char *length = apr_table_get(r->headers_in, "Content-Length");

    if (apr_table_get(r->headers_in, "Transfer-Encoding") != NULL ||
        (length != NULL && strcmp(length, "0") != 0)) {
        r->connection->keepalive = AP_CONN_CLOSE;
    }
}

/* Answers an error before the body was read. */
static int refuse(request_rec *r, const oaip_dir_conf *conf, oaip_error_kind kind,
                  const char *detail)
{
    leave_body_unread(r);
    return send_error(r, conf, kind, detail);
}

/* The longest Retry-After the official SDKs wait for before they retry by
 * themselves; past it they retry after their own short backoff instead. */
#define SDK_LONGEST_RETRY_AFTER 60

/* A refusal of the limits, the stream cap or the engine, with its
 * Retry-After; one an SDK cannot wait for (a rate limit or budget window
 * that ends in an hour) says x-should-retry: false, so that the SDK
 * does not send it again and again to be refused. */
static int send_refusal(request_rec *r, const oaip_dir_conf *conf,
                        const oaip_refusal *refusal)
{
    if (refusal->retry_after > 0) {
        apr_table_setn(r->err_headers_out, "Retry-After",
                       apr_psprintf(r->pool, "%u", refusal->retry_after));
    }
    if (refusal->retry_after > SDK_LONGEST_RETRY_AFTER) {
        apr_table_setn(r->err_headers_out, "x-should-retry", "false");
    }
    return send_error(r, conf, refusal->kind, refusal->detail);
}

static const char *allowed_methods(const oaip_endpoint *endpoint)
{
    return endpoint->post ? POST_METHODS : GET_METHODS;
}

static int answer_options(request_rec *r, const oaip_endpoint *endpoint,
                          const char *origin)
{
    apr_table_setn(r->headers_out, "Allow", allowed_methods(endpoint));
    if (origin != NULL && apr_table_get(r->headers_in, "Access-Control-Request-Method")) {
        apr_table_setn(r->err_headers_out, "Access-Control-Allow-Methods",
                       allowed_methods(endpoint));
        apr_table_setn(
            r->err_headers_out, "Access-Control-Allow-Headers",
            oaip_cors_allow_headers(
                r->pool, apr_table_get(r->headers_in, "Access-Control-Request-Headers")));
        apr_table_setn(r->err_headers_out, "Access-Control-Max-Age", OAIP_CORS_MAX_AGE);
    }
    leave_body_unread(r);
    oaip_request_record_end(r, OAIP_OUTCOME_PREFLIGHT);
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

const char *oaip_path_below_location(request_rec *r)
{
    const char *base = section_path(r);
    const char *sub = r->uri ? r->uri : "";

    if (base != NULL) {
        apr_size_t n = strlen(base);
        while (n > 0 && base[n - 1] == '/') {
            n--;
        }
        if (strncmp(sub, base, n) == 0 && (sub[n] == '\0' || sub[n] == '/')) {
            sub += n;
        }
    }
    return sub;
}

/* The request path below the section: "", "/" and "/chat/completions" reach
 * the chat endpoint (so an SDK's baseURL can be the Location itself); other
 * paths the endpoints the Location enables. Sets *upstream_path. */
static const oaip_endpoint *route(request_rec *r, const oaip_dir_conf *conf,
                                  const char **upstream_path)
{
    return oaip_endpoint_route(r->pool, conf->endpoints, oaip_path_below_location(r),
                               upstream_path);
}

/* The upstream request's auth header line: with the client's own key where
 * the operator allows it, else the configured key, in the configured auth
 * style. NULL: no key at all. */
static const char *choose_auth_line(request_rec *r, const oaip_dir_conf *conf,
                                    int *bad_client_key)
{
    const char *key = apr_table_get(r->headers_in, "x-openai-key");

    *bad_client_key = 0;
    if (!oaip_conf_allows_client_key(conf) || key == NULL || *key == '\0') {
        key = conf->api_key;
    } else if (!oaip_header_value_visible(key)) {
        *bad_client_key = 1;
        return NULL;
    }
    return key ? oaip_auth_header_line(r->pool, conf->auth_name, key) : NULL;
}

/* The client's own key where the Location allows one; NULL: the
 * configured keys go. */
static const char *client_key_of(request_rec *r, const oaip_dir_conf *conf)
{
    const char *key = apr_table_get(r->headers_in, "x-openai-key");

    return oaip_conf_allows_client_key(conf) && key != NULL && *key != '\0' ? key : NULL;
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

/* A JSON request and what its next attempt needs: the client's body as it
 * came, and the fields the proxy takes back because the upstream refused
 * them (README "Second attempts"). The fields the proxy adds are rebuilt
 * from the client's bytes for each attempt, through the same defaults,
 * cap and usage request as the first: a later body keeps every rule the
 * first kept (guarded fields, OpenAIProxyMaxTokens). */
typedef struct {
    request_rec *r;
    const oaip_dir_conf *conf;
    const oaip_endpoint *endpoint;
    const char *body; /* the client's */
    apr_size_t len;
    const char *client_model;       /* as the client named it (before aliases) */
    const char *memory_key;         /* the upstream's URL: what is remembered */
    apr_array_header_t *taken_back; /* fields refused in this request */
    oaip_json_request json;         /* the attempt in flight */
    oaip_upstream_request *req;     /* the attempt in flight */
} json_exchange;

static int listed(const apr_array_header_t *names, const char *name)
{
    int i;

    for (i = 0; names != NULL && i < names->nelts; i++) {
        if (strcmp(APR_ARRAY_IDX(names, i, const char *), name) == 0) {
            return 1;
        }
    }
    return 0;
}

/* stream_options is remembered per upstream: an API version refuses it
 * whatever the model. */
static const char *memory_model(const char *model, const char *field)
{
    return strcmp(field, "stream_options") == 0 ? NULL : model;
}

/* oaip_refused_fields: taken back in this request, or remembered. */
static int field_refused(void *ctx, const char *model, const char *field)
{
    const json_exchange *jx = ctx;

    return listed(jx->taken_back, field) ||
           oaip_refusal_memory_known(jx->memory_key, memory_model(model, field), field);
}

/* OpenAIProxyMaxTokens, for every JSON body that names a token limit, and
 * written into the bodies of endpoints that generate tokens when they name
 * none, in the field the model takes. */
static void lower_token_limit(json_exchange *jx, const oaip_refused_fields *refused)
{
    int cap = oaip_conf_max_tokens(jx->conf);
    const char *field;

    if (cap <= 0) {
        return;
    }
    field = oaip_json_request_limit_field(&jx->json, jx->endpoint->limit_field, refused);
    if (oaip_json_request_cap_tokens(jx->r->pool, &jx->json, cap, field)) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, jx->r, "token limit lowered to %d",
                      cap);
    }
}

/* Usage is counted for every stream that reports it only when asked; the
 * client sees the usage chunk only if it asked for it. OpenAIProxyStreamUsage
 * off never asks; auto does not where the upstream refused it (the usage
 * is estimated then), and leaves the client's own stream_options as sent
 * there. */
static void ask_usage(json_exchange *jx, oaip_upstream_request *req)
{
    oaip_stream_usage mode = oaip_conf_stream_usage(jx->conf);

    req->hide_usage = 0;
    if (!jx->endpoint->asks_usage || mode == OAIP_STREAM_USAGE_OFF ||
        (mode == OAIP_STREAM_USAGE_AUTO && jx->json.stream &&
         field_refused(jx, NULL, "stream_options"))) {
        return;
    }
    oaip_json_request_ask_usage(jx->r->pool, &jx->json);
    req->hide_usage = jx->json.usage_added;
}

/* The prepared JSON body is what goes upstream. */
static void send_json(oaip_upstream_request *req, const oaip_json_request *json)
{
    req->content_type = "application/json";
    req->body = json->body;
    req->body_len = json->body_len;
    req->model = json->model;
    req->stream = json->stream;
}

/* The body of an attempt: validated (Chat Completions: its messages, with
 * the defaults), then the token cap and the usage chunk asked for. */
static int build_json(json_exchange *jx, oaip_upstream_request *req,
                      oaip_error_kind *kind, const char **detail)
{
    oaip_refused_fields refused = {field_refused, jx};
    request_rec *r = jx->r;
    int valid = jx->endpoint->body == OAIP_BODY_CHAT
                    ? oaip_json_request_prepare_chat(r->pool, jx->body, jx->len,
                                                     jx->conf->defaults, &refused,
                                                     &jx->json, kind, detail)
                    : oaip_json_request_prepare(r->pool, jx->body, jx->len, &jx->json,
                                                kind, detail);

    if (!valid) {
        return 0;
    }
    lower_token_limit(jx, &refused);
    ask_usage(jx, req);
    send_json(req, &jx->json);
    return 1;
}

static const char *name_list(apr_pool_t *p, const apr_array_header_t *names)
{
    const char *list = "";
    int i;

    for (i = 0; i < names->nelts; i++) {
        list = apr_pstrcat(p, list, i ? ", " : "",
                           ap_escape_logitem(p, APR_ARRAY_IDX(names, i, const char *)),
                           NULL);
    }
    return list;
}

/* What of the fields the proxy added an upstream's refusal names, and
 * what may be taken back: never model or stream (the allow-list and the
 * stream limit checked them), stream_options only under
 * OpenAIProxyStreamUsage auto. */
static apr_array_header_t *refused_additions(json_exchange *jx, const oaip_attempt *a)
{
    apr_pool_t *p = jx->r->pool;
    apr_array_header_t *candidates = apr_array_make(p, 4, sizeof(const char *));
    int i;

    for (i = 0; jx->json.added != NULL && i < jx->json.added->nelts; i++) {
        const char *name = APR_ARRAY_IDX(jx->json.added, i, const char *);
        if (strcmp(name, "model") == 0 || strcmp(name, "stream") == 0 ||
            (strcmp(name, "stream_options") == 0 &&
             oaip_conf_stream_usage(jx->conf) != OAIP_STREAM_USAGE_AUTO) ||
            listed(jx->taken_back, name)) {
            continue;
        }
        APR_ARRAY_PUSH(candidates, const char *) = name;
    }
    return oaip_refusal_names(p, a->body, a->body_len, candidates);
}

/* oaip_upstream_again: a 400 (or a validator's 422) that names a field the
 * proxy added, not the client, is sent again without it (a token limit in
 * the other field), and the refusal is remembered for this upstream and
 * model. Any other answer, and a request that never left (with one
 * upstream, a second connection would fail the same way), goes to the
 * client. A later failover plugs in here. */
static const oaip_upstream_request *send_again(void *ctx, request_rec *r,
                                               const oaip_attempt *a)
{
    json_exchange *jx = ctx;
    const char *before = jx->json.body, *detail;
    apr_size_t before_len = jx->json.body_len;
    oaip_upstream_request *next;
    apr_array_header_t *named;
    oaip_error_kind kind;
    int i;

    if (a->kind != OAIP_ATTEMPT_ANSWERED || (a->status != 400 && a->status != 422)) {
        return NULL;
    }
    named = refused_additions(jx, a);
    if (named->nelts == 0) {
        return NULL; /* the client's own fields, or something else: as it is */
    }
    for (i = 0; i < named->nelts; i++) {
        const char *field = APR_ARRAY_IDX(named, i, const char *);
        APR_ARRAY_PUSH(jx->taken_back, const char *) = field;
        oaip_refusal_memory_remember(jx->memory_key, memory_model(jx->json.model, field),
                                     field);
    }
    next = apr_pmemdup(r->pool, jx->req, sizeof(*next));
    if (!build_json(jx, next, &kind, &detail) ||
        (jx->json.body_len == before_len &&
         memcmp(jx->json.body, before, before_len) == 0)) {
        return NULL; /* nothing left to take back */
    }
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                  "upstream refused %s (%ld), which the proxy added, not the client "
                  "(model %s, %s family): attempt %d goes without it (a token limit in "
                  "the other field); remembered for %d seconds",
                  name_list(r->pool, named), a->status,
                  jx->json.model ? ap_escape_logitem(r->pool, jx->json.model) : "(none)",
                  oaip_model_family_name(jx->json.family), a->number + 1,
                  OAIP_REFUSAL_MEMORY_SECONDS);
    jx->req = next;
    return next;
}

/* OpenAIProxyModelAlias: the client's body with the upstream's model
 * name, prepared again from it, so that the defaults, the token limit
 * field and the routing follow the model that runs. Returns 0 after
 * answering an error. */
static int apply_alias(json_exchange *jx, oaip_upstream_request *req)
{
    const char *target = oaip_model_alias_target(jx->conf->model_aliases, jx->json.model);
    oaip_error_kind kind;
    const char *detail;
    char *body;
    apr_size_t len;

    if (target == NULL || target == jx->json.model) {
        return 1;
    }
    body = oaip_json_with_model(jx->r->pool, jx->body, jx->len, target, &len);
    if (body == NULL) {
        return 1; /* not an object: prepare refused it already */
    }
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, jx->r, "model %s goes upstream as %s",
                  ap_escape_logitem(jx->r->pool, jx->json.model),
                  ap_escape_logitem(jx->r->pool, target));
    jx->body = body;
    jx->len = len;
    if (!build_json(jx, req, &kind, &detail)) {
        send_error(jx->r, jx->conf, kind, detail);
        return 0;
    }
    return 1;
}

/* A JSON body: the first attempt's, with what a second one needs. Returns
 * 0 after answering an error. */
static int prepare_json(request_rec *r, const oaip_dir_conf *conf,
                        const oaip_endpoint *endpoint, const char *body, apr_size_t len,
                        oaip_upstream_request *req, json_exchange **retarget_ctx)
{
    json_exchange *jx = apr_pcalloc(r->pool, sizeof(*jx));
    oaip_error_kind kind;
    const char *detail;

    jx->r = r;
    jx->conf = conf;
    jx->endpoint = endpoint;
    jx->body = body;
    jx->len = len;
    jx->memory_key = req->url;
    jx->taken_back = apr_array_make(r->pool, 2, sizeof(const char *));
    jx->req = req;
    if (!build_json(jx, req, &kind, &detail)) {
        send_error(r, conf, kind, detail);
        return 0;
    }
    jx->client_model = jx->json.model;
    if (!apply_alias(jx, req)) {
        return 0;
    }
    /* with a route, a later backend may need it where this one does not */
    if (jx->json.added != NULL || conf->route != NULL) {
        req->again = send_again;
        req->again_ctx = jx;
    }
    *retarget_ctx = jx;
    return 1;
}

/* oaip_retarget for JSON bodies: rebuilt for the other backend, with what
 * it is known to refuse (the fields this request took back were another
 * upstream's refusals). */
static const oaip_upstream_request *retarget_json(void *ctx,
                                                  const oaip_upstream_request *current,
                                                  const char *url, const char *auth_line)
{
    json_exchange *jx = ctx;
    oaip_upstream_request *next = apr_pmemdup(jx->r->pool, current, sizeof(*next));
    oaip_error_kind kind;
    const char *detail;

    next->url = url;
    next->auth_line = auth_line;
    jx->memory_key = url;
    apr_array_clear(jx->taken_back);
    if (!build_json(jx, next, &kind, &detail)) {
        return NULL;
    }
    jx->req = next;
    return next;
}

/* oaip_retarget for other bodies: the same bytes to another URL. */
static const oaip_upstream_request *retarget_bytes(void *ctx,
                                                   const oaip_upstream_request *current,
                                                   const char *url, const char *auth_line)
{
    request_rec *r = ctx;
    oaip_upstream_request *next = apr_pmemdup(r->pool, current, sizeof(*next));

    next->url = url;
    next->auth_line = auth_line;
    return next;
}

/* A form field's "stream" value that asks for no stream; anything else
 * might to a lenient upstream ("1", "on", "True"), so it counts as one. */
static int says_no_stream(const char *value)
{
    static const char *const no[] = {"", "false", "0", "no", "off", "f", "n"};
    apr_size_t i;

    for (i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        if (strcasecmp(value, no[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

/* File uploads: forwarded byte for byte with the client's Content-Type (its
 * boundary); only the model and stream fields are read, each refused when
 * given twice (which copy an upstream takes depends on its parser). */
static int prepare_multipart(request_rec *r, const oaip_dir_conf *conf, const char *body,
                             apr_size_t len, oaip_upstream_request *req)
{
    const char *type = apr_table_get(r->headers_in, "Content-Type");
    const char *boundary = oaip_multipart_boundary(r->pool, type), *stream;

    if (boundary == NULL) {
        send_error(r, conf, OAIP_ERR_BAD_REQUEST,
                   "This endpoint takes a multipart/form-data body with a boundary");
        return 0;
    }
    if (oaip_multipart_find(r->pool, body, len, boundary, "model", &req->model) ==
            OAIP_MULTIPART_DUPLICATE ||
        oaip_multipart_find(r->pool, body, len, boundary, "stream", &stream) ==
            OAIP_MULTIPART_DUPLICATE) {
        send_error(r, conf, OAIP_ERR_BAD_REQUEST,
                   "The form names the model or stream field more than once");
        return 0;
    }
    req->content_type = type;
    req->body = body;
    req->body_len = len;
    req->stream = stream != NULL && !says_no_stream(stream);
    return 1;
}

/* Every backend key of the server: an upstream may echo any of them. */
static const apr_array_header_t *backend_keys(request_rec *r)
{
    const oaip_server_conf *sconf =
        ap_get_module_config(r->server->module_config, &openai_proxy_module);
    apr_array_header_t *keys = apr_array_make(r->pool, 4, sizeof(const char *));
    int i;

    for (i = 0; sconf->backends != NULL && i < sconf->backends->nelts; i++) {
        const oaip_backend *b = APR_ARRAY_IDX(sconf->backends, i, const oaip_backend *);
        if (b->key != NULL) {
            APR_ARRAY_PUSH(keys, const char *) = b->key;
        }
    }
    return keys;
}

/* OpenAIProxyRoute: the backends that serve the request's model, the
 * first of them to try, and the failover as the request's policy. NULL
 * after answering an error. */
static const oaip_upstream_request *
route_request(request_rec *r, const oaip_dir_conf *conf, const char *upstream_path,
              const char *client_key, oaip_upstream_request *req,
              const oaip_backend *prepared_for, json_exchange *jx, oaip_failover **fo)
{
    const oaip_upstream_request *start;

    *fo = oaip_failover_begin(r, conf, req->model, upstream_path, client_key);
    if (*fo == NULL) {
        send_error(r, conf, OAIP_ERR_MODEL_NOT_ROUTED,
                   req->model ? apr_psprintf(r->pool,
                                             "No backend of this API serves the model %s",
                                             req->model)
                              : "No backend of this API serves requests without a model");
        return NULL;
    }
    start = jx ? oaip_failover_start(*fo, req, prepared_for, retarget_json, jx)
               : oaip_failover_start(*fo, req, prepared_for, retarget_bytes, r);
    if (start == NULL) {
        send_error(r, conf, OAIP_ERR_INTERNAL, "The request could not be prepared");
    }
    return start;
}

/* What every endpoint goes through once routed, the method checked and the
 * key chosen: body, per-endpoint preparation, the model allow-list, the
 * stream limit, one upstream exchange (which records usage and outcome).
 * With OpenAIProxyRoute, `client_key` is the client's own key where
 * allowed (else NULL), and each backend's key is used. */
static int proxy(request_rec *r, const oaip_dir_conf *conf, const oaip_endpoint *endpoint,
                 const char *upstream_path, const char *auth_line, const char *client_key)
{
    oaip_upstream_request req;
    const oaip_upstream_request *send = &req;
    oaip_upstream_outcome outcome;
    oaip_request_record *record = oaip_request_record_of(r);
    const oaip_backend *first = conf->route ? oaip_route_first(r, conf) : NULL;
    oaip_failover *fo = NULL;
    json_exchange *jx = NULL;
    oaip_refusal refusal;
    const char *client_model;
    apr_size_t len = 0;
    char *body = NULL;
    int rc, prepared;

    memset(&req, 0, sizeof(req));
    req.post = endpoint->post;
    req.error_events = endpoint->error_events;
    req.auth_line = auth_line;
    if (conf->route != NULL) {
        if (first == NULL) {
            return refuse(r, conf, OAIP_ERR_INTERNAL,
                          "No backend of this API's route is defined");
        }
        /* prepared for the first backend; the model decides which goes */
        req.url = oaip_backend_url(r->pool, first, upstream_path);
        req.secret_keys = backend_keys(r);
    } else {
        req.url = oaip_upstream_url(r->pool, oaip_conf_upstream(conf), upstream_path,
                                    conf->upstream_query);
    }
    if (endpoint->body == OAIP_BODY_NONE) {
        if (ap_discard_request_body(r) != OK) {
            r->connection->keepalive = AP_CONN_CLOSE;
        }
    } else {
        rc = oaip_body_read(r, oaip_conf_max_body(conf), &body, &len);
        if (rc == AP_FILTER_ERROR) {
            return rc; /* an input filter already answered */
        }
        if (rc != OK) {
            return body_error(r, conf, rc);
        }
    }
    switch (endpoint->body) {
    case OAIP_BODY_CHAT:
    case OAIP_BODY_JSON:
        prepared = prepare_json(r, conf, endpoint, body, len, &req, &jx);
        break;
    case OAIP_BODY_MULTIPART:
        prepared = prepare_multipart(r, conf, body, len, &req);
        break;
    default:
        prepared = 1;
        break;
    }
    if (!prepared) {
        return OK; /* the error was answered */
    }
    client_model = jx ? jx->client_model : req.model;
    /* the budgets hold this request's worst case from here on; every later
     * refusal or failure is settled in log_transaction */
    if (!oaip_limits_reserve(r, &req, &refusal)) {
        return send_refusal(r, conf, &refusal);
    }
    record->model = req.model;
    record->stream = req.stream;
    /* a request that names no model (GET models) has nothing to check; the
     * allow-list names what clients ask for (an alias, not its target) */
    if (conf->models != NULL && endpoint->body != OAIP_BODY_NONE &&
        !oaip_model_allowed(conf->models, client_model)) {
        return send_error(
            r, conf, OAIP_ERR_MODEL_NOT_ALLOWED,
            client_model ? apr_psprintf(r->pool, "The model %s is not available here",
                                        client_model)
                         : "model must be a string");
    }
    if (conf->route != NULL && (send = route_request(r, conf, upstream_path, client_key,
                                                     &req, first, jx, &fo)) == NULL) {
        return OK; /* the error was answered */
    }
    if (req.stream && !oaip_streams_acquire(r, &refusal)) {
        oaip_failover_end(fo);
        return send_refusal(r, conf, &refusal);
    }
    if (req.stream) {
        oaip_stats_stream_begin(r);
    }
    oaip_upstream_forward(r, conf, send, &outcome);
    oaip_failover_end(fo);
    if (!outcome.responded) {
        return send_refusal(r, conf, &outcome.refusal);
    }
    /* as mod_proxy_http: nothing more to do for a connection that is gone */
    return outcome.client_gone ? DONE : OK;
}

#define FILENAME_PREFIX OAIP_HANDLER_NAME ":"

int oaip_location_is_ours(request_rec *r)
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
    if (!oaip_location_is_ours(r)) {
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
    if (r->handler == NULL || strcmp(r->handler, OAIP_HANDLER_NAME) != 0) {
        return DECLINED;
    }
    return oaip_serve(r);
}

int oaip_serve(request_rec *r)
{
    const oaip_dir_conf *conf;
    const oaip_endpoint *endpoint;
    oaip_refusal refusal;
    const char *origin, *upstream_path, *auth_line;
    int bad_client_key;

    conf = ap_get_module_config(r->per_dir_config, &openai_proxy_module);
    origin = apr_table_get(r->headers_in, "Origin");
    oaip_request_record_of(r)->served = 1; /* limits and stats count it */
    oaip_stats_request_begin(r);

    if (!oaip_cors_apply(r, conf, origin)) {
        return refuse(r, conf, OAIP_ERR_ORIGIN_FORBIDDEN,
                      apr_psprintf(r->pool, "Origin %s is not allowed to use this API",
                                   ap_escape_logitem(r->pool, origin)));
    }
    endpoint = route(r, conf, &upstream_path);
    if (endpoint == NULL) {
        return refuse(r, conf, OAIP_ERR_NOT_FOUND,
                      apr_psprintf(r->pool, "No API endpoint at %s",
                                   ap_escape_logitem(r->pool, r->uri)));
    }
    if (r->method_number == M_OPTIONS) {
        return answer_options(r, endpoint, origin);
    }
    if (r->method_number != (endpoint->post ? M_POST : M_GET)) {
        apr_table_setn(r->err_headers_out, "Allow", allowed_methods(endpoint));
        return refuse(r, conf, OAIP_ERR_METHOD_NOT_ALLOWED,
                      apr_psprintf(r->pool, "%s is not allowed; use %s",
                                   ap_escape_logitem(r->pool, r->method),
                                   endpoint->post ? "POST" : "GET"));
    }
    auth_line = choose_auth_line(r, conf, &bad_client_key);
    if (bad_client_key) {
        return refuse(r, conf, OAIP_ERR_BAD_REQUEST,
                      "The x-openai-key header contains invalid characters");
    }
    /* a route's backends have their own keys (or none, key=none) */
    if (auth_line == NULL && conf->route == NULL) {
        return refuse(r, conf, OAIP_ERR_NO_API_KEY, "OpenAI API key is not configured");
    }
    if (!oaip_limits_check(r, conf, &refusal)) {
        leave_body_unread(r);
        return send_refusal(r, conf, &refusal);
    }
    return proxy(r, conf, endpoint, upstream_path, auth_line, client_key_of(r, conf));
}
