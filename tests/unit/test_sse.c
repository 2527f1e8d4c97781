/* The incremental SSE reader and usage extraction. */
#include "unit.h"

#include <apr_strings.h>
#include <string.h>

#include "sse.h"

typedef struct {
    apr_pool_t *pool;
    int count;
    const char *events[16];
} collected;

static void collect(void *ctx, const char *data, apr_size_t len)
{
    collected *c = ctx;

    assert_true(c->count < (int)N_ELEMS(c->events));
    c->events[c->count++] = apr_pstrndup(c->pool, data, len);
}

/* A realistic OpenAI stream: several events, a comment, an event name, the
 * usage chunk and [DONE]; CRLF in one place. */
static const char stream_text[] =
    ": keep-alive\n\n"
    "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n"
    "event: message\r\ndata: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\r\n\r\n"
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,"
    "\"total_tokens\":11}}\n\n"
    "data: line one\ndata: line two\n\n"
    "data: [DONE]\n\n";

static const char *const expected[] = {
    "{\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}",
    "{\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}",
    "{\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,"
    "\"total_tokens\":11}}",
    "line one\nline two",
    "[DONE]",
};

static void check(const collected *c)
{
    size_t i;

    assert_int_equal(c->count, N_ELEMS(expected));
    for (i = 0; i < N_ELEMS(expected); i++) {
        assert_string_equal(c->events[i], expected[i]);
    }
}

static void test_whole_stream_in_one_read(void **state)
{
    collected c = {*state, 0, {0}};
    oaip_sse_reader *reader = oaip_sse_reader_make(*state, collect, &c);

    oaip_sse_feed(reader, stream_text, strlen(stream_text));
    check(&c);
}

static void test_split_at_every_byte(void **state)
{
    size_t cut, len = strlen(stream_text);

    for (cut = 1; cut < len; cut++) {
        collected c = {*state, 0, {0}};
        oaip_sse_reader *reader = oaip_sse_reader_make(*state, collect, &c);
        oaip_sse_feed(reader, stream_text, cut);
        oaip_sse_feed(reader, stream_text + cut, len - cut);
        check(&c);
    }
}

static void test_one_byte_at_a_time(void **state)
{
    collected c = {*state, 0, {0}};
    oaip_sse_reader *reader = oaip_sse_reader_make(*state, collect, &c);
    size_t i;

    for (i = 0; stream_text[i]; i++) {
        oaip_sse_feed(reader, stream_text + i, 1);
    }
    check(&c);
}

static void test_unfinished_event_is_not_dispatched(void **state)
{
    collected c = {*state, 0, {0}};
    oaip_sse_reader *reader = oaip_sse_reader_make(*state, collect, &c);

    oaip_sse_feed(reader, "data: {\"a\":1}\n", 14);
    assert_int_equal(c.count, 0);
    oaip_sse_feed(reader, "\n", 1);
    assert_int_equal(c.count, 1);
}

static void test_usage_from_json(void **state)
{
    oaip_usage usage;
    static const char with[] =
        "{\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":30,"
        "\"total_tokens\":42}}";
    static const char null_usage[] = "{\"choices\":[],\"usage\":null}";

    (void)state;
    oaip_usage_init(&usage);
    assert_false(oaip_usage_from_json(null_usage, strlen(null_usage), &usage));
    assert_int_equal(usage.total_tokens, -1);
    assert_false(oaip_usage_from_json("not json", 8, &usage));
    assert_true(oaip_usage_from_json(with, strlen(with), &usage));
    assert_int_equal(usage.prompt_tokens, 12);
    assert_int_equal(usage.completion_tokens, 30);
    assert_int_equal(usage.total_tokens, 42);
}

static void test_usage_of_other_endpoints(void **state)
{
    oaip_usage usage;
    static const char embeddings[] =
        "{\"object\":\"list\",\"usage\":{\"prompt_tokens\":8,\"total_tokens\":8}}";
    static const char responses[] =
        "{\"type\":\"response.completed\",\"response\":{\"metadata\":{\"usage\":\"x\"},"
        "\"extra\":{\"usage\":{}},\"usage\":{\"input_tokens\":5,"
        "\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":9,"
        "\"total_tokens\":14}}}";

    (void)state;
    oaip_usage_init(&usage);
    assert_true(oaip_usage_from_json(embeddings, strlen(embeddings), &usage));
    assert_int_equal(usage.prompt_tokens, 8);
    assert_int_equal(usage.completion_tokens, -1);
    assert_int_equal(usage.total_tokens, 8);
    /* a "usage" key without counts (metadata, an empty object) is skipped */
    oaip_usage_init(&usage);
    assert_true(oaip_usage_from_json(responses, strlen(responses), &usage));
    assert_int_equal(usage.prompt_tokens, 5);
    assert_int_equal(usage.completion_tokens, 9);
    assert_int_equal(usage.total_tokens, 14);
    oaip_usage_init(&usage);
    assert_false(oaip_usage_from_json("{\"usage\":{}}", 11, &usage));
    assert_int_equal(usage.prompt_tokens, -1);
}

static void test_event_length_and_usage_chunk(void **state)
{
    static const char two[] = "data: {\"a\":1}\n\ndata: [DONE]\n\n";
    static const char crlf[] = "data: x\r\n\r\nrest";
    static const char usage_chunk[] =
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,"
        "\"total_tokens\":7}}\n\n";
    static const char content_chunk[] =
        "data: {\"choices\":[{\"delta\":{\"content\":\"\\\"usage\\\":{\"}}],"
        "\"usage\":null}\n\n";
    oaip_usage usage;

    (void)state;
    assert_int_equal(oaip_sse_event_length(two, strlen(two)), 15);
    assert_int_equal(oaip_sse_event_length(two + 15, strlen(two) - 15), strlen(two) - 15);
    assert_int_equal(oaip_sse_event_length(crlf, strlen(crlf)), 11);
    assert_int_equal(oaip_sse_event_length("data: partial\n", 14), 0);
    oaip_usage_init(&usage);
    assert_false(oaip_sse_usage_chunk(content_chunk, strlen(content_chunk), &usage));
    assert_int_equal(usage.total_tokens, -1);
    assert_true(oaip_sse_usage_chunk(usage_chunk, strlen(usage_chunk), &usage));
    assert_int_equal(usage.total_tokens, 7);
}

int run_sse_tests(void)
{
    const struct CMUnitTest tests[] = {
        POOL_TEST(test_whole_stream_in_one_read),
        POOL_TEST(test_split_at_every_byte),
        POOL_TEST(test_one_byte_at_a_time),
        POOL_TEST(test_unfinished_event_is_not_dispatched),
        POOL_TEST(test_usage_from_json),
        POOL_TEST(test_usage_of_other_endpoints),
        POOL_TEST(test_event_length_and_usage_chunk),
    };

    return cmocka_run_group_tests_name("sse", tests, NULL, NULL);
}
