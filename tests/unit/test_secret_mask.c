/* The key masker: whole and partial echoes of a key in an upstream error
 * answer, the mask byte, lengths, and what is left alone. */
#include "unit.h"

#include <apr_strings.h>
#include <string.h>

#include "core/secret_mask.h"

#define KEY "sk-test-SECRET-a1b2c3d4e5f6a7b8c9d0"
#define CLIENT "sk-client-SECRET-byok-11223344"

static oaip_secret_mask *mask_of(apr_pool_t *p, const char *a, const char *b)
{
    oaip_secret_mask *mask = oaip_secret_mask_make(p);

    oaip_secret_mask_add(mask, a);
    oaip_secret_mask_add(mask, b);
    return mask;
}

/* `text` masked; the count of overwritten bytes in *changed. */
static char *masked(apr_pool_t *p, const oaip_secret_mask *mask, const char *text,
                    apr_size_t *changed)
{
    char *copy = apr_pstrdup(p, text);
    apr_size_t n = oaip_secret_mask_apply(mask, copy, strlen(copy));

    if (changed != NULL) {
        *changed = n;
    }
    assert_int_equal(strlen(copy), strlen(text));
    return copy;
}

static const char *stars(apr_pool_t *p, apr_size_t n)
{
    char *s = apr_palloc(p, n + 1);

    memset(s, '*', n);
    s[n] = '\0';
    return s;
}

static void test_full_echo(void **state)
{
    apr_pool_t *p = *state;
    oaip_secret_mask *mask = mask_of(p, KEY, NULL);
    apr_size_t changed;
    char *out = masked(p, mask, "{\"message\":\"Incorrect API key provided: " KEY ".\"}",
                       &changed);

    assert_int_equal(changed, strlen(KEY));
    assert_string_equal(out, apr_pstrcat(p, "{\"message\":\"Incorrect API key provided: ",
                                         stars(p, strlen(KEY)), ".\"}", NULL));
}

static void test_prefix_suffix_and_inner_pieces(void **state)
{
    apr_pool_t *p = *state;
    oaip_secret_mask *mask = mask_of(p, KEY, NULL);

    /* the first 12 characters and "..." */
    assert_string_equal(masked(p, mask, "key sk-test-SECR... refused", NULL),
                        "key ************... refused");
    /* exactly the rule's 8 */
    assert_string_equal(masked(p, mask, "[sk-test-]", NULL), "[********]");
    /* an inner piece, a suffix */
    assert_string_equal(masked(p, mask, "x SECRET-a1b2 y e5f6a7b8c9d0", NULL),
                        "x *********** y ************");
    /* two echoes back to back, and one inside a longer word */
    assert_string_equal(masked(p, mask, KEY KEY, NULL), stars(p, 2 * strlen(KEY)));
    assert_string_equal(masked(p, mask, "zz" KEY "zz", NULL),
                        apr_pstrcat(p, "zz", stars(p, strlen(KEY)), "zz", NULL));
}

static void test_runs_below_the_rule_are_left(void **state)
{
    apr_pool_t *p = *state;
    oaip_secret_mask *mask = mask_of(p, KEY, NULL);
    apr_size_t changed;
    /* 7 characters of the key, then a byte that breaks the run */
    const char *text = "sk-test: a 'sk-test' SECRET a1b2c3d 1b2c3d4!";

    assert_string_equal(masked(p, mask, text, &changed), text);
    assert_int_equal(changed, 0);
}

static void test_openai_style_redaction(void **state)
{
    apr_pool_t *p = *state;
    oaip_secret_mask *mask = mask_of(p, KEY, NULL);

    /* first 8, stars, last 4: the first by rule 1, the last 4 by rule 2 */
    assert_string_equal(masked(p, mask, "provided: sk-test-*****************c9d0.", NULL),
                        apr_pstrcat(p, "provided: ", stars(p, 8 + 17 + 4), ".", NULL));
    /* first 7 and last 4 around "***...": both by rule 2 */
    assert_string_equal(
        masked(p, mask, "provided: sk-test***...c9d0.", NULL),
        apr_pstrcat(p, "provided: ", stars(p, 7 + 3), "...", stars(p, 4), ".", NULL));
    /* 4 key characters next to a marker shorter than 3 are text */
    assert_string_equal(masked(p, mask, "sk-t.. c9d0", NULL), "sk-t.. c9d0");
    /* a prefix of 4 before a redaction of an unrelated key */
    assert_string_equal(masked(p, mask, "sk-t****", NULL), "********");
    /* 3 are too few */
    assert_string_equal(masked(p, mask, "sk-****", NULL), "sk-****");
}

static void test_two_secrets(void **state)
{
    apr_pool_t *p = *state;
    oaip_secret_mask *mask = mask_of(p, KEY, CLIENT);
    char *out = masked(p, mask, "a " CLIENT " b " KEY " c", NULL);

    assert_int_equal(oaip_secret_mask_count(mask), 2);
    assert_string_equal(out, apr_pstrcat(p, "a ", stars(p, strlen(CLIENT)), " b ",
                                         stars(p, strlen(KEY)), " c", NULL));
    /* "sk-clien" is the client's, "-SECRET-" both's */
    assert_string_equal(masked(p, mask, "sk-clien -SECRET-", NULL), "******** ********");
    /* runs of two secrets that overlap are both masked whole */
    mask = mask_of(p, "abcdefgh12", "cdefghijkl");
    assert_string_equal(masked(p, mask, "<abcdefghij>", NULL), "<**********>");
}

static void test_short_secret_masked_whole_only(void **state)
{
    apr_pool_t *p = *state;
    oaip_secret_mask *mask = mask_of(p, "abc12", NULL);

    assert_int_equal(oaip_secret_mask_run(5), 5);
    assert_int_equal(oaip_secret_mask_run(100), OAIP_MASK_RUN);
    assert_string_equal(masked(p, mask, "abc1 abc12 xabc12abc12", NULL),
                        "abc1 ***** x**********");
}

static void test_mask_byte_is_not_in_a_secret(void **state)
{
    apr_pool_t *p = *state;
    oaip_secret_mask *mask = mask_of(p, "key*with*stars-0123", NULL);
    char byte = oaip_secret_mask_byte(mask);
    char *out;

    assert_true(byte != '*' && byte != '"' && byte != '\\');
    assert_null(strchr("key*with*stars-0123", byte));
    out = masked(p, mask, "[key*with*stars-0123]", NULL);
    assert_int_equal(out[0], '[');
    assert_int_equal(out[1], byte);
    assert_int_equal(out[19], byte);
    assert_int_equal(out[20], ']');
    assert_int_equal(oaip_secret_mask_byte(mask_of(p, KEY, NULL)), '*');
}

static void test_binary_and_empty_input(void **state)
{
    apr_pool_t *p = *state;
    oaip_secret_mask *mask = mask_of(p, KEY, NULL);
    char data[] = "\0\0\0\0\0\0\0\0sk-test-SECRET\0\xff";
    apr_size_t len = sizeof(data) - 1;

    assert_int_equal(oaip_secret_mask_apply(mask, data, len), 14);
    assert_memory_equal(data, "\0\0\0\0\0\0\0\0**************\0\xff", len);
    assert_int_equal(oaip_secret_mask_apply(mask, data, 0), 0);
}

static void test_no_secret_changes_nothing(void **state)
{
    apr_pool_t *p = *state;
    oaip_secret_mask *mask = mask_of(p, NULL, "");
    const char *text = "Incorrect API key provided: sk-test-SECRET****";

    assert_int_equal(oaip_secret_mask_count(mask), 0);
    assert_string_equal(masked(p, mask, text, NULL), text);
    assert_null(oaip_secret_mask_string(p, mask, NULL));
    assert_string_equal(oaip_secret_mask_string(p, mask_of(p, KEY, NULL), "<" KEY ">"),
                        apr_pstrcat(p, "<", stars(p, strlen(KEY)), ">", NULL));
}

static void test_long_key(void **state)
{
    apr_pool_t *p = *state;
    char *key = apr_palloc(p, 5001), *body;
    oaip_secret_mask *mask;
    apr_size_t i;

    for (i = 0; i < 5000; i++) {
        key[i] = (char)('A' + (i * 7 + i / 26) % 26);
    }
    key[5000] = '\0';
    mask = mask_of(p, key, NULL);
    body = apr_pstrcat(p, "{\"k\":\"", key + 1000, "\"}", NULL);
    assert_int_equal(oaip_secret_mask_apply(mask, body, strlen(body)), 4000);
    assert_string_equal(body + 6 + 4000, "\"}");
}

int run_secret_mask_tests(void)
{
    const struct CMUnitTest tests[] = {
        POOL_TEST(test_full_echo),
        POOL_TEST(test_prefix_suffix_and_inner_pieces),
        POOL_TEST(test_runs_below_the_rule_are_left),
        POOL_TEST(test_openai_style_redaction),
        POOL_TEST(test_two_secrets),
        POOL_TEST(test_short_secret_masked_whole_only),
        POOL_TEST(test_mask_byte_is_not_in_a_secret),
        POOL_TEST(test_binary_and_empty_input),
        POOL_TEST(test_no_secret_changes_nothing),
        POOL_TEST(test_long_key),
    };

    return cmocka_run_group_tests_name("secret_mask", tests, NULL, NULL);
}
