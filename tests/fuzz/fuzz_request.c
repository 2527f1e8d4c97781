/* Fuzzes the Chat Completions request path of the core: validation and
 * defaults (oaip_json_request_prepare_chat) under several sets of configured
 * defaults, then OpenAIProxyMaxTokens (cap_tokens) and the stream usage
 * request (ask_usage) on every accepted body, as the handler chains them,
 * each set once as it is and once with fields an upstream refused (as a
 * second attempt builds its body); the check of other JSON endpoints'
 * bodies (oaip_json_request_prepare); and the input as an upstream's error
 * answer (oaip_refusal_names).
 *
 * Invariants: a refused body gets one of the validation errors and a
 * sentence that makes a valid JSON error body; an accepted body becomes valid
 * JSON without duplicate keys that keeps the client's bytes and values,
 * gains exactly the defaults that apply and reports stream/model as they end
 * up, by the model's family (no built-in temperature and the token limit
 * as max_completion_tokens for reasoning models), with `added` naming
 * exactly the fields the client did not send; a refused field is never
 * added (model and stream always are), a refused token limit moves to the
 * other field and is never dropped; every accepted body has its limit fields (max_tokens
 * & co., n, best_of) null or whole numbers from 1, stream and stream_options of their
 * types and no case-folded look-alike of them (issue 9); cap_tokens leaves
 * no token limit above the cap or null, writes the cap where the endpoint
 * has no limit and the body names none, and changes nothing else;
 * ask_usage gets the usage chunk for every stream request (chat and legacy
 * completions), whatever stream_options said, and for no other; a refusal
 * names only candidates, each once. */
#include "fuzz.h"

#include "core/errors.h"
#include "core/model_family.h"
#include "core/request.h"

#define CAP 1000

static apr_array_header_t *default_sets[4];
static apr_array_header_t *allowed_models;

static void make_default_sets(apr_pool_t *p)
{
    apr_array_header_t *d;

    default_sets[0] = NULL; /* the built-ins only */

    d = apr_array_make(p, 4, sizeof(oaip_default));
    oaip_defaults_set(d, "model", "\"gpt-4o-mini\"");
    oaip_defaults_set(d, "max_completion_tokens", "256");
    oaip_defaults_set(d, "stream", "true");
    oaip_defaults_set(d, "user", "\"proxy\"");
    default_sets[1] = d;

    d = apr_array_make(p, 4, sizeof(oaip_default)); /* every built-in removed */
    oaip_defaults_set(d, "model", NULL);
    oaip_defaults_set(d, "temperature", NULL);
    oaip_defaults_set(d, "max_tokens", NULL);
    oaip_defaults_set(d, "stream", NULL);
    default_sets[2] = d;

    d = apr_array_make(p, 4, sizeof(oaip_default));
    oaip_defaults_set(d, "temperature", "0.2");
    oaip_defaults_set(d, "max_tokens", "5000");
    oaip_defaults_set(d, "metadata", "{\"team\": [1, 2.5, null]}");
    oaip_defaults_set(d, "stream", "true");
    oaip_defaults_set(d, "stream_options", "{\"include_usage\":false}");
    default_sets[3] = d;

    allowed_models = apr_array_make(p, 2, sizeof(const char *));
    APR_ARRAY_PUSH(allowed_models, const char *) = "gpt-4o*";
    APR_ARRAY_PUSH(allowed_models, const char *) = "gpt-3.5-turbo";
}

static apr_pool_t *static_pool;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (apr_initialize() != APR_SUCCESS ||
        apr_pool_create(&static_pool, NULL) != APR_SUCCESS) {
        abort();
    }
    make_default_sets(static_pool);
    return 0;
}

/* The JSON a default's text stands for, as the later entry wins. */
static const oaip_default *effective_default(const apr_array_header_t *configured,
                                             const char *name)
{
    static const oaip_default builtins[] = {
        {"model", "\"gpt-3.5-turbo\""},
        {"temperature", "0.7"},
        {"max_tokens", "1000"},
        {"stream", "false"},
    };
    int i;
    size_t j;

    for (i = configured ? configured->nelts - 1 : -1; i >= 0; i--) {
        const oaip_default *d = &APR_ARRAY_IDX(configured, i, oaip_default);
        if (strcmp(d->name, name) == 0) {
            return d->json ? d : NULL;
        }
    }
    for (j = 0; j < N_ELEMS(builtins); j++) {
        if (strcmp(builtins[j].name, name) == 0) {
            return &builtins[j];
        }
    }
    return NULL;
}

/* The fields the refusing pass says an upstream refused. */
static const char *const refused_names[] = {"temperature", "max_tokens", "user",
                                            "metadata",    "model",      "stream"};

static int is_refused_name(const char *name)
{
    size_t i;

    for (i = 0; i < N_ELEMS(refused_names); i++) {
        if (strcmp(refused_names[i], name) == 0) {
            return 1;
        }
    }
    return 0;
}

static int refuse_listed(void *ctx, const char *model, const char *field)
{
    (void)ctx;
    (void)model;
    return is_refused_name(field);
}

static const oaip_refused_fields refusing = {refuse_listed, NULL};

static int is_limit(const char *name)
{
    return strcmp(name, "max_tokens") == 0 || strcmp(name, "max_completion_tokens") == 0;
}

static int configured_has(const apr_array_header_t *configured, const char *name);

/* The token limit default that applies: max_completion_tokens over
 * max_tokens as configured; the built-in one unless either name is
 * configured (set or "none"). */
static const oaip_default *limit_default(const apr_array_header_t *configured)
{
    const oaip_default *d = effective_default(configured, "max_completion_tokens");

    if (d == NULL && !configured_has(configured, "max_tokens") &&
        configured_has(configured, "max_completion_tokens")) {
        return NULL; /* max_completion_tokens none removed the built-in */
    }
    return d ? d : effective_default(configured, "max_tokens");
}

static int configured_has(const apr_array_header_t *configured, const char *name)
{
    int i;

    for (i = 0; configured != NULL && i < configured->nelts; i++) {
        if (strcmp(APR_ARRAY_IDX(configured, i, oaip_default).name, name) == 0) {
            return 1;
        }
    }
    return 0;
}

static int in_added(const oaip_json_request *req, const char *name)
{
    int i;

    for (i = 0; req->added != NULL && i < req->added->nelts; i++) {
        if (strcmp(APR_ARRAY_IDX(req->added, i, const char *), name) == 0) {
            return 1;
        }
    }
    return 0;
}

static void check_refusal(apr_pool_t *p, oaip_error_kind kind, const char *detail)
{
    const char *body;
    json_t *parsed;

    FUZZ_CHECK(kind == OAIP_ERR_EMPTY_BODY || kind == OAIP_ERR_INVALID_JSON ||
                   kind == OAIP_ERR_NOT_OBJECT || kind == OAIP_ERR_INVALID_MESSAGES ||
                   kind == OAIP_ERR_BAD_REQUEST,
               "kind %d", (int)kind);
    FUZZ_CHECK(detail != NULL && *detail != '\0', "no detail");
    body = oaip_error_body(p, OAIP_ERRFMT_OPENAI, kind, detail);
    parsed = fuzz_json(body, strlen(body), JSON_REJECT_DUPLICATES);
    FUZZ_CHECK(json_is_object(parsed), "error body is not a JSON object: %s", body);
    json_decref(parsed);
}

/* Every member of `before` is in `after` with an equal value, except `skip`. */
static void check_kept(json_t *before, json_t *after, const char *skip1,
                       const char *skip2, const char *what)
{
    const char *key;
    json_t *value;

    json_object_foreach(before, key, value)
    {
        if ((skip1 && strcmp(key, skip1) == 0) || (skip2 && strcmp(key, skip2) == 0)) {
            continue;
        }
        FUZZ_CHECK(json_equal(value, json_object_get(after, key)),
                   "%s changed or dropped field \"%s\"", what, key);
    }
}

static json_t *parse_body(const oaip_json_request *req, const char *what)
{
    json_t *object;

    FUZZ_CHECK(req->body != NULL, "%s: no body", what);
    object = fuzz_json(req->body, req->body_len, JSON_REJECT_DUPLICATES);
    FUZZ_CHECK(json_is_object(object), "%s: not a JSON object without duplicates: %.*s",
               what, (int)req->body_len, req->body);
    return object;
}

static void check_prepared(const char *input, size_t len, const apr_array_header_t *conf,
                           const oaip_refused_fields *refused, json_t *client,
                           const oaip_json_request *req)
{
    json_t *prepared = parse_body(req, "prepare"), *value, *stream, *model;
    const char *key;
    size_t close = len;

    /* the client's bytes up to its closing brace are sent as they are */
    while (close > 0 && input[close - 1] != '}') {
        close--;
    }
    FUZZ_CHECK(close > 0 && req->body_len >= close &&
                   memcmp(req->body, input, close - 1) == 0,
               "the client's bytes were not kept");
    check_kept(client, prepared, NULL, NULL, "prepare");
    FUZZ_CHECK(req->family == oaip_model_family_of(req->model), "the family is wrong");
    /* what was added is exactly a default that applies, in the family's
     * field; `added` names exactly these */
    json_object_foreach(prepared, key, value)
    {
        const oaip_default *d;
        json_t *expected;
        if (json_object_get(client, key) != NULL) {
            continue;
        }
        FUZZ_CHECK(in_added(req, key), "\"%s\" added but not noted", key);
        d = is_limit(key) ? limit_default(conf) : effective_default(conf, key);
        FUZZ_CHECK(d != NULL, "prepare added \"%s\", which is no default", key);
        expected = fuzz_json(d->json, strlen(d->json), 0);
        FUZZ_CHECK(json_equal(expected, value), "default \"%s\" has the wrong value",
                   key);
        json_decref(expected);
        if (refused != NULL && strcmp(key, "model") != 0 && strcmp(key, "stream") != 0 &&
            !is_limit(key)) {
            FUZZ_CHECK(!is_refused_name(key), "the refused \"%s\" was added", key);
        }
        if (req->family == OAIP_FAMILY_REASONING && refused == NULL) {
            FUZZ_CHECK(strcmp(key, "max_tokens") != 0,
                       "max_tokens added for the reasoning model %s", req->model);
        }
        if (req->family == OAIP_FAMILY_REASONING) {
            FUZZ_CHECK(strcmp(key, "temperature") != 0 || configured_has(conf, key),
                       "the built-in temperature added for the reasoning model %s",
                       req->model);
        } else if (refused == NULL && is_limit(key)) {
            FUZZ_CHECK(strcmp(key, d->name) == 0, "%s added as %s", d->name, key);
        } else if (refused != NULL && is_limit(key)) {
            FUZZ_CHECK(strcmp(key, "max_completion_tokens") == 0,
                       "the refused max_tokens was not moved");
        }
    }
    FUZZ_CHECK((req->added ? req->added->nelts : 0) ==
                   (int)(json_object_size(prepared) - json_object_size(client)),
               "added lists %d fields", req->added ? req->added->nelts : 0);
    /* a limit is moved, never dropped */
    if (json_object_get(client, "max_tokens") == NULL &&
        json_object_get(client, "max_completion_tokens") == NULL) {
        FUZZ_CHECK((limit_default(conf) != NULL) ==
                       (json_object_get(prepared, "max_tokens") != NULL ||
                        json_object_get(prepared, "max_completion_tokens") != NULL),
                   "a token limit default went missing or appeared");
        FUZZ_CHECK(json_object_get(prepared, "max_tokens") == NULL ||
                       json_object_get(prepared, "max_completion_tokens") == NULL,
                   "both token limits added by defaults");
    }
    stream = json_object_get(prepared, "stream");
    FUZZ_CHECK(req->stream == json_is_true(stream), "stream flag %d is wrong",
               req->stream);
    model = json_object_get(prepared, "model");
    if (json_is_string(model)) {
        FUZZ_CHECK(req->model != NULL &&
                       strcmp(req->model, json_string_value(model)) == 0,
                   "model is wrong");
        if (oaip_model_allowed(allowed_models, req->model)) {
            FUZZ_CHECK(strncmp(req->model, "gpt-4o", 6) == 0 ||
                           strcmp(req->model, "gpt-3.5-turbo") == 0,
                       "model \"%s\" allowed by no entry", req->model);
        }
    } else {
        FUZZ_CHECK(req->model == NULL, "model set for a non-string");
        FUZZ_CHECK(!oaip_model_allowed(allowed_models, NULL), "a missing model allowed");
    }
    FUZZ_CHECK(req->has_stream_options ==
                   (json_object_get(prepared, "stream_options") != NULL),
               "has_stream_options is wrong");
    FUZZ_CHECK(req->usage_added == 0, "usage_added set by prepare");
    json_decref(prepared);
}

static int above_cap(json_t *v)
{
    return json_is_null(v) || (json_is_integer(v) && json_integer_value(v) > CAP) ||
           (json_is_real(v) && json_real_value(v) > CAP);
}

/* The fields OpenAIProxyMaxTokens lowers (chat, completions, responses). */
static const char *const capped_fields[] = {"max_tokens", "max_completion_tokens",
                                            "max_output_tokens"};

static int is_lowered(json_t *before, const char *key)
{
    size_t i;

    for (i = 0; i < sizeof(capped_fields) / sizeof(capped_fields[0]); i++) {
        if (strcmp(key, capped_fields[i]) == 0) {
            return above_cap(json_object_get(before, key));
        }
    }
    return 0;
}

/* A reference fold, written apart from guarded_fields.c's: the key with
 * U+017F and U+212A spelled as s and k, compared without ASCII case. */
static int folds_to(const char *key, const char *name)
{
    char folded[256];
    size_t n = 0;
    const char *c;

    for (c = key; *c && n + 1 < sizeof(folded); c++) {
        if (strncmp(c, "\xc5\xbf", 2) == 0) {
            folded[n++] = 's';
            c += 1;
        } else if (strncmp(c, "\xe2\x84\xaa", 3) == 0) {
            folded[n++] = 'k';
            c += 2;
        } else {
            folded[n++] = *c;
        }
    }
    folded[n] = '\0';
    return *c == '\0' && strcasecmp(folded, name) == 0 && strcmp(key, name) != 0;
}

/* Issue 9's rule: each limit field is null or a whole number from 1,
 * stream and stream_options have their types, and no key is a case-folded
 * look-alike of one of them. NULL when `object` keeps it, else the reason. */
static const char *guarded_violation(json_t *object)
{
    static const char *const counts[] = {"max_tokens", "max_completion_tokens",
                                         "max_output_tokens", "n", "best_of"};
    static const char *const guarded[] = {"max_tokens",        "max_completion_tokens",
                                          "max_output_tokens", "n",
                                          "best_of",           "stream",
                                          "stream_options",    "model"};
    json_t *v, *options = json_object_get(object, "stream_options");
    const char *key;
    size_t i;

    for (i = 0; i < N_ELEMS(counts); i++) {
        v = json_object_get(object, counts[i]);
        if (!(v == NULL || json_is_null(v) ||
              (json_is_integer(v) && json_integer_value(v) >= 1))) {
            return counts[i];
        }
    }
    v = json_object_get(object, "stream");
    if (!(v == NULL || json_is_boolean(v) || json_is_null(v))) {
        return "stream";
    }
    if (!(options == NULL || json_is_null(options) || json_is_object(options))) {
        return "stream_options";
    }
    v = json_object_get(options, "include_usage");
    if (!(v == NULL || json_is_boolean(v) || json_is_null(v))) {
        return "include_usage";
    }
    json_object_foreach(object, key, v)
    {
        for (i = 0; i < N_ELEMS(guarded); i++) {
            if (folds_to(key, guarded[i])) {
                return "a look-alike key";
            }
        }
    }
    json_object_foreach(options, key, v)
    {
        if (folds_to(key, "include_usage")) {
            return "a look-alike key in stream_options";
        }
    }
    return NULL;
}

static void check_guarded(json_t *object, const char *what)
{
    const char *violation = guarded_violation(object);

    FUZZ_CHECK(violation == NULL, "%s: accepted with %s of the wrong kind", what,
               violation);
}

/* A body refused as a bad request must break the rule above. */
static void check_bad_request(const char *input, size_t size, oaip_error_kind kind)
{
    json_t *object;

    if (kind != OAIP_ERR_BAD_REQUEST) {
        return;
    }
    object = fuzz_json(input, size, JSON_REJECT_DUPLICATES);
    FUZZ_CHECK(json_is_object(object) && guarded_violation(object) != NULL,
               "a body that keeps the rules was refused as a bad request");
    json_decref(object);
}

static void check_cap_tokens(apr_pool_t *p, oaip_json_request *req, const char *missing)
{
    json_t *before = parse_body(req, "before cap"), *after, *value;
    const char *old_body = req->body, *key;
    int expect = 0, present = 0, changed;
    size_t i;

    for (i = 0; i < sizeof(capped_fields) / sizeof(capped_fields[0]); i++) {
        expect |= above_cap(json_object_get(before, capped_fields[i]));
        present |= json_object_get(before, capped_fields[i]) != NULL;
    }
    expect |= (!present && missing != NULL);
    changed = oaip_json_request_cap_tokens(p, req, CAP, missing);
    FUZZ_CHECK(changed == expect, "cap_tokens returned %d, expected %d", changed, expect);
    if (!changed) {
        FUZZ_CHECK(req->body == old_body, "an unchanged body was re-encoded");
    }
    after = parse_body(req, "cap_tokens");
    for (i = 0; i < sizeof(capped_fields) / sizeof(capped_fields[0]); i++) {
        FUZZ_CHECK(!above_cap(json_object_get(after, capped_fields[i])),
                   "a token limit above the cap (or null) is left in %s",
                   capped_fields[i]);
    }
    json_object_foreach(before, key, value)
    {
        FUZZ_CHECK(is_lowered(before, key) ||
                       json_equal(value, json_object_get(after, key)),
                   "cap_tokens changed or dropped field \"%s\"", key);
    }
    if (!present && missing != NULL) {
        FUZZ_CHECK(json_integer_value(json_object_get(after, missing)) == CAP &&
                       json_object_size(after) == json_object_size(before) + 1,
                   "the cap was not written where no limit was named");
    } else {
        FUZZ_CHECK(json_object_size(before) == json_object_size(after),
                   "cap_tokens added a field");
    }
    json_decref(before);
    json_decref(after);
}

static void check_ask_usage(apr_pool_t *p, oaip_json_request *req)
{
    json_t *before = parse_body(req, "before ask_usage"), *after, *options;
    json_t *old_options = json_object_get(before, "stream_options");
    const char *old_body = req->body;
    int added = oaip_json_request_ask_usage(p, req);

    after = parse_body(req, "ask_usage");
    options = json_object_get(after, "stream_options");
    FUZZ_CHECK(added == req->usage_added, "usage_added disagrees with the result");
    if (!req->stream) {
        FUZZ_CHECK(!added && req->body == old_body,
                   "usage asked for a non-stream request");
    } else {
        /* whatever the client's options said, the proxy gets the usage */
        FUZZ_CHECK(json_is_true(json_object_get(options, "include_usage")),
                   "a stream goes without the usage chunk");
        FUZZ_CHECK(added == !json_is_true(json_object_get(old_options, "include_usage")),
                   "usage_added is %d although the client %s asked for usage", added,
                   added ? "had" : "had not");
    }
    check_kept(before, after, "stream_options", NULL, "ask_usage");
    json_decref(before);
    json_decref(after);
}

/* Other JSON endpoints (oaip_json_request_prepare): the body goes as it is;
 * model and stream are noted. */
static void check_json_endpoint(apr_pool_t *p, const char *input, size_t size)
{
    oaip_json_request req;
    oaip_error_kind kind = OAIP_ERR__COUNT;
    const char *detail = NULL;
    json_t *object, *model;

    if (!oaip_json_request_prepare(p, input, size, &req, &kind, &detail)) {
        check_refusal(p, kind, detail);
        check_bad_request(input, size, kind);
        return;
    }
    object = fuzz_json(input, size, JSON_REJECT_DUPLICATES);
    FUZZ_CHECK(json_is_object(object), "a JSON endpoint accepted no object");
    FUZZ_CHECK(req.body == input && req.body_len == size, "a JSON body was changed");
    check_guarded(object, "JSON endpoint");
    model = json_object_get(object, "model");
    FUZZ_CHECK(json_is_string(model)
                   ? req.model != NULL && strcmp(req.model, json_string_value(model)) == 0
                   : req.model == NULL,
               "model is wrong");
    FUZZ_CHECK(req.stream == json_is_true(json_object_get(object, "stream")),
               "stream is wrong");
    /* the legacy completions stream asks for usage as chat does */
    if (req.stream) {
        check_ask_usage(p, &req);
    }
    check_cap_tokens(p, &req, "max_output_tokens");
    json_decref(object);
}

/* The input as an upstream's error answer: only candidates are named,
 * each once. */
static void check_refusal_names(apr_pool_t *p, const char *input, size_t size)
{
    static const char *const names[] = {"temperature", "max_tokens",
                                        "max_completion_tokens", "stream_options", "t"};
    apr_array_header_t *candidates = apr_array_make(p, 5, sizeof(const char *));
    apr_array_header_t *named;
    size_t i;
    int j, k;

    for (i = 0; i < N_ELEMS(names); i++) {
        APR_ARRAY_PUSH(candidates, const char *) = names[i];
    }
    named = oaip_refusal_names(p, input, size, candidates);
    for (j = 0; j < named->nelts; j++) {
        const char *name = APR_ARRAY_IDX(named, j, const char *);
        int found = 0;
        for (i = 0; i < N_ELEMS(names); i++) {
            found |= strcmp(name, names[i]) == 0;
        }
        FUZZ_CHECK(found, "named \"%s\", which is no candidate", name);
        for (k = 0; k < j; k++) {
            FUZZ_CHECK(strcmp(name, APR_ARRAY_IDX(named, k, const char *)) != 0,
                       "\"%s\" named twice", name);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p = fuzz_pool();
    const char *input = (const char *)data;
    size_t i;

    check_json_endpoint(p, input, size);

    for (i = 0; i < 2 * N_ELEMS(default_sets); i++) {
        const apr_array_header_t *conf = default_sets[i / 2];
        const oaip_refused_fields *refused = i % 2 ? &refusing : NULL;
        oaip_json_request req;
        oaip_error_kind kind = OAIP_ERR__COUNT;
        const char *detail = NULL;
        json_t *client;

        memset(&req, 0, sizeof(req));
        if (!oaip_json_request_prepare_chat(p, input, size, conf, refused, &req, &kind,
                                            &detail)) {
            check_refusal(p, kind, detail);
            check_bad_request(input, size, kind);
            continue;
        }
        client = fuzz_json(input, size, JSON_REJECT_DUPLICATES);
        FUZZ_CHECK(json_is_object(client) &&
                       json_is_array(json_object_get(client, "messages")),
                   "an invalid body was accepted");
        check_prepared(input, size, conf, refused, client, &req);
        check_guarded(client, "chat");
        json_decref(client);
        check_cap_tokens(p, &req, (i / 2) % 2 ? "max_tokens" : NULL);
        check_ask_usage(p, &req);
    }
    check_refusal_names(p, input, size);
    return 0;
}
