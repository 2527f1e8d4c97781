/* CORS origin rules, origin matching and Access-Control-Allow-Headers. */
#include "unit.h"

#include <apr_strings.h>
#include <apr_tables.h>
#include <string.h>

#include "core/cors.h"

#define BASE_HEADERS "Content-Type, Authorization, x-openai-key"

typedef struct {
    const char *origin;
    int allowed;
} origin_case;

typedef struct {
    const char *requested;
    const char *expected;
} headers_case;

/* A parsed rule as one comparable line, so a mismatch shows every field. */
static const char *describe_rule(apr_pool_t *p, const oaip_origin_rule *rule)
{
    if (rule->any) {
        return "any";
    }
    return apr_psprintf(p, "%s://%s%s port %d", rule->scheme ? rule->scheme : "(null)",
                        rule->wildcard_host ? "*." : "",
                        rule->host ? rule->host : "(null)", rule->port);
}

static void expect_rule(apr_pool_t *p, const char *text, const char *expected)
{
    oaip_origin_rule rule;
    const char *error = oaip_origin_rule_parse(p, text, &rule);

    if (error != NULL) {
        fail_msg("rule \"%s\" refused: %s", text, error);
    }
    assert_string_equal(describe_rule(p, &rule), expected);
}

static void expect_rule_refused(apr_pool_t *p, const char *text)
{
    oaip_origin_rule rule;
    const char *error = oaip_origin_rule_parse(p, text, &rule);

    if (error == NULL || *error == '\0') {
        fail_msg("rule \"%s\" accepted as %s", text, describe_rule(p, &rule));
    }
}

/* An array of rules from a NULL-terminated list of rule texts. */
static apr_array_header_t *rules_of(apr_pool_t *p, const char *first, ...)
{
    apr_array_header_t *rules = apr_array_make(p, 4, sizeof(oaip_origin_rule));
    const char *text;
    va_list ap;

    va_start(ap, first);
    for (text = first; text != NULL; text = va_arg(ap, const char *)) {
        oaip_origin_rule *rule = apr_array_push(rules);
        const char *error = oaip_origin_rule_parse(p, text, rule);
        if (error != NULL) {
            va_end(ap);
            fail_msg("rule \"%s\" refused: %s", text, error);
        }
    }
    va_end(ap);
    return rules;
}

static void expect_origins(const apr_array_header_t *rules, const origin_case *cases,
                           size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        int allowed = oaip_origin_allowed(rules, cases[i].origin) != 0;
        if (allowed != cases[i].allowed) {
            fail_msg("origin \"%s\" %s but should be %s",
                     cases[i].origin ? cases[i].origin : "(NULL)",
                     allowed ? "allowed" : "refused",
                     cases[i].allowed ? "allowed" : "refused");
        }
    }
}

static void expect_allow_headers(apr_pool_t *p, const headers_case *cases, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        const char *value = oaip_cors_allow_headers(p, cases[i].requested);
        assert_non_null(value);
        if (strcmp(value, cases[i].expected) != 0) {
            fail_msg("requested \"%s\": got \"%s\", expected \"%s\"", cases[i].requested,
                     value, cases[i].expected);
        }
    }
}

/* ---- oaip_origin_rule_parse ---- */

static void test_rule_parse_accepts(void **state)
{
    apr_pool_t *p = *state;

    expect_rule(p, "*", "any");
    expect_rule(p, "https://app.example.com", "https://app.example.com port 443");
    expect_rule(p, "http://app.example.com", "http://app.example.com port 80");
    expect_rule(p, "http://localhost:3000", "http://localhost port 3000");
    expect_rule(p, "https://*.example.com", "https://*.example.com port 443");
    expect_rule(p, "https://*.example.com:8443", "https://*.example.com port 8443");
    expect_rule(p, "http://[::1]:8080", "http://[::1] port 8080");
    expect_rule(p, "https://a.com:1", "https://a.com port 1");
    expect_rule(p, "https://a.com:65535", "https://a.com port 65535");
}

static void test_rule_parse_lowercases(void **state)
{
    apr_pool_t *p = *state;

    expect_rule(p, "HTTPS://APP.Example.COM", "https://app.example.com port 443");
    expect_rule(p, "HTTP://*.EXAMPLE.COM:8080", "http://*.example.com port 8080");
    expect_rule(p, "http://[::ABCD]:8080", "http://[::abcd] port 8080");
}

static void test_rule_parse_refuses(void **state)
{
    static const char *const refused[] = {
        "",
        "https://a.com/",
        "https://a.com/path",
        "https://a.com/path/",
        "https://user@a.com",
        "https://user:pw@a.com",
        "https://a.com?x=1",
        "https://a.com#frag",
        "ftp:/x",
        "https:a.com",
        "https://",
        "https://:443",
        "https://*.com",
        "https://*.",
        "https://*",
        "https://a.*.com",
        "https://*.*.example.com",
        "https://app*.example.com",
        "*.example.com",
        "**",
        "https://a.com:0",
        "https://a.com:70000",
        "https://a.com:65536",
        "https://a.com:99999999999999999999",
        "https://a.com:",
        "https://a.com:-1",
        "https://a.com:8o",
        "https://a.com ",
        " https://a.com",
        "https://a .com",
        "https:// a.com",
        "https://a.com\t",
        "https://a.com\r\n",
        "https://.a.com",
        "https://a.com.",
        "http://[::1",
        "null",
        "example.com",
        "://a.com",
    };
    apr_pool_t *p = *state;
    size_t i;

    for (i = 0; i < N_ELEMS(refused); i++) {
        expect_rule_refused(p, refused[i]);
    }
}

/* ---- oaip_origin_allowed ---- */

static void test_allowed_exact_rule(void **state)
{
    static const origin_case cases[] = {
        {"https://app.example.com", 1},
        {"HTTPS://APP.EXAMPLE.COM", 1},
        {"https://App.Example.Com", 1},
        {"https://app.example.com:443", 1},
        {"http://app.example.com", 0},
        {"http://app.example.com:443", 0},
        {"https://app.example.com:8443", 0},
        {"https://app.example.com:80", 0},
        {"https://app.example.com:65979", 0}, /* 443 + 65536 */
        {"https://app.example.com:99999999999999999999", 0},
        {"https://app.example.com:", 0},
        {"https://app.example.com:443x", 0},
        {"https://app.example.com.evil.com", 0},
        {"https://app.example.com.", 0},
        {"https://evilapp.example.com", 0},
        {"https://sub.app.example.com", 0},
        {"https://app.example.co", 0},
        {"https://pp.example.com", 0},
        {"https://app.example.com@evil.com", 0},
        {"https://evil.com@app.example.com", 0},
        {"https://app.example.com/", 0},
        {"https://app.example.com/x", 0},
        {"https://app.example.com?x", 0},
        {"https://app.example.com#x", 0},
        {"https://app.example.com ", 0},
        {" https://app.example.com", 0},
        {"https://app.example.com\r\n", 0},
        {"https://app.example.com,https://evil.com", 0},
        {"https://evil.com https://app.example.com", 0},
        {"https//app.example.com", 0},
        {"app.example.com", 0},
        {"null", 0},
        {"", 0},
        {"*", 0},
        {NULL, 0},
    };
    apr_pool_t *p = *state;

    expect_origins(rules_of(p, "https://app.example.com", NULL), cases, N_ELEMS(cases));
}

static void test_allowed_wildcard_rule(void **state)
{
    static const origin_case cases[] = {
        {"https://a.example.com", 1},
        {"https://a.b.example.com", 1},
        {"https://A.EXAMPLE.COM", 1},
        {"https://a.example.com:443", 1},
        {"https://example.com", 0},
        {"https://.example.com", 0},
        {"https://evil-example.com", 0},
        {"https://evilexample.com", 0},
        {"https://a.example.com.evil.com", 0},
        {"https://a.example.co", 0},
        {"http://a.example.com", 0},
        {"https://a.example.com:8443", 0},
        {"https://a.example.com/", 0},
        {"https://x@a.example.com", 0},
        {"null", 0},
    };
    apr_pool_t *p = *state;

    expect_origins(rules_of(p, "https://*.example.com", NULL), cases, N_ELEMS(cases));
}

static void test_allowed_port_rule(void **state)
{
    static const origin_case cases[] = {
        {"http://localhost:3000", 1},  {"http://LOCALHOST:3000", 1},
        {"http://localhost", 0},       {"http://localhost:80", 0},
        {"http://localhost:30000", 0}, {"http://localhost:300", 0},
        {"http://localhost:3001", 0},  {"https://localhost:3000", 0},
        {"http://localhost.:3000", 0}, {"http://localhost:3000/", 0},
    };
    apr_pool_t *p = *state;

    expect_origins(rules_of(p, "http://localhost:3000", NULL), cases, N_ELEMS(cases));
}

static void test_allowed_ipv6_rule(void **state)
{
    static const origin_case cases[] = {
        {"http://[::1]:8080", 1}, {"http://[::1]", 0},     {"http://[::2]:8080", 0},
        {"http://[::1]:8081", 0}, {"http://[::1:8080", 0}, {"http://::1:8080", 0},
    };
    apr_pool_t *p = *state;

    expect_origins(rules_of(p, "http://[::1]:8080", NULL), cases, N_ELEMS(cases));
}

static void test_allowed_any_rule(void **state)
{
    static const origin_case cases[] = {
        {"https://app.example.com", 1}, {"http://localhost:1", 1},   {"null", 1}, {"", 1},
        {"not an origin at all", 1},    {"https://a.com/path?q", 1},
    };
    apr_pool_t *p = *state;

    expect_origins(rules_of(p, "*", NULL), cases, N_ELEMS(cases));
    expect_origins(rules_of(p, "https://app.example.com", "*", NULL), cases,
                   N_ELEMS(cases));
}

static void test_allowed_several_rules(void **state)
{
    static const origin_case cases[] = {
        {"https://app.example.com", 1}, {"https://x.example.org", 1},
        {"http://localhost:3000", 1},   {"https://example.org", 0},
        {"https://x.example.com", 0},   {"http://localhost", 0},
    };
    apr_pool_t *p = *state;

    expect_origins(rules_of(p, "https://app.example.com", "https://*.example.org",
                            "http://localhost:3000", NULL),
                   cases, N_ELEMS(cases));
}

static void test_allowed_without_rules(void **state)
{
    static const origin_case cases[] = {
        {"https://app.example.com", 0}, {"null", 0}, {"", 0}, {NULL, 0}};
    apr_pool_t *p = *state;

    expect_origins(rules_of(p, NULL), cases, N_ELEMS(cases));
    expect_origins(NULL, cases, N_ELEMS(cases));
}

static void test_allowed_long_origin(void **state)
{
    apr_pool_t *p = *state;
    apr_array_header_t *rules = rules_of(p, "https://*.example.com", NULL);
    char *label = apr_palloc(p, 10001);

    memset(label, 'a', 10000);
    label[10000] = '\0';
    assert_true(oaip_origin_allowed(
        rules, apr_pstrcat(p, "https://", label, ".example.com", NULL)));
    assert_false(oaip_origin_allowed(rules, apr_pstrcat(p, "https://", label, NULL)));
    assert_false(oaip_origin_allowed(
        rules, apr_pstrcat(p, "https://a.example.com:", label, NULL)));
}

/* ---- oaip_origin_rules_any ---- */

static void test_rules_any(void **state)
{
    apr_pool_t *p = *state;

    assert_false(oaip_origin_rules_any(NULL));
    assert_false(oaip_origin_rules_any(rules_of(p, NULL)));
    assert_false(oaip_origin_rules_any(
        rules_of(p, "https://app.example.com", "https://*.example.org", NULL)));
    assert_true(oaip_origin_rules_any(rules_of(p, "*", NULL)));
    assert_true(oaip_origin_rules_any(rules_of(p, "https://app.example.com", "*", NULL)));
}

/* ---- oaip_cors_allow_headers ---- */

static void test_allow_headers_base(void **state)
{
    static const headers_case cases[] = {
        {NULL, BASE_HEADERS},
        {"", BASE_HEADERS},
        {" , ,\t,", BASE_HEADERS},
        {"content-type", BASE_HEADERS},
        {"AUTHORIZATION, X-OpenAI-Key, Content-Type", BASE_HEADERS},
    };

    expect_allow_headers(*state, cases, N_ELEMS(cases));
}

static void test_allow_headers_adds_requested(void **state)
{
    static const headers_case cases[] = {
        {"x-stainless-os, content-type", BASE_HEADERS ", x-stainless-os"},
        {"content-type,x-stainless-os", BASE_HEADERS ", x-stainless-os"},
        {"\tx-a\t,  x-b ", BASE_HEADERS ", x-a, x-b"},
        {"x-a,", BASE_HEADERS ", x-a"},
        {"x-b, x-a", BASE_HEADERS ", x-b, x-a"},
        /* prefixes and extensions of listed names are other names */
        {"content, content-type-x, x-openai",
         BASE_HEADERS ", content, content-type-x, x-openai"},
    };

    expect_allow_headers(*state, cases, N_ELEMS(cases));
}

static void test_allow_headers_no_duplicates(void **state)
{
    static const headers_case cases[] = {
        {"x-a, X-A, x-a", BASE_HEADERS ", x-a"},
        {"x-a, x-b, x-a, X-B", BASE_HEADERS ", x-a, x-b"},
        {"Authorization, authorization", BASE_HEADERS},
    };

    expect_allow_headers(*state, cases, N_ELEMS(cases));
}

static void test_allow_headers_never_echoes_malformed(void **state)
{
    static const headers_case cases[] = {
        {"bad header", BASE_HEADERS},
        {"a\r\nb", BASE_HEADERS},
        {"x-a\r\nSet-Cookie: s=1", BASE_HEADERS},
        {"(x)", BASE_HEADERS},
        {"x-a:1", BASE_HEADERS},
        {"\"x-a\"", BASE_HEADERS},
        {"x-\xc3\xa9", BASE_HEADERS},
        {"x-good, a b, a\r\nb, (x), x-other", BASE_HEADERS ", x-good, x-other"},
        {"x-a;x-b, x-c", BASE_HEADERS ", x-c"},
    };

    expect_allow_headers(*state, cases, N_ELEMS(cases));
}

static void test_allow_headers_many(void **state)
{
    apr_pool_t *p = *state;
    const char *requested = "", *expected = BASE_HEADERS;
    int i;

    for (i = 0; i < 300; i++) {
        const char *name = apr_psprintf(p, "x-h%d", i);
        /* each name twice, the second time in upper case */
        requested = apr_pstrcat(p, requested, name, ", X-H", apr_itoa(p, i), ", ", NULL);
        expected = apr_pstrcat(p, expected, ", ", name, NULL);
    }
    assert_string_equal(oaip_cors_allow_headers(p, requested), expected);
}

int run_cors_tests(void)
{
    const struct CMUnitTest tests[] = {
        POOL_TEST(test_rule_parse_accepts),
        POOL_TEST(test_rule_parse_lowercases),
        POOL_TEST(test_rule_parse_refuses),
        POOL_TEST(test_allowed_exact_rule),
        POOL_TEST(test_allowed_wildcard_rule),
        POOL_TEST(test_allowed_port_rule),
        POOL_TEST(test_allowed_ipv6_rule),
        POOL_TEST(test_allowed_any_rule),
        POOL_TEST(test_allowed_several_rules),
        POOL_TEST(test_allowed_without_rules),
        POOL_TEST(test_allowed_long_origin),
        POOL_TEST(test_rules_any),
        POOL_TEST(test_allow_headers_base),
        POOL_TEST(test_allow_headers_adds_requested),
        POOL_TEST(test_allow_headers_no_duplicates),
        POOL_TEST(test_allow_headers_never_echoes_malformed),
        POOL_TEST(test_allow_headers_many),
    };

    return cmocka_run_group_tests_name("cors", tests, NULL, NULL);
}
