/* The token estimates of token budgets: a request's worst case before it
 * runs, and the content of answers and stream events without usage. */
#include "unit.h"

#include <string.h>

#include "core/token_estimate.h"

static oaip_request_cost cost_of(const char *body)
{
    oaip_request_cost cost;

    oaip_request_cost_of(body, strlen(body), &cost);
    return cost;
}

static void test_output_limit_fields(void **state)
{
    static const struct {
        const char *body;
        apr_int64_t limit;
    } cases[] = {
        {"{\"messages\":[],\"max_tokens\":100}", 100},
        {"{\"max_completion_tokens\":50}", 50},
        {"{\"input\":\"hi\",\"max_output_tokens\":64}", 64},
        /* the largest, whichever the upstream obeys */
        {"{\"max_tokens\":10,\"max_completion_tokens\":30}", 30},
        {"{\"max_completion_tokens\":30,\"max_tokens\":10}", 30},
        /* no limit, or none that is a positive integer: unbounded */
        {"{\"messages\":[]}", -1},
        {"{\"max_tokens\":null}", -1},
        {"{\"max_tokens\":\"100\"}", -1},
        {"{\"max_tokens\":0}", -1},
        {"{\"max_tokens\":-5}", -1},
        {"{\"max_tokens\":1.5}", -1},
        {"not json", -1},
        {"[1,2]", -1},
        {"", -1},
    };
    size_t i;

    (void)state;
    for (i = 0; i < N_ELEMS(cases); i++) {
        oaip_request_cost cost = cost_of(cases[i].body);
        if (cost.output_limit != cases[i].limit) {
            fail_msg("%s: limit %ld, not %ld", cases[i].body, (long)cost.output_limit,
                     (long)cases[i].limit);
        }
    }
}

static void test_choices_multiply_the_limit(void **state)
{
    (void)state;
    assert_int_equal(cost_of("{\"max_tokens\":100,\"n\":3}").output_limit, 300);
    /* legacy completions: best_of candidates are all generated */
    assert_int_equal(cost_of("{\"max_tokens\":10,\"n\":2,\"best_of\":5}").output_limit,
                     50);
    /* a prompt array of strings or token arrays is several prompts */
    assert_int_equal(
        cost_of("{\"max_tokens\":10,\"prompt\":[\"a\",\"b\",\"c\"]}").output_limit, 30);
    assert_int_equal(
        cost_of("{\"max_tokens\":10,\"prompt\":[[1,2],[3]],\"n\":2}").output_limit, 40);
    /* an array of integers is one prompt in tokens */
    assert_int_equal(cost_of("{\"max_tokens\":10,\"prompt\":[1,2,3]}").output_limit, 10);
    /* n that is no positive integer counts as 1 */
    assert_int_equal(cost_of("{\"max_tokens\":10,\"n\":0}").output_limit, 10);
    assert_int_equal(cost_of("{\"max_tokens\":10,\"n\":\"9\"}").output_limit, 10);
}

static void test_sums_saturate(void **state)
{
    oaip_request_cost cost =
        cost_of("{\"max_tokens\":9000000000000,\"n\":9000000000000,\"best_of\":7}");

    (void)state;
    assert_int_equal(cost.output_limit, OAIP_TOKENS_MAX);
    assert_int_equal(oaip_request_cost_worst(&cost), OAIP_TOKENS_MAX);
}

static void test_prompt_bound_and_worst_case(void **state)
{
    const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}],"
                       "\"max_tokens\":100}";
    oaip_request_cost cost = cost_of(body);
    apr_int64_t len = (apr_int64_t)strlen(body);

    (void)state;
    /* bytes bound tokens: every token is at least one byte of text */
    assert_int_equal(cost.prompt_bound, len);
    assert_int_equal(cost.prompt_estimate, (len + 3) / 4);
    assert_int_equal(oaip_request_cost_worst(&cost), len + 100);
    /* unbounded output: the prompt bound alone */
    cost = cost_of("{\"input\":\"x\"}");
    assert_int_equal(oaip_request_cost_worst(&cost), 13);
    assert_int_equal(oaip_prompt_estimate(0), 0);
    assert_int_equal(oaip_prompt_estimate(1), 1);
    assert_int_equal(oaip_prompt_estimate(8), 2);
    assert_int_equal(oaip_prompt_estimate(9), 3);
}

static oaip_content_count count_events(const char *const *events, size_t n)
{
    oaip_content_count count;
    size_t i;

    memset(&count, 0, sizeof(count));
    for (i = 0; i < n; i++) {
        oaip_content_count_event(&count, events[i], strlen(events[i]));
    }
    return count;
}

static void test_chat_chunk_content(void **state)
{
    static const char *const events[] = {
        /* role only, empty content: no content */
        "{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]"
        "}",
        "{\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}",              /* 2 bytes: 1 */
        "{\"choices\":[{\"delta\":{\"content\":\"Hello there\"}}]}",     /* 11: 3 */
        "{\"choices\":[{\"delta\":{\"reasoning_content\":\"think\"}}]}", /* 5: 2 */
        "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
        "{\"arguments\":\"{\\\"a\\\":1}\"}}]}}]}",          /* {"a":1} 7: 2 */
        "{\"choices\":[{\"delta\":{\"refusal\":\"no\"}}]}", /* 1 */
        "{\"choices\":[],\"usage\":{\"prompt_tokens\":3}}", /* none */
        "[DONE]",
        "",
        "garbage {",
        "{\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}",
    };
    oaip_content_count count = count_events(events, N_ELEMS(events));

    (void)state;
    assert_int_equal(count.events, 5);
    assert_int_equal(count.bytes, 2 + 11 + 5 + 7 + 2);
    assert_int_equal(count.tokens, 1 + 3 + 2 + 2 + 1);
}

static void test_legacy_and_responses_events(void **state)
{
    static const char *const events[] = {
        "{\"object\":\"text_completion\",\"choices\":[{\"text\":\"abcdefghi\"}]}", /* 3 */
        /* two choices of one event: their bytes together */
        "{\"choices\":[{\"text\":\"ab\"},{\"text\":\"cd\"}]}",           /* 4 bytes: 1 */
        "{\"type\":\"response.output_text.delta\",\"delta\":\"tok0 \"}", /* 2 */
        "{\"type\":\"response.function_call_arguments.delta\",\"delta\":\"{}\"}", /* 1 */
        "{\"type\":\"response.reasoning_summary_text.delta\",\"delta\":\"x\"}",   /* 1 */
        /* base64 audio is not counted by its bytes */
        "{\"type\":\"response.audio.delta\",\"delta\":\"AAAAAAAAAAAAAAAAAAAA\"}",
        "{\"type\":\"response.output_text.done\",\"text\":\"tok0 \"}",
        "{\"type\":\"response.completed\",\"response\":{\"output\":[]}}",
    };
    oaip_content_count count = count_events(events, N_ELEMS(events));

    (void)state;
    assert_int_equal(count.events, 5);
    assert_int_equal(count.tokens, 3 + 1 + 2 + 1 + 1);
}

static void test_whole_answers(void **state)
{
    static const struct {
        const char *json;
        apr_int64_t tokens;
    } cases[] = {
        {"{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":"
         "\"tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 tok8 tok9 \"}}]}",
         13},
        {"{\"choices\":[{\"message\":{\"content\":null,\"tool_calls\":[{\"function\":"
         "{\"name\":\"f\",\"arguments\":\"12345678\"}}]}}]}",
         2},
        {"{\"choices\":[{\"text\":\"abcd\"},{\"text\":\"efgh\"}]}", 2},
        {"{\"object\":\"response\",\"output\":[{\"type\":\"reasoning\",\"summary\":"
         "[{\"text\":\"abcd\"}]},{\"type\":\"message\",\"content\":[{\"type\":"
         "\"output_text\",\"text\":\"abcdefgh\"}]},{\"type\":\"function_call\","
         "\"arguments\":\"abcd\"}]}",
         4},
        {"{\"object\":\"list\",\"data\":[{\"id\":\"gpt-4o\"}]}", 0},
        {"{\"choices\":[{\"message\":{\"content\":\"\"}}]}", 0},
        {"not json", 0},
    };
    size_t i;

    (void)state;
    for (i = 0; i < N_ELEMS(cases); i++) {
        apr_int64_t tokens =
            oaip_content_tokens_of_answer(cases[i].json, strlen(cases[i].json));
        if (tokens != cases[i].tokens) {
            fail_msg("%s: %ld tokens, not %ld", cases[i].json, (long)tokens,
                     (long)cases[i].tokens);
        }
    }
    assert_int_equal(oaip_content_tokens_of_answer(NULL, 0), 0);
}

int run_token_estimate_tests(void)
{
    const struct CMUnitTest tests[] = {
        POOL_TEST(test_output_limit_fields), POOL_TEST(test_choices_multiply_the_limit),
        POOL_TEST(test_sums_saturate),       POOL_TEST(test_prompt_bound_and_worst_case),
        POOL_TEST(test_chat_chunk_content),  POOL_TEST(test_legacy_and_responses_events),
        POOL_TEST(test_whole_answers),
    };

    return cmocka_run_group_tests_name("token_estimate", tests, NULL, NULL);
}
