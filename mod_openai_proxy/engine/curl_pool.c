#include "engine/curl_pool.h"

#include <apr_tables.h>
#include <apr_thread_mutex.h>
#include <stdlib.h>

static int global_initialised;

static apr_thread_mutex_t *idle_lock;
static apr_array_header_t *idle_handles; /* oaip_curl_handle *, from the child pool */
/* every handle made, freed at child exit. Idle ones are taken last in,
 * first out: the fewest upstream connections stay open (a handle per
 * thread would keep one per thread that ever served a request) */
static apr_array_header_t *all_handles;
static CURLSH *share;
static apr_thread_mutex_t *share_locks[CURL_LOCK_DATA_LAST];

static apr_status_t global_cleanup(void *unused)
{
    (void)unused;
    curl_global_cleanup();
    global_initialised = 0;
    return APR_SUCCESS;
}

apr_status_t oaip_curl_global_init(apr_pool_t *pconf)
{
    if (global_initialised) {
        return APR_SUCCESS;
    }
    if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK) {
        return APR_EGENERAL;
    }
    global_initialised = 1;
    apr_pool_cleanup_register(pconf, NULL, global_cleanup, apr_pool_cleanup_null);
    return APR_SUCCESS;
}

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *u)
{
    (void)h;
    (void)access;
    (void)u;
    apr_thread_mutex_lock(share_locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *u)
{
    (void)h;
    (void)u;
    apr_thread_mutex_unlock(share_locks[data]);
}

static apr_status_t child_cleanup(void *unused)
{
    int i;

    (void)unused;
    apr_thread_mutex_lock(idle_lock);
    for (i = 0; i < all_handles->nelts; i++) {
        oaip_curl_handle *h = APR_ARRAY_IDX(all_handles, i, oaip_curl_handle *);
        curl_multi_cleanup(h->multi);
        curl_easy_cleanup(h->easy);
        free(h);
    }
    all_handles->nelts = idle_handles->nelts = 0;
    apr_thread_mutex_unlock(idle_lock);
    if (share != NULL) {
        curl_share_cleanup(share);
        share = NULL;
    }
    return APR_SUCCESS;
}

apr_status_t oaip_curl_pool_child_init(apr_pool_t *pchild)
{
    apr_status_t rv;
    int i;

    rv = apr_thread_mutex_create(&idle_lock, APR_THREAD_MUTEX_DEFAULT, pchild);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    for (i = 0; i < CURL_LOCK_DATA_LAST; i++) {
        rv = apr_thread_mutex_create(&share_locks[i], APR_THREAD_MUTEX_DEFAULT, pchild);
        if (rv != APR_SUCCESS) {
            return rv;
        }
    }
    idle_handles = apr_array_make(pchild, 16, sizeof(oaip_curl_handle *));
    all_handles = apr_array_make(pchild, 16, sizeof(oaip_curl_handle *));
    share = curl_share_init();
    if (share != NULL) {
        curl_share_setopt(share, CURLSHOPT_LOCKFUNC, share_lock);
        curl_share_setopt(share, CURLSHOPT_UNLOCKFUNC, share_unlock);
        /* not the DNS cache: each handle's multi handle has one, which
         * takes no lock per request */
        curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    }
    apr_pool_cleanup_register(pchild, NULL, child_cleanup, apr_pool_cleanup_null);
    return APR_SUCCESS;
}

/* A new pair, or NULL. malloc'd: handles outlive requests, and one made
 * by a thread goes back to the pool of all. */
static oaip_curl_handle *handle_make(void)
{
    oaip_curl_handle *h = calloc(1, sizeof(*h));

    if (h == NULL) {
        return NULL;
    }
    h->easy = curl_easy_init();
    h->multi = curl_multi_init();
    if (h->easy == NULL || h->multi == NULL) {
        curl_easy_cleanup(h->easy);
        curl_multi_cleanup(h->multi);
        free(h);
        return NULL;
    }
    if (share != NULL) {
        curl_easy_setopt(h->easy, CURLOPT_SHARE, share);
    }
    apr_thread_mutex_lock(idle_lock);
    *(oaip_curl_handle **)apr_array_push(all_handles) = h;
    apr_thread_mutex_unlock(idle_lock);
    return h;
}

oaip_curl_handle *oaip_curl_acquire(void)
{
    oaip_curl_handle *h = NULL;

    apr_thread_mutex_lock(idle_lock);
    if (idle_handles->nelts > 0) {
        h = APR_ARRAY_IDX(idle_handles, --idle_handles->nelts, oaip_curl_handle *);
    }
    apr_thread_mutex_unlock(idle_lock);
    if (h == NULL) {
        return handle_make();
    }
    /* keeps the share (DNS cache, TLS sessions); the live connections stay
     * in the multi handle's cache */
    curl_easy_reset(h->easy);
    return h;
}

void oaip_curl_release(oaip_curl_handle *h)
{
    if (h == NULL) {
        return;
    }
    apr_thread_mutex_lock(idle_lock);
    *(oaip_curl_handle **)apr_array_push(idle_handles) = h;
    apr_thread_mutex_unlock(idle_lock);
}
