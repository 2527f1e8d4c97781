/* The value parsers that several directives share: OpenAIProxyAPIKey and
 * OpenAIProxyBackend's key= read keys alike, and so on. */
#include "httpd/directive_values.h"

#include <apr_file_io.h>
#include <apr_strings.h>
#include <apr_uri.h>
#include <http_core.h>
#include <stdlib.h>

#include "core/header_check.h"
#include "core/upstream_url.h"
#include "core/values.h"

/* Reads a key file at startup. The error messages name the file, never its
 * content. */
static const char *read_key_file(cmd_parms *cmd, const char *path, const char **key)
{
    const char *full = ap_server_root_relative(cmd->temp_pool, path);
    apr_file_t *file;
    apr_finfo_t info;
    apr_status_t rv;
    apr_size_t got;
    char *buf, errbuf[120];

    if (full == NULL) {
        return apr_psprintf(cmd->pool, "%s: invalid file path %s", cmd->cmd->name, path);
    }
    rv = apr_file_open(&file, full, APR_FOPEN_READ, APR_OS_DEFAULT, cmd->temp_pool);
    if (rv == APR_SUCCESS) {
        rv = apr_file_info_get(&info, APR_FINFO_SIZE, file);
    }
    if (rv == APR_SUCCESS && info.size > 64 * 1024) {
        apr_file_close(file);
        return apr_psprintf(cmd->pool, "%s: key file %s is larger than 64 KiB",
                            cmd->cmd->name, full);
    }
    if (rv == APR_SUCCESS) {
        buf = apr_palloc(cmd->pool, (apr_size_t)info.size + 1);
        rv = apr_file_read_full(file, buf, (apr_size_t)info.size, &got);
        if (rv == APR_EOF) {
            rv = APR_SUCCESS;
        }
        buf[rv == APR_SUCCESS ? got : 0] = '\0';
        apr_file_close(file);
        *key = oaip_value_trim(buf);
    }
    if (rv != APR_SUCCESS) {
        return apr_psprintf(cmd->pool, "%s: cannot read key file %s: %s", cmd->cmd->name,
                            full, apr_strerror(rv, errbuf, sizeof(errbuf)));
    }
    return NULL;
}

const char *oaip_directive_key(cmd_parms *cmd, const char *arg, const char **out)
{
    const char *key, *ref, *err, *where = "the value";
    oaip_key_source source = oaip_value_key_source(arg, &ref);

    key = ref;
    if (source == OAIP_KEY_ENV) {
        key = getenv(ref);
        where = apr_psprintf(cmd->pool, "environment variable %s", ref);
        if (key == NULL) {
            return apr_psprintf(cmd->pool, "%s: environment variable %s is not set",
                                cmd->cmd->name, ref);
        }
        key = oaip_value_trim(apr_pstrdup(cmd->pool, key));
    } else if (source == OAIP_KEY_FILE) {
        where = apr_psprintf(cmd->pool, "key file %s", ref);
        if ((err = read_key_file(cmd, ref, &key)) != NULL) {
            return err;
        }
    }
    if (*key == '\0') {
        return apr_psprintf(cmd->pool, "%s: %s is empty", cmd->cmd->name, where);
    }
    if (!oaip_header_value_visible(key)) {
        return apr_psprintf(cmd->pool,
                            "%s: %s contains white space or control characters",
                            cmd->cmd->name, where);
    }
    *out = key;
    return NULL;
}

const char *oaip_directive_url(cmd_parms *cmd, const char *arg, const char **out)
{
    apr_uri_t uri;
    char *base;
    apr_size_t len;

    if (apr_uri_parse(cmd->pool, arg, &uri) != APR_SUCCESS || uri.scheme == NULL ||
        (strcasecmp(uri.scheme, "http") != 0 && strcasecmp(uri.scheme, "https") != 0)) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not an http:// or https:// URL",
                            cmd->cmd->name, arg);
    }
    if (uri.hostname == NULL || *uri.hostname == '\0') {
        return apr_psprintf(cmd->pool, "%s: '%s' has no host", cmd->cmd->name, arg);
    }
    if (uri.user || uri.password || uri.query || uri.fragment) {
        return apr_psprintf(cmd->pool,
                            "%s: the URL must not carry user info, a query or a fragment "
                            "(put the key in OpenAIProxyAPIKey)",
                            cmd->cmd->name);
    }
    if (!oaip_header_value_visible(arg)) {
        return apr_psprintf(cmd->pool, "%s: the URL contains white space",
                            cmd->cmd->name);
    }
    base = apr_pstrdup(cmd->pool, arg);
    len = strlen(base);
    while (len > 0 && base[len - 1] == '/') {
        base[--len] = '\0';
    }
    *out = base;
    return NULL;
}

/* Headers libcurl or the proxy set themselves, or that would change how
 * the request is framed: not for a key. */
static int is_reserved_header(const char *name)
{
    static const char *const reserved[] = {
        "host",       "content-type", "content-length", "transfer-encoding",
        "connection", "expect",       "user-agent",     "te",
        "upgrade",    "trailer"};
    apr_size_t i;

    for (i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
        if (strcasecmp(name, reserved[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

const char *oaip_directive_auth(cmd_parms *cmd, const char *arg, const char **auth_name)
{
    if (strcasecmp(arg, "bearer") == 0) {
        *auth_name = "";
    } else if (strncasecmp(arg, "header:", 7) == 0 &&
               oaip_header_name_valid(arg + 7, strlen(arg + 7)) &&
               !is_reserved_header(arg + 7)) {
        *auth_name = arg + 7;
    } else {
        return apr_psprintf(
            cmd->pool,
            "%s: '%s' is not bearer or header:NAME with NAME a header "
            "field name (letters, digits, !#$%%&'*+-.^_`|~) other than "
            "Host, Content-Type, Content-Length and other framing headers",
            cmd->cmd->name, arg);
    }
    return NULL;
}

const char *oaip_directive_query(cmd_parms *cmd, const char *arg,
                                 apr_array_header_t **list)
{
    const char *error = NULL;
    const char *param = oaip_query_param_encode(cmd->pool, arg, &error);

    if (param == NULL) {
        return apr_psprintf(cmd->pool, "%s: '%s': %s", cmd->cmd->name, arg, error);
    }
    if (*list == NULL) {
        *list = apr_array_make(cmd->pool, 2, sizeof(const char *));
    }
    APR_ARRAY_PUSH(*list, const char *) = param;
    return NULL;
}

/* A time in httpd's syntax (30, 500ms, 2min; no unit: seconds) from 1 ms to
 * `max_seconds`. */
const char *oaip_directive_time(cmd_parms *cmd, const char *arg, int max_seconds,
                                apr_interval_time_t *out)
{
    apr_interval_time_t value;

    if (!oaip_value_time_shape(arg) ||
        ap_timeout_parameter_parse(arg, &value, "s") != APR_SUCCESS ||
        value < apr_time_from_msec(1) || value > apr_time_from_sec(max_seconds)) {
        return apr_psprintf(cmd->pool,
                            "%s: '%s' is not a time from 1ms to %d seconds (a number of "
                            "seconds, or with a unit: 500ms, 30s, 2min, 1h)",
                            cmd->cmd->name, arg, max_seconds);
    }
    *out = value;
    return NULL;
}
