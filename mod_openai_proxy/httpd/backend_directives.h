/* The directives of several backends: OpenAIProxyBackend (server config,
 * virtual host), OpenAIProxyRoute, OpenAIProxyBalance, OpenAIProxyFailover,
 * OpenAIProxyCooldown, OpenAIProxyModelAlias; and the startup check that
 * every route names backends its servers have. */
#ifndef OAIP_BACKEND_DIRECTIVES_H
#define OAIP_BACKEND_DIRECTIVES_H

#include <httpd.h>
#include <http_config.h>

const char *oaip_set_backend(cmd_parms *cmd, void *dconf, const char *args);
const char *oaip_set_route(cmd_parms *cmd, void *dconf, const char *args);
const char *oaip_set_balance(cmd_parms *cmd, void *dconf, const char *arg);
const char *oaip_set_failover(cmd_parms *cmd, void *dconf, const char *args);
const char *oaip_set_cooldown(cmd_parms *cmd, void *dconf, const char *arg);
const char *oaip_set_model_alias(cmd_parms *cmd, void *dconf, const char *name,
                                 const char *target);

/* check_config: a route that names a backend one of the servers it applies
 * in does not have is refused with the route's file and line. */
int oaip_backends_check_config(apr_pool_t *ptemp, server_rec *s);

#endif
