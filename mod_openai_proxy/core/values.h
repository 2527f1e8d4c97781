/* Directive values that need no httpd: sizes, counts, seconds, formats, key
 * sources and model patterns (core: APR only). config.c turns a refusal into
 * the config error that names the directive; the fuzz and unit tests call
 * these directly. */
#ifndef OAIP_VALUES_H
#define OAIP_VALUES_H

#include <apr.h>

/* BYTES with an optional K, M or G suffix (powers of 1024, either case), from
 * 1 to `max`. Returns 1 and sets *out, or 0. */
int oaip_value_size(const char *arg, apr_off_t max, apr_off_t *out);

/* A whole number from 1 to `max`. Returns 1 and sets *out, or 0. */
int oaip_value_count(const char *arg, int max, int *out);

/* Whether `arg` is written as httpd's time values are: digits, then no unit
 * (seconds) or one of ms, s, min, h (what ap_timeout_parameter_parse reads;
 * it would take "5sausages" for 5 s and "soon" for 0 s). */
int oaip_value_time_shape(const char *arg);

/* "seed" or "openai" (any case) as an oaip_error_format. */
int oaip_value_error_format(const char *arg, int *out);

typedef enum {
    OAIP_KEY_LITERAL, /* the value is the key */
    OAIP_KEY_ENV,     /* env:VARIABLE */
    OAIP_KEY_FILE     /* file:/path */
} oaip_key_source;

/* Where an OpenAIProxyAPIKey value says the key is; *ref is the key itself,
 * the variable's name or the file's path (a suffix of `arg`). */
oaip_key_source oaip_value_key_source(const char *arg, const char **ref);

/* Removes leading and trailing white space in place (a key read from a file
 * or the environment often ends with a newline). Returns the new start. */
char *oaip_value_trim(char *s);

/* Whether an OpenAIProxyAllowModels entry is well-formed: a '*' may only end
 * it. */
int oaip_value_model_pattern(const char *arg);

#endif
