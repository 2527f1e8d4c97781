#include "core/limit_spec.h"

#include <apr_escape.h>
#include <apr_lib.h>
#include <apr_sha1.h>
#include <apr_strings.h>
#include <apr_uri.h>

#include "core/header_check.h"

/* A decimal count, optionally followed by k or M when `allow_suffix`;
 * `*end` is left after what was read. 0 when there is no number or it is
 * too big. */
static apr_uint64_t parse_amount(const char *s, int allow_suffix, const char **end)
{
    apr_uint64_t n = 0;
    const char *c = s;

    while (apr_isdigit(*c)) {
        n = n * 10 + (apr_uint64_t)(*c - '0');
        if (n > OAIP_LIMIT_MAX_AMOUNT) {
            return 0;
        }
        c++;
    }
    if (c == s) {
        return 0;
    }
    if (allow_suffix && (*c == 'k' || *c == 'K')) {
        n *= 1000;
        c++;
    } else if (allow_suffix && *c == 'M') {
        n *= 1000000;
        c++;
    }
    *end = c;
    return n > OAIP_LIMIT_MAX_AMOUNT ? 0 : n;
}

static apr_uint32_t unit_seconds(const char *unit)
{
    if (strcmp(unit, "s") == 0) {
        return 1;
    }
    if (strcmp(unit, "m") == 0) {
        return 60;
    }
    if (strcmp(unit, "h") == 0) {
        return 3600;
    }
    if (strcmp(unit, "d") == 0) {
        return 86400;
    }
    return 0;
}

static const char *parse_period(const char *s, apr_uint32_t *period)
{
    apr_uint64_t count = 1;
    apr_uint32_t unit;

    if (apr_isdigit(*s)) {
        count = parse_amount(s, 0, &s);
        if (count == 0) {
            return "the period's count must be a positive number";
        }
    }
    unit = unit_seconds(s);
    if (unit == 0) {
        return "the period must end in s, m, h or d (e.g. 60/m, 1000/10m)";
    }
    if (count * unit > OAIP_LIMIT_MAX_PERIOD) {
        return "the period must not exceed 366 days";
    }
    *period = (apr_uint32_t)(count * unit);
    return NULL;
}

static const char *parse_by(apr_pool_t *p, const char *by, oaip_limit *out)
{
    const char *name;

    if (by == NULL) {
        out->by = OAIP_BY_DEFAULT;
        return NULL;
    }
    if (strcmp(by, "by=ip") == 0) {
        out->by = OAIP_BY_IP;
        return NULL;
    }
    if (strcmp(by, "by=user") == 0) {
        out->by = OAIP_BY_USER;
        return NULL;
    }
    if (strncmp(by, "by=header:", 10) == 0 && by[10] != '\0') {
        for (name = by + 10; *name; name++) {
            if (!oaip_is_tchar(*name)) {
                return "by=header:NAME needs a header name (letters, digits, '-')";
            }
        }
        out->by = OAIP_BY_HEADER;
        out->header = apr_pstrdup(p, by + 10);
        return NULL;
    }
    return "the caller must be by=ip, by=user or by=header:NAME";
}

const char *oaip_limit_parse(apr_pool_t *p, const char *rate, const char *by,
                             int allow_suffix, oaip_limit *out)
{
    const char *rest = rate;
    apr_uint64_t amount;

    memset(out, 0, sizeof(*out));
    amount = parse_amount(rate, allow_suffix, &rest);
    if (amount == 0) {
        return apr_psprintf(p, "the amount must be a number from 1 to %u",
                            OAIP_LIMIT_MAX_AMOUNT);
    }
    if (*rest != '/') {
        return "expected N/PERIOD, e.g. 60/m";
    }
    out->amount = (apr_uint32_t)amount;
    const char *err = parse_period(rest + 1, &out->period);
    return err ? err : parse_by(p, by, out);
}

apr_int64_t oaip_limit_window(const oaip_limit *limit, apr_time_t now)
{
    return (apr_int64_t)apr_time_sec(now) / limit->period;
}

apr_uint32_t oaip_limit_seconds_left(const oaip_limit *limit, apr_time_t now)
{
    apr_int64_t sec = (apr_int64_t)apr_time_sec(now);

    return limit->period - (apr_uint32_t)(sec % limit->period);
}

const char *oaip_limit_key(apr_pool_t *p, char kind, const oaip_limit *limit,
                           apr_int64_t window, const char *scope, const char *caller)
{
    unsigned char digest[APR_SHA1_DIGESTSIZE];
    apr_sha1_ctx_t sha;

    /* the NUL between the two keeps "a"+"bc" apart from "ab"+"c" */
    apr_sha1_init(&sha);
    apr_sha1_update_binary(&sha, (const unsigned char *)scope, strlen(scope) + 1);
    apr_sha1_update_binary(&sha, (const unsigned char *)caller, strlen(caller));
    apr_sha1_final(digest, &sha);
    return apr_psprintf(p, "oaip:%c:%u:%" APR_INT64_T_FMT ":%s", kind, limit->period,
                        window, apr_pescape_hex(p, digest, sizeof(digest), 0));
}

/* A host name or address (IPv6 without its brackets): apr_uri_parse lets
 * white space and control bytes through, which would reach log lines. */
static int is_host_name(const char *s)
{
    for (; *s; s++) {
        if (!apr_isalnum(*s) && strchr("-._:%", *s) == NULL) {
            return 0;
        }
    }
    return 1;
}

/* A database number of redis://host/N: digits only, at most 6 of them. */
static int parse_db(const char *path, int *db)
{
    const char *digits = path + 1;
    size_t n = strlen(digits);

    if (n == 0) {
        return 1; /* "/": the default */
    }
    if (n > 6 || strspn(digits, "0123456789") != n) {
        return 0;
    }
    *db = (int)apr_atoi64(digits);
    return 1;
}

#define STORE_SYNTAX                                                                     \
    "expected redis://[:password@]host[:port][/db], "                                    \
    "redis://user:password@host[:port][/db], "                                           \
    "the same with rediss:// (TLS), or memcache://host[:port]"

const char *oaip_store_spec_parse(apr_pool_t *p, const char *arg, oaip_store_spec *out)
{
    apr_uri_t uri;
    int redis, tls = 0;

    memset(out, 0, sizeof(*out));
    if (strcmp(arg, "shm") == 0) {
        out->kind = OAIP_STORE_SHM;
        out->name = "shm";
        return NULL;
    }
    redis = strncmp(arg, "redis://", 8) == 0 || (tls = strncmp(arg, "rediss://", 9) == 0);
    if (!redis && strncmp(arg, "memcache://", 11) != 0) {
        return "expected shm, redis://host:port, rediss://host:port or "
               "memcache://host:port";
    }
    if (apr_uri_parse(p, arg, &uri) != APR_SUCCESS || uri.hostname == NULL ||
        *uri.hostname == '\0' || !is_host_name(uri.hostname) || uri.query != NULL ||
        uri.fragment != NULL ||
        (uri.port_str && (uri.port == 0 || strlen(uri.port_str) > 5 ||
                          apr_atoi64(uri.port_str) > 65535))) {
        return STORE_SYNTAX;
    }
    if (uri.path != NULL && *uri.path != '\0' &&
        (!redis || !parse_db(uri.path, &out->db))) {
        return redis ? "the database of redis://host:port/db is a number, e.g. /0"
                     : STORE_SYNTAX;
    }
    if (!redis && (uri.user != NULL || uri.password != NULL)) {
        return "memcache:// takes no user or password";
    }
    if (uri.user != NULL && *uri.user != '\0' &&
        (uri.password == NULL || !*uri.password)) {
        return "a redis user needs a password: redis://user:password@host";
    }
    if (uri.user != NULL &&
        strspn(uri.user, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                         "0123456789-._") != strlen(uri.user)) {
        return "a redis user name is letters, digits and -._ only";
    }
    out->kind = redis ? OAIP_STORE_REDIS : OAIP_STORE_MEMCACHE;
    out->tls = tls;
    out->host = uri.hostname;
    out->port = uri.port_str ? uri.port : (redis ? 6379 : 11211);
    out->password = uri.password && *uri.password ? uri.password : NULL;
    out->user = uri.user && *uri.user ? uri.user : NULL;
    out->name = apr_psprintf(
        p, "%s://%s%s%s:%u%s", redis ? (tls ? "rediss" : "redis") : "memcache",
        out->user ? out->user : "", out->user ? "@" : "", out->host, (unsigned)out->port,
        out->db ? apr_psprintf(p, "/%d", out->db) : "");
    return NULL;
}
