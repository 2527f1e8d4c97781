#!/usr/bin/env bash
# What rate limits and token budgets cost: the plain proxy cell of run.sh
# (nginx sends a fixed chat.completion with usage) without limits, with a
# rate limit and a token budget counted in shared memory, and with both
# counted in a local redis-server. Same httpd config otherwise; each httpd
# is measured without limits and with them in alternating rounds, and each
# ratio is against the rounds without limits of the same httpd, so that a
# machine shared with other work compares like with like.
#   sudo bash tests/bench/limits.sh
# Knobs: BENCH_DURATION (5 s), BENCH_CONCURRENCY ("1 16"), BENCH_ROUNDS (3);
# BENCH_BASELINE_MODULE=/path/to/mod_openai_proxy.so also runs that build
# on the redis config, in the same rounds (a before/after on one machine
# state).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$BENCH_DIR/lib.sh"

DURATION=${BENCH_DURATION:-5}
CONCURRENCY=${BENCH_CONCURRENCY:-"1 16"}
ROUNDS=${BENCH_ROUNDS:-3}

ensure_packages "${BASE_PACKAGES[@]}" redis-server
make_run_dir
build_module
build_ceiling
start_upstreams

REDIS_PORT=$(free_port)
start redis /usr/bin/redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
    --appendonly no --dir "$RUN"
wait_listen "$STARTED_PID" "$REDIS_PORT"

# limits far above what the benchmark reaches: every request is counted and
# charged, none is refused
cat >>"$RUN/httpd.conf.in" <<EOF
<Location /oaip_limited>
    SetHandler openai-proxy
    OpenAIProxyUpstream http://127.0.0.1:$NGINX_PORT/plain/v1
    OpenAIProxyAPIKey sk-bench
    OpenAIProxyRateLimit 4000000000/h
    OpenAIProxyTokenBudget 4000M/h
</Location>
EOF
cp "$RUN/httpd.conf.in" "$RUN/httpd-shm.conf.in"
{ cat "$RUN/httpd-shm.conf.in"; echo "OpenAIProxyCounterStore redis://127.0.0.1:$REDIS_PORT"; } \
    >"$RUN/httpd-redis.conf.in"

RESULTS_JSONL=$RUN/limits.jsonl
: >"$RESULTS_JSONL"
# what redis did meanwhile, from INFO: exchanges (reads), commands, CPU
redis_stats() {
    redis-cli -p "$REDIS_PORT" INFO | tr -d '\r' | awk -F: '
        $1 == "total_reads_processed" { r = $2 } $1 == "total_commands_processed" { c = $2 }
        $1 == "used_cpu_user" { u = $2 } $1 == "used_cpu_sys" { s = $2 }
        END { printf "{\"reads\":%d,\"commands\":%d,\"cpu\":%f}", r, c, u + s }'
}

measure() { # label path conc
    local label=$1 path=$2 c=$3 out line before after
    out=$RUN/wrk-$label-$c.out
    timeout $((DURATION + 30)) wrk -t1 -c"$c" -d1s -s "$BENCH_DIR/wrk_post.lua" \
        "http://127.0.0.1:$HTTPD_PORT$path" >/dev/null 2>&1 || die "wrk warm-up $label"
    before=$(redis_stats)
    timeout $((DURATION + 30)) wrk -t1 -c"$c" -d"${DURATION}s" --latency \
        -s "$BENCH_DIR/wrk_post.lua" "http://127.0.0.1:$HTTPD_PORT$path" >"$out" 2>&1 ||
        die "wrk $label c=$c"
    after=$(redis_stats)
    line=$(sed -n 's/^BENCH_JSON //p' "$out")
    [[ -n $line ]] || { cat "$out" >&2; die "no result from wrk $label c=$c"; }
    printf '{"label":"%s","conc":%d,"wrk":%s,"redis_before":%s,"redis_after":%s}\n' \
        "$label" "$c" "$line" "$before" "$after" >>"$RESULTS_JSONL"
}

BASELINE=${BENCH_BASELINE_MODULE:-}
[[ -z $BASELINE || -f $BASELINE ]] || die "BENCH_BASELINE_MODULE=$BASELINE: no such file"

for store in shm redis; do
    cp "$RUN/httpd-$store.conf.in" "$RUN/httpd.conf.in"
    names=("limits_$store")
    start_httpd "limits_$store"
    ports=("$HTTPD_PORT") pids=("$HTTPD_PID") labels=("$store")
    if [[ $store == redis && -n $BASELINE ]]; then
        cp "$BASELINE" "$RUN/baseline.so"
        sed "s|^LoadModule openai_proxy_module .*|LoadModule openai_proxy_module $RUN/baseline.so|" \
            "$RUN/httpd-redis.conf.in" >"$RUN/httpd.conf.in"
        names+=("limits_baseline")
        start_httpd limits_baseline
        ports+=("$HTTPD_PORT") pids+=("$HTTPD_PID") labels+=(baseline)
    fi
    for c in $CONCURRENCY; do
        for round in $(seq "$ROUNDS"); do
            for i in "${!ports[@]}"; do
                HTTPD_PORT=${ports[$i]}
                log "${labels[$i]} c=$c round $round"
                measure "none_${labels[$i]}" /oaip_plain/chat/completions "$c"
                measure "${labels[$i]}" /oaip_limited/chat/completions "$c"
            done
        done
    done
    for i in "${!ports[@]}"; do
        errors=$(grep -cE ':(warn|error|crit|alert|emerg)\]|exit signal' \
            "$RUN/${names[$i]}-error.log" || true)
        ((errors == 0)) || die "$errors warnings or errors in the ${names[$i]} httpd's log"
        stop_pid "${pids[$i]}"
    done
done

"$PY" - "$RESULTS_JSONL" "$DURATION" "$ROUNDS" "$MODULE_INFO" <<'EOF'
import json, statistics, sys
path, duration, rounds, module = sys.argv[1:5]
rows = [json.loads(l) for l in open(path)]
def rate(r):
    w = r["wrk"]
    errors = sum(w[k] for k in w if k.startswith("err_"))
    if errors:
        sys.exit(f"wrk errors in {r['label']} c={r['conc']}: {w}")
    return w["requests"] / w["duration_us"] * 1e6
cells = {}
for r in rows:
    cells.setdefault((r["label"], r["conc"]), []).append(rate(r))
print(f"Limits cost, {module}; wrk -t1, {duration} s x {rounds} rounds per cell, "
      "median req/s; ratio against no limits.\n")
stores = ["shm", "redis"] + (["baseline"] if any(k[0] == "baseline" for k in cells) else [])
heads = {"shm": "shm: rate limit + budget", "redis": "redis: same",
         "baseline": "redis, BENCH_BASELINE_MODULE"}
print("| concurrency | " + " | ".join(f"no limits | {heads[s]} | ratio" for s in stores) + " |")
print("|---" * (1 + 3 * len(stores)) + "|")
for c in sorted({k[1] for k in cells}):
    row = [str(c)]
    for store in stores:
        base = statistics.median(cells[(f"none_{store}", c)])
        limited = statistics.median(cells[(store, c)])
        row += [f"{base:.0f}", f"{limited:.0f}", f"{limited / base:.2f}"]
    print("| " + " | ".join(row) + " |")
print("\nWhat redis did per request with limits (INFO deltas over the measured runs; "
      "an exchange is one read of a connection):\n")
print("| build | concurrency | exchanges | commands | redis CPU µs |")
print("|---|---|---|---|---|")
for store in stores[1:]:
    for c in sorted({k[1] for k in cells}):
        runs = [r for r in rows if r["label"] == store and r["conc"] == c]
        n = sum(r["wrk"]["requests"] for r in runs)
        d = {k: sum(r["redis_after"][k] - r["redis_before"][k] for r in runs)
             for k in ("reads", "commands", "cpu")}
        print(f"| {'this' if store == 'redis' else 'baseline'} | {c} | {d['reads'] / n:.2f} | "
              f"{d['commands'] / n:.2f} | {d['cpu'] / n * 1e6:.1f} |")
EOF
