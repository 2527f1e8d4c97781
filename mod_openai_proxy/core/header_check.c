#include "core/header_check.h"

#include <apr_strings.h>
#include <string.h>
#include <strings.h>

int oaip_is_tchar(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

int oaip_header_is_passed(const char *name, apr_size_t len)
{
    static const char *const exact[] = {"x-request-id",   "openai-processing-ms",
                                        "openai-version", "retry-after",
                                        "retry-after-ms", "x-should-retry"};
    apr_size_t i;

    if (len > 12 && strncasecmp(name, "x-ratelimit-", 12) == 0) {
        return 1;
    }
    for (i = 0; i < sizeof(exact) / sizeof(exact[0]); i++) {
        if (strlen(exact[i]) == len && strncasecmp(name, exact[i], len) == 0) {
            return 1;
        }
    }
    return 0;
}

int oaip_header_name_valid(const char *name, apr_size_t len)
{
    apr_size_t i;

    if (len == 0) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        if (!oaip_is_tchar(name[i])) {
            return 0;
        }
    }
    return 1;
}

int oaip_header_value_valid(const char *value, apr_size_t len)
{
    apr_size_t i;

    if (len > OAIP_MAX_UPSTREAM_HEADER_VALUE) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)value[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return 0;
        }
    }
    return 1;
}

int oaip_header_line_is_fold(const char *line, apr_size_t len)
{
    return len > 0 && (line[0] == ' ' || line[0] == '\t');
}

int oaip_header_value_visible(const char *value)
{
    for (; *value; value++) {
        if ((unsigned char)*value <= 0x20 || (unsigned char)*value >= 0x7f) {
            return 0;
        }
    }
    return 1;
}

const char *oaip_auth_header_line(apr_pool_t *p, const char *header_name, const char *key)
{
    if (header_name == NULL || *header_name == '\0') {
        return apr_pstrcat(p, "Authorization: Bearer ", key, NULL);
    }
    return apr_pstrcat(p, header_name, ": ", key, NULL);
}
