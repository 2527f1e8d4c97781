/* The relay's SSE framer: whole events out as they came, one inspection
 * each, whatever the reads' cuts. */
#include "unit.h"

#include <apr_strings.h>
#include <string.h>

#include "core/buffer.h"
#include "core/sse_framer.h"

typedef struct {
    apr_pool_t *pool;
    oaip_buffer out;   /* every raw event, concatenated */
    oaip_buffer kinds; /* per event: 'u' usage chunk, 'c' content, 'd' data, '-' none, 'x'
                          unread */
    long last_prompt;
    apr_int64_t tokens;
    apr_int64_t sequence;
} framed;

static void collect(void *ctx, const char *raw, apr_size_t len,
                    const oaip_sse_event_facts *facts)
{
    framed *f = ctx;
    char kind = 'x';

    oaip_buffer_append(f->pool, &f->out, raw, len);
    if (facts != NULL) {
        kind = facts->usage_chunk          ? 'u'
               : facts->content.events > 0 ? 'c'
               : facts->has_data           ? 'd'
                                           : '-';
        if (facts->reports_usage) {
            f->last_prompt = facts->usage.prompt_tokens;
        }
        f->tokens += facts->content.tokens;
        if (facts->sequence >= 0) {
            f->sequence = facts->sequence;
        }
    }
    oaip_buffer_append(f->pool, &f->kinds, &kind, 1);
}

static const char stream_text[] =
    ": keep-alive\n\n"
    "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n"
    "event: message\r\nid: 7\r\ndata: "
    "{\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\r\n\r\n"
    "retry: 100\n\n"
    "data: {\"choices\":[],\n"
    "data:  "
    "\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n"
    "data: "
    "{\"type\":\"response.output_text.delta\",\"sequence_number\":4,\"delta\":\"abcd\"}"
    "\r\r"
    "data: [DONE]\n\n";

static const char expected_kinds[] = "-cc-ucd";

static void feed_in_pieces(framed *f, apr_size_t piece)
{
    oaip_sse_framer *framer = oaip_sse_framer_make(f->pool, collect, f);
    apr_size_t len = strlen(stream_text), pos;

    for (pos = 0; pos < len; pos += piece) {
        oaip_sse_framer_feed(framer, stream_text + pos,
                             len - pos < piece ? len - pos : piece);
    }
    oaip_sse_framer_finish(framer);
}

static void check(const framed *f)
{
    assert_int_equal(f->out.len, strlen(stream_text));
    assert_memory_equal(f->out.data, stream_text, f->out.len);
    assert_int_equal(f->kinds.len, strlen(expected_kinds));
    assert_memory_equal(f->kinds.data, expected_kinds, f->kinds.len);
    assert_int_equal(f->last_prompt, 9);
    assert_int_equal(f->tokens, 3); /* "Hel", "lo", "abcd": 1 + 1 + 1 */
    assert_int_equal(f->sequence, 4);
}

static void test_any_cut_gives_the_same_events(void **state)
{
    apr_size_t piece;

    for (piece = 1; piece <= strlen(stream_text); piece++) {
        framed f = {*state, {0}, {0}, -1, 0, -1};
        feed_in_pieces(&f, piece);
        check(&f);
    }
}

static void test_unfinished_event_comes_out_at_the_end(void **state)
{
    framed f = {*state, {0}, {0}, -1, 0, -1};
    oaip_sse_framer *framer = oaip_sse_framer_make(*state, collect, &f);
    static const char cut[] = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5}}\n";

    oaip_sse_framer_feed(framer, cut, strlen(cut));
    assert_int_equal(f.kinds.len, 0);
    oaip_sse_framer_finish(framer);
    assert_int_equal(f.kinds.len, 1);
    assert_int_equal(f.kinds.data[0], 'u');
    assert_int_equal(f.last_prompt, 5);
    assert_int_equal(f.out.len, strlen(cut));
}

static void test_usage_chunk_look_alikes_are_not_hideable(void **state)
{
    static const char *const events[] = {
        /* content with a usage: its usage counts, it is no usage chunk */
        "data: "
        "{\"choices\":[{\"delta\":{\"content\":\"x\"}}],\"usage\":{\"prompt_tokens\":1}}"
        "\n\n",
        /* more than the object in the event */
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":2}}\ndata: [DONE]\n\n",
        /* choices not an array */
        "data: {\"choices\":{},\"usage\":{\"prompt_tokens\":3}}\n\n",
    };
    apr_size_t i;

    (void)state;
    for (i = 0; i < N_ELEMS(events); i++) {
        oaip_sse_event_facts facts;
        oaip_sse_event_inspect(events[i], strlen(events[i]), &facts);
        assert_false(facts.usage_chunk);
        assert_true(facts.reports_usage);
        assert_int_equal(facts.usage.prompt_tokens, (long)i + 1);
    }
}

static void test_an_endless_event_is_passed_unread(void **state)
{
    framed f = {*state, {0}, {0}, -1, 0, -1};
    oaip_sse_framer *framer = oaip_sse_framer_make(*state, collect, &f);
    apr_size_t size = OAIP_SSE_FRAMER_MAX_EVENT + 100, i;
    char *big = apr_palloc(*state, size);

    memcpy(big, "data: ", 6);
    for (i = 6; i < size; i++) {
        big[i] = 'a';
    }
    oaip_sse_framer_feed(framer, big, size / 2);
    oaip_sse_framer_feed(framer, big + size / 2, size - size / 2);
    assert_int_equal(f.kinds.len, 1);
    assert_int_equal(f.kinds.data[0], 'x');
    assert_int_equal(f.out.len, size);
}

int run_sse_framer_tests(void)
{
    const struct CMUnitTest tests[] = {
        POOL_TEST(test_any_cut_gives_the_same_events),
        POOL_TEST(test_unfinished_event_comes_out_at_the_end),
        POOL_TEST(test_usage_chunk_look_alikes_are_not_hideable),
        POOL_TEST(test_an_endless_event_is_passed_unread),
    };

    return cmocka_run_group_tests_name("sse_framer", tests, NULL, NULL);
}
