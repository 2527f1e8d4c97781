/* httpd's own error answers on the proxy's Locations, in JSON. */
#ifndef OAIP_ERROR_PAGES_H
#define OAIP_ERROR_PAGES_H

#include <httpd.h>

/* insert_error_filter hook. */
void oaip_error_pages_insert(request_rec *r);

/* Registers the output filter that replaces httpd's HTML error body. */
void oaip_error_pages_register(apr_pool_t *p);

#endif
