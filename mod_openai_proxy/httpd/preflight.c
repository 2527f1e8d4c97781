/* A browser sends the CORS preflight (OPTIONS with Origin and
 * Access-Control-Request-Method) without credentials, whatever the page's
 * fetch() asked for: on a Location protected by httpd's auth it would get
 * a 401 and the browser would never send the real request. So preflights
 * on the proxy's Locations are answered here, before authentication, by the
 * handler's own code: 204 with the CORS headers for an allowed origin, the
 * JSON 403 for any other, 404 for a path the Location does not serve. Only
 * such OPTIONS requests are answered early; they carry nothing to the
 * upstream and count against no limit. Every other method, OPTIONS without
 * the preflight headers included, still goes through authentication. */
#include "httpd/preflight.h"

#include <http_request.h>

#include "httpd/handler.h"

int oaip_preflight_header_parser(request_rec *r)
{
    int rc;

    if (r->method_number != M_OPTIONS || r->main != NULL ||
        apr_table_get(r->headers_in, "Origin") == NULL ||
        apr_table_get(r->headers_in, "Access-Control-Request-Method") == NULL ||
        !oaip_location_is_ours(r)) {
        return DECLINED;
    }
    rc = oaip_serve(r);
    /* answered: DONE ends the request here, so no authentication runs */
    return rc == OK ? DONE : rc;
}
