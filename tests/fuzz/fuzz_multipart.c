/* Fuzzes the multipart/form-data reading of audio and image uploads: the
 * boundary of a Content-Type (oaip_multipart_boundary) and the model field of
 * a body (oaip_multipart_field).
 *
 * Input: line 1 a Content-Type value; the rest the body.
 *
 * Invariants: a boundary is 1-70 bytes, one of the Content-Type's, without
 * control (HTAB aside) or non-ASCII bytes (the Content-Type goes upstream); a
 * field value is at most 256 bytes, lies in the body right after a part's
 * blank line and right before a delimiter; oaip_multipart_field gives a
 * value only when oaip_multipart_find found exactly one part; a body that
 * names the model once names it twice (DUPLICATE, which the proxy refuses)
 * once another model part is put in front of it, so no second copy can
 * hide from the check (issue 9); reads stay inside the body (ASan: the body
 * is an exact malloc'd copy). */
#include "fuzz.h"

#include <apr_strings.h>

#include "core/multipart.h"

static const char *memfind(const char *hay, size_t len, const char *needle, size_t n)
{
    size_t i;

    for (i = 0; n <= len && i + n <= len; i++) {
        if (memcmp(hay + i, needle, n) == 0) {
            return hay + i;
        }
    }
    return NULL;
}

/* A body that opens with its first delimiter and names `name` once gets
 * a part of that name in front: it must then name it twice. */
static void check_second_copy(apr_pool_t *p, const char *body, size_t len,
                              const char *boundary, const char *name,
                              oaip_multipart_found found)
{
    const char *opening = apr_pstrcat(p, "--", boundary, "\r\n", NULL);
    size_t n = strlen(opening);
    const char *front, *ignored;
    char *both;
    size_t front_len;

    if (found != OAIP_MULTIPART_FOUND || len < n || memcmp(body, opening, n) != 0) {
        return;
    }
    front = apr_pstrcat(p, opening, "Content-Disposition: form-data; name=\"", name,
                        "\"\r\n\r\nanother\r\n", NULL);
    front_len = strlen(front);
    both = malloc(front_len + len); /* exact, for ASan */
    if (both == NULL) {
        abort();
    }
    memcpy(both, front, front_len);
    memcpy(both + front_len, body, len);
    FUZZ_CHECK(oaip_multipart_find(p, both, front_len + len, boundary, name, &ignored) ==
                   OAIP_MULTIPART_DUPLICATE,
               "a second \"%s\" part in front went unnoticed", name);
    free(both);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p = fuzz_pool();
    const uint8_t *newline = memchr(data, '\n', size);
    size_t head = newline ? (size_t)(newline - data) : size;
    char *content_type = fuzz_cstring(p, data, head);
    const char *boundary = oaip_multipart_boundary(p, content_type), *c, *value;
    size_t body_len = newline ? size - head - 1 : 0;
    char *body = fuzz_exact_copy(newline ? (const char *)newline + 1 : "", body_len);
    static const char *const names[] = {"model", "file", "x"};
    size_t i;

    if (boundary == NULL) {
        boundary = "b0undary"; /* still read the body */
    } else {
        size_t n = strlen(boundary);
        FUZZ_CHECK(n >= 1 && n <= 70, "boundary of %zu bytes", n);
        FUZZ_CHECK(strstr(content_type, boundary) != NULL, "boundary not in the value");
        for (c = boundary; *c; c++) {
            /* HTAB may be in a header value; no other control byte */
            FUZZ_CHECK(((unsigned char)*c >= 0x20 || *c == '\t') &&
                           (unsigned char)*c < 0x7f,
                       "byte 0x%02x in the boundary", (unsigned char)*c);
        }
    }
    for (i = 0; i < N_ELEMS(names); i++) {
        const char *found_value;
        oaip_multipart_found found =
            oaip_multipart_find(p, body, body_len, boundary, names[i], &found_value);
        value = oaip_multipart_field(p, body, body_len, boundary, names[i]);
        FUZZ_CHECK(found == OAIP_MULTIPART_FOUND ||
                       (value == NULL && found_value == NULL),
                   "a value without exactly one part");
        FUZZ_CHECK(value == found_value ||
                       (value && found_value && strcmp(value, found_value) == 0),
                   "find and field disagree");
        check_second_copy(p, body, body_len, boundary, names[i], found);
        if (value != NULL) {
            size_t n = strlen(value);
            const char *delim = apr_pstrcat(p, "\r\n--", boundary, NULL);
            const char *at = memfind(body, body_len, value, n);
            FUZZ_CHECK(n <= 256, "field value of %zu bytes", n);
            FUZZ_CHECK(at != NULL, "field value not in the body");
            /* somewhere in the body: a blank line, the value, a delimiter (the
             * value is a C string: with a NUL in the body, only its start) */
            FUZZ_CHECK(memfind(body, body_len, apr_pstrcat(p, "\r\n\r\n", value, NULL),
                               4 + n) != NULL,
                       "value \"%s\" does not follow a blank line", value);
            if (memchr(body, '\0', body_len) == NULL) {
                /* an empty value's blank line may end in the delimiter's CRLF */
                const char *framed = n > 0
                                         ? apr_pstrcat(p, "\r\n\r\n", value, delim, NULL)
                                         : apr_pstrcat(p, "\r\n", delim, NULL);
                FUZZ_CHECK(memfind(body, body_len, framed, strlen(framed)) != NULL,
                           "value \"%s\" is not followed by a delimiter", value);
            }
        }
    }
    free(body);
    return 0;
}
