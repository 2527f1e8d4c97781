/* Which counter store (stores/counters.h) each virtual host counts its
 * rate limits and token budgets in: OpenAIProxyCounterStore, else the shm
 * table. */
#ifndef OAIP_COUNTER_STORES_H
#define OAIP_COUNTER_STORES_H

#include <httpd.h>

#include "stores/counters.h"

/* post_config: creates the shm table when some limit may use it. */
apr_status_t oaip_counter_stores_post_config(apr_pool_t *pconf, server_rec *s);

/* child_init: attaches the shm table and makes each server's store client;
 * servers naming the same store share one client per process. */
void oaip_counter_stores_child_init(apr_pool_t *pchild, server_rec *s);

/* The store of a virtual host; NULL when none could be made. */
oaip_counter_client *oaip_counter_store_for(server_rec *s);

#endif
