/* libcurl process state: global init, a pool of easy handles reused across
 * requests (each keeps its upstream connections alive), and a share object
 * for DNS and TLS sessions. A handle is used by one thread at a time. */
#ifndef OAIP_CURL_POOL_H
#define OAIP_CURL_POOL_H

#include <apr_pools.h>
#include <curl/curl.h>

apr_status_t oaip_curl_global_init(apr_pool_t *pconf);
apr_status_t oaip_curl_pool_child_init(apr_pool_t *pchild);

/* A handle reset to defaults but with its connection cache, or NULL. */
CURL *oaip_curl_acquire(void);
void oaip_curl_release(CURL *handle);

#endif
