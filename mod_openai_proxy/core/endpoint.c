#include "core/endpoint.h"

#include <apr_lib.h>
#include <apr_strings.h>
#include <string.h>

/* What the proxy knows of the OpenAI API: the method and body of each
 * endpoint. Client query strings are not forwarded, so list endpoints that
 * need them (pagination of files, batches) are not here. */
static const oaip_endpoint catalog[] = {
    {"chat/completions", 1, OAIP_BODY_CHAT, 1, "max_tokens", 1, OAIP_SSE_ERRORS_CHAT},
    {"completions", 1, OAIP_BODY_JSON, 1, "max_tokens", 1, OAIP_SSE_ERRORS_CHAT},
    /* its stream reports usage in response.completed, unasked; its errors
     * are events of their own type */
    {"responses", 1, OAIP_BODY_JSON, 1, "max_output_tokens", 0,
     OAIP_SSE_ERRORS_RESPONSES},
    {"embeddings", 1, OAIP_BODY_JSON, 0, NULL, 0, OAIP_SSE_ERRORS_CHAT},
    {"moderations", 1, OAIP_BODY_JSON, 0, NULL, 0, OAIP_SSE_ERRORS_CHAT},
    {"images/generations", 1, OAIP_BODY_JSON, 0, NULL, 0, OAIP_SSE_ERRORS_CHAT},
    {"images/edits", 1, OAIP_BODY_MULTIPART, 0, NULL, 0, OAIP_SSE_ERRORS_CHAT},
    {"audio/speech", 1, OAIP_BODY_JSON, 0, NULL, 0, OAIP_SSE_ERRORS_CHAT},
    {"audio/transcriptions", 1, OAIP_BODY_MULTIPART, 0, NULL, 0, OAIP_SSE_ERRORS_CHAT},
    {"audio/translations", 1, OAIP_BODY_MULTIPART, 0, NULL, 0, OAIP_SSE_ERRORS_CHAT},
    {"models", 0, OAIP_BODY_NONE, 0, NULL, 0, OAIP_SSE_ERRORS_CHAT},
    {"models/*", 0, OAIP_BODY_NONE, 0, NULL, 0, OAIP_SSE_ERRORS_CHAT},
};

#define CATALOG_SIZE (sizeof(catalog) / sizeof(catalog[0]))

/* OAIP_DEFAULT_ENDPOINTS, one by one */
static const char *const default_endpoints[] = {"chat/completions", "responses"};

#define MAX_SEGMENT 256

const oaip_endpoint *oaip_endpoint_find(const char *pattern)
{
    apr_size_t i;

    for (i = 0; i < CATALOG_SIZE; i++) {
        if (strcmp(catalog[i].pattern, pattern) == 0) {
            return &catalog[i];
        }
    }
    return NULL;
}

const char *oaip_endpoint_known_list(apr_pool_t *p)
{
    const char *list = catalog[0].pattern;
    apr_size_t i;

    for (i = 1; i < CATALOG_SIZE; i++) {
        list = apr_pstrcat(p, list, ", ", catalog[i].pattern, NULL);
    }
    return list;
}

/* A model id or similar name: never a path of its own ("..", "a/b"), never
 * an encoded character that the upstream would decode ("%2F"). */
static int is_safe_segment(const char *s)
{
    apr_size_t n = 0;
    int only_dots = 1;

    for (; s[n]; n++) {
        if (!apr_isalnum(s[n]) && strchr("-_.:", s[n]) == NULL) {
            return 0;
        }
        only_dots &= (s[n] == '.');
    }
    return n > 0 && n <= MAX_SEGMENT && !only_dots;
}

int oaip_endpoint_path_is_location(const char *sub_path)
{
    return sub_path[0] == '\0' || strcmp(sub_path, "/") == 0;
}

int oaip_endpoint_pattern_matches(const char *pattern, const char *path)
{
    apr_size_t n = strlen(pattern);

    if (n >= 2 && strcmp(pattern + n - 2, "/*") == 0) {
        return strncmp(path, pattern, n - 1) == 0 && is_safe_segment(path + n - 1);
    }
    return strcmp(pattern, path) == 0;
}

const oaip_endpoint *oaip_endpoint_route(apr_pool_t *p, const apr_array_header_t *enabled,
                                         const char *sub_path, const char **upstream_path)
{
    apr_size_t len;
    char *path;
    int i;

    if (*sub_path == '/') {
        sub_path++;
    }
    path = apr_pstrdup(p, sub_path);
    len = strlen(path);
    if (len > 0 && path[len - 1] == '/') {
        path[--len] = '\0';
    }
    if (len == 0) {
        /* the Location itself is the chat endpoint, as before endpoints
         * could be chosen (an SDK's baseURL may end there) */
        path = OAIP_DEFAULT_ENDPOINT;
    }
    if (enabled == NULL) {
        apr_size_t d;
        *upstream_path = path;
        for (d = 0; d < sizeof(default_endpoints) / sizeof(default_endpoints[0]); d++) {
            if (strcmp(default_endpoints[d], path) == 0) {
                return oaip_endpoint_find(path);
            }
        }
        return NULL;
    }
    for (i = 0; i < enabled->nelts; i++) {
        const oaip_endpoint *e = APR_ARRAY_IDX(enabled, i, const oaip_endpoint *);
        if (oaip_endpoint_pattern_matches(e->pattern, path)) {
            *upstream_path = path;
            return e;
        }
    }
    return NULL;
}
