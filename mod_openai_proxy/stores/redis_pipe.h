/* A connection to a redis server, shared by a process's threads with
 * automatic pipelining: while one thread's commands are on their way, the
 * commands other threads submit wait in a queue, and go out together in the
 * next write, their replies read together. Under load redis then reads,
 * runs and answers the commands of several requests at once, which costs it
 * about what one request's cost (on a small machine, the read and write of
 * each exchange cost redis more than the counting itself). Without load it
 * is one exchange per call, as before.
 *
 * The thread that finds the connection idle takes the whole queue along
 * (the leader); the others wait until their replies are in. */
#ifndef OAIP_REDIS_PIPE_H
#define OAIP_REDIS_PIPE_H

#include "stores/redis_conn.h"

typedef struct oaip_redis_pipe oaip_redis_pipe;

/* NULL when the mutex could not be made (logged). */
oaip_redis_pipe *oaip_redis_pipe_make(apr_pool_t *pchild,
                                      const oaip_redis_target *target);

/* Sends `len` bytes of encoded commands that `count` replies answer. With
 * `replies` (count slots, each to be freed with freeReplyObject by the
 * caller) it returns once they are in; without, once the commands are
 * written (their replies are read by the pipe; an error among them is
 * logged). A transport failure closes the connection (the next call opens
 * another) and fails every call that shared its write; a connection that
 * could not be opened is not tried again for a second (calls fail fast). */
/* Whether a thread is sending or reading on the pipe now: a hint, for
 * choosing among pipes. */
int oaip_redis_pipe_busy(oaip_redis_pipe *pipe);

apr_status_t oaip_redis_pipe_call(oaip_redis_pipe *pipe, const char *data, apr_size_t len,
                                  int count, redisReply **replies);

#endif
