#include "core/buffer.h"

#include <string.h>

void oaip_buffer_reserve(apr_pool_t *p, oaip_buffer *buf, apr_size_t more)
{
    apr_size_t cap = buf->cap ? buf->cap : 256;
    char *bigger;

    if (buf->len + more <= buf->cap) {
        return;
    }
    while (cap < buf->len + more) {
        cap *= 2;
    }
    bigger = apr_palloc(p, cap);
    if (buf->len > 0) {
        memcpy(bigger, buf->data, buf->len);
    }
    buf->data = bigger;
    buf->cap = cap;
}

void oaip_buffer_append(apr_pool_t *p, oaip_buffer *buf, const char *bytes, apr_size_t n)
{
    oaip_buffer_reserve(p, buf, n);
    if (n > 0) {
        memcpy(buf->data + buf->len, bytes, n);
    }
    buf->len += n;
}
