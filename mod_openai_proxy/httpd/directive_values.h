/* The value parsers that several directives share (OpenAIProxyAPIKey and
 * the key= of OpenAIProxyBackend read keys alike): each returns NULL or
 * the configuration error, naming cmd's directive. */
#ifndef OAIP_DIRECTIVE_VALUES_H
#define OAIP_DIRECTIVE_VALUES_H

#include <httpd.h>
#include <http_config.h>

/* KEY, env:VARIABLE or file:/path, read now (at startup). */
const char *oaip_directive_key(cmd_parms *cmd, const char *arg, const char **key);

/* An http:// or https:// base URL without user info, query or fragment;
 * *base without its trailing slashes. */
const char *oaip_directive_url(cmd_parms *cmd, const char *arg, const char **base);

/* bearer or header:NAME: *auth_name "" for bearer, else NAME. */
const char *oaip_directive_auth(cmd_parms *cmd, const char *arg, const char **auth_name);

/* NAME=VALUE, encoded and appended to *list (made when NULL). */
const char *oaip_directive_query(cmd_parms *cmd, const char *arg,
                                 apr_array_header_t **list);

/* The time values of the timeouts: 30, 500ms, 2min, from 1 ms to
 * max_seconds. */
const char *oaip_directive_time(cmd_parms *cmd, const char *arg, int max_seconds,
                                apr_interval_time_t *out);

#endif
