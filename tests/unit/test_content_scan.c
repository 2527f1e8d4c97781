/* The tree-free content scan of stream events: the same counts as
 * jansson's tree, or "ask jansson". */
#include "unit.h"

#include <string.h>

#include "core/content_scan.h"
#include "core/token_estimate.h"

static apr_int64_t jansson_bytes(const char *data)
{
    oaip_content_count count = {0, 0, 0};

    oaip_content_count_event(&count, data, strlen(data));
    return count.bytes;
}

static void test_chunks_are_read_as_jansson_reads_them(void **state)
{
    static const char *const chunks[] = {
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"finish_reason\":"
        "null}]}",
        "{\"choices\":[{\"delta\":{\"content\":\"h\\u00e9\\ud83d\\ude00 "
        "\xc3\xbc\\n\"}}]}",
        "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
        "{\"arguments\":\"{\\\"a\\\":1}\"}}]}}]}",
        "{\"choices\":[{\"delta\":{\"reasoning_content\":\"ab\",\"refusal\":null}},"
        "{\"text\":\"xyz\"}],\"created\":1796238700,\"v\":[1.25,-0,true,false,null]}",
        "{\"type\":\"response.output_text.delta\",\"delta\":\"four\"}",
        "{\"delta\":\"four\",\"type\":\"response.audio.delta\"}",
        "{\"choices\":[{\"message\":{\"audio\":{\"transcript\":\"said\"}}}]}",
        "{}",
    };
    apr_size_t i;

    (void)state;
    for (i = 0; i < N_ELEMS(chunks); i++) {
        apr_int64_t bytes = -1;
        assert_true(oaip_content_scan(chunks[i], strlen(chunks[i]), &bytes));
        assert_int_equal(bytes, jansson_bytes(chunks[i]));
    }
}

static void test_what_it_cannot_be_sure_of_goes_to_jansson(void **state)
{
    static const char *const unsure[] = {
        "{\"choices\":[{\"delta\":{\"content\":\"a\",\"content\":\"bb\"}}]}", /* duplicate
                                                                               */
        "{\"choices\":[{\"delta\":{\"cont\\u0065nt\":\"a\"}}]}",  /* escaped key */
        "{\"choices\":[{\"delta\":{\"content\":\"a\\u0000\"}}]}", /* NUL */
        "{\"n\":1e999}",                                          /* exponent */
        "{\"n\":12345678901234567890}",                           /* too big */
        "{\"s\":\"\xc0\xaf\"}",                                   /* overlong */
        "{\"choices\":[]} x",                                     /* trailing */
        " {\"choices\":[]}",                                      /* leading space */
        "{\"a\":[}",
        "[1]",
    };
    apr_size_t i;

    (void)state;
    for (i = 0; i < N_ELEMS(unsure); i++) {
        apr_int64_t bytes;
        assert_false(oaip_content_scan(unsure[i], strlen(unsure[i]), &bytes));
    }
}

int run_content_scan_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chunks_are_read_as_jansson_reads_them),
        cmocka_unit_test(test_what_it_cannot_be_sure_of_goes_to_jansson),
    };

    return cmocka_run_group_tests_name("content_scan", tests, NULL, NULL);
}
