/* Counters in a redis server, shared by every httpd that names it.
 *
 * A batch of counters is one exchange with redis, whatever the number of
 * limits: the check of a request's rate limit and budgets, the reservation
 * of its budgets, the settlement after the answer (sent, not waited for).
 * When only the first counter of a batch changes (one rate limit and budget
 * reads; one budget's reservation) the batch is plain INCRBY + EXPIRE and
 * GET commands, the comparison ours. Otherwise it is one script that redis
 * runs atomically (EVALSHA; EVAL when the server does not know it yet, which
 * also makes it known), so that the first limit reached stops the batch
 * and a refused reservation is taken back. Every counter has an expiry, so
 * no key outlives its window.
 *
 * The protocol is hiredis's (stores/redis_conn.h); each process has a few
 * connections, which its threads share with automatic pipelining
 * (stores/redis_pipe.h): a thread takes one that is idle, and joins the
 * queue of one only when all are busy. An idle connection answers in one
 * wait; a queue saves redis work when many requests count at once. */
#include <apr_sha1.h>
#include <apr_strings.h>

#include "mod_openai_proxy.h"
#include "stores/counters.h"
#include "stores/redis_pipe.h"

#include <ap_mpm.h>
#include <apr_atomic.h>

#define IO_TIMEOUT apr_time_from_sec(2)
#define MAX_PIPES 4 /* connections per process */

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
    oaip_redis_pipe *pipes[MAX_PIPES];
    int npipes;
    volatile apr_uint32_t next; /* where the look for an idle pipe starts */
    char sha[2 * APR_SHA1_DIGESTSIZE + 1];
} redis_store;

/* The encoded commands of a batch, grown as they are added. */
typedef struct {
    char *data;
    apr_size_t len;
    int count;
    int failed;
} commands;

static void add_command(commands *cmds, int argc, const char **argv)
{
    char *cmd = NULL, *grown;
    int len = cmds->failed ? -1 : redisFormatCommandArgv(&cmd, argc, argv, NULL);

    grown = len < 0 ? NULL : realloc(cmds->data, cmds->len + (apr_size_t)len);
    if (grown == NULL) {
        cmds->failed = 1;
        redisFreeCommand(cmd);
        return;
    }
    memcpy(grown + cmds->len, cmd, (apr_size_t)len);
    cmds->data = grown;
    cmds->len += (apr_size_t)len;
    cmds->count++;
    redisFreeCommand(cmd);
}

/* INCRBY and EXPIRE of one step. INCRBY takes negative steps: a settlement
 * gives back the unused part of a reservation. Every EXPIRE of a window
 * names the same end, so repeating it is harmless. */
static void add_increment(commands *cmds, const char *key, apr_int64_t delta,
                          apr_uint32_t ttl)
{
    char number[24], seconds[16];
    const char *incr[] = {"INCRBY", key, number};
    const char *expire[] = {"EXPIRE", key, seconds};

    apr_snprintf(number, sizeof(number), "%" APR_INT64_T_FMT, delta);
    apr_snprintf(seconds, sizeof(seconds), "%u", ttl);
    add_command(cmds, 3, incr);
    add_command(cmds, 3, expire);
}

/* An idle pipe if there is one, else the next in turn. */
static oaip_redis_pipe *choose_pipe(redis_store *store)
{
    int start = (int)(apr_atomic_inc32(&store->next) % (apr_uint32_t)store->npipes), i;

    for (i = 0; i < store->npipes; i++) {
        oaip_redis_pipe *pipe = store->pipes[(start + i) % store->npipes];
        if (!oaip_redis_pipe_busy(pipe)) {
            return pipe;
        }
    }
    return store->pipes[start];
}

static apr_status_t call(redis_store *store, commands *cmds, redisReply **replies)
{
    apr_status_t rv = APR_ENOMEM;
    int attempt;

    /* the connection may have been closed by the server since (idle
     * timeout, restart): one more try on a fresh one */
    for (attempt = 0; !cmds->failed && attempt < 2; attempt++) {
        rv = oaip_redis_pipe_call(choose_pipe(store), cmds->data, cmds->len, cmds->count,
                                  replies);
        if (rv == APR_SUCCESS || rv == APR_ECONNREFUSED) {
            break;
        }
    }
    free(cmds->data);
    cmds->data = NULL;
    return rv;
}

static void free_replies(redisReply **replies, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        if (replies[i] != NULL) {
            freeReplyObject(replies[i]);
        }
    }
}

/* A reply that is an error: logged, APR_EGENERAL (redis refused the
 * command: trying again won't help). */
static apr_status_t refused_by_redis(redis_store *store, const redisReply *reply)
{
    if (reply->type != REDIS_REPLY_ERROR) {
        return APR_SUCCESS;
    }
    ap_log_error(APLOG_MARK, APLOG_WARNING, 0, store->target.s,
                 "counter store %s answered: %.200s", store->target.spec->name,
                 reply->str);
    return APR_EGENERAL;
}

/* The value of a counter in a reply: INCRBY's integer, GET's string or
 * nil; below 0 only when the window's counter expired between a
 * reservation and its settlement: no request reads that key any more. */
static apr_uint64_t value_of(const redisReply *reply)
{
    long long v = 0;

    if (reply->type == REDIS_REPLY_INTEGER) {
        v = reply->integer;
    } else if (reply->type == REDIS_REPLY_STRING) {
        v = apr_atoi64(reply->str);
    }
    return v > 0 ? (apr_uint64_t)v : 0;
}

static int above(const oaip_counter_step *step)
{
    return step->ceiling < 0 || step->total > (apr_uint64_t)step->ceiling;
}

/* A settlement, or what a refused reservation gives back: not waited for. */
static apr_status_t send_increments(redis_store *store, const oaip_counter_step *steps,
                                    int n, int sign)
{
    commands cmds = {NULL, 0, 0, 0};
    int i;

    for (i = 0; i < n; i++) {
        if (steps[i].delta != 0) {
            add_increment(&cmds, steps[i].key, sign * steps[i].delta, steps[i].ttl);
        }
    }
    return cmds.count ? call(store, &cmds, NULL) : APR_SUCCESS;
}

/* Only steps[0] changes a counter: INCRBY + EXPIRE (or GET), GET for the
 * rest, in one write; compared here. */
static apr_status_t run_plain(redis_store *store, oaip_counter_step *steps, int n,
                              int flags, int *refused)
{
    commands cmds = {NULL, 0, 0, 0};
    redisReply **replies = calloc((size_t)n + 1, sizeof(*replies));
    apr_status_t rv;
    int i, r;

    if (replies == NULL) {
        return APR_ENOMEM;
    }
    for (i = 0; i < n; i++) {
        const char *get[] = {"GET", steps[i].key};

        if (steps[i].delta != 0) {
            add_increment(&cmds, steps[i].key, steps[i].delta, steps[i].ttl);
        } else {
            add_command(&cmds, 2, get);
        }
    }
    rv = call(store, &cmds, replies);
    for (i = 0, r = 0; rv == APR_SUCCESS && i < n; i++) {
        const redisReply *reply = replies[r];

        r += steps[i].delta != 0 ? 2 : 1;
        if ((rv = refused_by_redis(store, reply)) != APR_SUCCESS ||
            (steps[i].delta != 0 && (rv = refused_by_redis(store, replies[r - 1])))) {
            break;
        }
        steps[i].total = value_of(reply);
        steps[i].done = 1;
        if (*refused < 0 && above(&steps[i])) {
            *refused = i;
        }
    }
    free_replies(replies, cmds.count);
    free(replies);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    if (*refused >= 0) {
        /* the batch stops at the first counter above its ceiling: the
         * reads after it change nothing */
        for (i = *refused + 1; i < n; i++) {
            steps[i].done = 0;
        }
        if ((flags & OAIP_COUNTERS_UNDO_REFUSED) &&
            send_increments(store, steps, *refused + 1, -1) == APR_SUCCESS) {
            for (i = 0; i <= *refused; i++) {
                steps[i].done = 0;
            }
        }
    }
    return APR_SUCCESS;
}

/* The script's answer into the steps. */
static apr_status_t take_answer(redis_store *store, const redisReply *reply,
                                oaip_counter_step *steps, int n, int flags, int *refused)
{
    long long at;
    int i;

    if (refused_by_redis(store, reply) != APR_SUCCESS) {
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
        steps[i].total = value_of(reply->element[i + 1]);
        steps[i].done = !(at && (flags & OAIP_COUNTERS_UNDO_REFUSED));
    }
    *refused = (int)at - 1;
    return APR_SUCCESS;
}

/* EVALSHA, then EVAL when redis does not know the script (a restarted or
 * flushed server). */
static apr_status_t run_script(redis_store *store, oaip_counter_step *steps, int n,
                               int flags, int *refused)
{
    int argc = 4 + 4 * n, i, attempt;
    const char **argv = calloc((size_t)argc, sizeof(*argv));
    char(*numbers)[24] = calloc((size_t)(3 * n + 1), sizeof(*numbers));
    apr_status_t rv = APR_ENOMEM;

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
        commands cmds = {NULL, 0, 0, 0};
        redisReply *reply = NULL;

        argv[0] = attempt == 0 ? "EVALSHA" : "EVAL";
        argv[1] = attempt == 0 ? store->sha : SCRIPT;
        add_command(&cmds, argc, argv);
        if ((rv = call(store, &cmds, &reply)) != APR_SUCCESS) {
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
    int i, plain = 1;

    if (n == 0) {
        return APR_SUCCESS;
    }
    if (flags & OAIP_COUNTERS_NO_REPLY) {
        apr_status_t rv = send_increments(store, steps, n, 1);
        for (i = 0; rv == APR_SUCCESS && i < n; i++) {
            steps[i].done = 1;
        }
        return rv;
    }
    for (i = 1; i < n; i++) {
        plain = plain && steps[i].delta == 0;
    }
    return plain ? run_plain(store, steps, n, flags, refused)
                 : run_script(store, steps, n, flags, refused);
}

static apr_status_t redis_add(oaip_counter_client *c, const char *key, apr_int64_t delta,
                              apr_uint32_t ttl, apr_uint64_t *total)
{
    oaip_counter_step step = {key, delta, ttl, OAIP_COUNTER_NO_CEILING, 0, 0};
    int refused = -1;
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
    const char *err;
    int i, threads = 1;

    store->target.spec = spec;
    store->target.s = s;
    store->target.timeout = IO_TIMEOUT;
    if ((err = oaip_redis_target_init(pchild, &store->target)) != NULL) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, "counter store %s: %s", spec->name,
                     err);
        return NULL;
    }
    ap_mpm_query(AP_MPMQ_MAX_THREADS, &threads);
    store->npipes = threads < 1 ? 1 : threads < MAX_PIPES ? threads : MAX_PIPES;
    for (i = 0; i < store->npipes; i++) {
        if ((store->pipes[i] = oaip_redis_pipe_make(pchild, &store->target)) == NULL) {
            return NULL;
        }
    }
    apr_sha1_init(&sha);
    apr_sha1_update_binary(&sha, (const unsigned char *)SCRIPT, sizeof(SCRIPT) - 1);
    apr_sha1_final(digest, &sha);
    for (i = 0; i < APR_SHA1_DIGESTSIZE; i++) {
        apr_snprintf(store->sha + 2 * i, 3, "%02x", digest[i]);
    }
    client->name = spec->name;
    client->add = redis_add;
    client->add_all = redis_add_all;
    client->backend = store;
    return client;
}
