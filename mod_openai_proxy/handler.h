/* The content handler: CORS, routing, body, key, then the upstream. */
#ifndef OAIP_HANDLER_H
#define OAIP_HANDLER_H

#include <httpd.h>

int oaip_handler(request_rec *r);

/* Requests for a Location with our handler map to no file. */
int oaip_translate_name(request_rec *r);
int oaip_map_to_storage(request_rec *r);

#endif
