/* OpenAIProxyRoute at request time: which backends may take a request
 * (their models= against the upstream's model name), in which order
 * (OpenAIProxyBalance), and the `again` policy that sends the request to
 * the next one when a backend fails it (OpenAIProxyFailover), composed
 * with the policy the request already has (a refused field taken back is
 * tried on the same backend first). */
#ifndef OAIP_FAILOVER_H
#define OAIP_FAILOVER_H

#include <httpd.h>

#include "engine/upstream.h"
#include "httpd/config.h"

typedef struct oaip_failover oaip_failover;

/* The request `current` was, pointed at another backend: its URL and auth
 * line, and whatever else depends on the upstream (the fields it is known
 * to refuse). NULL: it cannot be made. */
typedef const oaip_upstream_request *(*oaip_retarget)(
    void *ctx, const oaip_upstream_request *current, const char *url,
    const char *auth_line);

/* The first backend of `conf`'s route, whatever the model: the URL a
 * request is prepared for before its model is known. NULL: none. */
const oaip_backend *oaip_route_first(request_rec *r, const oaip_dir_conf *conf);

/* The URL of `upstream_path` on `b`, with its query. */
const char *oaip_backend_url(apr_pool_t *p, const oaip_backend *b,
                             const char *upstream_path);

/* The eligible backends of the request for `model` (the upstream's name;
 * NULL: the request names none), in the order they will be tried. NULL
 * when none is eligible. `client_key`: the client's own key where the
 * Location allows one (it replaces every backend's), else NULL. */
oaip_failover *oaip_failover_begin(request_rec *r, const oaip_dir_conf *conf,
                                   const char *model, const char *upstream_path,
                                   const char *client_key);

/* Points `req` (prepared for `prepared_for`) at the first backend to try
 * and makes the failover its `again` policy (the one it had is asked
 * first). Returns the request to send; NULL: it could not be made. */
const oaip_upstream_request *oaip_failover_start(oaip_failover *fo,
                                                 oaip_upstream_request *req,
                                                 const oaip_backend *prepared_for,
                                                 oaip_retarget retarget, void *ctx);

/* After the exchange: the last attempt's backend judged from the
 * request's record (an attempt the policy was not offered), its usage
 * counted, OPENAI_BACKEND noted, its in-flight count released. */
void oaip_failover_end(oaip_failover *fo);

#endif
