/*
 * The long-stream benchmark's client: opens N concurrent streams (POST of a
 * Chat Completions body with "stream":true, HTTP/1.1, Connection: close),
 * reads their SSE, and measures each chunk's delay (arrival, CLOCK_REALTIME
 * just after the recv() that brought it, minus the "bench_sent_us" stamp
 * the upstream put in it). One epoll loop, nonblocking sockets: a Python
 * client cannot read 20,000 events/s on 2 shared cores without distorting
 * the latencies it measures.
 *
 *   client -u http://127.0.0.1:PORT/path -n N -k CHUNKS [-d DELAY_MS] [-r RAMP_MS]
 *          [-T TIMEOUT_S] [-P SERVER_PID] [-s STATUS_FILE]
 *
 * Streams are opened evenly over RAMP_MS. The window is the time when every
 * stream is open (headers and a first stamped chunk received, the last one
 * not yet): at its start the client writes "allopen NOW_US END_US" to
 * STATUS_FILE (END_US: when the window should end, estimated from the most
 * advanced stream, DELAY_MS and that stream's current delay; wall clock
 * µs), at its
 * end (the first stream's last chunk) "windowend". With -P it reads, from
 * /proc, the CPU time (utime + stime) of SERVER_PID and its children at the
 * start, at the window's start and at its end, and their summed VmRSS and
 * threads before the first stream (idle) and every 200 ms in the window
 * (the largest sample is kept). SIGUSR1 records a mark (time, chunks
 * delivered so far), so that a script can count the chunks delivered while
 * it measured something else (perf stat). Prints one JSON object at the end.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
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

enum { ST_IDLE, ST_CONNECTING, ST_HEAD, ST_BODY, ST_DONE };
enum { CS_SIZE, CS_DATA, CS_CRLF, CS_END };
enum { E_CONNECT, E_RESET, E_EOF, E_TIMEOUT, E_STATUS, E_PARSE, E_KINDS };
static const char *const e_names[] = {"connect", "reset",  "eof",
                                      "timeout", "status", "parse"};

typedef struct {
    int fd, state, status, chunked, cstate;
    long long left; /* content-length left, or bytes of the current chunk; -1 until EOF */
    char head[4096];
    size_t head_len;
    char *ev; /* SSE bytes not yet split into events */
    size_t ev_len, ev_cap;
    char size_line[32];
    size_t size_len;
    int stamped, other, done;
    long long first_sent, last_delay; /* stamp of chunk 1, delay of the latest */
} stream;

#define HIST_US 2000000
static unsigned hist[HIST_US]; /* delays by µs; more than 2 s goes to over */
static unsigned long long over, delays;
static long long delay_max;

static int n_streams, k_chunks, delay_ms = 250;
static stream *S;
static long long chunks_total, other_total;
static int opened, n_finished, finished_first, n_ended, complete, dones;
static int errors[E_KINDS], statuses[600];
static char examples[3][160];
static int n_examples;
static volatile sig_atomic_t mark_req;
static int ep;

static long long now_us(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---------------- /proc ---------------- */
typedef struct {
    long long rss_kib, threads;
    int procs;
} mem_sample;

static int server_pid;

static int in_tree(int pid, long long *ticks)
{
    char path[64], buf[1024];
    FILE *f;
    size_t n;
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    if (!(f = fopen(path, "r"))) {
        return 0;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    int ppid = 0;
    long long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld", &ppid,
                     &ut, &st) != 3) {
        return 0;
    }
    if (pid != server_pid && ppid != server_pid) {
        return 0;
    }
    *ticks = ut + st;
    return 1;
}

static long long status_field(int pid, const char *field)
{
    char path[64], line[256];
    long long v = 0;
    size_t n = strlen(field);
    FILE *f;
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    if (!(f = fopen(path, "r"))) {
        return 0;
    }
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            v = atoll(line + n + 1);
            break;
        }
    }
    fclose(f);
    return v;
}

/* CPU µs of the server's processes; with m, their memory too */
static long long sample_tree(mem_sample *m)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    long long ticks = 0, t;
    if (m) {
        memset(m, 0, sizeof(*m));
    }
    while (d && (e = readdir(d))) {
        if (!isdigit((unsigned char)e->d_name[0])) {
            continue;
        }
        int pid = atoi(e->d_name);
        if (!in_tree(pid, &t)) {
            continue;
        }
        ticks += t;
        if (m) {
            m->procs++;
            m->rss_kib += status_field(pid, "VmRSS");
            m->threads += status_field(pid, "Threads");
        }
    }
    if (d) {
        closedir(d);
    }
    return ticks * 1000000 / sysconf(_SC_CLK_TCK);
}

/* ---------------- streams ---------------- */
static void fail(stream *s, int kind, const char *detail)
{
    if (s->state == ST_DONE) {
        return;
    }
    errors[kind]++;
    if (n_examples < 3) {
        snprintf(examples[n_examples++], sizeof(examples[0]), "%s: %s", e_names[kind],
                 detail);
    }
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
    s->state = ST_DONE;
    n_ended++;
}

static void end_stream(stream *s)
{
    if (s->status == 200 && s->stamped == k_chunks && s->done) {
        complete++;
    } else if (s->status == 200) {
        char d[96];
        snprintf(d, sizeof(d), "body ended after %d of %d chunks, [DONE] %s", s->stamped,
                 k_chunks, s->done ? "seen" : "missing");
        fail(s, E_PARSE, d);
        return;
    }
    close(s->fd);
    s->fd = -1;
    s->state = ST_DONE;
    n_ended++;
}

static void record_delay(long long d)
{
    if (d < 0) {
        d = 0;
    }
    if (d >= HIST_US) {
        over++;
    } else {
        hist[d]++;
    }
    if (d > delay_max) {
        delay_max = d;
    }
    delays++;
}

static void on_event(stream *s, const char *ev, size_t len, long long arrived)
{
    static const char stamp[] = "\"bench_sent_us\":";
    const char *p = memmem(ev, len, stamp, sizeof(stamp) - 1);
    if (memmem(ev, len, "data: [DONE]", 12)) {
        s->done = 1;
        dones++;
        return;
    }
    if (!p) {
        s->other++;
        other_total++;
        return;
    }
    long long sent = atoll(p + sizeof(stamp) - 1);
    record_delay(arrived - sent);
    s->stamped++;
    s->last_delay = arrived - sent;
    if (s->stamped == 1) {
        s->first_sent = sent;
    }
    chunks_total++;
    if (s->stamped == 1) {
        opened++;
    }
    if (s->stamped == k_chunks) {
        finished_first = 1;
        n_finished++;
    }
}

static void feed_sse(stream *s, const char *data, size_t len, long long arrived)
{
    size_t start = 0, scan = s->ev_len ? s->ev_len - 1 : 0;
    if (s->ev_len + len > s->ev_cap) {
        s->ev_cap = (s->ev_len + len) * 2 + 256;
        s->ev = realloc(s->ev, s->ev_cap);
    }
    memcpy(s->ev + s->ev_len, data, len);
    s->ev_len += len;
    for (size_t i = scan; i + 1 < s->ev_len; i++) {
        if (s->ev[i] == '\n' && s->ev[i + 1] == '\n') {
            on_event(s, s->ev + start, i - start, arrived);
            start = i + 2;
            i++;
        }
    }
    memmove(s->ev, s->ev + start, s->ev_len - start);
    s->ev_len -= start;
}

/* the body bytes: chunked decoding, then SSE */
static void feed_body(stream *s, const char *p, size_t len, long long arrived)
{
    if (!s->chunked) {
        if (s->left >= 0 && (long long)len > s->left) {
            len = (size_t)s->left;
        }
        feed_sse(s, p, len, arrived);
        if (s->left >= 0 && (s->left -= (long long)len) == 0) {
            end_stream(s);
        }
        return;
    }
    while (len && s->state == ST_BODY) {
        switch (s->cstate) {
        case CS_SIZE:
            if (*p == '\n') {
                s->size_line[s->size_len] = 0;
                s->left = strtoll(s->size_line, NULL, 16);
                s->size_len = 0;
                s->cstate = s->left ? CS_DATA : CS_END;
                if (!s->left) {
                    end_stream(s);
                    return;
                }
            } else if (s->size_len < sizeof(s->size_line) - 1) {
                s->size_line[s->size_len++] = *p;
            }
            p++, len--;
            break;
        case CS_DATA: {
            size_t n = len < (size_t)s->left ? len : (size_t)s->left;
            feed_sse(s, p, n, arrived);
            p += n, len -= n;
            if (!(s->left -= (long long)n)) {
                s->cstate = CS_CRLF;
                s->left = 2;
            }
            break;
        }
        case CS_CRLF:
            p++, len--;
            if (!--s->left) {
                s->cstate = CS_SIZE;
            }
            break;
        default:
            return;
        }
    }
}

static void feed_head(stream *s, const char *p, size_t len, long long arrived)
{
    size_t room = sizeof(s->head) - 1 - s->head_len, take = len < room ? len : room;
    memcpy(s->head + s->head_len, p, take);
    s->head_len += take;
    s->head[s->head_len] = 0;
    char *end = strstr(s->head, "\r\n\r\n");
    if (!end) {
        if (s->head_len >= sizeof(s->head) - 1) {
            fail(s, E_PARSE, "response head over 4 KiB");
        }
        return;
    }
    size_t head_bytes = (size_t)(end - s->head) + 4;
    size_t rest_off = take - (s->head_len - head_bytes); /* first body byte within p */
    *end = 0;
    s->status = atoi(s->head + 9);
    if (s->status > 0 && s->status < 600) {
        statuses[s->status]++;
    }
    s->chunked = strcasestr(s->head, "\r\ntransfer-encoding: chunked") != NULL;
    char *cl = strcasestr(s->head, "\r\ncontent-length:");
    s->left = cl ? atoll(cl + 17) : -1;
    s->state = ST_BODY;
    s->cstate = CS_SIZE;
    if (s->status != 200) {
        char d[140];
        snprintf(d, sizeof(d), "HTTP %d", s->status);
        fail(s, E_STATUS, d);
        return;
    }
    if (!s->chunked && s->left == 0) {
        end_stream(s);
        return;
    }
    feed_body(s, p + rest_off, len - rest_off, arrived);
}

static struct sockaddr_in target;
static char request[1024];
static size_t request_len;

static void open_stream(stream *s)
{
    int one = 1;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.ptr = s};
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        fail(s, E_CONNECT, strerror(errno));
        return;
    }
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(s->fd, (struct sockaddr *)&target, sizeof(target)) < 0 &&
        errno != EINPROGRESS) {
        fail(s, E_CONNECT, strerror(errno));
        return;
    }
    s->state = ST_CONNECTING;
    epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev);
}

static void on_ready(stream *s, unsigned events)
{
    static char buf[65536];
    if (s->state == ST_CONNECTING) {
        int err = 0;
        socklen_t l = sizeof(err);
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) {
            fail(s, E_CONNECT, strerror(err));
            return;
        }
        if (!(events & EPOLLOUT)) {
            return;
        }
        /* the request is small: one send on a fresh socket takes it whole */
        if (send(s->fd, request, request_len, MSG_NOSIGNAL) != (ssize_t)request_len) {
            fail(s, E_CONNECT, "short send of the request");
            return;
        }
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = s};
        epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
        s->state = ST_HEAD;
        return;
    }
    while (s->state == ST_HEAD || s->state == ST_BODY) {
        ssize_t n = recv(s->fd, buf, sizeof(buf), 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                return;
            }
            fail(s, errno == ECONNRESET ? E_RESET : E_EOF, strerror(errno));
            return;
        }
        if (n == 0) {
            if (s->state == ST_BODY && !s->chunked && s->left < 0) {
                end_stream(s); /* a body delimited by the close */
            } else {
                char d[96];
                snprintf(d, sizeof(d), "closed after %d chunks", s->stamped);
                fail(s, E_EOF, d);
            }
            return;
        }
        long long arrived = now_us(CLOCK_REALTIME);
        if (s->state == ST_HEAD) {
            feed_head(s, buf, (size_t)n, arrived);
        } else {
            feed_body(s, buf, (size_t)n, arrived);
        }
    }
}

static long long percentile(double q)
{
    unsigned long long want = (unsigned long long)(q * (double)delays), seen = 0;
    if (!delays) {
        return -1;
    }
    for (long long i = 0; i < HIST_US; i++) {
        seen += hist[i];
        if (seen > want) {
            return i;
        }
    }
    return delay_max;
}

/* when the window should end: the most advanced stream's last chunk is
 * sent (K - 1) x D after its first and arrives with the delay its chunks
 * have now (a saturated server delivers behind the upstream's schedule) */
static long long expected_end(void)
{
    stream *best = NULL;
    for (int i = 0; i < n_streams; i++) {
        stream *s = &S[i];
        if (s->stamped &&
            (!best || s->stamped > best->stamped ||
             (s->stamped == best->stamped && s->first_sent < best->first_sent))) {
            best = s;
        }
    }
    return best ? best->first_sent + (long long)(k_chunks - 1) * delay_ms * 1000 +
                      best->last_delay
                : 0;
}

static void on_usr1(int sig)
{
    (void)sig;
    mark_req = 1;
}

int main(int argc, char **argv)
{
    const char *url = NULL, *status_path = NULL;
    int ramp_ms = 2000, timeout_s = 120, opt;
    char host[64] = "", path[512] = "/";
    int port = 80;
    FILE *status_file = NULL;

    while ((opt = getopt(argc, argv, "u:n:k:d:r:T:P:s:")) != -1) {
        switch (opt) {
        case 'u':
            url = optarg;
            break;
        case 'n':
            n_streams = atoi(optarg);
            break;
        case 'k':
            k_chunks = atoi(optarg);
            break;
        case 'd':
            delay_ms = atoi(optarg);
            break;
        case 'r':
            ramp_ms = atoi(optarg);
            break;
        case 'T':
            timeout_s = atoi(optarg);
            break;
        case 'P':
            server_pid = atoi(optarg);
            break;
        case 's':
            status_path = optarg;
            break;
        default:
            return 2;
        }
    }
    if (!url || n_streams < 1 || k_chunks < 1 ||
        sscanf(url, "http://%63[^:/]:%d%511s", host, &port, path) < 2) {
        fprintf(stderr, "usage: client -u http://IP:PORT/path -n N -k CHUNKS [-d "
                        "DELAY_MS] [-r RAMP_MS] "
                        "[-T TIMEOUT_S] [-P SERVER_PID] [-s STATUS_FILE]\n");
        return 2;
    }
    target.sin_family = AF_INET;
    target.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, host, &target.sin_addr) != 1) {
        fprintf(stderr, "client: %s is not an IPv4 address\n", host);
        return 2;
    }
    if (status_path && !(status_file = fopen(status_path, "w"))) {
        perror("client: status file");
        return 2;
    }
    static const char body[] =
        "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\","
        "\"content\":\"Hello\"}],\"stream\":true}";
    request_len = (size_t)snprintf(request, sizeof(request),
                                   "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: "
                                   "application/json\r\nAccept: text/event-stream\r\n"
                                   "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                                   path, host, port, sizeof(body) - 1, body);
    struct sigaction sa = {.sa_handler = on_usr1};
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    S = calloc((size_t)n_streams, sizeof(stream));
    ep = epoll_create1(EPOLL_CLOEXEC);
    mem_sample idle = {0}, open_max = {0}, m;
    long long cpu_start = 0, cpu_win0 = 0, cpu_win1 = 0;
    if (server_pid) {
        cpu_start = sample_tree(&idle);
    }
    long long t0 = now_us(CLOCK_MONOTONIC),
              deadline = t0 + (long long)timeout_s * 1000000;
    long long win0 = 0, win1 = 0, chunks_win0 = 0, chunks_win1 = 0, next_sample = 0;
    long long wall_win0 = 0, wall_win1 = 0, max_open = 0;
    long long marks_t[8], marks_c[8];
    int n_marks = 0, next_open = 0, win_state = 0; /* 0 before, 1 in, 2 after, 3 never */
    struct epoll_event evs[512];

    while (n_ended < n_streams) {
        long long now = now_us(CLOCK_MONOTONIC);
        if (now >= deadline) {
            for (int i = 0; i < n_streams; i++) {
                if (S[i].state != ST_DONE) {
                    char d[96];
                    snprintf(d, sizeof(d), "no end after %d s (%d chunks)", timeout_s,
                             S[i].stamped);
                    fail(&S[i], E_TIMEOUT, d);
                }
            }
            break;
        }
        while (next_open < n_streams &&
               t0 + (long long)next_open * ramp_ms * 1000 / n_streams <= now) {
            open_stream(&S[next_open++]);
        }
        if (win_state == 1 && server_pid && now >= next_sample) {
            sample_tree(&m);
            if (m.rss_kib > open_max.rss_kib) {
                open_max = m;
            }
            next_sample = now + 200000;
        }
        long long wake = deadline;
        if (next_open < n_streams) {
            long long t = t0 + (long long)next_open * ramp_ms * 1000 / n_streams;
            wake = t < wake ? t : wake;
        }
        if (win_state == 1 && server_pid && next_sample < wake) {
            wake = next_sample;
        }
        int timeout = (int)((wake - now + 999) / 1000);
        int n = epoll_wait(ep, evs, 512, timeout < 0 ? 0 : timeout);
        for (int i = 0; i < n; i++) {
            on_ready(evs[i].data.ptr, evs[i].events);
        }
        if (mark_req && n_marks < 8) {
            mark_req = 0;
            marks_t[n_marks] = now_us(CLOCK_REALTIME);
            marks_c[n_marks++] = chunks_total;
        }
        if (opened - n_finished > max_open) {
            max_open = opened - n_finished;
        }
        if (win_state == 0 && finished_first) {
            win_state = 3; /* a stream ended before the last one opened */
        } else if (win_state == 0 && opened == n_streams) {
            win_state = 1;
            win0 = now_us(CLOCK_MONOTONIC);
            wall_win0 = now_us(CLOCK_REALTIME);
            chunks_win0 = chunks_total;
            if (server_pid) {
                cpu_win0 = sample_tree(&open_max);
            }
            next_sample = win0 + 200000;
            if (status_file) {
                fprintf(status_file, "allopen %lld %lld\n", wall_win0, expected_end());
                fflush(status_file);
            }
        } else if (win_state == 1 && finished_first) {
            win_state = 2;
            win1 = now_us(CLOCK_MONOTONIC);
            wall_win1 = now_us(CLOCK_REALTIME);
            chunks_win1 = chunks_total;
            if (server_pid) {
                cpu_win1 = sample_tree(NULL);
            }
            if (status_file) {
                fprintf(status_file, "windowend %lld\n", wall_win1);
                fflush(status_file);
            }
        }
    }
    if (status_file) {
        fprintf(status_file, "finished\n");
        fclose(status_file);
    }

    printf(
        "{\"streams\":%d,\"chunks_per_stream\":%d,\"complete\":%d,\"chunks\":%lld,"
        "\"expected_chunks\":%lld,\"other_events\":%lld,\"done\":%d,\"max_open\":%lld,",
        n_streams, k_chunks, complete, chunks_total, (long long)n_streams * k_chunks,
        other_total, dones, max_open);
    printf("\"errors\":{");
    for (int i = 0; i < E_KINDS; i++) {
        printf("%s\"%s\":%d", i ? "," : "", e_names[i], errors[i]);
    }
    printf("},\"error_examples\":[");
    for (int i = 0; i < n_examples; i++) {
        printf("%s\"", i ? "," : "");
        for (const char *c = examples[i]; *c; c++) {
            putchar(*c == '"' || *c == '\\' ? '\''
                                            : (isprint((unsigned char)*c) ? *c : '?'));
        }
        putchar('"');
    }
    printf("],\"statuses\":{");
    for (int i = 0, first = 1; i < 600; i++) {
        if (statuses[i]) {
            printf("%s\"%d\":%d", first ? "" : ",", i, statuses[i]);
            first = 0;
        }
    }
    printf("},\"delay_us\":{\"count\":%llu,\"p50\":%lld,\"p99\":%lld,\"max\":%lld,"
           "\"over_2s\":%llu},",
           delays, percentile(0.50), percentile(0.99), delay_max, over);
    printf("\"ramp_ms\":%d,\"window\":", ramp_ms);
    if (win_state == 2) {
        printf("{\"start_wall_us\":%lld,\"end_wall_us\":%lld,\"open_after_us\":%lld,"
               "\"duration_us\":%lld,\"chunks_before\":%lld,\"chunks\":%lld",
               wall_win0, wall_win1, win0 - t0, win1 - win0, chunks_win0,
               chunks_win1 - chunks_win0);
        if (server_pid) {
            printf(",\"cpu_before_us\":%lld,\"cpu_us\":%lld", cpu_win0 - cpu_start,
                   cpu_win1 - cpu_win0);
        }
        printf("}");
    } else {
        printf("null");
    }
    printf(",\"marks\":[");
    for (int i = 0; i < n_marks; i++) {
        printf("%s{\"wall_us\":%lld,\"chunks\":%lld}", i ? "," : "", marks_t[i],
               marks_c[i]);
    }
    printf("]");
    if (server_pid) {
        printf(",\"idle\":{\"rss_kib\":%lld,\"procs\":%d,\"threads\":%lld}", idle.rss_kib,
               idle.procs, idle.threads);
        if (win_state >= 1 && win_state != 3) {
            printf(",\"open\":{\"rss_kib\":%lld,\"procs\":%d,\"threads\":%lld}",
                   open_max.rss_kib, open_max.procs, open_max.threads);
        }
    }
    printf("}\n");
    return 0;
}
