/* Runs every group of unit tests; exits non-zero when any test fails. */
#include "unit.h"

#include <apr_general.h>
#include <stdio.h>

int unit_pool_setup(void **state)
{
    apr_pool_t *p;

    if (apr_pool_create(&p, NULL) != APR_SUCCESS) {
        return -1;
    }
    *state = p;
    return 0;
}

int unit_pool_teardown(void **state)
{
    apr_pool_destroy(*state);
    return 0;
}

static apr_status_t json_release(void *value)
{
    json_decref(value);
    return APR_SUCCESS;
}

json_t *unit_json_parse(apr_pool_t *p, const char *text, size_t len)
{
    json_error_t error;
    json_t *value =
        json_loadb(text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &error);

    if (value == NULL) {
        fail_msg("not valid JSON (%s, at byte %d): %.300s", error.text, error.position,
                 text);
    }
    apr_pool_cleanup_register(p, value, json_release, apr_pool_cleanup_null);
    return value;
}

int main(void)
{
    int (*const groups[])(void) = {run_cors_tests,           run_errors_tests,
                                   run_request_tests,        run_sse_tests,
                                   run_sse_framer_tests,     run_content_scan_tests,
                                   run_limit_spec_tests,     run_endpoint_tests,
                                   run_values_tests,         run_model_alias_tests,
                                   run_secret_mask_tests,    run_header_check_tests,
                                   run_token_estimate_tests, run_model_family_tests};
    int failed = 0, broken = 0;
    size_t i;

    if (apr_initialize() != APR_SUCCESS) {
        fprintf(stderr, "apr_initialize failed\n");
        return 2;
    }
    for (i = 0; i < N_ELEMS(groups); i++) {
        int result = groups[i]();
        if (result > 0) {
            failed += result;
        } else if (result < 0) {
            broken++;
        }
    }
    apr_terminate();
    if (failed != 0 || broken != 0) {
        fprintf(stderr, "unit tests: %d failed, %d group(s) could not run\n", failed,
                broken);
        return 1;
    }
    return 0;
}
