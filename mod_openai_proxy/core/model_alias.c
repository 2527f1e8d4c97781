#include "core/model_alias.h"

#include <apr_strings.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

void oaip_model_alias_set(apr_array_header_t *aliases, const char *name,
                          const char *target)
{
    oaip_model_alias *entry;
    int i;

    for (i = 0; i < aliases->nelts; i++) {
        entry = &APR_ARRAY_IDX(aliases, i, oaip_model_alias);
        if (strcmp(entry->name, name) == 0) {
            entry->target = target;
            return;
        }
    }
    entry = apr_array_push(aliases);
    entry->name = name;
    entry->target = target;
}

apr_array_header_t *oaip_model_aliases_merge(apr_pool_t *p,
                                             const apr_array_header_t *base,
                                             const apr_array_header_t *add)
{
    apr_array_header_t *merged;
    int i;

    if (base == NULL || add == NULL) {
        return (apr_array_header_t *)(add ? add : base);
    }
    merged = apr_array_copy(p, base);
    for (i = 0; i < add->nelts; i++) {
        const oaip_model_alias *a = &APR_ARRAY_IDX(add, i, oaip_model_alias);
        oaip_model_alias_set(merged, a->name, a->target);
    }
    return merged;
}

const char *oaip_model_alias_target(const apr_array_header_t *aliases, const char *model)
{
    int i;

    for (i = 0; model != NULL && aliases != NULL && i < aliases->nelts; i++) {
        const oaip_model_alias *a = &APR_ARRAY_IDX(aliases, i, oaip_model_alias);
        if (strcmp(a->name, model) == 0) {
            return a->target;
        }
    }
    return model;
}

char *oaip_json_with_model(apr_pool_t *p, const char *body, apr_size_t len,
                           const char *model, apr_size_t *out_len)
{
    json_t *object = json_loadb(body, len, 0, NULL);
    char *text, *copy = NULL;

    if (!json_is_object(object)) {
        json_decref(object);
        return NULL;
    }
    json_object_set_new(object, "model", json_string(model));
    /* the precision the token cap's re-encoding uses: numbers read back the same */
    text = json_dumps(object, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(object);
    if (text != NULL) {
        *out_len = strlen(text);
        copy = apr_pmemdup(p, text, *out_len + 1);
        free(text);
    }
    return copy;
}
