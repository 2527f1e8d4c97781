#include "core/content_scan.h"

#include <string.h>

#define MAX_DEPTH 32

/* Where a value sits, for what it may count. */
typedef enum {
    AT_OTHER,
    AT_ROOT,
    AT_CHOICES,  /* root.choices: an array of choices */
    AT_CHOICE,   /* one of them */
    AT_MESSAGE,  /* a choice's delta or message */
    AT_AUDIO,    /* message.audio */
    AT_FUNCTION, /* message.function_call, a tool call's function */
    AT_TOOL_CALLS,
    AT_TOOL_CALL,
    AT_TEXT, /* a string that counts */
    AT_TYPE, /* root.type */
    AT_DELTA /* root.delta: counts when the type says so */
} place;

typedef struct {
    const char *p, *end;
    apr_int64_t bytes;
    apr_int64_t delta_bytes; /* root.delta's length, -1: not a string */
    const char *type;        /* root.type's text (no escapes), or NULL */
    apr_size_t type_len;
    int depth;
} scan;

static void skip_space(scan *s)
{
    while (s->p < s->end &&
           (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) {
        s->p++;
    }
}

static int hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static unsigned hex_value(const char *h)
{
    unsigned v = 0;
    int i;

    for (i = 0; i < 4; i++) {
        char c = h[i];
        v = v * 16 + (unsigned)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return v;
}

/* One UTF-8 sequence of 2 to 4 bytes at p, as jansson accepts it (no
 * overlong forms, no surrogates, at most U+10FFFF): its length, 0 if not. */
static int utf8_sequence(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0], cp;
    int n, i;

    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (end - p < n) {
        return 0;
    }
    for (i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (n == 4 && (cp < 0x10000 || cp > 0x10FFFF))) {
        return 0;
    }
    return n;
}

/* A string at s->p (its opening quote): its decoded length in *decoded.
 * `key`: an escape makes it one the scan does not compare (0). */
static int read_string(scan *s, apr_int64_t *decoded, int key)
{
    const unsigned char *p = (const unsigned char *)s->p + 1;
    const unsigned char *end = (const unsigned char *)s->end;
    apr_int64_t n = 0;

    while (p < end && *p != '"') {
        if (*p < 0x20) {
            return 0;
        }
        if (*p == '\\') {
            if (key || end - p < 2) {
                return 0;
            }
            if (p[1] == 'u') {
                unsigned cp;
                if (end - p < 6 || !hex((char)p[2]) || !hex((char)p[3]) ||
                    !hex((char)p[4]) || !hex((char)p[5])) {
                    return 0;
                }
                cp = hex_value((const char *)p + 2);
                p += 6;
                if (cp == 0 || (cp >= 0xDC00 && cp <= 0xDFFF)) {
                    return 0; /* jansson refuses NUL and a lone low surrogate */
                }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || !hex((char)p[2]) ||
                        !hex((char)p[3]) || !hex((char)p[4]) || !hex((char)p[5])) {
                        return 0;
                    }
                    cp = hex_value((const char *)p + 2);
                    if (cp < 0xDC00 || cp > 0xDFFF) {
                        return 0;
                    }
                    p += 6;
                    n += 4;
                } else {
                    n += cp < 0x80 ? 1 : cp < 0x800 ? 2 : 3;
                }
                continue;
            }
            if (strchr("\"\\/bfnrt", p[1]) == NULL || p[1] == '\0') {
                return 0;
            }
            p += 2;
            n++;
            continue;
        }
        if (*p >= 0x80) {
            int len = utf8_sequence(p, end);
            if (len == 0) {
                return 0;
            }
            p += len;
            n += len;
            continue;
        }
        p++;
        n++;
    }
    if (p >= end) {
        return 0;
    }
    *decoded = n;
    s->p = (const char *)p + 1;
    return 1;
}

/* A number as jansson reads it: integers that fit (18 digits always do),
 * reals without an exponent (one could overflow). */
static int read_number(scan *s)
{
    const char *p = s->p, *digits;

    if (p < s->end && *p == '-') {
        p++;
    }
    digits = p;
    if (p < s->end && *p == '0') {
        p++;
    } else {
        while (p < s->end && *p >= '0' && *p <= '9') {
            p++;
        }
    }
    if (p == digits || p - digits > 18) {
        return 0;
    }
    if (p < s->end && *p == '.') {
        const char *frac = ++p;
        while (p < s->end && *p >= '0' && *p <= '9') {
            p++;
        }
        if (p == frac || p - frac > 17) {
            return 0;
        }
    }
    if (p < s->end && (*p == 'e' || *p == 'E')) {
        return 0;
    }
    s->p = p;
    return 1;
}

static int read_literal(scan *s, const char *word)
{
    apr_size_t n = strlen(word);

    if ((apr_size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0) {
        return 0;
    }
    s->p += n;
    return 1;
}

/* The place of a member `key` of an object at `parent`, and the bit that
 * catches it twice (0: a key that counts nothing, which may repeat). */
static place member_place(place parent, const char *key, apr_size_t len, unsigned *bit)
{
    static const struct {
        place parent;
        const char *key;
        place child;
    } members[] = {
        /* a key of another parent is rejected by the first test */
        {AT_ROOT, "choices", AT_CHOICES},
        {AT_ROOT, "type", AT_TYPE},
        {AT_ROOT, "delta", AT_DELTA},
        {AT_CHOICE, "delta", AT_MESSAGE},
        {AT_CHOICE, "message", AT_MESSAGE},
        {AT_CHOICE, "text", AT_TEXT},
        {AT_MESSAGE, "content", AT_TEXT},
        {AT_MESSAGE, "reasoning_content", AT_TEXT},
        {AT_MESSAGE, "reasoning", AT_TEXT},
        {AT_MESSAGE, "refusal", AT_TEXT},
        {AT_MESSAGE, "audio", AT_AUDIO},
        {AT_MESSAGE, "function_call", AT_FUNCTION},
        {AT_MESSAGE, "tool_calls", AT_TOOL_CALLS},
        {AT_AUDIO, "transcript", AT_TEXT},
        {AT_FUNCTION, "arguments", AT_TEXT},
        {AT_TOOL_CALL, "function", AT_FUNCTION},
    };
    apr_size_t i;

    *bit = 0;
    if (parent == AT_OTHER || parent == AT_TEXT || len == 0) {
        return AT_OTHER; /* most keys of a chunk: id, object, model, index... */
    }
    for (i = 0; i < sizeof(members) / sizeof(members[0]); i++) {
        if (members[i].parent == parent && members[i].key[0] == key[0] &&
            strlen(members[i].key) == len && memcmp(members[i].key, key, len) == 0) {
            *bit = 1u << i;
            return members[i].child;
        }
    }
    *bit = 0;
    return AT_OTHER;
}

/* After a member or element: MORE after a comma, DONE at `close`,
 * BROKEN otherwise. */
typedef enum { BROKEN, MORE, DONE } next_item;

static next_item after_item(scan *s, char close)
{
    skip_space(s);
    if (s->p < s->end && *s->p == ',') {
        s->p++;
        skip_space(s);
        return MORE;
    }
    if (s->p < s->end && *s->p == close) {
        s->p++;
        return DONE;
    }
    return BROKEN;
}

static int read_value(scan *s, place at);

static int read_object(scan *s, place at)
{
    unsigned seen = 0;
    next_item next;

    s->p++;
    skip_space(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return 1;
    }
    for (;;) {
        const char *key;
        apr_int64_t key_len;
        unsigned bit;
        place child;

        if (s->p >= s->end || *s->p != '"') {
            return 0;
        }
        key = s->p + 1;
        if (!read_string(s, &key_len, 1)) {
            return 0;
        }
        child = member_place(at, key, (apr_size_t)key_len, &bit);
        if (seen & bit) {
            return 0; /* jansson keeps the last copy: let it decide */
        }
        seen |= bit;
        skip_space(s);
        if (s->p >= s->end || *s->p != ':') {
            return 0;
        }
        s->p++;
        skip_space(s);
        if (!read_value(s, child)) {
            return 0;
        }
        if ((next = after_item(s, '}')) != MORE) {
            return next == DONE;
        }
    }
}

static int read_array(scan *s, place at)
{
    place element = at == AT_CHOICES      ? AT_CHOICE
                    : at == AT_TOOL_CALLS ? AT_TOOL_CALL
                                          : AT_OTHER;
    next_item next;

    s->p++;
    skip_space(s);
    if (s->p < s->end && *s->p == ']') {
        s->p++;
        return 1;
    }
    for (;;) {
        if (!read_value(s, element)) {
            return 0;
        }
        if ((next = after_item(s, ']')) != MORE) {
            return next == DONE;
        }
    }
}

static int read_value(scan *s, place at)
{
    int ok;

    if (s->p >= s->end) {
        return 0;
    }
    switch (*s->p) {
    case '{':
        if (++s->depth > MAX_DEPTH) {
            return 0;
        }
        ok = read_object(s, at);
        s->depth--;
        return ok;
    case '[':
        if (++s->depth > MAX_DEPTH) {
            return 0;
        }
        ok = read_array(s, at);
        s->depth--;
        return ok;
    case '"': {
        const char *text = s->p + 1;
        apr_int64_t n;
        if (!read_string(s, &n, 0)) {
            return 0;
        }
        if (at == AT_TEXT) {
            s->bytes += n;
        } else if (at == AT_DELTA) {
            s->delta_bytes = n;
        } else if (at == AT_TYPE) {
            if (memchr(text, '\\', (apr_size_t)(s->p - 1 - text)) != NULL) {
                return 0;
            }
            s->type = text;
            s->type_len = (apr_size_t)(s->p - 1 - text);
        }
        return 1;
    }
    case 't':
        return read_literal(s, "true");
    case 'f':
        return read_literal(s, "false");
    case 'n':
        return read_literal(s, "null");
    default:
        return read_number(s);
    }
}

/* A Responses API *.delta event other than the audio's (as
 * token_estimate.c's add_response_delta). */
static int counts_delta(const scan *s)
{
    static const char audio[] = "response.audio.delta";

    return s->type != NULL && s->type_len > 15 && memcmp(s->type, "response.", 9) == 0 &&
           memcmp(s->type + s->type_len - 6, ".delta", 6) == 0 &&
           !(s->type_len == sizeof(audio) - 1 &&
             memcmp(s->type, audio, s->type_len) == 0);
}

int oaip_content_scan(const char *data, apr_size_t len, apr_int64_t *bytes)
{
    scan s;

    memset(&s, 0, sizeof(s));
    s.p = data;
    s.end = data + len;
    s.delta_bytes = -1;
    /* data that begins an object, as oaip_content_count_event reads it */
    if (s.p >= s.end || *s.p != '{' || !read_value(&s, AT_ROOT)) {
        return 0;
    }
    skip_space(&s);
    if (s.p != s.end) {
        return 0;
    }
    *bytes = s.bytes + (counts_delta(&s) && s.delta_bytes > 0 ? s.delta_bytes : 0);
    return 1;
}
