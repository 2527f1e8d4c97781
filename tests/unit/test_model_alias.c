/* core/model_alias.c: OpenAIProxyModelAlias lookups, merges and the body
 * sent with the target's name. */
#include "unit.h"

#include <string.h>

#include "core/model_alias.h"

static apr_array_header_t *aliases(apr_pool_t *p)
{
    apr_array_header_t *list = apr_array_make(p, 2, sizeof(oaip_model_alias));

    oaip_model_alias_set(list, "fast", "gpt-4o-mini");
    oaip_model_alias_set(list, "smart", "o3");
    oaip_model_alias_set(list, "fast", "gpt-4.1-mini"); /* a later one wins */
    return list;
}

static void test_target(void **state)
{
    apr_array_header_t *list = aliases(*state);
    const char *other = "gpt-4o";

    assert_string_equal(oaip_model_alias_target(list, "fast"), "gpt-4.1-mini");
    assert_string_equal(oaip_model_alias_target(list, "smart"), "o3");
    assert_ptr_equal(oaip_model_alias_target(list, other), other); /* itself */
    assert_null(oaip_model_alias_target(list, NULL));
    assert_ptr_equal(oaip_model_alias_target(NULL, other), other);
    /* one step only: o3 is not an alias */
    assert_string_equal(oaip_model_alias_target(list, "o3"), "o3");
}

static void test_merge_by_name(void **state)
{
    apr_pool_t *p = *state;
    apr_array_header_t *base = aliases(p),
                       *add = apr_array_make(p, 1, sizeof(oaip_model_alias));
    apr_array_header_t *merged;

    oaip_model_alias_set(add, "smart", "o4-mini");
    merged = oaip_model_aliases_merge(p, base, add);
    assert_string_equal(oaip_model_alias_target(merged, "smart"), "o4-mini");
    assert_string_equal(oaip_model_alias_target(merged, "fast"), "gpt-4.1-mini");
    assert_string_equal(oaip_model_alias_target(base, "smart"), "o3"); /* untouched */
    assert_ptr_equal(oaip_model_aliases_merge(p, NULL, add), add);
    assert_ptr_equal(oaip_model_aliases_merge(p, base, NULL), base);
    assert_null(oaip_model_aliases_merge(p, NULL, NULL));
}

static void test_body_with_model(void **state)
{
    apr_pool_t *p = *state;
    const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                       "\"model\":\"fast\",\"temperature\":0.5}";
    apr_size_t len = 0;
    char *out = oaip_json_with_model(p, body, strlen(body), "gpt-4o-mini", &len);
    json_t *parsed;

    assert_non_null(out);
    assert_int_equal(len, strlen(out));
    parsed = unit_json_parse(p, out, len);
    assert_string_equal(json_string_value(json_object_get(parsed, "model")),
                        "gpt-4o-mini");
    assert_true(json_real_value(json_object_get(parsed, "temperature")) == 0.5);
    /* the members keep their order */
    assert_true(strstr(out, "\"messages\"") < strstr(out, "\"model\""));
    /* a body without a model gets one */
    out = oaip_json_with_model(p, "{\"messages\":[]}", 15, "o3", &len);
    parsed = unit_json_parse(p, out, len);
    assert_string_equal(json_string_value(json_object_get(parsed, "model")), "o3");
    /* not an object: NULL */
    assert_null(oaip_json_with_model(p, "[1]", 3, "o3", &len));
    assert_null(oaip_json_with_model(p, "{", 1, "o3", &len));
}

int run_model_alias_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_target, unit_pool_setup, unit_pool_teardown),
        cmocka_unit_test_setup_teardown(test_merge_by_name, unit_pool_setup,
                                        unit_pool_teardown),
        cmocka_unit_test_setup_teardown(test_body_with_model, unit_pool_setup,
                                        unit_pool_teardown),
    };
    return cmocka_run_group_tests_name("model_alias", tests, NULL, NULL);
}
