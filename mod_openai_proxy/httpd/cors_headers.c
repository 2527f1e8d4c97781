#include "httpd/cors_headers.h"

#include <apr_strings.h>
#include <http_protocol.h>

#include "core/cors.h"
#include "core/header_check.h"

/* A browser sends Origin on same-origin POSTs too: a page served by this
 * virtual host under its ServerName needs no allow-list entry. The name is
 * checked, not just the Host header, so that a catch-all host does not take
 * any domain pointed at it for its own. */
static int is_same_origin(request_rec *r, const char *origin)
{
    const char *host = apr_table_get(r->headers_in, "Host");
    const char *name = r->server->server_hostname;
    apr_size_t name_len = name ? strlen(name) : 0;

    if (host == NULL || name == NULL || strncasecmp(host, name, name_len) != 0 ||
        (host[name_len] != '\0' && host[name_len] != ':')) {
        return 0;
    }
    return strcasecmp(origin,
                      apr_pstrcat(r->pool, ap_http_scheme(r), "://", host, NULL)) == 0;
}

int oaip_cors_apply(request_rec *r, const oaip_dir_conf *conf, const char *origin)
{
    int any = oaip_origin_rules_any(conf->origins);

    if (!any &&
        !ap_find_token(r->pool, apr_table_get(r->err_headers_out, "Vary"), "Origin")) {
        apr_table_mergen(r->err_headers_out, "Vary", "Origin");
    }
    if (origin == NULL) {
        return 1;
    }
    if (!oaip_origin_allowed(conf->origins, origin) && !is_same_origin(r, origin)) {
        return 0;
    }
    apr_table_setn(r->err_headers_out, "Access-Control-Allow-Origin", any ? "*" : origin);
    apr_table_setn(r->err_headers_out, "Access-Control-Expose-Headers",
                   OAIP_EXPOSED_HEADERS);
    /* never with "*", which browsers refuse with credentials anyway;
     * check_config already refused that configuration */
    if (oaip_conf_allows_credentials(conf) && !any) {
        apr_table_setn(r->err_headers_out, "Access-Control-Allow-Credentials", "true");
    }
    return 1;
}
