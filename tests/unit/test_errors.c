/* JSON error bodies and the SSE error event. */
#include "unit.h"

#include <apr_strings.h>
#include <string.h>

#include "core/errors.h"
#include "core/outcome.h"

#define SSE_PREFIX "event: error\ndata: "
#define SSE_SUFFIX "\n\n"

static const oaip_error_format formats[] = {OAIP_ERRFMT_WORKER, OAIP_ERRFMT_OPENAI};

static json_t *parse_body(apr_pool_t *p, const char *body)
{
    json_t *value;

    assert_non_null(body);
    value = unit_json_parse(p, body, strlen(body));
    assert_true(json_is_object(value));
    return value;
}

static const char *string_member(json_t *object, const char *name)
{
    json_t *member = json_object_get(object, name);

    if (!json_is_string(member)) {
        fail_msg("\"%s\" is missing or not a string", name);
    }
    return json_string_value(member);
}

/* The human message of a body in either format. */
static const char *message_of(json_t *body, oaip_error_format fmt)
{
    return string_member(
        fmt == OAIP_ERRFMT_OPENAI ? json_object_get(body, "error") : body, "message");
}

/* {"error":{"message","type","param":null,"code"}} with the values of `kind`;
 * returns the message. */
static const char *check_openai_shape(json_t *body, oaip_error_kind kind)
{
    const oaip_error_info *info = oaip_error_info_get(kind);
    json_t *error = json_object_get(body, "error");

    assert_int_equal(json_object_size(body), 1);
    assert_true(json_is_object(error));
    assert_int_equal(json_object_size(error), 4);
    assert_string_equal(string_member(error, "type"), info->type);
    assert_string_equal(string_member(error, "code"), info->code);
    assert_true(json_is_null(json_object_get(error, "param")));
    return string_member(error, "message");
}

/* {"error":"<title>","message":"<detail>"}; returns the message. */
static const char *check_seed_shape(json_t *body, oaip_error_kind kind)
{
    assert_int_equal(json_object_size(body), 2);
    assert_string_equal(string_member(body, "error"), oaip_error_info_get(kind)->title);
    return string_member(body, "message");
}

/* The JSON of the event's single data line. */
static json_t *parse_sse_event(apr_pool_t *p, const char *event)
{
    size_t len;
    const char *data;

    assert_non_null(event);
    len = strlen(event);
    if (strncmp(event, SSE_PREFIX, strlen(SSE_PREFIX)) != 0) {
        fail_msg("event does not start with the error prefix: %.200s", event);
    }
    assert_true(len >= strlen(SSE_PREFIX) + strlen(SSE_SUFFIX));
    assert_string_equal(event + len - strlen(SSE_SUFFIX), SSE_SUFFIX);
    data = event + strlen(SSE_PREFIX);
    len -= strlen(SSE_PREFIX) + strlen(SSE_SUFFIX);
    /* one data line: no line break inside the JSON */
    assert_null(memchr(data, '\n', len));
    assert_null(memchr(data, '\r', len));
    return unit_json_parse(p, data, len);
}

/* The Responses API's error event: {"type":"error","code","message",
 * "param":null,"sequence_number"}, nothing else; returns the message. */
static const char *check_responses_shape(json_t *data, const char *code,
                                         json_int_t sequence_number)
{
    assert_true(json_is_object(data));
    assert_int_equal(json_object_size(data), 5);
    assert_string_equal(string_member(data, "type"), "error");
    assert_string_equal(string_member(data, "code"), code);
    assert_true(json_is_null(json_object_get(data, "param")));
    assert_true(json_is_integer(json_object_get(data, "sequence_number")));
    assert_int_equal(json_integer_value(json_object_get(data, "sequence_number")),
                     sequence_number);
    return string_member(data, "message");
}

static const char *info_code(oaip_error_kind kind)
{
    return oaip_error_info_get(kind)->code;
}

/* ---- oaip_error_info_get ---- */

static void test_status_per_kind(void **state)
{
    static const struct {
        oaip_error_kind kind;
        int status;
    } cases[] = {
        {OAIP_ERR_EMPTY_BODY, 400},         {OAIP_ERR_INVALID_JSON, 400},
        {OAIP_ERR_NOT_OBJECT, 400},         {OAIP_ERR_INVALID_MESSAGES, 400},
        {OAIP_ERR_BAD_REQUEST, 400},        {OAIP_ERR_MODEL_NOT_ALLOWED, 400},
        {OAIP_ERR_ORIGIN_FORBIDDEN, 403},   {OAIP_ERR_NOT_FOUND, 404},
        {OAIP_ERR_METHOD_NOT_ALLOWED, 405}, {OAIP_ERR_BODY_TIMEOUT, 408},
        {OAIP_ERR_BODY_TOO_LARGE, 413},     {OAIP_ERR_NO_API_KEY, 500},
        {OAIP_ERR_INTERNAL, 500},           {OAIP_ERR_UPSTREAM_UNREACHABLE, 502},
        {OAIP_ERR_UPSTREAM_INVALID, 502},   {OAIP_ERR_TOO_MANY_STREAMS, 503},
        {OAIP_ERR_RATE_LIMITED, 429},       {OAIP_ERR_TOKEN_BUDGET_EXHAUSTED, 429},
        {OAIP_ERR_LIMITS_UNAVAILABLE, 503}, {OAIP_ERR_UPSTREAM_TIMEOUT, 504},
        {OAIP_ERR_MODEL_NOT_ROUTED, 400},
    };
    size_t i;

    (void)state;
    assert_int_equal(N_ELEMS(cases), OAIP_ERR__COUNT);
    for (i = 0; i < N_ELEMS(cases); i++) {
        const oaip_error_info *info = oaip_error_info_get(cases[i].kind);
        assert_non_null(info);
        if (info->status != cases[i].status) {
            fail_msg("kind %d: status %d, expected %d", (int)cases[i].kind, info->status,
                     cases[i].status);
        }
    }
}

static void test_every_kind_is_described(void **state)
{
    int kind;

    (void)state;
    for (kind = 0; kind < OAIP_ERR__COUNT; kind++) {
        const oaip_error_info *info = oaip_error_info_get((oaip_error_kind)kind);
        if (info->title == NULL || info->type == NULL || info->code == NULL ||
            *info->title == '\0' || *info->type == '\0' || *info->code == '\0') {
            fail_msg("kind %d has no title, type or code", kind);
        }
    }
}

static void test_out_of_range_kind_is_internal(void **state)
{
    const oaip_error_info *internal = oaip_error_info_get(OAIP_ERR_INTERNAL);
    apr_pool_t *p = *state;

    assert_int_equal(internal->status, 500);
    assert_ptr_equal(oaip_error_info_get(OAIP_ERR__COUNT), internal);
    assert_ptr_equal(oaip_error_info_get((oaip_error_kind)1000), internal);
    assert_ptr_equal(oaip_error_info_get((oaip_error_kind)-1), internal);
    check_openai_shape(
        parse_body(p, oaip_error_body(p, OAIP_ERRFMT_OPENAI, (oaip_error_kind)-7, NULL)),
        OAIP_ERR_INTERNAL);
    check_seed_shape(
        parse_body(p, oaip_error_body(p, OAIP_ERRFMT_WORKER, OAIP_ERR__COUNT, "x")),
        OAIP_ERR_INTERNAL);
}

/* ---- oaip_error_body ---- */

static void test_seed_format(void **state)
{
    apr_pool_t *p = *state;
    const char *body = oaip_error_body(p, OAIP_ERRFMT_WORKER, OAIP_ERR_INVALID_MESSAGES,
                                       "messages must be an array, not a string");

    assert_string_equal(check_seed_shape(parse_body(p, body), OAIP_ERR_INVALID_MESSAGES),
                        "messages must be an array, not a string");
    assert_string_equal(oaip_error_info_get(OAIP_ERR_INVALID_MESSAGES)->title,
                        "Invalid messages format");
}

/* An error that is not one of the kinds (httpd's own, taken over by
 * error_pages.c) in both formats: the given title, type and code. */
static void test_body_from_info(void **state)
{
    apr_pool_t *p = *state;
    const oaip_error_info info = {401, "Unauthorized", "invalid_request_error",
                                  "unauthorized"};
    json_t *seed = parse_body(p, oaip_error_body_info(p, OAIP_ERRFMT_WORKER, &info,
                                                      "Authentication is required"));
    json_t *openai =
        parse_body(p, oaip_error_body_info(p, OAIP_ERRFMT_OPENAI, &info, NULL));
    json_t *inner = json_object_get(openai, "error");

    assert_string_equal(string_member(seed, "error"), "Unauthorized");
    assert_string_equal(string_member(seed, "message"), "Authentication is required");
    assert_int_equal(json_object_size(seed), 2);
    assert_string_equal(string_member(inner, "message"), "Unauthorized"); /* the title */
    assert_string_equal(string_member(inner, "type"), "invalid_request_error");
    assert_string_equal(string_member(inner, "code"), "unauthorized");
    assert_true(json_is_null(json_object_get(inner, "param")));
    /* a kind's body is the body of its info */
    assert_string_equal(oaip_error_body(p, OAIP_ERRFMT_OPENAI, OAIP_ERR_NOT_FOUND, "x"),
                        oaip_error_body_info(p, OAIP_ERRFMT_OPENAI,
                                             oaip_error_info_get(OAIP_ERR_NOT_FOUND),
                                             "x"));
}

static void test_seed_format_null_detail(void **state)
{
    apr_pool_t *p = *state;
    const char *body =
        oaip_error_body(p, OAIP_ERRFMT_WORKER, OAIP_ERR_BODY_TOO_LARGE, NULL);

    assert_string_equal(check_seed_shape(parse_body(p, body), OAIP_ERR_BODY_TOO_LARGE),
                        oaip_error_info_get(OAIP_ERR_BODY_TOO_LARGE)->title);
}

static void test_openai_format(void **state)
{
    apr_pool_t *p = *state;
    const char *body = oaip_error_body(p, OAIP_ERRFMT_OPENAI, OAIP_ERR_ORIGIN_FORBIDDEN,
                                       "Origin https://evil.com is not allowed");

    assert_string_equal(
        check_openai_shape(parse_body(p, body), OAIP_ERR_ORIGIN_FORBIDDEN),
        "Origin https://evil.com is not allowed");
}

static void test_openai_format_null_detail(void **state)
{
    apr_pool_t *p = *state;
    const char *body =
        oaip_error_body(p, OAIP_ERRFMT_OPENAI, OAIP_ERR_UPSTREAM_TIMEOUT, NULL);

    assert_string_equal(
        check_openai_shape(parse_body(p, body), OAIP_ERR_UPSTREAM_TIMEOUT),
        oaip_error_info_get(OAIP_ERR_UPSTREAM_TIMEOUT)->title);
}

static void test_every_kind_in_both_formats(void **state)
{
    apr_pool_t *p = *state;
    int kind;

    for (kind = 0; kind < OAIP_ERR__COUNT; kind++) {
        check_seed_shape(parse_body(p, oaip_error_body(p, OAIP_ERRFMT_WORKER, kind, "d")),
                         kind);
        check_openai_shape(
            parse_body(p, oaip_error_body(p, OAIP_ERRFMT_OPENAI, kind, "d")), kind);
    }
}

/* Details made of valid UTF-8 come back exactly, whatever they contain. */
static void test_hostile_detail_round_trips(void **state)
{
    static const char *const details[] = {
        "",
        "quote \" backslash \\ slash /",
        "\"}],\"injected\":true,\"x\":[{\"",
        "line\nbreak\r\nand\ttab",
        "control \x01\x02\x1b[31m\x1f\x7f bytes",
        "caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80",
        "</script><script>alert(1)</script>",
        "%s%n%x",
    };
    apr_pool_t *p = *state;
    size_t i, f;

    for (i = 0; i < N_ELEMS(details); i++) {
        for (f = 0; f < N_ELEMS(formats); f++) {
            json_t *body = parse_body(
                p, oaip_error_body(p, formats[f], OAIP_ERR_BAD_REQUEST, details[i]));
            assert_string_equal(message_of(body, formats[f]), details[i]);
        }
    }
}

/* A message made from "bad <invalid bytes> bytes" kept its ASCII around them. */
static void assert_keeps_ascii(const char *message)
{
    size_t len = strlen(message);

    if (len < strlen("bad  bytes") || strncmp(message, "bad ", 4) != 0 ||
        strcmp(message + len - 6, " bytes") != 0) {
        fail_msg("message lost its text: \"%s\"", message);
    }
}

/* Details that are not UTF-8 still give valid JSON, keeping their ASCII. */
static void test_invalid_utf8_detail(void **state)
{
    static const char *const middles[] = {
        "\xff\xfe",         /* never valid */
        "\xc3",             /* truncated sequence */
        "\xc0\xaf",         /* overlong '/' */
        "\xed\xa0\x80",     /* UTF-16 surrogate */
        "\xf4\x90\x80\x80", /* beyond U+10FFFF */
        "\x80\xc3\xa9\xff", /* a valid character between invalid bytes */
        "\n\xff\"",         /* with characters that need escaping */
    };
    apr_pool_t *p = *state;
    size_t i, f;

    for (i = 0; i < N_ELEMS(middles); i++) {
        const char *detail = apr_pstrcat(p, "bad ", middles[i], " bytes", NULL);
        const char *event = oaip_error_sse_event(p, OAIP_SSE_ERRORS_CHAT, 0,
                                                 OAIP_ERR_BAD_REQUEST, detail);
        for (f = 0; f < N_ELEMS(formats); f++) {
            assert_keeps_ascii(
                message_of(parse_body(p, oaip_error_body(p, formats[f],
                                                         OAIP_ERR_BAD_REQUEST, detail)),
                           formats[f]));
        }
        assert_keeps_ascii(
            check_openai_shape(parse_sse_event(p, event), OAIP_ERR_BAD_REQUEST));
    }
}

static void test_long_detail(void **state)
{
    apr_pool_t *p = *state;
    char *detail = apr_palloc(p, 100001);
    size_t f;

    memset(detail, '"', 100000);
    detail[100000] = '\0';
    for (f = 0; f < N_ELEMS(formats); f++) {
        json_t *body =
            parse_body(p, oaip_error_body(p, formats[f], OAIP_ERR_BAD_REQUEST, detail));
        assert_string_equal(message_of(body, formats[f]), detail);
    }
}

/* ---- oaip_error_sse_event ---- */

static void test_sse_event(void **state)
{
    apr_pool_t *p = *state;
    const char *event = oaip_error_sse_event(
        p, OAIP_SSE_ERRORS_CHAT, 7, OAIP_ERR_UPSTREAM_INVALID, "upstream said no");

    assert_string_equal(
        check_openai_shape(parse_sse_event(p, event), OAIP_ERR_UPSTREAM_INVALID),
        "upstream said no");
}

static void test_sse_event_null_detail(void **state)
{
    apr_pool_t *p = *state;
    const char *event =
        oaip_error_sse_event(p, OAIP_SSE_ERRORS_CHAT, 0, OAIP_ERR_UPSTREAM_TIMEOUT, NULL);

    assert_string_equal(
        check_openai_shape(parse_sse_event(p, event), OAIP_ERR_UPSTREAM_TIMEOUT),
        oaip_error_info_get(OAIP_ERR_UPSTREAM_TIMEOUT)->title);
}

/* A detail cannot end the event early or start another one. */
static void test_sse_event_hostile_detail(void **state)
{
    static const char *const details[] = {
        "a\n\nevent: done\ndata: [DONE]\n\n",
        "a\r\ndata: {}\r\n",
        "\n",
    };
    apr_pool_t *p = *state;
    size_t i;

    for (i = 0; i < N_ELEMS(details); i++) {
        const char *event = oaip_error_sse_event(p, OAIP_SSE_ERRORS_CHAT, 0,
                                                 OAIP_ERR_INTERNAL, details[i]);
        assert_string_equal(
            check_openai_shape(parse_sse_event(p, event), OAIP_ERR_INTERNAL), details[i]);
        event = oaip_error_sse_event(p, OAIP_SSE_ERRORS_RESPONSES, 3, OAIP_ERR_INTERNAL,
                                     details[i]);
        assert_string_equal(check_responses_shape(parse_sse_event(p, event),
                                                  info_code(OAIP_ERR_INTERNAL), 3),
                            details[i]);
    }
}

/* ---- the Responses API's error event ---- */

static void test_responses_event(void **state)
{
    apr_pool_t *p = *state;
    const char *event = oaip_error_sse_event(
        p, OAIP_SSE_ERRORS_RESPONSES, 12, OAIP_ERR_UPSTREAM_INVALID, "upstream said no");

    assert_string_equal(check_responses_shape(parse_sse_event(p, event),
                                              info_code(OAIP_ERR_UPSTREAM_INVALID), 12),
                        "upstream said no");
    /* exactly as the API reference writes it, members in that order */
    assert_string_equal(event,
                        "event: error\ndata: {\"type\":\"error\",\"code\":"
                        "\"upstream_invalid_response\",\"message\":\"upstream said "
                        "no\",\"param\":null,\"sequence_number\":12}\n\n");
}

/* No event relayed yet (heartbeats only): the error is event 0; a number
 * below 0 never goes out. */
static void test_responses_event_first(void **state)
{
    apr_pool_t *p = *state;
    int kind;

    for (kind = 0; kind < OAIP_ERR__COUNT; kind++) {
        const char *event =
            oaip_error_sse_event(p, OAIP_SSE_ERRORS_RESPONSES, -1, kind, NULL);
        assert_string_equal(
            check_responses_shape(parse_sse_event(p, event), info_code(kind), 0),
            oaip_error_info_get(kind)->title);
    }
    assert_non_null(strstr(oaip_error_sse_event(p, OAIP_SSE_ERRORS_RESPONSES, -100,
                                                OAIP_ERR_UPSTREAM_TIMEOUT, "x"),
                           "\"sequence_number\":0}"));
}

static void test_responses_event_invalid_utf8(void **state)
{
    apr_pool_t *p = *state;
    const char *event = oaip_error_sse_event(p, OAIP_SSE_ERRORS_RESPONSES, 1,
                                             OAIP_ERR_BAD_REQUEST, "bad \xff\xfe bytes");

    assert_keeps_ascii(check_responses_shape(parse_sse_event(p, event),
                                             info_code(OAIP_ERR_BAD_REQUEST), 1));
}

#define UPSTREAM(s) s, sizeof(s) - 1

/* An upstream's OpenAI error object in the Responses shape: its message,
 * its code as a string (else its type), its param. */
static void test_responses_from_upstream(void **state)
{
    apr_pool_t *p = *state;
    json_t *data;

    data = parse_sse_event(
        p,
        oaip_error_sse_from_upstream(
            p, OAIP_SSE_ERRORS_RESPONSES, 4, 429,
            UPSTREAM("{\"error\":{\"message\":\"Rate limit reached\",\"type\":"
                     "\"requests\",\"param\":null,\"code\":\"rate_limit_exceeded\"}}")));
    assert_string_equal(check_responses_shape(data, "rate_limit_exceeded", 4),
                        "Rate limit reached");

    /* OpenAI's 500s carry no code: the type stands in */
    data = parse_sse_event(
        p, oaip_error_sse_from_upstream(
               p, OAIP_SSE_ERRORS_RESPONSES, 0, 500,
               UPSTREAM("{\"error\":{\"message\":\"The server had an error\","
                        "\"type\":\"server_error\",\"param\":null,\"code\":null}}")));
    assert_string_equal(check_responses_shape(data, "server_error", 0),
                        "The server had an error");

    /* a number as code (some compatible servers) becomes its text; a
     * string param is kept */
    data = parse_sse_event(p, oaip_error_sse_from_upstream(
                                  p, OAIP_SSE_ERRORS_RESPONSES, 2, 400,
                                  UPSTREAM("{\"error\":{\"message\":\"bad\",\"code\":400,"
                                           "\"param\":\"temperature\"}}")));
    assert_int_equal(json_object_size(data), 5);
    assert_string_equal(string_member(data, "code"), "400");
    assert_string_equal(string_member(data, "param"), "temperature");
    assert_string_equal(string_member(data, "message"), "bad");

    /* neither code nor type */
    data = parse_sse_event(
        p, oaip_error_sse_from_upstream(
               p, OAIP_SSE_ERRORS_RESPONSES, 9, 503,
               UPSTREAM("{\"error\":{\"message\":\"busy\",\"code\":{}}}")));
    assert_string_equal(check_responses_shape(data, "upstream_error", 9), "busy");
}

/* Anything else the upstream answered: an excerpt as the message. */
static void test_responses_from_upstream_text(void **state)
{
    static const char *const bodies[] = {"Bad gateway",
                                         "{\"error\":\"flat\"}",
                                         "{\"error\":{\"code\":\"x\"}}",
                                         "[1,2]",
                                         "",
                                         "\xff\xfe not utf-8"};
    apr_pool_t *p = *state;
    size_t i;

    for (i = 0; i < N_ELEMS(bodies); i++) {
        json_t *data = parse_sse_event(
            p, oaip_error_sse_from_upstream(p, OAIP_SSE_ERRORS_RESPONSES, 1, 502,
                                            bodies[i], strlen(bodies[i])));
        const char *message = check_responses_shape(data, "upstream_error", 1);
        if (strncmp(message, "The upstream API answered 502: ", 31) != 0) {
            fail_msg("body %zu: unexpected message %s", i, message);
        }
    }
}

/* The chat shape keeps the upstream's own error object, with its status. */
static void test_chat_from_upstream(void **state)
{
    apr_pool_t *p = *state;
    json_t *data = parse_sse_event(
        p,
        oaip_error_sse_from_upstream(
            p, OAIP_SSE_ERRORS_CHAT, 5, 429,
            UPSTREAM("{\"error\":{\"message\":\"Rate limit reached\",\"code\":null}}")));

    assert_int_equal(json_object_size(data), 2);
    assert_string_equal(string_member(json_object_get(data, "error"), "message"),
                        "Rate limit reached");
    assert_int_equal(json_integer_value(json_object_get(data, "status")), 429);
    data = parse_sse_event(p, oaip_error_sse_from_upstream(p, OAIP_SSE_ERRORS_CHAT, 0,
                                                           500, UPSTREAM("oops")));
    assert_string_equal(string_member(json_object_get(data, "error"), "code"),
                        "upstream_error");
    assert_string_equal(string_member(json_object_get(data, "error"), "message"),
                        "The upstream API answered 500: oops");
}

#define SEQ(s) oaip_error_sse_sequence_of(s, sizeof(s) - 1)

static void test_sequence_of(void **state)
{
    (void)state;
    assert_int_equal(SEQ("{\"type\":\"response.created\",\"sequence_number\":0}"), 0);
    assert_int_equal(SEQ("{\"type\":\"response.output_text.delta\",\"sequence_number\":"
                         "41,\"delta\":\"x\"}"),
                     41);
    assert_int_equal(SEQ("{ \"sequence_number\" : 7 }"), 7);
    assert_int_equal(SEQ("\n{\"sequence_number\":\n 8}"), 8);
    /* not a whole number from 0, not at the top, not JSON, not there */
    assert_int_equal(SEQ("{\"sequence_number\":-1}"), -1);
    assert_int_equal(SEQ("{\"sequence_number\":1.5}"), -1);
    assert_int_equal(SEQ("{\"sequence_number\":\"3\"}"), -1);
    assert_int_equal(SEQ("{\"response\":{\"sequence_number\":3}}"), -1);
    assert_int_equal(SEQ("{\"delta\":\"\\\"sequence_number\\\":3\"}"), -1);
    assert_int_equal(SEQ("{\"sequence_number\":3"), -1);
    assert_int_equal(SEQ("[DONE]"), -1);
    assert_int_equal(SEQ(""), -1);
    assert_int_equal(SEQ("{\"choices\":[],\"usage\":{}}"), -1);
    assert_int_equal(oaip_error_sse_sequence_of("{\"sequence_number\":5}", 10), -1);
}

/* Every outcome has a name, no two the same: the access log and the status
 * page tell them apart by it. */
static void test_outcome_names(void **state)
{
    int i, j;

    (void)state;
    assert_null(oaip_outcome_name(OAIP_OUTCOME_NONE));
    assert_null(oaip_outcome_name(OAIP_OUTCOME__COUNT));
    assert_string_equal(oaip_outcome_name(OAIP_OUTCOME_OK), "ok");
    assert_string_equal(oaip_outcome_name(OAIP_OUTCOME_OTHER), "other");
    assert_string_equal(oaip_outcome_name(oaip_outcome_of_error(OAIP_ERR_RATE_LIMITED)),
                        "rate_limit_exceeded");
    assert_int_equal(oaip_outcome_of_error((oaip_error_kind)-3),
                     oaip_outcome_of_error(OAIP_ERR_INTERNAL));
    for (i = 0; i < OAIP_OUTCOME__COUNT; i++) {
        assert_non_null(oaip_outcome_name((oaip_outcome)i));
        for (j = 0; j < i; j++) {
            assert_string_not_equal(oaip_outcome_name((oaip_outcome)i),
                                    oaip_outcome_name((oaip_outcome)j));
        }
    }
}

int run_errors_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outcome_names),
        POOL_TEST(test_status_per_kind),
        POOL_TEST(test_every_kind_is_described),
        POOL_TEST(test_out_of_range_kind_is_internal),
        POOL_TEST(test_seed_format),
        POOL_TEST(test_seed_format_null_detail),
        POOL_TEST(test_body_from_info),
        POOL_TEST(test_openai_format),
        POOL_TEST(test_openai_format_null_detail),
        POOL_TEST(test_every_kind_in_both_formats),
        POOL_TEST(test_hostile_detail_round_trips),
        POOL_TEST(test_invalid_utf8_detail),
        POOL_TEST(test_long_detail),
        POOL_TEST(test_sse_event),
        POOL_TEST(test_sse_event_null_detail),
        POOL_TEST(test_sse_event_hostile_detail),
        POOL_TEST(test_responses_event),
        POOL_TEST(test_responses_event_first),
        POOL_TEST(test_responses_event_invalid_utf8),
        POOL_TEST(test_responses_from_upstream),
        POOL_TEST(test_responses_from_upstream_text),
        POOL_TEST(test_chat_from_upstream),
        cmocka_unit_test(test_sequence_of),
    };

    return cmocka_run_group_tests_name("errors", tests, NULL, NULL);
}
