/* One upstream transfer driven by the exchange's own wait: libcurl's multi
 * socket interface on a pooled handle, one poll(2) on the upstream's
 * socket (and the client's, for a hang-up) per wake-up, instead of
 * curl_easy_perform's loop (its own poll with a wake-up pipe, a check of
 * the socket after each read, and a progress callback). */
#ifndef OAIP_TRANSFER_H
#define OAIP_TRANSFER_H

#include <apr_pools.h>
#include <apr_time.h>

#include "engine/curl_pool.h"

typedef struct oaip_transfer oaip_transfer;

typedef enum {
    OAIP_TRANSFER_READY,      /* libcurl ran on what the upstream sent */
    OAIP_TRANSFER_DEADLINE,   /* `until` came first */
    OAIP_TRANSFER_CLIENT_HUP, /* the client's connection closed */
    OAIP_TRANSFER_DONE        /* the transfer ended: *result says how */
} oaip_transfer_event;

/* Starts the configured easy handle of `h`. `client_fd` (-1: none, as on
 * HTTP/2) is watched for a hang-up only, never read. NULL (and *result)
 * when libcurl refuses to start it. */
oaip_transfer *oaip_transfer_start(apr_pool_t *p, oaip_curl_handle *h, int client_fd,
                                   CURLcode *result);

/* Waits for the next of: the upstream's socket ready (libcurl then runs
 * on it: its callbacks are called from here), libcurl's own timer, the
 * client hanging up, `until` (0: no deadline of the caller's). */
oaip_transfer_event oaip_transfer_wait(oaip_transfer *t, apr_time_t until,
                                       CURLcode *result);

/* Takes the easy handle out of the multi handle (a transfer that did not
 * end has its connection closed) so that the handle may be released. */
void oaip_transfer_end(oaip_transfer *t);

#endif
