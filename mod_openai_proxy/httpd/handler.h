/* The openai-proxy handler and its URI hooks. */
#ifndef OAIP_HANDLER_H
#define OAIP_HANDLER_H

#include <httpd.h>

#define OAIP_HANDLER_NAME "openai-proxy"

int oaip_translate_name(request_rec *r);
int oaip_map_to_storage(request_rec *r);
int oaip_handler(request_rec *r);

/* What the handler does for a request of ours, also called for preflights
 * answered before authentication (preflight.c): CORS, routing, the
 * preflight answer, method, key, limits, then the upstream exchange. */
int oaip_serve(request_rec *r);

/* Whether the Location that applies says "SetHandler openai-proxy" (before
 * the fixups that set r->handler from it). */
int oaip_location_is_ours(request_rec *r);

/* The request path below the <Location> the handler was set in ("", "/",
 * "/chat/completions", ...; the whole path for a regex section), which
 * routing and the shape of errors go by. */
const char *oaip_path_below_location(request_rec *r);

#endif
