#include "stores/redis_pipe.h"

#include <apr_atomic.h>
#include <apr_thread_cond.h>
#include <apr_thread_mutex.h>

#include "mod_openai_proxy.h"

#define RETRY_AFTER_FAILURE 1 /* seconds without connection attempts */
#define MAX_OWED 256          /* replies left unread before a batch reads them */

typedef struct call call;

/* What a thread waits on: its own condition, so that the end of a batch
 * wakes the threads whose calls are done and no other (on two cores, every
 * needless wake-up is a context switch). Kept for reuse. */
typedef struct waiter {
    apr_thread_cond_t *cond;
    struct waiter *next_free;
} waiter;

/* One thread's submission, on that thread's stack. */
struct call {
    const char *data;
    apr_size_t len;
    int count;
    redisReply **replies; /* NULL: not waited for */
    apr_status_t rv;
    int done;
    waiter *waiter;
    call *next;
};

struct oaip_redis_pipe {
    const oaip_redis_target *target;
    apr_thread_mutex_t *mutex;
    apr_pool_t *pool;           /* the waiters', under mutex */
    waiter *free_waiters;       /* under mutex */
    call *head, *tail;          /* the queue, under mutex */
    volatile apr_uint32_t busy; /* a leader is sending or reading */
    oaip_redis_conn *conn;      /* the leader's; NULL: to be opened */
    int owed;                   /* the leader's: replies to settlements not read yet */
    apr_uint32_t down_until;    /* seconds since the epoch; the leader's */
};

static apr_status_t pipe_cleanup(void *data)
{
    oaip_redis_pipe *pipe = data;

    if (pipe->conn != NULL) {
        oaip_redis_conn_close(pipe->conn);
        pipe->conn = NULL;
    }
    return APR_SUCCESS;
}

oaip_redis_pipe *oaip_redis_pipe_make(apr_pool_t *pchild, const oaip_redis_target *target)
{
    oaip_redis_pipe *pipe = apr_pcalloc(pchild, sizeof(*pipe));
    apr_status_t rv;

    pipe->target = target;
    rv = apr_thread_mutex_create(&pipe->mutex, APR_THREAD_MUTEX_DEFAULT, pchild);
    if (rv == APR_SUCCESS) {
        rv = apr_pool_create(&pipe->pool, pchild);
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, target->s,
                     "cannot set up counter store %s", target->spec->name);
        return NULL;
    }
    apr_pool_cleanup_register(pchild, pipe, pipe_cleanup, apr_pool_cleanup_null);
    return pipe;
}

/* Warn at most once a second per process about replies nobody waits for. */
static void warn_unwaited(const oaip_redis_target *target, const char *what)
{
    static volatile apr_uint32_t last_warned;
    apr_uint32_t now = (apr_uint32_t)apr_time_sec(apr_time_now());
    apr_uint32_t last = apr_atomic_read32(&last_warned);

    if (last != now && apr_atomic_cas32(&last_warned, now, last) == last) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, target->s,
                     "counter store %s: a settlement not confirmed: %.200s",
                     target->spec->name, what);
    }
}

static apr_status_t ensure_connection(oaip_redis_pipe *pipe)
{
    apr_uint32_t now = (apr_uint32_t)apr_time_sec(apr_time_now());
    apr_status_t rv;

    if (pipe->conn != NULL) {
        return APR_SUCCESS;
    }
    if (pipe->down_until > now) {
        return APR_ECONNREFUSED; /* it failed a moment ago: fail fast */
    }
    rv = oaip_redis_conn_open(&pipe->conn, pipe->target);
    if (rv != APR_SUCCESS) {
        pipe->conn = NULL;
        pipe->down_until = now + RETRY_AFTER_FAILURE;
    }
    return rv;
}

static void drop_connection(oaip_redis_pipe *pipe)
{
    if (pipe->owed > 0) {
        warn_unwaited(pipe->target, "the connection closed before the replies came");
    }
    oaip_redis_conn_close(pipe->conn);
    pipe->conn = NULL;
    pipe->owed = 0;
}

/* Reads the replies owed to settlements sent before: an error among them
 * is logged. */
static apr_status_t read_owed(oaip_redis_pipe *pipe)
{
    while (pipe->owed > 0) {
        redisReply *reply;
        apr_status_t rv = oaip_redis_conn_reply(pipe->conn, &reply);

        if (rv != APR_SUCCESS) {
            return rv;
        }
        pipe->owed--;
        if (reply->type == REDIS_REPLY_ERROR) {
            warn_unwaited(pipe->target, reply->str);
        }
        freeReplyObject(reply);
    }
    return APR_SUCCESS;
}

/* Marks `batch` done with `rv` where not done yet, and wakes the waiters. */
static void finish(oaip_redis_pipe *pipe, call *batch, apr_status_t rv)
{
    call *c;

    apr_thread_mutex_lock(pipe->mutex);
    for (c = batch; c != NULL; c = c->next) {
        if (!c->done) {
            c->rv = rv;
            c->done = 1;
            apr_thread_cond_signal(c->waiter->cond);
        }
    }
    apr_thread_mutex_unlock(pipe->mutex);
}

/* A call of a batch as the leader knows it: once a call that is not waited
 * for is written, its thread goes on and its call (on that thread's stack)
 * is gone, so the leader walks these instead of the calls' links. */
typedef struct {
    call *waiting; /* NULL: not waited for */
    int count;
    apr_status_t rv;
} part;

/* Reads the batch's replies in order: handed over to the calls that wait
 * for them, read and dropped for the others. */
static void read_replies(oaip_redis_pipe *pipe, part *parts, int n)
{
    /* the replies owed to earlier settlements come first, usually in the
     * same read as these */
    apr_status_t rv = read_owed(pipe);
    int j, i;

    for (j = 0; j < n; j++) {
        for (i = 0; rv == APR_SUCCESS && i < parts[j].count; i++) {
            redisReply *reply = NULL;

            rv = oaip_redis_conn_reply(pipe->conn, &reply);
            if (rv != APR_SUCCESS) {
                break;
            }
            if (parts[j].waiting != NULL) {
                parts[j].waiting->replies[i] = reply;
                continue;
            }
            if (reply->type == REDIS_REPLY_ERROR) {
                warn_unwaited(pipe->target, reply->str);
            }
            freeReplyObject(reply);
        }
        if (rv != APR_SUCCESS && parts[j].waiting != NULL) {
            while (i-- > 0) { /* a call has all its replies or none */
                freeReplyObject(parts[j].waiting->replies[i]);
                parts[j].waiting->replies[i] = NULL;
            }
        }
        if (rv != APR_SUCCESS && parts[j].waiting == NULL) {
            warn_unwaited(pipe->target, "no reply");
        }
        parts[j].rv = rv;
    }
    if (rv != APR_SUCCESS) {
        drop_connection(pipe);
    }
}

static int size_owed(const part *parts, int n)
{
    int j, count = 0;

    for (j = 0; j < n; j++) {
        count += parts[j].count;
    }
    return count;
}

/* The leader, without the mutex: writes the batch at once, then reads its
 * replies. */
static void run_batch(oaip_redis_pipe *pipe, call *batch)
{
    apr_size_t size = 0, at = 0;
    int n = 0, unwaited = 0, j;
    part *parts;
    char *out;
    call *c;
    apr_status_t rv;

    for (c = batch; c != NULL; c = c->next) {
        size += c->len;
        n++;
    }
    parts = calloc((size_t)n, sizeof(*parts));
    out = malloc(size);
    if (parts == NULL || out == NULL) {
        free(parts);
        free(out);
        finish(pipe, batch, APR_ENOMEM);
        return;
    }
    for (c = batch, j = 0; c != NULL; c = c->next, j++) {
        memcpy(out + at, c->data, c->len);
        at += c->len;
        parts[j].waiting = c->replies != NULL ? c : NULL;
        parts[j].count = c->count;
        unwaited += c->replies == NULL;
    }
    rv = ensure_connection(pipe);
    if (rv == APR_SUCCESS) {
        rv = oaip_redis_conn_send(pipe->conn, out, size);
        if (rv != APR_SUCCESS) {
            drop_connection(pipe);
        }
    }
    free(out);
    if (rv != APR_SUCCESS) {
        free(parts);
        finish(pipe, batch, rv); /* nobody went on yet: the links hold */
        return;
    }
    if (unwaited == n && pipe->owed + size_owed(parts, n) <= MAX_OWED) {
        /* only settlements: their replies are read by the next batch that
         * waits for its own, so that nobody waits for these */
        pipe->owed += size_owed(parts, n);
        free(parts);
        finish(pipe, batch, APR_SUCCESS);
        return;
    }
    if (unwaited > 0) {
        /* written: the threads that do not wait for replies go on */
        apr_thread_mutex_lock(pipe->mutex);
        for (c = batch; c != NULL; c = c->next) {
            if (c->replies == NULL) {
                c->rv = APR_SUCCESS;
                c->done = 1;
                apr_thread_cond_signal(c->waiter->cond);
            }
        }
        apr_thread_mutex_unlock(pipe->mutex);
    }
    read_replies(pipe, parts, n);
    apr_thread_mutex_lock(pipe->mutex);
    for (j = 0; j < n; j++) {
        if (parts[j].waiting != NULL) {
            parts[j].waiting->rv = parts[j].rv;
            parts[j].waiting->done = 1;
            apr_thread_cond_signal(parts[j].waiting->waiter->cond);
        }
    }
    apr_thread_mutex_unlock(pipe->mutex);
    free(parts);
}

int oaip_redis_pipe_busy(oaip_redis_pipe *pipe)
{
    return apr_atomic_read32(&pipe->busy) != 0;
}

/* Under mutex: a waiter of the free list, or a new one. */
static waiter *take_waiter(oaip_redis_pipe *pipe)
{
    waiter *w = pipe->free_waiters;

    if (w != NULL) {
        pipe->free_waiters = w->next_free;
        return w;
    }
    w = apr_pcalloc(pipe->pool, sizeof(*w));
    return apr_thread_cond_create(&w->cond, pipe->pool) == APR_SUCCESS ? w : NULL;
}

apr_status_t oaip_redis_pipe_call(oaip_redis_pipe *pipe, const char *data, apr_size_t len,
                                  int count, redisReply **replies)
{
    call me;

    memset(&me, 0, sizeof(me));
    me.data = data;
    me.len = len;
    me.count = count;
    me.replies = replies;
    apr_thread_mutex_lock(pipe->mutex);
    if ((me.waiter = take_waiter(pipe)) == NULL) {
        apr_thread_mutex_unlock(pipe->mutex);
        return APR_ENOMEM;
    }
    if (pipe->tail != NULL) {
        pipe->tail->next = &me;
    } else {
        pipe->head = &me;
    }
    pipe->tail = &me;
    while (!me.done) {
        if (!pipe->busy) {
            call *batch = pipe->head; /* me among them */

            pipe->head = pipe->tail = NULL;
            apr_atomic_set32(&pipe->busy, 1);
            apr_thread_mutex_unlock(pipe->mutex);
            run_batch(pipe, batch);
            apr_thread_mutex_lock(pipe->mutex);
            apr_atomic_set32(&pipe->busy, 0);
            if (pipe->head != NULL) {
                /* the first thread that queued meanwhile leads the next */
                apr_thread_cond_signal(pipe->head->waiter->cond);
            }
        } else {
            apr_thread_cond_wait(me.waiter->cond, pipe->mutex);
        }
    }
    me.waiter->next_free = pipe->free_waiters;
    pipe->free_waiters = me.waiter;
    apr_thread_mutex_unlock(pipe->mutex);
    return me.rv;
}
