#include "core/multipart.h"

#include <apr_escape.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include <stdlib.h>
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

/* A delimiter is "CRLF--boundary" followed by "--" or by optional white
 * space and CRLF (RFC 2046); "--boundaryX" inside a value is none, as for
 * the upstream's parser. Returns the next one in [from, end), or NULL. */
static const char *next_delimiter(const char *from, const char *end, const char *delim,
                                  apr_size_t dlen)
{
    const char *hit;

    while ((hit = find(from, (apr_size_t)(end - from), delim, dlen)) != NULL) {
        const char *after = hit + dlen;
        if (after + 2 <= end && memcmp(after, "--", 2) == 0) {
            return hit;
        }
        while (after < end && (*after == ' ' || *after == '\t')) {
            after++;
        }
        if (after + 2 <= end && memcmp(after, "\r\n", 2) == 0) {
            return hit;
        }
        from = hit + 1;
    }
    return NULL;
}

/* Copies a parameter value (quoted with backslash escapes, or a token)
 * starting at *s; *s ends past it. */
static const char *param_value(apr_pool_t *p, const char **s, const char *end)
{
    const char *v = *s;
    char *out = apr_palloc(p, (apr_size_t)(end - v) + 1), *o = out;

    if (v < end && *v == '"') {
        for (v++; v < end && *v != '"'; v++) {
            if (*v == '\\' && v + 1 < end) {
                v++;
            }
            *o++ = *v;
        }
        if (v < end) {
            v++;
        }
    } else {
        while (v < end && *v != ';' && *v != ' ' && *v != '\t') {
            *o++ = *v++;
        }
    }
    *o = '\0';
    *s = v;
    return out;
}

/* RFC 2231/5987 "charset'language'percent-encoded": the decoded rest. */
static const char *extended_value(apr_pool_t *p, const char *v)
{
    const char *q = strchr(v, '\'');
    const char *decoded;

    if (q == NULL || (q = strchr(q + 1, '\'')) == NULL) {
        return v;
    }
    /* a broken escape leaves the value as written: it names no field then */
    decoded = apr_punescape_url(p, q + 1, NULL, NULL, 0);
    return decoded ? decoded : q + 1;
}

/* The names and file name of one Content-Disposition value: `name`,
 * `name*` (RFC 7578 forbids it, some parsers read it) each count. */
static void read_disposition(apr_pool_t *p, const char *s, const char *end,
                             const char *wanted, int *names_wanted, int *has_file)
{
    while (s < end) {
        const char *pname;
        apr_size_t n;
        int extended;

        while (s < end && (*s == ';' || *s == ' ' || *s == '\t')) {
            s++;
        }
        pname = s;
        while (s < end && *s != '=' && *s != ';') {
            s++;
        }
        if (s >= end || *s != '=') {
            continue; /* "form-data", or a parameter without a value */
        }
        n = (apr_size_t)(s - pname);
        while (n > 0 && (pname[n - 1] == ' ' || pname[n - 1] == '\t')) {
            n--;
        }
        s++;
        while (s < end && (*s == ' ' || *s == '\t')) {
            s++;
        }
        extended = n > 1 && pname[n - 1] == '*';
        if (extended) {
            n--;
        }
        if (n == 4 && strncasecmp(pname, "name", 4) == 0) {
            const char *value = param_value(p, &s, end);
            if (extended) {
                value = extended_value(p, value);
            }
            *names_wanted += (strcmp(value, wanted) == 0);
        } else {
            if (n == 8 && strncasecmp(pname, "filename", 8) == 0) {
                *has_file = 1;
            }
            (void)param_value(p, &s, end);
        }
    }
}

/* How often a part's header block (header lines up to its blank line)
 * names the field `wanted` in a Content-Disposition header; only that
 * header names a part, as for the upstream's parser ("name=" elsewhere,
 * in a Content-Type parameter say, names nothing). */
static int part_names(apr_pool_t *p, const char *headers, apr_size_t len,
                      const char *wanted, int *has_file)
{
    static const char cd[] = "content-disposition:";
    const char *line = headers, *end = headers + len;
    int count = 0;

    *has_file = 0;
    while (line < end) {
        const char *eol = find(line, (apr_size_t)(end - line), "\r\n", 2);
        if (eol == NULL) {
            eol = end;
        }
        if ((apr_size_t)(eol - line) >= sizeof(cd) - 1 &&
            strncasecmp(line, cd, sizeof(cd) - 1) == 0) {
            read_disposition(p, line + sizeof(cd) - 1, eol, wanted, &count, has_file);
        }
        line = eol + 2;
    }
    return count;
}

oaip_multipart_found oaip_multipart_find(apr_pool_t *p, const char *body, apr_size_t len,
                                         const char *boundary, const char *name,
                                         const char **value)
{
    const char *delim = apr_pstrcat(p, "\r\n--", boundary, NULL);
    apr_size_t dlen = strlen(delim);
    const char *end = body + len, *part, *next, *head_end;
    int seen = 0;

    *value = NULL;
    /* the first delimiter may open the body without the CRLF before it */
    if (len >= dlen - 2 && memcmp(body, delim + 2, dlen - 2) == 0) {
        part = body + dlen - 2;
    } else if ((part = next_delimiter(body, end, delim, dlen)) != NULL) {
        part += dlen;
    } else {
        return OAIP_MULTIPART_ABSENT;
    }
    while (part + 2 <= end && memcmp(part, "--", 2) != 0) {
        int has_file, named;
        next = next_delimiter(part, end, delim, dlen);
        if (next == NULL) {
            break; /* an unterminated last part: the upstream refuses it */
        }
        /* an empty value: the blank line's last CRLF is the delimiter's */
        head_end = find(part, (apr_size_t)(next - part) + 2, "\r\n\r\n", 4);
        named = head_end
                    ? part_names(p, part, (apr_size_t)(head_end - part), name, &has_file)
                    : 0;
        seen += named;
        if (seen > 1) {
            /* parsers differ on which copy wins (Starlette the last, Go the
             * first): the proxy cannot know which one the upstream uses */
            *value = NULL;
            return OAIP_MULTIPART_DUPLICATE;
        }
        if (named == 1 && !has_file) {
            const char *v = head_end + 4 < next ? head_end + 4 : next;
            apr_size_t n = (apr_size_t)(next - v);
            *value = n <= MAX_FIELD_VALUE ? apr_pstrndup(p, v, n) : NULL;
        }
        part = next + dlen;
    }
    return seen ? OAIP_MULTIPART_FOUND : OAIP_MULTIPART_ABSENT;
}

const char *oaip_multipart_field(apr_pool_t *p, const char *body, apr_size_t len,
                                 const char *boundary, const char *name)
{
    const char *value;

    return oaip_multipart_find(p, body, len, boundary, name, &value) ==
                   OAIP_MULTIPART_FOUND
               ? value
               : NULL;
}
