#include "httpd/failover.h"

#include <apr_date.h>
#include <apr_strings.h>
#include <http_log.h>

#include "core/header_check.h"
#include "core/request.h"
#include "core/upstream_url.h"
#include "httpd/backend_state.h"
#include "httpd/request_record.h"
#include "mod_openai_proxy.h"

struct oaip_failover {
    request_rec *r;
    const oaip_dir_conf *conf;
    const char *upstream_path;
    const char *client_key;
    const oaip_backend *order[OAIP_ROUTE_MAX]; /* eligible, in trial order */
    int tried[OAIP_ROUTE_MAX];
    int count;
    int current;               /* index in order of the attempt in flight; -1: none */
    int in_flight;             /* its in-flight count is held */
    int judged;                /* its attempt was counted as an answer or a failure */
    int failed_over;           /* attempts went to more than one backend */
    oaip_upstream_again inner; /* the request's own policy (take-back) */
    void *inner_ctx;
    oaip_retarget retarget;
    void *retarget_ctx;
    const oaip_upstream_request *req; /* the attempt in flight */
};

const char *oaip_backend_url(apr_pool_t *p, const oaip_backend *b,
                             const char *upstream_path)
{
    return oaip_upstream_url(p, b->url, upstream_path, b->query);
}

static const oaip_server_conf *server_conf(request_rec *r)
{
    return ap_get_module_config(r->server->module_config, &openai_proxy_module);
}

/* A name check_config did not see (a route in a nested section): logged,
 * and the route goes on without it. */
static const oaip_backend *resolve(request_rec *r, const oaip_route *route, int i)
{
    const char *name = APR_ARRAY_IDX(route->names, i, const char *);
    const oaip_backend *b = oaip_server_backend(server_conf(r), name);

    if (b == NULL) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      "%s line %u: OpenAIProxyRoute names %s, which this server does "
                      "not define: left out",
                      route->file, route->line, name);
    }
    return b;
}

const oaip_backend *oaip_route_first(request_rec *r, const oaip_dir_conf *conf)
{
    int i;

    for (i = 0; conf->route != NULL && i < conf->route->names->nelts; i++) {
        const oaip_backend *b = resolve(r, conf->route, i);
        if (b != NULL) {
            return b;
        }
    }
    return NULL;
}

static int serves_model(const oaip_backend *b, const char *model)
{
    return b->models == NULL || oaip_model_allowed(b->models, model);
}

/* weighted: one at random by weight among those that do not cool down
 * (all, when every one does), first; the others after it in route order. */
static void weighted_first(oaip_failover *fo)
{
    apr_time_t now = apr_time_now();
    apr_uint32_t total = 0, pick;
    int i, cooling_all = 1, chosen = 0;
    const oaip_backend *first;

    for (i = 0; i < fo->count; i++) {
        cooling_all &= oaip_backend_cooling(fo->order[i], now);
    }
    for (i = 0; i < fo->count; i++) {
        if (cooling_all || !oaip_backend_cooling(fo->order[i], now)) {
            total += (apr_uint32_t)fo->order[i]->weight;
        }
    }
    if (total == 0) {
        return;
    }
    pick = ap_random_pick(0, total - 1);
    for (i = 0; i < fo->count; i++) {
        if (!cooling_all && oaip_backend_cooling(fo->order[i], now)) {
            continue;
        }
        if (pick < (apr_uint32_t)fo->order[i]->weight) {
            chosen = i;
            break;
        }
        pick -= (apr_uint32_t)fo->order[i]->weight;
    }
    first = fo->order[chosen];
    memmove(&fo->order[1], &fo->order[0], sizeof(fo->order[0]) * (apr_size_t)chosen);
    fo->order[0] = first;
}

/* least-busy: by attempts in flight over every process, ties in route
 * order (a stable insertion sort of at most OAIP_ROUTE_MAX). */
static void least_busy_first(oaip_failover *fo)
{
    apr_uint32_t busy[OAIP_ROUTE_MAX];
    int i, j;

    for (i = 0; i < fo->count; i++) {
        busy[i] = oaip_backend_in_flight(fo->order[i]);
    }
    for (i = 1; i < fo->count; i++) {
        const oaip_backend *b = fo->order[i];
        apr_uint32_t n = busy[i];
        for (j = i; j > 0 && busy[j - 1] > n; j--) {
            busy[j] = busy[j - 1];
            fo->order[j] = fo->order[j - 1];
        }
        busy[j] = n;
        fo->order[j] = b;
    }
}

oaip_failover *oaip_failover_begin(request_rec *r, const oaip_dir_conf *conf,
                                   const char *model, const char *upstream_path,
                                   const char *client_key)
{
    oaip_failover *fo = apr_pcalloc(r->pool, sizeof(*fo));
    int i;

    fo->r = r;
    fo->conf = conf;
    fo->upstream_path = upstream_path;
    fo->client_key = client_key;
    fo->current = -1;
    for (i = 0; i < conf->route->names->nelts; i++) {
        const oaip_backend *b = resolve(r, conf->route, i);
        if (b != NULL && serves_model(b, model)) {
            fo->order[fo->count++] = b;
        }
    }
    if (fo->count == 0) {
        return NULL;
    }
    switch (oaip_conf_balance(conf)) {
    case OAIP_BALANCE_WEIGHTED:
        weighted_first(fo);
        break;
    case OAIP_BALANCE_LEAST_BUSY:
        least_busy_first(fo);
        break;
    default:
        break;
    }
    return fo;
}

/* The next backend to try: the first untried one that does not cool
 * down; when only cooling ones are left, the first of them (better than
 * giving up). -1: none left. */
static int next_backend(const oaip_failover *fo)
{
    apr_time_t now = apr_time_now();
    int i, fallback = -1;

    for (i = 0; i < fo->count; i++) {
        if (fo->tried[i]) {
            continue;
        }
        if (!oaip_backend_cooling(fo->order[i], now)) {
            return i;
        }
        if (fallback < 0) {
            fallback = i;
        }
    }
    return fallback;
}

static const char *auth_line_for(const oaip_failover *fo, const oaip_backend *b)
{
    const char *key = fo->client_key ? fo->client_key : b->key;

    return key ? oaip_auth_header_line(fo->r->pool, b->auth_name, key) : NULL;
}

static void release(oaip_failover *fo)
{
    if (fo->in_flight) {
        oaip_backend_attempt_end(fo->order[fo->current]);
        fo->in_flight = 0;
    }
}

static apr_status_t release_cleanup(void *fo)
{
    release(fo);
    return APR_SUCCESS;
}

static void take(oaip_failover *fo, int i)
{
    fo->current = i;
    fo->tried[i] = 1;
    fo->judged = 0;
    fo->in_flight = 1;
    oaip_backend_attempt_begin(fo->order[i]);
}

/* Retry-After (seconds or an HTTP date) or retry-after-ms of an answer,
 * as an interval; 0: none. */
static apr_interval_time_t retry_after(const apr_table_t *headers)
{
    const char *ms = headers ? apr_table_get(headers, "retry-after-ms") : NULL;
    const char *after = headers ? apr_table_get(headers, "retry-after") : NULL;
    apr_interval_time_t wait = 0, other;
    apr_time_t date;
    char *end;
    apr_int64_t n;

    if (ms != NULL && (n = apr_strtoi64(ms, &end, 10)) > 0 && *end == '\0' &&
        n <= 86400000) {
        wait = apr_time_from_msec(n);
    }
    if (after != NULL) {
        n = apr_strtoi64(after, &end, 10);
        if (end != after && *end == '\0' && n > 0 && n <= 86400) {
            other = apr_time_from_sec(n);
        } else if ((date = apr_date_parse_http(after)) != APR_DATE_BAD) {
            other = date - apr_time_now();
        } else {
            other = 0;
        }
        if (other > wait && other <= apr_time_from_sec(86400)) {
            wait = other;
        }
    }
    return wait;
}

static oaip_backend_failure cause_of_status(long status)
{
    return status == 429   ? OAIP_BACKEND_FAILED_429
           : status >= 500 ? OAIP_BACKEND_FAILED_5XX
                           : OAIP_BACKEND_FAILED_OTHER;
}

/* Whether the attempt failed the backend in OpenAIProxyFailover's sense;
 * if so, the failure is counted and the backend cools down. */
static int failed(oaip_failover *fo, const oaip_attempt *a)
{
    const oaip_failover_set *set = oaip_conf_failover_on(fo->conf);
    const oaip_backend *b = fo->order[fo->current];
    apr_interval_time_t cooldown = oaip_conf_cooldown(fo->conf), wait;
    oaip_backend_failure cause;

    switch (a->kind) {
    case OAIP_ATTEMPT_NOT_SENT:
        if (!set->connect) {
            return 0;
        }
        cause = OAIP_BACKEND_FAILED_CONNECT;
        break;
    case OAIP_ATTEMPT_TIMED_OUT:
        cause = OAIP_BACKEND_FAILED_TIMEOUT;
        break;
    default:
        if (a->status < 0 || a->status >= 600 || !set->status[a->status]) {
            return 0;
        }
        cause = cause_of_status(a->status);
        /* the backend's own word on when to come back, when longer */
        wait = retry_after(a->headers);
        if (cooldown > 0 && wait > cooldown) {
            cooldown = wait;
        }
        break;
    }
    oaip_backend_failed(b, cause, cooldown);
    fo->judged = 1;
    return 1;
}

static const char *attempt_text(apr_pool_t *p, const oaip_attempt *a)
{
    switch (a->kind) {
    case OAIP_ATTEMPT_NOT_SENT:
        return "could not be reached";
    case OAIP_ATTEMPT_TIMED_OUT:
        return "sent no first byte in time";
    default:
        return apr_psprintf(p, "answered %ld", a->status);
    }
}

/* oaip_upstream_again: the request's own policy first (the same backend,
 * without a field it refused); then, when the backend failed the request,
 * the next eligible one. */
static const oaip_upstream_request *failover_again(void *ctx, request_rec *r,
                                                   const oaip_attempt *a)
{
    oaip_failover *fo = ctx;
    const oaip_upstream_request *next = NULL;
    const oaip_backend *from = fo->order[fo->current];
    int i;

    if (fo->inner != NULL && (next = fo->inner(fo->inner_ctx, r, a)) != NULL) {
        fo->req = next;
        return next; /* the same backend: its attempt goes on */
    }
    if (!failed(fo, a)) {
        return NULL; /* its answer goes to the client */
    }
    release(fo);
    while ((i = next_backend(fo)) >= 0) {
        const oaip_backend *b = fo->order[i];
        next = fo->retarget(fo->retarget_ctx, fo->req,
                            oaip_backend_url(r->pool, b, fo->upstream_path),
                            auth_line_for(fo, b));
        fo->tried[i] = 1;
        if (next != NULL) {
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                          "backend %s %s: attempt %d goes to backend %s", from->name,
                          attempt_text(r->pool, a), a->number + 1, b->name);
            take(fo, i);
            fo->failed_over = 1;
            fo->req = next;
            return next;
        }
    }
    ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                  "backend %s %s, and no other backend is left to try: the client gets "
                  "its answer",
                  from->name, attempt_text(r->pool, a));
    return NULL;
}

const oaip_upstream_request *oaip_failover_start(oaip_failover *fo,
                                                 oaip_upstream_request *req,
                                                 const oaip_backend *prepared_for,
                                                 oaip_retarget retarget, void *ctx)
{
    int first = next_backend(fo);
    const oaip_backend *b = fo->order[first];
    const oaip_upstream_request *start = req;

    fo->retarget = retarget;
    fo->retarget_ctx = ctx;
    fo->inner = req->again;
    fo->inner_ctx = req->again_ctx;
    /* every policy the request takes on is this one */
    req->again = failover_again;
    req->again_ctx = fo;
    req->offer_first_byte_timeout = oaip_conf_failover_on(fo->conf)->timeout;
    req->auth_line = auth_line_for(fo, b);
    if (b != prepared_for) {
        start = retarget(ctx, req, oaip_backend_url(fo->r->pool, b, fo->upstream_path),
                         req->auth_line);
        if (start == NULL) {
            return NULL;
        }
    }
    take(fo, first);
    apr_pool_cleanup_register(fo->r->pool, fo, release_cleanup, apr_pool_cleanup_null);
    fo->req = start;
    return start;
}

/* The last attempt, when the policy was not offered it (a stream cut, a
 * first byte that timed out without "timeout" listed...), judged from how
 * the exchange ended. */
static void judge_last(oaip_failover *fo, const oaip_request_record *record)
{
    const oaip_failover_set *set = oaip_conf_failover_on(fo->conf);
    const oaip_backend *b = fo->order[fo->current];
    long status = record->upstream_status;

    if (status >= 400 && status < 600 && set->status[status]) {
        oaip_backend_failed(b, cause_of_status(status), oaip_conf_cooldown(fo->conf));
    } else if (record->outcome == OAIP_OUTCOME_TIMEOUT && status == 0) {
        oaip_backend_failed(b, OAIP_BACKEND_FAILED_TIMEOUT, 0);
    } else if (status == 0 && record->outcome != OAIP_OUTCOME_CLIENT_GONE &&
               record->outcome != OAIP_OUTCOME_OK) {
        oaip_backend_failed(b, OAIP_BACKEND_FAILED_CONNECT, 0);
    }
}

void oaip_failover_end(oaip_failover *fo)
{
    oaip_request_record *record;
    const oaip_backend *b;

    if (fo == NULL || fo->current < 0) {
        return;
    }
    record = oaip_request_record_of(fo->r);
    b = fo->order[fo->current];
    if (!fo->judged) {
        judge_last(fo, record);
    }
    release(fo);
    record->backend = b->name;
    if (record->upstream_status > 0) {
        oaip_backend_answered(b, &record->usage);
    }
}
