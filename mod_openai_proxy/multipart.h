/* multipart/form-data bodies (audio, image edits): the proxy forwards them
 * as they are and only looks for the model field (core: APR only). */
#ifndef OAIP_MULTIPART_H
#define OAIP_MULTIPART_H

#include <apr_pools.h>

/* The boundary of a Content-Type value, NULL when the value is not
 * multipart/form-data with a boundary, or holds a byte that cannot go into
 * an upstream header line (control characters, non-ASCII). */
const char *oaip_multipart_boundary(apr_pool_t *p, const char *content_type);

/* The value of the form field `name` (a part without a file name) in a
 * multipart `body`, or NULL when there is none or it is longer than 256
 * bytes. */
const char *oaip_multipart_field(apr_pool_t *p, const char *body, apr_size_t len,
                                 const char *boundary, const char *name);

#endif
