/* SetHandler openai-proxy-status: the statistics of the whole server as
 * JSON, or in Prometheus' text format with ?format=prometheus. */
#ifndef OAIP_STATUS_H
#define OAIP_STATUS_H

#include <httpd.h>

#define OAIP_STATUS_HANDLER_NAME "openai-proxy-status"

int oaip_status_handler(request_rec *r);

#endif
