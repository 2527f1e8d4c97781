/* The URL of an upstream request: the configured base, the endpoint's
 * path and OpenAIProxyUpstreamQuery's parameters (core: APR only). */
#ifndef OAIP_UPSTREAM_URL_H
#define OAIP_UPSTREAM_URL_H

#include <apr_pools.h>
#include <apr_tables.h>

/* Parses an OpenAIProxyUpstreamQuery "name=value" into its percent-encoded
 * form (RFC 3986 unreserved characters stay). Returns NULL and sets *error
 * when it is no such pair. */
const char *oaip_query_param_encode(apr_pool_t *p, const char *arg, const char **error);

/* base + "/" + path, then "?" and the encoded parameters joined by "&"
 * (`query`: const char *, may be NULL or empty). The client's own query
 * string is never part of it. */
const char *oaip_upstream_url(apr_pool_t *p, const char *base, const char *path,
                              const apr_array_header_t *query);

#endif
