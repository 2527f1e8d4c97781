#include "core/token_estimate.h"

#include <jansson.h>
#include <string.h>

static apr_int64_t saturate(apr_int64_t value)
{
    return value > OAIP_TOKENS_MAX ? OAIP_TOKENS_MAX : value < 0 ? 0 : value;
}

/* a * b for non-negative factors, saturated */
static apr_int64_t times(apr_int64_t a, apr_int64_t b)
{
    if (a != 0 && b > OAIP_TOKENS_MAX / a) {
        return OAIP_TOKENS_MAX;
    }
    return saturate(a * b);
}

static apr_int64_t ceil_tokens(apr_int64_t bytes)
{
    return (bytes + OAIP_BYTES_PER_TOKEN - 1) / OAIP_BYTES_PER_TOKEN;
}

/* A positive integer field, else 0. */
static apr_int64_t positive(json_t *object, const char *name)
{
    json_t *value = json_object_get(object, name);
    json_int_t n = json_is_integer(value) ? json_integer_value(value) : 0;

    return n > 0 ? saturate((apr_int64_t)n) : 0;
}

/* How many answers of up to output_limit tokens the upstream may generate
 * for one request: n choices (best_of candidates of legacy completions, all
 * generated and billed), for each prompt of a legacy prompt array. */
static apr_int64_t choices_of(json_t *root)
{
    apr_int64_t n = positive(root, "n"), best_of = positive(root, "best_of");
    apr_int64_t per_prompt = n > best_of ? n : best_of;
    json_t *prompt = json_object_get(root, "prompt");
    apr_int64_t prompts = 1;

    if (per_prompt == 0) {
        per_prompt = 1;
    }
    /* an array of strings or of token arrays is several prompts; an array
     * of integers is one prompt in tokens */
    if (json_is_array(prompt) && json_array_size(prompt) > 0 &&
        (json_is_string(json_array_get(prompt, 0)) ||
         json_is_array(json_array_get(prompt, 0)))) {
        prompts = (apr_int64_t)json_array_size(prompt);
    }
    return times(per_prompt, prompts);
}

apr_int64_t oaip_prompt_estimate(apr_size_t len)
{
    return ceil_tokens(saturate((apr_int64_t)len));
}

void oaip_request_cost_of(const char *body, apr_size_t len, oaip_request_cost *cost)
{
    static const char *const limits[] = {"max_tokens", "max_completion_tokens",
                                         "max_output_tokens"};
    json_t *root = body ? json_loadb(body, len, 0, NULL) : NULL;
    apr_int64_t limit = 0;
    apr_size_t i;

    cost->prompt_bound = saturate((apr_int64_t)len);
    cost->prompt_estimate = oaip_prompt_estimate(len);
    cost->output_limit = -1;
    if (!json_is_object(root)) {
        json_decref(root);
        return;
    }
    /* the largest limit named: whichever of them the upstream obeys, it
     * generates no more than that */
    for (i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
        apr_int64_t value = positive(root, limits[i]);
        if (value > limit) {
            limit = value;
        }
    }
    if (limit > 0) {
        cost->output_limit = times(limit, choices_of(root));
    }
    json_decref(root);
}

apr_int64_t oaip_request_cost_worst(const oaip_request_cost *cost)
{
    apr_int64_t output = cost->output_limit > 0 ? cost->output_limit : 0;

    return saturate(cost->prompt_bound + output);
}

/* Adds the length of `value` when it is a non-empty string. */
static void add_text(json_t *value, apr_int64_t *bytes)
{
    if (json_is_string(value)) {
        *bytes += (apr_int64_t)json_string_length(value);
    }
}

/* The generated text of a chat delta or message. */
static void add_message(json_t *message, apr_int64_t *bytes)
{
    static const char *const texts[] = {"content", "reasoning_content", "reasoning",
                                        "refusal"};
    json_t *calls = json_object_get(message, "tool_calls");
    json_t *function = json_object_get(message, "function_call");
    apr_size_t i;

    for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        add_text(json_object_get(message, texts[i]), bytes);
    }
    add_text(json_object_get(json_object_get(message, "audio"), "transcript"), bytes);
    add_text(json_object_get(function, "arguments"), bytes);
    for (i = 0; json_is_array(calls) && i < json_array_size(calls); i++) {
        add_text(json_object_get(json_object_get(json_array_get(calls, i), "function"),
                                 "arguments"),
                 bytes);
    }
}

static void add_choices(json_t *root, apr_int64_t *bytes)
{
    json_t *choices = json_object_get(root, "choices");
    apr_size_t i;

    for (i = 0; json_is_array(choices) && i < json_array_size(choices); i++) {
        json_t *choice = json_array_get(choices, i);
        add_message(json_object_get(choice, "delta"), bytes);
        add_message(json_object_get(choice, "message"), bytes);
        add_text(json_object_get(choice, "text"), bytes); /* legacy completions */
    }
}

/* A Responses API stream event: response.output_text.delta,
 * response.refusal.delta, response.function_call_arguments.delta, the
 * reasoning deltas, the audio transcript's; not response.audio.delta, whose
 * base64 audio has far more bytes than tokens. */
static void add_response_delta(json_t *root, apr_int64_t *bytes)
{
    const char *type = json_string_value(json_object_get(root, "type"));
    apr_size_t n = type ? strlen(type) : 0;

    if (n > 15 && strncmp(type, "response.", 9) == 0 &&
        strcmp(type + n - 6, ".delta") == 0 &&
        strcmp(type, "response.audio.delta") != 0) {
        add_text(json_object_get(root, "delta"), bytes);
    }
}

static apr_int64_t tokens_of(apr_int64_t bytes)
{
    return bytes > 0 ? (ceil_tokens(bytes) > 1 ? ceil_tokens(bytes) : 1) : 0;
}

void oaip_content_count_add(oaip_content_count *count, apr_int64_t bytes)
{
    if (bytes > 0) {
        count->events++;
        count->bytes = saturate(count->bytes + bytes);
        count->tokens = saturate(count->tokens + tokens_of(bytes));
    }
}

void oaip_content_count_json(oaip_content_count *count, json_t *event)
{
    apr_int64_t bytes = 0;

    if (!json_is_object(event)) {
        return;
    }
    add_choices(event, &bytes);
    add_response_delta(event, &bytes);
    oaip_content_count_add(count, bytes);
}

void oaip_content_count_event(oaip_content_count *count, const char *data, apr_size_t len)
{
    json_t *root;

    if (len == 0 || data[0] != '{') {
        return; /* [DONE], comments: no content; skips parsing them */
    }
    root = json_loadb(data, len, 0, NULL);
    oaip_content_count_json(count, root);
    json_decref(root);
}

/* A Responses API object's output items. */
static void add_output(json_t *root, apr_int64_t *bytes)
{
    json_t *output = json_object_get(root, "output");
    apr_size_t i, j;

    for (i = 0; json_is_array(output) && i < json_array_size(output); i++) {
        json_t *item = json_array_get(output, i);
        json_t *parts = json_object_get(item, "content");
        json_t *summary = json_object_get(item, "summary");
        add_text(json_object_get(item, "arguments"), bytes);
        for (j = 0; json_is_array(parts) && j < json_array_size(parts); j++) {
            add_text(json_object_get(json_array_get(parts, j), "text"), bytes);
            add_text(json_object_get(json_array_get(parts, j), "refusal"), bytes);
        }
        for (j = 0; json_is_array(summary) && j < json_array_size(summary); j++) {
            add_text(json_object_get(json_array_get(summary, j), "text"), bytes);
        }
    }
}

apr_int64_t oaip_content_tokens_of_answer(const char *json, apr_size_t len)
{
    json_t *root = json ? json_loadb(json, len, 0, NULL) : NULL;
    apr_int64_t bytes = 0;

    if (json_is_object(root)) {
        add_choices(root, &bytes);
        add_output(root, &bytes);
    }
    json_decref(root);
    return tokens_of(saturate(bytes));
}
