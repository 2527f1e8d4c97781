#include "httpd/backend_state.h"

#include <apr_atomic.h>
#include <apr_shm.h>
#include <apr_strings.h>
#include <http_log.h>
#include <http_protocol.h>

#include "mod_openai_proxy.h"

typedef struct {
    apr_uint32_t in_flight;
    apr_uint32_t pad;
    apr_uint64_t cooling_until; /* apr_time_t; 0: not cooling */
    apr_uint64_t requests;      /* attempts sent to it */
    apr_uint64_t answered;      /* answers the client got from it */
    apr_uint64_t failures[OAIP_BACKEND_FAILED__COUNT];
    apr_uint64_t prompt_tokens;
    apr_uint64_t completion_tokens;
} slot;

/* What the status page names each slot with (the parent's memory, which
 * every child inherits). */
typedef struct {
    const char *name;
    const char *server; /* host:port of the server that defined it */
} slot_label;

static apr_shm_t *shm;
static slot *slots;
static slot_label *labels;
static int slot_count;

static const char *const cause_names[OAIP_BACKEND_FAILED__COUNT] = {
    "connect", "timeout", "rate_limited", "server_error", "other_status"};

apr_status_t oaip_backend_state_post_config(apr_pool_t *pconf, server_rec *s)
{
    apr_array_header_t *found = apr_array_make(pconf, 8, sizeof(slot_label));
    apr_status_t rv;
    server_rec *vs;
    int i;

    slots = NULL;
    slot_count = 0;
    for (vs = s; vs != NULL; vs = vs->next) {
        oaip_server_conf *conf =
            ap_get_module_config(vs->module_config, &openai_proxy_module);
        for (i = 0; conf->backends != NULL && i < conf->backends->nelts; i++) {
            oaip_backend *b = APR_ARRAY_IDX(conf->backends, i, oaip_backend *);
            slot_label *label;
            if (b->slot >= 0) {
                continue; /* the main server's, seen again from a virtual host */
            }
            b->slot = found->nelts;
            label = apr_array_push(found);
            label->name = b->name;
            label->server = apr_psprintf(pconf, "%s:%u",
                                         vs->server_hostname ? vs->server_hostname : "",
                                         (unsigned)vs->port);
        }
    }
    if (found->nelts == 0) {
        return APR_SUCCESS;
    }
    rv = apr_shm_create(&shm, sizeof(slot) * (apr_size_t)found->nelts, NULL, pconf);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     "cannot create shared memory for the OpenAIProxyBackend states");
        return rv;
    }
    slots = apr_shm_baseaddr_get(shm);
    memset(slots, 0, sizeof(slot) * (apr_size_t)found->nelts);
    labels = (slot_label *)found->elts;
    slot_count = found->nelts;
    return APR_SUCCESS;
}

static slot *slot_of(const oaip_backend *b)
{
    return slots != NULL && b->slot >= 0 && b->slot < slot_count ? &slots[b->slot] : NULL;
}

void oaip_backend_attempt_begin(const oaip_backend *b)
{
    slot *one = slot_of(b);

    if (one != NULL) {
        apr_atomic_inc32(&one->in_flight);
        apr_atomic_add64(&one->requests, 1);
    }
}

void oaip_backend_attempt_end(const oaip_backend *b)
{
    slot *one = slot_of(b);

    if (one != NULL) {
        apr_atomic_dec32(&one->in_flight);
    }
}

apr_uint32_t oaip_backend_in_flight(const oaip_backend *b)
{
    slot *one = slot_of(b);

    return one != NULL ? apr_atomic_read32(&one->in_flight) : 0;
}

void oaip_backend_failed(const oaip_backend *b, oaip_backend_failure cause,
                         apr_interval_time_t cooldown)
{
    slot *one = slot_of(b);
    apr_uint64_t until, seen;

    if (one == NULL) {
        return;
    }
    apr_atomic_add64(&one->failures[cause], 1);
    if (cooldown <= 0) {
        return;
    }
    until = (apr_uint64_t)(apr_time_now() + cooldown);
    /* the later end wins: a Retry-After of 60 s is not cut short by a
     * failure of another process that cools for 30 */
    do {
        seen = apr_atomic_read64(&one->cooling_until);
        if (seen >= until) {
            return;
        }
    } while (apr_atomic_cas64(&one->cooling_until, until, seen) != seen);
}

int oaip_backend_cooling(const oaip_backend *b, apr_time_t now)
{
    slot *one = slot_of(b);

    return one != NULL && apr_atomic_read64(&one->cooling_until) > (apr_uint64_t)now;
}

void oaip_backend_answered(const oaip_backend *b, const oaip_usage *usage)
{
    slot *one = slot_of(b);

    if (one == NULL) {
        return;
    }
    apr_atomic_add64(&one->answered, 1);
    if (usage->prompt_tokens > 0) {
        apr_atomic_add64(&one->prompt_tokens, (apr_uint64_t)usage->prompt_tokens);
    }
    if (usage->completion_tokens > 0) {
        apr_atomic_add64(&one->completion_tokens, (apr_uint64_t)usage->completion_tokens);
    }
}

/* Seconds since the epoch until which the slot cools down; 0: it does not. */
static apr_int64_t cooling_until_sec(slot *one)
{
    apr_uint64_t until = apr_atomic_read64(&one->cooling_until);

    return until > (apr_uint64_t)apr_time_now() ? (apr_int64_t)apr_time_sec(until) + 1
                                                : 0;
}

json_t *oaip_backend_state_json(void)
{
    json_t *list = json_array(), *failures;
    int i, c;

    for (i = 0; i < slot_count && slots != NULL; i++) {
        slot *one = &slots[i];
        apr_int64_t until = cooling_until_sec(one);
        failures = json_object();
        for (c = 0; c < OAIP_BACKEND_FAILED__COUNT; c++) {
            json_object_set_new(
                failures, cause_names[c],
                json_integer((json_int_t)apr_atomic_read64(&one->failures[c])));
        }
        json_array_append_new(
            list,
            json_pack("{s:s,s:s,s:I,s:I,s:o,s:i,s:o,s:{s:I,s:I}}", "name", labels[i].name,
                      "server", labels[i].server, "requests",
                      (json_int_t)apr_atomic_read64(&one->requests), "answered",
                      (json_int_t)apr_atomic_read64(&one->answered), "failures", failures,
                      "in_flight", (int)apr_atomic_read32(&one->in_flight),
                      "cooling_down_until",
                      until ? json_integer((json_int_t)until) : json_null(), "tokens",
                      "prompt", (json_int_t)apr_atomic_read64(&one->prompt_tokens),
                      "completion",
                      (json_int_t)apr_atomic_read64(&one->completion_tokens)));
    }
    return list;
}

static void head(request_rec *r, const char *name, const char *type, const char *help)
{
    ap_rprintf(r, "# HELP openai_proxy_%s %s\n# TYPE openai_proxy_%s %s\n", name, help,
               name, type);
}

/* Backend names are letters, digits, '-', '_', '.'; a server name may be
 * anything httpd took: its quotes and backslashes are escaped. */
static const char *labels_of(apr_pool_t *p, int i)
{
    const char *server = labels[i].server;
    char *out = apr_palloc(p, 2 * strlen(server) + 1), *o = out;

    for (; *server; server++) {
        if (*server == '\\' || *server == '"' || *server == '\n') {
            *o++ = '\\';
            *o++ = *server == '\n' ? 'n' : *server;
        } else {
            *o++ = *server;
        }
    }
    *o = '\0';
    return apr_psprintf(p, "backend=\"%s\",server=\"%s\"", labels[i].name, out);
}

void oaip_backend_state_prometheus(request_rec *r)
{
    int i, c;

    if (slots == NULL) {
        return;
    }
    head(r, "backend_requests_total", "counter", "Upstream attempts sent to a backend.");
    for (i = 0; i < slot_count; i++) {
        ap_rprintf(r, "openai_proxy_backend_requests_total{%s} %" APR_UINT64_T_FMT "\n",
                   labels_of(r->pool, i), apr_atomic_read64(&slots[i].requests));
    }
    head(r, "backend_answered_total", "counter",
         "Answers of a backend that the client got.");
    for (i = 0; i < slot_count; i++) {
        ap_rprintf(r, "openai_proxy_backend_answered_total{%s} %" APR_UINT64_T_FMT "\n",
                   labels_of(r->pool, i), apr_atomic_read64(&slots[i].answered));
    }
    head(r, "backend_failures_total", "counter",
         "Failed attempts of a backend, by cause.");
    for (i = 0; i < slot_count; i++) {
        for (c = 0; c < OAIP_BACKEND_FAILED__COUNT; c++) {
            ap_rprintf(r,
                       "openai_proxy_backend_failures_total{%s,cause=\"%s\"} "
                       "%" APR_UINT64_T_FMT "\n",
                       labels_of(r->pool, i), cause_names[c],
                       apr_atomic_read64(&slots[i].failures[c]));
        }
    }
    head(r, "backend_in_flight", "gauge", "Attempts in flight to a backend.");
    for (i = 0; i < slot_count; i++) {
        ap_rprintf(r, "openai_proxy_backend_in_flight{%s} %u\n", labels_of(r->pool, i),
                   apr_atomic_read32(&slots[i].in_flight));
    }
    head(r, "backend_cooling_down_until_seconds", "gauge",
         "Until when a backend is skipped after a failure (0: it is not).");
    for (i = 0; i < slot_count; i++) {
        ap_rprintf(r,
                   "openai_proxy_backend_cooling_down_until_seconds{%s} %" APR_INT64_T_FMT
                   "\n",
                   labels_of(r->pool, i), cooling_until_sec(&slots[i]));
    }
    head(r, "backend_tokens_total", "counter", "Tokens a backend reported.");
    for (i = 0; i < slot_count; i++) {
        const char *l = labels_of(r->pool, i);
        ap_rprintf(
            r,
            "openai_proxy_backend_tokens_total{%s,type=\"prompt\"} %" APR_UINT64_T_FMT
            "\nopenai_proxy_backend_tokens_total{%s,type=\"completion\"} "
            "%" APR_UINT64_T_FMT "\n",
            l, apr_atomic_read64(&slots[i].prompt_tokens), l,
            apr_atomic_read64(&slots[i].completion_tokens));
    }
}
