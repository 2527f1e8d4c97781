/* Chat Completions request validation, defaults and OpenAIProxyDefault values. */
#include "unit.h"

#include <apr_strings.h>
#include <apr_tables.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/request.h"

typedef struct {
    oaip_json_request req;
    json_t *json; /* req.body parsed */
} prepared;

typedef struct {
    const char *value;
    const char *json; /* expected *json */
} value_case;

static apr_status_t free_buffer(void *buffer)
{
    free(buffer);
    return APR_SUCCESS;
}

/* A malloc'ed copy of `text` without its terminating NUL, so that ASan sees
 * any read past the `len` bytes the handler hands over. */
static const char *unterminated(apr_pool_t *p, const char *text, size_t len)
{
    char *copy = malloc(len ? len : 1);

    assert_non_null(copy);
    memcpy(copy, text, len);
    apr_pool_cleanup_register(p, copy, free_buffer, apr_pool_cleanup_null);
    return copy;
}

static apr_array_header_t *no_defaults(apr_pool_t *p)
{
    return apr_array_make(p, 4, sizeof(oaip_default));
}

static int prepare(apr_pool_t *p, const char *body, const apr_array_header_t *configured,
                   oaip_json_request *out, oaip_error_kind *kind, const char **detail)
{
    size_t len = strlen(body);

    *detail = NULL;
    return oaip_json_request_prepare_chat(p, unterminated(p, body, len), len, configured,
                                          NULL, out, kind, detail);
}

/* Prepares `body`, which must be accepted, and parses the result. */
static prepared expect_accepted(apr_pool_t *p, const char *body,
                                const apr_array_header_t *configured)
{
    prepared result;
    oaip_error_kind kind;
    const char *detail;

    memset(&result, 0, sizeof(result));
    if (!prepare(p, body, configured, &result.req, &kind, &detail)) {
        fail_msg("body refused (kind %d: %s): %.200s", (int)kind, detail, body);
    }
    assert_non_null(result.req.body);
    assert_int_equal(result.req.body_len, strlen(result.req.body));
    result.json = unit_json_parse(p, result.req.body, result.req.body_len);
    assert_true(json_is_object(result.json));
    return result;
}

/* Prepares `body`, which must be refused as `expected`; returns the detail. */
static const char *expect_refused(apr_pool_t *p, const char *body,
                                  oaip_error_kind expected)
{
    oaip_json_request out;
    oaip_error_kind kind = OAIP_ERR__COUNT;
    const char *detail;

    if (prepare(p, body, NULL, &out, &kind, &detail)) {
        fail_msg("body accepted: %.200s", body);
    }
    if (kind != expected) {
        fail_msg("body refused as kind %d, expected %d: %.200s", (int)kind, (int)expected,
                 body);
    }
    if (detail == NULL || *detail == '\0') {
        fail_msg("no detail for: %.200s", body);
    }
    return detail;
}

static void expect_all_refused(apr_pool_t *p, const char *const *bodies, size_t n,
                               oaip_error_kind expected)
{
    size_t i;

    for (i = 0; i < n; i++) {
        expect_refused(p, bodies[i], expected);
    }
}

/* The upstream body starts with the client's bytes up to its final '}'. */
static void assert_keeps_client_bytes(const char *client, const prepared *r)
{
    const char *close = strrchr(client, '}');
    size_t n;

    assert_non_null(close);
    n = (size_t)(close - client);
    if (r->req.body_len < n + 1 || memcmp(r->req.body, client, n) != 0) {
        fail_msg("client bytes not kept:\n  sent %s\n  got  %s", client, r->req.body);
    }
}

static json_t *member(const prepared *r, const char *name)
{
    return json_object_get(r->json, name);
}

static void assert_string_member(const prepared *r, const char *name,
                                 const char *expected)
{
    json_t *value = member(r, name);

    if (!json_is_string(value)) {
        fail_msg("\"%s\" is missing or not a string in %s", name, r->req.body);
    }
    assert_string_equal(json_string_value(value), expected);
}

static void assert_no_member(const prepared *r, const char *name)
{
    if (member(r, name) != NULL) {
        fail_msg("unexpected \"%s\" in %s", name, r->req.body);
    }
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (strstr(haystack, needle) == NULL) {
        fail_msg("\"%s\" not found in %s", needle, haystack);
    }
}

/* ---- validation ---- */

static int prepare_json(apr_pool_t *p, const char *body, oaip_json_request *out,
                        oaip_error_kind *kind, const char **detail)
{
    size_t len = strlen(body);

    return oaip_json_request_prepare(p, unterminated(p, body, len), len, out, kind,
                                     detail);
}

static void test_json_endpoint_bodies(void **state)
{
    apr_pool_t *p = *state;
    static const char embeddings[] =
        "{\"model\":\"text-embedding-3-small\",\"input\":\"hi\"}";
    oaip_json_request out;
    oaip_error_kind kind;
    const char *detail = NULL;

    assert_true(prepare_json(p, embeddings, &out, &kind, &detail));
    assert_string_equal(out.model, "text-embedding-3-small");
    assert_int_equal(out.body_len, strlen(embeddings));
    assert_memory_equal(out.body, embeddings, out.body_len); /* forwarded as it is */
    assert_false(out.stream);
    assert_false(out.usage_added);
    /* no messages needed, no defaults added */
    assert_true(
        prepare_json(p, "{\"input\":\"x\",\"stream\":true}", &out, &kind, &detail));
    assert_null(out.model);
    assert_true(out.stream);
    assert_int_equal(out.body_len, strlen("{\"input\":\"x\",\"stream\":true}"));
    /* "stream" counts on every endpoint: an upstream may stream what the
     * proxy does not know to stream (issue 9) */
    assert_true(prepare_json(p, "{\"stream\":true}", &out, &kind, &detail));
    assert_true(out.stream);
    assert_true(prepare_json(p, "{\"model\":5,\"stream\":null}", &out, &kind, &detail));
    assert_null(out.model);
    assert_false(out.stream);
    /* a stream that is no boolean is refused, never guessed */
    assert_false(
        prepare_json(p, "{\"model\":\"m\",\"stream\":\"yes\"}", &out, &kind, &detail));
    assert_int_equal(kind, OAIP_ERR_BAD_REQUEST);
}

static void test_json_endpoint_errors(void **state)
{
    apr_pool_t *p = *state;
    oaip_json_request out;
    oaip_error_kind kind;
    const char *detail = NULL;

    assert_false(prepare_json(p, " \n", &out, &kind, &detail));
    assert_int_equal(kind, OAIP_ERR_EMPTY_BODY);
    assert_string_equal(detail, "The request body is empty; send a JSON object");
    assert_false(prepare_json(p, "{\"a\":", &out, &kind, &detail));
    assert_int_equal(kind, OAIP_ERR_INVALID_JSON);
    assert_false(prepare_json(p, "[1]", &out, &kind, &detail));
    assert_int_equal(kind, OAIP_ERR_NOT_OBJECT);
    assert_string_equal(detail, "The request body must be a JSON object, not an array");
    assert_false(prepare_json(p, "{\"a\":1,\"a\":2}", &out, &kind, &detail));
    assert_int_equal(kind, OAIP_ERR_INVALID_JSON);
}

static void test_empty_body(void **state)
{
    static const char *const bodies[] = {"", " ", "\n", " \t\r\n "};

    expect_all_refused(*state, bodies, N_ELEMS(bodies), OAIP_ERR_EMPTY_BODY);
}

static void test_invalid_json(void **state)
{
    static const char *const bodies[] = {
        "{",
        "nope",
        "{\"messages\":[]",
        "{\"messages\":[]}}",
        "{\"messages\":[]} x",
        "{\"messages\":[]}{}",
        "{\"messages\":[],}",
        "{'messages':[]}",
        "{\"messages\":[\"\xff\"]}",
        "{\"messages\":[\"\\u0000\"]}",
        "{\"messages\":[],\"x\":NaN}",
    };
    apr_pool_t *p = *state;
    const char *detail;

    expect_all_refused(p, bodies, N_ELEMS(bodies), OAIP_ERR_INVALID_JSON);
    detail = expect_refused(p, "{", OAIP_ERR_INVALID_JSON);
    assert_contains(detail, "line 1");
    assert_contains(detail, "column");
    detail = expect_refused(p, "\n\n  nope", OAIP_ERR_INVALID_JSON);
    assert_contains(detail, "line 3");
    assert_contains(detail, "column");
}

static void test_not_object(void **state)
{
    static const char *const bodies[] = {"null", "[]", "\"x\"", "42", "true", "[{}]"};

    expect_all_refused(*state, bodies, N_ELEMS(bodies), OAIP_ERR_NOT_OBJECT);
}

static void test_invalid_messages(void **state)
{
    static const char *const bodies[] = {
        "{}",
        "{\"messages\":\"hi\"}",
        "{\"messages\":null}",
        "{\"messages\":{}}",
        "{\"messages\":1}",
        "{\"Messages\":[]}",
        "{\"model\":\"gpt-4o\",\"x\":{\"messages\":[]}}",
    };
    apr_pool_t *p = *state;

    expect_all_refused(p, bodies, N_ELEMS(bodies), OAIP_ERR_INVALID_MESSAGES);
    assert_contains(expect_refused(p, "{\"messages\":\"hi\"}", OAIP_ERR_INVALID_MESSAGES),
                    "string");
}

/* Two values for one key could be read differently by the proxy and upstream. */
static void test_duplicate_keys(void **state)
{
    static const char *const bodies[] = {
        "{\"messages\":[],\"messages\":[]}",
        "{\"messages\":[],\"model\":\"a\",\"model\":\"b\"}",
        "{\"messages\":[],\"stream\":false,\"stream\":true}",
        "{\"messages\":[],\"m\\u006fdel\":\"a\",\"model\":\"b\"}",
    };

    expect_all_refused(*state, bodies, N_ELEMS(bodies), OAIP_ERR_INVALID_JSON);
}

/* ---- built-in defaults ---- */

static void test_builtin_defaults(void **state)
{
    const char *client = "{\"messages\":[]}";
    prepared r = expect_accepted(*state, client, NULL);

    assert_keeps_client_bytes(client, &r);
    assert_string_member(&r, "model", "gpt-3.5-turbo");
    assert_true(json_is_real(member(&r, "temperature")));
    assert_true(fabs(json_real_value(member(&r, "temperature")) - 0.7) < 1e-9);
    assert_contains(r.req.body, "\"temperature\":0.7");
    assert_null(strstr(r.req.body, "0.6999"));
    assert_true(json_is_integer(member(&r, "max_tokens")));
    assert_int_equal(json_integer_value(member(&r, "max_tokens")), 1000);
    assert_true(json_is_false(member(&r, "stream")));
    assert_int_equal(r.req.stream, 0);
    assert_non_null(r.req.model);
    assert_string_equal(r.req.model, "gpt-3.5-turbo");
    assert_int_equal(json_object_size(r.json), 5);
}

static void test_empty_configured_array_is_builtin(void **state)
{
    apr_pool_t *p = *state;
    prepared with_null = expect_accepted(p, "{\"messages\":[]}", NULL);
    prepared with_empty = expect_accepted(p, "{\"messages\":[]}", no_defaults(p));

    assert_string_equal(with_empty.req.body, with_null.req.body);
}

static void test_client_temperature_zero_kept(void **state)
{
    prepared r = expect_accepted(*state, "{\"messages\":[],\"temperature\":0}", NULL);

    assert_true(json_is_integer(member(&r, "temperature")));
    assert_int_equal(json_integer_value(member(&r, "temperature")), 0);
    assert_null(strstr(r.req.body, "0.7"));
}

static void test_client_null_value_kept(void **state)
{
    prepared r = expect_accepted(*state, "{\"messages\":[],\"temperature\":null}", NULL);

    assert_true(json_is_null(member(&r, "temperature")));
}

static void test_client_stream_true(void **state)
{
    prepared r = expect_accepted(*state, "{\"stream\":true,\"messages\":[]}", NULL);

    assert_int_equal(r.req.stream, 1);
    assert_true(json_is_true(member(&r, "stream")));
}

/* Issue 9: a lenient upstream streams "true" or 1, which the proxy took for
 * no stream (no MaxStreams slot, no usage chunk asked for): refused now. */
static void test_client_stream_not_boolean(void **state)
{
    static const char *const refused[] = {
        "{\"messages\":[],\"stream\":\"true\"}",
        "{\"messages\":[],\"stream\":1}",
        "{\"messages\":[],\"stream\":{}}",
        "{\"messages\":[],\"stream\":true,\"stream_options\":true}",
        "{\"messages\":[],\"stream\":true,\"stream_options\":[]}",
        "{\"messages\":[],\"stream\":true,\"stream_options\":{\"include_usage\":\"no\"}}",
        "{\"messages\":[],\"Stream\":true}",
        "{\"messages\":[],\"STREAM_OPTIONS\":{}}",
        "{\"messages\":[],\"stream_options\":{\"Include_Usage\":false}}",
    };
    apr_pool_t *p = *state;
    oaip_json_request out;
    oaip_error_kind kind;
    const char *detail;
    size_t i;

    for (i = 0; i < N_ELEMS(refused); i++) {
        if (prepare(p, refused[i], NULL, &out, &kind, &detail)) {
            fail_msg("accepted: %s", refused[i]);
        }
        assert_int_equal(kind, OAIP_ERR_BAD_REQUEST);
        assert_non_null(detail);
    }
    assert_int_equal(
        expect_accepted(p, "{\"messages\":[],\"stream\":false}", NULL).req.stream, 0);
    assert_int_equal(
        expect_accepted(p, "{\"messages\":[],\"stream\":null}", NULL).req.stream, 0);
}

static void test_client_bytes_preserved(void **state)
{
    static const char *const clients[] = {
        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"top_p\":0.5,"
        "\"user\":\"u1\",\"unknown_field\":{\"a\":[1,2]}}",
        "{ \"messages\" : [ {\"role\":\"user\",\"content\":\"h\\u00e9llo \\\"}\\\" "
        "\xc3\xa9\"} ]"
        " ,\n\t\"top_p\" : 0.50 , \"n\":1 , \"logit_bias\":{\"50256\":-100} }",
        "{\"messages\":[],\"x\":\"}\"}",
    };
    apr_pool_t *p = *state;
    size_t i;

    for (i = 0; i < N_ELEMS(clients); i++) {
        prepared r = expect_accepted(p, clients[i], NULL);
        assert_keeps_client_bytes(clients[i], &r);
        assert_string_member(&r, "model", "gpt-3.5-turbo");
    }
}

static void test_unknown_fields_kept(void **state)
{
    prepared r = expect_accepted(*state,
                                 "{\"messages\":[],\"top_p\":0.5,\"user\":\"u1\","
                                 "\"unknown_field\":{\"a\":[1,2]}}",
                                 NULL);
    json_t *unknown = member(&r, "unknown_field");

    assert_true(json_real_value(member(&r, "top_p")) == 0.5);
    assert_string_member(&r, "user", "u1");
    assert_true(json_is_object(unknown));
    assert_int_equal(json_array_size(json_object_get(unknown, "a")), 2);
}

static void test_surrounding_whitespace(void **state)
{
    static const char *const clients[] = {
        "{\"messages\":[]} \n\t\r\n",
        "\r\n  {\"messages\":[]}",
        " \n{ \"messages\" : [ ] }\n ",
    };
    apr_pool_t *p = *state;
    size_t i;

    for (i = 0; i < N_ELEMS(clients); i++) {
        prepared r = expect_accepted(p, clients[i], NULL);
        assert_keeps_client_bytes(clients[i], &r);
        assert_int_equal(r.req.body[r.req.body_len - 1], '}');
        assert_string_member(&r, "model", "gpt-3.5-turbo");
    }
}

/* Only `len` bytes are the body, whatever follows them in memory. */
static void test_body_length_is_respected(void **state)
{
    apr_pool_t *p = *state;
    const char *text = "{\"messages\":[]}}garbage";
    oaip_json_request out;
    oaip_error_kind kind;
    const char *detail = NULL;
    size_t len = strlen("{\"messages\":[]}");

    assert_true(oaip_json_request_prepare_chat(p, unterminated(p, text, strlen(text)),
                                               len, NULL, NULL, &out, &kind, &detail));
    assert_null(strstr(out.body, "garbage"));
    unit_json_parse(p, out.body, out.body_len);
    assert_int_equal(oaip_json_request_prepare_chat(p, unterminated(p, text, 0), 0, NULL,
                                                    NULL, &out, &kind, &detail),
                     0);
    assert_int_equal(kind, OAIP_ERR_EMPTY_BODY);
}

static void test_max_completion_tokens(void **state)
{
    prepared r =
        expect_accepted(*state, "{\"messages\":[],\"max_completion_tokens\":50}", NULL);

    assert_no_member(&r, "max_tokens");
    assert_int_equal(json_integer_value(member(&r, "max_completion_tokens")), 50);
    assert_true(json_is_real(member(&r, "temperature")));
}

static void test_client_max_tokens_kept(void **state)
{
    prepared r = expect_accepted(*state, "{\"messages\":[],\"max_tokens\":7}", NULL);

    assert_int_equal(json_integer_value(member(&r, "max_tokens")), 7);
}

static void test_model_reported(void **state)
{
    apr_pool_t *p = *state;
    prepared own = expect_accepted(p, "{\"model\":\"gpt-4o\",\"messages\":[]}", NULL);
    prepared escaped =
        expect_accepted(p, "{\"model\":\"gpt-\\u0034o\",\"messages\":[]}", NULL);

    assert_string_equal(own.req.model, "gpt-4o");
    assert_string_member(&own, "model", "gpt-4o");
    assert_string_equal(escaped.req.model, "gpt-4o");
}

static void test_model_not_string(void **state)
{
    static const char *const bodies[] = {
        "{\"messages\":[],\"model\":42}",
        "{\"messages\":[],\"model\":null}",
        "{\"messages\":[],\"model\":[\"gpt-4o\"]}",
        "{\"messages\":[],\"model\":{\"name\":\"gpt-4o\"}}",
    };
    apr_pool_t *p = *state;
    size_t i;

    for (i = 0; i < N_ELEMS(bodies); i++) {
        prepared r = expect_accepted(p, bodies[i], NULL);
        if (r.req.model != NULL) {
            fail_msg("model \"%s\" reported for %s", r.req.model, bodies[i]);
        }
    }
}

/* ---- configured defaults ---- */

static void test_configured_model(void **state)
{
    apr_pool_t *p = *state;
    apr_array_header_t *configured = no_defaults(p);
    prepared r, own;

    oaip_defaults_set(configured, "model", "\"gpt-4o-mini\"");
    r = expect_accepted(p, "{\"messages\":[]}", configured);
    assert_string_member(&r, "model", "gpt-4o-mini");
    assert_string_equal(r.req.model, "gpt-4o-mini");
    assert_null(strstr(r.req.body, "gpt-3.5-turbo"));
    assert_true(json_is_real(member(&r, "temperature")));
    assert_int_equal(json_integer_value(member(&r, "max_tokens")), 1000);

    own = expect_accepted(p, "{\"messages\":[],\"model\":\"o1\"}", configured);
    assert_string_member(&own, "model", "o1");
    assert_string_equal(own.req.model, "o1");
}

static void test_configured_removal(void **state)
{
    apr_pool_t *p = *state;
    apr_array_header_t *configured = no_defaults(p);
    prepared r;

    oaip_defaults_set(configured, "temperature", NULL);
    oaip_defaults_set(configured, "model", NULL);
    oaip_defaults_set(configured, "stream", NULL);
    r = expect_accepted(p, "{\"messages\":[]}", configured);
    assert_no_member(&r, "temperature");
    assert_no_member(&r, "model");
    assert_no_member(&r, "stream");
    assert_null(r.req.model);
    assert_int_equal(r.req.stream, 0);
    assert_int_equal(json_integer_value(member(&r, "max_tokens")), 1000);

    r = expect_accepted(p, "{\"messages\":[],\"temperature\":1,\"stream\":true}",
                        configured);
    assert_int_equal(json_integer_value(member(&r, "temperature")), 1);
    assert_int_equal(r.req.stream, 1);
}

static void test_configured_new_field(void **state)
{
    apr_pool_t *p = *state;
    apr_array_header_t *configured = no_defaults(p);
    prepared r;

    oaip_defaults_set(configured, "user", "\"proxy\"");
    oaip_defaults_set(configured, "response_format", "{\"type\":\"json_object\"}");
    r = expect_accepted(p, "{\"messages\":[]}", configured);
    assert_string_member(&r, "user", "proxy");
    assert_string_equal(
        json_string_value(json_object_get(member(&r, "response_format"), "type")),
        "json_object");

    r = expect_accepted(p, "{\"messages\":[],\"user\":\"u1\"}", configured);
    assert_string_member(&r, "user", "u1");
}

static void test_configured_stream(void **state)
{
    apr_pool_t *p = *state;
    apr_array_header_t *configured = no_defaults(p);
    prepared r;

    oaip_defaults_set(configured, "stream", "true");
    r = expect_accepted(p, "{\"messages\":[]}", configured);
    assert_int_equal(r.req.stream, 1);
    assert_int_equal(
        expect_accepted(p, "{\"messages\":[],\"stream\":false}", configured).req.stream,
        0);
}

/* A configured max_completion_tokens is sent upstream too, and upstream
 * refuses it next to max_tokens just as when the client sends it. */
static void test_configured_max_completion_tokens(void **state)
{
    apr_pool_t *p = *state;
    apr_array_header_t *configured = no_defaults(p);
    prepared r;

    oaip_defaults_set(configured, "max_completion_tokens", "2000");
    r = expect_accepted(p, "{\"messages\":[]}", configured);
    assert_int_equal(json_integer_value(member(&r, "max_completion_tokens")), 2000);
    assert_no_member(&r, "max_tokens");
}

static void test_defaults_set_replaces(void **state)
{
    apr_pool_t *p = *state;
    apr_array_header_t *configured = no_defaults(p);
    prepared r;

    oaip_defaults_set(configured, "model", "\"first\"");
    oaip_defaults_set(configured, "user", "\"u\"");
    oaip_defaults_set(configured, "model", "\"second\"");
    assert_int_equal(configured->nelts, 2);
    r = expect_accepted(p, "{\"messages\":[]}", configured);
    assert_string_member(&r, "model", "second");
    assert_string_equal(r.req.model, "second");

    oaip_defaults_set(configured, "model", NULL);
    assert_int_equal(configured->nelts, 2);
    r = expect_accepted(p, "{\"messages\":[]}", configured);
    assert_no_member(&r, "model");
}

static const char *default_json(const apr_array_header_t *list, const char *name)
{
    int i;

    for (i = 0; i < list->nelts; i++) {
        const oaip_default *d = &APR_ARRAY_IDX(list, i, oaip_default);
        if (strcmp(d->name, name) == 0) {
            return d->json ? d->json : "(removed)";
        }
    }
    return "(absent)";
}

static void test_defaults_merge(void **state)
{
    apr_pool_t *p = *state;
    apr_array_header_t *base = no_defaults(p), *add = no_defaults(p), *merged;

    oaip_defaults_set(base, "model", "\"base\"");
    oaip_defaults_set(base, "temperature", "0.1");
    oaip_defaults_set(base, "user", "\"base-user\"");
    oaip_defaults_set(add, "model", "\"add\"");
    oaip_defaults_set(add, "top_p", "0.9");
    oaip_defaults_set(add, "user", NULL);

    merged = oaip_defaults_merge(p, base, add);
    assert_int_equal(merged->nelts, 4);
    assert_string_equal(default_json(merged, "model"), "\"add\"");
    assert_string_equal(default_json(merged, "temperature"), "0.1");
    assert_string_equal(default_json(merged, "top_p"), "0.9");
    assert_string_equal(default_json(merged, "user"), "(removed)");

    assert_int_equal(base->nelts, 3);
    assert_string_equal(default_json(base, "model"), "\"base\"");
    assert_string_equal(default_json(base, "user"), "\"base-user\"");
    assert_string_equal(default_json(base, "top_p"), "(absent)");
    assert_int_equal(add->nelts, 3);

    /* the merged array is independent of base */
    oaip_defaults_set(merged, "temperature", "0.3");
    assert_string_equal(default_json(base, "temperature"), "0.1");
}

static void test_defaults_merge_empty(void **state)
{
    apr_pool_t *p = *state;
    apr_array_header_t *base = no_defaults(p), *merged;

    oaip_defaults_set(base, "model", "\"base\"");
    merged = oaip_defaults_merge(p, base, no_defaults(p));
    assert_int_equal(merged->nelts, 1);
    assert_string_equal(default_json(merged, "model"), "\"base\"");
    merged = oaip_defaults_merge(p, no_defaults(p), base);
    assert_int_equal(merged->nelts, 1);
    assert_string_equal(default_json(merged, "model"), "\"base\"");
}

/* ---- oaip_default_value_parse ---- */

static const value_case accepted_values[] = {
    {"0.2", "0.2"},
    {"1000", "1000"},
    {"true", "true"},
    {"gpt-4o-mini", "\"gpt-4o-mini\""},
    {"ft:gpt-4o:org/x@y.z_1", "\"ft:gpt-4o:org/x@y.z_1\""},
    {"\"x y\"", "\"x y\""},
    {"\"quote \\\" inside\"", "\"quote \\\" inside\""},
    {"{\"a\":1}", "{\"a\":1}"},
    {"[\"a\",\"b\"]", "[\"a\",\"b\"]"},
};

static void test_value_parse_accepts(void **state)
{
    apr_pool_t *p = *state;
    size_t i;

    for (i = 0; i < N_ELEMS(accepted_values); i++) {
        const char *json = NULL;
        const char *error =
            oaip_default_value_parse(p, "user", accepted_values[i].value, &json);
        if (error != NULL) {
            fail_msg("value %s refused: %s", accepted_values[i].value, error);
        }
        assert_non_null(json);
        assert_string_equal(json, accepted_values[i].json);
        unit_json_parse(p, json, strlen(json));
    }
}

static void test_value_parse_none(void **state)
{
    const char *json = "unchanged";

    assert_null(oaip_default_value_parse(*state, "temperature", "none", &json));
    assert_null(json);
}

static void test_value_parse_refuses_value(void **state)
{
    static const char *const values[] = {
        "{bad",
        "two words",
        "\"unterminated",
        "4o",
        "",
        " ",
        "1,\"model\":\"evil\"",
        "a\",\"model\":\"evil",
        "{\"a\":1,\"a\":2}",
        "0.2 // comment",
        "'single'",
    };
    apr_pool_t *p = *state;
    size_t i;

    for (i = 0; i < N_ELEMS(values); i++) {
        const char *json = NULL;
        const char *error = oaip_default_value_parse(p, "user", values[i], &json);
        if (error == NULL || *error == '\0') {
            fail_msg("value \"%s\" accepted as %s", values[i], json ? json : "(NULL)");
        }
    }
}

static void test_value_parse_refuses_name(void **state)
{
    static const char *const names[] = {
        "messages", "", "has space", "a\"b", "x\ny", "a:b", "a,b", "caf\xc3\xa9",
    };
    apr_pool_t *p = *state;
    size_t i;

    for (i = 0; i < N_ELEMS(names); i++) {
        const char *json = NULL;
        const char *error = oaip_default_value_parse(p, names[i], "1", &json);
        if (error == NULL || *error == '\0') {
            fail_msg("name \"%s\" accepted", names[i]);
        }
    }
}

/* Issue 9: a default is held to the rules of a client's field, so that
 * `apachectl -t` refuses what the upstream could read otherwise. */
static void test_value_parse_refuses_guarded_types(void **state)
{
    static const char *const bad[][2] = {
        {"max_tokens", "\"9999\""},
        {"max_tokens", "64.5"},
        {"max_completion_tokens", "-1"},
        {"n", "0"},
        {"stream", "yes"},
        {"stream", "1"},
        {"stream_options", "true"},
        {"MAX_TOKENS", "5"},
        {"Stream", "true"},
    };
    apr_pool_t *p = *state;
    size_t i;

    for (i = 0; i < N_ELEMS(bad); i++) {
        const char *json = NULL;
        const char *error = oaip_default_value_parse(p, bad[i][0], bad[i][1], &json);
        if (error == NULL || *error == '\0') {
            fail_msg("OpenAIProxyDefault %s %s accepted", bad[i][0], bad[i][1]);
        }
    }
    {
        const char *json = NULL;
        assert_null(oaip_default_value_parse(p, "max_tokens", "256", &json));
        assert_string_equal(json, "256");
        assert_null(oaip_default_value_parse(p, "stream", "true", &json));
        assert_null(oaip_default_value_parse(p, "model", "gpt-4o-mini", &json));
        assert_string_equal(json, "\"gpt-4o-mini\"");
    }
}

/* Every accepted value, appended to a request, gives valid JSON upstream. */
static void test_parsed_values_make_valid_bodies(void **state)
{
    apr_pool_t *p = *state;
    size_t i;

    for (i = 0; i < N_ELEMS(accepted_values); i++) {
        apr_array_header_t *configured = no_defaults(p);
        const char *json = NULL;
        prepared r;
        assert_null(oaip_default_value_parse(p, "user", accepted_values[i].value, &json));
        oaip_defaults_set(configured, "user", json);
        r = expect_accepted(p, "{\"messages\":[]}", configured);
        assert_true(
            json_equal(member(&r, "user"), unit_json_parse(p, json, strlen(json))));
    }
}

/* ---- stress ---- */

static void test_many_messages(void **state)
{
    apr_pool_t *p = *state;
    apr_array_header_t *parts = apr_array_make(p, 10002, sizeof(const char *));
    const char *client;
    prepared r;
    int i;

    APR_ARRAY_PUSH(parts, const char *) = "{\"messages\":[";
    for (i = 0; i < 10000; i++) {
        APR_ARRAY_PUSH(parts, const char *) = apr_psprintf(
            p, "%s{\"role\":\"user\",\"content\":\"message %d\"}", i ? "," : "", i);
    }
    APR_ARRAY_PUSH(parts, const char *) = "]}";
    client = apr_array_pstrcat(p, parts, '\0');

    r = expect_accepted(p, client, NULL);
    assert_keeps_client_bytes(client, &r);
    assert_int_equal(json_array_size(member(&r, "messages")), 10000);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(member(&r, "messages"), 9999), "content")),
                        "message 9999");
}

/* `{"messages":[],"x":` + depth brackets + `}` */
static const char *nested_body(apr_pool_t *p, int depth)
{
    const char *head = "{\"messages\":[],\"x\":";
    size_t head_len = strlen(head);
    char *body = apr_palloc(p, head_len + 2 * (size_t)depth + 2);

    memcpy(body, head, head_len);
    memset(body + head_len, '[', (size_t)depth);
    memset(body + head_len + depth, ']', (size_t)depth);
    body[head_len + 2 * (size_t)depth] = '}';
    body[head_len + 2 * (size_t)depth + 1] = '\0';
    return body;
}

static void test_deep_nesting(void **state)
{
    apr_pool_t *p = *state;
    const char *shallow = nested_body(p, 500);
    prepared r = expect_accepted(p, shallow, NULL);

    assert_keeps_client_bytes(shallow, &r);
    expect_refused(p, nested_body(p, 5000), OAIP_ERR_INVALID_JSON);
    expect_refused(p, nested_body(p, 100000), OAIP_ERR_INVALID_JSON);
}

/* ---- oaip_model_allowed ---- */

static void test_model_allow_list(void **state)
{
    apr_pool_t *p = *state;
    apr_array_header_t *allowed = apr_array_make(p, 2, sizeof(const char *));
    static const struct {
        const char *model;
        int allowed;
    } cases[] = {
        {"gpt-4o-mini", 1},  {"gpt-4o", 0}, {"gpt-4o-mini-2024", 0}, {"o3-mini", 1},
        {"o3-mini-high", 1}, {"o3", 0},     {"GPT-4O-MINI", 0},      {"", 0},
        {NULL, 0},
    };
    size_t i;

    APR_ARRAY_PUSH(allowed, const char *) = "gpt-4o-mini";
    APR_ARRAY_PUSH(allowed, const char *) = "o3-mini*";
    for (i = 0; i < N_ELEMS(cases); i++) {
        if (oaip_model_allowed(allowed, cases[i].model) != cases[i].allowed) {
            fail_msg("model %s: expected %s", cases[i].model ? cases[i].model : "(null)",
                     cases[i].allowed ? "allowed" : "refused");
        }
    }
    allowed->nelts = 0;
    assert_false(oaip_model_allowed(allowed, "gpt-4o-mini"));
}

/* ---- oaip_json_request_cap_tokens ---- */

static int cap_as(apr_pool_t *p, const char *body, json_int_t limit, const char *missing,
                  json_t **result)
{
    oaip_json_request req = {body, strlen(body), 0, NULL, 0, 0, OAIP_FAMILY_CHAT, NULL};
    int changed = oaip_json_request_cap_tokens(p, &req, limit, missing);

    *result = unit_json_parse(p, req.body, req.body_len);
    if (!changed) {
        assert_ptr_equal(req.body, body); /* untouched bytes */
    }
    return changed;
}

static int cap(apr_pool_t *p, const char *body, json_int_t limit, json_t **result)
{
    return cap_as(p, body, limit, NULL, result);
}

static void test_cap_tokens(void **state)
{
    apr_pool_t *p = *state;
    json_t *out;

    assert_true(
        cap(p, "{\"messages\":[],\"max_tokens\":5000,\"temperature\":0.7}", 100, &out));
    assert_int_equal(json_integer_value(json_object_get(out, "max_tokens")), 100);
    assert_true(json_real_value(json_object_get(out, "temperature")) == 0.7);

    assert_true(cap(p, "{\"messages\":[],\"max_completion_tokens\":100000}", 100, &out));
    assert_int_equal(json_integer_value(json_object_get(out, "max_completion_tokens")),
                     100);

    assert_false(cap(p, "{\"messages\":[],\"max_tokens\":100}", 100, &out));
    assert_false(cap(p, "{\"messages\":[]}", 100, &out));
    assert_null(json_object_get(out, "max_tokens")); /* not added where none is named */

    /* the Responses API's name for it */
    assert_true(cap(p, "{\"input\":\"hi\",\"max_output_tokens\":4096}", 100, &out));
    assert_int_equal(json_integer_value(json_object_get(out, "max_output_tokens")), 100);
    assert_string_equal(json_string_value(json_object_get(out, "input")), "hi");
}

/* Issue 9: null (the upstream's default, often "no limit") lifted the cap,
 * and so did leaving the field out where the upstream has no limit. */
static void test_cap_tokens_null_and_missing(void **state)
{
    apr_pool_t *p = *state;
    json_t *out;

    assert_true(cap(p, "{\"messages\":[],\"max_tokens\":null}", 64, &out));
    assert_int_equal(json_integer_value(json_object_get(out, "max_tokens")), 64);
    assert_true(cap(p, "{\"input\":\"x\",\"max_output_tokens\":null}", 64, &out));
    assert_int_equal(json_integer_value(json_object_get(out, "max_output_tokens")), 64);

    assert_true(cap_as(p, "{\"input\":\"x\"}", 64, "max_output_tokens", &out));
    assert_int_equal(json_integer_value(json_object_get(out, "max_output_tokens")), 64);
    assert_true(cap_as(p, "{\"prompt\":\"x\"}", 64, "max_tokens", &out));
    assert_int_equal(json_integer_value(json_object_get(out, "max_tokens")), 64);
    /* a field that is there is capped, no second one added */
    assert_true(cap_as(p, "{\"messages\":[],\"max_completion_tokens\":900}", 64,
                       "max_tokens", &out));
    assert_null(json_object_get(out, "max_tokens"));
    assert_int_equal(json_integer_value(json_object_get(out, "max_completion_tokens")),
                     64);
    assert_false(cap_as(p, "{\"messages\":[],\"max_completion_tokens\":9}", 64,
                        "max_tokens", &out));
}

/* Issue 9: a limit of the wrong type was forwarded for a lenient upstream
 * to read ("9999", 1e9, -1 for unlimited); such bodies are refused. */
static void test_limit_fields_refused(void **state)
{
    static const char *const fields[] = {"max_tokens", "max_completion_tokens",
                                         "max_output_tokens", "n", "best_of"};
    static const char *const values[] = {"\"9999\"", "\"1e3\"", "1e9",  "64.0", "64.5",
                                         "-1",       "0",       "true", "[64]", "{}"};
    apr_pool_t *p = *state;
    oaip_json_request out;
    oaip_error_kind kind;
    const char *detail;
    size_t i, j;

    for (i = 0; i < N_ELEMS(fields); i++) {
        for (j = 0; j < N_ELEMS(values); j++) {
            const char *body =
                apr_psprintf(p, "{\"messages\":[],\"%s\":%s}", fields[i], values[j]);
            if (prepare(p, body, NULL, &out, &kind, &detail) ||
                prepare_json(p, body, &out, &kind, &detail)) {
                fail_msg("accepted: %s", body);
            }
            assert_int_equal(kind, OAIP_ERR_BAD_REQUEST);
            assert_non_null(strstr(detail, fields[i]));
        }
        /* null and whole numbers from 1 are what OpenAI takes */
        assert_true(prepare(p,
                            apr_psprintf(p, "{\"messages\":[],\"%s\":null}", fields[i]),
                            NULL, &out, &kind, &detail));
        assert_true(prepare_json(p, apr_psprintf(p, "{\"%s\":7}", fields[i]), &out, &kind,
                                 &detail));
    }
}

/* Issue 9: a case-insensitive upstream (Go's encoding/json) reads
 * "MAX_TOKENS" as max_tokens, and the last copy wins there. */
static void test_limit_field_lookalikes_refused(void **state)
{
    static const char *const bodies[] = {
        "{\"messages\":[],\"max_tokens\":10,\"MAX_TOKENS\":100000}",
        "{\"messages\":[],\"Max_Completion_Tokens\":100000}",
        "{\"input\":\"x\",\"max_output_toKens\":5}",
        "{\"messages\":[],\"model\":\"gpt-4o-mini\",\"Model\":\"o1-pro\"}",
        "{\"messages\":[],\"N\":128}",
        /* U+212A KELVIN SIGN and U+017F LATIN SMALL LETTER LONG S fold to k, s */
        "{\"messages\":[],\"max_to\xe2\x84\xaa"
        "ens\":100000}",
        "{\"messages\":[],\"\xc5\xbftream\":true}",
    };
    apr_pool_t *p = *state;
    oaip_json_request out;
    oaip_error_kind kind;
    const char *detail;
    size_t i;

    for (i = 0; i < N_ELEMS(bodies); i++) {
        if (prepare(p, bodies[i], NULL, &out, &kind, &detail) ||
            prepare_json(p, bodies[i], &out, &kind, &detail)) {
            fail_msg("accepted: %s", bodies[i]);
        }
        assert_int_equal(kind, OAIP_ERR_BAD_REQUEST);
    }
    /* names that only share letters stay */
    assert_true(prepare(p, "{\"messages\":[],\"max_tokens_hint\":1,\"models\":[]}", NULL,
                        &out, &kind, &detail));
}

/* ---- oaip_json_request_ask_usage ---- */

static json_t *ask_usage(apr_pool_t *p, const char *body, int stream, int *added)
{
    /* as oaip_json_request_prepare_chat would have found it */
    oaip_json_request req = {body,
                             strlen(body),
                             stream,
                             NULL,
                             0,
                             strstr(body, "stream_options") != NULL,
                             OAIP_FAMILY_CHAT,
                             NULL};

    *added = oaip_json_request_ask_usage(p, &req);
    assert_int_equal(req.usage_added, *added);
    return unit_json_parse(p, req.body, req.body_len);
}

static void test_ask_usage(void **state)
{
    apr_pool_t *p = *state;
    json_t *out;
    int added;

    out = ask_usage(p, "{\"messages\":[],\"stream\":true}  ", 1, &added);
    assert_true(added);
    assert_true(json_is_true(
        json_object_get(json_object_get(out, "stream_options"), "include_usage")));
    out = ask_usage(p, "{\"messages\":[],\"stream_options\":{\"x\":1}}", 1, &added);
    assert_true(added);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(out, "stream_options"), "x")),
        1);
    out = ask_usage(p, "{\"messages\":[],\"stream_options\":{\"include_usage\":true}}", 1,
                    &added);
    assert_false(added); /* the client asked itself: it sees the chunk */
    out = ask_usage(p, "{\"messages\":[]}", 0, &added);
    assert_false(added); /* not a stream */
    assert_null(json_object_get(out, "stream_options"));
    /* issue 9: null options, or include_usage false or null, still get the
     * usage chunk, which the client then does not see */
    out = ask_usage(p, "{\"messages\":[],\"stream\":true,\"stream_options\":null}", 1,
                    &added);
    assert_true(added);
    assert_true(json_is_true(
        json_object_get(json_object_get(out, "stream_options"), "include_usage")));
    out = ask_usage(p, "{\"messages\":[],\"stream_options\":{\"include_usage\":null}}", 1,
                    &added);
    assert_true(added);
    assert_true(json_is_true(
        json_object_get(json_object_get(out, "stream_options"), "include_usage")));
    out = ask_usage(p, "{\"messages\":[],\"stream_options\":{\"include_usage\":false}}",
                    1, &added);
    assert_true(added);
}

/* Found by tests/fuzz (fuzz_request): a configured stream_options default
 * made ask_usage append a second "stream_options" member. */
static void test_ask_usage_with_configured_stream_options(void **state)
{
    apr_pool_t *p = *state;
    apr_array_header_t *configured = no_defaults(p);
    prepared r;
    json_t *out;
    int added;

    oaip_defaults_set(configured, "stream_options", "{\"include_usage\":false}");
    r = expect_accepted(p, "{\"messages\":[],\"stream\":true}", configured);
    added = oaip_json_request_ask_usage(p, &r.req);
    out = unit_json_parse(p, r.req.body, r.req.body_len); /* no duplicate keys */
    assert_true(added);
    assert_true(json_is_true(
        json_object_get(json_object_get(out, "stream_options"), "include_usage")));

    oaip_defaults_set(configured, "stream_options", "{\"include_usage\":true}");
    r = expect_accepted(p, "{\"messages\":[],\"stream\":true}", configured);
    added = oaip_json_request_ask_usage(p, &r.req);
    unit_json_parse(p, r.req.body, r.req.body_len);
    assert_false(added); /* the operator asked for it: clients see the chunk */
}

/* ---- model families, refused fields, what the proxy added ---- */

static prepared expect_prepared(apr_pool_t *p, const char *body,
                                const apr_array_header_t *configured,
                                const oaip_refused_fields *refused)
{
    prepared result;
    oaip_error_kind kind;
    const char *detail = NULL;
    size_t len = strlen(body);

    memset(&result, 0, sizeof(result));
    if (!oaip_json_request_prepare_chat(p, unterminated(p, body, len), len, configured,
                                        refused, &result.req, &kind, &detail)) {
        fail_msg("body refused (%s): %s", detail, body);
    }
    result.json = unit_json_parse(p, result.req.body, result.req.body_len);
    return result;
}

static int added(const oaip_json_request *req, const char *name)
{
    int i;

    for (i = 0; req->added != NULL && i < req->added->nelts; i++) {
        if (strcmp(APR_ARRAY_IDX(req->added, i, const char *), name) == 0) {
            return 1;
        }
    }
    return 0;
}

static int added_count(const oaip_json_request *req)
{
    return req->added ? req->added->nelts : 0;
}

static void test_reasoning_builtin_defaults(void **state)
{
    apr_pool_t *p = *state;
    static const char *const models[] = {
        "o1", "o3", "o3-2025-04-16", "o4-mini", "gpt-5", "gpt-5-mini", "gpt-5-nano"};
    size_t i;

    for (i = 0; i < N_ELEMS(models); i++) {
        const char *body =
            apr_psprintf(p, "{\"messages\":[],\"model\":\"%s\"}", models[i]);
        prepared r = expect_accepted(p, body, NULL);
        assert_int_equal(r.req.family, OAIP_FAMILY_REASONING);
        assert_no_member(&r, "temperature");
        assert_no_member(&r, "max_tokens");
        assert_int_equal(json_integer_value(member(&r, "max_completion_tokens")), 1000);
        assert_true(json_is_false(member(&r, "stream")));
        assert_keeps_client_bytes(body, &r);
        assert_int_equal(added_count(&r.req), 2); /* stream, max_completion_tokens */
        assert_true(added(&r.req, "max_completion_tokens"));
        assert_true(added(&r.req, "stream"));
    }
}

static void test_chat_builtin_defaults_added(void **state)
{
    prepared r = expect_accepted(*state, "{\"messages\":[],\"model\":\"gpt-4.1\"}", NULL);

    assert_int_equal(r.req.family, OAIP_FAMILY_CHAT);
    assert_true(json_is_real(member(&r, "temperature")));
    assert_int_equal(json_integer_value(member(&r, "max_tokens")), 1000);
    assert_no_member(&r, "max_completion_tokens");
    assert_int_equal(added_count(&r.req), 3);
    assert_true(added(&r.req, "temperature") && added(&r.req, "max_tokens") &&
                added(&r.req, "stream"));
    assert_false(added(&r.req, "model")); /* the client's */
}

/* The model default decides the family. */
static void test_reasoning_default_model(void **state)
{
    apr_pool_t *p = *state;
    apr_array_header_t *configured = no_defaults(p);
    prepared r;

    oaip_defaults_set(configured, "model", "\"o4-mini\"");
    r = expect_accepted(p, "{\"messages\":[]}", configured);
    assert_string_equal(r.req.model, "o4-mini");
    assert_int_equal(r.req.family, OAIP_FAMILY_REASONING);
    assert_no_member(&r, "temperature");
    assert_int_equal(json_integer_value(member(&r, "max_completion_tokens")), 1000);
    assert_true(added(&r.req, "model"));
}

/* An operator's temperature is the operator's choice (taken back only when
 * an upstream refuses it); an operator's max_tokens goes in the field the
 * model takes. */
static void test_reasoning_configured_defaults(void **state)
{
    apr_pool_t *p = *state;
    apr_array_header_t *configured = no_defaults(p);
    prepared r, chat;

    oaip_defaults_set(configured, "temperature", "0.2");
    oaip_defaults_set(configured, "max_tokens", "256");
    r = expect_accepted(p, "{\"messages\":[],\"model\":\"o3\"}", configured);
    assert_true(json_real_value(member(&r, "temperature")) == 0.2);
    assert_no_member(&r, "max_tokens");
    assert_int_equal(json_integer_value(member(&r, "max_completion_tokens")), 256);
    chat = expect_accepted(p, "{\"messages\":[],\"model\":\"gpt-4o\"}", configured);
    assert_int_equal(json_integer_value(member(&chat, "max_tokens")), 256);
    assert_no_member(&chat, "max_completion_tokens");
}

/* Both configured: max_completion_tokens wins, as it always did. */
static void test_both_limits_configured(void **state)
{
    apr_pool_t *p = *state;
    apr_array_header_t *configured = no_defaults(p);
    prepared r;

    oaip_defaults_set(configured, "max_tokens", "500");
    oaip_defaults_set(configured, "max_completion_tokens", "300");
    r = expect_accepted(p, "{\"messages\":[],\"model\":\"gpt-4o\"}", configured);
    assert_no_member(&r, "max_tokens");
    assert_int_equal(json_integer_value(member(&r, "max_completion_tokens")), 300);
    r = expect_accepted(p, "{\"messages\":[],\"model\":\"o3\"}", configured);
    assert_no_member(&r, "max_tokens");
    assert_int_equal(json_integer_value(member(&r, "max_completion_tokens")), 300);
}

/* The built-in limit is max_tokens or max_completion_tokens by family:
 * either name removes it. */
static void test_builtin_limit_removed_by_either_name(void **state)
{
    apr_pool_t *p = *state;
    static const char *const names[] = {"max_tokens", "max_completion_tokens"};
    static const char *const models[] = {"gpt-4o", "o3"};
    size_t i, j;

    for (i = 0; i < N_ELEMS(names); i++) {
        apr_array_header_t *configured = no_defaults(p);
        oaip_defaults_set(configured, names[i], NULL);
        for (j = 0; j < N_ELEMS(models); j++) {
            prepared r = expect_accepted(
                p, apr_psprintf(p, "{\"messages\":[],\"model\":\"%s\"}", models[j]),
                configured);
            assert_no_member(&r, "max_tokens");
            assert_no_member(&r, "max_completion_tokens");
        }
    }
}

/* The client's own fields go as sent, whatever the model. */
static void test_reasoning_client_fields_kept(void **state)
{
    apr_pool_t *p = *state;
    const char *body = "{\"messages\":[],\"model\":\"o3\",\"temperature\":0.5,"
                       "\"max_tokens\":10}";
    prepared r = expect_accepted(p, body, NULL);

    assert_true(json_real_value(member(&r, "temperature")) == 0.5);
    assert_int_equal(json_integer_value(member(&r, "max_tokens")), 10);
    assert_no_member(&r, "max_completion_tokens");
    assert_false(added(&r.req, "temperature"));
    assert_false(added(&r.req, "max_tokens"));
    assert_keeps_client_bytes(body, &r);
}

typedef struct {
    const char *const *fields; /* refused, NULL-terminated */
    const char *model_seen;
    int calls;
} refusal_list;

static int refuses(void *ctx, const char *model, const char *field)
{
    refusal_list *list = ctx;
    const char *const *f;

    list->model_seen = model;
    list->calls++;
    for (f = list->fields; *f; f++) {
        if (strcmp(*f, field) == 0) {
            return 1;
        }
    }
    return 0;
}

static void test_refused_defaults_left_out(void **state)
{
    apr_pool_t *p = *state;
    static const char *const fields[] = {"temperature", "max_tokens", "model",
                                         "stream",      "user",       NULL};
    apr_array_header_t *configured = no_defaults(p);
    refusal_list list = {fields, NULL, 0};
    oaip_refused_fields refused = {refuses, &list};
    prepared r;

    oaip_defaults_set(configured, "user", "\"proxy\"");
    oaip_defaults_set(configured, "top_p", "0.9");
    r = expect_prepared(p, "{\"messages\":[],\"model\":\"my-deployment\"}", configured,
                        &refused);
    assert_string_equal(list.model_seen, "my-deployment");
    assert_no_member(&r, "temperature");
    assert_no_member(&r, "user");
    assert_true(json_real_value(member(&r, "top_p")) == 0.9);
    /* a token limit moves to the other field, never goes */
    assert_no_member(&r, "max_tokens");
    assert_int_equal(json_integer_value(member(&r, "max_completion_tokens")), 1000);
    /* what the allow-list and the stream limit checked always goes */
    assert_true(json_is_false(member(&r, "stream")));
    r = expect_prepared(p, "{\"messages\":[]}", configured, &refused);
    assert_string_member(&r, "model", "gpt-3.5-turbo");
}

static void test_both_limit_fields_refused(void **state)
{
    apr_pool_t *p = *state;
    static const char *const fields[] = {"max_tokens", "max_completion_tokens", NULL};
    refusal_list list = {fields, NULL, 0};
    oaip_refused_fields refused = {refuses, &list};
    prepared r;

    r = expect_prepared(p, "{\"messages\":[],\"model\":\"gpt-4o\"}", NULL, &refused);
    assert_int_equal(json_integer_value(member(&r, "max_tokens")), 1000);
    r = expect_prepared(p, "{\"messages\":[],\"model\":\"o3\"}", NULL, &refused);
    assert_int_equal(json_integer_value(member(&r, "max_completion_tokens")), 1000);
}

static void test_limit_field_of_the_cap(void **state)
{
    apr_pool_t *p = *state;
    static const char *const fields[] = {"max_completion_tokens", NULL};
    refusal_list list = {fields, NULL, 0};
    oaip_refused_fields refused = {refuses, &list};
    prepared chat = expect_accepted(p, "{\"messages\":[],\"model\":\"gpt-4o\"}", NULL);
    prepared reasoning = expect_accepted(p, "{\"messages\":[],\"model\":\"o3\"}", NULL);

    assert_string_equal(oaip_json_request_limit_field(&chat.req, "max_tokens", NULL),
                        "max_tokens");
    assert_string_equal(oaip_json_request_limit_field(&reasoning.req, "max_tokens", NULL),
                        "max_completion_tokens");
    assert_string_equal(
        oaip_json_request_limit_field(&reasoning.req, "max_tokens", &refused),
        "max_tokens");
    assert_string_equal(
        oaip_json_request_limit_field(&reasoning.req, "max_output_tokens", &refused),
        "max_output_tokens");
    assert_null(oaip_json_request_limit_field(&reasoning.req, NULL, &refused));
}

/* The cap written where no limit is named, and the usage chunk asked for,
 * are the proxy's too; the client's own stream_options are not. */
static void test_cap_and_usage_noted_as_added(void **state)
{
    apr_pool_t *p = *state;
    apr_array_header_t *configured = no_defaults(p);
    prepared r;

    oaip_defaults_set(configured, "max_tokens", NULL);
    r = expect_accepted(p, "{\"messages\":[],\"model\":\"o3\",\"stream\":true}",
                        configured);
    assert_false(added(&r.req, "max_completion_tokens"));
    assert_true(oaip_json_request_cap_tokens(p, &r.req, 64, "max_completion_tokens"));
    assert_true(added(&r.req, "max_completion_tokens"));
    assert_true(oaip_json_request_ask_usage(p, &r.req));
    assert_true(added(&r.req, "stream_options"));

    r = expect_accepted(p,
                        "{\"messages\":[],\"stream\":true,"
                        "\"stream_options\":{\"include_usage\":false}}",
                        NULL);
    assert_true(oaip_json_request_ask_usage(p, &r.req));
    assert_false(added(&r.req, "stream_options"));
}

static apr_array_header_t *names(apr_pool_t *p, const char *const *list)
{
    apr_array_header_t *a = apr_array_make(p, 4, sizeof(const char *));

    for (; *list; list++) {
        APR_ARRAY_PUSH(a, const char *) = *list;
    }
    return a;
}

/* "a,b" of what oaip_refusal_names found. */
static const char *named_in(apr_pool_t *p, const char *body, const char *const *list)
{
    apr_array_header_t *found = oaip_refusal_names(p, unterminated(p, body, strlen(body)),
                                                   strlen(body), names(p, list));
    const char *text = "";
    int i;

    for (i = 0; i < found->nelts; i++) {
        text = apr_pstrcat(p, text, i ? "," : "", APR_ARRAY_IDX(found, i, const char *),
                           NULL);
    }
    return text;
}

static void test_refusal_names(void **state)
{
    apr_pool_t *p = *state;
    static const char *const all[] = {
        "max_completion_tokens", "temperature", "max_tokens",
        "stream_options",        "top_p",       NULL};
    static const char *const only_max_tokens[] = {"max_tokens", NULL};

    /* OpenAI's: the param, not the replacement the message names */
    assert_string_equal(
        named_in(p,
                 "{\"error\":{\"message\":\"Unsupported parameter: 'max_tokens' is not "
                 "supported with this model. Use 'max_completion_tokens' instead.\","
                 "\"type\":\"invalid_request_error\",\"param\":\"max_tokens\","
                 "\"code\":\"unsupported_parameter\"}}",
                 all),
        "max_tokens");
    assert_string_equal(
        named_in(p,
                 "{\"error\":{\"message\":\"Unsupported value: 'temperature' does not "
                 "support 0.7 with this model. Only the default (1) value is "
                 "supported.\",\"type\":\"invalid_request_error\",\"param\":"
                 "\"temperature\",\"code\":\"unsupported_value\"}}",
                 all),
        "temperature");
    assert_string_equal(
        named_in(p, "{\"error\":{\"param\":\"stream_options.include_usage\"}}", all),
        "stream_options");
    assert_string_equal(named_in(p, "{\"error\":{\"param\":\"top_p[0]\"}}", all),
                        "top_p");
    /* a param that names another field: the message is not searched */
    assert_string_equal(named_in(p,
                                 "{\"error\":{\"param\":\"messages\",\"message\":"
                                 "\"temperature\"}}",
                                 all),
                        "");
    assert_string_equal(named_in(p, "{\"error\":{\"param\":\"temperaturex\"}}", all), "");
    /* Azure's: param null, the field in the message */
    assert_string_equal(
        named_in(p,
                 "{\"error\":{\"message\":\"Unrecognized request argument "
                 "supplied: stream_options\",\"param\":null}}",
                 all),
        "stream_options");
    /* an error string; vLLM's top-level message; FastAPI's 422 detail */
    assert_string_equal(named_in(p, "{\"error\":\"unknown field `temperature`\"}", all),
                        "temperature");
    assert_string_equal(named_in(p,
                                 "{\"object\":\"error\",\"message\":\"max_tokens must be "
                                 "at most 4096\",\"param\":null,\"code\":400}",
                                 all),
                        "max_tokens");
    assert_string_equal(named_in(p,
                                 "{\"detail\":[{\"type\":\"extra_forbidden\",\"loc\":"
                                 "[\"body\",\"top_p\"],\"msg\":\"Extra inputs are not "
                                 "permitted\"}]}",
                                 all),
                        "top_p");
    assert_string_equal(named_in(p, "{\"detail\":\"stream_options: extra field\"}", all),
                        "stream_options");
    /* a text answer */
    assert_string_equal(
        named_in(p, "Bad Request: unknown parameter 'stream_options'", all),
        "stream_options");
    assert_string_equal(named_in(p, "[\"temperature\"]", all), "temperature");
    /* whole words only */
    assert_string_equal(named_in(p,
                                 "{\"error\":{\"message\":\"max_completion_tokens is "
                                 "required; my_max_tokens, max_tokens2\"}}",
                                 only_max_tokens),
                        "");
    assert_string_equal(named_in(p, "{\"error\":{\"message\":\"bad\"}}", all), "");
    assert_string_equal(named_in(p, "", all), "");
    assert_int_equal(oaip_refusal_names(p, "x", 1, NULL)->nelts, 0);
    assert_int_equal(oaip_refusal_names(p, NULL, 0, names(p, all))->nelts, 0);
}

int run_request_tests(void)
{
    const struct CMUnitTest tests[] = {
        POOL_TEST(test_empty_body),
        POOL_TEST(test_invalid_json),
        POOL_TEST(test_not_object),
        POOL_TEST(test_invalid_messages),
        POOL_TEST(test_duplicate_keys),
        POOL_TEST(test_builtin_defaults),
        POOL_TEST(test_empty_configured_array_is_builtin),
        POOL_TEST(test_client_temperature_zero_kept),
        POOL_TEST(test_client_null_value_kept),
        POOL_TEST(test_client_stream_true),
        POOL_TEST(test_client_stream_not_boolean),
        POOL_TEST(test_client_bytes_preserved),
        POOL_TEST(test_unknown_fields_kept),
        POOL_TEST(test_surrounding_whitespace),
        POOL_TEST(test_body_length_is_respected),
        POOL_TEST(test_max_completion_tokens),
        POOL_TEST(test_client_max_tokens_kept),
        POOL_TEST(test_model_reported),
        POOL_TEST(test_model_not_string),
        POOL_TEST(test_configured_model),
        POOL_TEST(test_configured_removal),
        POOL_TEST(test_configured_new_field),
        POOL_TEST(test_configured_stream),
        POOL_TEST(test_configured_max_completion_tokens),
        POOL_TEST(test_defaults_set_replaces),
        POOL_TEST(test_defaults_merge),
        POOL_TEST(test_defaults_merge_empty),
        POOL_TEST(test_value_parse_accepts),
        POOL_TEST(test_value_parse_none),
        POOL_TEST(test_value_parse_refuses_value),
        POOL_TEST(test_value_parse_refuses_name),
        POOL_TEST(test_value_parse_refuses_guarded_types),
        POOL_TEST(test_parsed_values_make_valid_bodies),
        POOL_TEST(test_many_messages),
        POOL_TEST(test_deep_nesting),
        POOL_TEST(test_model_allow_list),
        POOL_TEST(test_cap_tokens),
        POOL_TEST(test_cap_tokens_null_and_missing),
        POOL_TEST(test_limit_fields_refused),
        POOL_TEST(test_limit_field_lookalikes_refused),
        POOL_TEST(test_ask_usage),
        POOL_TEST(test_ask_usage_with_configured_stream_options),
        POOL_TEST(test_json_endpoint_bodies),
        POOL_TEST(test_json_endpoint_errors),
        POOL_TEST(test_reasoning_builtin_defaults),
        POOL_TEST(test_chat_builtin_defaults_added),
        POOL_TEST(test_reasoning_default_model),
        POOL_TEST(test_reasoning_configured_defaults),
        POOL_TEST(test_both_limits_configured),
        POOL_TEST(test_builtin_limit_removed_by_either_name),
        POOL_TEST(test_reasoning_client_fields_kept),
        POOL_TEST(test_refused_defaults_left_out),
        POOL_TEST(test_both_limit_fields_refused),
        POOL_TEST(test_limit_field_of_the_cap),
        POOL_TEST(test_cap_and_usage_noted_as_added),
        POOL_TEST(test_refusal_names),
    };

    return cmocka_run_group_tests_name("request", tests, NULL, NULL);
}
