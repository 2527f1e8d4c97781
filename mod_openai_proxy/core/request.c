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

/* Whether `configured` sets or removes the built-in `d`: the built-in
 * output token limit is max_tokens or max_completion_tokens by the model's
 * family, so either name overrides it ("none" too). */
static int overridden(const apr_array_header_t *configured, const oaip_default *d)
{
    const char *other;

    return find_default(configured, d->name) != NULL ||
           (oaip_chat_limit_field(d->name, &other) &&
            find_default(configured, other) != NULL);
}

/* The defaults as configured: built-ins not overridden, then the
 * configured ones, skipping removed entries (the model default is read
 * from this list before the family's rules apply). */
static apr_array_header_t *configured_defaults(apr_pool_t *p,
                                               const apr_array_header_t *configured)
{
    apr_array_header_t *list = apr_array_make(p, 8, sizeof(oaip_default));
    apr_size_t i;
    int j;

    for (i = 0; i < sizeof(builtin_defaults) / sizeof(builtin_defaults[0]); i++) {
        if (!overridden(configured, &builtin_defaults[i])) {
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

static int is_refused(const oaip_refused_fields *refused, const char *model,
                      const char *field)
{
    return refused != NULL && refused->refused(refused->ctx, model, field);
}

/* Fields whose default always goes: what the model allow-list and the
 * stream limit checked. */
static int never_taken_back(const char *name)
{
    return strcmp(name, "model") == 0 || strcmp(name, "stream") == 0;
}

/* The field a token limit the proxy adds goes in: `name` as configured,
 * max_completion_tokens instead of max_tokens for a reasoning model, and
 * the other one of the two when the upstream refuses only this one (a
 * limit is moved, never dropped). */
static const char *limit_field_for(const char *name, oaip_model_family family,
                                   const oaip_refused_fields *refused, const char *model)
{
    const char *other;

    if (!oaip_chat_limit_field(name, &other)) {
        return name;
    }
    if (family == OAIP_FAMILY_REASONING) {
        name = "max_completion_tokens";
        other = "max_tokens";
    }
    if (is_refused(refused, model, name) && !is_refused(refused, model, other)) {
        return other;
    }
    return name;
}

/* The defaults that apply to a request of `model` (family `family`): the
 * configured list without the built-in temperature for reasoning models,
 * without the defaults the upstream refuses, and with one token limit at
 * most (max_completion_tokens wins over max_tokens, as it always did), in
 * the field the model takes. */
static apr_array_header_t *
effective_defaults(apr_pool_t *p, const apr_array_header_t *configured,
                   const apr_array_header_t *list, oaip_model_family family,
                   const oaip_refused_fields *refused, const char *model)
{
    apr_array_header_t *out = apr_array_make(p, list->nelts + 1, sizeof(oaip_default));
    const oaip_default *limit = find_default(list, "max_completion_tokens");
    const char *other;
    int i;

    if (limit == NULL) {
        limit = find_default(list, "max_tokens");
    }
    for (i = 0; i < list->nelts; i++) {
        const oaip_default *d = &APR_ARRAY_IDX(list, i, oaip_default);
        if (oaip_chat_limit_field(d->name, &other)) {
            continue; /* added once, below */
        }
        if (family == OAIP_FAMILY_REASONING && strcmp(d->name, "temperature") == 0 &&
            find_default(configured, "temperature") == NULL) {
            continue; /* the built-in 0.7: these models take only 1 */
        }
        if (!never_taken_back(d->name) && is_refused(refused, model, d->name)) {
            continue;
        }
        *(oaip_default *)apr_array_push(out) = *d;
    }
    if (limit != NULL) {
        oaip_default *moved = apr_array_push(out);
        moved->name = limit_field_for(limit->name, family, refused, model);
        moved->json = limit->json;
    }
    return out;
}

static int in_defaults(const apr_array_header_t *defaults, const char *name)
{
    return find_default(defaults, name) != NULL;
}

/* One token limit: a default adds none when the client named either. */
static int default_applies(json_t *object, const oaip_default *d)
{
    const char *other;

    if (json_object_get(object, d->name) != NULL) {
        return 0;
    }
    if (oaip_chat_limit_field(d->name, &other)) {
        return json_object_get(object, other) == NULL;
    }
    return 1;
}

static void note_added(apr_pool_t *p, oaip_json_request *req, const char *name)
{
    if (req->added == NULL) {
        req->added = apr_array_make(p, 4, sizeof(const char *));
    }
    APR_ARRAY_PUSH(req->added, const char *) = name;
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
 * the defaults that apply (noted in out->added), then the brace. */
static void build_body(apr_pool_t *p, const char *body, apr_size_t len, json_t *object,
                       const apr_array_header_t *defaults, oaip_json_request *out)
{
    apr_size_t close, extra = 0, at;
    char *text;
    int i;

    close = closing_brace(body, len);
    for (i = 0; i < defaults->nelts; i++) {
        const oaip_default *d = &APR_ARRAY_IDX(defaults, i, oaip_default);
        if (default_applies(object, d)) {
            extra += strlen(d->name) + strlen(d->json) + 4; /* ,"": */
        }
    }
    text = apr_palloc(p, close + extra + 2);
    memcpy(text, body, close);
    at = close;
    for (i = 0; i < defaults->nelts; i++) {
        const oaip_default *d = &APR_ARRAY_IDX(defaults, i, oaip_default);
        if (default_applies(object, d)) {
            at += (apr_size_t)apr_snprintf(text + at, close + extra + 2 - at,
                                           ",\"%s\":%s", d->name, d->json);
            note_added(p, out, d->name);
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
    out->family = oaip_model_family_of(out->model);
    /* an endpoint the proxy does not know to stream (image generation does,
     * for some upstreams) still counts as a stream when it asks for one */
    out->stream = json_is_true(json_object_get(object, "stream"));
    out->has_stream_options = json_object_get(object, "stream_options") != NULL;
    json_decref(object);
    return 1;
}

int oaip_json_request_prepare_chat(apr_pool_t *p, const char *body, apr_size_t len,
                                   const apr_array_header_t *configured,
                                   const oaip_refused_fields *refused,
                                   oaip_json_request *out, oaip_error_kind *kind,
                                   const char **detail)
{
    apr_array_header_t *listed, *defaults;
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

    memset(out, 0, sizeof(*out));
    /* the model (the client's or a default) decides the other defaults */
    listed = configured_defaults(p, configured);
    model = value_after_defaults(object, listed, "model");
    out->model = json_is_string(model) ? apr_pstrdup(p, json_string_value(model)) : NULL;
    out->family = oaip_model_family_of(out->model);
    defaults =
        effective_defaults(p, configured, listed, out->family, refused, out->model);
    build_body(p, body, len, object, defaults, out);
    stream = value_after_defaults(object, defaults, "stream");
    out->stream = json_is_true(stream);
    /* the client's or a default: either way ask_usage must not add a second one */
    out->has_stream_options = json_object_get(object, "stream_options") != NULL ||
                              in_defaults(defaults, "stream_options");
    out->usage_added = 0;
    json_decref(stream);
    json_decref(model);
    json_decref(object);
    return 1;
}

const char *oaip_json_request_limit_field(const oaip_json_request *req,
                                          const char *endpoint_field,
                                          const oaip_refused_fields *refused)
{
    if (endpoint_field == NULL || strcmp(endpoint_field, "max_tokens") != 0) {
        return endpoint_field;
    }
    return limit_field_for(endpoint_field, req->family, refused, req->model);
}

/* Whether text[at..at+n) is a whole word: no letter, digit or '_' on
 * either side (max_tokens is not in max_completion_tokens). */
static int whole_word(const char *text, apr_size_t len, apr_size_t at, apr_size_t n)
{
    int before = at > 0 && (apr_isalnum(text[at - 1]) || text[at - 1] == '_');
    int after = at + n < len && (apr_isalnum(text[at + n]) || text[at + n] == '_');

    return !before && !after;
}

static int mentions(const char *text, apr_size_t len, const char *name)
{
    apr_size_t n = strlen(name), at;

    for (at = 0; n > 0 && at + n <= len; at++) {
        if (memcmp(text + at, name, n) == 0 && whole_word(text, len, at, n)) {
            return 1;
        }
    }
    return 0;
}

/* An error's param names `name`: itself, or a part of it ("name.sub",
 * "name[0]"). */
static int param_names(const char *param, const char *name)
{
    apr_size_t n = strlen(name);

    return strncmp(param, name, n) == 0 &&
           (param[n] == '\0' || param[n] == '.' || param[n] == '[');
}

static void add_unique(apr_array_header_t *names, const char *name)
{
    int i;

    for (i = 0; i < names->nelts; i++) {
        if (strcmp(APR_ARRAY_IDX(names, i, const char *), name) == 0) {
            return;
        }
    }
    APR_ARRAY_PUSH(names, const char *) = name;
}

static void names_in_text(apr_array_header_t *named, const apr_array_header_t *candidates,
                          const char *text, apr_size_t len)
{
    int i;

    for (i = 0; text != NULL && i < candidates->nelts; i++) {
        const char *name = APR_ARRAY_IDX(candidates, i, const char *);
        if (mentions(text, len, name)) {
            add_unique(named, name);
        }
    }
}

static void names_in_string(apr_array_header_t *named,
                            const apr_array_header_t *candidates, json_t *value)
{
    if (json_is_string(value)) {
        names_in_text(named, candidates, json_string_value(value),
                      json_string_length(value));
    }
}

/* FastAPI's 422: {"detail":[{"loc":["body","stream_options"],"msg":...}]}
 * (or a detail string). */
static void names_in_detail(apr_array_header_t *named,
                            const apr_array_header_t *candidates, json_t *detail)
{
    apr_size_t i;

    names_in_string(named, candidates, detail);
    for (i = 0; json_is_array(detail) && i < json_array_size(detail); i++) {
        json_t *item = json_array_get(detail, i);
        json_t *loc = json_object_get(item, "loc");
        json_t *last = json_array_get(loc, json_array_size(loc) - 1);
        int j;

        for (j = 0; json_is_string(last) && j < candidates->nelts; j++) {
            const char *name = APR_ARRAY_IDX(candidates, j, const char *);
            if (strcmp(json_string_value(last), name) == 0) {
                add_unique(named, name);
            }
        }
        names_in_string(named, candidates, json_object_get(item, "msg"));
    }
}

/* How much of a text answer is searched (error answers are short). */
#define MAX_REFUSAL_TEXT ((apr_size_t)64 * 1024)

apr_array_header_t *oaip_refusal_names(apr_pool_t *p, const char *body, apr_size_t len,
                                       const apr_array_header_t *candidates)
{
    apr_array_header_t *named = apr_array_make(p, 2, sizeof(const char *));
    json_t *doc, *error, *param, *message;
    int i;

    if (candidates == NULL || candidates->nelts == 0 || body == NULL) {
        return named;
    }
    doc = json_loadb(body, len, JSON_DECODE_ANY, NULL);
    if (!json_is_object(doc)) {
        json_decref(doc);
        names_in_text(named, candidates, body,
                      len < MAX_REFUSAL_TEXT ? len : MAX_REFUSAL_TEXT);
        return named;
    }
    error = json_object_get(doc, "error");
    /* OpenAI's {"error":{...}}; vLLM's top-level message and param */
    param = json_object_get(json_is_object(error) ? error : doc, "param");
    message = json_object_get(json_is_object(error) ? error : doc, "message");
    if (json_is_string(param) && json_string_length(param) > 0) {
        /* the param says which field: the message may name its replacement */
        for (i = 0; i < candidates->nelts; i++) {
            const char *name = APR_ARRAY_IDX(candidates, i, const char *);
            if (param_names(json_string_value(param), name)) {
                add_unique(named, name);
            }
        }
    } else {
        names_in_string(named, candidates, message);
        names_in_string(named, candidates, error); /* {"error":"Unrecognized ..."} */
        names_in_detail(named, candidates, json_object_get(doc, "detail"));
    }
    json_decref(doc);
    return named;
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
        note_added(p, req, missing_field);
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
        note_added(p, req, "stream_options");
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
