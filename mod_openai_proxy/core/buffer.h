/* A byte buffer in an APR pool that doubles as it fills (core: APR only).
 * Outgrown space stays in the pool until it is cleared: fine for the short
 * lives of request pools. */
#ifndef OAIP_BUFFER_H
#define OAIP_BUFFER_H

#include <apr_pools.h>

typedef struct {
    char *data;
    apr_size_t len;
    apr_size_t cap;
} oaip_buffer;

/* Makes room for `more` bytes after the current content. */
void oaip_buffer_reserve(apr_pool_t *p, oaip_buffer *buf, apr_size_t more);

void oaip_buffer_append(apr_pool_t *p, oaip_buffer *buf, const char *bytes, apr_size_t n);

#endif
