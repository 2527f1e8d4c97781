/* The API endpoints a Location may reach (OpenAIProxyEndpoints), request
 * routing below the Location, and the upstream URL (core: APR only). */
#ifndef OAIP_ENDPOINT_H
#define OAIP_ENDPOINT_H

#include <apr_pools.h>
#include <apr_tables.h>

#include "core/errors.h"

/* What a request to an endpoint carries, and so how the proxy treats it. */
typedef enum {
    OAIP_BODY_CHAT,      /* Chat Completions JSON: validated, defaults, caps, usage */
    OAIP_BODY_JSON,      /* any JSON object; its model is noted and checked */
    OAIP_BODY_MULTIPART, /* multipart/form-data, forwarded byte for byte */
    OAIP_BODY_NONE       /* a GET: no body */
} oaip_body_kind;

typedef struct {
    const char *pattern; /* "embeddings"; a last segment "*" is one path segment */
    int post;            /* 1: POST; 0: GET (and HEAD) */
    oaip_body_kind body;
    int streams; /* a JSON "stream": true asks for an event stream */
    /* the token limit OpenAIProxyMaxTokens writes when the body names none
     * (NULL: the endpoint generates no tokens to cap) */
    const char *limit_field;
    int asks_usage; /* a stream's usage comes only with stream_options.include_usage */
    /* the shape of the SSE error events the proxy writes into its streams */
    oaip_sse_error_shape error_events;
} oaip_endpoint;

/* The endpoint the proxy knows by this pattern, or NULL. Only known
 * endpoints can be enabled: the proxy must know their method and body. */
const oaip_endpoint *oaip_endpoint_find(const char *pattern);

/* "chat/completions, completions, ..." for configuration errors. */
const char *oaip_endpoint_known_list(apr_pool_t *p);

/* The endpoint of the Location itself (the Worker's one URL, and an SDK's
 * baseURL + /chat/completions). */
#define OAIP_DEFAULT_ENDPOINT "chat/completions"

/* The endpoints of a Location without OpenAIProxyEndpoints: chat, and the
 * Responses API that SDKs default to (the Vercel AI SDK's openai(model)). */
#define OAIP_DEFAULT_ENDPOINTS "chat/completions responses"

/* Whether `sub_path`, the path below the Location, is the Location itself
 * ("" or "/"), where the Worker's own clients call, rather than an API path
 * below it, where SDKs call (their baseURL + /chat/completions, /models). */
int oaip_endpoint_path_is_location(const char *sub_path);

/* Whether `path` (no leading or trailing slash) matches `pattern`: equal,
 * or for a pattern ending in a "*" segment, its prefix and one segment of safe characters
 * (letters, digits, '-', '_', '.', ':'; not only dots; at most 256). */
int oaip_endpoint_pattern_matches(const char *pattern, const char *path);

/* Routes `sub_path`, the decoded request path below the Location ("",
 * "/embeddings", "/models/gpt-4o/"; one leading and one trailing slash are
 * ignored; "" is chat/completions), among `enabled` (const oaip_endpoint *;
 * NULL: OAIP_DEFAULT_ENDPOINTS). Sets *upstream_path to the path to append
 * to the upstream base. Returns NULL when no enabled endpoint matches. */
const oaip_endpoint *oaip_endpoint_route(apr_pool_t *p, const apr_array_header_t *enabled,
                                         const char *sub_path,
                                         const char **upstream_path);

#endif
