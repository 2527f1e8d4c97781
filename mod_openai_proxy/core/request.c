#include "core/request.h"

#include <apr_lib.h>
#include <apr_strings.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/guarded_fields.h"

/* The Worker's defaults, kept for compatibility with its clients. */
static const oaip_default builtin_defaults[] = {
    {"model", "\"gpt-3.5-turbo\""},
    {"temperature", "0.7"},
    {"max_tokens", "1000"},
    {"stream", "false"},
};

static const oaip_default *find_default(const apr_array_header_t *list, const char *name)
{
    int i;

    for (i = 0; list != NULL && i < list->nelts; i++) {
        const oaip_default *d = &APR_ARRAY_IDX(list, i, oaip_default);
        if (strcmp(d->name, name) == 0) {
            return d;
        }
    }
    return NULL;
}

void oaip_defaults_set(apr_array_header_t *defaults, const char *name, const char *json)
{
    oaip_default *d = (oaip_default *)find_default(defaults, name);

    if (d == NULL) {
        d = apr_array_push(defaults);
        d->name = name;
    }
    d->json = json;
}

apr_array_header_t *oaip_defaults_merge(apr_pool_t *p, const apr_array_header_t *base,
                                        const apr_array_header_t *add)
{
    apr_array_header_t *merged = apr_array_copy(p, base);
    int i;

    for (i = 0; i < add->nelts; i++) {
        const oaip_default *d = &APR_ARRAY_IDX(add, i, oaip_default);
        oaip_defaults_set(merged, d->name, d->json);
    }
    return merged;
}

int oaip_model_allowed(const apr_array_header_t *allowed, const char *model)
{
    int i;

    for (i = 0; model != NULL && i < allowed->nelts; i++) {
        const char *entry = APR_ARRAY_IDX(allowed, i, const char *);
        apr_size_t n = strlen(entry);
        if (n > 0 && entry[n - 1] == '*' ? strncmp(model, entry, n - 1) == 0
                                         : strcmp(model, entry) == 0) {
            return 1;
        }
    }
    return 0;
}

static int is_bare_word(const char *s)
{
    if (!apr_isalpha(*s)) {
        return 0;
    }
    for (; *s; s++) {
        if (!(apr_isalnum(*s) || strchr("-_.:/@", *s) != NULL)) {
            return 0;
        }
    }
    return 1;
}

static int is_field_name(const char *s)
{
    if (*s == '\0') {
        return 0;
    }
    for (; *s; s++) {
        if (!(apr_isalnum(*s) || *s == '_' || *s == '-' || *s == '.')) {
            return 0;
        }
    }
    return 1;
}

const char *oaip_default_value_parse(apr_pool_t *p, const char *name, const char *value,
                                     const char **json)
{
    json_error_t error;
    json_t *parsed;

    if (!is_field_name(name) || strcmp(name, "messages") == 0) {
        return "the field name must be a Chat Completions parameter (letters, digits, "
               "'_', '-', '.') other than messages";
    }
    if (strcmp(value, "none") == 0) {
        *json = NULL;
        return NULL;
    }
    parsed = json_loads(value, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &error);
    if (parsed == NULL && is_bare_word(value)) {
        parsed = json_string(value);
        *json = apr_pstrcat(p, "\"", value, "\"", NULL);
    } else {
        /* keep the operator's text: re-encoding 0.7 would print 0.69999999999999996 */
        *json = parsed != NULL ? value : NULL;
    }
    if (parsed != NULL) {
        /* a default is held to what a client's field is held to */
        json_t *member = json_object();
        oaip_error_kind kind;
        const char *why = NULL;
        json_object_set_new(member, name, parsed);
        if (!oaip_guarded_fields_check(p, member, &kind, &why)) {
            *json = NULL;
        }
        json_decref(member);
        return why;
    }
    return apr_psprintf(p,
                        "the value is neither JSON nor a bare word (%s); quote a JSON "
                        "string like '\"some text\"'",
                        error.text);
}

/* The defaults that apply to a request: built-ins not overridden, then the
 * configured ones, skipping removed entries. */
static apr_array_header_t *effective_defaults(apr_pool_t *p,
                                              const apr_array_header_t *configured)
{
    apr_array_header_t *list = apr_array_make(p, 8, sizeof(oaip_default));
    apr_size_t i;
    int j;

    for (i = 0; i < sizeof(builtin_defaults) / sizeof(builtin_defaults[0]); i++) {
        if (find_default(configured, builtin_defaults[i].name) == NULL) {
            *(oaip_default *)apr_array_push(list) = builtin_defaults[i];
        }
    }
    for (j = 0; configured != NULL && j < configured->nelts; j++) {
        const oaip_default *d = &APR_ARRAY_IDX(configured, j, oaip_default);
        if (d->json != NULL) {
            *(oaip_default *)apr_array_push(list) = *d;
        }
    }
    return list;
}

static int in_defaults(const apr_array_header_t *defaults, const char *name)
{
    return find_default(defaults, name) != NULL;
}

/* max_tokens and max_completion_tokens exclude each other: newer models
 * refuse a request with both, and the newer field wins. */
static int default_applies(json_t *object, const apr_array_header_t *defaults,
                           const oaip_default *d)
{
    if (json_object_get(object, d->name) != NULL) {
        return 0;
    }
    if (strcmp(d->name, "max_tokens") == 0) {
        return json_object_get(object, "max_completion_tokens") == NULL &&
               !in_defaults(defaults, "max_completion_tokens");
    }
    if (strcmp(d->name, "max_completion_tokens") == 0) {
        return json_object_get(object, "max_tokens") == NULL;
    }
    return 1;
}

static const char *json_type_name(json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

static int fail(oaip_error_kind *kind, const char **detail, oaip_error_kind k,
                const char *text)
{
    *kind = k;
    *detail = text;
    return 0;
}

/* The index of the closing brace of a JSON object's text (only white space
 * may follow it; the parser guarantees one). */
static apr_size_t closing_brace(const char *body, apr_size_t len)
{
    while (len > 0 && body[len - 1] != '}') {
        len--;
    }
    return len - 1;
}

/* Builds the upstream body: the client's bytes up to the closing brace, then
 * the defaults that apply, then the brace. */
static void build_body(apr_pool_t *p, const char *body, apr_size_t len, json_t *object,
                       const apr_array_header_t *defaults, oaip_json_request *out)
{
    apr_size_t close, extra = 0, at;
    char *text;
    int i;

    close = closing_brace(body, len);
    for (i = 0; i < defaults->nelts; i++) {
        const oaip_default *d = &APR_ARRAY_IDX(defaults, i, oaip_default);
        if (default_applies(object, defaults, d)) {
            extra += strlen(d->name) + strlen(d->json) + 4; /* ,"": */
        }
    }
    text = apr_palloc(p, close + extra + 2);
    memcpy(text, body, close);
    at = close;
    for (i = 0; i < defaults->nelts; i++) {
        const oaip_default *d = &APR_ARRAY_IDX(defaults, i, oaip_default);
        if (default_applies(object, defaults, d)) {
            at += (apr_size_t)apr_snprintf(text + at, close + extra + 2 - at,
                                           ",\"%s\":%s", d->name, d->json);
        }
    }
    text[at++] = '}';
    text[at] = '\0';
    out->body = text;
    out->body_len = at;
}

/* The value a request ends up with for `name`: its own, else the default. */
static json_t *value_after_defaults(json_t *object, const apr_array_header_t *defaults,
                                    const char *name)
{
    json_t *own = json_object_get(object, name);
    int i;

    if (own != NULL) {
        return json_incref(own);
    }
    for (i = defaults->nelts - 1; i >= 0; i--) {
        const oaip_default *d = &APR_ARRAY_IDX(defaults, i, oaip_default);
        if (strcmp(d->name, name) == 0) {
            return json_loads(d->json, JSON_DECODE_ANY, NULL);
        }
    }
    return NULL;
}

/* The body as a JSON object (a new reference), or NULL with the error. */
static json_t *parse_object(apr_pool_t *p, const char *body, apr_size_t len,
                            const char *empty_hint, oaip_error_kind *kind,
                            const char **detail)
{
    json_error_t error;
    json_t *object;
    apr_size_t i;

    for (i = 0; i < len && strchr(" \t\r\n", body[i]) != NULL && body[i] != '\0'; i++) {
    }
    if (i == len) {
        fail(kind, detail, OAIP_ERR_EMPTY_BODY,
             apr_pstrcat(p, "The request body is empty; send a JSON object", empty_hint,
                         NULL));
        return NULL;
    }
    object = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &error);
    if (object == NULL) {
        fail(kind, detail, OAIP_ERR_INVALID_JSON,
             apr_psprintf(p,
                          "The request body is not valid JSON: %s (line %d, "
                          "column %d)",
                          error.text, error.line, error.column));
        return NULL;
    }
    if (!json_is_object(object)) {
        fail(kind, detail, OAIP_ERR_NOT_OBJECT,
             apr_psprintf(p, "The request body must be a JSON object, not %s",
                          json_type_name(object)));
        json_decref(object);
        return NULL;
    }
    return object;
}

int oaip_json_request_prepare(apr_pool_t *p, const char *body, apr_size_t len,
                              oaip_json_request *out, oaip_error_kind *kind,
                              const char **detail)
{
    json_t *object = parse_object(p, body, len, "", kind, detail);
    json_t *model;

    if (object == NULL) {
        return 0;
    }
    if (!oaip_guarded_fields_check(p, object, kind, detail)) {
        json_decref(object);
        return 0;
    }
    model = json_object_get(object, "model");
    memset(out, 0, sizeof(*out));
    out->body = body;
    out->body_len = len;
    out->model = json_is_string(model) ? apr_pstrdup(p, json_string_value(model)) : NULL;
    /* an endpoint the proxy does not know to stream (image generation does,
     * for some upstreams) still counts as a stream when it asks for one */
    out->stream = json_is_true(json_object_get(object, "stream"));
    out->has_stream_options = json_object_get(object, "stream_options") != NULL;
    json_decref(object);
    return 1;
}

int oaip_json_request_prepare_chat(apr_pool_t *p, const char *body, apr_size_t len,
                                   const apr_array_header_t *configured,
                                   oaip_json_request *out, oaip_error_kind *kind,
                                   const char **detail)
{
    apr_array_header_t *defaults;
    json_t *object, *messages, *stream, *model;

    object = parse_object(p, body, len, " with a messages array", kind, detail);
    if (object == NULL) {
        return 0;
    }
    if (!oaip_guarded_fields_check(p, object, kind, detail)) {
        json_decref(object);
        return 0;
    }
    messages = json_object_get(object, "messages");
    if (!json_is_array(messages)) {
        *detail = messages == NULL ? "The request must contain a messages array"
                                   : apr_psprintf(p, "messages must be an array, not %s",
                                                  json_type_name(messages));
        json_decref(object);
        return fail(kind, detail, OAIP_ERR_INVALID_MESSAGES, *detail);
    }

    defaults = effective_defaults(p, configured);
    build_body(p, body, len, object, defaults, out);
    stream = value_after_defaults(object, defaults, "stream");
    model = value_after_defaults(object, defaults, "model");
    out->stream = json_is_true(stream);
    /* the client's or a default: either way ask_usage must not add a second one */
    out->has_stream_options = json_object_get(object, "stream_options") != NULL ||
                              in_defaults(defaults, "stream_options");
    out->usage_added = 0;
    out->model = json_is_string(model) ? apr_pstrdup(p, json_string_value(model)) : NULL;
    json_decref(stream);
    json_decref(model);
    json_decref(object);
    return 1;
}

/* A token limit that lets more than `cap` through: a larger number, or
 * null (the upstream's own default, often "no limit"). The check refused
 * every other type before. */
static int exceeds(json_t *value, json_int_t cap)
{
    return json_is_null(value) ||
           (json_is_integer(value) && json_integer_value(value) > cap);
}

/* Re-encodes a request whose JSON was changed. */
static void replace_body(apr_pool_t *p, oaip_json_request *req, json_t *object)
{
    /* 17 digits: every number keeps its exact double value */
    char *text = json_dumps(object, JSON_COMPACT | JSON_REAL_PRECISION(17));

    if (text != NULL) {
        req->body = apr_pstrdup(p, text);
        req->body_len = strlen(text);
        free(text);
    }
}

int oaip_json_request_cap_tokens(apr_pool_t *p, oaip_json_request *req, json_int_t cap,
                                 const char *missing_field)
{
    /* chat and completions name it max_tokens or max_completion_tokens,
     * the Responses API max_output_tokens */
    static const char *const fields[] = {"max_tokens", "max_completion_tokens",
                                         "max_output_tokens"};
    json_t *object = json_loadb(req->body, req->body_len, 0, NULL);
    int changed = 0, present = 0;
    apr_size_t i;

    for (i = 0; object != NULL && i < sizeof(fields) / sizeof(fields[0]); i++) {
        json_t *value = json_object_get(object, fields[i]);
        present |= (value != NULL);
        if (exceeds(value, cap)) {
            json_object_set_new(object, fields[i], json_integer(cap));
            changed = 1;
        }
    }
    /* where the upstream's default is "as many as fit", the cap is written */
    if (object != NULL && !present && missing_field != NULL) {
        json_object_set_new(object, missing_field, json_integer(cap));
        changed = 1;
    }
    if (changed) {
        replace_body(p, req, object);
    }
    json_decref(object);
    return changed;
}

int oaip_json_request_ask_usage(apr_pool_t *p, oaip_json_request *req)
{
    static const char addition[] = ",\"stream_options\":{\"include_usage\":true}}";
    json_t *object, *options;
    int added = 0;

    if (!req->stream) {
        return req->usage_added = 0;
    }
    if (!req->has_stream_options) {
        /* the body ends with the object's closing brace: append before it */
        apr_size_t close = closing_brace(req->body, req->body_len);
        char *text = apr_palloc(p, close + sizeof(addition));
        memcpy(text, req->body, close);
        memcpy(text + close, addition, sizeof(addition));
        req->body = text;
        req->body_len = close + sizeof(addition) - 1;
        return req->usage_added = 1;
    }
    /* rare: the client's own options; only then is the body parsed again.
     * Whatever they say (null, include_usage false or null), the proxy
     * needs the usage chunk: budgets are charged from it. */
    object = json_loadb(req->body, req->body_len, 0, NULL);
    options = json_object_get(object, "stream_options");
    if (object != NULL && !json_is_object(options)) {
        json_object_set_new(object, "stream_options",
                            json_pack("{s:b}", "include_usage", 1));
        added = 1;
    } else if (json_is_object(options) &&
               !json_is_true(json_object_get(options, "include_usage"))) {
        json_object_set_new(options, "include_usage", json_true());
        added = 1;
    }
    if (added) {
        replace_body(p, req, object);
    }
    json_decref(object);
    return req->usage_added = added;
}
