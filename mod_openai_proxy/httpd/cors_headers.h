/* CORS response headers of a request (httpd glue over cors.c). */
#ifndef OAIP_CORS_HEADERS_H
#define OAIP_CORS_HEADERS_H

#include <httpd.h>

#include "httpd/config.h"

/* Sets the CORS response headers for `origin` (NULL: the request has none)
 * in err_headers_out, so that every answer, errors included, carries them:
 * Vary: Origin, and for an allowed origin Access-Control-Allow-Origin,
 * -Expose-Headers and, with OpenAIProxyAllowCredentials On,
 * -Allow-Credentials. Safe to call twice. Returns 0 when the origin is
 * refused (no Allow-Origin is set then). */
int oaip_cors_apply(request_rec *r, const oaip_dir_conf *conf, const char *origin);

#endif
