/* CORS origin matching and header values (core: APR only). */
#ifndef OAIP_CORS_H
#define OAIP_CORS_H

#include <apr_pools.h>
#include <apr_tables.h>

/* One entry of OpenAIProxyAllowOrigin. */
typedef struct {
    int any;            /* "*" */
    const char *scheme; /* lower case */
    const char *host;   /* lower case; for a wildcard the suffix after "*." */
    int wildcard_host;  /* host given as "*.example.com": subdomains only, not the apex */
    int port;           /* explicit or the scheme's default; 0 when neither */
} oaip_origin_rule;

/* Parses an OpenAIProxyAllowOrigin value. Returns NULL on success, else a
 * sentence saying what is wrong (for the config error). */
const char *oaip_origin_rule_parse(apr_pool_t *p, const char *text,
                                   oaip_origin_rule *out);

/* Whether the request's Origin header value is allowed by `rules` (an array of
 * oaip_origin_rule). A malformed origin, "null" included, never matches
 * anything but "*". */
int oaip_origin_allowed(const apr_array_header_t *rules, const char *origin);

/* Whether `rules` contains "*". */
int oaip_origin_rules_any(const apr_array_header_t *rules);

/* The value of Access-Control-Allow-Headers for a preflight: the headers the
 * proxy always accepts plus every well-formed name in `requested` (the
 * preflight's Access-Control-Request-Headers, may be NULL), without duplicates. */
const char *oaip_cors_allow_headers(apr_pool_t *p, const char *requested);

#define OAIP_CORS_MAX_AGE "86400"

#endif
