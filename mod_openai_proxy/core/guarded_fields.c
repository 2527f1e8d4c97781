#include "core/guarded_fields.h"

#include <apr_escape.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include <string.h>

/* Counts: a string, a float or a negative number is "no limit" to some
 * upstreams (llama.cpp takes -1 for unlimited; lenient parsers read "64"
 * or 1e9), so only whole numbers from 1 pass, as OpenAI itself demands. */
static const char *const count_fields[] = {"max_tokens", "max_completion_tokens",
                                           "max_output_tokens", "n", "best_of"};

/* Every top-level name a limit reads: a look-alike of any is refused. */
static const char *const guarded_names[] = {"max_tokens",        "max_completion_tokens",
                                            "max_output_tokens", "n",
                                            "best_of",           "stream",
                                            "stream_options",    "model"};

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* Folds one character of `s` (at *i) the way Go's encoding/json matches
 * keys (Unicode simple case folding): ASCII letters, and the two non-ASCII
 * characters that fold to ASCII ones, U+017F (long s) and U+212A (Kelvin).
 * Returns -1 for any other non-ASCII character: no guarded name has one. */
static int fold_next(const unsigned char *s, apr_size_t len, apr_size_t *i)
{
    if (s[*i] < 0x80) {
        return apr_tolower(s[(*i)++]);
    }
    if (*i + 1 < len && s[*i] == 0xC5 && s[*i + 1] == 0xBF) {
        *i += 2;
        return 's';
    }
    if (*i + 2 < len && s[*i] == 0xE2 && s[*i + 1] == 0x84 && s[*i + 2] == 0xAA) {
        *i += 3;
        return 'k';
    }
    return -1;
}

int oaip_guarded_lookalike(const char *key, apr_size_t key_len, const char *name)
{
    const unsigned char *s = (const unsigned char *)key;
    apr_size_t i = 0, n = 0, name_len = strlen(name);

    if (key_len == name_len && memcmp(key, name, name_len) == 0) {
        return 0;
    }
    while (i < key_len) {
        int c = fold_next(s, key_len, &i);
        if (c < 0 || n >= name_len || c != name[n]) {
            return 0;
        }
        n++;
    }
    return n == name_len;
}

static int refuse(apr_pool_t *p, oaip_error_kind *kind, const char **detail,
                  const char *fmt, const char *name)
{
    *kind = OAIP_ERR_BAD_REQUEST;
    *detail = apr_psprintf(p, fmt, name);
    return 0;
}

/* A key of `object` that folds to one of `names` without being it. */
static const char *lookalike_key(json_t *object, const char *const *names,
                                 apr_size_t count)
{
    const char *key;
    json_t *value;
    apr_size_t i;

    json_object_foreach(object, key, value)
    {
        (void)value;
        for (i = 0; i < count; i++) {
            if (oaip_guarded_lookalike(key, strlen(key), names[i])) {
                return key;
            }
        }
    }
    return NULL;
}

static int is_bool_or_null(json_t *v)
{
    return v == NULL || json_is_boolean(v) || json_is_null(v);
}

static int check_stream_options(apr_pool_t *p, json_t *options, oaip_error_kind *kind,
                                const char **detail)
{
    static const char *const inner[] = {"include_usage"};
    const char *key;

    if (options == NULL || json_is_null(options)) {
        return 1;
    }
    if (!json_is_object(options)) {
        return refuse(p, kind, detail, "%s must be an object or null", "stream_options");
    }
    if (!is_bool_or_null(json_object_get(options, "include_usage"))) {
        return refuse(p, kind, detail, "%s must be a boolean",
                      "stream_options.include_usage");
    }
    if ((key = lookalike_key(options, inner, N_ELEMS(inner))) != NULL) {
        return refuse(p, kind, detail,
                      "Unrecognized parameter stream_options.%s (did you mean "
                      "include_usage?)",
                      apr_pescape_echo(p, key, 0));
    }
    return 1;
}

int oaip_guarded_fields_check(apr_pool_t *p, json_t *object, oaip_error_kind *kind,
                              const char **detail)
{
    const char *key;
    apr_size_t i;

    for (i = 0; i < N_ELEMS(count_fields); i++) {
        json_t *v = json_object_get(object, count_fields[i]);
        if (v != NULL && !json_is_null(v) &&
            !(json_is_integer(v) && json_integer_value(v) >= 1)) {
            return refuse(p, kind, detail, "%s must be an integer of at least 1 or null",
                          count_fields[i]);
        }
    }
    if (!is_bool_or_null(json_object_get(object, "stream"))) {
        return refuse(p, kind, detail, "%s must be a boolean", "stream");
    }
    if (!check_stream_options(p, json_object_get(object, "stream_options"), kind,
                              detail)) {
        return 0;
    }
    if ((key = lookalike_key(object, guarded_names, N_ELEMS(guarded_names))) != NULL) {
        return refuse(p, kind, detail,
                      "Unrecognized parameter %s (parameter names are case-sensitive)",
                      apr_pescape_echo(p, key, 0));
    }
    return 1;
}
