/* Endpoint routing below a Location, the catalog of known endpoints, the
 * upstream URL with configured query parameters, and the multipart reader. */
#include "unit.h"

#include <apr_strings.h>
#include <apr_tables.h>
#include <string.h>

#include "core/endpoint.h"
#include "core/upstream_url.h"
#include "core/multipart.h"

static apr_array_header_t *enabled(apr_pool_t *p, const char *const *patterns)
{
    apr_array_header_t *list = apr_array_make(p, 4, sizeof(const oaip_endpoint *));

    for (; *patterns; patterns++) {
        const oaip_endpoint *e = oaip_endpoint_find(*patterns);
        assert_non_null(e);
        APR_ARRAY_PUSH(list, const oaip_endpoint *) = e;
    }
    return list;
}

static void test_catalog(void **state)
{
    const oaip_endpoint *e;

    (void)state;
    e = oaip_endpoint_find("chat/completions");
    assert_non_null(e);
    assert_true(e->post);
    assert_int_equal(e->body, OAIP_BODY_CHAT);
    e = oaip_endpoint_find("models");
    assert_non_null(e);
    assert_false(e->post);
    assert_int_equal(e->body, OAIP_BODY_NONE);
    e = oaip_endpoint_find("responses");
    assert_true(e->post && e->streams);
    assert_int_equal(e->body, OAIP_BODY_JSON);
    assert_false(oaip_endpoint_find("embeddings")->streams);
    assert_int_equal(oaip_endpoint_find("audio/transcriptions")->body,
                     OAIP_BODY_MULTIPART);
    assert_non_null(oaip_endpoint_find("models/*"));
    /* only what the proxy knows, exactly as written */
    assert_null(oaip_endpoint_find("files"));
    assert_null(oaip_endpoint_find("/models"));
    assert_null(oaip_endpoint_find("models/"));
    assert_null(oaip_endpoint_find("Models"));
    assert_null(oaip_endpoint_find("embeddings/*"));
    assert_null(oaip_endpoint_find(""));
    assert_non_null(strstr(oaip_endpoint_known_list(*state),
                           "chat/completions, completions, responses"));
}

static void test_pattern_matching(void **state)
{
    (void)state;
    assert_true(oaip_endpoint_pattern_matches("models", "models"));
    assert_false(oaip_endpoint_pattern_matches("models", "models/x"));
    assert_false(oaip_endpoint_pattern_matches("models", "model"));
    assert_false(oaip_endpoint_pattern_matches("models", "modelsx"));
    assert_true(oaip_endpoint_pattern_matches("models/*", "models/gpt-4o"));
    assert_true(oaip_endpoint_pattern_matches("models/*", "models/gpt-4o-2024-08-06"));
    assert_true(oaip_endpoint_pattern_matches(
        "models/*", "models/ft:gpt-4o-mini:acme:custom:abc123"));
    assert_true(oaip_endpoint_pattern_matches("models/*", "models/text_embedding.v3"));
    /* one segment only, and only safe characters */
    assert_false(oaip_endpoint_pattern_matches("models/*", "models"));
    assert_false(oaip_endpoint_pattern_matches("models/*", "models/"));
    assert_false(oaip_endpoint_pattern_matches("models/*", "models/a/b"));
    assert_false(oaip_endpoint_pattern_matches("models/*", "models/.."));
    assert_false(oaip_endpoint_pattern_matches("models/*", "models/."));
    assert_false(oaip_endpoint_pattern_matches("models/*", "models/..."));
    assert_false(oaip_endpoint_pattern_matches("models/*", "models/a%2Fb"));
    assert_false(oaip_endpoint_pattern_matches("models/*", "models/a?b"));
    assert_false(oaip_endpoint_pattern_matches("models/*", "models/a b"));
    assert_false(oaip_endpoint_pattern_matches("models/*", "models/a\\b"));
    assert_false(oaip_endpoint_pattern_matches("models/*", "models/\xc3\xa9"));
    assert_false(oaip_endpoint_pattern_matches("models/*", "modelsx/a"));
    assert_false(oaip_endpoint_pattern_matches("models/*", "embeddings"));
}

static void test_segment_length_limit(void **state)
{
    apr_pool_t *p = *state;
    char name[300];

    memset(name, 'a', sizeof(name) - 1);
    name[256] = '\0';
    assert_true(
        oaip_endpoint_pattern_matches("models/*", apr_pstrcat(p, "models/", name, NULL)));
    name[256] = 'a';
    name[257] = '\0';
    assert_false(
        oaip_endpoint_pattern_matches("models/*", apr_pstrcat(p, "models/", name, NULL)));
}

/* Without OpenAIProxyEndpoints: the Location itself and chat/completions
 * (the Worker's endpoint), and the Responses API, which SDKs default to. */
static void test_route_default_endpoints(void **state)
{
    apr_pool_t *p = *state;
    const char *path = NULL;
    const oaip_endpoint *e;

    e = oaip_endpoint_route(p, NULL, "", &path);
    assert_non_null(e);
    assert_int_equal(e->body, OAIP_BODY_CHAT);
    assert_string_equal(path, "chat/completions");
    assert_non_null(oaip_endpoint_route(p, NULL, "/", &path));
    assert_string_equal(path, "chat/completions");
    assert_non_null(oaip_endpoint_route(p, NULL, "/chat/completions", &path));
    assert_non_null(oaip_endpoint_route(p, NULL, "/chat/completions/", &path));
    assert_string_equal(path, "chat/completions");
    e = oaip_endpoint_route(p, NULL, "/responses", &path);
    assert_ptr_equal(e, oaip_endpoint_find("responses"));
    assert_string_equal(path, "responses");
    assert_ptr_equal(oaip_endpoint_route(p, NULL, "responses/", &path), e);
    assert_null(oaip_endpoint_route(p, NULL, "/models", &path));
    assert_null(oaip_endpoint_route(p, NULL, "/models/gpt-4o", &path));
    assert_null(oaip_endpoint_route(p, NULL, "/embeddings", &path));
    assert_null(oaip_endpoint_route(p, NULL, "/completions", &path));
    assert_null(oaip_endpoint_route(p, NULL, "/responses/resp_123", &path));
    assert_null(oaip_endpoint_route(p, NULL, "/responses//", &path));
    assert_null(oaip_endpoint_route(p, NULL, "/chat/completions//", &path));
    assert_null(oaip_endpoint_route(p, NULL, "//chat/completions", &path));
    assert_null(oaip_endpoint_route(p, NULL, "/chat", &path));
}

/* OAIP_DEFAULT_ENDPOINTS (the directive's help text) names what routes by
 * default, and nothing else of the catalog does. */
static void test_default_endpoints_as_documented(void **state)
{
    static const char *const all[] = {
        "chat/completions",     "completions",        "responses",    "embeddings",
        "moderations",          "images/generations", "images/edits", "audio/speech",
        "audio/transcriptions", "audio/translations", "models",       "models/x",
    };
    apr_pool_t *p = *state;
    char *words = apr_pstrdup(p, " " OAIP_DEFAULT_ENDPOINTS " ");
    const char *path;
    size_t i;

    for (i = 0; i < N_ELEMS(all); i++) {
        int listed = strstr(words, apr_pstrcat(p, " ", all[i], " ", NULL)) != NULL;
        if ((oaip_endpoint_route(p, NULL, all[i], &path) != NULL) != listed) {
            fail_msg("%s: routed by default is not what OAIP_DEFAULT_ENDPOINTS says",
                     all[i]);
        }
    }
}

/* The Location itself is where the Worker's clients call; every path below
 * it is an SDK's. */
static void test_path_is_location(void **state)
{
    (void)state;
    assert_true(oaip_endpoint_path_is_location(""));
    assert_true(oaip_endpoint_path_is_location("/"));
    assert_false(oaip_endpoint_path_is_location("/chat/completions"));
    assert_false(oaip_endpoint_path_is_location("/responses"));
    assert_false(oaip_endpoint_path_is_location("/models"));
    assert_false(oaip_endpoint_path_is_location("//"));
    assert_false(oaip_endpoint_path_is_location("/nope"));
}

/* Each streaming endpoint ends a broken stream with an error event of its
 * own shape. */
static void test_error_event_shapes(void **state)
{
    (void)state;
    assert_int_equal(oaip_endpoint_find("responses")->error_events,
                     OAIP_SSE_ERRORS_RESPONSES);
    assert_int_equal(oaip_endpoint_find("chat/completions")->error_events,
                     OAIP_SSE_ERRORS_CHAT);
    assert_int_equal(oaip_endpoint_find("completions")->error_events,
                     OAIP_SSE_ERRORS_CHAT);
}

static void test_route_enabled_list(void **state)
{
    apr_pool_t *p = *state;
    static const char *const list[] = {"models", "models/*", "embeddings", "responses",
                                       NULL};
    apr_array_header_t *on = enabled(p, list);
    const char *path = NULL;
    const oaip_endpoint *e;

    e = oaip_endpoint_route(p, on, "/models", &path);
    assert_non_null(e);
    assert_string_equal(e->pattern, "models");
    assert_string_equal(path, "models");
    e = oaip_endpoint_route(p, on, "/models/gpt-4o-mini/", &path);
    assert_non_null(e);
    assert_string_equal(e->pattern, "models/*");
    assert_string_equal(path, "models/gpt-4o-mini");
    e = oaip_endpoint_route(p, on, "/responses", &path);
    assert_non_null(e);
    assert_string_equal(path, "responses");
    assert_non_null(oaip_endpoint_route(p, on, "embeddings", &path));
    /* chat/completions is not in this list: the Location itself is nothing */
    assert_null(oaip_endpoint_route(p, on, "", &path));
    assert_null(oaip_endpoint_route(p, on, "/chat/completions", &path));
    assert_null(oaip_endpoint_route(p, on, "/moderations", &path));
    assert_null(oaip_endpoint_route(p, on, "/models/a/b", &path));
    assert_null(oaip_endpoint_route(p, on, "/models/../embeddings", &path));
    assert_null(oaip_endpoint_route(p, on, "/models/%2e%2e", &path));
    assert_null(oaip_endpoint_route(p, on, "/embeddings?x=1", &path));
}

static void test_query_param_encode(void **state)
{
    apr_pool_t *p = *state;
    const char *error = NULL;

    assert_string_equal(oaip_query_param_encode(p, "api-version=2024-10-21", &error),
                        "api-version=2024-10-21");
    assert_string_equal(oaip_query_param_encode(p, "a b=c&d=e", &error),
                        "a%20b=c%26d%3De");
    assert_string_equal(oaip_query_param_encode(p, "k=", &error), "k=");
    assert_string_equal(oaip_query_param_encode(p, "k=\xc3\xa9/~_.", &error),
                        "k=%C3%A9%2F~_.");
    assert_string_equal(oaip_query_param_encode(p, "k=#?+\n", &error), "k=%23%3F%2B%0A");
    assert_null(oaip_query_param_encode(p, "novalue", &error));
    assert_non_null(strstr(error, "NAME=VALUE"));
    error = NULL;
    assert_null(oaip_query_param_encode(p, "=x", &error));
    assert_non_null(error);
}

static void test_upstream_url(void **state)
{
    apr_pool_t *p = *state;
    apr_array_header_t *query = apr_array_make(p, 2, sizeof(const char *));

    assert_string_equal(oaip_upstream_url(p, "http://h/v1", "models", NULL),
                        "http://h/v1/models");
    assert_string_equal(oaip_upstream_url(p, "http://h/v1", "models", query),
                        "http://h/v1/models");
    APR_ARRAY_PUSH(query, const char *) = "api-version=2024-10-21";
    assert_string_equal(oaip_upstream_url(p, "https://x.openai.azure.com/openai/v1",
                                          "chat/completions", query),
                        "https://x.openai.azure.com/openai/v1/chat/completions"
                        "?api-version=2024-10-21");
    APR_ARRAY_PUSH(query, const char *) = "b=1";
    assert_string_equal(oaip_upstream_url(p, "http://h", "embeddings", query),
                        "http://h/embeddings?api-version=2024-10-21&b=1");
}

static void test_multipart_boundary(void **state)
{
    apr_pool_t *p = *state;

    assert_string_equal(
        oaip_multipart_boundary(p, "multipart/form-data; boundary=----abc123"),
        "----abc123");
    assert_string_equal(
        oaip_multipart_boundary(p, "Multipart/Form-Data;boundary=\"a b:c\"; charset=x"),
        "a b:c");
    assert_string_equal(
        oaip_multipart_boundary(p, "multipart/form-data; x=1; BOUNDARY=z"), "z");
    assert_null(oaip_multipart_boundary(p, NULL));
    assert_null(oaip_multipart_boundary(p, "application/json"));
    assert_null(oaip_multipart_boundary(p, "multipart/form-data"));
    assert_null(oaip_multipart_boundary(p, "multipart/form-data; boundary="));
    assert_null(oaip_multipart_boundary(p, "multipart/form-data; boundary=\"open"));
    assert_null(
        oaip_multipart_boundary(p, "multipart/form-data; boundary=a\r\nX-Evil: 1"));
    assert_null(oaip_multipart_boundary(p, "multipart/form-data; boundary=\xc3\xa9"));
    assert_null(oaip_multipart_boundary(
        p, "multipart/form-data; boundary="
           "12345678901234567890123456789012345678901234567890123456789012345678901"));
}

static void test_multipart_field(void **state)
{
    apr_pool_t *p = *state;
    static const char body[] =
        "--XyZ\r\n"
        "Content-Disposition: form-data; name=\"file\"; filename=\"model\"\r\n"
        "Content-Type: audio/wav\r\n\r\n"
        "RIFF\0\r\n--X not the end\r\n"
        "\r\n--XyZ\r\n"
        "Content-Disposition: form-data; name=\"model\"\r\n\r\n"
        "whisper-1"
        "\r\n--XyZ\r\n"
        "Content-Disposition: form-data; name=\"language\"\r\n\r\n"
        "en"
        "\r\n--XyZ--\r\n";
    apr_size_t len = sizeof(body) - 1;

    assert_string_equal(oaip_multipart_field(p, body, len, "XyZ", "model"), "whisper-1");
    assert_string_equal(oaip_multipart_field(p, body, len, "XyZ", "language"), "en");
    /* a file part named like the field does not count */
    assert_null(oaip_multipart_field(p, body, len, "XyZ", "file"));
    assert_null(oaip_multipart_field(p, body, len, "XyZ", "prompt"));
    assert_null(oaip_multipart_field(p, body, len, "other", "model"));
    /* cut before the model part ends */
    assert_null(oaip_multipart_field(p, body, 185, "XyZ", "model"));
    assert_null(oaip_multipart_field(p, "", 0, "XyZ", "model"));
    assert_null(oaip_multipart_field(p, "--XyZ", 5, "XyZ", "model"));
}

/* A body with one part before and the given parts, boundary "B". */
static const char *form(apr_pool_t *p, const char *parts)
{
    return apr_pstrcat(p,
                       "--B\r\nContent-Disposition: form-data; name=\"file\"; "
                       "filename=\"a.wav\"\r\n\r\nRIFF",
                       parts, "\r\n--B--\r\n", NULL);
}

static oaip_multipart_found find_model(apr_pool_t *p, const char *parts,
                                       const char **value)
{
    const char *body = form(p, parts);

    return oaip_multipart_find(p, body, strlen(body), "B", "model", value);
}

/* Issue 9: the proxy checked one model while the upstream used another: a
 * second model part (Starlette takes the last), or a name="model" in
 * another header of a part, which no upstream reads as the part's name. */
static void test_multipart_model_resolution(void **state)
{
    apr_pool_t *p = *state;
    const char *value;

    assert_int_equal(find_model(p,
                                "\r\n--B\r\nContent-Disposition: form-data; "
                                "name=\"model\"\r\n\r\nwhisper-1"
                                "\r\n--B\r\nContent-Disposition: form-data; "
                                "name=\"model\"\r\n\r\ngpt-4o-transcribe",
                                &value),
                     OAIP_MULTIPART_DUPLICATE);
    assert_null(value);
    /* every spelling of the name counts towards a duplicate */
    assert_int_equal(find_model(p,
                                "\r\n--B\r\nContent-Disposition: form-data; "
                                "name=\"model\"\r\n\r\nwhisper-1"
                                "\r\n--B\r\ncontent-disposition: form-data; "
                                "NAME=model\r\n\r\nother",
                                &value),
                     OAIP_MULTIPART_DUPLICATE);
    assert_int_equal(find_model(p,
                                "\r\n--B\r\nContent-Disposition: form-data; "
                                "name=\"model\"\r\n\r\nwhisper-1"
                                "\r\n--B\r\nContent-Disposition: form-data; "
                                "name*=UTF-8''mod%65l\r\n\r\nother",
                                &value),
                     OAIP_MULTIPART_DUPLICATE);
    assert_int_equal(find_model(p,
                                "\r\n--B\r\nContent-Disposition: form-data; "
                                "name=\"model\"\r\n\r\nwhisper-1"
                                "\r\n--B\r\nContent-Disposition: form-data; "
                                "name=\"mo\\del\"; filename=\"x\"\r\n\r\nother",
                                &value),
                     OAIP_MULTIPART_DUPLICATE);
    /* name="model" in another header names nothing */
    assert_int_equal(find_model(p,
                                "\r\n--B\r\nContent-Disposition: form-data; "
                                "name=\"prompt\"\r\nContent-Type: text/plain; "
                                "name=\"model\"\r\n\r\nwhisper-1"
                                "\r\n--B\r\nContent-Disposition: form-data; "
                                "name=\"model\"\r\n\r\ngpt-4o-transcribe",
                                &value),
                     OAIP_MULTIPART_FOUND);
    assert_string_equal(value, "gpt-4o-transcribe");
    /* nor does one inside another parameter's quoted value */
    assert_int_equal(find_model(p,
                                "\r\n--B\r\nContent-Disposition: form-data; "
                                "name=\"prompt\"; x=\"; name=model\"\r\n\r\nhi",
                                &value),
                     OAIP_MULTIPART_ABSENT);
    /* "--B" followed by more is no delimiter: the value goes on */
    assert_int_equal(find_model(p,
                                "\r\n--B\r\nContent-Disposition: form-data; "
                                "name=\"model\"\r\n\r\nwhisper-1\r\n--BX\r\nrest",
                                &value),
                     OAIP_MULTIPART_FOUND);
    assert_string_equal(value, "whisper-1\r\n--BX\r\nrest");
    /* a bare token name is a name */
    assert_int_equal(find_model(p,
                                "\r\n--B\r\nContent-Disposition: form-data; "
                                "name=model\r\n\r\nwhisper-1",
                                &value),
                     OAIP_MULTIPART_FOUND);
    assert_string_equal(value, "whisper-1");
    /* a part with headers and an empty value still names the field */
    assert_int_equal(find_model(p,
                                "\r\n--B\r\nContent-Disposition: form-data; "
                                "name=\"model\"\r\n\r\nwhisper-1"
                                "\r\n--B\r\nContent-Disposition: form-data; "
                                "name=\"model\"\r\n",
                                &value),
                     OAIP_MULTIPART_DUPLICATE);
    assert_int_equal(find_model(p,
                                "\r\n--B\r\nContent-Disposition: form-data; "
                                "name=\"model\"\r\n",
                                &value),
                     OAIP_MULTIPART_FOUND);
    assert_string_equal(value, "");
    /* the model as a file: named, but no value */
    assert_int_equal(find_model(p,
                                "\r\n--B\r\nContent-Disposition: form-data; "
                                "name=\"model\"; filename=\"m\"\r\n\r\nwhisper-1",
                                &value),
                     OAIP_MULTIPART_FOUND);
    assert_null(value);
}

int run_endpoint_tests(void)
{
    const struct CMUnitTest tests[] = {
        POOL_TEST(test_catalog),
        POOL_TEST(test_pattern_matching),
        POOL_TEST(test_segment_length_limit),
        POOL_TEST(test_route_default_endpoints),
        POOL_TEST(test_default_endpoints_as_documented),
        cmocka_unit_test(test_path_is_location),
        cmocka_unit_test(test_error_event_shapes),
        POOL_TEST(test_route_enabled_list),
        POOL_TEST(test_query_param_encode),
        POOL_TEST(test_upstream_url),
        POOL_TEST(test_multipart_boundary),
        POOL_TEST(test_multipart_field),
        POOL_TEST(test_multipart_model_resolution),
    };

    return cmocka_run_group_tests_name("endpoint", tests, NULL, NULL);
}
