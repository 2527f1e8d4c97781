/*
 * The long-stream benchmark's upstream: an OpenAI-shaped Chat Completions
 * stream server, one epoll loop, nonblocking sockets, so that thousands of
 * concurrent streams of a few chunks per second cost it little CPU.
 *
 *   upstream -f PORT_FILE [-p PORT] [-k CHUNKS] [-d DELAY_MS] [-b BACKLOG]
 *
 * Every request (whatever its method and path) gets a 200 text/event-stream
 * answer, chunked, with CHUNKS chat.completion.chunk events DELAY_MS apart,
 * the first one at once. Each carries "bench_sent_us": its CLOCK_REALTIME
 * in microseconds, read just before the write, so a client on this machine
 * can compute each chunk's delay. After the last one, in the same write: a
 * stop chunk, a usage chunk when the request body asks for it
 * ("include_usage":true, which mod_openai_proxy adds), data: [DONE] and the
 * chunked terminator. Connections are kept alive unless the request says
 * Connection: close (the proxies reuse their upstream connections).
 *
 * The due chunks are a FIFO: every stream is re-queued DELAY_MS after its
 * last due time, which is never earlier than any queued due time, so the
 * queue stays sorted without a heap.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define IN_MAX 16384

typedef struct conn {
    int fd;
    int streaming;   /* answering: on the due queue */
    int close_after; /* Connection: close */
    int want_usage;
    int sent;                 /* stamped chunks sent */
    long long due;            /* monotonic µs of the next chunk */
    struct conn *prev, *next; /* due queue */
    char in[IN_MAX];
    size_t in_len;
    char *out; /* bytes the socket did not take yet */
    size_t out_len, out_cap;
} conn;

static int chunks = 40;
static long long delay_us = 250000;
static conn *q_head, *q_tail;
static int ep;
static volatile sig_atomic_t stop;
static long long total_chunks, total_streams;

static long long now_us(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void q_push(conn *c)
{
    c->next = NULL;
    c->prev = q_tail;
    if (q_tail) {
        q_tail->next = c;
    } else {
        q_head = c;
    }
    q_tail = c;
}

static void q_remove(conn *c)
{
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        q_head = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    } else {
        q_tail = c->prev;
    }
    c->prev = c->next = NULL;
}

static void close_conn(conn *c)
{
    if (c->streaming) {
        q_remove(c);
    }
    close(c->fd);
    free(c->out);
    free(c);
}

static void want_out(conn *c, int on)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0),
                             .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* writes what is pending then buf; keeps what the socket does not take.
 * Returns -1 when the connection is dead. */
static int send_bytes(conn *c, const char *buf, size_t len)
{
    if (c->out_len) { /* keep the order: append behind what waits */
        if (c->out_len + len > c->out_cap) {
            c->out_cap = (c->out_len + len) * 2;
            c->out = realloc(c->out, c->out_cap);
            if (!c->out) {
                return -1;
            }
        }
        memcpy(c->out + c->out_len, buf, len);
        c->out_len += len;
        return 0;
    }
    while (len) {
        ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN) {
                return -1;
            }
            c->out_cap = len * 2;
            c->out = realloc(c->out, c->out_cap);
            if (!c->out) {
                return -1;
            }
            memcpy(c->out, buf, len);
            c->out_len = len;
            want_out(c, 1);
            return 0;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int flush_out(conn *c)
{
    size_t off = 0;
    while (off < c->out_len) {
        ssize_t n = send(c->fd, c->out + off, c->out_len - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN) {
                return -1;
            }
            break;
        }
        off += (size_t)n;
    }
    memmove(c->out, c->out + off, c->out_len - off);
    c->out_len -= off;
    if (!c->out_len) {
        want_out(c, 0);
        if (!c->streaming && c->close_after) {
            return -1; /* answered, and the client asked for close */
        }
    }
    return 0;
}

/* appends one HTTP chunk holding one SSE event "data: JSON\n\n" */
static size_t add_event(char *dst, const char *json)
{
    size_t len = strlen(json) + 8; /* "data: " + json + "\n\n" */
    return (size_t)sprintf(dst, "%zx\r\ndata: %s\n\n\r\n", len, json);
}

#define HEAD_JSON                                                                        \
    "\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\","                    \
    "\"created\":1741569952,\"model\":\"gpt-4o-mini-2024-07-18\""

static int send_chunk(conn *c)
{
    char json[512], buf[2048];
    size_t len = 0;
    long long sent = now_us(CLOCK_REALTIME);

    c->sent++;
    snprintf(json, sizeof(json),
             "{" HEAD_JSON
             ",\"bench_sent_us\":%lld,\"choices\":[{\"index\":0,\"delta\":{%s"
             "\"content\":\"token%d \"},\"logprobs\":null,\"finish_reason\":null}]}",
             sent, c->sent == 1 ? "\"role\":\"assistant\"," : "", c->sent);
    len += add_event(buf + len, json);
    if (c->sent == chunks) {
        len +=
            add_event(buf + len, "{" HEAD_JSON ",\"choices\":[{\"index\":0,\"delta\":{},"
                                 "\"logprobs\":null,\"finish_reason\":\"stop\"}]}");
        if (c->want_usage) {
            snprintf(json, sizeof(json),
                     "{" HEAD_JSON ",\"choices\":[],\"usage\":{\"prompt_tokens\":9,"
                     "\"completion_tokens\":%d,\"total_tokens\":%d}}",
                     chunks, chunks + 9);
            len += add_event(buf + len, json);
        }
        len += add_event(buf + len, "[DONE]");
        memcpy(buf + len, "0\r\n\r\n", 5);
        len += 5;
    }
    total_chunks++;
    return send_bytes(c, buf, len);
}

static const char *find_header(const char *head, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':') {
            const char *v = p + 3 + n;
            while (*v == ' ') {
                v++;
            }
            return v;
        }
    }
    return NULL;
}

/* a whole request in c->in? then answer it. Returns -1 to close. */
static int try_request(conn *c)
{
    char *end, *body;
    const char *v;
    size_t head_len, body_len;
    int chunked;

    c->in[c->in_len] = 0;
    end = strstr(c->in, "\r\n\r\n");
    if (!end) {
        return c->in_len >= IN_MAX - 1 ? -1 : 0;
    }
    *end = 0; /* the headers as one string */
    head_len = (size_t)(end - c->in) + 4;
    body = c->in + head_len;
    body_len = c->in_len - head_len;
    v = find_header(c->in, "Transfer-Encoding");
    chunked = v && strncasecmp(v, "chunked", 7) == 0;
    if (chunked) {
        if (!memmem(body, body_len, "0\r\n\r\n", 5)) {
            *end = '\r';
            return c->in_len >= IN_MAX - 1 ? -1 : 0;
        }
    } else {
        v = find_header(c->in, "Content-Length");
        if (v && body_len < (size_t)atol(v)) {
            *end = '\r';
            return c->in_len >= IN_MAX - 1 ? -1 : 0;
        }
    }
    v = find_header(c->in, "Connection");
    c->close_after = v && strncasecmp(v, "close", 5) == 0;
    c->want_usage = memmem(body, body_len, "\"include_usage\":true", 20) ||
                    memmem(body, body_len, "\"include_usage\": true", 21);
    c->in_len = 0; /* one request at a time; nobody pipelines here */
    static const char head[] =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n";
    if (send_bytes(c, head, sizeof(head) - 1) < 0 ||
        (c->close_after && send_bytes(c, "Connection: close\r\n", 19) < 0) ||
        send_bytes(c, "\r\n", 2) < 0) {
        return -1;
    }
    total_streams++;
    c->sent = 0;
    c->streaming = 1;
    c->due = now_us(CLOCK_MONOTONIC);
    q_push(c);
    return 0;
}

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

int main(int argc, char **argv)
{
    int port = 0, backlog = 8192, opt, lfd, one = 1;
    const char *port_file = NULL;
    struct sockaddr_in addr = {.sin_family = AF_INET};
    socklen_t alen = sizeof(addr);
    struct epoll_event ev, evs[256];

    while ((opt = getopt(argc, argv, "p:f:k:d:b:")) != -1) {
        switch (opt) {
        case 'p':
            port = atoi(optarg);
            break;
        case 'f':
            port_file = optarg;
            break;
        case 'k':
            chunks = atoi(optarg);
            break;
        case 'd':
            delay_us = atoll(optarg) * 1000;
            break;
        case 'b':
            backlog = atoi(optarg);
            break;
        default:
            fprintf(stderr,
                    "usage: %s -f PORT_FILE [-p PORT] [-k CHUNKS] [-d DELAY_MS]\n",
                    argv[0]);
            return 2;
        }
    }
    if (!port_file || chunks < 1) {
        fprintf(stderr, "upstream: -f PORT_FILE is required, -k at least 1\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons((unsigned short)port);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
        listen(lfd, backlog) < 0 ||
        getsockname(lfd, (struct sockaddr *)&addr, &alen) < 0) {
        perror("upstream: listen");
        return 1;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    ev.events = EPOLLIN;
    ev.data.ptr = NULL; /* the listener */
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    FILE *pf = fopen(port_file, "w");
    if (!pf) {
        perror("upstream: port file");
        return 1;
    }
    fprintf(pf, "%d\n", ntohs(addr.sin_port));
    fclose(pf);

    while (!stop) {
        int timeout = -1, n;
        long long now = now_us(CLOCK_MONOTONIC);
        while (q_head && q_head->due <= now) {
            conn *c = q_head;
            q_remove(c);
            c->streaming = 0;
            if (send_chunk(c) < 0) {
                close_conn(c);
                continue;
            }
            if (c->sent < chunks) {
                c->streaming = 1;
                c->due += delay_us;
                q_push(c);
            } else if (c->close_after && !c->out_len) {
                close_conn(c);
            }
        }
        if (q_head) {
            timeout = (int)((q_head->due - now + 999) / 1000);
        }
        n = epoll_wait(ep, evs, 256, timeout);
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >=
                       0) {
                    c = calloc(1, sizeof(*c));
                    if (!c) {
                        close(fd);
                        continue;
                    }
                    c->fd = fd;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    ev.events = EPOLLIN | EPOLLRDHUP;
                    ev.data.ptr = c;
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                }
                continue;
            }
            if ((evs[i].events & EPOLLOUT) && flush_out(c) < 0) {
                close_conn(c);
                continue;
            }
            if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                int dead = 0;
                for (;;) {
                    ssize_t r;
                    if (c->streaming) { /* a request while answering: read and drop */
                        char junk[4096];
                        r = recv(c->fd, junk, sizeof(junk), 0);
                    } else {
                        r = recv(c->fd, c->in + c->in_len, IN_MAX - 1 - c->in_len, 0);
                    }
                    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                        dead = 1;
                        break;
                    }
                    if (r < 0) {
                        break;
                    }
                    if (!c->streaming) {
                        c->in_len += (size_t)r;
                        if (try_request(c) < 0) {
                            dead = 1;
                            break;
                        }
                    }
                }
                if (dead) {
                    close_conn(c);
                }
            }
        }
    }
    fprintf(stderr, "upstream: %lld streams, %lld stamped chunks sent\n", total_streams,
            total_chunks);
    return 0;
}
