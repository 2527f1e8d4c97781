#!/usr/bin/env bash
# Benchmark of mod_openai_proxy against mod_proxy_http, nginx proxy_pass, an
# httpd handler without upstream (the ceiling) and the upstream alone.
#   sudo bash tests/bench/run.sh
# See tests/bench/README.md. Everything runs on 127.0.0.1 under private
# configs in a temp dir; every process started here is stopped on exit.
# Knobs (environment): BENCH_DURATION (5 s per measurement), BENCH_WARMUP (1 s),
# BENCH_CONCURRENCY ("1 32"), BENCH_STREAMS (1000), BENCH_STREAM_CHUNKS (20),
# BENCH_STREAM_DELAY (0.5 s), BENCH_LAT_STREAMS (10), BENCH_LAT_CHUNKS (30),
# BENCH_LAT_DELAY (0.01 s), BENCH_KEEP=1 keeps the temp dir.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$BENCH_DIR/lib.sh"

DURATION=${BENCH_DURATION:-5}
WARMUP=${BENCH_WARMUP:-1}
CONCURRENCY=${BENCH_CONCURRENCY:-"1 32"}
STREAMS=${BENCH_STREAMS:-1000}
STREAM_CHUNKS=${BENCH_STREAM_CHUNKS:-20}
STREAM_DELAY=${BENCH_STREAM_DELAY:-0.5}
LAT_STREAMS=${BENCH_LAT_STREAMS:-10}
LAT_CHUNKS=${BENCH_LAT_CHUNKS:-30}
LAT_DELAY=${BENCH_LAT_DELAY:-0.01}
RESULTS=$BENCH_DIR/results

# 1-2. packages, module
ensure_packages "${BASE_PACKAGES[@]}"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(($(ulimit -n) >= 2 * STREAMS + 512)) || die "ulimit -n $(ulimit -n) too low for $STREAMS streams"
make_run_dir
build_module
build_ceiling

# 3. processes
start_upstreams
start_httpd httpd
log "mock upstream :$MOCK_PORT, nginx :$NGINX_PORT, nginx proxy :$NGINX_PROXY_PORT, httpd :$HTTPD_PORT ($RUN)"
check_targets
log "sanity: the ${#SHORT_TARGETS[@]} x 2 load targets answer 200 with the exact fixed bodies"

# LOG_ERRS: lines at level error or worse since the last call in httpd's
# error log (at LogLevel warn; a failed upstream exchange logs an error) and
# in the two nginx error logs (an upstream error of nginx proxy_pass)
declare -A LOG_SEEN=()
LOG_ERRS=0
new_log_errors() {
    local f n total=0 errs
    for f in "$RUN/httpd-error.log" "$RUN/nginx-error.log" "$RUN/nginx-proxy-error.log"; do
        [[ -f $f ]] || continue
        n=$(wc -l <"$f")
        errs=$(tail -n "+$((${LOG_SEEN[$f]:-0} + 1))" "$f" | head -n "$((n - ${LOG_SEEN[$f]:-0}))" |
            grep -cE ':(error|crit|alert|emerg)\]|\[(error|crit|alert|emerg)\]|exit signal' ||
            true)
        LOG_SEEN[$f]=$n
        total=$((total + errs))
    done
    LOG_ERRS=$total
}
new_log_errors

# --------------------------------------------------------------------------
# 4. throughput and latency with wrk
# --------------------------------------------------------------------------
WRK_JSONL=$RUN/wrk.jsonl
: >"$WRK_JSONL"
run_wrk() { # scenario target conc
    local scenario=$1 target=$2 c=$3 url stream=0 threads out line
    url=$(target_url "$scenario" "$target")
    [[ $scenario == sse ]] && stream=1
    threads=$((c < 2 ? c : 2))
    out=$RUN/wrk-$scenario-$target-$c.out
    BENCH_STREAM=$stream timeout $((WARMUP + 30)) wrk -t"$threads" -c"$c" -d"${WARMUP}s" \
        --timeout 5s -s "$BENCH_DIR/wrk_post.lua" "$url" >"$out.warmup" 2>&1 ||
        die "wrk warm-up $scenario $target c=$c"
    new_log_errors # the warm-up's errors count too
    local warm_errs=$LOG_ERRS server cpu0 cpu1
    server=$(server_pid "$target")
    cpu0=$("$PY" "$BENCH_DIR/sse_client.py" cpu --httpd-pid "$server")
    BENCH_STREAM=$stream timeout $((DURATION + 30)) wrk -t"$threads" -c"$c" -d"${DURATION}s" \
        --timeout 5s --latency -s "$BENCH_DIR/wrk_post.lua" "$url" >"$out" 2>&1 ||
        die "wrk $scenario $target c=$c"
    cpu1=$("$PY" "$BENCH_DIR/sse_client.py" cpu --httpd-pid "$server")
    line=$(grep '^BENCH_JSON ' "$out" | tail -n 1 | cut -d' ' -f2-)
    [[ -n $line ]] || { cat "$out" >&2; die "no result from wrk $scenario $target c=$c"; }
    new_log_errors
    printf '{"scenario":"%s","target":"%s","conc":%d,"log_errors":%d,"server_cpu_us":%d,"wrk":%s}\n' \
        "$scenario" "$target" "$c" "$((LOG_ERRS + warm_errs))" "$((cpu1 - cpu0))" "$line" \
        >>"$WRK_JSONL"
    "$PY" - "$(tail -n 1 "$WRK_JSONL")" <<'EOF' >&2
import json, sys
r = json.loads(sys.argv[1])
w = r["wrk"]
e = sum(w[k] for k in w if k.startswith("err_"))
n = max(w["requests"], 1)
print(f"[bench] {r['scenario']:5} {r['target']:11} c={r['conc']:>3}: "
      f"{w['requests'] / w['duration_us'] * 1e6:8.0f} req/s  p50 {w['lat_p50_us'] / 1000:6.2f} ms"
      f"  p99 {w['lat_p99_us'] / 1000:6.2f} ms  server CPU {r['server_cpu_us'] / n:5.1f} us/req"
      f"  {w['bytes'] / n:.0f} B/resp  wrk errors {e}  log errors {r['log_errors']}")
EOF
}
for scenario in plain sse; do
    for c in $CONCURRENCY; do
        for target in "${SHORT_TARGETS[@]}"; do
            run_wrk "$scenario" "$target" "$c"
        done
    done
done

# --------------------------------------------------------------------------
# 5. per-chunk latency, mock upstream with timestamps
# --------------------------------------------------------------------------
LAT_JSONL=$RUN/latency.jsonl
: >"$LAT_JSONL"
for target in direct proxy_http oaip; do
    res=$(timeout 120 "$PY" "$BENCH_DIR/sse_client.py" latency --url "$(target_url mock "$target")" \
        --streams "$LAT_STREAMS" --chunks "$LAT_CHUNKS" --chunk-delay "$LAT_DELAY") ||
        die "chunk latency $target"
    new_log_errors
    printf '{"target":"%s","log_errors":%d,"result":%s}\n' "$target" "$LOG_ERRS" "$res" \
        >>"$LAT_JSONL"
    log "chunk latency $target: $res"
done

# --------------------------------------------------------------------------
# 6. memory: 1,000 concurrent streams, each proxy on a fresh httpd
# --------------------------------------------------------------------------
stop_pid "$HTTPD_PID"
MEM_JSONL=$RUN/memory.jsonl
: >"$MEM_JSONL"
for target in proxy_http oaip; do
    start_httpd "mem_$target"
    sleep 2 # let the children finish starting their threads
    idle=$("$PY" "$BENCH_DIR/sse_client.py" rss --httpd-pid "$HTTPD_PID")
    log "memory $target: idle $idle; opening $STREAMS streams"
    loaded=$(timeout 180 "$PY" "$BENCH_DIR/sse_client.py" streams \
        --url "$(target_url mock "$target")" --count "$STREAMS" --chunks "$STREAM_CHUNKS" \
        --chunk-delay "$STREAM_DELAY" --httpd-pid "$HTTPD_PID") ||
        die "$STREAMS streams through $target"
    errs=$(grep -cE ':(error|crit|alert|emerg)\]|exit signal' "$RUN/mem_$target-error.log" || true)
    printf '{"target":"%s","log_errors":%d,"idle":%s,"loaded":%s}\n' \
        "$target" "$errs" "$idle" "$loaded" >>"$MEM_JSONL"
    log "memory $target: $loaded"
    stop_pid "$HTTPD_PID"
done

# --------------------------------------------------------------------------
# 7. the table (exit status 1 when any measurement had errors)
# --------------------------------------------------------------------------
"$PY" "$BENCH_DIR/report.py" --wrk "$WRK_JSONL" --latency "$LAT_JSONL" --memory "$MEM_JSONL" \
    --duration "$DURATION" --warmup "$WARMUP" --streams "$STREAMS" \
    --stream-chunks "$STREAM_CHUNKS" --stream-delay "$STREAM_DELAY" \
    --lat-streams "$LAT_STREAMS" --lat-chunks "$LAT_CHUNKS" --lat-delay "$LAT_DELAY" \
    --module-info "$MODULE_INFO" --out "$RESULTS/short.md" --json "$RESULTS/short.json" ||
    REPORT_RC=$?
render_latest
exit "${REPORT_RC:-0}"
