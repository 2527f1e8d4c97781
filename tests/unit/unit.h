/* Shared declarations of the cmocka unit tests of the core. */
#ifndef OAIP_UNIT_H
#define OAIP_UNIT_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_pools.h>
#include <jansson.h>

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* A test run with a fresh APR pool in *state, destroyed after the test
 * (also when it fails, so values tied to the pool do not leak). */
#define POOL_TEST(f)                                                                     \
    cmocka_unit_test_setup_teardown(f, unit_pool_setup, unit_pool_teardown)

int unit_pool_setup(void **state);
int unit_pool_teardown(void **state);

/* Parses `len` bytes of JSON (any value, duplicate keys refused) or fails the
 * test; the value is released with the pool. */
json_t *unit_json_parse(apr_pool_t *p, const char *text, size_t len);

/* Each returns cmocka_run_group_tests()'s result: the number of failures. */
int run_cors_tests(void);
int run_errors_tests(void);
int run_request_tests(void);
int run_sse_tests(void);
int run_sse_framer_tests(void);
int run_content_scan_tests(void);
int run_limit_spec_tests(void);
int run_endpoint_tests(void);
int run_values_tests(void);
int run_model_alias_tests(void);
int run_secret_mask_tests(void);
int run_header_check_tests(void);
int run_token_estimate_tests(void);
int run_model_family_tests(void);

#endif
