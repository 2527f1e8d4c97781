#include "engine/transfer.h"

#include <errno.h>
#include <poll.h>

/* One transfer has one connection, but libcurl may race two addresses
 * (happy eyeballs) and its threaded resolver has a socket of its own. */
#define MAX_SOCKETS 6

typedef struct {
    curl_socket_t fd;
    int what; /* CURL_POLL_IN, _OUT, _INOUT */
} watched_socket;

struct oaip_transfer {
    oaip_curl_handle *h;
    int client_fd;
    watched_socket sockets[MAX_SOCKETS];
    int n_sockets;
    apr_time_t curl_due; /* libcurl's timer; 0: none */
    int done;
    CURLcode result;
};

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    oaip_transfer *t = userp;
    int i;

    (void)easy;
    (void)socketp;
    for (i = 0; i < t->n_sockets && t->sockets[i].fd != fd; i++) {
    }
    if (what == CURL_POLL_REMOVE) {
        if (i < t->n_sockets) {
            t->sockets[i] = t->sockets[--t->n_sockets];
        }
        return 0;
    }
    if (i == t->n_sockets) {
        if (t->n_sockets == MAX_SOCKETS) {
            return -1; /* libcurl fails the transfer */
        }
        t->n_sockets++;
    }
    t->sockets[i].fd = fd;
    t->sockets[i].what = what;
    return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    oaip_transfer *t = userp;

    (void)multi;
    t->curl_due = timeout_ms < 0 ? 0 : apr_time_now() + apr_time_from_msec(timeout_ms);
    return 0;
}

static void collect_done(oaip_transfer *t)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(t->h->multi, &left)) != NULL) {
        if (msg->msg == CURLMSG_DONE) {
            t->done = 1;
            t->result = msg->data.result;
        }
    }
}

static void act(oaip_transfer *t, curl_socket_t fd, int mask)
{
    int running;

    if (curl_multi_socket_action(t->h->multi, fd, mask, &running) != CURLM_OK) {
        t->done = 1;
        t->result = CURLE_OUT_OF_MEMORY;
        return;
    }
    collect_done(t);
}

/* libcurl's timer is due: run it now rather than after a poll of 0 ms */
static int run_due_timer(oaip_transfer *t, apr_time_t now)
{
    if (t->curl_due == 0 || t->curl_due > now) {
        return 0;
    }
    t->curl_due = 0;
    act(t, CURL_SOCKET_TIMEOUT, 0);
    return 1;
}

oaip_transfer *oaip_transfer_start(apr_pool_t *p, oaip_curl_handle *h, int client_fd,
                                   CURLcode *result)
{
    oaip_transfer *t = apr_pcalloc(p, sizeof(*t));

    t->h = h;
    t->client_fd = client_fd;
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, t);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, t);
    if (curl_multi_add_handle(h->multi, h->easy) != CURLM_OK) {
        *result = CURLE_FAILED_INIT;
        return NULL;
    }
    run_due_timer(t, apr_time_now()); /* starts resolving or connecting */
    return t;
}

/* Milliseconds from `now` to the earlier of two deadlines (0: none),
 * rounded up so that a wake-up is never early; -1: no deadline. */
static int wait_ms(apr_time_t now, apr_time_t a, apr_time_t b)
{
    apr_time_t due = (a == 0 || (b != 0 && b < a)) ? b : a;

    if (due == 0) {
        return -1;
    }
    if (due <= now) {
        return 0;
    }
    return (int)((due - now + 999) / 1000);
}

/* What libcurl is told is ready. An error or hang-up on the socket is
 * passed as the readiness libcurl waited for, so that it reads or writes
 * and meets the error itself (its "error" bit alone fails the transfer
 * before it reads what the upstream sent before closing). */
static int ready_mask(short revents, short events)
{
    if (revents & (POLLERR | POLLHUP | POLLNVAL)) {
        revents |= events;
    }
    return ((revents & POLLIN) ? CURL_CSELECT_IN : 0) |
           ((revents & POLLOUT) ? CURL_CSELECT_OUT : 0);
}

oaip_transfer_event oaip_transfer_wait(oaip_transfer *t, apr_time_t until,
                                       CURLcode *result)
{
    struct pollfd fds[MAX_SOCKETS + 1];
    curl_socket_t polled[MAX_SOCKETS];
    int n, i, ready, acted;
    apr_time_t now;

    for (;;) {
        if (t->done) {
            *result = t->result;
            return OAIP_TRANSFER_DONE;
        }
        now = apr_time_now();
        if (run_due_timer(t, now)) {
            if (t->done) {
                continue;
            }
            return OAIP_TRANSFER_READY;
        }
        if (until != 0 && until <= now) {
            return OAIP_TRANSFER_DEADLINE;
        }
        for (n = 0; n < t->n_sockets; n++) {
            polled[n] = t->sockets[n].fd;
            fds[n].fd = t->sockets[n].fd;
            fds[n].events = (short)(((t->sockets[n].what & CURL_POLL_IN) ? POLLIN : 0) |
                                    ((t->sockets[n].what & CURL_POLL_OUT) ? POLLOUT : 0));
            fds[n].revents = 0;
        }
        if (t->client_fd >= 0) {
            /* a hang-up only: a pipelined request's bytes wake nobody */
            fds[n].fd = t->client_fd;
            fds[n].events = POLLRDHUP;
            fds[n].revents = 0;
        }
        ready = poll(fds, (nfds_t)(n + (t->client_fd >= 0)),
                     wait_ms(now, t->curl_due, until));
        if (ready < 0 && errno != EINTR) {
            *result = CURLE_RECV_ERROR;
            return OAIP_TRANSFER_DONE;
        }
        if (ready <= 0) {
            continue; /* a timer or the deadline: looked at above */
        }
        if (t->client_fd >= 0 && fds[n].revents != 0) {
            return OAIP_TRANSFER_CLIENT_HUP;
        }
        acted = 0;
        for (i = 0; i < n && !t->done; i++) {
            if (fds[i].revents != 0) {
                act(t, polled[i], ready_mask(fds[i].revents, fds[i].events));
                acted = 1;
            }
        }
        if (t->done) {
            *result = t->result;
            return OAIP_TRANSFER_DONE;
        }
        if (acted) {
            return OAIP_TRANSFER_READY;
        }
    }
}

void oaip_transfer_end(oaip_transfer *t)
{
    curl_multi_remove_handle(t->h->multi, t->h->easy);
    t->n_sockets = 0;
}
