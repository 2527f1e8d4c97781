#include "core/endpoint.h"

#include <apr_lib.h>
#include <apr_strings.h>
#include <string.h>

/* What the proxy knows of the OpenAI API: the method and body of each
 * endpoint. Client query strings are not forwarded, so list endpoints that
 * need them (pagination of files, batches) are not here. */
static const oaip_endpoint catalog[] = {
    {"chat/completions", 1, OAIP_BODY_CHAT, 1, "max_tokens", 1},
    {"completions", 1, OAIP_BODY_JSON, 1, "max_tokens", 1},
    /* its stream reports usage in response.completed, unasked */
    {"responses", 1, OAIP_BODY_JSON, 1, "max_output_tokens", 0},
    {"embeddings", 1, OAIP_BODY_JSON, 0, NULL, 0},
    {"moderations", 1, OAIP_BODY_JSON, 0, NULL, 0},
    {"images/generations", 1, OAIP_BODY_JSON, 0, NULL, 0},
    {"images/edits", 1, OAIP_BODY_MULTIPART, 0, NULL, 0},
    {"audio/speech", 1, OAIP_BODY_JSON, 0, NULL, 0},
    {"audio/transcriptions", 1, OAIP_BODY_MULTIPART, 0, NULL, 0},
    {"audio/translations", 1, OAIP_BODY_MULTIPART, 0, NULL, 0},
    {"models", 0, OAIP_BODY_NONE, 0, NULL, 0},
    {"models/*", 0, OAIP_BODY_NONE, 0, NULL, 0},
};

#define CATALOG_SIZE (sizeof(catalog) / sizeof(catalog[0]))
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
        *upstream_path = path;
        return strcmp(path, OAIP_DEFAULT_ENDPOINT) == 0
                   ? oaip_endpoint_find(OAIP_DEFAULT_ENDPOINT)
                   : NULL;
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
