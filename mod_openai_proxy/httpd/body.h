/* Reading the client's request body from the input filters. */
#ifndef OAIP_BODY_H
#define OAIP_BODY_H

#include <httpd.h>

/* Reads the whole body (Content-Length or chunked) into one NUL-terminated
 * buffer from r->pool, refusing more than `limit` bytes. Returns OK, or an
 * HTTP status: HTTP_REQUEST_ENTITY_TOO_LARGE, or what the input filters'
 * failure maps to (400, 408, ...). */
int oaip_body_read(request_rec *r, apr_off_t limit, char **data, apr_size_t *len);

#endif
