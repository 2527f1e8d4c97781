/* CORS preflights answered before httpd's authentication. */
#ifndef OAIP_PREFLIGHT_H
#define OAIP_PREFLIGHT_H

#include <httpd.h>

/* header_parser hook: runs after the <Location> walk, before access
 * control (authn/authz). */
int oaip_preflight_header_parser(request_rec *r);

#endif
