/* Fuzzes the token estimates of budgets (token_estimate.c): a request
 * body's worst case, and the content of a stream event or a whole answer.
 *
 * Input: any bytes, read as a request body, as one event's data and as a
 * whole answer.
 *
 * Invariants: the prompt bound is the body's length and the prompt estimate
 * ceil(length / 4); an output limit is -1 or positive, and never below the
 * max_tokens / max_completion_tokens / max_output_tokens a JSON object names
 * (a reservation covers every limit the upstream may obey); the worst case
 * is at least the prompt bound and the output limit, and every sum stays
 * within OAIP_TOKENS_MAX. An event counts at most one content event, and its
 * tokens are max(1, ceil(bytes / 4)) of a content of at most the input's
 * length (decoded JSON strings are never longer than their text). */
#include "fuzz.h"

#include "core/token_estimate.h"

static apr_int64_t named_limit(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"max_tokens", "max_completion_tokens",
                                        "max_output_tokens"};
    json_t *root = json_loadb((const char *)data, size, 0, NULL);
    apr_int64_t largest = 0;
    size_t i;

    for (i = 0; json_is_object(root) && i < N_ELEMS(names); i++) {
        json_t *v = json_object_get(root, names[i]);
        if (json_is_integer(v) && json_integer_value(v) > largest) {
            largest = json_integer_value(v) > OAIP_TOKENS_MAX ? OAIP_TOKENS_MAX
                                                              : json_integer_value(v);
        }
    }
    json_decref(root);
    return largest;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    apr_int64_t len =
        size > (size_t)OAIP_TOKENS_MAX ? OAIP_TOKENS_MAX : (apr_int64_t)size;
    apr_int64_t named = named_limit(data, size), worst, answer;
    oaip_request_cost cost;
    oaip_content_count count;

    oaip_request_cost_of(text, size, &cost);
    worst = oaip_request_cost_worst(&cost);
    FUZZ_CHECK(cost.prompt_bound == len, "prompt bound %ld of %zu bytes",
               (long)cost.prompt_bound, size);
    FUZZ_CHECK(cost.prompt_estimate == (len + 3) / 4, "prompt estimate %ld",
               (long)cost.prompt_estimate);
    FUZZ_CHECK(cost.output_limit == -1 ||
                   (cost.output_limit > 0 && cost.output_limit <= OAIP_TOKENS_MAX),
               "output limit %ld", (long)cost.output_limit);
    FUZZ_CHECK(named == 0 || cost.output_limit >= named, "limit %ld below the named %ld",
               (long)cost.output_limit, (long)named);
    FUZZ_CHECK(worst >= cost.prompt_bound && worst >= cost.output_limit &&
                   worst <= OAIP_TOKENS_MAX,
               "worst case %ld", (long)worst);

    memset(&count, 0, sizeof(count));
    oaip_content_count_event(&count, text, size);
    FUZZ_CHECK(count.events == 0 || count.events == 1, "%ld events", (long)count.events);
    FUZZ_CHECK(count.bytes <= len, "%ld content bytes of %zu", (long)count.bytes, size);
    FUZZ_CHECK(count.events == (count.bytes > 0), "events %ld, bytes %ld",
               (long)count.events, (long)count.bytes);
    FUZZ_CHECK(count.tokens == (count.bytes > 0 ? (count.bytes + 3) / 4 : 0) ||
                   (count.bytes > 0 && count.bytes < 4 && count.tokens == 1),
               "%ld tokens for %ld bytes", (long)count.tokens, (long)count.bytes);

    answer = oaip_content_tokens_of_answer(text, size);
    FUZZ_CHECK(answer >= 0 && answer <= len, "answer %ld tokens of %zu bytes",
               (long)answer, size);
    return 0;
}
