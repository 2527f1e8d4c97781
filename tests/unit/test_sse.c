/* The incremental SSE reader and usage extraction. */
#include "unit.h"

#include <apr_strings.h>
#include <stdlib.h>
#include <string.h>

#include "core/sse.h"

typedef struct {
    apr_pool_t *pool;
    int count;
    const char *events[16];
} collected;

static void collect(void *ctx, const char *data, apr_size_t len)
{
    collected *c = ctx;

    assert_true(c->count < (int)N_ELEMS(c->events));
    c->events[c->count++] = apr_pstrndup(c->pool, data, len);
}

/* A realistic OpenAI stream: several events, a comment, an event name, the
 * usage chunk and [DONE]; CRLF in one place. */
static const char stream_text[] =
    ": keep-alive\n\n"
    "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n"
    "event: message\r\ndata: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\r\n\r\n"
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,"
    "\"total_tokens\":11}}\n\n"
    "data: line one\ndata: line two\n\n"
    "data: [DONE]\n\n";

static const char *const expected[] = {
    "{\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}",
    "{\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}",
    "{\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,"
    "\"total_tokens\":11}}",
    "line one\nline two",
    "[DONE]",
};

static void check(const collected *c)
{
    size_t i;

    assert_int_equal(c->count, N_ELEMS(expected));
    for (i = 0; i < N_ELEMS(expected); i++) {
        assert_string_equal(c->events[i], expected[i]);
    }
}

static void test_whole_stream_in_one_read(void **state)
{
    collected c = {*state, 0, {0}};
    oaip_sse_reader *reader = oaip_sse_reader_make(*state, collect, &c);

    oaip_sse_feed(reader, stream_text, strlen(stream_text));
    check(&c);
}

static void test_split_at_every_byte(void **state)
{
    size_t cut, len = strlen(stream_text);

    for (cut = 1; cut < len; cut++) {
        collected c = {*state, 0, {0}};
        oaip_sse_reader *reader = oaip_sse_reader_make(*state, collect, &c);
        oaip_sse_feed(reader, stream_text, cut);
        oaip_sse_feed(reader, stream_text + cut, len - cut);
        check(&c);
    }
}

static void test_one_byte_at_a_time(void **state)
{
    collected c = {*state, 0, {0}};
    oaip_sse_reader *reader = oaip_sse_reader_make(*state, collect, &c);
    size_t i;

    for (i = 0; stream_text[i]; i++) {
        oaip_sse_feed(reader, stream_text + i, 1);
    }
    check(&c);
}

static void test_unfinished_event_is_not_dispatched(void **state)
{
    collected c = {*state, 0, {0}};
    oaip_sse_reader *reader = oaip_sse_reader_make(*state, collect, &c);

    oaip_sse_feed(reader, "data: {\"a\":1}\n", 14);
    assert_int_equal(c.count, 0);
    oaip_sse_feed(reader, "\n", 1);
    assert_int_equal(c.count, 1);
}

static void test_usage_from_json(void **state)
{
    oaip_usage usage;
    static const char with[] =
        "{\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":30,"
        "\"total_tokens\":42}}";
    static const char null_usage[] = "{\"choices\":[],\"usage\":null}";

    (void)state;
    oaip_usage_init(&usage);
    assert_false(oaip_usage_from_json(null_usage, strlen(null_usage), &usage));
    assert_int_equal(usage.total_tokens, -1);
    assert_false(oaip_usage_from_json("not json", 8, &usage));
    assert_true(oaip_usage_from_json(with, strlen(with), &usage));
    assert_int_equal(usage.prompt_tokens, 12);
    assert_int_equal(usage.completion_tokens, 30);
    assert_int_equal(usage.total_tokens, 42);
}

static void test_usage_of_other_endpoints(void **state)
{
    oaip_usage usage;
    static const char embeddings[] =
        "{\"object\":\"list\",\"usage\":{\"prompt_tokens\":8,\"total_tokens\":8}}";
    static const char responses[] =
        "{\"type\":\"response.completed\",\"response\":{\"metadata\":{\"usage\":\"x\"},"
        "\"extra\":{\"usage\":{}},\"usage\":{\"input_tokens\":5,"
        "\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":9,"
        "\"total_tokens\":14}}}";

    (void)state;
    oaip_usage_init(&usage);
    assert_true(oaip_usage_from_json(embeddings, strlen(embeddings), &usage));
    assert_int_equal(usage.prompt_tokens, 8);
    assert_int_equal(usage.completion_tokens, -1);
    assert_int_equal(usage.total_tokens, 8);
    /* a "usage" key without counts (metadata, an empty object) is skipped */
    oaip_usage_init(&usage);
    assert_true(oaip_usage_from_json(responses, strlen(responses), &usage));
    assert_int_equal(usage.prompt_tokens, 5);
    assert_int_equal(usage.completion_tokens, 9);
    assert_int_equal(usage.total_tokens, 14);
    oaip_usage_init(&usage);
    assert_false(oaip_usage_from_json("{\"usage\":{}}", 11, &usage));
    assert_int_equal(usage.prompt_tokens, -1);
}

static void test_event_length_and_usage_chunk(void **state)
{
    static const char two[] = "data: {\"a\":1}\n\ndata: [DONE]\n\n";
    static const char crlf[] = "data: x\r\n\r\nrest";
    static const char usage_chunk[] =
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,"
        "\"total_tokens\":7}}\n\n";
    static const char content_chunk[] =
        "data: {\"choices\":[{\"delta\":{\"content\":\"\\\"usage\\\":{\"}}],"
        "\"usage\":null}\n\n";
    oaip_usage usage;

    (void)state;
    assert_int_equal(oaip_sse_event_length(two, strlen(two)), 15);
    assert_int_equal(oaip_sse_event_length(two + 15, strlen(two) - 15), strlen(two) - 15);
    assert_int_equal(oaip_sse_event_length(crlf, strlen(crlf)), 11);
    assert_int_equal(oaip_sse_event_length("data: partial\n", 14), 0);
    oaip_usage_init(&usage);
    assert_false(oaip_sse_usage_chunk(content_chunk, strlen(content_chunk), &usage));
    assert_int_equal(usage.total_tokens, -1);
    assert_true(oaip_sse_usage_chunk(usage_chunk, strlen(usage_chunk), &usage));
    assert_int_equal(usage.total_tokens, 7);
}

/* Found by tests/fuzz (fuzz_sse): events ended by CR-only or mixed line ends
 * were complete for the reader but not for oaip_sse_event_length, so the
 * relay held them back from the client. */
static void test_event_length_any_line_end(void **state)
{
    static const struct {
        const char *text;
        apr_size_t length;
    } cases[] = {
        {"data: a\r\rdata: b\r\r", 9}, /* CR only */
        {"data: a\n\r\nrest", 10},     /* LF, then a CRLF blank line */
        {"data: a\r\n\nrest", 10},     /* CRLF, then an LF blank line */
        {"data: a\r\r\nrest", 10},     /* CR, then a CRLF blank line */
        {"data: a\n\r", 9},            /* complete: a later LF adds nothing */
        {"data: a\r", 0},              /* one line end: not complete yet */
        {"\ndata: a\n\n", 10},         /* a leading empty line stays with it */
        {"data: a\n", 0},
    };
    collected c = {*state, 0, {0}};
    oaip_sse_reader *reader;
    size_t i;

    for (i = 0; i < N_ELEMS(cases); i++) {
        if (oaip_sse_event_length(cases[i].text, strlen(cases[i].text)) !=
            cases[i].length) {
            fail_msg("event length of case %zu is %zu, expected %zu", i,
                     (size_t)oaip_sse_event_length(cases[i].text, strlen(cases[i].text)),
                     (size_t)cases[i].length);
        }
    }
    /* the reader agrees: the first cut holds exactly one event */
    reader = oaip_sse_reader_make(*state, collect, &c);
    oaip_sse_feed(reader, cases[0].text, cases[0].length);
    assert_int_equal(c.count, 1);
    assert_string_equal(c.events[0], "a");
}

/* Found by tests/fuzz (fuzz_sse, with a lowered limit): a line longer than
 * the limit that came in pieces was cut and dropped its event, while in one
 * read a long comment was ignored and its event kept. Now a line past the
 * limit drops its event either way, and the next event is read as usual. */
static void test_long_line_in_pieces(void **state)
{
    apr_pool_t *p = *state;
    const apr_size_t long_len = (apr_size_t)1024 * 1024 + 100, half = long_len / 2;
    char *line = apr_palloc(p, long_len);
    static const char rest[] = "\ndata: same event\n\ndata: next\n\n";
    static const char *const fields[] = {":", "data:", "event:"};
    size_t i;

    for (i = 0; i < N_ELEMS(fields); i++) {
        collected whole = {p, 0, {0}}, pieces = {p, 0, {0}};
        oaip_sse_reader *one = oaip_sse_reader_make(p, collect, &whole);
        oaip_sse_reader *two = oaip_sse_reader_make(p, collect, &pieces);

        memset(line, 'y', long_len);
        memcpy(line, fields[i], strlen(fields[i]));
        oaip_sse_feed(one, line, long_len);
        oaip_sse_feed(one, rest, strlen(rest));
        oaip_sse_feed(two, line, half);
        oaip_sse_feed(two, line + half, long_len - half);
        oaip_sse_feed(two, rest, strlen(rest));
        assert_int_equal(whole.count, 1);
        assert_string_equal(whole.events[0], "next");
        assert_int_equal(pieces.count, 1);
        assert_string_equal(pieces.events[0], "next");
    }
}

/* Found by tests/fuzz (fuzz_sse): events that only contained the usage
 * chunk's substrings were taken for it, so the relay hid them. Since
 * issue 9, an event that is no usage chunk still reports the usage it
 * carries (`usage` below: -1 where it carries none). */
static void test_usage_chunk_look_alikes(void **state)
{
    static const struct {
        const char *event;
        long total;
    } not_usage[] = {
        /* garbled JSON (the fuzzer's case) */
        {"data: {\"id\":\"c\",\"objectac:\"h\"t.chunk\",\"choices\":[],"
         "\"usage\":{\"total_tokens\":11}}\n\n",
         -1},
        /* content, with "choices":[] nested in it: its usage counts */
        {"data: "
         "{\"choices\":[{\"delta\":{\"content\":\"x\"},\"logprobs\":{\"choices\":[]}}],"
         "\"usage\":{\"total_tokens\":1}}\n\n",
         1},
        /* a comment, not data */
        {": data: {\"choices\":[],\"usage\":{\"total_tokens\":1}}\n\n", -1},
        /* a second data line: a client reads "{...}\n[DONE]" (fuzz_sse) */
        {"data: {\"choices\":[],\"usage\":{\"total_tokens\":1}}\n: x\ndata: [DONE]\n\n",
         1},
        /* usage that is no object */
        {"data: {\"choices\":[],\"usage\":{\"a\":1},\"usage2\":1,\"x\":[}\n\n", -1},
        {"data: {\"choices\":[],\"usage\":7}\n\n", -1},
        /* choices missing, or not an array */
        {"data: {\"usage\":{\"total_tokens\":4}}\n\n", 4},
        {"data: {\"choices\":{},\"usage\":{\"total_tokens\":5}}\n\n", 5},
    };
    static const char crlf[] =
        "event: x\r\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,"
        "\"completion_tokens\":2,\"total_tokens\":3}}\r\n\r\n";
    oaip_usage usage;
    size_t i;

    (void)state;
    for (i = 0; i < N_ELEMS(not_usage); i++) {
        oaip_usage_init(&usage);
        if (oaip_sse_usage_chunk(not_usage[i].event, strlen(not_usage[i].event),
                                 &usage)) {
            fail_msg("taken for the usage chunk: %s", not_usage[i].event);
        }
        assert_int_equal(usage.total_tokens, not_usage[i].total);
    }
    oaip_usage_init(&usage);
    assert_true(oaip_sse_usage_chunk(crlf, strlen(crlf), &usage));
    assert_int_equal(usage.prompt_tokens, 1);
    assert_int_equal(usage.completion_tokens, 2);
    assert_int_equal(usage.total_tokens, 3);
}

/* Issue 9: a stream whose upstream formats JSON otherwise ("choices": [],
 * keys in another order, escapes, one object over several data lines) was
 * left uncharged, its usage chunk relayed to a client that never asked. */
static void test_usage_chunk_any_formatting(void **state)
{
    static const char *const usage_chunks[] = {
        "data: {\"choices\": [], \"usage\": {\"total_tokens\": 9}}\n\n",
        "data:{\"usage\":{\"total_tokens\":9},\"id\":\"x\",\"choices\":[ ]}\n\n",
        "data: {\ndata:   \"choices\" : [\ndata:   ],\ndata:   \"usage\" : "
        "{\"total_tokens\":9}\ndata: }\n\n",
        "data: {\"choices\":[],\ndata: \"usage\":\ndata: {\"total_tokens\":9}}\n\n",
        "data: {\"choices\":[],\"\\u0075sage\":{\"total_tokens\":9}}\r\n\r\n",
        "id: 4\nevent: chunk\ndata: {\"choices\":[],\"usage\":{\"total_tokens\":9}}\r\r",
        /* an empty second data line: a client still reads one object */
        "data: {\"choices\":[],\"usage\":{\"total_tokens\":9}}\ndata\n\n",
    };
    oaip_usage usage;
    size_t i;

    (void)state;
    for (i = 0; i < N_ELEMS(usage_chunks); i++) {
        oaip_usage_init(&usage);
        if (!oaip_sse_usage_chunk(usage_chunks[i], strlen(usage_chunks[i]), &usage)) {
            fail_msg("not taken for the usage chunk: %s", usage_chunks[i]);
        }
        assert_int_equal(usage.total_tokens, 9);
    }
}

/* Found by tests/fuzz (fuzz_sse, UBSan): an event with an empty data value
 * reached the callback as (NULL, 0), and the usage reader did NULL + 0. */
static void test_empty_data_value(void **state)
{
    collected c = {*state, 0, {0}};
    oaip_sse_reader *reader = oaip_sse_reader_make(*state, collect, &c);
    static const char text[] = "data\n\ndata:\n\ndata: \n\n";

    oaip_sse_feed(reader, text, strlen(text));
    assert_int_equal(c.count, 3);
    assert_non_null(c.events[0]);
    assert_string_equal(c.events[0], "");
    assert_string_equal(c.events[1], "");
    assert_string_equal(c.events[2], "");
}

/* Found by tests/fuzz (fuzz_sse, ASan): text ending right after a "usage"
 * key's colon made the usage reader read one byte past its end. The copy is
 * malloc'd to its exact size so that ASan sees that byte. */
static void test_usage_key_at_end(void **state)
{
    static const char *const texts[] = {"{\"usage\":", "{\"x\":1,\"usage\": \r\n"};
    oaip_usage usage;
    size_t i;

    (void)state;
    for (i = 0; i < N_ELEMS(texts); i++) {
        size_t len = strlen(texts[i]);
        char *exact = malloc(len);
        assert_non_null(exact);
        memcpy(exact, texts[i], len);
        oaip_usage_init(&usage);
        assert_false(oaip_usage_from_json(exact, len, &usage));
        free(exact);
    }
}

/* A stream as the engine reads it (upstream.c on_event): every event's
 * usage replaces the one before. */
typedef struct {
    oaip_usage usage;
    int reports;
} stream_usage;

static void count_usage(void *ctx, const char *data, apr_size_t len)
{
    stream_usage *s = ctx;

    s->reports += oaip_sse_event_usage(data, len, &s->usage);
}

static stream_usage usage_of_stream(apr_pool_t *p, const char *text)
{
    stream_usage s;
    oaip_sse_reader *reader = oaip_sse_reader_make(p, count_usage, &s);

    oaip_usage_init(&s.usage);
    s.reports = 0;
    oaip_sse_feed(reader, text, strlen(text));
    oaip_sse_finish(reader);
    return s;
}

/* A content chunk with `rest` after its choices. */
#define CHUNK(rest) "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]" rest "}\n\n"

/* Where the families of OpenAI-compatible servers put a stream's usage: a
 * separate chunk (OpenAI, vLLM, Ollama), the last content chunk (llama.cpp,
 * Mistral), every chunk (vLLM's continuous_usage_stats: the last report
 * counts, never the sum), Groq's x_groq, the Responses API's
 * response.completed. */
static void test_usage_where_each_family_puts_it(void **state)
{
    static const struct {
        const char *stream;
        long prompt, completion, total;
        int reports;
    } cases[] = {
        {CHUNK(",\"usage\":null")
             CHUNK(",\"usage\":null") "data: "
                                      "{\"choices\":[],\"usage\":{\"prompt_tokens\":3,"
                                      "\"completion_tokens\":2,"
                                      "\"total_tokens\":5}}\n\ndata: [DONE]\n\n",
         3, 2, 5, 1},
        {CHUNK("") "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],"
                   "\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_"
                   "tokens\":5},"
                   "\"timings\":{\"prompt_n\":3,\"predicted_n\":2}}\r\n\r\ndata:[DONE]"
                   "\r\n\r\n",
         3, 2, 5, 1},
        {CHUNK(",\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":"
               "4}") CHUNK(",\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,"
                           "\"total_tokens\":5}")
             CHUNK(",\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":3,\"total_"
                   "tokens\":6}") "data: [DONE]\n\n",
         3, 3, 6, 3},
        {CHUNK(
             "") "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],"
                 "\"x_groq\":{\"id\":\"req_1\",\"usage\":{\"queue_time\":0.01,"
                 "\"prompt_tokens\":3,\"prompt_time\":0.002,\"completion_tokens\":2,"
                 "\"completion_time\":0.03,\"total_tokens\":5,\"total_time\":0.04}}}\n\n",
         3, 2, 5, 1},
        /* a chunk's own usage before Groq's, whatever the key order */
        {"data: {\"x_groq\":{\"usage\":{\"total_tokens\":1}},\"choices\":[],"
         "\"usage\":{\"total_tokens\":2}}\n\n",
         -1, -1, 2, 1},
        {"event: response.created\ndata: {\"type\":\"response.created\",\"response\":"
         "{\"usage\":null}}\n\nevent: response.completed\ndata: {\"type\":"
         "\"response.completed\",\"response\":{\"output\":[],\"usage\":{\"input_tokens\":"
         "4,"
         "\"output_tokens\":6,\"total_tokens\":10}}}\n\n",
         4, 6, 10, 1},
        /* elsewhere (an unknown vendor's field), or no JSON object: any
         * usage object with a count, as before */
        {"data: {\"meta\":{\"usage\":{\"total_tokens\":7}}}\n\n", -1, -1, 7, 1},
        {"data: {\"choices\":[],\"usage\":{\"total_tokens\":8}}\ndata: [DONE]\n\n", -1,
         -1, 8, 1},
        {"data: [{\"usage\":{\"total_tokens\":9}}]\n\n", -1, -1, 9, 1},
        /* a stream that reports none */
        {CHUNK(",\"usage\":null") CHUNK("") "data: [DONE]\n\n", -1, -1, -1, 0},
        /* the last event without its blank line (no [DONE]) still counts */
        {CHUNK("") "data: {\"choices\":[],\"usage\":{\"total_tokens\":11}}", -1, -1, 11,
         1},
    };
    size_t i;

    for (i = 0; i < N_ELEMS(cases); i++) {
        stream_usage s = usage_of_stream(*state, cases[i].stream);
        if (s.usage.total_tokens != cases[i].total || s.reports != cases[i].reports) {
            fail_msg("case %zu: total %ld in %d reports, not %ld in %d", i,
                     s.usage.total_tokens, s.reports, cases[i].total, cases[i].reports);
        }
        assert_int_equal(s.usage.prompt_tokens, cases[i].prompt);
        assert_int_equal(s.usage.completion_tokens, cases[i].completion);
    }
}

/* The last content chunk carrying usage (llama.cpp, Mistral) is content:
 * never taken for the usage chunk the relay may hide. */
static void test_last_content_chunk_with_usage_is_no_usage_chunk(void **state)
{
    static const char last[] =
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],"
        "\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n";
    static const char groq[] =
        "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],"
        "\"x_groq\":{\"usage\":{\"total_tokens\":5}}}\n\n";
    static const char azure_first[] =
        "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"prompt_filter_results\":"
        "[{\"prompt_index\":0,\"content_filter_results\":{}}]}\n\n";
    oaip_usage usage;

    (void)state;
    oaip_usage_init(&usage);
    assert_false(oaip_sse_usage_chunk(last, strlen(last), &usage));
    assert_int_equal(usage.total_tokens, 5);
    assert_false(oaip_sse_usage_chunk(groq, strlen(groq), &usage));
    assert_false(oaip_sse_usage_chunk(azure_first, strlen(azure_first), &usage));
}

/* A UTF-8 byte order mark before the first event is skipped (SSE standard),
 * whole or split; anywhere else, or when the bytes are no mark, it is data
 * as before. */
static void test_byte_order_mark(void **state)
{
    static const char marked[] = "\xEF\xBB\xBF"
                                 "data: a\n\ndata: b\n\n";
    static const char later[] = "data: a\n\n\xEF\xBB\xBF"
                                "data: b\n\n";
    static const char not_one[] = "\xEF\xBB"
                                  "x\ndata: a\n\n";
    size_t cut;

    for (cut = 0; cut <= 4; cut++) {
        collected c = {*state, 0, {0}};
        oaip_sse_reader *reader = oaip_sse_reader_make(*state, collect, &c);
        size_t i;
        /* the mark byte by byte up to `cut`, then the rest in one read */
        for (i = 0; i < cut; i++) {
            oaip_sse_feed(reader, marked + i, 1);
        }
        oaip_sse_feed(reader, marked + cut, strlen(marked) - cut);
        assert_int_equal(c.count, 2);
        assert_string_equal(c.events[0], "a");
        assert_string_equal(c.events[1], "b");
    }
    {
        collected c = {*state, 0, {0}};
        oaip_sse_reader *reader = oaip_sse_reader_make(*state, collect, &c);
        oaip_sse_feed(reader, later, strlen(later));
        assert_int_equal(c.count, 1); /* "\xEF\xBB\xBFdata" is no data field */
        assert_string_equal(c.events[0], "a");
    }
    {
        collected c = {*state, 0, {0}};
        oaip_sse_reader *reader = oaip_sse_reader_make(*state, collect, &c);
        oaip_sse_feed(reader, not_one, 1);
        oaip_sse_feed(reader, not_one + 1, strlen(not_one) - 1);
        assert_int_equal(c.count, 1);
        assert_string_equal(c.events[0], "a");
    }
}

/* The end of a stream without the blank line after its last event: that
 * event is handed out once, as if it had come; a line too long to keep, or
 * the start of a mark alone, is none. */
static void test_finish(void **state)
{
    static const struct {
        const char *text;
        int events;
        const char *last;
    } cases[] = {
        {"data: a\n\ndata: b", 2, "b"},
        {"data: a\n\ndata: b\n", 2, "b"},
        {"data: a\r\ndata: b\r", 1, "a\nb"},
        {"data: a\n\n", 1, "a"},
        {": comment", 0, NULL},
        {"\xEF\xBB", 0, NULL},
        {"", 0, NULL},
    };
    size_t i;

    for (i = 0; i < N_ELEMS(cases); i++) {
        collected c = {*state, 0, {0}};
        oaip_sse_reader *reader = oaip_sse_reader_make(*state, collect, &c);
        oaip_sse_feed(reader, cases[i].text, strlen(cases[i].text));
        oaip_sse_finish(reader);
        assert_int_equal(c.count, cases[i].events);
        if (cases[i].last != NULL) {
            assert_string_equal(c.events[c.count - 1], cases[i].last);
        }
        oaip_sse_finish(reader); /* nothing more */
        assert_int_equal(c.count, cases[i].events);
    }
}

int run_sse_tests(void)
{
    const struct CMUnitTest tests[] = {
        POOL_TEST(test_whole_stream_in_one_read),
        POOL_TEST(test_split_at_every_byte),
        POOL_TEST(test_one_byte_at_a_time),
        POOL_TEST(test_unfinished_event_is_not_dispatched),
        POOL_TEST(test_usage_from_json),
        POOL_TEST(test_usage_of_other_endpoints),
        POOL_TEST(test_event_length_and_usage_chunk),
        POOL_TEST(test_event_length_any_line_end),
        POOL_TEST(test_long_line_in_pieces),
        POOL_TEST(test_usage_chunk_look_alikes),
        POOL_TEST(test_usage_chunk_any_formatting),
        POOL_TEST(test_empty_data_value),
        POOL_TEST(test_usage_key_at_end),
        POOL_TEST(test_usage_where_each_family_puts_it),
        POOL_TEST(test_last_content_chunk_with_usage_is_no_usage_chunk),
        POOL_TEST(test_byte_order_mark),
        POOL_TEST(test_finish),
    };

    return cmocka_run_group_tests_name("sse", tests, NULL, NULL);
}
