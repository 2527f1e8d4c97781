#include "core/errors.h"

#include <apr_strings.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const oaip_error_info error_table[OAIP_ERR__COUNT] = {
    [OAIP_ERR_EMPTY_BODY] = {400, "Invalid JSON", "invalid_request_error", "empty_body"},
    [OAIP_ERR_INVALID_JSON] = {400, "Invalid JSON", "invalid_request_error",
                               "invalid_json"},
    [OAIP_ERR_NOT_OBJECT] = {400, "Invalid request", "invalid_request_error",
                             "invalid_body"},
    [OAIP_ERR_INVALID_MESSAGES] = {400, "Invalid messages format",
                                   "invalid_request_error", "invalid_messages"},
    [OAIP_ERR_BAD_REQUEST] = {400, "Bad Request", "invalid_request_error", "bad_request"},
    [OAIP_ERR_MODEL_NOT_ALLOWED] = {400, "Model Not Allowed", "invalid_request_error",
                                    "model_not_allowed"},
    [OAIP_ERR_ORIGIN_FORBIDDEN] = {403, "Origin Not Allowed", "invalid_request_error",
                                   "origin_not_allowed"},
    [OAIP_ERR_NOT_FOUND] = {404, "Not Found", "invalid_request_error", "unknown_url"},
    [OAIP_ERR_METHOD_NOT_ALLOWED] = {405, "Method Not Allowed", "invalid_request_error",
                                     "method_not_allowed"},
    [OAIP_ERR_BODY_TOO_LARGE] = {413, "Request Entity Too Large", "invalid_request_error",
                                 "request_too_large"},
    [OAIP_ERR_BODY_TIMEOUT] = {408, "Request Timeout", "invalid_request_error",
                               "request_timeout"},
    [OAIP_ERR_NO_API_KEY] = {500, "Configuration Error", "server_error",
                             "api_key_not_configured"},
    [OAIP_ERR_INTERNAL] = {500, "Internal Server Error", "server_error",
                           "internal_error"},
    [OAIP_ERR_UPSTREAM_UNREACHABLE] = {502, "Bad Gateway", "upstream_error",
                                       "upstream_unreachable"},
    [OAIP_ERR_UPSTREAM_INVALID] = {502, "Bad Gateway", "upstream_error",
                                   "upstream_invalid_response"},
    [OAIP_ERR_UPSTREAM_TIMEOUT] = {504, "Gateway Timeout", "upstream_error",
                                   "upstream_timeout"},
    [OAIP_ERR_TOO_MANY_STREAMS] = {503, "Service Unavailable", "server_error",
                                   "too_many_streams"},
    /* type as OpenAI's own 429s: what was exhausted */
    [OAIP_ERR_RATE_LIMITED] = {429, "Too Many Requests", "requests",
                               "rate_limit_exceeded"},
    [OAIP_ERR_TOKEN_BUDGET_EXHAUSTED] = {429, "Too Many Requests", "tokens",
                                         "token_budget_exceeded"},
    [OAIP_ERR_LIMITS_UNAVAILABLE] = {503, "Service Unavailable", "server_error",
                                     "limits_unavailable"},
    [OAIP_ERR_MODEL_NOT_ROUTED] = {400, "Model Not Routed", "invalid_request_error",
                                   "model_not_routed"},
};

const oaip_error_info *oaip_error_info_get(oaip_error_kind kind)
{
    if ((int)kind < 0 || kind >= OAIP_ERR__COUNT) {
        kind = OAIP_ERR_INTERNAL;
    }
    return &error_table[kind];
}

/* jansson allocates with malloc; hand the text to the pool and free it. */
static const char *dump_to_pool(apr_pool_t *p, json_t *value)
{
    char *text = json_dumps(value, JSON_COMPACT | JSON_ENSURE_ASCII);
    const char *copy;

    json_decref(value);
    if (text == NULL) {
        return "{\"error\":\"Internal Server Error\"}";
    }
    copy = apr_pstrdup(p, text);
    free(text);
    return copy;
}

/* A detail that is not valid UTF-8 would make jansson refuse the string, so
 * such bytes are replaced rather than losing the whole message. */
static json_t *json_text(const char *s)
{
    json_t *value = json_string(s);
    char *clean, *q;

    if (value != NULL) {
        return value;
    }
    clean = strdup(s);
    if (clean == NULL) {
        return json_string("");
    }
    for (q = clean; *q; q++) {
        if ((unsigned char)*q >= 0x80) {
            *q = '?';
        }
    }
    value = json_string(clean);
    free(clean);
    return value ? value : json_string("");
}

static json_t *openai_shape(const oaip_error_info *info, const char *detail)
{
    return json_pack("{s:{s:o,s:s,s:n,s:s}}", "error", "message", json_text(detail),
                     "type", info->type, "param", "code", info->code);
}

const char *oaip_error_body(apr_pool_t *p, oaip_error_format fmt, oaip_error_kind kind,
                            const char *detail)
{
    return oaip_error_body_info(p, fmt, oaip_error_info_get(kind), detail);
}

const char *oaip_error_body_info(apr_pool_t *p, oaip_error_format fmt,
                                 const oaip_error_info *info, const char *detail)
{
    json_t *body;

    if (detail == NULL) {
        detail = info->title;
    }
    if (fmt == OAIP_ERRFMT_OPENAI) {
        body = openai_shape(info, detail);
    } else {
        body = json_pack("{s:s,s:o}", "error", info->title, "message", json_text(detail));
    }
    return dump_to_pool(p, body);
}

static const char *sse_event(apr_pool_t *p, json_t *data)
{
    return apr_pstrcat(p, "event: error\ndata: ", dump_to_pool(p, data), "\n\n", NULL);
}

/* {"type":"error","code","message","param","sequence_number"}, as the
 * Responses API documents its error event; `code` and `param` are taken
 * over (json_t references) and may be NULL for null. */
static json_t *responses_shape(json_t *code, json_t *message, json_t *param,
                               apr_int64_t sequence_number)
{
    return json_pack("{s:s,s:o,s:o,s:o,s:I}", "type", "error", "code",
                     code ? code : json_null(), "message", message, "param",
                     param ? param : json_null(), "sequence_number",
                     (json_int_t)(sequence_number < 0 ? 0 : sequence_number));
}

const char *oaip_error_sse_event(apr_pool_t *p, oaip_sse_error_shape shape,
                                 apr_int64_t sequence_number, oaip_error_kind kind,
                                 const char *detail)
{
    const oaip_error_info *info = oaip_error_info_get(kind);

    if (detail == NULL) {
        detail = info->title;
    }
    if (shape == OAIP_SSE_ERRORS_RESPONSES) {
        return sse_event(p, responses_shape(json_string(info->code), json_text(detail),
                                            NULL, sequence_number));
    }
    return sse_event(p, openai_shape(info, detail));
}

/* The Responses event's code: the upstream error's code when it is a
 * string or a number (as text), else its type, else "upstream_error";
 * clients read it as a string. */
static json_t *responses_code(json_t *error)
{
    json_t *code = json_object_get(error, "code");
    json_t *type = json_object_get(error, "type");

    if (json_is_string(code) && json_string_length(code) > 0) {
        return json_copy(code);
    }
    if (json_is_integer(code)) {
        char text[32];
        snprintf(text, sizeof(text), "%" JSON_INTEGER_FORMAT, json_integer_value(code));
        return json_string(text);
    }
    if (json_is_string(type) && json_string_length(type) > 0) {
        return json_copy(type);
    }
    return json_string("upstream_error");
}

static const char *upstream_excerpt(apr_pool_t *p, int status, const char *body,
                                    apr_size_t len)
{
    char *excerpt = apr_pstrndup(p, body, len > 200 ? 200 : len);

    return apr_psprintf(p, "The upstream API answered %d: %s", status, excerpt);
}

static const char *responses_from_upstream(apr_pool_t *p, apr_int64_t sequence_number,
                                           int status, const char *body, apr_size_t len,
                                           json_t *parsed)
{
    json_t *error = json_object_get(parsed, "error");
    json_t *message = json_object_get(error, "message");
    json_t *param = json_object_get(error, "param");
    json_t *event;

    if (json_is_object(error) && json_is_string(message)) {
        event = responses_shape(responses_code(error), json_copy(message),
                                json_is_string(param) ? json_copy(param) : NULL,
                                sequence_number);
    } else {
        event = responses_shape(json_string("upstream_error"),
                                json_text(upstream_excerpt(p, status, body, len)), NULL,
                                sequence_number);
    }
    json_decref(parsed);
    return sse_event(p, event);
}

const char *oaip_error_sse_from_upstream(apr_pool_t *p, oaip_sse_error_shape shape,
                                         apr_int64_t sequence_number, int status,
                                         const char *body, apr_size_t len)
{
    json_t *parsed = json_loadb(body, len, 0, NULL);
    const oaip_error_info *info = oaip_error_info_get(OAIP_ERR_UPSTREAM_INVALID);
    json_t *event;

    if (shape == OAIP_SSE_ERRORS_RESPONSES) {
        return responses_from_upstream(p, sequence_number, status, body, len, parsed);
    }
    if (json_is_object(parsed) && json_object_get(parsed, "error") != NULL) {
        event = parsed;
        if (json_object_get(event, "status") == NULL) {
            json_object_set_new(event, "status", json_integer(status));
        }
    } else {
        json_decref(parsed);
        event =
            json_pack("{s:{s:o,s:s,s:n,s:s},s:i}", "error", "message",
                      json_text(upstream_excerpt(p, status, body, len)), "type",
                      info->type, "param", "code", "upstream_error", "status", status);
    }
    return sse_event(p, event);
}

#define SEQUENCE_KEY "\"sequence_number\""

static int contains(const char *data, apr_size_t len, const char *needle)
{
    apr_size_t n = strlen(needle), i;

    for (i = 0; i + n <= len; i++) {
        if (data[i] == needle[0] && memcmp(data + i, needle, n) == 0) {
            return 1;
        }
    }
    return 0;
}

apr_int64_t oaip_error_sse_sequence_of(const char *data, apr_size_t len)
{
    json_t *event, *number;
    apr_int64_t value = -1;

    /* most events of other APIs never name it: no parse for them */
    if (!contains(data, len, SEQUENCE_KEY)) {
        return -1;
    }
    event = json_loadb(data, len, 0, NULL);
    number = json_object_get(event, "sequence_number");
    if (json_is_integer(number) && json_integer_value(number) >= 0) {
        value = (apr_int64_t)json_integer_value(number);
    }
    json_decref(event);
    return value;
}
