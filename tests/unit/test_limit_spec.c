/* Rate limit and token budget values, windows and counter keys. */
#include "unit.h"

#include <string.h>

#include "core/limit_spec.h"

static void test_rates_and_periods(void **state)
{
    apr_pool_t *p = *state;
    oaip_limit l;

    assert_null(oaip_limit_parse(p, "60/m", NULL, 0, &l));
    assert_int_equal(l.amount, 60);
    assert_int_equal(l.period, 60);
    assert_int_equal(l.by, OAIP_BY_DEFAULT);
    assert_null(oaip_limit_parse(p, "5/s", NULL, 0, &l));
    assert_int_equal(l.period, 1);
    assert_null(oaip_limit_parse(p, "1000/10m", NULL, 0, &l));
    assert_int_equal(l.period, 600);
    assert_null(oaip_limit_parse(p, "3/h", NULL, 0, &l));
    assert_int_equal(l.period, 3600);
    assert_null(oaip_limit_parse(p, "7/7d", NULL, 0, &l));
    assert_int_equal(l.period, 7 * 86400);
}

static void test_token_suffixes(void **state)
{
    apr_pool_t *p = *state;
    oaip_limit l;

    assert_null(oaip_limit_parse(p, "100k/d", NULL, 1, &l));
    assert_int_equal(l.amount, 100000);
    assert_null(oaip_limit_parse(p, "2M/h", NULL, 1, &l));
    assert_int_equal(l.amount, 2000000);
    /* requests are counted one by one: no suffixes there */
    assert_non_null(oaip_limit_parse(p, "100k/d", NULL, 0, &l));
    assert_non_null(oaip_limit_parse(p, "5000M/d", NULL, 1, &l)); /* above the max */
}

static void test_bad_values(void **state)
{
    apr_pool_t *p = *state;
    const char *bad[] = {"",     "60",    "/m",     "0/m",   "-1/m",          "60/",
                         "60/x", "60/0m", "60/m ",  "60/mm", "99999999999/s", "1/367d",
                         "a/m",  "60//m", "60/1.5m"};
    oaip_limit l;
    size_t i;

    for (i = 0; i < N_ELEMS(bad); i++) {
        const char *err = oaip_limit_parse(p, bad[i], NULL, 1, &l);
        if (err == NULL) {
            fail_msg("'%s' was accepted", bad[i]);
        }
    }
}

static void test_callers(void **state)
{
    apr_pool_t *p = *state;
    oaip_limit l;

    assert_null(oaip_limit_parse(p, "1/s", "by=ip", 0, &l));
    assert_int_equal(l.by, OAIP_BY_IP);
    assert_null(oaip_limit_parse(p, "1/s", "by=user", 0, &l));
    assert_int_equal(l.by, OAIP_BY_USER);
    assert_null(oaip_limit_parse(p, "1/s", "by=header:X-Team-Id", 0, &l));
    assert_int_equal(l.by, OAIP_BY_HEADER);
    assert_string_equal(l.header, "X-Team-Id");
    assert_non_null(oaip_limit_parse(p, "1/s", "by=header:", 0, &l));
    assert_non_null(oaip_limit_parse(p, "1/s", "by=header:X Team", 0, &l));
    assert_non_null(oaip_limit_parse(p, "1/s", "by=host", 0, &l));
    assert_non_null(oaip_limit_parse(p, "1/s", "ip", 0, &l));
}

static void test_windows(void **state)
{
    apr_pool_t *p = *state;
    oaip_limit l;
    apr_time_t t = apr_time_from_sec(1800000000 + 59); /* 1800000000 % 60 == 0 */

    assert_null(oaip_limit_parse(p, "10/m", NULL, 0, &l));
    assert_int_equal(oaip_limit_window(&l, t), 1800000000 / 60);
    assert_int_equal(oaip_limit_seconds_left(&l, t), 1);
    assert_int_equal(oaip_limit_window(&l, t + apr_time_from_sec(1)),
                     1800000000 / 60 + 1);
    assert_int_equal(oaip_limit_seconds_left(&l, t + apr_time_from_sec(1)), 60);
}

static void test_keys(void **state)
{
    apr_pool_t *p = *state;
    oaip_limit l;
    const char *a, *b, *c;

    assert_null(oaip_limit_parse(p, "10/m", NULL, 0, &l));
    a = oaip_limit_key(p, 'r', &l, 42, "a.test/v1", "ip:127.0.0.1");
    assert_int_equal(strlen(a), strlen("oaip:r:60:42:") + 40);
    assert_memory_equal(a, "oaip:r:60:42:", 13);
    assert_string_equal(a, oaip_limit_key(p, 'r', &l, 42, "a.test/v1", "ip:127.0.0.1"));
    /* scope and caller are kept apart: moving a byte between them changes the key */
    b = oaip_limit_key(p, 'r', &l, 42, "a.test/v", "1ip:127.0.0.1");
    assert_string_not_equal(a, b);
    c = oaip_limit_key(p, 'r', &l, 42, "a.test/v1", "ip:127.0.0.2");
    assert_string_not_equal(a, c);
    /* spaces and control bytes of a header value never reach the key */
    c = oaip_limit_key(p, 't', &l, 42, "x", "h:a b\r\n\x01");
    assert_null(strpbrk(c, " \r\n\x01"));
}

static void test_store_specs(void **state)
{
    apr_pool_t *p = *state;
    const char *bad[] = {"", "file", "redis://", "redis://host/x", "redis://h/1/2",
                         "redis://h/-1", "redis://h/1234567", "redis://user@h",
                         "redis://us er:pw@h", "rediss://", "redis://h:0",
                         "redis://h:99999", "memcache://u:pw@h", "http://h:1",
                         "redis://h:1?db=2", "redis://h:x",
                         /* white space and control bytes in the host (found
                          * by tests/fuzz, fuzz_values) */
                         "redis://.Gsl:di@ \r\re", "redis://a b:6379", "memcache://h\tx"};
    oaip_store_spec s;
    size_t i;

    assert_null(oaip_store_spec_parse(p, "shm", &s));
    assert_int_equal(s.kind, OAIP_STORE_SHM);
    assert_null(oaip_store_spec_parse(p, "redis://127.0.0.1:6380", &s));
    assert_int_equal(s.kind, OAIP_STORE_REDIS);
    assert_string_equal(s.host, "127.0.0.1");
    assert_int_equal(s.port, 6380);
    assert_null(s.password);
    assert_null(oaip_store_spec_parse(p, "redis://:s3cret@cache.internal", &s));
    assert_int_equal(s.port, 6379);
    assert_string_equal(s.password, "s3cret");
    assert_null(strstr(s.name, "s3cret"));
    assert_int_equal(s.tls, 0);
    assert_null(s.user);
    assert_null(
        oaip_store_spec_parse(p, "rediss://oaip:s3cret@cache.internal:6380/2", &s));
    assert_int_equal(s.kind, OAIP_STORE_REDIS);
    assert_int_equal(s.tls, 1);
    assert_string_equal(s.user, "oaip");
    assert_string_equal(s.password, "s3cret");
    assert_int_equal(s.db, 2);
    assert_string_equal(s.name, "rediss://oaip@cache.internal:6380/2");
    assert_null(oaip_store_spec_parse(p, "redis://h/", &s));
    assert_int_equal(s.db, 0);
    assert_null(oaip_store_spec_parse(p, "memcache://10.0.0.5", &s));
    assert_int_equal(s.kind, OAIP_STORE_MEMCACHE);
    assert_int_equal(s.port, 11211);
    assert_null(oaip_store_spec_parse(p, "redis://[::1]:6380", &s));
    assert_string_equal(s.host, "::1");
    for (i = 0; i < N_ELEMS(bad); i++) {
        if (oaip_store_spec_parse(p, bad[i], &s) == NULL) {
            fail_msg("'%s' was accepted", bad[i]);
        }
    }
}

int run_limit_spec_tests(void)
{
    const struct CMUnitTest tests[] = {
        POOL_TEST(test_rates_and_periods), POOL_TEST(test_token_suffixes),
        POOL_TEST(test_bad_values),        POOL_TEST(test_callers),
        POOL_TEST(test_windows),           POOL_TEST(test_keys),
        POOL_TEST(test_store_specs),
    };

    return cmocka_run_group_tests_name("limit_spec", tests, NULL, NULL);
}
