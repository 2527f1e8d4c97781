#include "httpd/limits.h"

#include <apr_atomic.h>
#include <apr_strings.h>

#include "core/token_estimate.h"
#include "httpd/counter_stores.h"
#include "httpd/stats.h"
#include "mod_openai_proxy.h"

/* A budget the check looked at, to be settled once the tokens are known:
 * what the request holds of it is `reserved` until then. */
typedef struct {
    const char *key;
    apr_uint32_t ttl;
    const oaip_configured_limit *cl;
    apr_int64_t reserved;
} budget_charge;

/* Who the caller is for `limit`, prefixed by how they were told apart so
 * that a user named like an IP address is not that address. */
static const char *caller_of(request_rec *r, const oaip_limit *limit)
{
    const char *value;

    switch (limit->by) {
    case OAIP_BY_HEADER:
        value = apr_table_get(r->headers_in, limit->header);
        if (value != NULL && *value != '\0') {
            return apr_pstrcat(r->pool, "header:", value, NULL);
        }
        break; /* without the header, the caller is counted by address */
    case OAIP_BY_DEFAULT:
    case OAIP_BY_USER:
        if (r->user != NULL) {
            return apr_pstrcat(r->pool, "user:", r->user, NULL);
        }
        break;
    case OAIP_BY_IP:
        break;
    }
    return apr_pstrcat(r->pool, "ip:", r->useragent_ip, NULL);
}

static const char *key_of(request_rec *r, char kind, const oaip_configured_limit *cl,
                          apr_time_t now)
{
    /* the same Location in two virtual hosts counts apart; two httpd with
     * the same configuration share a redis counter */
    const char *scope =
        apr_pstrcat(r->pool, r->server->server_hostname, " ", cl->scope, NULL);

    return oaip_limit_key(r->pool, kind, &cl->limit, oaip_limit_window(&cl->limit, now),
                          scope, caller_of(r, &cl->limit));
}

/* Log a store failure at most once a second per process: a store that is
 * down must not flood the error log under load. */
static void warn_store_failure(request_rec *r, oaip_counter_client *store,
                               apr_status_t rv, const char *consequence)
{
    static volatile apr_uint32_t last_warned;
    apr_uint32_t now = (apr_uint32_t)apr_time_sec(apr_time_now());
    apr_uint32_t last = apr_atomic_read32(&last_warned);

    OAIP_STATS_ADD(store_errors, 1);
    if (last != now && apr_atomic_cas32(&last_warned, now, last) == last) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, rv, r, "counter store %s failed: %s",
                      store ? store->name : "(none)", consequence);
    }
}

static int fails_closed(request_rec *r)
{
    const oaip_server_conf *sconf =
        ap_get_module_config(r->server->module_config, &openai_proxy_module);

    return oaip_server_store_fails_closed(sconf);
}

static apr_status_t count(oaip_counter_client *store, const char *key, apr_int64_t delta,
                          apr_uint32_t ttl, apr_uint64_t *total)
{
    if (delta > OAIP_COUNTER_MAX_DELTA) {
        delta = OAIP_COUNTER_MAX_DELTA;
    } else if (delta < -OAIP_COUNTER_MAX_DELTA) {
        delta = -OAIP_COUNTER_MAX_DELTA;
    }
    return store ? store->add(store, key, delta, ttl, total) : APR_EINIT;
}

/* A store failure: refused when the operator said so, else let through. */
static int store_failed(request_rec *r, oaip_counter_client *store, apr_status_t rv,
                        oaip_refusal *refusal)
{
    if (fails_closed(r)) {
        warn_store_failure(r, store, rv,
                           "refusing requests (OpenAIProxyCounterStoreFail closed)");
        refusal->kind = OAIP_ERR_LIMITS_UNAVAILABLE;
        refusal->detail = "Usage limits cannot be checked right now; retry shortly";
        refusal->retry_after = 1;
        return 0;
    }
    warn_store_failure(r, store, rv,
                       "limits not applied (OpenAIProxyCounterStoreFail open)");
    return 1;
}

static int check_rates(request_rec *r, oaip_counter_client *store,
                       const apr_array_header_t *limits, apr_time_t now,
                       oaip_refusal *refusal)
{
    int i;

    for (i = 0; limits != NULL && i < limits->nelts; i++) {
        const oaip_configured_limit *cl =
            &APR_ARRAY_IDX(limits, i, oaip_configured_limit);
        apr_uint32_t left = oaip_limit_seconds_left(&cl->limit, now);
        apr_uint64_t total = 0;
        /* counted before it is compared: of N parallel requests with one
         * slot left, exactly one sees itself within the limit */
        apr_status_t rv = count(store, key_of(r, 'r', cl, now), 1, left + 1, &total);

        if (rv != APR_SUCCESS) {
            return store_failed(r, store, rv, refusal);
        }
        if (total > cl->limit.amount) {
            OAIP_STATS_ADD(rate_limited, 1);
            refusal->kind = OAIP_ERR_RATE_LIMITED;
            refusal->retry_after = left;
            refusal->detail = apr_psprintf(
                r->pool, "Rate limit of %s reached; retry in %u seconds", cl->text, left);
            return 0;
        }
    }
    return 1;
}

static void budget_refused(request_rec *r, const oaip_configured_limit *cl,
                           apr_uint32_t left, oaip_refusal *refusal)
{
    OAIP_STATS_ADD(budget_exhausted, 1);
    refusal->kind = OAIP_ERR_TOKEN_BUDGET_EXHAUSTED;
    refusal->retry_after = left;
    refusal->detail = apr_psprintf(
        r->pool,
        "Token budget of %s is spent (or held by requests in progress); retry in %u "
        "seconds",
        cl->text, left);
}

static int check_budgets(request_rec *r, oaip_counter_client *store,
                         const apr_array_header_t *budgets, apr_time_t now,
                         oaip_refusal *refusal)
{
    oaip_request_record *record = oaip_request_record_of(r);
    int i;

    for (i = 0; budgets != NULL && i < budgets->nelts; i++) {
        const oaip_configured_limit *cl =
            &APR_ARRAY_IDX(budgets, i, oaip_configured_limit);
        apr_uint32_t left = oaip_limit_seconds_left(&cl->limit, now);
        const char *key = key_of(r, 't', cl, now);
        apr_uint64_t spent = 0;
        apr_status_t rv = count(store, key, 0, left + 1, &spent);
        budget_charge *charge;

        if (rv != APR_SUCCESS) {
            return store_failed(r, store, rv, refusal);
        }
        /* a cheap refusal before the body is read; the reservation, once
         * the body is known, is what holds under parallel load */
        if (spent >= cl->limit.amount) {
            budget_refused(r, cl, left, refusal);
            return 0;
        }
        if (record->budget_charges == NULL) {
            record->budget_charges = apr_array_make(r->pool, 2, sizeof(budget_charge));
        }
        charge = apr_array_push(record->budget_charges);
        charge->key = key;
        charge->ttl = left + 1;
        charge->cl = cl;
        charge->reserved = 0;
        record->store = store;
    }
    return 1;
}

int oaip_limits_check(request_rec *r, const oaip_dir_conf *conf, oaip_refusal *refusal)
{
    oaip_counter_client *store;
    apr_time_t now;

    memset(refusal, 0, sizeof(*refusal));
    if ((conf->rate_limits == NULL || conf->rate_limits->nelts == 0) &&
        (conf->token_budgets == NULL || conf->token_budgets->nelts == 0)) {
        return 1;
    }
    store = oaip_counter_store_for(r->server);
    now = apr_time_now();
    return check_rates(r, store, conf->rate_limits, now, refusal) &&
           check_budgets(r, store, conf->token_budgets, now, refusal);
}

/* What a request may cost at most: for a JSON body, its prompt bound plus
 * its output limit (token_estimate.h); 0 when nothing is known (a
 * multipart upload, a GET), so that only the check before applied. */
static apr_int64_t worst_case(const oaip_upstream_request *req)
{
    oaip_request_cost cost;

    if (req->body == NULL || req->content_type == NULL ||
        strcmp(req->content_type, "application/json") != 0) {
        return 0;
    }
    oaip_request_cost_of(req->body, req->body_len, &cost);
    return oaip_request_cost_worst(&cost);
}

/* Gives back what charges[0..n) reserved. */
static void release(request_rec *r, oaip_request_record *record, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        budget_charge *c = &APR_ARRAY_IDX(record->budget_charges, i, budget_charge);
        apr_uint64_t total;
        apr_status_t rv;

        if (c->reserved == 0) {
            continue;
        }
        rv = count(record->store, c->key, -c->reserved, c->ttl, &total);
        if (rv != APR_SUCCESS) {
            warn_store_failure(r, record->store, rv, "a reservation not given back");
        }
        c->reserved = 0;
    }
}

int oaip_limits_reserve(request_rec *r, const oaip_upstream_request *req,
                        oaip_refusal *refusal)
{
    oaip_request_record *record = oaip_request_record_find(r);
    apr_int64_t worst;
    int i;

    memset(refusal, 0, sizeof(*refusal));
    if (record == NULL || record->budget_charges == NULL ||
        (worst = worst_case(req)) <= 0) {
        return 1;
    }
    if (worst > OAIP_COUNTER_MAX_DELTA) {
        worst = OAIP_COUNTER_MAX_DELTA;
    }
    for (i = 0; i < record->budget_charges->nelts; i++) {
        budget_charge *c = &APR_ARRAY_IDX(record->budget_charges, i, budget_charge);
        apr_uint64_t total = 0;
        /* counted before it is compared, as for rate limits: of N parallel
         * requests, each sees the reservations of those before it */
        apr_status_t rv = count(record->store, c->key, worst, c->ttl, &total);

        if (rv != APR_SUCCESS) {
            if (!store_failed(r, record->store, rv, refusal)) {
                release(r, record, i);
                return 0;
            }
            continue; /* fails open: this budget holds nothing */
        }
        c->reserved = worst;
        /* admitted while the counter before this reservation is below the
         * budget: the overshoot is at most one request's worst case */
        if (total >= (apr_uint64_t)worst &&
            total - (apr_uint64_t)worst >= c->cl->limit.amount) {
            budget_refused(r, c->cl,
                           oaip_limit_seconds_left(&c->cl->limit, apr_time_now()),
                           refusal);
            release(r, record, i + 1);
            return 0;
        }
    }
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                  "token budgets: %" APR_INT64_T_FMT " tokens reserved", worst);
    return 1;
}

static apr_int64_t tokens_spent(const oaip_usage *usage)
{
    apr_int64_t tokens;

    if (usage->total_tokens >= 0) {
        tokens = usage->total_tokens;
    } else {
        tokens = (usage->prompt_tokens > 0 ? usage->prompt_tokens : 0) +
                 (usage->completion_tokens > 0 ? usage->completion_tokens : 0);
    }
    return tokens > OAIP_COUNTER_MAX_DELTA ? OAIP_COUNTER_MAX_DELTA : tokens;
}

void oaip_limits_charge(request_rec *r, oaip_request_record *record)
{
    apr_int64_t tokens;
    int i;

    if (record->budget_charges == NULL) {
        return;
    }
    tokens = tokens_spent(&record->usage);
    for (i = 0; i < record->budget_charges->nelts; i++) {
        const budget_charge *c = &APR_ARRAY_IDX(record->budget_charges, i, budget_charge);
        /* the real usage replaces the reservation: a negative step gives
         * back what was not used */
        apr_int64_t delta = tokens - c->reserved;
        apr_uint64_t total;
        apr_status_t rv;

        if (delta == 0) {
            continue;
        }
        rv = count(record->store, c->key, delta, c->ttl, &total);
        if (rv != APR_SUCCESS) {
            warn_store_failure(r, record->store, rv, "tokens of a request not settled");
        }
    }
    /* settled once, whoever calls again */
    record->budget_charges = NULL;
}
