#!/usr/bin/env bash
# Long streams: N concurrent streams of K chunks D ms apart, from a C
# upstream that stamps each chunk with its send time, read by a C client;
# direct, mod_proxy_http (flushpackets=on), nginx (proxy_buffering off) and
# mod_openai_proxy, each on a fresh server sized for N.
#   sudo bash tests/bench/streams.sh
# See tests/bench/README.md ("Long streams"). Writes results/streams.md and
# .json, then results/latest.md and .json (with run.sh's latest tables).
# Knobs (environment): STREAMS_N ("200 2000 5000"), STREAMS_CHUNKS (40),
# STREAMS_DELAY_MS (250), STREAMS_RAMP_MS (the time over which the N streams
# are opened; default N ms, at least 2000), STREAMS_TARGETS ("direct proxy_http nginx oaip"),
# STREAMS_SYSCALL_SECONDS (3), STREAMS_THREADS_PER_CHILD (250), BENCH_KEEP=1,
# BENCH_MODULE.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$BENCH_DIR/lib.sh"

NS=${STREAMS_N:-"200 2000 5000"}
CHUNKS=${STREAMS_CHUNKS:-40}
DELAY_MS=${STREAMS_DELAY_MS:-250}
TARGETS=${STREAMS_TARGETS:-"direct proxy_http nginx oaip"}
SYSCALL_S=${STREAMS_SYSCALL_SECONDS:-3}
TPC=${STREAMS_THREADS_PER_CHILD:-250}
RESULTS=$BENCH_DIR/results

ensure_packages "${BASE_PACKAGES[@]}" linux-perf
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
max_n=0
for n in $NS; do ((n > max_n)) && max_n=$n; done
# nginx's worker may hold every stream twice (client and upstream side)
(($(ulimit -n) >= 2 * max_n + 1024)) ||
    die "ulimit -n $(ulimit -n) too low for $max_n streams (needs $((2 * max_n + 1024)))"
make_run_dir
build_module
build_streamer
JSONL=$RUN/streams.jsonl
: >"$JSONL"

# tree_threads PID: threads of PID and its children
tree_threads() {
    local pid=$1 total=0 p
    for p in $pid $(pgrep -P "$pid" || true); do
        total=$((total + $(awk '/^Threads:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
    done
    echo "$total"
}

# busiest_child PID: the process of PID's tree with the most sockets open
# (an httpd child, an nginx worker; PID itself when it has no children),
# from /proc/*/fd of that tree only: ss -p reads the descriptors of every
# process, too slow on a loaded machine while the window runs
busiest_child() {
    local best=$1 max=-1 p n
    for p in $(pgrep -P "$1" || true); do
        n=$(find "/proc/$p/fd" -lname 'socket:*' 2>/dev/null | wc -l)
        ((n > max)) && { max=$n; best=$p; }
    done
    echo "$best"
}

# conns_of PID PORT: established TCP connections of that process on local
# PORT (its sockets from /proc/PID/fd, matched in /proc/PID/net/tcp: fast,
# where ss -p reads the descriptors of every process)
conns_of() {
    "$PY" - "$1" "$2" <<'EOF'
import os, sys
pid, port = sys.argv[1], int(sys.argv[2])
inodes = set()
for fd in os.listdir(f"/proc/{pid}/fd"):
    try:
        link = os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        continue
    if link.startswith("socket:["):
        inodes.add(link[8:-1])
n = 0
with open(f"/proc/{pid}/net/tcp") as f:
    next(f)
    for line in f:
        p = line.split()
        if p[3] == "01" and int(p[1].rsplit(":", 1)[1], 16) == port and p[9] in inodes:
            n += 1
print(n)
EOF
}

log_errors_of() { # error log: lines at level error or worse
    [[ -f $1 ]] || { echo 0; return; }
    grep -cE ':(error|crit|alert|emerg)\]|\[(error|crit|alert|emerg)\]|exit signal' "$1" || true
}

run_one() { # N TARGET
    local n=$1 target=$2 name=$2-$1 up_pid up_port server port url sizing='{}' errlog=
    local status=$RUN/$name.status out=$RUN/$name.client.json client_pid child=0 conns0=0
    local conns1=0 perf_out=$RUN/$name.perf syscalls=null expect_threads=0 count_s=0
    local ramp_ms=${STREAMS_RAMP_MS:-$((n > 2000 ? n : 2000))} now_us end_us
    rm -f "$RUN/$name.upstream.port"
    start "$name-upstream" "$STREAMER_UPSTREAM" -f "$RUN/$name.upstream.port" -k "$CHUNKS" \
        -d "$DELAY_MS" -b "$((2 * n > 4096 ? 2 * n : 4096))"
    up_pid=$STARTED_PID
    for _ in $(seq 100); do [[ -s $RUN/$name.upstream.port ]] && break; sleep 0.05; done
    up_port=$(cat "$RUN/$name.upstream.port" 2>/dev/null) || die "$name: the upstream wrote no port"
    wait_listen "$up_pid" "$up_port"
    case $target in
        direct)
            server=$up_pid port=$up_port url=http://127.0.0.1:$up_port/v1/chat/completions ;;
        proxy_http | oaip)
            port=$(free_port)
            sizing=$("$PY" "$BENCH_DIR/render_streams.py" httpd "$RUN" --name "$name" \
                --port "$port" --upstream-port "$up_port" --module "$MODULE" \
                --streams "$n" --threads-per-child "$TPC") || die "render_streams.py httpd"
            /usr/sbin/apache2 -t -f "$RUN/$name.conf" >"$RUN/$name-configtest.out" 2>&1 ||
                { cat "$RUN/$name-configtest.out" >&2; die "httpd config test ($name)"; }
            start "$name" /usr/sbin/apache2 -f "$RUN/$name.conf" -DFOREGROUND
            server=$STARTED_PID errlog=$RUN/$name-error.log
            wait_listen "$server" "$port"
            # every child and its threads started before the idle sample
            expect_threads=$("$PY" -c 'import json,sys; s=json.loads(sys.argv[1]);
print(s["servers"] * s["tpc"])' "$sizing")
            for _ in $(seq 300); do
                (($(tree_threads "$server") >= expect_threads)) && break
                sleep 0.1
            done
            (($(tree_threads "$server") >= expect_threads)) ||
                die "$name: httpd started $(tree_threads "$server") of $expect_threads threads"
            sleep 1 # the children's own start-up allocations settle
            if [[ $target == proxy_http ]]; then
                url=http://127.0.0.1:$port/proxy_http/v1/chat/completions
            else
                url=http://127.0.0.1:$port/oaip/chat/completions
            fi ;;
        nginx)
            port=$(free_port)
            sizing=$("$PY" "$BENCH_DIR/render_streams.py" nginx "$RUN" --name "$name" \
                --port "$port" --upstream-port "$up_port" --streams "$n") ||
                die "render_streams.py nginx"
            start_nginx "$name"
            server=$STARTED_PID errlog=$RUN/$name-error.log
            wait_listen "$server" "$port"
            for _ in $(seq 100); do (($(tree_threads "$server") >= 2)) && break; sleep 0.05; done
            sleep 0.5
            url=http://127.0.0.1:$port/v1/chat/completions ;;
        *) die "no stream target $target" ;;
    esac
    log "$name: $n streams of $CHUNKS chunks ${DELAY_MS} ms apart through $url"
    "$STREAMER_CLIENT" -u "$url" -n "$n" -k "$CHUNKS" -d "$DELAY_MS" -r "$ramp_ms" \
        -T "$((ramp_ms / 1000 + CHUNKS * DELAY_MS / 1000 + 60))" -P "$server" -s "$status" \
        >"$out" 2>"$RUN/$name.client.err" &
    client_pid=$!
    # system calls of one server process over a few seconds of the window
    # when every stream is open; the client marks the chunks delivered meanwhile
    while kill -0 "$client_pid" 2>/dev/null && ! grep -qE '^(allopen|finished)' "$status" 2>/dev/null; do
        sleep 0.05
    done
    if grep -q '^allopen' "$status" 2>/dev/null; then
        child=$(busiest_child "$server")
        # its connections: constant while every stream is open (the report
        # checks that the count ran inside the window)
        conns0=$(conns_of "$child" "$port")
        # count for STREAMS_SYSCALL_SECONDS, or what is left of the window
        # (less 0.3 s; the client estimates its end) when a loaded server
        # opened the streams late
        read -r _ _ end_us < <(grep '^allopen' "$status")
        now_us=$(date +%s%6N)
        count_s=$("$PY" -c 'import sys; print(round(max(0, min(float(sys.argv[1]),
            (int(sys.argv[2]) - int(sys.argv[3])) / 1e6 - 0.3)), 2))' "$SYSCALL_S" "$end_us" "$now_us")
        if [[ -n ${child:-} && $child != 0 ]] && "$PY" -c 'import sys; sys.exit(float(sys.argv[1]) < 0.3)' "$count_s"; then
            kill -USR1 "$client_pid"
            perf stat -x, -o "$perf_out" -e raw_syscalls:sys_enter -p "$child" -- \
                sleep "$count_s" 2>/dev/null || log "$name: perf stat failed"
            kill -USR1 "$client_pid" 2>/dev/null || true
            conns1=$conns0
            syscalls=$(awk -F, '$3 ~ /raw_syscalls:sys_enter/ {print $1}' "$perf_out" 2>/dev/null)
            [[ $syscalls =~ ^[0-9]+$ ]] || syscalls=null
        else
            log "$name: no system call count (busiest process '${child:-}', ${count_s} s left in the window)"
        fi
    fi
    wait "$client_pid" || die "$name: the stream client exited with $?: $(cat "$RUN/$name.client.err")"
    [[ -s $out ]] || die "$name: no result from the stream client"
    local errs
    errs=$(log_errors_of "$errlog")
    printf '{"n":%d,"target":"%s","sizing":%s,"syscall_child":%d,"child_conns":[%d,%d],"child_syscalls":%s,"syscall_seconds":%s,"log_errors":%d,"client":%s}\n' \
        "$n" "$target" "$sizing" "${child:-0}" "${conns0:-0}" "${conns1:-0}" "$syscalls" "$count_s" \
        "$errs" "$(cat "$out")" >>"$JSONL"
    "$PY" - "$(tail -n 1 "$JSONL")" "$DELAY_MS" <<'EOF' >&2
import json, sys
r = json.loads(sys.argv[1]); c = r["client"]; w = c.get("window") or {}
cpu = w.get("cpu_us", 0) / w["chunks"] if w.get("chunks") else float("nan")
print(f"[bench] {r['target']:10} N={r['n']:>5}: complete {c['complete']}/{c['streams']}, "
      f"chunks {c['chunks']}/{c['expected_chunks']}, delay p50 {c['delay_us']['p50'] / 1000:.2f} "
      f"p99 {c['delay_us']['p99'] / 1000:.2f} ms, CPU {cpu:.1f} us/chunk, "
      f"syscalls {r['child_syscalls']} by pid {r['syscall_child']} ({r['child_conns']} conns), "
      f"errors {c['errors']}, log errors {r['log_errors']}")
EOF
    [[ $target != direct ]] && stop_pid "$server"
    stop_pid "$up_pid"
}

for n in $NS; do
    for target in $TARGETS; do
        run_one "$n" "$target"
    done
done

REPORT_RC=0
"$PY" "$BENCH_DIR/streams_report.py" --jsonl "$JSONL" --chunks "$CHUNKS" --delay-ms "$DELAY_MS" \
    --ramp-ms "${STREAMS_RAMP_MS:-max(2000, N)}" --syscall-seconds "$SYSCALL_S" --module-info "$MODULE_INFO" \
    --out "$RESULTS/streams.md" --json "$RESULTS/streams.json" || REPORT_RC=$?
render_latest
exit "$REPORT_RC"
