#include "usage_limits.h"

#include <apr_atomic.h>
#include <apr_strings.h>

#include "counters.h"
#include "mod_openai_proxy.h"
#include "stats.h"

/* A budget the check looked at, to be charged once the tokens are known. */
typedef struct {
    const char *key;
    apr_uint32_t ttl;
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

    return sconf->store_fail_closed == 1;
}

static apr_status_t count(oaip_counter_client *store, const char *key, apr_uint32_t delta,
                          apr_uint32_t ttl, apr_uint64_t *total)
{
    return store ? store->add(store, key, delta, ttl, total) : APR_EINIT;
}

/* A store failure: refused when the operator said so, else let through. */
static int store_failed(request_rec *r, oaip_counter_client *store, apr_status_t rv,
                        oaip_limit_refusal *refusal)
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
                       oaip_limit_refusal *refusal)
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

static int check_budgets(request_rec *r, oaip_counter_client *store,
                         const apr_array_header_t *budgets, apr_time_t now,
                         oaip_limit_refusal *refusal)
{
    oaip_request_state *state = oaip_request_state_get(r, 1);
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
        if (spent >= cl->limit.amount) {
            OAIP_STATS_ADD(budget_exhausted, 1);
            refusal->kind = OAIP_ERR_TOKEN_BUDGET_EXHAUSTED;
            refusal->retry_after = left;
            refusal->detail =
                apr_psprintf(r->pool, "Token budget of %s is spent; retry in %u seconds",
                             cl->text, left);
            return 0;
        }
        if (state->budget_charges == NULL) {
            state->budget_charges = apr_array_make(r->pool, 2, sizeof(budget_charge));
        }
        charge = apr_array_push(state->budget_charges);
        charge->key = key;
        charge->ttl = left + 1;
        state->store = store;
    }
    return 1;
}

int oaip_limits_check(request_rec *r, const oaip_dir_conf *conf,
                      oaip_limit_refusal *refusal)
{
    oaip_counter_client *store;
    apr_time_t now;

    memset(refusal, 0, sizeof(*refusal));
    if ((conf->rate_limits == NULL || conf->rate_limits->nelts == 0) &&
        (conf->token_budgets == NULL || conf->token_budgets->nelts == 0)) {
        return 1;
    }
    store = oaip_counters_for(r->server);
    now = apr_time_now();
    return check_rates(r, store, conf->rate_limits, now, refusal) &&
           check_budgets(r, store, conf->token_budgets, now, refusal);
}

static long tokens_spent(request_rec *r)
{
    const char *total = apr_table_get(r->notes, "OPENAI_TOTAL_TOKENS");
    const char *prompt = apr_table_get(r->notes, "OPENAI_PROMPT_TOKENS");
    const char *completion = apr_table_get(r->notes, "OPENAI_COMPLETION_TOKENS");

    if (total != NULL) {
        return atol(total);
    }
    return (prompt ? atol(prompt) : 0) + (completion ? atol(completion) : 0);
}

void oaip_limits_charge(request_rec *r)
{
    oaip_request_state *state = oaip_request_state_get(r, 0);
    long tokens;
    int i;

    if (state == NULL || state->budget_charges == NULL ||
        (tokens = tokens_spent(r)) <= 0) {
        return;
    }
    if (tokens > (long)OAIP_LIMIT_MAX_AMOUNT) {
        tokens = (long)OAIP_LIMIT_MAX_AMOUNT;
    }
    for (i = 0; i < state->budget_charges->nelts; i++) {
        const budget_charge *c = &APR_ARRAY_IDX(state->budget_charges, i, budget_charge);
        apr_uint64_t total;
        apr_status_t rv =
            count(state->store, c->key, (apr_uint32_t)tokens, c->ttl, &total);
        if (rv != APR_SUCCESS) {
            warn_store_failure(r, state->store, rv, "tokens of a request not charged");
        }
    }
}
