/* OpenAIProxyModelAlias: a model name the client uses, and the name the
 * upstream is sent instead (core: APR + jansson). */
#ifndef OAIP_MODEL_ALIAS_H
#define OAIP_MODEL_ALIAS_H

#include <apr_pools.h>
#include <apr_tables.h>

typedef struct {
    const char *name;   /* what the client asks for */
    const char *target; /* what the upstream receives */
} oaip_model_alias;

/* Adds or replaces `name` (later directives override). */
void oaip_model_alias_set(apr_array_header_t *aliases, const char *name,
                          const char *target);

/* `base` overlaid with `add` by name, as a new array (either may be NULL;
 * NULL when both are). */
apr_array_header_t *oaip_model_aliases_merge(apr_pool_t *p,
                                             const apr_array_header_t *base,
                                             const apr_array_header_t *add);

/* The upstream's name for `model` (NULL stays NULL): its alias' target, or
 * `model` itself. One step only: an alias of an alias is not followed. */
const char *oaip_model_alias_target(const apr_array_header_t *aliases, const char *model);

/* `body`, a JSON object, with its "model" set to `model` (added when it
 * has none), re-encoded compactly with its members in their order. NULL
 * when `body` is not a JSON object. */
char *oaip_json_with_model(apr_pool_t *p, const char *body, apr_size_t len,
                           const char *model, apr_size_t *out_len);

#endif
