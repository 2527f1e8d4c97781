/* libcurl process state: global init, a pool of handles reused across
 * requests (each an easy handle and the multi handle that drives it, whose
 * connection cache keeps its upstream connections alive), and a share
 * object for DNS and TLS sessions. A handle is used by one thread at a
 * time. */
#ifndef OAIP_CURL_POOL_H
#define OAIP_CURL_POOL_H

#include <apr_pools.h>
#include <curl/curl.h>

apr_status_t oaip_curl_global_init(apr_pool_t *pconf);
apr_status_t oaip_curl_pool_child_init(apr_pool_t *pchild);

typedef struct {
    CURL *easy;   /* reset to defaults when acquired */
    CURLM *multi; /* the easy handle is not in it between transfers */
} oaip_curl_handle;

/* A handle with its connection cache, or NULL. */
oaip_curl_handle *oaip_curl_acquire(void);
void oaip_curl_release(oaip_curl_handle *handle);

#endif
