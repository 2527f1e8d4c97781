#include "core/cors.h"

#include <apr_lib.h>
#include <apr_strings.h>
#include <string.h>

#include "core/header_check.h"

static const char *const always_allowed_headers[] = {"Content-Type", "Authorization",
                                                     "x-openai-key"};

typedef struct {
    const char *scheme;
    apr_size_t scheme_len;
    const char *host;
    apr_size_t host_len;
    int port; /* explicit port, or 0 */
} origin_parts;

static int default_port(const char *scheme, apr_size_t len)
{
    if (len == 4 && strncasecmp(scheme, "http", 4) == 0) {
        return 80;
    }
    if (len == 5 && strncasecmp(scheme, "https", 5) == 0) {
        return 443;
    }
    return 0;
}

static int is_host_char(char c)
{
    return apr_isalnum(c) || c == '-' || c == '.' || c == '_';
}

/* Splits "scheme://host[:port]" and nothing more: no user info, path, query,
 * fragment or white space, so that a crafted value cannot make a prefix or
 * suffix of itself look like an allowed origin. */
static int split_origin(const char *s, origin_parts *out)
{
    const char *p = s;
    long port = 0;

    if (!apr_isalpha(*p)) {
        return 0;
    }
    while (apr_isalnum(*p) || *p == '+' || *p == '-' || *p == '.') {
        p++;
    }
    if (strncmp(p, "://", 3) != 0) {
        return 0;
    }
    out->scheme = s;
    out->scheme_len = (apr_size_t)(p - s);
    p += 3;
    out->host = p;
    if (*p == '[') { /* IPv6 literal */
        p++;
        while (apr_isxdigit(*p) || *p == ':' || *p == '.') {
            p++;
        }
        if (*p != ']') {
            return 0;
        }
        p++;
    } else {
        while (is_host_char(*p)) {
            p++;
        }
    }
    out->host_len = (apr_size_t)(p - out->host);
    if (out->host_len == 0 || out->host[out->host_len - 1] == '.' ||
        out->host[0] == '.') {
        return 0;
    }
    if (*p == ':') {
        const char *digits = ++p;
        while (apr_isdigit(*p) && port <= 65535) {
            port = port * 10 + (*p - '0');
            p++;
        }
        if (p == digits || port < 1 || port > 65535) {
            return 0;
        }
    }
    out->port = (int)port;
    return *p == '\0';
}

static int effective_port(const origin_parts *o)
{
    return o->port ? o->port : default_port(o->scheme, o->scheme_len);
}

static const char *lower_dup(apr_pool_t *p, const char *s, apr_size_t len)
{
    char *copy = apr_pstrndup(p, s, len), *c;

    for (c = copy; *c; c++) {
        *c = (char)apr_tolower(*c);
    }
    return copy;
}

const char *oaip_origin_rule_parse(apr_pool_t *p, const char *text, oaip_origin_rule *out)
{
    origin_parts parts;
    const char *host_start;
    char *star;

    memset(out, 0, sizeof(*out));
    if (strcmp(text, "*") == 0) {
        out->any = 1;
        return NULL;
    }
    /* "*." may only open the host: replace it by a placeholder label so the
     * remaining text is checked by the same parser as request origins. */
    star = strstr(text, "://*.");
    if (star != NULL) {
        text = apr_pstrcat(p, apr_pstrndup(p, text, (apr_size_t)(star - text)), "://x.",
                           star + 5, NULL);
        out->wildcard_host = 1;
    }
    if (strchr(text, '*') != NULL) {
        return "a wildcard is only allowed as the first label of the host, as in "
               "https://*.example.com";
    }
    if (!split_origin(text, &parts)) {
        return "an origin is scheme://host[:port] with no path, user info, query or "
               "trailing slash, e.g. https://app.example.com";
    }
    host_start = parts.host;
    if (out->wildcard_host) {
        host_start += 2; /* skip the placeholder "x." */
        if (strchr(apr_pstrndup(p, host_start, parts.host_len - 2), '.') == NULL) {
            return "a wildcard origin needs a domain with at least two labels after "
                   "\"*.\", e.g. https://*.example.com";
        }
    }
    out->scheme = lower_dup(p, parts.scheme, parts.scheme_len);
    out->host =
        lower_dup(p, host_start, parts.host_len - (apr_size_t)(host_start - parts.host));
    out->port = effective_port(&parts);
    return NULL;
}

static int rule_matches(const oaip_origin_rule *rule, const origin_parts *o)
{
    apr_size_t rule_host_len;

    if (rule->any) {
        return 1;
    }
    if (strlen(rule->scheme) != o->scheme_len ||
        strncasecmp(rule->scheme, o->scheme, o->scheme_len) != 0) {
        return 0;
    }
    if (rule->port != effective_port(o)) {
        return 0;
    }
    rule_host_len = strlen(rule->host);
    if (!rule->wildcard_host) {
        return rule_host_len == o->host_len &&
               strncasecmp(rule->host, o->host, o->host_len) == 0;
    }
    /* "*.example.com" matches "<one or more labels>.example.com" only. */
    if (o->host_len < rule_host_len + 2) {
        return 0;
    }
    return o->host[o->host_len - rule_host_len - 1] == '.' &&
           strncasecmp(rule->host, o->host + (o->host_len - rule_host_len),
                       rule_host_len) == 0;
}

int oaip_origin_allowed(const apr_array_header_t *rules, const char *origin)
{
    origin_parts parts;
    int i, well_formed;

    if (rules == NULL || origin == NULL) {
        return 0;
    }
    well_formed = split_origin(origin, &parts);
    for (i = 0; i < rules->nelts; i++) {
        const oaip_origin_rule *rule = &APR_ARRAY_IDX(rules, i, oaip_origin_rule);
        if (rule->any) {
            return 1;
        }
        if (well_formed && rule_matches(rule, &parts)) {
            return 1;
        }
    }
    return 0;
}

int oaip_origin_rules_any(const apr_array_header_t *rules)
{
    int i;

    for (i = 0; rules != NULL && i < rules->nelts; i++) {
        if (APR_ARRAY_IDX(rules, i, oaip_origin_rule).any) {
            return 1;
        }
    }
    return 0;
}

static int header_listed(const char *list, const char *name, apr_size_t len)
{
    const char *p = list;

    while (*p) {
        const char *end = strchr(p, ',');
        apr_size_t n = end ? (apr_size_t)(end - p) : strlen(p);
        if (n == len && strncasecmp(p, name, len) == 0) {
            return 1;
        }
        if (end == NULL) {
            break;
        }
        p = end + 1;
        while (*p == ' ') {
            p++;
        }
    }
    return 0;
}

const char *oaip_cors_allow_headers(apr_pool_t *p, const char *requested)
{
    const char *list =
        apr_pstrcat(p, always_allowed_headers[0], ", ", always_allowed_headers[1], ", ",
                    always_allowed_headers[2], NULL);
    const char *s = requested;

    while (s != NULL && *s) {
        const char *start, *end;
        while (*s == ' ' || *s == '\t' || *s == ',') {
            s++;
        }
        start = s;
        while (oaip_is_tchar(*s)) {
            s++;
        }
        end = s;
        while (*s == ' ' || *s == '\t') {
            s++;
        }
        if (*s != ',' && *s != '\0') {
            /* a malformed name: skip to the next comma, never echo it */
            while (*s && *s != ',') {
                s++;
            }
            continue;
        }
        if (end > start && !header_listed(list, start, (apr_size_t)(end - start))) {
            list = apr_pstrcat(p, list, ", ",
                               apr_pstrndup(p, start, (apr_size_t)(end - start)), NULL);
        }
    }
    return list;
}
