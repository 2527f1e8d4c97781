/* OpenAIProxyMaxStreams: concurrent streams per virtual host, counted in
 * shared memory over every process of the server. */
#ifndef OAIP_STREAMS_H
#define OAIP_STREAMS_H

#include <httpd.h>

#include "core/errors.h"

/* post_config: numbers the virtual hosts and maps the counters. */
apr_status_t oaip_streams_post_config(apr_pool_t *pconf, server_rec *s);

/* child_init: claims this process's row of counters. */
void oaip_streams_child_init(apr_pool_t *pchild, server_rec *s);

/* Takes a stream slot of r's virtual host until r ends. Returns 0 when the
 * limit is reached (nothing taken, `refusal` filled in). Always 1 without a
 * limit. */
int oaip_streams_acquire(request_rec *r, oaip_refusal *refusal);

#endif
