#include "stores/redis_conn.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>

#include <apr_network_io.h>
#include <apr_portable.h>
#include <apr_strings.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "mod_openai_proxy.h"

struct oaip_redis_conn {
    apr_pool_t *pool;
    apr_socket_t *sock;
    int fd;
    SSL *ssl; /* NULL: plain TCP */
    redisReader *reader;
    const oaip_redis_target *target;
};

static apr_status_t free_tls_context(void *ctx)
{
    SSL_CTX_free(ctx);
    return APR_SUCCESS;
}

/* The first error of OpenSSL's queue, for a log line. */
static const char *tls_error(apr_pool_t *p)
{
    char text[256];
    unsigned long e = ERR_get_error();

    ERR_clear_error();
    if (e == 0) {
        return "no detail from OpenSSL";
    }
    ERR_error_string_n(e, text, sizeof(text));
    return apr_pstrdup(p, text);
}

const char *oaip_redis_target_init(apr_pool_t *p, oaip_redis_target *target)
{
    const char *ca = target->spec->ca_file;
    SSL_CTX *ctx;

    target->tls = NULL;
    if (!target->spec->tls) {
        return NULL;
    }
    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        return apr_psprintf(p, "cannot make a TLS context: %s", tls_error(p));
    }
    apr_pool_cleanup_register(p, ctx, free_tls_context, apr_pool_cleanup_null);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if ((ca != NULL ? SSL_CTX_load_verify_locations(ctx, ca, NULL)
                    : SSL_CTX_set_default_verify_paths(ctx)) != 1) {
        return apr_psprintf(p, "cannot load the CA certificates of %s: %s",
                            ca ? ca : "the system", tls_error(p));
    }
    target->tls = ctx;
    return NULL;
}

const char *oaip_redis_ca_file_check(apr_pool_t *p, const char *path)
{
    X509_STORE *certs = X509_STORE_new();
    const char *err = NULL;

    if (certs == NULL) {
        return "out of memory";
    }
    ERR_clear_error();
    if (X509_STORE_load_file(certs, path) != 1) {
        err = apr_psprintf(p, "%s holds no PEM certificate that can be read: %s", path,
                           tls_error(p));
    }
    X509_STORE_free(certs);
    return err;
}

static apr_status_t conn_cleanup(oaip_redis_conn *conn)
{
    if (conn->ssl != NULL) {
        SSL_free(conn->ssl); /* no close_notify: the server may be gone */
    }
    if (conn->reader != NULL) {
        redisReaderFree(conn->reader);
    }
    if (conn->sock != NULL) {
        apr_socket_close(conn->sock);
    }
    apr_pool_destroy(conn->pool);
    return APR_SUCCESS;
}

void oaip_redis_conn_close(oaip_redis_conn *conn)
{
    conn_cleanup(conn);
}

/* Waits until the socket can be read (or written) or `deadline` passed. */
static apr_status_t wait_for(oaip_redis_conn *conn, int writing, apr_time_t deadline)
{
    struct pollfd pfd;
    apr_time_t left = deadline - apr_time_now();
    int n;

    if (left <= 0) {
        return APR_TIMEUP;
    }
    pfd.fd = conn->fd;
    pfd.events = writing ? POLLOUT : POLLIN;
    pfd.revents = 0;
    do {
        n = poll(&pfd, 1, (int)apr_time_as_msec(left) + 1);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return APR_FROM_OS_ERROR(errno);
    }
    return n == 0 ? APR_TIMEUP : APR_SUCCESS;
}

/* What to do after an SSL_* call returned `ret` <= 0: wait and try again
 * (APR_SUCCESS after the wait), or fail. */
static apr_status_t tls_retry(oaip_redis_conn *conn, int ret, apr_time_t deadline)
{
    switch (SSL_get_error(conn->ssl, ret)) {
    case SSL_ERROR_WANT_READ:
        return wait_for(conn, 0, deadline);
    case SSL_ERROR_WANT_WRITE:
        return wait_for(conn, 1, deadline);
    case SSL_ERROR_ZERO_RETURN:
        return APR_ECONNRESET;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        return errno ? APR_FROM_OS_ERROR(errno) : APR_ECONNRESET;
    default:
        ERR_clear_error();
        return APR_EGENERAL;
    }
}

apr_status_t oaip_redis_conn_send(oaip_redis_conn *conn, const char *data, apr_size_t len)
{
    apr_time_t deadline = apr_time_now() + conn->target->timeout;
    apr_status_t rv;

    while (len > 0) {
        ssize_t n;

        if (conn->ssl != NULL) {
            ERR_clear_error();
            n = SSL_write(conn->ssl, data, (int)len);
            if (n <= 0) {
                if ((rv = tls_retry(conn, (int)n, deadline)) != APR_SUCCESS) {
                    return rv;
                }
                continue; /* the same bytes again, as OpenSSL wants */
            }
        } else {
            n = send(conn->fd, data, len, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                    return APR_FROM_OS_ERROR(errno);
                }
                if ((rv = wait_for(conn, 1, deadline)) != APR_SUCCESS) {
                    return rv;
                }
                continue;
            }
        }
        data += n;
        len -= (apr_size_t)n;
    }
    return APR_SUCCESS;
}

/* Reads what arrived into the reply reader. */
static apr_status_t receive(oaip_redis_conn *conn, apr_time_t deadline)
{
    char buf[4096];
    apr_status_t rv;
    /* a reply is rarely in before redis had its turn: wait first, rather
     * than ask and be told to wait (one system call less per exchange) */
    int wait_first = conn->ssl == NULL || SSL_pending(conn->ssl) == 0;

    for (;;) {
        ssize_t n;

        if (wait_first && (rv = wait_for(conn, 0, deadline)) != APR_SUCCESS) {
            return rv;
        }
        wait_first = 0;
        if (conn->ssl != NULL) {
            ERR_clear_error();
            n = SSL_read(conn->ssl, buf, sizeof(buf));
            if (n <= 0) {
                if ((rv = tls_retry(conn, (int)n, deadline)) != APR_SUCCESS) {
                    return rv;
                }
                continue;
            }
        } else {
            n = recv(conn->fd, buf, sizeof(buf), 0);
            if (n == 0) {
                return APR_ECONNRESET; /* closed by the server */
            }
            if (n < 0) {
                if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                    return APR_FROM_OS_ERROR(errno);
                }
                if ((rv = wait_for(conn, 0, deadline)) != APR_SUCCESS) {
                    return rv;
                }
                continue;
            }
        }
        return redisReaderFeed(conn->reader, buf, (size_t)n) == REDIS_OK ? APR_SUCCESS
                                                                         : APR_EGENERAL;
    }
}

apr_status_t oaip_redis_conn_reply(oaip_redis_conn *conn, redisReply **reply)
{
    apr_time_t deadline = apr_time_now() + conn->target->timeout;

    for (;;) {
        void *r = NULL;
        apr_status_t rv;

        if (redisReaderGetReply(conn->reader, &r) != REDIS_OK) {
            return APR_EGENERAL; /* not RESP: nothing more can be read */
        }
        if (r != NULL) {
            *reply = r;
            return APR_SUCCESS;
        }
        if ((rv = receive(conn, deadline)) != APR_SUCCESS) {
            return rv;
        }
    }
}

static int is_address(const char *host)
{
    return strspn(host, "0123456789.") == strlen(host) || strchr(host, ':') != NULL;
}

static apr_status_t tls_handshake(oaip_redis_conn *conn, const char **why)
{
    const oaip_redis_target *t = conn->target;
    const char *host = t->spec->host;
    apr_time_t deadline = apr_time_now() + t->timeout;
    int ret;

    conn->ssl = SSL_new(t->tls);
    if (conn->ssl == NULL || SSL_set_fd(conn->ssl, conn->fd) != 1) {
        *why = apr_psprintf(conn->pool, "cannot set up TLS: %s", tls_error(conn->pool));
        return APR_EGENERAL;
    }
    /* the certificate must name the host of the URL: its name (sent as
     * SNI too) or its address */
    if (is_address(host)) {
        ret = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(conn->ssl), host);
    } else {
        ret = SSL_set_tlsext_host_name(conn->ssl, host) == 1 &&
              SSL_set1_host(conn->ssl, host) == 1;
    }
    if (ret != 1) {
        *why = apr_psprintf(conn->pool, "cannot check the certificate for %s", host);
        return APR_EGENERAL;
    }
    for (;;) {
        apr_status_t rv;

        ERR_clear_error();
        ret = SSL_connect(conn->ssl);
        if (ret == 1) {
            return APR_SUCCESS;
        }
        if (SSL_get_verify_result(conn->ssl) != X509_V_OK) {
            *why = apr_psprintf(
                conn->pool, "TLS handshake failed: server certificate not trusted: %s",
                X509_verify_cert_error_string(SSL_get_verify_result(conn->ssl)));
            ERR_clear_error();
            return APR_EGENERAL;
        }
        if (SSL_get_error(conn->ssl, ret) == SSL_ERROR_SSL) {
            *why = apr_psprintf(conn->pool, "TLS handshake failed: %s",
                                tls_error(conn->pool));
            return APR_EGENERAL;
        }
        if ((rv = tls_retry(conn, ret, deadline)) != APR_SUCCESS) {
            *why = rv == APR_TIMEUP ? "TLS handshake timed out"
                                    : "TLS handshake failed: connection closed";
            return rv;
        }
    }
}

/* AUTH and SELECT, in one round trip. */
static apr_status_t log_in(oaip_redis_conn *conn, const char **why)
{
    const oaip_store_spec *spec = conn->target->spec;
    const char *argv[3];
    char db[16], *cmds[2], *buf;
    int lens[2], n = 0, i, auth = spec->password != NULL;
    apr_size_t total = 0;
    apr_status_t rv;

    if (auth) {
        argv[0] = "AUTH";
        argv[1] = spec->user ? spec->user : spec->password;
        argv[2] = spec->password;
        lens[n] = redisFormatCommandArgv(&cmds[n], spec->user ? 3 : 2, argv, NULL);
        n++;
    }
    if (spec->db != 0) {
        apr_snprintf(db, sizeof(db), "%d", spec->db);
        argv[0] = "SELECT";
        argv[1] = db;
        lens[n] = redisFormatCommandArgv(&cmds[n], 2, argv, NULL);
        n++;
    }
    for (i = 0; i < n; i++) {
        total += (apr_size_t)lens[i];
    }
    buf = apr_palloc(conn->pool, total + 1);
    for (total = 0, i = 0; i < n; i++) {
        memcpy(buf + total, cmds[i], (apr_size_t)lens[i]);
        total += (apr_size_t)lens[i];
        memset(cmds[i], 0, (apr_size_t)lens[i]); /* the password does not linger */
        redisFreeCommand(cmds[i]);
    }
    rv = n > 0 ? oaip_redis_conn_send(conn, buf, total) : APR_SUCCESS;
    memset(buf, 0, total);
    for (i = 0; rv == APR_SUCCESS && i < n; i++) {
        redisReply *reply;

        if ((rv = oaip_redis_conn_reply(conn, &reply)) != APR_SUCCESS) {
            *why = "no answer to the login";
            break;
        }
        if (reply->type == REDIS_REPLY_ERROR) {
            /* redis's own words (WRONGPASS, NOAUTH, ERR DB index...): they
             * never repeat the password */
            *why = apr_psprintf(conn->pool, "%s refused: %.200s",
                                i == 0 && auth ? "login" : "database", reply->str);
            rv = APR_EACCES;
        }
        freeReplyObject(reply);
    }
    return rv;
}

apr_status_t oaip_redis_conn_open(oaip_redis_conn **out, const oaip_redis_target *target)
{
    const oaip_store_spec *spec = target->spec;
    apr_os_sock_t fd;
    apr_sockaddr_t *addr;
    oaip_redis_conn *conn;
    apr_pool_t *cp;
    const char *why = NULL;
    apr_status_t rv;

    /* unmanaged: when the child exits, httpd destroys subpools before the
     * connection pool's cleanup, which then closes each connection and
     * destroys its pool itself */
    if ((rv = apr_pool_create_unmanaged(&cp)) != APR_SUCCESS) {
        return rv;
    }
    conn = apr_pcalloc(cp, sizeof(*conn));
    conn->pool = cp;
    conn->target = target;
    conn->reader = redisReaderCreate();
    rv = apr_sockaddr_info_get(&addr, spec->host, APR_UNSPEC, spec->port, 0, cp);
    /* each address of the name in turn (localhost: ::1, then 127.0.0.1) */
    for (; rv == APR_SUCCESS && addr != NULL; addr = addr->next) {
        if (conn->sock != NULL) {
            apr_socket_close(conn->sock);
            conn->sock = NULL;
        }
        rv = apr_socket_create(&conn->sock, addr->family, SOCK_STREAM, APR_PROTO_TCP, cp);
        if (rv != APR_SUCCESS) {
            break;
        }
        /* a timeout makes APR's socket non-blocking, which the I/O above
         * (poll with a deadline) wants */
        apr_socket_timeout_set(conn->sock, target->timeout);
        apr_socket_opt_set(conn->sock, APR_TCP_NODELAY, 1);
        rv = apr_socket_connect(conn->sock, addr);
        if (rv == APR_SUCCESS || addr->next == NULL) {
            break;
        }
        rv = APR_SUCCESS; /* the next address */
    }
    if (rv == APR_SUCCESS) {
        apr_os_sock_get(&fd, conn->sock);
        conn->fd = fd;
        if (target->tls != NULL) {
            rv = tls_handshake(conn, &why);
        }
    }
    if (rv == APR_SUCCESS) {
        rv = log_in(conn, &why);
    }
    if (rv != APR_SUCCESS) {
        if (why != NULL) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, rv, target->s, "counter store %s: %s",
                         spec->name, why);
        }
        conn_cleanup(conn);
        return rv;
    }
    *out = conn;
    return APR_SUCCESS;
}
