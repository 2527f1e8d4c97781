/* Which upstream response header fields may be copied to the client. */
#include "unit.h"

#include <string.h>

#include "core/header_check.h"

#define VALID(s) oaip_header_value_valid(s, sizeof(s) - 1)

static void test_values(void **state)
{
    static char longest[OAIP_MAX_UPSTREAM_HEADER_VALUE + 1];

    (void)state;
    assert_true(VALID(""));
    assert_true(VALID("req_0123abcd"));
    assert_true(VALID("text/event-stream; charset=utf-8"));
    assert_true(VALID("a\tb c"));
    assert_true(VALID("caf\xc3\xa9")); /* obs-text: httpd passes it */
    assert_false(VALID("1\rX-Injected: yes"));
    assert_false(VALID("1\nX-Injected: yes"));
    assert_false(VALID("1\0002"));
    assert_false(VALID("1\x1b[31m"));
    assert_false(VALID("1\x7f"));
    memset(longest, 'x', sizeof(longest));
    assert_true(oaip_header_value_valid(longest, OAIP_MAX_UPSTREAM_HEADER_VALUE));
    assert_false(oaip_header_value_valid(longest, OAIP_MAX_UPSTREAM_HEADER_VALUE + 1));
}

static void test_names(void **state)
{
    (void)state;
    assert_true(oaip_header_name_valid("x-ratelimit-limit-requests", 26));
    assert_true(oaip_header_name_valid("X_Odd!#$%&'*+.^`|~9", 19));
    assert_false(oaip_header_name_valid("", 0));
    assert_false(oaip_header_name_valid("x-ratelimit-a b", 15));
    assert_false(oaip_header_name_valid("x-ratelimit-\r", 13));
    assert_false(oaip_header_name_valid("x-ratelimit-\0", 13));
    assert_false(oaip_header_name_valid("x-ratelimit-\"q\"", 15));
    assert_false(oaip_header_name_valid("x-ratelimit-\xc3\xa9", 14));
}

static void test_folds(void **state)
{
    (void)state;
    assert_true(oaip_header_line_is_fold(" continued\r\n", 12));
    assert_true(oaip_header_line_is_fold("\tcontinued\r\n", 12));
    assert_false(oaip_header_line_is_fold("x-request-id: a\r\n", 17));
    assert_false(oaip_header_line_is_fold("\r\n", 2));
    assert_false(oaip_header_line_is_fold("", 0));
}

#define PASSED(s) oaip_header_is_passed(s, sizeof(s) - 1)

/* What the SDKs read of an answer passes, in any case; nothing else does;
 * and every passed name is exposed to browser pages. */
static void test_passed_headers(void **state)
{
    static const char *const passed[] = {
        "x-request-id",
        "openai-processing-ms",
        "openai-version",
        "retry-after",
        "retry-after-ms",
        "x-should-retry",
        "x-ratelimit-limit-requests",
    };
    size_t i;

    (void)state;
    for (i = 0; i < N_ELEMS(passed); i++) {
        if (!oaip_header_is_passed(passed[i], strlen(passed[i]))) {
            fail_msg("%s is not passed", passed[i]);
        }
        if (strstr(OAIP_EXPOSED_HEADERS, passed[i]) == NULL) {
            fail_msg("%s is passed but not exposed", passed[i]);
        }
    }
    assert_true(PASSED("Retry-After-Ms"));
    assert_true(PASSED("X-Should-Retry"));
    assert_true(PASSED("x-ratelimit-reset-tokens"));
    /* prefixes and extensions of passed names are other names */
    assert_false(PASSED("retry-after-m"));
    assert_false(PASSED("retry-after-msx"));
    assert_false(PASSED("x-should-retry-after"));
    assert_false(PASSED("x-should"));
    assert_false(PASSED("x-ratelimit-"));
    assert_false(PASSED("set-cookie"));
    assert_false(PASSED("openai-organization"));
    assert_false(PASSED("content-length"));
    assert_false(oaip_header_is_passed("retry-after-ms", 0));
    /* the name is `len` bytes, not up to a NUL */
    assert_true(oaip_header_is_passed("retry-after-ms: 20", 14));
    assert_true(oaip_header_is_passed("retry-after-ms: 20", 11)); /* retry-after */
}

static void test_upstream_values(void **state)
{
    apr_pool_t *p = *state;

    assert_true(oaip_header_value_visible("sk-abc_DEF.123~"));
    assert_true(oaip_header_value_visible("https://api.example.com/v1"));
    assert_true(oaip_header_value_visible(""));
    assert_false(oaip_header_value_visible("sk-abc def"));
    assert_false(oaip_header_value_visible("sk-abc\r\nX-Injected: 1"));
    assert_false(oaip_header_value_visible("sk-abc\t"));
    assert_false(oaip_header_value_visible("sk-\x7f"));
    assert_false(oaip_header_value_visible("sk-\xc3\xa9"));
    assert_string_equal(oaip_auth_header_line(p, NULL, "sk-1"),
                        "Authorization: Bearer sk-1");
    assert_string_equal(oaip_auth_header_line(p, "", "sk-1"),
                        "Authorization: Bearer sk-1");
    assert_string_equal(oaip_auth_header_line(p, "api-key", "sk-1"), "api-key: sk-1");
}

int run_header_check_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),   cmocka_unit_test(test_names),
        cmocka_unit_test(test_folds),    cmocka_unit_test(test_passed_headers),
        POOL_TEST(test_upstream_values),
    };

    return cmocka_run_group_tests_name("header_check", tests, NULL, NULL);
}
