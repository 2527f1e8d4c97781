/* Rate limits and token budgets as written in the configuration, and the
 * counter keys of their time windows (core: APR + apr-util only). */
#ifndef OAIP_LIMIT_SPEC_H
#define OAIP_LIMIT_SPEC_H

#include <apr_pools.h>
#include <apr_network_io.h>
#include <apr_time.h>

/* Who a limit counts for. */
typedef enum {
    OAIP_BY_DEFAULT, /* the authenticated user if any, else the client IP */
    OAIP_BY_IP,
    OAIP_BY_USER, /* r->user; callers without one are counted by IP */
    OAIP_BY_HEADER
} oaip_caller_kind;

/* Counters never go above what apr_redis/apr_memcache increments hold. */
#define OAIP_LIMIT_MAX_AMOUNT 4000000000u
#define OAIP_LIMIT_MAX_PERIOD (366 * 86400)

typedef struct {
    apr_uint32_t amount; /* requests or tokens per period */
    apr_uint32_t period; /* seconds; windows start at multiples of it since the epoch */
    oaip_caller_kind by;
    const char *header; /* OAIP_BY_HEADER: the header's name */
} oaip_limit;

/* Parses "N/PERIOD" (PERIOD: [count]s|m|h|d, e.g. 60/m, 1000/10m, 100k/d for
 * tokens when `allow_suffix`) and an optional "by=ip|user|header:NAME"
 * (`by` may be NULL). Returns NULL, or the reason the value is wrong. */
const char *oaip_limit_parse(apr_pool_t *p, const char *rate, const char *by,
                             int allow_suffix, oaip_limit *out);

/* The window `now` falls into, and the whole seconds until it ends (>= 1). */
apr_int64_t oaip_limit_window(const oaip_limit *limit, apr_time_t now);
apr_uint32_t oaip_limit_seconds_left(const oaip_limit *limit, apr_time_t now);

/* The counter key of one caller in one window of one limit: short, printable
 * and free of spaces (memcache keys), whatever `scope` and `caller` hold:
 * "oaip:<kind>:<period>:<window>:<sha1 of scope and caller>". */
const char *oaip_limit_key(apr_pool_t *p, char kind, const oaip_limit *limit,
                           apr_int64_t window, const char *scope, const char *caller);

/* Where the counters live: OpenAIProxyCounterStore. */
typedef enum { OAIP_STORE_SHM, OAIP_STORE_REDIS, OAIP_STORE_MEMCACHE } oaip_store_kind;

typedef struct {
    oaip_store_kind kind;
    const char *host; /* redis, memcache */
    apr_port_t port;
    const char *password; /* redis AUTH; NULL: none. Never logged. */
    const char *name;     /* for log lines: the value without the password */
    const char *user;     /* redis ACL user (AUTH user password); NULL: default */
    int tls;              /* rediss:// */
    int db;               /* redis SELECT; 0: the default database */
    /* rediss://: the CA file its certificate is checked against; NULL: the
     * system's. Not in the value: OpenAIProxyCounterStoreCAFile. */
    const char *ca_file;
} oaip_store_spec;

/* Parses "shm", "redis[s]://[[user]:password@]host[:port][/db]" or
 * "memcache://host[:port]". Returns NULL, or the reason the value is wrong
 * (without the password). */
const char *oaip_store_spec_parse(apr_pool_t *p, const char *arg, oaip_store_spec *out);

#endif
