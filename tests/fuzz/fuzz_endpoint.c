/* Fuzzes request routing below a Location (oaip_endpoint_route,
 * oaip_endpoint_pattern_matches), the upstream URL and OpenAIProxyUpstreamQuery
 * values (oaip_query_param_encode).
 *
 * Input: line 1 the decoded request path below the Location, line 2 a
 * NAME=VALUE query parameter.
 *
 * Invariants: a routed path is the request's without one leading and one
 * trailing slash ("" is chat/completions), matches the endpoint's pattern, is
 * enabled, and cannot leave the API base (no empty, "." or ".." segment, no
 * '%', '?', '#', '\\' or control byte in a wildcard segment); with no
 * endpoints configured only chat/completions and responses route; an encoded parameter
 * holds only unreserved characters and %XX, and decodes to the value. */
#include "fuzz.h"

#include <apr_lib.h>
#include <apr_strings.h>
#include <apr_tables.h>

#include "core/endpoint.h"
#include "core/upstream_url.h"

static const char *const all_patterns[] = {
    "chat/completions",     "completions",        "responses",    "embeddings",
    "moderations",          "images/generations", "images/edits", "audio/speech",
    "audio/transcriptions", "audio/translations", "models",       "models/*",
};

static apr_array_header_t *enabled_all(apr_pool_t *p)
{
    apr_array_header_t *list = apr_array_make(p, 12, sizeof(const oaip_endpoint *));
    size_t i;

    for (i = 0; i < N_ELEMS(all_patterns); i++) {
        const oaip_endpoint *e = oaip_endpoint_find(all_patterns[i]);
        FUZZ_CHECK(e != NULL, "%s is not in the catalog", all_patterns[i]);
        APR_ARRAY_PUSH(list, const oaip_endpoint *) = e;
    }
    return list;
}

/* What the router should route: one leading and one trailing slash off. */
static const char *expected_path(apr_pool_t *p, const char *sub_path)
{
    char *path;
    size_t n;

    if (*sub_path == '/') {
        sub_path++;
    }
    path = apr_pstrdup(p, sub_path);
    n = strlen(path);
    if (n > 0 && path[n - 1] == '/') {
        path[--n] = '\0';
    }
    return n == 0 ? "chat/completions" : path;
}

static void check_routed(apr_pool_t *p, const char *sub_path, const oaip_endpoint *e,
                         const char *upstream_path)
{
    const char *seg;

    FUZZ_CHECK(strcmp(upstream_path, expected_path(p, sub_path)) == 0,
               "\"%s\" routed to \"%s\"", sub_path, upstream_path);
    FUZZ_CHECK(oaip_endpoint_pattern_matches(e->pattern, upstream_path),
               "\"%s\" routed to %s, which it does not match", upstream_path, e->pattern);
    FUZZ_CHECK(*upstream_path != '/' && strstr(upstream_path, "//") == NULL,
               "empty segment in \"%s\"", upstream_path);
    for (seg = upstream_path; seg != NULL;) {
        const char *slash = strchr(seg, '/');
        size_t n = slash ? (size_t)(slash - seg) : strlen(seg);
        size_t i;
        FUZZ_CHECK(!(n == 1 && seg[0] == '.') &&
                       !(n == 2 && seg[0] == '.' && seg[1] == '.'),
                   "dot segment in \"%s\"", upstream_path);
        for (i = 0; i < n; i++) {
            FUZZ_CHECK(apr_isalnum(seg[i]) || strchr("-_.:", seg[i]) != NULL,
                       "byte 0x%02x in routed path \"%s\"", (unsigned char)seg[i],
                       upstream_path);
        }
        seg = slash ? slash + 1 : NULL;
    }
}

static void check_query(apr_pool_t *p, const char *arg)
{
    const char *error = NULL, *encoded = oaip_query_param_encode(p, arg, &error);
    const char *eq = strchr(arg, '='), *c;
    char *decoded, *d;

    if (encoded == NULL) {
        FUZZ_CHECK(error != NULL && (eq == NULL || eq == arg), "\"%s\" refused", arg);
        return;
    }
    FUZZ_CHECK(eq != NULL && eq != arg, "\"%s\" accepted", arg);
    decoded = apr_palloc(p, strlen(encoded) + 1);
    for (c = encoded, d = decoded; *c; c++) {
        if (*c == '%') {
            FUZZ_CHECK(apr_isxdigit(c[1]) && apr_isxdigit(c[2]) && !apr_islower(c[1]) &&
                           !apr_islower(c[2]),
                       "bad escape in %s", encoded);
            *d++ = (char)((apr_isdigit(c[1]) ? c[1] - '0' : c[1] - 'A' + 10) * 16 +
                          (apr_isdigit(c[2]) ? c[2] - '0' : c[2] - 'A' + 10));
            c += 2;
        } else {
            FUZZ_CHECK(apr_isalnum(*c) || strchr("-._~=", *c) != NULL,
                       "byte 0x%02x unencoded in %s", (unsigned char)*c, encoded);
            *d++ = *c;
        }
    }
    *d = '\0';
    FUZZ_CHECK(strcmp(decoded, arg) == 0, "%s decodes to %s, not %s", encoded, decoded,
               arg);
    FUZZ_CHECK(strchr(strchr(encoded, '=') + 1, '=') == NULL, "a second = in %s",
               encoded);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p = fuzz_pool();
    char *text = fuzz_cstring(p, data, size), *newline = strchr(text, '\n');
    const char *query = "", *upstream_path = NULL, *url;
    const oaip_endpoint *e;
    apr_array_header_t *params = apr_array_make(p, 1, sizeof(const char *));

    if (newline != NULL) {
        *newline = '\0';
        query = newline + 1;
    }
    e = oaip_endpoint_route(p, enabled_all(p), text, &upstream_path);
    if (e != NULL) {
        check_routed(p, text, e, upstream_path);
        APR_ARRAY_PUSH(params, const char *) = "api-version=2024-10-21";
        url = oaip_upstream_url(p, "https://api.example.com/v1", upstream_path, params);
        FUZZ_CHECK(strncmp(url, "https://api.example.com/v1/", 27) == 0 &&
                       strchr(url, '?') == strrchr(url, '?'),
                   "upstream URL %s", url);
    }
    upstream_path = NULL;
    e = oaip_endpoint_route(p, NULL, text, &upstream_path);
    if (e != NULL) {
        FUZZ_CHECK((strcmp(e->pattern, "chat/completions") == 0 ||
                    strcmp(e->pattern, "responses") == 0) &&
                       strcmp(upstream_path, e->pattern) == 0,
                   "\"%s\" routed to %s without endpoints configured", text, e->pattern);
        check_routed(p, text, e, upstream_path);
    }
    check_query(p, query);
    return 0;
}
