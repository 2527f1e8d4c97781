#include "httpd/status.h"

#include <apr_atomic.h>
#include <apr_strings.h>
#include <http_protocol.h>
#include <util_script.h>
#include <jansson.h>

#include "core/version.h"
#include "httpd/backend_state.h"
#include "httpd/stats.h"
#include "mod_openai_proxy.h"

/* A copy of the shared block: values read once, rows of one model name
 * added together. */
typedef struct {
    oaip_stats s;
    int models;
} snapshot;

static void copy_histogram(oaip_histogram *to, oaip_histogram *from)
{
    int i;

    to->count = apr_atomic_read64(&from->count);
    to->sum_usec = apr_atomic_read64(&from->sum_usec);
    for (i = 0; i <= OAIP_STATS_BUCKETS; i++) {
        to->buckets[i] = apr_atomic_read64(&from->buckets[i]);
    }
}

static void take_snapshot(oaip_stats *live, snapshot *snap)
{
    oaip_stats *s = &snap->s;
    int i, j;

    memset(snap, 0, sizeof(*snap));
    s->started = live->started;
    s->requests = apr_atomic_read64(&live->requests);
    for (i = 0; i < OAIP_STATS_OUTCOMES; i++) {
        s->by_outcome[i] = apr_atomic_read64(&live->by_outcome[i]);
    }
    for (i = 0; i < OAIP_STATS_STATUSES; i++) {
        s->by_status[i] = apr_atomic_read64(&live->by_status[i]);
    }
    s->active_requests = apr_atomic_read32(&live->active_requests);
    s->active_streams = apr_atomic_read32(&live->active_streams);
    s->rate_limited = apr_atomic_read64(&live->rate_limited);
    s->budget_exhausted = apr_atomic_read64(&live->budget_exhausted);
    s->store_errors = apr_atomic_read64(&live->store_errors);
    s->second_attempts = apr_atomic_read64(&live->second_attempts);
    copy_histogram(&s->duration, &live->duration);
    copy_histogram(&s->first_byte, &live->first_byte);
    for (i = 0; i < OAIP_STATS_MODELS; i++) {
        oaip_model_stats *m = &live->models[i], *to = NULL;
        if (apr_atomic_read32(&m->state) != 2) {
            continue;
        }
        for (j = 0; j < snap->models && to == NULL; j++) {
            if (strcmp(s->models[j].name, m->name) == 0) {
                to = &s->models[j];
            }
        }
        if (to == NULL) {
            to = &s->models[snap->models++];
            memcpy(to->name, m->name, sizeof(to->name));
        }
        to->requests += apr_atomic_read64(&m->requests);
        to->prompt_tokens += apr_atomic_read64(&m->prompt_tokens);
        to->completion_tokens += apr_atomic_read64(&m->completion_tokens);
    }
}

static apr_uint64_t outcome_sum(const snapshot *snap, const oaip_outcome *outcomes,
                                apr_size_t n)
{
    apr_uint64_t sum = 0;
    apr_size_t i;

    for (i = 0; i < n; i++) {
        sum += snap->s.by_outcome[outcomes[i]];
    }
    return sum;
}

static const oaip_outcome upstream_errors[] = {
    OAIP_OUTCOME_UPSTREAM_ERROR, OAIP_OUTCOME_UPSTREAM_FAILED,
    OAIP_OUTCOME_ERRORS + OAIP_ERR_UPSTREAM_UNREACHABLE,
    OAIP_OUTCOME_ERRORS + OAIP_ERR_UPSTREAM_INVALID};
static const oaip_outcome upstream_timeouts[] = {
    OAIP_OUTCOME_TIMEOUT, OAIP_OUTCOME_ERRORS + OAIP_ERR_UPSTREAM_TIMEOUT};
#define OUTCOME_SUM(snap, list) outcome_sum(snap, list, sizeof(list) / sizeof(list[0]))

static json_t *histogram_json(const oaip_histogram *h)
{
    json_t *buckets = json_object();
    apr_uint64_t cumulative = 0;
    char bound[32];
    int i;

    for (i = 0; i < OAIP_STATS_BUCKETS; i++) {
        cumulative += h->buckets[i];
        apr_snprintf(bound, sizeof(bound), "%g", oaip_stats_bucket_bounds[i]);
        json_object_set_new(buckets, bound, json_integer((json_int_t)cumulative));
    }
    json_object_set_new(buckets, "+Inf", json_integer((json_int_t)h->count));
    return json_pack("{s:I,s:f,s:o}", "count", (json_int_t)h->count, "sum",
                     (double)h->sum_usec / APR_USEC_PER_SEC, "buckets", buckets);
}

static char *render_json(request_rec *r, const snapshot *snap)
{
    const oaip_stats *s = &snap->s;
    json_t *outcomes = json_object(), *statuses = json_object(), *models = json_object();
    apr_uint64_t prompt = 0, completion = 0;
    const char *name;
    json_t *doc;
    char *text;
    int i;

    for (i = 0; (name = oaip_outcome_name((oaip_outcome)i)) != NULL; i++) {
        if (s->by_outcome[i] > 0) {
            json_object_set_new(outcomes, name,
                                json_integer((json_int_t)s->by_outcome[i]));
        }
    }
    for (i = 0; i < OAIP_STATS_STATUSES; i++) {
        if (s->by_status[i] > 0) {
            json_object_set_new(statuses, apr_itoa(r->pool, i),
                                json_integer((json_int_t)s->by_status[i]));
        }
    }
    for (i = 0; i < snap->models; i++) {
        const oaip_model_stats *m = &s->models[i];
        prompt += m->prompt_tokens;
        completion += m->completion_tokens;
        json_object_set_new(models, m->name,
                            json_pack("{s:I,s:I,s:I}", "requests",
                                      (json_int_t)m->requests, "prompt_tokens",
                                      (json_int_t)m->prompt_tokens, "completion_tokens",
                                      (json_int_t)m->completion_tokens));
    }
    doc = json_pack(
        "{s:s,s:I,s:I,"
        "s:{s:I,s:i,s:i,s:o,s:o},"
        "s:{s:I,s:I,s:o},"
        "s:{s:I,s:I,s:I},"
        "s:{s:I,s:I,s:I},"
        "s:{s:o,s:o}}",
        "version", OAIP_VERSION, "started", (json_int_t)apr_time_sec(s->started),
        "uptime_seconds", (json_int_t)apr_time_sec(apr_time_now() - s->started),
        "requests", "total", (json_int_t)s->requests, "active", (int)s->active_requests,
        "active_streams", (int)s->active_streams, "by_outcome", outcomes, "by_status",
        statuses, "tokens", "prompt", (json_int_t)prompt, "completion",
        (json_int_t)completion, "by_model", models, "upstream", "errors",
        (json_int_t)OUTCOME_SUM(snap, upstream_errors), "timeouts",
        (json_int_t)OUTCOME_SUM(snap, upstream_timeouts), "second_attempts",
        (json_int_t)s->second_attempts, "limits", "rate_limited",
        (json_int_t)s->rate_limited, "budget_exhausted", (json_int_t)s->budget_exhausted,
        "store_errors", (json_int_t)s->store_errors, "latency_seconds", "request",
        histogram_json(&s->duration), "first_byte", histogram_json(&s->first_byte));
    if (doc == NULL) {
        return NULL;
    }
    json_object_set_new(doc, "backends", oaip_backend_state_json());
    text = json_dumps(doc, JSON_INDENT(2) | JSON_ENSURE_ASCII);
    json_decref(doc);
    return text;
}

/* A label value in the exposition format: \, " and newlines escaped. */
static const char *label(apr_pool_t *p, const char *value)
{
    char *out = apr_palloc(p, 2 * strlen(value) + 1), *o = out;

    for (; *value; value++) {
        if (*value == '\\' || *value == '"') {
            *o++ = '\\';
            *o++ = *value;
        } else if (*value == '\n') {
            *o++ = '\\';
            *o++ = 'n';
        } else {
            *o++ = *value;
        }
    }
    *o = '\0';
    return out;
}

static void metric_head(request_rec *r, const char *name, const char *type,
                        const char *help)
{
    ap_rprintf(r, "# HELP openai_proxy_%s %s\n# TYPE openai_proxy_%s %s\n", name, help,
               name, type);
}

static void histogram_prometheus(request_rec *r, const char *name, const char *help,
                                 const oaip_histogram *h)
{
    apr_uint64_t cumulative = 0;
    int i;

    metric_head(r, name, "histogram", help);
    for (i = 0; i < OAIP_STATS_BUCKETS; i++) {
        cumulative += h->buckets[i];
        ap_rprintf(r, "openai_proxy_%s_bucket{le=\"%g\"} %" APR_UINT64_T_FMT "\n", name,
                   oaip_stats_bucket_bounds[i], cumulative);
    }
    ap_rprintf(r,
               "openai_proxy_%s_bucket{le=\"+Inf\"} %" APR_UINT64_T_FMT "\n"
               "openai_proxy_%s_sum %.6f\nopenai_proxy_%s_count %" APR_UINT64_T_FMT "\n",
               name, h->count, name, (double)h->sum_usec / APR_USEC_PER_SEC, name,
               h->count);
}

static void render_prometheus(request_rec *r, const snapshot *snap)
{
    const oaip_stats *s = &snap->s;
    const char *name;
    int i;

    metric_head(r, "start_time_seconds", "gauge",
                "When the statistics started (httpd start).");
    ap_rprintf(r, "openai_proxy_start_time_seconds %" APR_TIME_T_FMT "\n",
               apr_time_sec(s->started));
    metric_head(r, "requests_total", "counter", "Requests to the proxy, by outcome.");
    for (i = 0; (name = oaip_outcome_name((oaip_outcome)i)) != NULL; i++) {
        ap_rprintf(r,
                   "openai_proxy_requests_total{outcome=\"%s\"} %" APR_UINT64_T_FMT "\n",
                   name, s->by_outcome[i]);
    }
    metric_head(r, "responses_total", "counter",
                "Responses of the proxy, by HTTP status.");
    for (i = 0; i < OAIP_STATS_STATUSES; i++) {
        if (s->by_status[i] > 0) {
            ap_rprintf(
                r, "openai_proxy_responses_total{code=\"%d\"} %" APR_UINT64_T_FMT "\n", i,
                s->by_status[i]);
        }
    }
    metric_head(r, "active_requests", "gauge", "Requests being served now.");
    ap_rprintf(r, "openai_proxy_active_requests %u\n", s->active_requests);
    metric_head(r, "active_streams", "gauge", "Streams open now.");
    ap_rprintf(r, "openai_proxy_active_streams %u\n", s->active_streams);
    metric_head(r, "tokens_total", "counter", "Tokens the upstream reported, by model.");
    for (i = 0; i < snap->models; i++) {
        const char *model = label(r->pool, s->models[i].name);
        ap_rprintf(
            r,
            "openai_proxy_tokens_total{model=\"%s\",type=\"prompt\"} %" APR_UINT64_T_FMT
            "\nopenai_proxy_tokens_total{model=\"%s\",type=\"completion\"} "
            "%" APR_UINT64_T_FMT "\n",
            model, s->models[i].prompt_tokens, model, s->models[i].completion_tokens);
    }
    metric_head(r, "model_requests_total", "counter", "Answered requests, by model.");
    for (i = 0; i < snap->models; i++) {
        ap_rprintf(
            r, "openai_proxy_model_requests_total{model=\"%s\"} %" APR_UINT64_T_FMT "\n",
            label(r->pool, s->models[i].name), s->models[i].requests);
    }
    metric_head(r, "upstream_errors_total", "counter",
                "Upstream failures and error answers.");
    ap_rprintf(r, "openai_proxy_upstream_errors_total %" APR_UINT64_T_FMT "\n",
               OUTCOME_SUM(snap, upstream_errors));
    metric_head(r, "upstream_timeouts_total", "counter", "Upstream timeouts.");
    ap_rprintf(r, "openai_proxy_upstream_timeouts_total %" APR_UINT64_T_FMT "\n",
               OUTCOME_SUM(snap, upstream_timeouts));
    metric_head(r, "upstream_second_attempts_total", "counter",
                "Upstream attempts after a request's first (a refused field taken back, "
                "a failover to the next backend).");
    ap_rprintf(r, "openai_proxy_upstream_second_attempts_total %" APR_UINT64_T_FMT "\n",
               s->second_attempts);
    metric_head(r, "limited_total", "counter", "Requests refused by a limit.");
    ap_rprintf(r,
               "openai_proxy_limited_total{limit=\"rate\"} %" APR_UINT64_T_FMT "\n"
               "openai_proxy_limited_total{limit=\"token_budget\"} %" APR_UINT64_T_FMT
               "\n",
               s->rate_limited, s->budget_exhausted);
    metric_head(r, "counter_store_errors_total", "counter",
                "Failed reads or updates of the limit counters.");
    ap_rprintf(r, "openai_proxy_counter_store_errors_total %" APR_UINT64_T_FMT "\n",
               s->store_errors);
    histogram_prometheus(r, "request_duration_seconds", "Time to serve a request.",
                         &s->duration);
    histogram_prometheus(r, "upstream_first_byte_seconds",
                         "Time until the upstream's first byte.", &s->first_byte);
    oaip_backend_state_prometheus(r);
}

static int wants_prometheus(request_rec *r)
{
    apr_table_t *args;
    const char *format;

    ap_args_to_table(r, &args);
    format = apr_table_get(args, "format");
    return format != NULL && strcmp(format, "prometheus") == 0;
}

int oaip_status_handler(request_rec *r)
{
    oaip_stats *live = oaip_stats_get();
    snapshot *snap;
    char *json;

    if (r->handler == NULL || strcmp(r->handler, OAIP_STATUS_HANDLER_NAME) != 0) {
        return DECLINED;
    }
    r->allowed = AP_METHOD_BIT << M_GET;
    if (r->method_number != M_GET) {
        return HTTP_METHOD_NOT_ALLOWED;
    }
    if (live == NULL) {
        return HTTP_SERVICE_UNAVAILABLE;
    }
    snap = apr_palloc(r->pool, sizeof(*snap));
    take_snapshot(live, snap);
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    if (wants_prometheus(r)) {
        ap_set_content_type(r, "text/plain; version=0.0.4; charset=utf-8");
        if (!r->header_only) {
            render_prometheus(r, snap);
        }
        return OK;
    }
    json = render_json(r, snap);
    if (json == NULL) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    ap_set_content_type(r, "application/json");
    if (!r->header_only) {
        ap_rputs(json, r);
        ap_rputs("\n", r);
    }
    free(json);
    return OK;
}
