/* Which upstream response header fields may be copied into the client's
 * response (core: APR + standard C only). httpd's header filter answers
 * with its own HTML 500, without the proxy's CORS headers, for a value with
 * a control byte; a header line that libcurl hands over with a bare CR, a
 * NUL, or as an obs-fold continuation is no value to relay either. */
#ifndef OAIP_HEADER_CHECK_H
#define OAIP_HEADER_CHECK_H

#include <apr_pools.h>

/* Longer values are dropped: no header the proxy passes needs more. */
#define OAIP_MAX_UPSTREAM_HEADER_VALUE 8192

/* An RFC 9110 token character: what a header field name (or a token in a
 * header value) may contain. */
int oaip_is_tchar(char c);

/* Whether the upstream's response header `name` (`len` bytes, any case) is
 * passed to the client: x-request-id, openai-processing-ms, openai-version,
 * retry-after, retry-after-ms and x-should-retry (which the SDKs' retries
 * obey) and the x-ratelimit-* family. */
int oaip_header_is_passed(const char *name, apr_size_t len);

/* Access-Control-Expose-Headers for the passed headers (lower case). */
#define OAIP_EXPOSED_HEADERS                                                             \
    "x-request-id, openai-processing-ms, openai-version, x-ratelimit-limit-requests, "   \
    "x-ratelimit-limit-tokens, x-ratelimit-remaining-requests, "                         \
    "x-ratelimit-remaining-tokens, x-ratelimit-reset-requests, "                         \
    "x-ratelimit-reset-tokens, retry-after, retry-after-ms, x-should-retry"

/* A token (RFC 9110 field-name) of 1 byte or more. */
int oaip_header_name_valid(const char *name, apr_size_t len);

/* At most OAIP_MAX_UPSTREAM_HEADER_VALUE bytes of visible ASCII, SP, HT
 * and obs-text (0x80-0xff): no CR, LF, NUL or other control byte. */
int oaip_header_value_valid(const char *value, apr_size_t len);

/* Whether a header line as libcurl hands it over continues the previous
 * one (obs-fold: it starts with SP or HT). */
int oaip_header_line_is_fold(const char *line, apr_size_t len);

/* Whether a value (a key, a URL) may go into an upstream request header
 * whole: visible ASCII only, since anything else could split or fold it. */
int oaip_header_value_visible(const char *value);

/* The header line that carries `key`: "Authorization: Bearer KEY", or
 * "NAME: KEY" for OpenAIProxyUpstreamAuth header:NAME (`header_name`; NULL
 * or "" for bearer). */
const char *oaip_auth_header_line(apr_pool_t *p, const char *header_name,
                                  const char *key);

#endif
