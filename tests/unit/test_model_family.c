/* Model families: which names are OpenAI's reasoning models, and the token
 * limit field each family takes. */
#include "unit.h"

#include <string.h>

#include "core/model_family.h"

static void assert_family(const char *model, oaip_model_family expected)
{
    oaip_model_family got = oaip_model_family_of(model);

    if (got != expected) {
        fail_msg("%s is in the %s family, expected %s", model ? model : "(null)",
                 oaip_model_family_name(got), oaip_model_family_name(expected));
    }
}

static void test_reasoning_models(void **state)
{
    static const char *const names[] = {"o1",
                                        "o1-mini",
                                        "o1-preview",
                                        "o1-pro",
                                        "o1-2024-12-17",
                                        "o3",
                                        "o3-mini",
                                        "o3-pro",
                                        "o3-2025-04-16",
                                        "o3-deep-research",
                                        "o4-mini",
                                        "o4-mini-2025-04-16",
                                        "gpt-5",
                                        "gpt-5-mini",
                                        "gpt-5-nano",
                                        "gpt-5-2025-08-07",
                                        "gpt-5-chat-latest",
                                        "gpt-5.1",
                                        "gpt-5-codex",
                                        "gpt-6",
                                        "O3-Mini",
                                        "GPT-5"};
    size_t i;

    (void)state;
    for (i = 0; i < N_ELEMS(names); i++) {
        assert_family(names[i], OAIP_FAMILY_REASONING);
    }
}

static void test_chat_models(void **state)
{
    static const char *const names[] = {"gpt-4o",
                                        "gpt-4o-mini",
                                        "gpt-4o-2024-08-06",
                                        "gpt-4.1",
                                        "gpt-4.1-mini",
                                        "gpt-4.1-nano",
                                        "gpt-4.5-preview",
                                        "gpt-4",
                                        "gpt-4-turbo",
                                        "gpt-3.5-turbo",
                                        "chatgpt-4o-latest",
                                        "gpt-oss-120b",
                                        "omni-moderation-latest",
                                        "o",
                                        "o3x",
                                        "oo3",
                                        "gpt-",
                                        "gpt-5o",
                                        "gpt-x5",
                                        "my-o3-deployment",
                                        "llama-3.1-70b",
                                        "claude-3-5-sonnet",
                                        ""};
    size_t i;

    (void)state;
    for (i = 0; i < N_ELEMS(names); i++) {
        assert_family(names[i], OAIP_FAMILY_CHAT);
    }
    assert_family(NULL, OAIP_FAMILY_CHAT);
}

/* A fine-tune counts as its base model, a router's vendor prefix is no part
 * of the name. */
static void test_prefixes(void **state)
{
    (void)state;
    assert_family("ft:o4-mini-2025-04-16:acme::abc123", OAIP_FAMILY_REASONING);
    assert_family("ft:gpt-4o-mini-2024-07-18:acme::abc123", OAIP_FAMILY_CHAT);
    assert_family("openai/o3-mini", OAIP_FAMILY_REASONING);
    assert_family("openai/gpt-5", OAIP_FAMILY_REASONING);
    assert_family("openai/gpt-4o", OAIP_FAMILY_CHAT);
    assert_family("o3/", OAIP_FAMILY_CHAT);
}

/* Long digit runs neither overflow nor wrap into a small version. */
static void test_long_versions(void **state)
{
    (void)state;
    assert_family("gpt-99999999999999999999999", OAIP_FAMILY_REASONING);
    assert_family("o99999999999999999999999-mini", OAIP_FAMILY_REASONING);
    assert_family("gpt-00004", OAIP_FAMILY_CHAT);
}

static void test_limit_fields(void **state)
{
    const char *other = NULL;

    (void)state;
    assert_string_equal(oaip_model_family_limit_field(OAIP_FAMILY_CHAT), "max_tokens");
    assert_string_equal(oaip_model_family_limit_field(OAIP_FAMILY_REASONING),
                        "max_completion_tokens");
    assert_true(oaip_chat_limit_field("max_tokens", &other));
    assert_string_equal(other, "max_completion_tokens");
    assert_true(oaip_chat_limit_field("max_completion_tokens", &other));
    assert_string_equal(other, "max_tokens");
    assert_false(oaip_chat_limit_field("max_output_tokens", &other));
    assert_false(oaip_chat_limit_field("temperature", &other));
    assert_string_equal(oaip_model_family_name(OAIP_FAMILY_CHAT), "chat");
    assert_string_equal(oaip_model_family_name(OAIP_FAMILY_REASONING), "reasoning");
}

int run_model_family_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reasoning_models), cmocka_unit_test(test_chat_models),
        cmocka_unit_test(test_prefixes),         cmocka_unit_test(test_long_versions),
        cmocka_unit_test(test_limit_fields),
    };

    return cmocka_run_group_tests_name("model_family", tests, NULL, NULL);
}
