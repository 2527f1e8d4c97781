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

/* One exchange with the store for all of `steps`; a missing store fails. */
static apr_status_t count_all(oaip_counter_client *store, oaip_counter_step *steps, int n,
                              int flags, int *refused)
{
    int i;

    *refused = -1;
    for (i = 0; i < n; i++) {
        if (steps[i].delta > OAIP_COUNTER_MAX_DELTA) {
            steps[i].delta = OAIP_COUNTER_MAX_DELTA;
        } else if (steps[i].delta < -OAIP_COUNTER_MAX_DELTA) {
            steps[i].delta = -OAIP_COUNTER_MAX_DELTA;
        }
    }
    return store ? oaip_counters_add_all(store, steps, n, flags, refused) : APR_EINIT;
}

static int count_of(const apr_array_header_t *limits)
{
    return limits != NULL ? limits->nelts : 0;
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

static void rate_refused(request_rec *r, const oaip_configured_limit *cl,
                         apr_uint32_t left, oaip_refusal *refusal)
{
    OAIP_STATS_ADD(rate_limited, 1);
    refusal->kind = OAIP_ERR_RATE_LIMITED;
    refusal->retry_after = left;
    refusal->detail = apr_psprintf(
        r->pool, "Rate limit of %s reached; retry in %u seconds", cl->text, left);
}

/* The budget charges of a request whose budgets were looked at. */
static void remember_budget(request_rec *r, oaip_counter_client *store,
                            const oaip_configured_limit *cl,
                            const oaip_counter_step *step)
{
    oaip_request_record *record = oaip_request_record_of(r);
    budget_charge *charge;

    if (record->budget_charges == NULL) {
        record->budget_charges = apr_array_make(r->pool, 2, sizeof(budget_charge));
    }
    charge = apr_array_push(record->budget_charges);
    charge->key = step->key;
    charge->ttl = step->ttl;
    charge->cl = cl;
    charge->reserved = 0;
    record->store = store;
}

int oaip_limits_check(request_rec *r, const oaip_dir_conf *conf, oaip_refusal *refusal)
{
    int rates = count_of(conf->rate_limits), budgets = count_of(conf->token_budgets);
    oaip_counter_client *store;
    oaip_counter_step *steps;
    apr_time_t now;
    apr_status_t rv;
    int i, refused;

    memset(refusal, 0, sizeof(*refusal));
    if (rates + budgets == 0) {
        return 1;
    }
    store = oaip_counter_store_for(r->server);
    now = apr_time_now();
    /* every rate limit and every budget in one exchange with the store, in
     * this order: the first limit reached stops the batch */
    steps = apr_pcalloc(r->pool, sizeof(*steps) * (apr_size_t)(rates + budgets));
    for (i = 0; i < rates + budgets; i++) {
        const oaip_configured_limit *cl =
            i < rates
                ? &APR_ARRAY_IDX(conf->rate_limits, i, oaip_configured_limit)
                : &APR_ARRAY_IDX(conf->token_budgets, i - rates, oaip_configured_limit);

        steps[i].key = key_of(r, i < rates ? 'r' : 't', cl, now);
        steps[i].ttl = oaip_limit_seconds_left(&cl->limit, now) + 1;
        if (i < rates) {
            /* counted before it is compared: of N parallel requests with
             * one slot left, exactly one sees itself within the limit */
            steps[i].delta = 1;
            steps[i].ceiling = cl->limit.amount;
        } else {
            /* a budget is read: a cheap refusal before the body is read;
             * the reservation, once the body is known, is what holds under
             * parallel load */
            steps[i].delta = 0;
            steps[i].ceiling = (apr_int64_t)cl->limit.amount - 1;
        }
    }
    rv = count_all(store, steps, rates + budgets, 0, &refused);
    if (rv != APR_SUCCESS) {
        /* the budgets read before the failure are settled as before */
        for (i = rates; i < rates + budgets && steps[i].done; i++) {
            remember_budget(
                r, store,
                &APR_ARRAY_IDX(conf->token_budgets, i - rates, oaip_configured_limit),
                &steps[i]);
        }
        return store_failed(r, store, rv, refusal);
    }
    if (refused >= 0 && refused < rates) {
        rate_refused(r, &APR_ARRAY_IDX(conf->rate_limits, refused, oaip_configured_limit),
                     steps[refused].ttl - 1, refusal);
        return 0;
    }
    if (refused >= 0) {
        budget_refused(
            r,
            &APR_ARRAY_IDX(conf->token_budgets, refused - rates, oaip_configured_limit),
            steps[refused].ttl - 1, refusal);
        return 0;
    }
    for (i = rates; i < rates + budgets; i++) {
        remember_budget(
            r, store,
            &APR_ARRAY_IDX(conf->token_budgets, i - rates, oaip_configured_limit),
            &steps[i]);
    }
    return 1;
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

/* Gives back what the request's charges reserved, in one batch that the
 * request does not wait for. */
static void release(request_rec *r, oaip_request_record *record)
{
    int n = record->budget_charges->nelts, i, m = 0, refused;
    oaip_counter_step *steps = apr_pcalloc(r->pool, sizeof(*steps) * (apr_size_t)n);
    apr_status_t rv;

    for (i = 0; i < n; i++) {
        budget_charge *c = &APR_ARRAY_IDX(record->budget_charges, i, budget_charge);

        if (c->reserved == 0) {
            continue;
        }
        steps[m].key = c->key;
        steps[m].delta = -c->reserved;
        steps[m].ttl = c->ttl;
        steps[m].ceiling = OAIP_COUNTER_NO_CEILING;
        m++;
        c->reserved = 0;
    }
    if (m == 0) {
        return;
    }
    rv = count_all(record->store, steps, m, OAIP_COUNTERS_NO_REPLY, &refused);
    if (rv != APR_SUCCESS) {
        warn_store_failure(r, record->store, rv, "a reservation not given back");
    }
}

int oaip_limits_reserve(request_rec *r, const oaip_upstream_request *req,
                        oaip_refusal *refusal)
{
    oaip_request_record *record = oaip_request_record_find(r);
    oaip_counter_step *steps;
    apr_int64_t worst;
    apr_status_t rv;
    int i, n, refused;

    memset(refusal, 0, sizeof(*refusal));
    if (record == NULL || record->budget_charges == NULL ||
        (worst = worst_case(req)) <= 0) {
        return 1;
    }
    if (worst > OAIP_COUNTER_MAX_DELTA) {
        worst = OAIP_COUNTER_MAX_DELTA;
    }
    n = record->budget_charges->nelts;
    steps = apr_pcalloc(r->pool, sizeof(*steps) * (apr_size_t)n);
    for (i = 0; i < n; i++) {
        const budget_charge *c = &APR_ARRAY_IDX(record->budget_charges, i, budget_charge);

        /* counted before it is compared, as for rate limits: of N parallel
         * requests, each sees the reservations of those before it. Admitted
         * while the counter before this reservation is below the budget:
         * the overshoot is at most one request's worst case. */
        steps[i].key = c->key;
        steps[i].delta = worst;
        steps[i].ttl = c->ttl;
        steps[i].ceiling = (apr_int64_t)c->cl->limit.amount + worst - 1;
    }
    /* a refusal gives back the reservations made before it in the batch */
    rv = count_all(record->store, steps, n, OAIP_COUNTERS_UNDO_REFUSED, &refused);
    for (i = 0; i < n; i++) {
        budget_charge *c = &APR_ARRAY_IDX(record->budget_charges, i, budget_charge);
        c->reserved = steps[i].done ? worst : 0;
    }
    if (rv != APR_SUCCESS) {
        if (!store_failed(r, record->store, rv, refusal)) {
            release(r, record);
            return 0;
        }
        /* fails open: the budgets not reserved hold nothing */
    } else if (refused >= 0) {
        const budget_charge *c =
            &APR_ARRAY_IDX(record->budget_charges, refused, budget_charge);
        budget_refused(r, c->cl, oaip_limit_seconds_left(&c->cl->limit, apr_time_now()),
                       refusal);
        release(r, record); /* what an undo could not take back */
        return 0;
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
    oaip_counter_step *steps;
    apr_int64_t tokens;
    apr_status_t rv;
    int i, n = 0, refused;

    if (record->budget_charges == NULL) {
        return;
    }
    tokens = tokens_spent(&record->usage);
    steps =
        apr_pcalloc(r->pool, sizeof(*steps) * (apr_size_t)record->budget_charges->nelts);
    for (i = 0; i < record->budget_charges->nelts; i++) {
        const budget_charge *c = &APR_ARRAY_IDX(record->budget_charges, i, budget_charge);
        /* the real usage replaces the reservation: a negative step gives
         * back what was not used */
        apr_int64_t delta = tokens - c->reserved;

        if (delta == 0) {
            continue;
        }
        steps[n].key = c->key;
        steps[n].delta = delta;
        steps[n].ttl = c->ttl;
        steps[n].ceiling = OAIP_COUNTER_NO_CEILING;
        n++;
    }
    /* settled once, whoever calls again */
    record->budget_charges = NULL;
    if (n == 0) {
        return;
    }
    /* the answer has gone: nothing waits for the store's */
    rv = count_all(record->store, steps, n, OAIP_COUNTERS_NO_REPLY, &refused);
    if (rv != APR_SUCCESS) {
        warn_store_failure(r, record->store, rv, "tokens of a request not settled");
    }
}
