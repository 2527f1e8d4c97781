/* One connection to a redis server, plain TCP or TLS (rediss://): the
 * transport is ours, the protocol is hiredis's (its reply reader; commands
 * are encoded by the caller with redisFormatCommandArgv). Debian's hiredis
 * 0.14 has no TLS, hence the transport. Every wait is bounded by the
 * connection's timeout. */
#ifndef OAIP_REDIS_CONN_H
#define OAIP_REDIS_CONN_H

#include <hiredis/hiredis.h>
#include <httpd.h>
#include <openssl/ssl.h>

#include "core/limit_spec.h"

typedef struct oaip_redis_conn oaip_redis_conn;

/* What a process's connections to one store share: the TLS context (with
 * the CA the server's certificate is checked against) and the timeout. */
typedef struct {
    const oaip_store_spec *spec;
    server_rec *s;
    SSL_CTX *tls; /* NULL: plain TCP */
    apr_interval_time_t timeout;
} oaip_redis_target;

/* Makes the TLS context of a rediss:// store (NULL for redis://). Returns
 * NULL, or why it cannot be made (in `p`). */
const char *oaip_redis_target_init(apr_pool_t *p, oaip_redis_target *target);

/* Why the PEM file `path` cannot serve as CA certificates (NULL: it can):
 * OpenAIProxyCounterStoreCAFile, at configuration time. */
const char *oaip_redis_ca_file_check(apr_pool_t *p, const char *path);

/* Connects, verifies the server's certificate (rediss://: against the CA
 * file, for the host name or address of the spec), logs in (AUTH [user]
 * password) and selects the database. On failure, logs why once (never the
 * password) and returns the error. */
apr_status_t oaip_redis_conn_open(oaip_redis_conn **out, const oaip_redis_target *target);

void oaip_redis_conn_close(oaip_redis_conn *conn);

/* Sends `len` bytes of encoded commands. */
apr_status_t oaip_redis_conn_send(oaip_redis_conn *conn, const char *data,
                                  apr_size_t len);

/* The next reply (free it with freeReplyObject). */
apr_status_t oaip_redis_conn_reply(oaip_redis_conn *conn, redisReply **reply);

#endif
