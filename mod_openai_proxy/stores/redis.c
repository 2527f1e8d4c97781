/* Counters in a redis server, shared by every httpd that names it. Each add
 * sends INCRBY and EXPIRE in one round trip: apr_redis has INCRBY but no
 * EXPIRE, and counters without an expiry would pile up in redis forever, so
 * this speaks the few lines of RESP it needs itself. Connections are pooled
 * per process (apr_reslist), one per thread at most. */
#include <ap_mpm.h>
#include <apr_atomic.h>
#include <apr_reslist.h>
#include <apr_strings.h>

#include "mod_openai_proxy.h"
#include "stores/counters.h"

#define IO_TIMEOUT apr_time_from_sec(2)
#define RETRY_AFTER_FAILURE 1 /* seconds without connection attempts */
#define CONN_TTL apr_time_from_sec(60)

typedef struct {
    const oaip_store_spec *spec;
    server_rec *s;
    apr_reslist_t *conns;
    volatile apr_uint32_t down_until; /* seconds since the epoch */
} redis_store;

typedef struct {
    apr_pool_t *pool;
    apr_socket_t *sock;
    char buf[512];
    apr_size_t len; /* bytes in buf */
    apr_size_t pos; /* bytes of buf already consumed */
} redis_conn;

static apr_status_t send_all(redis_conn *conn, const char *data, apr_size_t len)
{
    while (len > 0) {
        apr_size_t n = len;
        apr_status_t rv = apr_socket_send(conn->sock, data, &n);
        if (rv != APR_SUCCESS) {
            return rv;
        }
        data += n;
        len -= n;
    }
    return APR_SUCCESS;
}

/* The next reply line, without its CRLF. */
static apr_status_t read_line(redis_conn *conn, const char **line)
{
    for (;;) {
        char *end = memchr(conn->buf + conn->pos, '\n', conn->len - conn->pos);
        apr_size_t n;
        apr_status_t rv;

        if (end != NULL) {
            *line = conn->buf + conn->pos;
            conn->pos = (apr_size_t)(end - conn->buf) + 1;
            *end = '\0';
            if (end > *line && end[-1] == '\r') {
                end[-1] = '\0';
            }
            return APR_SUCCESS;
        }
        if (conn->pos > 0) { /* keep the unfinished line at the front */
            memmove(conn->buf, conn->buf + conn->pos, conn->len - conn->pos);
            conn->len -= conn->pos;
            conn->pos = 0;
        }
        if (conn->len == sizeof(conn->buf)) {
            return APR_EGENERAL; /* no reply of ours is that long */
        }
        n = sizeof(conn->buf) - conn->len;
        rv = apr_socket_recv(conn->sock, conn->buf + conn->len, &n);
        if (rv != APR_SUCCESS && n == 0) {
            return rv == APR_EOF ? APR_ECONNRESET : rv;
        }
        conn->len += n;
    }
}

/* An integer reply (":N"), or a status reply ("+OK") as 0. */
static apr_status_t read_reply(redis_store *store, redis_conn *conn, apr_int64_t *value)
{
    const char *line;
    apr_status_t rv = read_line(conn, &line);

    if (rv != APR_SUCCESS) {
        return rv;
    }
    if (line[0] == ':' || line[0] == '+') {
        *value = line[0] == ':' ? apr_atoi64(line + 1) : 0;
        return APR_SUCCESS;
    }
    ap_log_error(APLOG_MARK, APLOG_WARNING, 0, store->s,
                 "counter store %s answered: %.200s", store->spec->name, line);
    return APR_EGENERAL;
}

static apr_status_t conn_close(void *resource, void *params, apr_pool_t *pool)
{
    redis_conn *conn = resource;

    (void)params;
    (void)pool;
    apr_socket_close(conn->sock);
    apr_pool_destroy(conn->pool);
    return APR_SUCCESS;
}

static apr_status_t conn_open(void **resource, void *params, apr_pool_t *pool)
{
    redis_store *store = params;
    apr_sockaddr_t *addr;
    redis_conn *conn;
    apr_pool_t *cp;
    apr_status_t rv;

    /* not a subpool of the reslist's pool: when the child exits, httpd
     * destroys subpools before it runs the reslist's cleanup, which then
     * closes each connection and destroys its pool itself */
    (void)pool;
    if ((rv = apr_pool_create_unmanaged(&cp)) != APR_SUCCESS) {
        return rv;
    }
    conn = apr_pcalloc(cp, sizeof(*conn));
    conn->pool = cp;
    rv = apr_sockaddr_info_get(&addr, store->spec->host, APR_UNSPEC, store->spec->port, 0,
                               cp);
    if (rv == APR_SUCCESS) {
        rv = apr_socket_create(&conn->sock, addr->family, SOCK_STREAM, APR_PROTO_TCP, cp);
    }
    if (rv == APR_SUCCESS) {
        apr_socket_timeout_set(conn->sock, IO_TIMEOUT);
        apr_socket_opt_set(conn->sock, APR_TCP_NODELAY, 1);
        rv = apr_socket_connect(conn->sock, addr);
    }
    if (rv == APR_SUCCESS && store->spec->password != NULL) {
        const char *pw = store->spec->password;
        const char *auth = apr_psprintf(
            cp, "*2\r\n$4\r\nAUTH\r\n$%" APR_SIZE_T_FMT "\r\n%s\r\n", strlen(pw), pw);
        apr_int64_t ignored;
        rv = send_all(conn, auth, strlen(auth));
        if (rv == APR_SUCCESS) {
            rv = read_reply(store, conn, &ignored);
        }
    }
    if (rv != APR_SUCCESS) {
        if (conn->sock != NULL) {
            apr_socket_close(conn->sock);
        }
        apr_pool_destroy(cp);
        return rv;
    }
    *resource = conn;
    return APR_SUCCESS;
}

/* One RESP array of bulk strings. */
static int format_command(char *out, apr_size_t size, const char *name, const char *key,
                          const char *arg)
{
    return apr_snprintf(out, size,
                        "*3\r\n$%" APR_SIZE_T_FMT "\r\n%s\r\n$%" APR_SIZE_T_FMT
                        "\r\n%s\r\n$%" APR_SIZE_T_FMT "\r\n%s\r\n",
                        strlen(name), name, strlen(key), key, strlen(arg), arg);
}

static apr_status_t redis_add(oaip_counter_client *c, const char *key, apr_int64_t delta,
                              apr_uint32_t ttl, apr_uint64_t *total)
{
    redis_store *store = c->backend;
    apr_uint32_t now = (apr_uint32_t)apr_time_sec(apr_time_now());
    char command[512], number[24];
    apr_int64_t value = 0, ignored;
    redis_conn *conn;
    apr_status_t rv = APR_EGENERAL;
    int n, attempt;

    if (apr_atomic_read32(&store->down_until) > now) {
        return APR_ECONNREFUSED; /* it failed a moment ago: fail fast */
    }
    /* both commands in one write, both replies read after: one round trip.
     * Every EXPIRE of a window names the same end, so repeating it is
     * harmless. */
    /* INCRBY takes negative steps: a settlement gives back the unused part
     * of a reservation */
    apr_snprintf(number, sizeof(number), "%" APR_INT64_T_FMT, delta);
    n = format_command(command, sizeof(command), "INCRBY", key, number);
    apr_snprintf(number, sizeof(number), "%u", ttl);
    format_command(command + n, sizeof(command) - (apr_size_t)n, "EXPIRE", key, number);

    /* a pooled connection may have been closed by the server since (idle
     * timeout, restart): one more try on a fresh one */
    for (attempt = 0; attempt < 2; attempt++) {
        rv = apr_reslist_acquire(store->conns, (void **)&conn);
        if (rv != APR_SUCCESS) {
            apr_atomic_set32(&store->down_until, now + RETRY_AFTER_FAILURE);
            return rv;
        }
        rv = send_all(conn, command, strlen(command));
        if (rv == APR_SUCCESS) {
            rv = read_reply(store, conn, &value);
        }
        if (rv == APR_SUCCESS) {
            rv = read_reply(store, conn, &ignored);
        }
        if (rv == APR_SUCCESS) {
            break;
        }
        apr_reslist_invalidate(store->conns, conn);
        if (rv == APR_EGENERAL) {
            return rv; /* redis refused the command: trying again won't help */
        }
    }
    if (rv != APR_SUCCESS) {
        return rv;
    }
    apr_reslist_release(store->conns, conn);
    /* below 0 only when the window's counter expired between a reservation
     * and its settlement: no request reads that window's key any more */
    *total = value < 0 ? 0 : (apr_uint64_t)value;
    return APR_SUCCESS;
}

oaip_counter_client *oaip_counters_redis_client(apr_pool_t *pchild, server_rec *s,
                                                const oaip_store_spec *spec)
{
    oaip_counter_client *client = apr_pcalloc(pchild, sizeof(*client));
    redis_store *store = apr_pcalloc(pchild, sizeof(*store));
    int threads = 1;
    apr_status_t rv;

    ap_mpm_query(AP_MPMQ_MAX_THREADS, &threads);
    store->spec = spec;
    store->s = s;
    threads = threads > 0 ? threads : 1;
    rv = apr_reslist_create(&store->conns, 0, threads, threads, CONN_TTL, conn_open,
                            conn_close, store, pchild);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s, "cannot set up counter store %s",
                     spec->name);
        return NULL;
    }
    /* a thread waits for a connection at most as long as for an answer */
    apr_reslist_timeout_set(store->conns, IO_TIMEOUT);
    client->name = spec->name;
    client->add = redis_add;
    client->backend = store;
    return client;
}
