/* The content handler: CORS, routing, body, key, then the upstream. */
#ifndef OAIP_HANDLER_H
#define OAIP_HANDLER_H

#include <httpd.h>

int oaip_handler(request_rec *r);

#endif
