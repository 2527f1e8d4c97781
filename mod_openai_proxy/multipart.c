#include "multipart.h"

#include <apr_lib.h>
#include <apr_strings.h>
#include <string.h>

#define MAX_FIELD_VALUE 256
#define MAX_BOUNDARY 70 /* RFC 2046 */

static int header_value_safe(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c < 0x20 && c != '\t') || c >= 0x7f) {
            return 0;
        }
    }
    return 1;
}

const char *oaip_multipart_boundary(apr_pool_t *p, const char *content_type)
{
    static const char type[] = "multipart/form-data";
    const char *s = content_type, *start;
    apr_size_t n;

    if (s == NULL || !header_value_safe(s) ||
        strncasecmp(s, type, sizeof(type) - 1) != 0) {
        return NULL;
    }
    s += sizeof(type) - 1;
    while (*s) {
        while (*s == ';' || *s == ' ' || *s == '\t') {
            s++;
        }
        if (strncasecmp(s, "boundary=", 9) == 0) {
            s += 9;
            if (*s == '"') {
                start = ++s;
                while (*s && *s != '"') {
                    s++;
                }
                if (*s != '"') {
                    return NULL;
                }
            } else {
                start = s;
                while (*s && *s != ';' && *s != ' ' && *s != '\t') {
                    s++;
                }
            }
            n = (apr_size_t)(s - start);
            return n > 0 && n <= MAX_BOUNDARY ? apr_pstrndup(p, start, n) : NULL;
        }
        while (*s && *s != ';') {
            s++;
        }
    }
    return NULL;
}

static const char *find(const char *hay, apr_size_t len, const char *needle, apr_size_t n)
{
    apr_size_t i;

    for (i = 0; n <= len && i <= len - n; i++) {
        if (hay[i] == needle[0] && memcmp(hay + i, needle, n) == 0) {
            return hay + i;
        }
    }
    return NULL;
}

/* Whether a part's header block names the field `name` and no file. */
static int names_field(apr_pool_t *p, const char *headers, apr_size_t len,
                       const char *name)
{
    const char *quoted = apr_pstrcat(p, "name=\"", name, "\"", NULL);
    const char *hit = find(headers, len, quoted, strlen(quoted));

    /* "filename=" contains "name=": the match must not follow "file" */
    if (hit == NULL || (hit - headers >= 4 && strncasecmp(hit - 4, "file", 4) == 0)) {
        return 0;
    }
    return find(headers, len, "filename", 8) == NULL;
}

const char *oaip_multipart_field(apr_pool_t *p, const char *body, apr_size_t len,
                                 const char *boundary, const char *name)
{
    const char *delim = apr_pstrcat(p, "\r\n--", boundary, NULL);
    apr_size_t dlen = strlen(delim);
    const char *end = body + len, *part, *next, *head_end;

    /* the first delimiter may open the body without the CRLF before it */
    if (len >= dlen - 2 && memcmp(body, delim + 2, dlen - 2) == 0) {
        part = body + dlen - 2;
    } else if ((part = find(body, len, delim, dlen)) != NULL) {
        part += dlen;
    } else {
        return NULL;
    }
    while (part + 2 <= end && memcmp(part, "--", 2) != 0) {
        next = find(part, (apr_size_t)(end - part), delim, dlen);
        if (next == NULL) {
            return NULL;
        }
        head_end = find(part, (apr_size_t)(next - part), "\r\n\r\n", 4);
        if (head_end != NULL &&
            names_field(p, part, (apr_size_t)(head_end - part), name)) {
            const char *value = head_end + 4;
            apr_size_t n = (apr_size_t)(next - value);
            return n <= MAX_FIELD_VALUE ? apr_pstrndup(p, value, n) : NULL;
        }
        part = next + dlen;
    }
    return NULL;
}
