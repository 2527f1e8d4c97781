#include "httpd/backend_directives.h"

#include <apr_lib.h>
#include <apr_strings.h>
#include <http_core.h>
#include <http_log.h>

#include "core/header_check.h"
#include "core/model_alias.h"
#include "core/values.h"
#include "httpd/config.h"
#include "httpd/directive_values.h"
#include "mod_openai_proxy.h"

/* Backend names: what a log line, a status label and a route can carry
 * as they are. */
static int name_valid(const char *name)
{
    const char *c;

    for (c = name; *c; c++) {
        if (!apr_isalnum(*c) && *c != '-' && *c != '_' && *c != '.') {
            return 0;
        }
    }
    return *name != '\0' && c - name <= 64;
}

static const char *bad_name(cmd_parms *cmd, const char *name)
{
    return apr_psprintf(cmd->pool,
                        "%s: '%s' is not a backend name (1 to 64 letters, digits, '-', "
                        "'_' or '.')",
                        cmd->cmd->name, name);
}

static const char *add_models(cmd_parms *cmd, oaip_backend *b, const char *list)
{
    char *copy = apr_pstrdup(cmd->pool, list), *last, *one;

    b->models = apr_array_make(cmd->pool, 4, sizeof(const char *));
    for (one = apr_strtok(copy, ",", &last); one; one = apr_strtok(NULL, ",", &last)) {
        if (!oaip_value_model_pattern(one)) {
            return apr_psprintf(cmd->pool,
                                "%s: models=: '%s': '*' may only end a model name, as "
                                "in gpt-4o*",
                                cmd->cmd->name, one);
        }
        APR_ARRAY_PUSH(b->models, const char *) = one;
    }
    if (b->models->nelts == 0) {
        return apr_psprintf(cmd->pool, "%s: models= names no model", cmd->cmd->name);
    }
    return NULL;
}

/* One key=value option of OpenAIProxyBackend. */
static const char *backend_option(cmd_parms *cmd, oaip_backend *b, const char *option)
{
    const char *eq = strchr(option, '='), *value;
    apr_size_t n = eq ? (apr_size_t)(eq - option) : 0;

    if (eq == NULL) {
        return apr_psprintf(cmd->pool,
                            "%s: '%s' is not an option (key=, auth=, query=, models=, "
                            "weight=)",
                            cmd->cmd->name, option);
    }
    value = eq + 1;
    if (n == 3 && strncasecmp(option, "key", 3) == 0) {
        if (strcasecmp(value, "none") == 0) {
            b->key = NULL;
            return NULL;
        }
        return oaip_directive_key(cmd, value, &b->key);
    }
    if (n == 4 && strncasecmp(option, "auth", 4) == 0) {
        return oaip_directive_auth(cmd, value, &b->auth_name);
    }
    if (n == 5 && strncasecmp(option, "query", 5) == 0) {
        return oaip_directive_query(cmd, value, &b->query);
    }
    if (n == 6 && strncasecmp(option, "models", 6) == 0) {
        return add_models(cmd, b, value);
    }
    if (n == 6 && strncasecmp(option, "weight", 6) == 0) {
        if (!oaip_value_count(value, 1000000, &b->weight)) {
            return apr_psprintf(cmd->pool,
                                "%s: weight=%s is not a whole number from 1 to 1000000",
                                cmd->cmd->name, value);
        }
        return NULL;
    }
    return apr_psprintf(cmd->pool,
                        "%s: unknown option '%.*s' (key=, auth=, query=, models=, "
                        "weight=)",
                        cmd->cmd->name, (int)n, option);
}

const char *oaip_set_backend(cmd_parms *cmd, void *dconf, const char *args)
{
    oaip_server_conf *conf =
        ap_get_module_config(cmd->server->module_config, &openai_proxy_module);
    const char *err = ap_check_cmd_context(cmd, NOT_IN_DIR_LOC_FILE);
    oaip_backend *b = apr_pcalloc(cmd->pool, sizeof(*b));
    const char *url, *option;
    int i;

    (void)dconf;
    if (err != NULL) {
        return err;
    }
    b->name = ap_getword_conf(cmd->pool, &args);
    url = ap_getword_conf(cmd->pool, &args);
    if (*b->name == '\0' || *url == '\0') {
        return apr_psprintf(cmd->pool, "%s takes a NAME, a URL and options",
                            cmd->cmd->name);
    }
    if (!name_valid(b->name)) {
        return bad_name(cmd, b->name);
    }
    for (i = 0; conf->backends != NULL && i < conf->backends->nelts; i++) {
        const oaip_backend *other =
            APR_ARRAY_IDX(conf->backends, i, const oaip_backend *);
        if (strcmp(other->name, b->name) == 0) {
            return apr_psprintf(cmd->pool,
                                "%s: a backend named %s is already defined here (%s line "
                                "%u); names are unique per server",
                                cmd->cmd->name, b->name, other->file, other->line);
        }
    }
    if ((err = oaip_directive_url(cmd, url, &b->url)) != NULL) {
        return err;
    }
    b->auth_name = "";
    b->weight = 1;
    b->slot = -1;
    b->file = cmd->directive->filename;
    b->line = (unsigned)cmd->directive->line_num;
    while (*(option = ap_getword_conf(cmd->pool, &args)) != '\0') {
        if ((err = backend_option(cmd, b, option)) != NULL) {
            return err;
        }
    }
    if (conf->backends == NULL) {
        conf->backends = apr_array_make(cmd->pool, 4, sizeof(oaip_backend *));
    }
    APR_ARRAY_PUSH(conf->backends, oaip_backend *) = b;
    return NULL;
}

const char *oaip_set_route(cmd_parms *cmd, void *dconf, const char *args)
{
    oaip_dir_conf *conf = dconf;
    oaip_route *route = apr_pcalloc(cmd->pool, sizeof(*route));
    const char *name;
    int i;

    route->names = apr_array_make(cmd->pool, 4, sizeof(const char *));
    route->file = cmd->directive->filename;
    route->line = (unsigned)cmd->directive->line_num;
    while (*(name = ap_getword_conf(cmd->pool, &args)) != '\0') {
        if (!name_valid(name)) {
            return bad_name(cmd, name);
        }
        for (i = 0; i < route->names->nelts; i++) {
            if (strcmp(APR_ARRAY_IDX(route->names, i, const char *), name) == 0) {
                return apr_psprintf(cmd->pool,
                                    "%s: %s is named twice (each backend is tried at "
                                    "most once per request)",
                                    cmd->cmd->name, name);
            }
        }
        if (route->names->nelts == OAIP_ROUTE_MAX) {
            return apr_psprintf(cmd->pool, "%s: a route has at most %d backends",
                                cmd->cmd->name, OAIP_ROUTE_MAX);
        }
        APR_ARRAY_PUSH(route->names, const char *) = name;
    }
    if (route->names->nelts == 0) {
        return apr_psprintf(cmd->pool, "%s takes one or more backend names",
                            cmd->cmd->name);
    }
    conf->route = route;
    return NULL;
}

const char *oaip_set_balance(cmd_parms *cmd, void *dconf, const char *arg)
{
    oaip_dir_conf *conf = dconf;

    if (strcasecmp(arg, "failover") == 0) {
        conf->balance = OAIP_BALANCE_FAILOVER;
    } else if (strcasecmp(arg, "weighted") == 0) {
        conf->balance = OAIP_BALANCE_WEIGHTED;
    } else if (strcasecmp(arg, "least-busy") == 0) {
        conf->balance = OAIP_BALANCE_LEAST_BUSY;
    } else {
        return apr_psprintf(cmd->pool,
                            "%s: '%s' is not one of failover, weighted, least-busy",
                            cmd->cmd->name, arg);
    }
    return NULL;
}

const char *oaip_set_failover(cmd_parms *cmd, void *dconf, const char *args)
{
    oaip_dir_conf *conf = dconf;
    oaip_failover_set *set = apr_pcalloc(cmd->pool, sizeof(*set));
    const char *word;
    int status, words = 0, none = 0;

    while (*(word = ap_getword_conf(cmd->pool, &args)) != '\0') {
        words++;
        if (strcasecmp(word, "none") == 0) {
            none = 1;
        } else if (strcasecmp(word, "connect") == 0) {
            set->connect = 1;
        } else if (strcasecmp(word, "timeout") == 0) {
            set->timeout = 1;
        } else if (oaip_value_count(word, 599, &status) && status >= 400) {
            set->status[status] = 1;
        } else {
            return apr_psprintf(cmd->pool,
                                "%s: '%s' is not connect, timeout, a status from 400 to "
                                "599, or none",
                                cmd->cmd->name, word);
        }
    }
    if (words == 0 || (none && words > 1)) {
        return apr_psprintf(cmd->pool,
                            "%s takes connect, timeout and statuses (400 to 599), or "
                            "none alone",
                            cmd->cmd->name);
    }
    conf->failover_on = set;
    return NULL;
}

const char *oaip_set_cooldown(cmd_parms *cmd, void *dconf, const char *arg)
{
    oaip_dir_conf *conf = dconf;

    if (strcmp(arg, "0") == 0 || strcasecmp(arg, "off") == 0) {
        conf->cooldown = 0;
        return NULL;
    }
    return oaip_directive_time(cmd, arg, 86400, &conf->cooldown);
}

const char *oaip_set_model_alias(cmd_parms *cmd, void *dconf, const char *name,
                                 const char *target)
{
    oaip_dir_conf *conf = dconf;

    if (!oaip_header_value_visible(name) || !oaip_header_value_visible(target) ||
        strchr(name, '*') != NULL) {
        return apr_psprintf(
            cmd->pool,
            "%s: '%s' '%s': both names must be visible characters without "
            "white space, and the alias without '*'",
            cmd->cmd->name, name, target);
    }
    if (conf->model_aliases == NULL) {
        conf->model_aliases = apr_array_make(cmd->pool, 4, sizeof(oaip_model_alias));
    }
    oaip_model_alias_set(conf->model_aliases, apr_pstrdup(cmd->pool, name),
                         apr_pstrdup(cmd->pool, target));
    return NULL;
}

static int route_unknown(server_rec *s, const oaip_route *route, const char *name)
{
    ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_EMERG, 0, NULL,
                 "%s line %u: OpenAIProxyRoute names %s, but no OpenAIProxyBackend of "
                 "that name is defined for %s:%u (nor in the main server)",
                 route->file ? route->file : "(config)", route->line, name,
                 s->server_hostname ? s->server_hostname : "(server)", (unsigned)s->port);
    return HTTP_INTERNAL_SERVER_ERROR;
}

static int check_route(server_rec *s, const oaip_server_conf *sconf,
                       ap_conf_vector_t *section)
{
    const oaip_dir_conf *conf =
        section ? ap_get_module_config(section, &openai_proxy_module) : NULL;
    int i;

    for (i = 0; conf && conf->route && i < conf->route->names->nelts; i++) {
        const char *name = APR_ARRAY_IDX(conf->route->names, i, const char *);
        if (oaip_server_backend(sconf, name) == NULL) {
            return route_unknown(s, conf->route, name);
        }
    }
    return OK;
}

static int check_sections(server_rec *s, const oaip_server_conf *sconf,
                          apr_array_header_t *sections)
{
    int i, rc;

    for (i = 0; sections != NULL && i < sections->nelts; i++) {
        rc = check_route(s, sconf, APR_ARRAY_IDX(sections, i, ap_conf_vector_t *));
        if (rc != OK) {
            return rc;
        }
    }
    return OK;
}

int oaip_backends_check_config(apr_pool_t *ptemp, server_rec *s)
{
    int rc;

    (void)ptemp;
    for (; s != NULL; s = s->next) {
        const oaip_server_conf *sconf =
            ap_get_module_config(s->module_config, &openai_proxy_module);
        core_server_config *core = ap_get_core_module_config(s->module_config);

        if ((rc = check_route(s, sconf, s->lookup_defaults)) != OK ||
            (rc = check_sections(s, sconf, core->sec_url)) != OK ||
            (rc = check_sections(s, sconf, core->sec_dir)) != OK) {
            return rc;
        }
    }
    return OK;
}
