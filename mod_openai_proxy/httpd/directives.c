/* The module's directives: each one's syntax, checked when httpd reads the
 * configuration (apachectl -t names the line and the problem), into the
 * fields of httpd/config.h. */
#include "httpd/config.h"

#include <apr_file_io.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include <apr_uri.h>
#include <http_core.h>
#include <http_log.h>
#include <stdlib.h>

#include "core/cors.h"
#include "core/endpoint.h"
#include "core/header_check.h"
#include "core/upstream_url.h"
#include "core/request.h"
#include "core/values.h"
#include "httpd/backend_directives.h"
#include "httpd/directive_values.h"
#include "mod_openai_proxy.h"
#include "stores/counters.h"
#include "stores/redis_conn.h"

static const char *set_api_key(cmd_parms *cmd, void *dconf, const char *arg)
{
    oaip_dir_conf *conf = dconf;

    return oaip_directive_key(cmd, arg, &conf->api_key);
}

static const char *set_upstream(cmd_parms *cmd, void *dconf, const char *arg)
{
    oaip_dir_conf *conf = dconf;

    return oaip_directive_url(cmd, arg, &conf->upstream);
}

static const char *set_upstream_auth(cmd_parms *cmd, void *dconf, const char *arg)
{
    oaip_dir_conf *conf = dconf;

    return oaip_directive_auth(cmd, arg, &conf->auth_name);
}

static const char *add_upstream_query(cmd_parms *cmd, void *dconf, const char *arg)
{
    oaip_dir_conf *conf = dconf;

    return oaip_directive_query(cmd, arg, &conf->upstream_query);
}

static const char *add_endpoint(cmd_parms *cmd, void *dconf, const char *arg)
{
    oaip_dir_conf *conf = dconf;
    const oaip_endpoint *endpoint = oaip_endpoint_find(arg);
    int i;

    if (endpoint == NULL) {
        return apr_psprintf(cmd->pool,
                            "%s: '%s' is not an API path the proxy knows; use one of: %s",
                            cmd->cmd->name, arg, oaip_endpoint_known_list(cmd->pool));
    }
    if (conf->endpoints == NULL) {
        conf->endpoints = apr_array_make(cmd->pool, 4, sizeof(const oaip_endpoint *));
    }
    for (i = 0; i < conf->endpoints->nelts; i++) {
        if (APR_ARRAY_IDX(conf->endpoints, i, const oaip_endpoint *) == endpoint) {
            return NULL;
        }
    }
    APR_ARRAY_PUSH(conf->endpoints, const oaip_endpoint *) = endpoint;
    return NULL;
}

static const char *set_ca_file(cmd_parms *cmd, void *dconf, const char *arg)
{
    oaip_dir_conf *conf = dconf;
    const char *full = ap_server_root_relative(cmd->pool, arg);
    apr_finfo_t info;

    if (full == NULL ||
        apr_stat(&info, full, APR_FINFO_TYPE, cmd->temp_pool) != APR_SUCCESS ||
        info.filetype != APR_REG) {
        return apr_psprintf(cmd->pool, "%s: CA file %s does not exist or is not a file",
                            cmd->cmd->name, full ? full : arg);
    }
    conf->ca_file = full;
    return NULL;
}

static const char *add_allow_origin(cmd_parms *cmd, void *dconf, const char *arg)
{
    oaip_dir_conf *conf = dconf;
    oaip_origin_rule rule;
    const char *err = oaip_origin_rule_parse(cmd->pool, arg, &rule);

    if (err != NULL) {
        return apr_psprintf(cmd->pool, "%s: invalid origin '%s': %s", cmd->cmd->name, arg,
                            err);
    }
    if (conf->origins == NULL) {
        conf->origins = apr_array_make(cmd->pool, 4, sizeof(oaip_origin_rule));
    }
    *(oaip_origin_rule *)apr_array_push(conf->origins) = rule;
    return NULL;
}

static const char *add_allow_model(cmd_parms *cmd, void *dconf, const char *arg)
{
    oaip_dir_conf *conf = dconf;

    if (!oaip_value_model_pattern(arg)) {
        return apr_psprintf(cmd->pool,
                            "%s: '%s': '*' may only end a model name, as in gpt-4o*",
                            cmd->cmd->name, arg);
    }
    if (conf->models == NULL) {
        conf->models = apr_array_make(cmd->pool, 4, sizeof(const char *));
    }
    APR_ARRAY_PUSH(conf->models, const char *) = arg;
    return NULL;
}

static const char *set_default(cmd_parms *cmd, void *dconf, const char *name,
                               const char *value)
{
    oaip_dir_conf *conf = dconf;
    const char *json;
    const char *err = oaip_default_value_parse(cmd->pool, name, value, &json);

    if (err != NULL) {
        return apr_psprintf(cmd->pool, "%s %s: %s", cmd->cmd->name, name, err);
    }
    oaip_defaults_set(conf->defaults, apr_pstrdup(cmd->pool, name), json);
    return NULL;
}

/* BYTES with an optional K, M or G suffix (powers of 1024). */
static const char *set_max_body(cmd_parms *cmd, void *dconf, const char *arg)
{
    oaip_dir_conf *conf = dconf;

    if (oaip_value_size(arg, (apr_off_t)1024 * 1024 * 1024, &conf->max_body)) {
        return NULL;
    }
    return apr_psprintf(cmd->pool,
                        "%s: '%s' is not a size from 1 byte to 1G (a number with an "
                        "optional K, M or G suffix)",
                        cmd->cmd->name, arg);
}

static const char *set_error_format(cmd_parms *cmd, void *dconf, const char *arg)
{
    oaip_dir_conf *conf = dconf;

    if (!oaip_value_error_format(arg, &conf->error_format)) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not one of seed, openai",
                            cmd->cmd->name, arg);
    }
    return NULL;
}

/* A whole number from 1 to max; `what` names it in the error message. */
static const char *parse_count(cmd_parms *cmd, const char *arg, int max, const char *what,
                               int *out)
{
    if (!oaip_value_count(arg, max, out)) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not %s from 1 to %d", cmd->cmd->name,
                            arg, what, max);
    }
    return NULL;
}

/* The three timeouts share one parser; the field is in cmd->info. */
static const char *set_timeout(cmd_parms *cmd, void *dconf, const char *arg)
{
    apr_interval_time_t *field =
        (apr_interval_time_t *)((char *)dconf + (apr_size_t)cmd->info);

    return oaip_directive_time(cmd, arg, 86400, field);
}

static const char *set_heartbeat(cmd_parms *cmd, void *dconf, const char *arg)
{
    oaip_dir_conf *conf = dconf;

    if (strcasecmp(arg, "off") == 0) {
        conf->heartbeat = 0;
        return NULL;
    }
    return oaip_directive_time(cmd, arg, 3600, &conf->heartbeat);
}

static const char *set_max_tokens(cmd_parms *cmd, void *dconf, const char *arg)
{
    oaip_dir_conf *conf = dconf;

    return parse_count(cmd, arg, 100000000, "a number of tokens", &conf->max_tokens);
}

static const char *set_stream_usage(cmd_parms *cmd, void *dconf, const char *arg)
{
    static const char *const names[] = {"auto", "on", "off"};
    static const oaip_stream_usage values[] = {
        OAIP_STREAM_USAGE_AUTO, OAIP_STREAM_USAGE_ON, OAIP_STREAM_USAGE_OFF};
    oaip_dir_conf *conf = dconf;
    apr_size_t i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcasecmp(arg, names[i]) == 0) {
            conf->stream_usage = (int)values[i];
            return NULL;
        }
    }
    return apr_psprintf(cmd->pool,
                        "%s: '%s' is not one of auto (ask streams for their usage unless "
                        "the upstream refuses it), on (always ask), off (never ask)",
                        cmd->cmd->name, arg);
}

/* A per-virtual-host directive: its configuration, and in `err` why it is
 * not allowed where it was written. */
static oaip_server_conf *server_directive(cmd_parms *cmd, const char **err)
{
    *err = ap_check_cmd_context(cmd, NOT_IN_DIR_LOC_FILE);
    return ap_get_module_config(cmd->server->module_config, &openai_proxy_module);
}

static const char *set_max_streams(cmd_parms *cmd, void *dconf, const char *arg)
{
    const char *err;
    oaip_server_conf *conf = server_directive(cmd, &err);

    (void)dconf;
    return err ? err : parse_count(cmd, arg, 1000000, "a number", &conf->max_streams);
}

/* OpenAIProxyRateLimit and OpenAIProxyTokenBudget (cmd->info non-NULL). */
static const char *add_limit(cmd_parms *cmd, void *dconf, const char *rate,
                             const char *by)
{
    oaip_dir_conf *conf = dconf;
    int tokens = cmd->info != NULL;
    apr_array_header_t **list = tokens ? &conf->token_budgets : &conf->rate_limits;
    oaip_configured_limit *entry;
    oaip_limit limit;
    const char *err;

    if (strcasecmp(rate, "none") == 0) {
        if (by != NULL) {
            return apr_psprintf(cmd->pool, "%s: none takes no by=", cmd->cmd->name);
        }
        *list = apr_array_make(cmd->pool, 1, sizeof(oaip_configured_limit));
        return NULL;
    }
    err = oaip_limit_parse(cmd->pool, rate, by, tokens, &limit);
    if (err != NULL) {
        return apr_psprintf(cmd->pool, "%s: '%s%s%s': %s", cmd->cmd->name, rate,
                            by ? " " : "", by ? by : "", err);
    }
    if (*list == NULL) {
        *list = apr_array_make(cmd->pool, 2, sizeof(oaip_configured_limit));
    }
    entry = apr_array_push(*list);
    entry->limit = limit;
    entry->text = apr_pstrcat(cmd->pool, rate, by ? " " : "", by, NULL);
    entry->scope = apr_psprintf(cmd->pool, "%s#%d %s", cmd->path ? cmd->path : "(server)",
                                (*list)->nelts, entry->text);
    oaip_counters_mark_used();
    return NULL;
}

static const char *set_counter_store(cmd_parms *cmd, void *dconf, const char *arg)
{
    const char *err;
    oaip_server_conf *conf = server_directive(cmd, &err);
    oaip_store_spec *spec = apr_pcalloc(cmd->pool, sizeof(*spec));

    (void)dconf;
    if (err != NULL) {
        return err;
    }
    /* the message never repeats the value: it may hold a password */
    err = oaip_store_spec_parse(cmd->pool, arg, spec);
    if (err != NULL) {
        return apr_psprintf(cmd->pool, "%s: %s", cmd->cmd->name, err);
    }
    conf->store = spec;
    return NULL;
}

static const char *set_counter_store_ca_file(cmd_parms *cmd, void *dconf, const char *arg)
{
    const char *err;
    oaip_server_conf *conf = server_directive(cmd, &err);
    const char *full = ap_server_root_relative(cmd->pool, arg);

    (void)dconf;
    if (err != NULL) {
        return err;
    }
    if (full == NULL) {
        return apr_psprintf(cmd->pool, "%s: %s is not a valid path", cmd->cmd->name, arg);
    }
    /* a file that holds no certificate is refused now, not at the first
     * request */
    err = oaip_redis_ca_file_check(cmd->temp_pool, full);
    if (err != NULL) {
        return apr_psprintf(cmd->pool, "%s: %s", cmd->cmd->name, err);
    }
    conf->store_ca_file = full;
    return NULL;
}

static const char *set_counter_store_fail(cmd_parms *cmd, void *dconf, const char *arg)
{
    const char *err;
    oaip_server_conf *conf = server_directive(cmd, &err);

    (void)dconf;
    if (err != NULL) {
        return err;
    }
    if (strcasecmp(arg, "open") == 0 || strcasecmp(arg, "closed") == 0) {
        conf->store_fail_closed = strcasecmp(arg, "closed") == 0;
        return NULL;
    }
    return apr_psprintf(cmd->pool, "%s: '%s' is not one of open, closed", cmd->cmd->name,
                        arg);
}

/* Server, virtual host, <Directory> and <Location>; never .htaccess, where a
 * site author could point the key at another upstream. */
#define OAIP_CONTEXT (RSRC_CONF | ACCESS_CONF)

const command_rec oaip_directives[] = {
    AP_INIT_TAKE1("OpenAIProxyAPIKey", set_api_key, NULL, OAIP_CONTEXT,
                  "The upstream API key: KEY, env:VARIABLE or file:/path"),
    AP_INIT_TAKE1("OpenAIProxyUpstream", set_upstream, NULL, OAIP_CONTEXT,
                  "Base URL of the OpenAI-compatible API (default " OAIP_DEFAULT_UPSTREAM
                  ")"),
    AP_INIT_TAKE1("OpenAIProxyUpstreamAuth", set_upstream_auth, NULL, OAIP_CONTEXT,
                  "How the key goes upstream: bearer (default) or header:NAME"),
    AP_INIT_ITERATE("OpenAIProxyUpstreamQuery", add_upstream_query, NULL, OAIP_CONTEXT,
                    "NAME=VALUE parameters added to every upstream URL"),
    AP_INIT_ITERATE(
        "OpenAIProxyEndpoints", add_endpoint, NULL, OAIP_CONTEXT,
        "API paths below the Location that are served (default " OAIP_DEFAULT_ENDPOINTS
        "), e.g. models models/* embeddings"),
    AP_INIT_TAKE1("OpenAIProxyCAFile", set_ca_file, NULL, OAIP_CONTEXT,
                  "CA bundle used to verify the upstream's TLS certificate"),
    AP_INIT_ITERATE("OpenAIProxyAllowOrigin", add_allow_origin, NULL, OAIP_CONTEXT,
                    "Origins allowed to call the proxy from a browser: "
                    "https://host[:port], https://*.domain or *"),
    AP_INIT_ITERATE("OpenAIProxyAllowModels", add_allow_model, NULL, OAIP_CONTEXT,
                    "Models a request may ask for (after defaults); a trailing * matches "
                    "any rest"),
    AP_INIT_TAKE2("OpenAIProxyDefault", set_default, NULL, OAIP_CONTEXT,
                  "A default for a request field: NAME JSON-VALUE, or NAME none"),
    AP_INIT_TAKE1(
        "OpenAIProxyMaxTokens", set_max_tokens, NULL, OAIP_CONTEXT,
        "Upper bound for max_tokens / max_completion_tokens / max_output_tokens of a "
        "request"),
    AP_INIT_TAKE1("OpenAIProxyStreamUsage", set_stream_usage, NULL, OAIP_CONTEXT,
                  "Whether streams ask the upstream for their usage chunk: auto "
                  "(default; not where the upstream refuses stream_options), on, off"),
    AP_INIT_TAKE1(
        "OpenAIProxyMaxRequestBody", set_max_body, NULL, OAIP_CONTEXT,
        "Largest accepted request body in bytes (K, M, G suffixes; default 8M)"),
    AP_INIT_FLAG("OpenAIProxyAllowClientKey", ap_set_flag_slot,
                 (void *)APR_OFFSETOF(oaip_dir_conf, allow_client_key), OAIP_CONTEXT,
                 "On: a request header x-openai-key replaces the configured key"),
    AP_INIT_FLAG("OpenAIProxyAllowCredentials", ap_set_flag_slot,
                 (void *)APR_OFFSETOF(oaip_dir_conf, allow_credentials), OAIP_CONTEXT,
                 "On: answers to allowed origins carry "
                 "Access-Control-Allow-Credentials: true (not with origin *)"),
    AP_INIT_TAKE1("OpenAIProxyErrorFormat", set_error_format, NULL, OAIP_CONTEXT,
                  "Shape of the proxy's own error bodies: seed or openai"),
    AP_INIT_TAKE1("OpenAIProxyConnectTimeout", set_timeout,
                  (void *)APR_OFFSETOF(oaip_dir_conf, connect_timeout), OAIP_CONTEXT,
                  "Time to connect to the upstream: 10 (default, seconds), 500ms, 1min"),
    AP_INIT_TAKE1("OpenAIProxyFirstByteTimeout", set_timeout,
                  (void *)APR_OFFSETOF(oaip_dir_conf, first_byte_timeout), OAIP_CONTEXT,
                  "Time until the upstream's answer begins (default 300 seconds)"),
    AP_INIT_TAKE1("OpenAIProxyIdleTimeout", set_timeout,
                  (void *)APR_OFFSETOF(oaip_dir_conf, idle_timeout), OAIP_CONTEXT,
                  "Longest silence within an answer (default 120 seconds)"),
    AP_INIT_TAKE1("OpenAIProxyHeartbeat", set_heartbeat, NULL, OAIP_CONTEXT,
                  "Time between SSE keep-alive comments while the upstream is silent "
                  "(15, 500ms), or Off (default)"),
    AP_INIT_TAKE1("OpenAIProxyMaxStreams", set_max_streams, NULL, RSRC_CONF,
                  "Most concurrent streams of this virtual host, over all processes"),
    AP_INIT_TAKE12("OpenAIProxyRateLimit", add_limit, NULL, OAIP_CONTEXT,
                   "Requests per caller: N/PERIOD (s, m, h, d) [by=ip|user|header:NAME], "
                   "or none"),
    AP_INIT_TAKE12("OpenAIProxyTokenBudget", add_limit, (void *)1, OAIP_CONTEXT,
                   "Tokens per caller: N/PERIOD (N may end in k or M) "
                   "[by=ip|user|header:NAME], or none"),
    AP_INIT_TAKE1(
        "OpenAIProxyCounterStore", set_counter_store, NULL, RSRC_CONF,
        "Where limit counters live: shm (default), redis://[:password@]host:port "
        "or memcache://host:port"),
    AP_INIT_TAKE1("OpenAIProxyCounterStoreCAFile", set_counter_store_ca_file, NULL,
                  RSRC_CONF,
                  "The CA certificates (PEM) a rediss:// counter store's certificate is "
                  "checked against; default: the system's"),
    AP_INIT_TAKE1("OpenAIProxyCounterStoreFail", set_counter_store_fail, NULL, RSRC_CONF,
                  "When the counter store is unreachable: open (default, requests go on) "
                  "or closed (503)"),
    AP_INIT_RAW_ARGS("OpenAIProxyBackend", oaip_set_backend, NULL, RSRC_CONF,
                     "A named upstream: NAME URL [key=KEY|env:NAME|file:PATH|none] "
                     "[auth=bearer|header:NAME] [query=NAME=VALUE]... "
                     "[models=PATTERN,...] [weight=N]"),
    AP_INIT_RAW_ARGS("OpenAIProxyRoute", oaip_set_route, NULL, OAIP_CONTEXT,
                     "The OpenAIProxyBackend names this section uses, in order"),
    AP_INIT_TAKE1("OpenAIProxyBalance", oaip_set_balance, NULL, OAIP_CONTEXT,
                  "How the route's first backend is chosen: failover (default, in "
                  "order), weighted or least-busy"),
    AP_INIT_RAW_ARGS("OpenAIProxyFailover", oaip_set_failover, NULL, OAIP_CONTEXT,
                     "What makes the next backend take a request: connect, timeout, "
                     "statuses (default connect 429 500 502 503 504), or none"),
    AP_INIT_TAKE1("OpenAIProxyCooldown", oaip_set_cooldown, NULL, OAIP_CONTEXT,
                  "How long a failed backend is skipped (default 30 seconds; "
                  "Retry-After when longer), or 0"),
    AP_INIT_TAKE2("OpenAIProxyModelAlias", oaip_set_model_alias, NULL, OAIP_CONTEXT,
                  "A model name clients use and the name sent upstream instead"),
    {NULL, {NULL}, NULL, 0, RAW_ARGS, NULL},
};
