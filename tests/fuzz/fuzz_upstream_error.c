/* Fuzzes the proxy's error bodies: an upstream's error answer turned into an
 * SSE error event (oaip_error_sse_from_upstream), and the proxy's own error
 * bodies and events with arbitrary detail bytes.
 *
 * Input: bytes 0-1 a status, byte 2 an error kind (also out of range); the
 * rest is the upstream's body, and as a C string the detail.
 *
 * Invariants: an event is "event: error", one data line of valid ASCII JSON
 * and a blank line. Chat shape: it carries an "error" and a "status"; the
 * upstream's own error object is kept as it was. Responses shape: exactly
 * type "error", a string code, a string message, a param (string or null)
 * and the sequence_number asked for (the status as one; 0 for below 0);
 * the upstream's string message is kept. A detail is kept (or made valid
 * UTF-8). */
#include "fuzz.h"

#include <apr_strings.h>

#include "core/errors.h"

static json_t *check_event_data(const char *event)
{
    static const char head[] = "event: error\ndata: ";
    size_t len = strlen(event), i, hl = sizeof(head) - 1;
    json_t *data;

    FUZZ_CHECK(len > hl + 2 && memcmp(event, head, hl) == 0, "bad head: %s", event);
    FUZZ_CHECK(memcmp(event + len - 2, "\n\n", 2) == 0, "no blank line after: %s", event);
    for (i = hl; i < len - 2; i++) {
        FUZZ_CHECK(event[i] != '\n' && event[i] != '\r', "a line end inside the data");
        FUZZ_CHECK((unsigned char)event[i] < 0x80, "a non-ASCII byte in the data");
    }
    data = fuzz_json(event + hl, len - hl - 2, JSON_REJECT_DUPLICATES);
    FUZZ_CHECK(json_is_object(data), "the data is no JSON object: %s", event);
    return data;
}

static json_t *check_event(const char *event)
{
    json_t *data = check_event_data(event);

    FUZZ_CHECK(json_object_get(data, "error") != NULL, "the data is no JSON error: %s",
               event);
    return data;
}

/* {"type":"error","code","message","param","sequence_number"} */
static json_t *check_responses_event(const char *event, long long sequence_number)
{
    json_t *data = check_event_data(event);
    json_t *param = json_object_get(data, "param");

    FUZZ_CHECK(json_object_size(data) == 5, "not five members: %s", event);
    FUZZ_CHECK(json_is_string(json_object_get(data, "type")) &&
                   strcmp(json_string_value(json_object_get(data, "type")), "error") == 0,
               "type: %s", event);
    FUZZ_CHECK(json_is_string(json_object_get(data, "code")), "code: %s", event);
    FUZZ_CHECK(json_is_string(json_object_get(data, "message")), "message: %s", event);
    FUZZ_CHECK(json_is_null(param) || json_is_string(param), "param: %s", event);
    FUZZ_CHECK(json_integer_value(json_object_get(data, "sequence_number")) ==
                   (sequence_number < 0 ? 0 : sequence_number),
               "sequence_number: %s", event);
    return data;
}

static void check_message(json_t *error, const char *detail)
{
    json_t *message = json_object_get(error, "message");
    json_t *as_string = json_string(detail); /* NULL: not valid UTF-8 */

    FUZZ_CHECK(json_is_string(message), "no message");
    if (as_string != NULL) {
        FUZZ_CHECK(strcmp(json_string_value(message), detail) == 0, "detail changed");
    }
    json_decref(as_string);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p = fuzz_pool();
    int status, kind;
    const char *body, *detail, *event, *text;
    size_t len;
    json_t *parsed, *upstream;

    if (size < 3) {
        return 0;
    }
    status = (int)(int16_t)(data[0] | (data[1] << 8));
    kind = (int)(int8_t)data[2];
    body = (const char *)data + 3;
    len = size - 3;

    event = oaip_error_sse_from_upstream(p, OAIP_SSE_ERRORS_RESPONSES, status, status,
                                         body, len);
    parsed = check_responses_event(event, status);
    upstream = json_loadb(body, len, 0, NULL);
    if (json_is_string(json_object_get(json_object_get(upstream, "error"), "message"))) {
        FUZZ_CHECK(
            json_equal(json_object_get(json_object_get(upstream, "error"), "message"),
                       json_object_get(parsed, "message")),
            "the upstream's message changed");
    }
    json_decref(upstream);
    json_decref(parsed);

    event = oaip_error_sse_from_upstream(p, OAIP_SSE_ERRORS_CHAT, 0, status, body, len);
    parsed = check_event(event);
    FUZZ_CHECK(json_object_get(parsed, "status") != NULL, "no status");
    upstream = json_loadb(body, len, 0, NULL);
    if (json_is_object(upstream) && json_object_get(upstream, "error") != NULL) {
        FUZZ_CHECK(json_equal(json_object_get(upstream, "error"),
                              json_object_get(parsed, "error")),
                   "the upstream's error object changed");
        if (json_object_get(upstream, "status") == NULL) {
            FUZZ_CHECK(json_integer_value(json_object_get(parsed, "status")) == status,
                       "status not added");
        }
    } else {
        FUZZ_CHECK(json_integer_value(json_object_get(parsed, "status")) == status,
                   "wrong status");
        FUZZ_CHECK(
            json_is_string(json_object_get(json_object_get(parsed, "error"), "message")),
            "no message");
    }
    json_decref(upstream);
    json_decref(parsed);

    detail = fuzz_cstring(p, (const uint8_t *)body, len);
    parsed = check_event(
        oaip_error_sse_event(p, OAIP_SSE_ERRORS_CHAT, 0, (oaip_error_kind)kind, detail));
    check_message(json_object_get(parsed, "error"), detail);
    json_decref(parsed);
    parsed =
        check_responses_event(oaip_error_sse_event(p, OAIP_SSE_ERRORS_RESPONSES, kind,
                                                   (oaip_error_kind)kind, detail),
                              kind);
    check_message(parsed, detail);
    json_decref(parsed);
    /* an event's own number reads back */
    text = apr_psprintf(p, "{\"type\":\"x\",\"sequence_number\":%d}", status & 0x7fff);
    FUZZ_CHECK(oaip_error_sse_sequence_of(text, strlen(text)) == (status & 0x7fff),
               "sequence_number of %s", text);
    (void)oaip_error_sse_sequence_of(body, len);

    text = oaip_error_body(p, OAIP_ERRFMT_OPENAI, (oaip_error_kind)kind, detail);
    parsed = fuzz_json(text, strlen(text), JSON_REJECT_DUPLICATES);
    FUZZ_CHECK(json_is_object(parsed), "openai error body is no JSON object: %s", text);
    check_message(json_object_get(parsed, "error"), detail);
    json_decref(parsed);

    text = oaip_error_body(p, OAIP_ERRFMT_WORKER, (oaip_error_kind)kind, detail);
    parsed = fuzz_json(text, strlen(text), JSON_REJECT_DUPLICATES);
    FUZZ_CHECK(json_is_object(parsed) && json_is_string(json_object_get(parsed, "error")),
               "seed error body is no JSON error: %s", text);
    check_message(parsed, detail);
    json_decref(parsed);
    return 0;
}
