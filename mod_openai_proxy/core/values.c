#include "core/values.h"

#include <apr_lib.h>
#include <apr_strings.h>
#include <stdlib.h>
#include <string.h>

#include "core/errors.h"

int oaip_value_size(const char *arg, apr_off_t max, apr_off_t *out)
{
    char *end;
    apr_off_t value;
    int shift;

    if (apr_strtoff(&value, arg, &end, 10) != APR_SUCCESS || end == arg || value <= 0) {
        return 0;
    }
    switch (apr_toupper(*end)) {
    case 'G':
        shift = 30;
        break;
    case 'M':
        shift = 20;
        break;
    case 'K':
        shift = 10;
        break;
    default:
        shift = 0;
        break;
    }
    end += shift != 0;
    /* compared before multiplying: "17179869185G" would overflow (undefined
     * behaviour; in practice it wrapped to exactly 1G and was accepted) */
    if (*end != '\0' || value > (max >> shift)) {
        return 0;
    }
    *out = value * ((apr_off_t)1 << shift);
    return 1;
}

int oaip_value_count(const char *arg, int max, int *out)
{
    char *end;
    long value = strtol(arg, &end, 10);

    if (end == arg || *end != '\0' || value < 1 || value > max) {
        return 0;
    }
    *out = (int)value;
    return 1;
}

int oaip_value_time_shape(const char *arg)
{
    static const char *const units[] = {"", "ms", "s", "min", "h"};
    const char *unit = arg;
    apr_size_t i;

    while (*unit >= '0' && *unit <= '9') {
        unit++;
    }
    if (unit == arg || unit - arg > 12) {
        return 0;
    }
    for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(unit, units[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

int oaip_value_error_format(const char *arg, int *out)
{
    if (strcasecmp(arg, "seed") == 0) {
        *out = OAIP_ERRFMT_WORKER;
    } else if (strcasecmp(arg, "openai") == 0) {
        *out = OAIP_ERRFMT_OPENAI;
    } else {
        return 0;
    }
    return 1;
}

oaip_key_source oaip_value_key_source(const char *arg, const char **ref)
{
    if (strncmp(arg, "env:", 4) == 0) {
        *ref = arg + 4;
        return OAIP_KEY_ENV;
    }
    if (strncmp(arg, "file:", 5) == 0) {
        *ref = arg + 5;
        return OAIP_KEY_FILE;
    }
    *ref = arg;
    return OAIP_KEY_LITERAL;
}

char *oaip_value_trim(char *s)
{
    char *end;

    while (apr_isspace(*s)) {
        s++;
    }
    end = s + strlen(s);
    while (end > s && apr_isspace(end[-1])) {
        *--end = '\0';
    }
    return s;
}

int oaip_value_model_pattern(const char *arg)
{
    const char *star = strchr(arg, '*');

    return star == NULL || star[1] == '\0';
}
