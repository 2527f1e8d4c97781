#include "httpd/body.h"

#include <apr_strings.h>
#include <http_protocol.h>
#include <util_filter.h>

#include "core/buffer.h"
#include "mod_openai_proxy.h"

static int too_large(request_rec *r)
{
    /* the rest of the body is not read: the connection cannot be reused */
    r->connection->keepalive = AP_CONN_CLOSE;
    return HTTP_REQUEST_ENTITY_TOO_LARGE;
}

int oaip_body_read(request_rec *r, apr_off_t limit, char **data, apr_size_t *len)
{
    const char *declared = apr_table_get(r->headers_in, "Content-Length");
    apr_bucket_brigade *bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    oaip_buffer body = {NULL, 0, 0};
    int seen_eos = 0;

    if (declared != NULL) {
        apr_off_t n = -1;
        if (apr_strtoff(&n, declared, NULL, 10) == APR_SUCCESS && n > limit) {
            return too_large(r);
        }
        /* one allocation for a body of known length (+1 for the NUL) */
        oaip_buffer_reserve(r->pool, &body,
                            n >= 0 && n < limit ? (apr_size_t)n + 1 : 8192);
    }

    while (!seen_eos) {
        apr_bucket *b;
        apr_status_t rv = ap_get_brigade(r->input_filters, bb, AP_MODE_READBYTES,
                                         APR_BLOCK_READ, HUGE_STRING_LEN);
        if (rv != APR_SUCCESS) {
            ap_log_rerror(APLOG_MARK, APLOG_INFO, rv, r,
                          "reading the request body failed");
            return ap_map_http_request_error(rv, HTTP_BAD_REQUEST);
        }
        for (b = APR_BRIGADE_FIRST(bb); b != APR_BRIGADE_SENTINEL(bb);
             b = APR_BUCKET_NEXT(b)) {
            const char *chunk;
            apr_size_t n;

            if (APR_BUCKET_IS_EOS(b)) {
                seen_eos = 1;
                break;
            }
            if (APR_BUCKET_IS_METADATA(b)) {
                continue;
            }
            rv = apr_bucket_read(b, &chunk, &n, APR_BLOCK_READ);
            if (rv != APR_SUCCESS) {
                return ap_map_http_request_error(rv, HTTP_BAD_REQUEST);
            }
            if ((apr_off_t)(body.len + n) > limit) {
                apr_brigade_cleanup(bb);
                return too_large(r);
            }
            oaip_buffer_append(r->pool, &body, chunk, n);
        }
        apr_brigade_cleanup(bb);
    }
    oaip_buffer_append(r->pool, &body, "", 1); /* NUL-terminated for the parser */
    *data = body.data;
    *len = body.len - 1;
    return OK;
}
