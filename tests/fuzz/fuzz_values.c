/* Fuzzes the directive value parsers: values.c (sizes, counts, Off,
 * error formats, key sources, trimming, model patterns) and
 * OpenAIProxyDefault's NAME VALUE (oaip_default_value_parse), whose result is
 * then used as a default of a request.
 *
 * Also OpenAIProxyRateLimit/TokenBudget (oaip_limit_parse, the counter key)
 * and OpenAIProxyCounterStore (oaip_store_spec_parse).
 *
 * Input: one directive value (up to the first NUL); for OpenAIProxyDefault
 * the name is the text before the first space and the value the rest, for a
 * limit the rate and the by= argument.
 *
 * Invariants: an accepted size or count is the number written (checked in
 * 128-bit arithmetic) and within its bounds, and every number within them is
 * accepted; a default's JSON is valid and becomes that field of a prepared
 * request, which stays valid JSON; a limit's amount and period are in range
 * and its counter key printable without spaces; a store's name for log lines
 * never holds its password. */
#include "fuzz.h"

#include <apr_lib.h>
#include <apr_strings.h>
#include <apr_tables.h>
#include <strings.h>

#include "core/errors.h"
#include "core/limit_spec.h"
#include "core/request.h"
#include "core/values.h"

#define ONE_G ((apr_off_t)1024 * 1024 * 1024)

/* What a decimal number with an optional sign and leading white space (as
 * strtol reads it) is worth, in a range no input can overflow; sets *rest. */
static __int128 reference_number(const char *s, const char **rest, int *digits)
{
    __int128 value = 0;
    int negative = 0;

    while (apr_isspace(*s)) {
        s++;
    }
    if (*s == '+' || *s == '-') {
        negative = *s++ == '-';
    }
    for (*digits = 0; apr_isdigit(*s); s++, (*digits)++) {
        if (value < ((__int128)1 << 80)) { /* times 2^30 stays in range */
            value = value * 10 + (*s - '0');
        }
    }
    *rest = s;
    return negative ? -value : value;
}

static void check_size(const char *arg)
{
    const char *rest;
    int digits;
    __int128 expect = reference_number(arg, &rest, &digits);
    int ok_ref = digits > 0;
    apr_off_t value = -7;
    int ok;

    if (ok_ref && *rest != '\0') {
        int shift = apr_toupper(*rest) == 'K'   ? 10
                    : apr_toupper(*rest) == 'M' ? 20
                    : apr_toupper(*rest) == 'G' ? 30
                                                : -1;
        ok_ref = shift > 0 && rest[1] == '\0';
        expect *= (__int128)1 << (shift > 0 ? shift : 0);
    }
    ok_ref = ok_ref && expect >= 1 && expect <= ONE_G;
    ok = oaip_value_size(arg, ONE_G, &value);
    FUZZ_CHECK(ok == ok_ref, "size \"%s\": %s, expected %s", arg,
               ok ? "accepted" : "refused", ok_ref ? "accepted" : "refused");
    if (ok) {
        FUZZ_CHECK(value == (apr_off_t)expect, "size \"%s\" read as %" APR_OFF_T_FMT, arg,
                   value);
    } else {
        FUZZ_CHECK(value == -7, "a refused size was stored");
    }
}

static void check_count(const char *arg, int max)
{
    const char *rest;
    int digits, value = -7;
    __int128 expect = reference_number(arg, &rest, &digits);
    int ok_ref = digits > 0 && *rest == '\0' && expect >= 1 && expect <= max;
    int ok = oaip_value_count(arg, max, &value);

    FUZZ_CHECK(ok == ok_ref, "count \"%s\" (max %d): %s", arg, max,
               ok ? "accepted" : "refused");
    FUZZ_CHECK(ok ? value == (int)expect : value == -7, "count \"%s\" read as %d", arg,
               value);
    /* a time is digits and one of the units; ap_timeout_parameter_parse
     * reads the number with strtoll, so at most 12 digits */
    ok = oaip_value_time_shape(arg);
    ok_ref =
        apr_isdigit(arg[0]) && digits > 0 && digits <= 12 &&
        (strcmp(rest, "") == 0 || strcmp(rest, "ms") == 0 || strcmp(rest, "s") == 0 ||
         strcmp(rest, "min") == 0 || strcmp(rest, "h") == 0);
    FUZZ_CHECK(ok == ok_ref, "time \"%s\": %s", arg, ok ? "accepted" : "refused");
}

static void check_words(apr_pool_t *p, const char *arg)
{
    int format = -7, n;
    const char *ref;
    oaip_key_source source = oaip_value_key_source(arg, &ref);
    char *copy = apr_pstrdup(p, arg), *trimmed = oaip_value_trim(copy);

    if (oaip_value_error_format(arg, &format)) {
        FUZZ_CHECK((format == OAIP_ERRFMT_WORKER && strcasecmp(arg, "seed") == 0) ||
                       (format == OAIP_ERRFMT_OPENAI && strcasecmp(arg, "openai") == 0),
                   "error format \"%s\" read as %d", arg, format);
    } else {
        FUZZ_CHECK(format == -7 && strcasecmp(arg, "seed") && strcasecmp(arg, "openai"),
                   "error format \"%s\"", arg);
    }
    n = source == OAIP_KEY_ENV ? 4 : source == OAIP_KEY_FILE ? 5 : 0;
    FUZZ_CHECK(ref == arg + n, "key source of \"%s\"", arg);
    FUZZ_CHECK((source == OAIP_KEY_ENV) == (strncmp(arg, "env:", 4) == 0) &&
                   (source == OAIP_KEY_FILE) == (strncmp(arg, "file:", 5) == 0),
               "key source kind of \"%s\"", arg);
    n = (int)strlen(trimmed);
    FUZZ_CHECK(trimmed >= copy && !apr_isspace(*trimmed) &&
                   (n == 0 || !apr_isspace(trimmed[n - 1])) &&
                   strstr(arg, trimmed) != NULL,
               "trim of \"%s\" is \"%s\"", arg, trimmed);
}

static void check_model(apr_pool_t *p, const char *arg)
{
    apr_array_header_t *allowed = apr_array_make(p, 1, sizeof(const char *));
    const char *star = strchr(arg, '*');

    APR_ARRAY_PUSH(allowed, const char *) = arg;
    if (!oaip_value_model_pattern(arg)) {
        FUZZ_CHECK(star != NULL && star[1] != '\0', "model pattern \"%s\" refused", arg);
        return;
    }
    if (star == NULL) {
        FUZZ_CHECK(oaip_model_allowed(allowed, arg), "\"%s\" does not allow itself", arg);
        FUZZ_CHECK(!oaip_model_allowed(allowed, apr_pstrcat(p, arg, "x", NULL)),
                   "\"%s\" allows more than itself", arg);
    } else {
        const char *prefix = apr_pstrndup(p, arg, (size_t)(star - arg));
        FUZZ_CHECK(oaip_model_allowed(allowed, apr_pstrcat(p, prefix, "-mini", NULL)),
                   "\"%s\" refuses a model it begins", arg);
        if (star != arg) { /* the prefix with another first byte */
            char *other = apr_pstrdup(p, prefix);
            other[0] = other[0] == 'a' ? 'b' : 'a';
            FUZZ_CHECK(!oaip_model_allowed(allowed, other),
                       "\"%s\" allows %s, which does not begin with it", arg, other);
        }
    }
    FUZZ_CHECK(!oaip_model_allowed(allowed, NULL), "a missing model allowed");
}

static void check_default(apr_pool_t *p, const char *arg)
{
    static const char body[] = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    const char *space = strchr(arg, ' '), *name, *value, *json = "unset", *err, *detail;
    apr_array_header_t *defaults = apr_array_make(p, 1, sizeof(oaip_default));
    oaip_json_request req;
    oaip_error_kind kind;
    json_t *parsed, *prepared;

    if (space == NULL) {
        return;
    }
    name = apr_pstrndup(p, arg, (size_t)(space - arg));
    value = space + 1;
    err = oaip_default_value_parse(p, name, value, &json);
    if (err != NULL) {
        FUZZ_CHECK(*err != '\0', "empty refusal");
        return;
    }
    FUZZ_CHECK(strcmp(name, "messages") != 0, "a default for messages accepted");
    if (json == NULL) {
        FUZZ_CHECK(strcmp(value, "none") == 0, "\"%s\" read as none", value);
    }
    oaip_defaults_set(defaults, name, json);
    FUZZ_CHECK(oaip_json_request_prepare_chat(p, body, sizeof(body) - 1, defaults, NULL,
                                              &req, &kind, &detail),
               "a valid request refused with the default %s %s", name, value);
    prepared = fuzz_json(req.body, req.body_len, JSON_REJECT_DUPLICATES);
    FUZZ_CHECK(json_is_object(prepared), "default %s %s makes invalid JSON: %s", name,
               value, req.body);
    if (json != NULL) {
        parsed = fuzz_json(json, strlen(json), 0);
        FUZZ_CHECK(parsed != NULL, "the default's JSON is invalid: %s", json);
        if (strcmp(name, "max_completion_tokens") != 0) {
            FUZZ_CHECK(json_equal(parsed, json_object_get(prepared, name)),
                       "default %s %s is not in the request", name, value);
        }
        json_decref(parsed);
    } else {
        FUZZ_CHECK(json_object_get(prepared, name) == NULL, "removed default %s is sent",
                   name);
    }
    json_decref(prepared);
}

/* OpenAIProxyRateLimit / OpenAIProxyTokenBudget values (limit_spec.c). */
static void check_limit(apr_pool_t *p, const char *arg)
{
    const char *space = strchr(arg, ' '), *rate = arg, *by = NULL, *key;
    oaip_limit limit;
    int suffix;

    if (space != NULL) {
        rate = apr_pstrndup(p, arg, (size_t)(space - arg));
        by = space + 1;
    }
    for (suffix = 0; suffix <= 1; suffix++) {
        if (oaip_limit_parse(p, rate, by, suffix, &limit) != NULL) {
            continue;
        }
        FUZZ_CHECK(limit.amount >= 1 && limit.amount <= OAIP_LIMIT_MAX_AMOUNT,
                   "amount %u from \"%s\"", (unsigned)limit.amount, rate);
        FUZZ_CHECK(limit.period >= 1 && limit.period <= OAIP_LIMIT_MAX_PERIOD,
                   "period %u from \"%s\"", (unsigned)limit.period, rate);
        FUZZ_CHECK(strchr(rate, '/') != NULL, "\"%s\" has no /", rate);
        FUZZ_CHECK(limit.by != OAIP_BY_HEADER || (limit.header && *limit.header),
                   "by=header without a name");
        FUZZ_CHECK(oaip_limit_seconds_left(&limit, apr_time_from_sec(1700000000)) >= 1 &&
                       oaip_limit_seconds_left(&limit, apr_time_from_sec(1700000000)) <=
                           limit.period,
                   "seconds left out of the window");
        key = oaip_limit_key(p, 'r', &limit,
                             oaip_limit_window(&limit, apr_time_from_sec(1700000000)),
                             arg, by ? by : "");
        for (; *key; key++) {
            FUZZ_CHECK((unsigned char)*key > 0x20 && (unsigned char)*key < 0x7f,
                       "byte 0x%02x in a counter key", (unsigned char)*key);
        }
    }
}

/* OpenAIProxyCounterStore values: the name for log lines never holds the
 * password. */
static void check_store(apr_pool_t *p, const char *arg)
{
    oaip_store_spec spec;

    if (oaip_store_spec_parse(p, arg, &spec) != NULL) {
        return;
    }
    FUZZ_CHECK(spec.name != NULL && strchr(spec.name, '@') == NULL,
               "store name %s may hold user info", spec.name ? spec.name : "(null)");
    if (spec.kind != OAIP_STORE_SHM) {
        const char *c;
        FUZZ_CHECK(spec.host != NULL && *spec.host && spec.port != 0, "store %s", arg);
        /* exactly scheme://host:port: no user info, and the host printable */
        FUZZ_CHECK(
            strcmp(spec.name,
                   apr_psprintf(p, "%s://%s:%u",
                                spec.kind == OAIP_STORE_REDIS ? "redis" : "memcache",
                                spec.host, (unsigned)spec.port)) == 0,
            "store name %s", spec.name);
        for (c = spec.host; *c; c++) {
            FUZZ_CHECK((unsigned char)*c > 0x20 && (unsigned char)*c < 0x7f,
                       "byte 0x%02x in the store host", (unsigned char)*c);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p = fuzz_pool();
    const char *arg = fuzz_cstring(p, data, size);

    check_size(arg);
    check_count(arg, 86400);
    check_count(arg, 100000000);
    check_words(p, arg);
    check_model(p, arg);
    check_default(p, arg);
    check_limit(p, arg);
    check_store(p, arg);
    return 0;
}
