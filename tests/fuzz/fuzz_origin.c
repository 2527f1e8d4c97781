/* Fuzzes CORS: OpenAIProxyAllowOrigin rule parsing, Origin matching and the
 * Access-Control-Allow-Headers echo.
 *
 * Input: lines. Line 1 is a request's Origin, line 2 its
 * Access-Control-Request-Headers, every further line an OpenAIProxyAllowOrigin
 * value.
 *
 * Invariants: a parsed rule is lower case with a port in range and matches the
 * origin it was written as (a wildcard one: a subdomain, never the apex); an
 * origin allowed by a rule other than "*" is exactly scheme://host[:port] for
 * that rule; the allow-headers value is the fixed names then well-formed
 * names from the request, each once. */
#include "fuzz.h"

#include <apr_lib.h>
#include <apr_strings.h>
#include <apr_tables.h>
#include <strings.h>

#include "core/cors.h"

#define FIXED_HEADERS "Content-Type, Authorization, x-openai-key"

static apr_array_header_t *one_rule(apr_pool_t *p, const oaip_origin_rule *rule)
{
    apr_array_header_t *rules = apr_array_make(p, 1, sizeof(oaip_origin_rule));

    *(oaip_origin_rule *)apr_array_push(rules) = *rule;
    return rules;
}

static const char *with_port(apr_pool_t *p, const char *scheme, const char *host,
                             int port)
{
    return port ? apr_psprintf(p, "%s://%s:%d", scheme, host, port)
                : apr_psprintf(p, "%s://%s", scheme, host);
}

static void check_rule(apr_pool_t *p, const char *text, const oaip_origin_rule *rule)
{
    apr_array_header_t *rules = one_rule(p, rule);
    const char *c;

    if (rule->any) {
        FUZZ_CHECK(strcmp(text, "*") == 0, "\"%s\" parsed as *", text);
        FUZZ_CHECK(oaip_origin_allowed(rules, "null") && oaip_origin_rules_any(rules),
                   "* does not allow everything");
        return;
    }
    FUZZ_CHECK(!oaip_origin_rules_any(rules), "\"%s\" taken for *", text);
    FUZZ_CHECK(rule->port >= 0 && rule->port <= 65535, "port %d", rule->port);
    FUZZ_CHECK(*rule->scheme && *rule->host, "empty scheme or host from \"%s\"", text);
    for (c = rule->scheme; *c; c++) {
        FUZZ_CHECK(!apr_isupper(*c), "scheme not lower case: %s", rule->scheme);
    }
    for (c = rule->host; *c; c++) {
        FUZZ_CHECK(!apr_isupper(*c), "host not lower case: %s", rule->host);
    }
    if (!rule->wildcard_host) {
        FUZZ_CHECK(oaip_origin_allowed(rules, text), "rule \"%s\" refuses itself", text);
        FUZZ_CHECK(oaip_origin_allowed(
                       rules, with_port(p, rule->scheme, rule->host, rule->port)),
                   "rule \"%s\" refuses its own canonical form", text);
        FUZZ_CHECK(!oaip_origin_allowed(rules, apr_pstrcat(p, text, "/", NULL)),
                   "rule \"%s\" allows a path", text);
    } else {
        FUZZ_CHECK(
            oaip_origin_allowed(rules, with_port(p, rule->scheme,
                                                 apr_pstrcat(p, "a.", rule->host, NULL),
                                                 rule->port)),
            "wildcard \"%s\" refuses a subdomain", text);
        FUZZ_CHECK(!oaip_origin_allowed(
                       rules, with_port(p, rule->scheme, rule->host, rule->port)),
                   "wildcard \"%s\" allows the apex", text);
        FUZZ_CHECK(
            !oaip_origin_allowed(rules, with_port(p, rule->scheme,
                                                  apr_pstrcat(p, "a", rule->host, NULL),
                                                  rule->port)),
            "wildcard \"%s\" allows a look-alike domain", text);
    }
}

/* An origin allowed by `rule` (not "*"): scheme://host[:digits] whose parts
 * are the rule's, compared without case. */
static void check_allowed_by(apr_pool_t *p, const char *origin,
                             const oaip_origin_rule *rule)
{
    const char *sep = strstr(origin, "://"), *host, *colon, *end;
    size_t scheme_len, host_len, rule_host_len = strlen(rule->host);
    int port = 0;

    FUZZ_CHECK(sep != NULL, "allowed origin \"%s\" has no ://", origin);
    scheme_len = (size_t)(sep - origin);
    FUZZ_CHECK(scheme_len == strlen(rule->scheme) &&
                   strncasecmp(origin, rule->scheme, scheme_len) == 0,
               "allowed origin \"%s\" has another scheme than %s", origin, rule->scheme);
    host = sep + 3;
    end = host + strlen(host);
    colon = host[0] == '[' ? strchr(host, ']') : host;
    FUZZ_CHECK(colon != NULL, "allowed origin \"%s\": unclosed [", origin);
    colon = strchr(colon, ':');
    host_len = (size_t)((colon ? colon : end) - host);
    if (colon != NULL) {
        const char *d;
        FUZZ_CHECK(colon[1] != '\0', "allowed origin \"%s\": empty port", origin);
        for (d = colon + 1; *d; d++) {
            FUZZ_CHECK(apr_isdigit(*d), "allowed origin \"%s\": port is no number",
                       origin);
            port = port * 10 + (*d - '0');
            FUZZ_CHECK(port <= 65535, "allowed origin \"%s\": port too large", origin);
        }
    } else {
        port = strcasecmp(rule->scheme, "https") == 0  ? 443
               : strcasecmp(rule->scheme, "http") == 0 ? 80
                                                       : 0;
    }
    FUZZ_CHECK(port == rule->port, "allowed origin \"%s\": port %d, rule %d", origin,
               port, rule->port);
    if (!rule->wildcard_host) {
        FUZZ_CHECK(host_len == rule_host_len &&
                       strncasecmp(host, rule->host, host_len) == 0,
                   "allowed origin \"%s\": host is not %s", origin, rule->host);
    } else {
        FUZZ_CHECK(host_len >= rule_host_len + 2 &&
                       host[host_len - rule_host_len - 1] == '.' &&
                       strncasecmp(host + host_len - rule_host_len, rule->host,
                                   rule_host_len) == 0,
                   "allowed origin \"%s\": not a subdomain of %s", origin, rule->host);
        FUZZ_CHECK(host[0] != '.', "allowed origin \"%s\": empty label", origin);
    }
    for (; host < sep + 3 + host_len; host++) {
        FUZZ_CHECK(apr_isalnum(*host) || strchr("-._[]:", *host) != NULL,
                   "allowed origin \"%s\": odd byte in host", origin);
    }
    (void)p;
}

static int is_token(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (!apr_isalnum(s[i]) && strchr("!#$%&'*+-.^_`|~", s[i]) == NULL) {
            return 0;
        }
    }
    return n > 0;
}

static void check_allow_headers(apr_pool_t *p, const char *requested)
{
    const char *value = oaip_cors_allow_headers(p, requested), *item;
    apr_array_header_t *seen = apr_array_make(p, 8, sizeof(const char *));
    int i;

    FUZZ_CHECK(strncmp(value, FIXED_HEADERS, strlen(FIXED_HEADERS)) == 0,
               "allow-headers does not begin with the fixed names: %s", value);
    for (item = value; *item;) {
        const char *end = strstr(item, ", ");
        size_t n = end ? (size_t)(end - item) : strlen(item);
        const char *name = apr_pstrndup(p, item, n);
        FUZZ_CHECK(is_token(item, n), "allow-headers echoes a malformed name: \"%s\"",
                   name);
        for (i = 0; i < seen->nelts; i++) {
            FUZZ_CHECK(strcasecmp(APR_ARRAY_IDX(seen, i, const char *), name) != 0,
                       "allow-headers lists %s twice", name);
        }
        APR_ARRAY_PUSH(seen, const char *) = name;
        if (seen->nelts > 3) {
            FUZZ_CHECK(requested != NULL && strstr(requested, name) != NULL,
                       "allow-headers echoes %s, which was not requested", name);
        }
        item = end ? end + 2 : item + n;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p = fuzz_pool();
    char *text = fuzz_cstring(p, data, size), *line, *state = NULL;
    const char *origin = NULL, *requested = NULL;
    apr_array_header_t *rules = apr_array_make(p, 8, sizeof(oaip_origin_rule));
    apr_array_header_t *texts = apr_array_make(p, 8, sizeof(const char *));
    int n = 0, i, allowed;

    /* strtok would merge empty lines: split by hand */
    for (line = text; line != NULL; line = state, n++) {
        state = strchr(line, '\n');
        if (state != NULL) {
            *state++ = '\0';
        }
        if (n == 0) {
            origin = line;
        } else if (n == 1) {
            requested = line;
        } else if (rules->nelts < 16) {
            oaip_origin_rule rule;
            if (oaip_origin_rule_parse(p, line, &rule) == NULL) {
                check_rule(p, line, &rule);
                *(oaip_origin_rule *)apr_array_push(rules) = rule;
                APR_ARRAY_PUSH(texts, const char *) = line;
            }
        }
    }
    allowed = oaip_origin_allowed(rules, origin);
    if (allowed && !oaip_origin_rules_any(rules)) {
        for (i = 0; i < rules->nelts; i++) {
            const oaip_origin_rule *rule = &APR_ARRAY_IDX(rules, i, oaip_origin_rule);
            if (oaip_origin_allowed(one_rule(p, rule), origin)) {
                check_allowed_by(p, origin, rule);
            }
        }
    }
    FUZZ_CHECK(!oaip_origin_allowed(NULL, origin), "no rules allow %s", origin);
    check_allow_headers(p, requested);
    check_allow_headers(p, NULL);
    return 0;
}
