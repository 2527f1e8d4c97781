#include "core/model_family.h"

#include <apr_lib.h>
#include <string.h>
#include <strings.h>

/* Where a version number ends: the name ends, or a suffix (-mini, -pro, a
 * date, a fine-tune's ":org", .1) follows. A letter would make it another
 * name ("o3x", "gpt-5o"), which the proxy does not know. */
static int ends_name_part(char c, int dot_allowed)
{
    return c == '\0' || c == '-' || c == ':' || (dot_allowed && c == '.');
}

/* "o" and a number: o1, o3, o4-mini, o3-2025-04-16 (never "omni-..."). */
static int is_o_series(const char *name)
{
    const char *s = name + 1;

    if (apr_tolower(name[0]) != 'o' || !apr_isdigit(*s)) {
        return 0;
    }
    while (apr_isdigit(*s)) {
        s++;
    }
    return ends_name_part(*s, 0);
}

/* "gpt-" and a major version of 5 or more: gpt-5, gpt-5-mini, gpt-5.1,
 * gpt-6 (never gpt-4o, gpt-4.1, gpt-oss). */
static int is_gpt_reasoning(const char *name)
{
    const char *s = name + 4;
    long major = 0;

    if (strncasecmp(name, "gpt-", 4) != 0 || !apr_isdigit(*s)) {
        return 0;
    }
    for (; apr_isdigit(*s); s++) {
        if (major < 1000) { /* enough to tell; no overflow */
            major = major * 10 + (*s - '0');
        }
    }
    return major >= 5 && ends_name_part(*s, 1);
}

oaip_model_family oaip_model_family_of(const char *model)
{
    const char *slash;

    if (model == NULL) {
        return OAIP_FAMILY_CHAT;
    }
    if (strncasecmp(model, "ft:", 3) == 0) {
        model += 3;
    }
    slash = strrchr(model, '/');
    if (slash != NULL) {
        model = slash + 1;
    }
    return is_o_series(model) || is_gpt_reasoning(model) ? OAIP_FAMILY_REASONING
                                                         : OAIP_FAMILY_CHAT;
}

const char *oaip_model_family_name(oaip_model_family family)
{
    return family == OAIP_FAMILY_REASONING ? "reasoning" : "chat";
}

const char *oaip_model_family_limit_field(oaip_model_family family)
{
    return family == OAIP_FAMILY_REASONING ? "max_completion_tokens" : "max_tokens";
}

int oaip_chat_limit_field(const char *name, const char **other)
{
    if (strcmp(name, "max_tokens") == 0) {
        *other = "max_completion_tokens";
        return 1;
    }
    if (strcmp(name, "max_completion_tokens") == 0) {
        *other = "max_tokens";
        return 1;
    }
    return 0;
}
