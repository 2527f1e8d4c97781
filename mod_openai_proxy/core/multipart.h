/* multipart/form-data bodies (audio, image edits): the proxy forwards them
 * as they are and only looks for the model field (core: APR only). */
#ifndef OAIP_MULTIPART_H
#define OAIP_MULTIPART_H

#include <apr_pools.h>

/* The boundary of a Content-Type value, NULL when the value is not
 * multipart/form-data with a boundary, or holds a byte that cannot go into
 * an upstream header line (control characters, non-ASCII). */
const char *oaip_multipart_boundary(apr_pool_t *p, const char *content_type);

typedef enum {
    OAIP_MULTIPART_ABSENT,   /* no part names the field */
    OAIP_MULTIPART_FOUND,    /* exactly one part does */
    OAIP_MULTIPART_DUPLICATE /* more than one: which wins depends on the parser */
} oaip_multipart_found;

/* Looks for the form field `name` in a multipart `body`. A part is named
 * only by the name parameter of its Content-Disposition header (quoted with
 * backslash escapes, a bare token, or RFC 2231 name*=), never by text
 * elsewhere in its headers; delimiters are "--boundary" lines as RFC 2046
 * has them. Every part so named counts, files included. *value is the
 * field's value when FOUND, not a file and at most 256 bytes, else NULL. */
oaip_multipart_found oaip_multipart_find(apr_pool_t *p, const char *body, apr_size_t len,
                                         const char *boundary, const char *name,
                                         const char **value);

/* The value of the form field `name` when exactly one part names it, it is
 * no file and at most 256 bytes; else NULL. */
const char *oaip_multipart_field(apr_pool_t *p, const char *body, apr_size_t len,
                                 const char *boundary, const char *name);

#endif
