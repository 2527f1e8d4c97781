/* Directive values parsed without httpd: sizes, counts, formats, key sources
 * and model patterns. */
#include "unit.h"

#include <apr_strings.h>
#include <string.h>

#include "core/errors.h"
#include "core/values.h"

#define ONE_G ((apr_off_t)1024 * 1024 * 1024)

static void test_size_accepts(void **state)
{
    static const struct {
        const char *text;
        apr_off_t value;
    } cases[] = {
        {"1", 1},      {"4096", 4096},        {"1K", 1024},
        {"1k", 1024},  {"8M", 8 << 20},       {"8m", 8 << 20},
        {"1G", ONE_G}, {"1073741824", ONE_G}, {"1048576K", ONE_G},
    };
    size_t i;

    (void)state;
    for (i = 0; i < N_ELEMS(cases); i++) {
        apr_off_t value = -1;
        if (!oaip_value_size(cases[i].text, ONE_G, &value)) {
            fail_msg("size \"%s\" refused", cases[i].text);
        }
        assert_true(value == cases[i].value);
    }
}

static void test_size_refuses(void **state)
{
    static const char *const cases[] = {
        "", "0", "-1", "0K", "lots", "10X", "2G", "1073741825", "1KB", "K", "1.5M", "8M ",
    };
    size_t i;

    (void)state;
    for (i = 0; i < N_ELEMS(cases); i++) {
        apr_off_t value = 77;
        if (oaip_value_size(cases[i], ONE_G, &value)) {
            fail_msg("size \"%s\" accepted as %" APR_OFF_T_FMT, cases[i], value);
        }
        assert_true(value == 77);
    }
}

/* Found by tests/fuzz (fuzz_values, UBSan): a number times its suffix
 * overflowed; 17179869185G is 2^64 + 1G and wrapped to exactly 1G. */
static void test_size_refuses_overflow(void **state)
{
    static const char *const cases[] = {
        "17179869185G",
        "99999999999G",
        "9223372036854775807K",
        "9223372036854775808",
        "16777217M",
        "1048577K",
        "1025M",
    };
    size_t i;

    (void)state;
    for (i = 0; i < N_ELEMS(cases); i++) {
        apr_off_t value = 77;
        if (oaip_value_size(cases[i], ONE_G, &value)) {
            fail_msg("size \"%s\" accepted as %" APR_OFF_T_FMT, cases[i], value);
        }
    }
}

static void test_count_accepts_and_refuses(void **state)
{
    int value = 0;

    (void)state;
    assert_true(oaip_value_count("1", 10, &value));
    assert_int_equal(value, 1);
    assert_true(oaip_value_count("86400", 86400, &value));
    assert_int_equal(value, 86400);
    assert_false(oaip_value_count("86401", 86400, &value));
    assert_false(oaip_value_count("0", 10, &value));
    assert_false(oaip_value_count("-3", 10, &value));
    assert_false(oaip_value_count("", 10, &value));
    assert_false(oaip_value_count("soon", 10, &value));
    assert_false(oaip_value_count("5s", 10, &value));
    assert_false(oaip_value_count("99999999999999999999", 100000000, &value));
    assert_int_equal(value, 86400);
}

static void test_time_shape(void **state)
{
    (void)state;
    assert_true(oaip_value_time_shape("30"));
    assert_true(oaip_value_time_shape("500ms"));
    assert_true(oaip_value_time_shape("2min"));
    assert_true(oaip_value_time_shape("15s"));
    assert_true(oaip_value_time_shape("1h"));
    assert_false(oaip_value_time_shape(""));
    assert_false(oaip_value_time_shape("ms"));
    assert_false(oaip_value_time_shape("soon"));
    assert_false(oaip_value_time_shape("5sausages"));
    assert_false(oaip_value_time_shape("5 s"));
    assert_false(oaip_value_time_shape("-5"));
    assert_false(oaip_value_time_shape("1.5s"));
    assert_false(oaip_value_time_shape("5mi"));
    assert_false(oaip_value_time_shape("9999999999999s"));
}

static void test_error_format(void **state)
{
    int value = -5;

    (void)state;
    assert_true(oaip_value_error_format("seed", &value));
    assert_int_equal(value, OAIP_ERRFMT_WORKER);
    assert_true(oaip_value_error_format("OpenAI", &value));
    assert_int_equal(value, OAIP_ERRFMT_OPENAI);
    assert_false(oaip_value_error_format("xml", &value));
    assert_false(oaip_value_error_format("", &value));
    assert_int_equal(value, OAIP_ERRFMT_OPENAI);
}

static void test_key_source(void **state)
{
    const char *ref = NULL;

    (void)state;
    assert_int_equal(oaip_value_key_source("sk-abc", &ref), OAIP_KEY_LITERAL);
    assert_string_equal(ref, "sk-abc");
    assert_int_equal(oaip_value_key_source("env:OPENAI_API_KEY", &ref), OAIP_KEY_ENV);
    assert_string_equal(ref, "OPENAI_API_KEY");
    assert_int_equal(oaip_value_key_source("file:/etc/key", &ref), OAIP_KEY_FILE);
    assert_string_equal(ref, "/etc/key");
    /* the prefixes are case-sensitive: anything else is a literal key */
    assert_int_equal(oaip_value_key_source("ENV:X", &ref), OAIP_KEY_LITERAL);
    assert_string_equal(ref, "ENV:X");
    assert_int_equal(oaip_value_key_source("env:", &ref), OAIP_KEY_ENV);
    assert_string_equal(ref, "");
}

static void test_trim(void **state)
{
    apr_pool_t *p = *state;

    assert_string_equal(oaip_value_trim(apr_pstrdup(p, "  sk-abc\r\n")), "sk-abc");
    assert_string_equal(oaip_value_trim(apr_pstrdup(p, "sk-abc")), "sk-abc");
    assert_string_equal(oaip_value_trim(apr_pstrdup(p, " \t\n")), "");
    assert_string_equal(oaip_value_trim(apr_pstrdup(p, "")), "");
    assert_string_equal(oaip_value_trim(apr_pstrdup(p, "a b")), "a b");
}

static void test_model_pattern(void **state)
{
    (void)state;
    assert_true(oaip_value_model_pattern("gpt-4o"));
    assert_true(oaip_value_model_pattern("gpt-4o*"));
    assert_true(oaip_value_model_pattern("*"));
    assert_false(oaip_value_model_pattern("gpt-*-mini"));
    assert_false(oaip_value_model_pattern("**"));
}

int run_values_tests(void)
{
    const struct CMUnitTest tests[] = {
        POOL_TEST(test_size_accepts),
        POOL_TEST(test_size_refuses),
        POOL_TEST(test_size_refuses_overflow),
        POOL_TEST(test_count_accepts_and_refuses),
        POOL_TEST(test_time_shape),
        POOL_TEST(test_error_format),
        POOL_TEST(test_key_source),
        POOL_TEST(test_trim),
        POOL_TEST(test_model_pattern),
    };

    return cmocka_run_group_tests_name("values", tests, NULL, NULL);
}
