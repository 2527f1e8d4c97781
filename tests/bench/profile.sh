#!/usr/bin/env bash
# Where httpd's time goes per request, mod_openai_proxy against mod_proxy_http,
# with perf (Debian's linux-perf), on the same private setup as run.sh.
#   sudo bash tests/bench/profile.sh
# Writes tests/bench/results/profile.md (and prints it):
#   1. per request, over the worker processes of httpd: CPU time, context
#      switches, system calls in all and by kind (perf stat, exact counts
#      during a wrk run at c=PROFILE_CONC, divided by the requests wrk
#      completed);
#   2. which code makes the poll() calls (perf record on the poll tracepoint
#      with DWARF call stacks);
#   3. the hottest functions of httpd under mod_openai_proxy load (sampled).
# Knobs: PROFILE_DURATION (5 s), PROFILE_CONC (16), BENCH_KEEP=1.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$BENCH_DIR/lib.sh"

DURATION=${PROFILE_DURATION:-5}
CONC=${PROFILE_CONC:-16}
OUT=$BENCH_DIR/results/profile.md
SYSCALLS=(poll read write writev readv sendto recvfrom epoll_wait epoll_ctl futex
          getsockopt setsockopt fcntl ioctl socket connect close accept4 shutdown
          newfstatat statx openat mmap munmap madvise brk)

ensure_packages "${BASE_PACKAGES[@]}" linux-perf
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
make_run_dir
build_module
build_ceiling
start_upstreams
start_httpd httpd
check_targets
log "httpd :$HTTPD_PORT (pid $HTTPD_PID), nginx :$NGINX_PORT ($RUN)"

workers() { pgrep -d, -P "$HTTPD_PID"; }

wrk_run() { # scenario target conc duration
    local scenario=$1 target=$2 c=$3 d=$4 stream=0
    [[ $scenario == sse ]] && stream=1
    BENCH_STREAM=$stream timeout $((d + 30)) wrk -t"$((c < 2 ? c : 2))" -c"$c" -d"${d}s" \
        --timeout 5s -s "$BENCH_DIR/wrk_post.lua" "$(target_url "$scenario" "$target")"
}

events="task-clock,context-switches,raw_syscalls:sys_enter"
for s in "${SYSCALLS[@]}"; do events+=",syscalls:sys_enter_$s"; done

STATS=$RUN/stats.jsonl
: >"$STATS"
for scenario in plain sse; do
    for target in proxy_http oaip; do
        wrk_run "$scenario" "$target" "$CONC" 1 >/dev/null # warm-up: children, pools
        stream=0
        [[ $scenario == sse ]] && stream=1
        # counts the workers exactly while wrk runs
        BENCH_STREAM=$stream timeout $((DURATION + 60)) perf stat -x, \
            -o "$RUN/perf-stat.txt" -e "$events" -p "$(workers)" -- \
            wrk -t"$((CONC < 2 ? CONC : 2))" -c"$CONC" -d"${DURATION}s" --timeout 5s \
            -s "$BENCH_DIR/wrk_post.lua" "$(target_url "$scenario" "$target")" \
            >"$RUN/wrk-$scenario-$target.out" 2>&1 || die "perf stat $scenario $target"
        grep '^BENCH_JSON ' "$RUN/wrk-$scenario-$target.out" >/dev/null ||
            { cat "$RUN/wrk-$scenario-$target.out" >&2; die "wrk $scenario $target"; }
        "$PY" - "$scenario" "$target" "$RUN/perf-stat.txt" "$RUN/wrk-$scenario-$target.out" \
            >>"$STATS" <<'EOF'
import json, sys
scenario, target, stat_file, wrk_file = sys.argv[1:]
counts = {}
for line in open(stat_file):
    parts = line.strip().split(",")
    if len(parts) < 3 or line.startswith("#"):
        continue
    value, event = parts[0], parts[2]
    try:
        counts[event] = float(value)
    except ValueError:
        counts[event] = None  # <not counted> / <not supported>
wrk = next(json.loads(l.split(" ", 1)[1]) for l in open(wrk_file) if l.startswith("BENCH_JSON "))
print(json.dumps({"scenario": scenario, "target": target, "counts": counts, "wrk": wrk}))
EOF
        log "perf stat $scenario $target: done"
    done
done

# which code calls poll(): a short run at c=1 with call stacks on the tracepoint
wrk_run plain oaip 1 1 >/dev/null
timeout 60 perf record -q -e syscalls:sys_enter_poll --call-graph dwarf,8192 \
    -o "$RUN/perf-poll.data" -p "$(workers)" -- \
    wrk -t1 -c1 -d2s --timeout 5s -s "$BENCH_DIR/wrk_post.lua" "$(target_url plain oaip)" \
    >"$RUN/wrk-poll.out" 2>&1 || die "perf record (poll)"
perf script -i "$RUN/perf-poll.data" -F ip,sym 2>/dev/null >"$RUN/poll.stacks" || true
poll_requests=$(grep '^BENCH_JSON ' "$RUN/wrk-poll.out" | "$PY" -c \
    'import json,sys; print(json.loads(sys.stdin.read().split(" ",1)[1])["requests"])')

# CPU samples under load: mod_openai_proxy non-streamed and streamed, and
# mod_proxy_http for comparison (samples at 999 Hz: their count is CPU time)
for cell in plain/oaip sse/oaip plain/proxy_http sse/proxy_http; do
    scenario=${cell%/*} target=${cell#*/} stream=0
    [[ $scenario == sse ]] && stream=1
    name=$scenario-$target
    BENCH_STREAM=$stream timeout 60 perf record -q -F 999 --call-graph dwarf,16384 \
        -o "$RUN/perf-cpu-$name.data" -p "$(workers)" -- \
        wrk -t2 -c"$CONC" -d3s --timeout 5s -s "$BENCH_DIR/wrk_post.lua" \
        "$(target_url "$scenario" "$target")" >"$RUN/wrk-cpu-$name.out" 2>&1 ||
        die "perf record (cpu, $name)"
    perf report -i "$RUN/perf-cpu-$name.data" --no-children --sort dso,sym --stdio \
        -g none --percent-limit 0.7 2>/dev/null | grep '%' >"$RUN/top-self-$name.txt" || true
    perf report -i "$RUN/perf-cpu-$name.data" --no-children --sort dso --stdio -g none \
        -n 2>/dev/null | grep '%' >"$RUN/top-dso-$name.txt" || true
    perf script -i "$RUN/perf-cpu-$name.data" -F ip,sym 2>/dev/null \
        >"$RUN/cpu-$name.stacks" || true
    log "perf record $name: done"
done

"$PY" - "$STATS" "$RUN/poll.stacks" "$poll_requests" "$RUN" "$CONC" "$DURATION" \
    "$OUT" "$MODULE_INFO" <<'EOF'
import collections, datetime, json, os, re, sys
stats_file, stacks_file, poll_requests, run, conc, duration, out_file, module = sys.argv[1:]
lines = []
out = lines.append
out("# mod_openai_proxy profile (perf)")
out("")
out(f"{datetime.datetime.now().astimezone().isoformat(timespec='seconds')}, module {module}.")
out("")
out(f"httpd worker processes only; wrk at c={conc} for {duration} s per row, on the same "
    "private setup as run.sh (nginx as the fast upstream). Counts are exact (perf stat), "
    "divided by the requests wrk completed.")
out("")
rows = [json.loads(l) for l in open(stats_file)]
names = {"proxy_http": "mod_proxy_http", "oaip": "mod_openai_proxy"}
sc_names = sorted({k.split("sys_enter_")[1] for r in rows for k in r["counts"]
                   if k.startswith("syscalls:sys_enter_")})
def per_req(r, key):
    v = r["counts"].get(key)
    return None if v is None else v / max(r["wrk"]["requests"], 1)
shown = [s for s in sc_names
         if any((per_req(r, "syscalls:sys_enter_" + s) or 0) >= 0.05 for r in rows)]
out("| scenario | proxy | req/s | CPU µs/req | ctx switches/req | syscalls/req | "
    + " | ".join(shown) + " |")
out("|---|---|--:|--:|--:|--:|" + "--:|" * len(shown))
for r in rows:
    w = r["wrk"]
    rps = w["requests"] / w["duration_us"] * 1e6
    cpu = per_req(r, "task-clock")  # msec
    cells = [f"{per_req(r, 'syscalls:sys_enter_' + s) or 0:.2f}" for s in shown]
    out(f"| {'non-stream' if r['scenario'] == 'plain' else 'stream (SSE)'} | "
        f"{names[r['target']]} | {rps:.0f} | {cpu * 1000:.1f} | "
        f"{per_req(r, 'context-switches'):.2f} | {per_req(r, 'raw_syscalls:sys_enter'):.1f} | "
        + " | ".join(cells) + " |")
out("")

# poll() callers
text = open(stacks_file).read() if os.path.exists(stacks_file) else ""
stacks = [[l.split(None, 1)[1] for l in s.strip().splitlines() if len(l.split(None, 1)) == 2]
          for s in text.split("\n\n") if s.strip()]
callers = collections.Counter()
for syms in stacks:
    joined = " ".join(syms)
    if "oaip_relay_client_hung_up" in joined:
        key = "oaip_relay_client_hung_up (the module's hang-up check without a client socket: HTTP/2)"
    elif "oaip_transfer_wait" in joined and "curl_multi_socket_action" not in joined:
        key = "oaip_transfer_wait (the module's one wait on the upstream and client sockets)"
    elif "curl_multi_socket_action" in joined:
        key = "libcurl inside curl_multi_socket_action (its zero-timeout socket checks)"
    elif "curl_multi_poll" in joined or "curl_easy_perform" in joined and \
            "curl_multi_perform" not in joined:
        key = "libcurl curl_multi_poll (waiting for the upstream)"
    elif "curl_multi_perform" in joined:
        key = "libcurl inside curl_multi_perform (Curl_socket_check etc.)"
    else:
        frames = [f for f in syms if "poll" not in f and f != "[unknown]"]
        key = frames[0] if frames else "?"
    callers[key] += 1
n = max(int(poll_requests), 1)
out(f"poll() calls per request by caller (mod_openai_proxy, non-stream, c=1, "
    f"{sum(callers.values())} calls over {n} requests):")
out("")
out("| caller | poll() per request |")
out("|---|--:|")
for k, v in callers.most_common(8):
    out(f"| {k} | {v / n:.2f} |")
out("")

def section(title, path, limit):
    out(title)
    out("")
    out("```")
    for l in open(path).read().splitlines()[:limit]:
        out(re.sub(r"\s+$", "", l))
    out("```")
    out("")
# CPU µs per request by shared object, from sample counts (999 Hz)
def dso_us(name):
    wrk = next(json.loads(l.split(" ", 1)[1]) for l in open(os.path.join(run, f"wrk-cpu-{name}.out"))
               if l.startswith("BENCH_JSON "))
    res = {}
    for l in open(os.path.join(run, f"top-dso-{name}.txt")):
        parts = l.split()
        if len(parts) >= 3 and parts[0].endswith("%"):
            res[" ".join(parts[2:])] = int(parts[1]) / 999.0 * 1e6 / max(wrk["requests"], 1)
    return res
cols = ["plain-proxy_http", "plain-oaip", "sse-proxy_http", "sse-oaip"]
us = {c: dso_us(c) for c in cols}
dsos = sorted({d for c in cols for d in us[c]}, key=lambda d: -us["plain-oaip"].get(d, 0))
out("CPU time per request by shared object, from perf samples (999 Hz, DWARF stacks) "
    f"at c={conc}, µs:")
out("")
out("| shared object | non-stream mod_proxy_http | non-stream mod_openai_proxy "
    "| stream mod_proxy_http | stream mod_openai_proxy |")
out("|---|--:|--:|--:|--:|")
for d in dsos:
    if max(us[c].get(d, 0) for c in cols) >= 0.5:
        out(f"| {d} | " + " | ".join(f"{us[c].get(d, 0):.1f}" for c in cols) + " |")
out("| **total** | " + " | ".join(f"**{sum(us[c].values()):.1f}**" for c in cols) + " |")
out("")
section("Hottest functions of mod_openai_proxy, non-stream, self time (finish_task_switch "
        "and _raw_spin_unlock_irqrestore are context switches and wake-ups):",
        os.path.join(run, "top-self-plain-oaip.txt"), 20)
section("The same for mod_proxy_http:", os.path.join(run, "top-self-plain-proxy_http.txt"), 20)

# inclusive share of samples whose call stack holds the function (DWARF stacks)
def load_stacks(path):
    text = open(path).read() if os.path.exists(path) else ""
    return [[l.split(None, 1)[1] for l in s.strip().splitlines() if len(l.split(None, 1)) == 2]
            for s in text.split("\n\n") if s.strip()]
samples = {sc: load_stacks(os.path.join(run, f"cpu-{sc}-oaip.stacks")) for sc in ("plain", "sse")}
buckets = [
    ("ap_process_async_request", "the whole request in httpd"),
    ("ap_directory_walk", "httpd's <Directory> walk: stat() of paths under DocumentRoot"),
    ("oaip_body_read", "reading the request body"),
    ("oaip_json_request_prepare_chat", "body validation and defaults (jansson)"),
    ("json_loadb", "  of which json_loadb (parse)"),
    ("oaip_curl_acquire", "curl handle from the pool + curl_easy_reset"),
    ("curl_easy_setopt", "curl_easy_setopt calls"),
    ("oaip_upstream_forward", "the exchange, syscalls and callbacks included"),
    ("__libc_send", "  send() of the request upstream"),
    ("oaip_transfer_wait", "  the module's wait (poll) and libcurl's work on what is ready"),
    ("curl_multi_socket_action", "    libcurl's work on a ready socket"),
    ("on_body", "  the module's body callback"),
    ("oaip_sse_framer_feed", "    the SSE framer (one inspection per event)"),
    ("oaip_relay_flush", "  one pass + flush per wake-up"),
    ("oaip_relay_whole", "non-streamed: the buffered answer to the client"),
    ("ap_http_chunk_filter", "chunked encoding of the streamed answer"),
    ("ap_core_output_filter", "writing to the client (writev)"),
    ("ap_queue_pop_something", "MPM: worker idle wait / queue lock"),
]
out("Inclusive share of httpd's CPU samples (DWARF stacks) whose call stack holds the "
    f"function, mod_openai_proxy at c={conc} ({len(samples['plain'])} non-stream samples, "
    f"{len(samples['sse'])} stream samples):")
out("")
out("| function | what | % non-stream | % stream |")
out("|---|---|--:|--:|")
for fn, what in buckets:
    cells = []
    for sc in ("plain", "sse"):
        st = samples[sc]
        share = sum(1 for s in st if any(fn in f for f in s)) / max(len(st), 1) * 100
        cells.append(f"{share:.1f}")
    out(f"| `{fn}` | {what.strip()} | {cells[0]} | {cells[1]} |")
out("")
text = "\n".join(lines)
print(text)
os.makedirs(os.path.dirname(out_file), exist_ok=True)
open(out_file, "w").write(text + "\n")
EOF
