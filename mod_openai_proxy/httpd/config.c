#include "httpd/config.h"

#include <apr_strings.h>
#include <http_core.h>
#include <http_log.h>

#include "core/cors.h"
#include "core/endpoint.h"
#include "core/model_alias.h"
#include "core/request.h"
#include "mod_openai_proxy.h"

void *oaip_create_dir_conf(apr_pool_t *p, char *dir)
{
    (void)dir;
    oaip_dir_conf *conf = apr_pcalloc(p, sizeof(*conf));

    conf->defaults = apr_array_make(p, 4, sizeof(oaip_default));
    conf->max_body = OAIP_UNSET;
    conf->allow_client_key = OAIP_UNSET;
    conf->allow_credentials = OAIP_UNSET;
    conf->error_format = OAIP_UNSET;
    conf->connect_timeout = OAIP_UNSET;
    conf->first_byte_timeout = OAIP_UNSET;
    conf->idle_timeout = OAIP_UNSET;
    conf->heartbeat = OAIP_UNSET;
    conf->max_tokens = OAIP_UNSET;
    conf->stream_usage = OAIP_UNSET;
    conf->balance = OAIP_UNSET;
    conf->cooldown = OAIP_UNSET;
    return conf;
}

#define MERGE_PTR(field) merged->field = add->field ? add->field : base->field
#define MERGE_INT(field)                                                                 \
    merged->field = add->field != OAIP_UNSET ? add->field : base->field

void *oaip_merge_dir_conf(apr_pool_t *p, void *base_, void *add_)
{
    const oaip_dir_conf *base = base_, *add = add_;
    oaip_dir_conf *merged = apr_pcalloc(p, sizeof(*merged));
    /* fields that belong together come from the same level */
    const oaip_dir_conf *key_level = add->api_key ? add : base;

    merged->api_key = key_level->api_key;
    MERGE_PTR(auth_name);
    MERGE_PTR(upstream);
    MERGE_PTR(ca_file);
    /* an inner list of origins, models, endpoints or query parameters
     * replaces the outer one as a whole */
    MERGE_PTR(origins);
    MERGE_PTR(models);
    MERGE_PTR(endpoints);
    MERGE_PTR(upstream_query);
    MERGE_PTR(route);
    MERGE_PTR(failover_on);
    MERGE_INT(balance);
    MERGE_INT(cooldown);
    merged->model_aliases =
        oaip_model_aliases_merge(p, base->model_aliases, add->model_aliases);
    merged->defaults = oaip_defaults_merge(p, base->defaults, add->defaults);
    MERGE_INT(max_body);
    MERGE_INT(allow_client_key);
    MERGE_INT(allow_credentials);
    MERGE_INT(error_format);
    MERGE_INT(connect_timeout);
    MERGE_INT(first_byte_timeout);
    MERGE_INT(idle_timeout);
    MERGE_INT(heartbeat);
    MERGE_INT(max_tokens);
    MERGE_INT(stream_usage);
    /* an inner section's limits replace the outer ones ("none": no limit) */
    MERGE_PTR(rate_limits);
    MERGE_PTR(token_budgets);
    return merged;
}

void *oaip_create_server_conf(apr_pool_t *p, server_rec *s)
{
    oaip_server_conf *conf = apr_pcalloc(p, sizeof(*conf));

    (void)s;
    conf->max_streams = OAIP_UNSET;
    conf->index = OAIP_UNSET;
    conf->store_fail_closed = OAIP_UNSET;
    return conf;
}

/* A virtual host sees the main server's backends, except those it names
 * itself: its own definition wins (same objects, so the same counters). */
static apr_array_header_t *merge_backends(apr_pool_t *p, apr_array_header_t *base,
                                          apr_array_header_t *add)
{
    apr_array_header_t *merged;
    oaip_server_conf own;
    int i;

    if (base == NULL || add == NULL) {
        return add ? add : base;
    }
    merged = apr_array_copy(p, add);
    own.backends = add;
    for (i = 0; i < base->nelts; i++) {
        const oaip_backend *b = APR_ARRAY_IDX(base, i, const oaip_backend *);
        if (oaip_server_backend(&own, b->name) == NULL) {
            APR_ARRAY_PUSH(merged, const oaip_backend *) = b;
        }
    }
    return merged;
}

void *oaip_merge_server_conf(apr_pool_t *p, void *base_, void *add_)
{
    const oaip_server_conf *base = base_, *add = add_;
    oaip_server_conf *merged = apr_pcalloc(p, sizeof(*merged));

    MERGE_INT(max_streams);
    MERGE_PTR(store);
    MERGE_PTR(store_ca_file);
    MERGE_INT(store_fail_closed);
    merged->index = OAIP_UNSET; /* assigned in post_config, one per server_rec */
    merged->backends = merge_backends(p, base->backends, add->backends);
    return merged;
}

const oaip_backend *oaip_server_backend(const oaip_server_conf *conf, const char *name)
{
    int i;

    for (i = 0; conf->backends != NULL && i < conf->backends->nelts; i++) {
        const oaip_backend *b = APR_ARRAY_IDX(conf->backends, i, const oaip_backend *);
        if (strcmp(b->name, name) == 0) {
            return b;
        }
    }
    return NULL;
}

#define DEFAULT_MAX_BODY ((apr_off_t)8 * 1024 * 1024)
#define DEFAULT_CONNECT_TIMEOUT apr_time_from_sec(10)
#define DEFAULT_FIRST_BYTE_TIMEOUT                                                       \
    apr_time_from_sec(300) /* reasoning models think long */
#define DEFAULT_IDLE_TIMEOUT apr_time_from_sec(120)

#define OR_DEFAULT(value, fallback) ((value) != OAIP_UNSET ? (value) : (fallback))

apr_interval_time_t oaip_conf_connect_timeout(const oaip_dir_conf *conf)
{
    return OR_DEFAULT(conf->connect_timeout, DEFAULT_CONNECT_TIMEOUT);
}

apr_interval_time_t oaip_conf_first_byte_timeout(const oaip_dir_conf *conf)
{
    return OR_DEFAULT(conf->first_byte_timeout, DEFAULT_FIRST_BYTE_TIMEOUT);
}

apr_interval_time_t oaip_conf_idle_timeout(const oaip_dir_conf *conf)
{
    return OR_DEFAULT(conf->idle_timeout, DEFAULT_IDLE_TIMEOUT);
}

apr_interval_time_t oaip_conf_heartbeat(const oaip_dir_conf *conf)
{
    return OR_DEFAULT(conf->heartbeat, 0);
}

int oaip_conf_max_tokens(const oaip_dir_conf *conf)
{
    return OR_DEFAULT(conf->max_tokens, 0);
}

oaip_stream_usage oaip_conf_stream_usage(const oaip_dir_conf *conf)
{
    return (oaip_stream_usage)OR_DEFAULT(conf->stream_usage, OAIP_STREAM_USAGE_AUTO);
}

int oaip_conf_allows_client_key(const oaip_dir_conf *conf)
{
    return conf->allow_client_key == 1;
}

int oaip_conf_allows_credentials(const oaip_dir_conf *conf)
{
    return conf->allow_credentials == 1;
}

int oaip_server_max_streams(const oaip_server_conf *conf)
{
    return OR_DEFAULT(conf->max_streams, 0);
}

oaip_balance oaip_conf_balance(const oaip_dir_conf *conf)
{
    return (oaip_balance)OR_DEFAULT(conf->balance, OAIP_BALANCE_FAILOVER);
}

/* connect 429 500 502 503 504: what a backend says when another may do
 * better (rate limited, down, overloaded); never a 4xx about the request. */
static const oaip_failover_set default_failover = {
    1, 0, {[429] = 1, [500] = 1, [502] = 1, [503] = 1, [504] = 1}};

const oaip_failover_set *oaip_conf_failover_on(const oaip_dir_conf *conf)
{
    return conf->failover_on ? conf->failover_on : &default_failover;
}

#define DEFAULT_COOLDOWN apr_time_from_sec(30)

apr_interval_time_t oaip_conf_cooldown(const oaip_dir_conf *conf)
{
    return OR_DEFAULT(conf->cooldown, DEFAULT_COOLDOWN);
}

int oaip_server_store_fails_closed(const oaip_server_conf *conf)
{
    return conf->store_fail_closed == 1;
}

const char *oaip_conf_upstream(const oaip_dir_conf *conf)
{
    return conf->upstream ? conf->upstream : OAIP_DEFAULT_UPSTREAM;
}

apr_off_t oaip_conf_max_body(const oaip_dir_conf *conf)
{
    return OR_DEFAULT(conf->max_body, DEFAULT_MAX_BODY);
}

oaip_error_format oaip_conf_error_format(const oaip_dir_conf *conf, const char *sub_path)
{
    if (conf->error_format != OAIP_UNSET) {
        return (oaip_error_format)conf->error_format;
    }
    return sub_path != NULL && !oaip_endpoint_path_is_location(sub_path)
               ? OAIP_ERRFMT_OPENAI
               : OAIP_ERRFMT_WORKER;
}

/* Credentials with "*" would let any web page act with the browser's
 * cookies or Basic credentials of its visitors; echoing every origin
 * instead would be the same hole. The two may be set at different levels
 * (the origins in the VirtualHost, credentials in a Location), so each
 * section is checked merged with its server's settings, as a request there
 * would see them. */
static const char *credentials_conflict(apr_pool_t *p, const oaip_dir_conf *server_level,
                                        ap_conf_vector_t *section)
{
    const oaip_dir_conf *own = ap_get_module_config(section, &openai_proxy_module);
    const oaip_dir_conf *merged;
    const core_dir_config *core = ap_get_core_module_config(section);

    if (own == NULL) {
        return NULL;
    }
    merged = oaip_merge_dir_conf(p, (void *)server_level, (void *)own);
    if (oaip_conf_allows_credentials(merged) && oaip_origin_rules_any(merged->origins)) {
        return core && core->d ? core->d : "(section)";
    }
    return NULL;
}

static int credentials_refused(server_rec *s, const char *where)
{
    ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_EMERG, 0, NULL,
                 "OpenAIProxyAllowCredentials On cannot be combined with "
                 "OpenAIProxyAllowOrigin * (in %s of %s:%u): any web page could then "
                 "make its visitors' browsers call the API with their credentials; "
                 "list the allowed origins instead",
                 where, s->server_hostname ? s->server_hostname : "(server)",
                 (unsigned)s->port);
    return HTTP_INTERNAL_SERVER_ERROR;
}

static int check_sections(apr_pool_t *p, server_rec *s, const oaip_dir_conf *base,
                          apr_array_header_t *sections)
{
    int i;

    for (i = 0; sections != NULL && i < sections->nelts; i++) {
        const char *where =
            credentials_conflict(p, base, APR_ARRAY_IDX(sections, i, ap_conf_vector_t *));
        if (where != NULL) {
            return credentials_refused(s, apr_psprintf(p, "the section %s", where));
        }
    }
    return OK;
}

int oaip_check_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                      server_rec *s)
{
    (void)pconf;
    (void)plog;
    for (; s != NULL; s = s->next) {
        const oaip_dir_conf *base =
            ap_get_module_config(s->lookup_defaults, &openai_proxy_module);
        core_server_config *core = ap_get_core_module_config(s->module_config);
        int rc;

        if (base == NULL) {
            continue;
        }
        if (oaip_conf_allows_credentials(base) && oaip_origin_rules_any(base->origins)) {
            return credentials_refused(s, "the server or virtual host");
        }
        if ((rc = check_sections(ptemp, s, base, core->sec_url)) != OK ||
            (rc = check_sections(ptemp, s, base, core->sec_dir)) != OK) {
            return rc;
        }
    }
    return OK;
}
