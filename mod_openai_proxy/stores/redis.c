/* Counters in a redis server, shared by every httpd that names it.
 *
 * A batch that the request waits for (the check of its rate limits and
 * budgets, the reservation of its budgets) is one script, run atomically by
 * redis: one round trip whatever the number of limits (EVALSHA; EVAL when
 * the server does not know the script yet, which also makes it known). A
 * settlement is sent as plain INCRBY + EXPIRE commands without waiting: the
 * next user of the connection reads their replies before its own, from the
 * same read. Every counter has an expiry, so no key outlives its window.
 *
 * The protocol is hiredis's (stores/redis_conn.h); connections are pooled
 * per process (apr_reslist), one per thread at most. */
#include <ap_mpm.h>
#include <apr_atomic.h>
#include <apr_reslist.h>
#include <apr_sha1.h>
#include <apr_strings.h>

#include "mod_openai_proxy.h"
#include "stores/counters.h"
#include "stores/redis_conn.h"

#define IO_TIMEOUT apr_time_from_sec(2)
#define RETRY_AFTER_FAILURE 1 /* seconds without connection attempts */
#define CONN_TTL apr_time_from_sec(60)
#define MAX_PENDING 64 /* replies a connection may owe before they are read */

/* KEYS: the counters; ARGV[1]: "1" to take the batch back when refused;
 * then, per key, its delta, ttl and ceiling. Returns the 1-based index of
 * the refused counter (0: none), then the new value of each counter up to
 * it. Lua's numbers are doubles: exact for every value a counter holds. */
static const char SCRIPT[] =
    "local totals = {0}\n"
    "for i, key in ipairs(KEYS) do\n"
    "  local a = 3 * i - 1\n"
    "  local delta = tonumber(ARGV[a])\n"
    "  local total\n"
    "  if delta == 0 then\n"
    "    total = tonumber(redis.call('GET', key) or '0') or 0\n"
    "  else\n"
    "    total = redis.call('INCRBY', key, ARGV[a])\n"
    "    redis.call('EXPIRE', key, ARGV[a + 1])\n"
    "  end\n"
    "  if total < 0 then total = 0 end\n"
    "  totals[i + 1] = total\n"
    "  if total > tonumber(ARGV[a + 2]) then\n"
    "    totals[1] = i\n"
    "    if ARGV[1] == '1' then\n"
    "      for j = 1, i do\n"
    "        local d = tonumber(ARGV[3 * j - 1])\n"
    "        if d ~= 0 then redis.call('INCRBY', KEYS[j], tostring(-d)) end\n"
    "      end\n"
    "    end\n"
    "    return totals\n"
    "  end\n"
    "end\n"
    "return totals\n";

typedef struct {
    oaip_redis_target target;
    apr_reslist_t *conns;
    volatile apr_uint32_t down_until; /* seconds since the epoch */
    char sha[2 * APR_SHA1_DIGESTSIZE + 1];
} redis_store;

/* What a batch sends: the argument vectors of its commands. */
typedef struct {
    const char **argv;
    size_t *lens;
    char (*numbers)[24];
} batch_args;

static apr_status_t conn_close(void *resource, void *params, apr_pool_t *pool)
{
    (void)params;
    (void)pool;
    oaip_redis_conn_close(resource);
    return APR_SUCCESS;
}

static apr_status_t conn_open(void **resource, void *params, apr_pool_t *pool)
{
    redis_store *store = params;

    (void)pool;
    return oaip_redis_conn_open((oaip_redis_conn **)resource, &store->target);
}

/* Warn at most once a second per process about replies nobody waited for. */
static void warn_unwaited(redis_store *store, const char *what)
{
    static volatile apr_uint32_t last_warned;
    apr_uint32_t now = (apr_uint32_t)apr_time_sec(apr_time_now());
    apr_uint32_t last = apr_atomic_read32(&last_warned);

    if (last != now && apr_atomic_cas32(&last_warned, now, last) == last) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, store->target.s,
                     "counter store %s refused a settlement: %.200s",
                     store->target.spec->name, what);
    }
}

/* Reads the replies the connection owes to settlements sent before. */
static apr_status_t read_pending(redis_store *store, oaip_redis_conn *conn)
{
    int *pending = oaip_redis_conn_pending(conn);

    while (*pending > 0) {
        redisReply *reply;
        apr_status_t rv = oaip_redis_conn_reply(conn, &reply);

        if (rv != APR_SUCCESS) {
            return rv;
        }
        (*pending)--;
        if (reply->type == REDIS_REPLY_ERROR) {
            warn_unwaited(store, reply->str);
        }
        freeReplyObject(reply);
    }
    return APR_SUCCESS;
}

static char *format(int argc, const char **argv, const size_t *lens, int *len)
{
    char *cmd = NULL;

    *len = redisFormatCommandArgv(&cmd, argc, argv, lens);
    return *len < 0 ? NULL : cmd;
}

/* A settlement: INCRBY and EXPIRE per step, sent, not waited for. */
static apr_status_t send_unwaited(redis_store *store, oaip_redis_conn *conn,
                                  const oaip_counter_step *steps, int n)
{
    char *out = NULL;
    size_t size = 0;
    apr_status_t rv;
    int i;

    if (*oaip_redis_conn_pending(conn) + 2 * n > MAX_PENDING &&
        (rv = read_pending(store, conn)) != APR_SUCCESS) {
        return rv;
    }
    for (i = 0; i < n; i++) {
        char delta[24], ttl[16];
        const char *incr[] = {"INCRBY", steps[i].key, delta};
        const char *expire[] = {"EXPIRE", steps[i].key, ttl};
        char *a, *b, *grown;
        int la, lb;

        /* INCRBY takes negative steps: a settlement gives back the unused
         * part of a reservation. Every EXPIRE of a window names the same
         * end, so repeating it is harmless. */
        apr_snprintf(delta, sizeof(delta), "%" APR_INT64_T_FMT, steps[i].delta);
        apr_snprintf(ttl, sizeof(ttl), "%u", steps[i].ttl);
        a = format(3, incr, NULL, &la);
        b = format(3, expire, NULL, &lb);
        grown = a && b ? realloc(out, size + (size_t)la + (size_t)lb) : NULL;
        if (grown == NULL) {
            free(a);
            free(b);
            free(out);
            return APR_ENOMEM;
        }
        out = grown;
        memcpy(out + size, a, (size_t)la);
        memcpy(out + size + la, b, (size_t)lb);
        size += (size_t)la + (size_t)lb;
        free(a);
        free(b);
    }
    rv = oaip_redis_conn_send(conn, out, size);
    free(out);
    if (rv == APR_SUCCESS) {
        *oaip_redis_conn_pending(conn) += 2 * n;
    }
    return rv;
}

/* The script's answer into the steps. APR_EGENERAL: not the answer of the
 * script (the connection stays usable). */
static apr_status_t take_answer(redis_store *store, const redisReply *reply,
                                oaip_counter_step *steps, int n, int flags, int *refused)
{
    long long at;
    int i;

    if (reply->type == REDIS_REPLY_ERROR) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, store->target.s,
                     "counter store %s answered: %.200s", store->target.spec->name,
                     reply->str);
        return APR_EGENERAL;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER ||
        (at = reply->element[0]->integer) < 0 || at > n ||
        reply->elements != (size_t)(at ? at : n) + 1) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, store->target.s,
                     "counter store %s: unexpected answer to the counting script",
                     store->target.spec->name);
        return APR_EGENERAL;
    }
    for (i = 0; i + 1 < (int)reply->elements; i++) {
        const redisReply *e = reply->element[i + 1];
        steps[i].total = e->type == REDIS_REPLY_INTEGER && e->integer > 0
                             ? (apr_uint64_t)e->integer
                             : 0;
        steps[i].done = !(at && (flags & OAIP_COUNTERS_UNDO_REFUSED));
    }
    *refused = (int)at - 1;
    return APR_SUCCESS;
}

/* EVALSHA, then EVAL when redis does not know the script (a restarted or
 * flushed server). *transport_ok is 0 when the connection is unusable. */
static apr_status_t run_script(redis_store *store, oaip_redis_conn *conn,
                               oaip_counter_step *steps, int n, int flags, int *refused,
                               int *transport_ok)
{
    int argc = 4 + 4 * n, i, len, attempt;
    const char **argv = calloc((size_t)argc, sizeof(*argv));
    char(*numbers)[24] = calloc((size_t)(3 * n + 1), sizeof(*numbers));
    apr_status_t rv = APR_ENOMEM;

    *transport_ok = 1;
    if (argv == NULL || numbers == NULL) {
        goto done;
    }
    apr_snprintf(numbers[3 * n], sizeof(numbers[0]), "%d", n);
    argv[2] = numbers[3 * n];
    argv[3 + n] = flags & OAIP_COUNTERS_UNDO_REFUSED ? "1" : "0";
    for (i = 0; i < n; i++) {
        argv[3 + i] = steps[i].key;
        apr_snprintf(numbers[3 * i], sizeof(numbers[0]), "%" APR_INT64_T_FMT,
                     steps[i].delta);
        apr_snprintf(numbers[3 * i + 1], sizeof(numbers[0]), "%u", steps[i].ttl);
        apr_snprintf(numbers[3 * i + 2], sizeof(numbers[0]), "%" APR_INT64_T_FMT,
                     steps[i].ceiling);
        argv[4 + n + 3 * i] = numbers[3 * i];
        argv[5 + n + 3 * i] = numbers[3 * i + 1];
        argv[6 + n + 3 * i] = numbers[3 * i + 2];
    }
    for (attempt = 0; attempt < 2; attempt++) {
        redisReply *reply;
        char *cmd;

        argv[0] = attempt == 0 ? "EVALSHA" : "EVAL";
        argv[1] = attempt == 0 ? store->sha : SCRIPT;
        if ((cmd = format(argc, argv, NULL, &len)) == NULL) {
            rv = APR_ENOMEM;
            break;
        }
        rv = oaip_redis_conn_send(conn, cmd, (apr_size_t)len);
        free(cmd);
        /* the settlements' replies come first, usually in the same read */
        if (rv == APR_SUCCESS) {
            rv = read_pending(store, conn);
        }
        if (rv == APR_SUCCESS) {
            rv = oaip_redis_conn_reply(conn, &reply);
        }
        if (rv != APR_SUCCESS) {
            *transport_ok = 0;
            break;
        }
        if (attempt == 0 && reply->type == REDIS_REPLY_ERROR &&
            strncmp(reply->str, "NOSCRIPT", 8) == 0) {
            freeReplyObject(reply);
            continue;
        }
        rv = take_answer(store, reply, steps, n, flags, refused);
        freeReplyObject(reply);
        break;
    }
done:
    free(argv);
    free(numbers);
    return rv;
}

static apr_status_t redis_add_all(oaip_counter_client *c, oaip_counter_step *steps, int n,
                                  int flags, int *refused)
{
    redis_store *store = c->backend;
    apr_uint32_t now = (apr_uint32_t)apr_time_sec(apr_time_now());
    apr_status_t rv = APR_EGENERAL;
    oaip_redis_conn *conn;
    int attempt, transport_ok;

    if (n == 0) {
        return APR_SUCCESS;
    }
    if (apr_atomic_read32(&store->down_until) > now) {
        return APR_ECONNREFUSED; /* it failed a moment ago: fail fast */
    }
    /* a pooled connection may have been closed by the server since (idle
     * timeout, restart): one more try on a fresh one */
    for (attempt = 0; attempt < 2; attempt++) {
        rv = apr_reslist_acquire(store->conns, (void **)&conn);
        if (rv != APR_SUCCESS) {
            apr_atomic_set32(&store->down_until, now + RETRY_AFTER_FAILURE);
            return rv;
        }
        if (flags & OAIP_COUNTERS_NO_REPLY) {
            rv = send_unwaited(store, conn, steps, n);
            transport_ok = rv == APR_SUCCESS;
        } else {
            rv = run_script(store, conn, steps, n, flags, refused, &transport_ok);
        }
        if (transport_ok) {
            apr_reslist_release(store->conns, conn);
            return rv; /* done, or refused by redis: trying again won't help */
        }
        apr_reslist_invalidate(store->conns, conn);
    }
    return rv;
}

static apr_status_t redis_add(oaip_counter_client *c, const char *key, apr_int64_t delta,
                              apr_uint32_t ttl, apr_uint64_t *total)
{
    oaip_counter_step step = {key, delta, ttl, OAIP_COUNTER_NO_CEILING, 0, 0};
    int refused;
    apr_status_t rv = redis_add_all(c, &step, 1, 0, &refused);

    *total = step.total;
    return rv;
}

oaip_counter_client *oaip_counters_redis_client(apr_pool_t *pchild, server_rec *s,
                                                const oaip_store_spec *spec)
{
    oaip_counter_client *client = apr_pcalloc(pchild, sizeof(*client));
    redis_store *store = apr_pcalloc(pchild, sizeof(*store));
    unsigned char digest[APR_SHA1_DIGESTSIZE];
    apr_sha1_ctx_t sha;
    int threads = 1, i;
    const char *err;
    apr_status_t rv;

    store->target.spec = spec;
    store->target.s = s;
    store->target.timeout = IO_TIMEOUT;
    if ((err = oaip_redis_target_init(pchild, &store->target)) != NULL) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, "counter store %s: %s", spec->name,
                     err);
        return NULL;
    }
    apr_sha1_init(&sha);
    apr_sha1_update_binary(&sha, (const unsigned char *)SCRIPT, sizeof(SCRIPT) - 1);
    apr_sha1_final(digest, &sha);
    for (i = 0; i < APR_SHA1_DIGESTSIZE; i++) {
        apr_snprintf(store->sha + 2 * i, 3, "%02x", digest[i]);
    }
    ap_mpm_query(AP_MPMQ_MAX_THREADS, &threads);
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
    client->add_all = redis_add_all;
    client->backend = store;
    return client;
}
