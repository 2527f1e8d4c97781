#include "core/upstream_url.h"

#include <apr_lib.h>
#include <apr_strings.h>
#include <string.h>

/* RFC 3986's unreserved characters stay, everything else is %XX: APR's
 * form encoder writes a space as "+" and keeps "*", which a strict query
 * parser may read otherwise. */
static const char *percent_encode(apr_pool_t *p, const char *s, apr_size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = apr_palloc(p, n * 3 + 1), *q = out;
    apr_size_t i;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (apr_isalnum(c) || strchr("-._~", c) != NULL) {
            *q++ = (char)c;
        } else {
            *q++ = '%';
            *q++ = hex[c >> 4];
            *q++ = hex[c & 15];
        }
    }
    *q = '\0';
    return out;
}

const char *oaip_query_param_encode(apr_pool_t *p, const char *arg, const char **error)
{
    const char *eq = strchr(arg, '=');

    if (eq == NULL || eq == arg) {
        *error = "expected NAME=VALUE with a non-empty NAME";
        return NULL;
    }
    return apr_pstrcat(p, percent_encode(p, arg, (apr_size_t)(eq - arg)), "=",
                       percent_encode(p, eq + 1, strlen(eq + 1)), NULL);
}

const char *oaip_upstream_url(apr_pool_t *p, const char *base, const char *path,
                              const apr_array_header_t *query)
{
    const char *url = apr_pstrcat(p, base, "/", path, NULL);
    int i;

    for (i = 0; query != NULL && i < query->nelts; i++) {
        url = apr_pstrcat(p, url, i == 0 ? "?" : "&",
                          APR_ARRAY_IDX(query, i, const char *), NULL);
    }
    return url;
}
