# shellcheck shell=bash
# Shared by run.sh and profile.sh (sourced, not run): packages, build, and the
# private processes (mock upstream, nginx, httpd) on loopback, each started
# under setsid in its own process group and stopped by the EXIT trap.
# Needs: BENCH_DIR set by the caller.

REPO=$(cd "$BENCH_DIR/../.." && pwd)
PY=/usr/bin/python3

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (httpd and nginx drop their workers to www-data)"

# ensure_packages PKG...: installs the missing ones from Debian (apt-get update
# only when something is missing); the maintainer scripts may not start a
# system nginx or apache2 meanwhile.
ensure_packages() {
    local p missing=() policy=/usr/sbin/policy-rc.d made_policy=0 rc=0
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    log "installing missing Debian packages: ${missing[*]}"
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null || rc=$?
    ((made_policy)) && rm -f "$policy"
    ((rc == 0)) || die "apt-get install ${missing[*]}"
}

# shellcheck disable=SC2034 # used by run.sh and profile.sh
BASE_PACKAGES=(nginx wrk apache2 apache2-dev libcurl4-openssl-dev libjansson-dev make gcc
               python3 curl iproute2 procps coreutils util-linux)

# build_module: a private release build of the work tree's current sources in
# $RUN/src (the same Makefile.apxs, run on a copy), so that the work tree's
# own build products (possibly an ASan build, or a rebuild in progress by
# someone else) neither disturb nor are disturbed by the benchmark.
# BENCH_MODULE=/path/to/mod_openai_proxy.so measures that file instead.
# Sets MODULE (the .so httpd loads) and MODULE_INFO. Needs RUN.
build_module() {
    local src=$RUN/src
    if [[ -n ${BENCH_MODULE:-} ]]; then
        [[ -f $BENCH_MODULE ]] || die "BENCH_MODULE=$BENCH_MODULE: no such file"
        cp "$BENCH_MODULE" "$RUN/mod_openai_proxy.so"
        MODULE_INFO="$BENCH_MODULE (given), sha256 $(sha256sum "$BENCH_MODULE" | cut -c1-12)"
    else
        log "building the module (make -f Makefile.apxs, on a copy of the sources)"
        mkdir -p "$src/mod_openai_proxy"
        cp "$REPO/Makefile.apxs" "$src/"
        # the module's sources and its layers' folders (core/, engine/...)
        (cd "$REPO" && find mod_openai_proxy -name '*.[ch]' -exec cp --parents {} "$src/" \;)
        make -C "$src" -f Makefile.apxs >"$RUN/build.out" 2>&1 ||
            { tail -n 30 "$RUN/build.out" >&2; die "module build"; }
        cp "$src/mod_openai_proxy/.libs/mod_openai_proxy.so" "$RUN/mod_openai_proxy.so"
        # which sources were measured (read-only git queries)
        MODULE_INFO="built from commit $(git -C "$REPO" log -1 --format='%h' 2>/dev/null ||
            echo '?')"
        git -C "$REPO" diff --quiet HEAD -- mod_openai_proxy 2>/dev/null ||
            MODULE_INFO+=" + uncommitted changes in mod_openai_proxy/"
        MODULE_INFO+=", sha256 $(find "$src/mod_openai_proxy" -name '*.[ch]' | sort | xargs cat | sha256sum | cut -c1-12) of the sources"
    fi
    MODULE=$RUN/mod_openai_proxy.so
    if ldd "$MODULE" 2>/dev/null | grep -q libasan; then
        die "$MODULE is an ASan build: measure a release build"
    fi
    log "module: $MODULE_INFO"
}

# ---------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------
PIDS=()
RUN=
# make_run_dir: the private temp dir; httpd's and nginx's workers (www-data)
# must traverse it
make_run_dir() {
    RUN=$(mktemp -d /tmp/oaip-bench.XXXXXX)
    chmod 755 "$RUN"
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}

cleanup() {
    local rc=$? pid f
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if ((rc != 0)) && [[ -n $RUN ]]; then
        for f in "$RUN"/*error.log "$RUN"/mock.out "$RUN"/nginx.out "$RUN"/httpd*.out; do
            [[ -s $f ]] && { log "--- tail of $f"; tail -n 15 "$f" >&2; }
        done
    fi
    if [[ -n $RUN ]]; then
        if [[ ${BENCH_KEEP:-0} == 1 ]]; then log "kept $RUN"; else rm -rf "$RUN"; fi
    fi
    exit "$rc"
}

free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start NAME CMD...: runs CMD under setsid (its own session and process
# group, so that the whole group can be stopped), output to $RUN/NAME.out;
# sets STARTED_PID.
start() {
    local name=$1
    shift
    setsid "$@" >"$RUN/$name.out" 2>&1 </dev/null &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
}

# wait_listen PID PORT: until that very process listens on 127.0.0.1:PORT
wait_listen() {
    local pid=$1 port=$2
    for _ in $(seq 200); do
        kill -0 "$pid" 2>/dev/null || die "process $pid exited before listening on $port"
        ss -Hltnp "sport = :$port" 2>/dev/null | grep -q "pid=$pid," && return 0
        sleep 0.05
    done
    die "process $pid does not listen on $port"
}

# stop_pid PID: stops one process group started here, waits for it
stop_pid() {
    local pid=$1
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# start_upstreams: the mock upstream, the configs, nginx. Sets MOCK_PID,
# MOCK_PORT, NGINX_PID, NGINX_PORT.
start_upstreams() {
    local port_file=$RUN/mock.port
    start mock "$PY" "$REPO/tests/mock_upstream/mock_upstream.py" --host 127.0.0.1 \
        --port 0 --port-file "$port_file" --quiet
    MOCK_PID=$STARTED_PID
    for _ in $(seq 200); do [[ -s $port_file ]] && break; sleep 0.05; done
    MOCK_PORT=$(cat "$port_file" 2>/dev/null) || die "the mock upstream wrote no port"
    wait_listen "$MOCK_PID" "$MOCK_PORT"

    NGINX_PORT=$(free_port)
    "$PY" "$BENCH_DIR/render.py" "$RUN" --nginx-port "$NGINX_PORT" \
        --mock-port "$MOCK_PORT" --module "$MODULE" >/dev/null || die "render.py"
    /usr/sbin/nginx -t -q -p "$RUN" -e "$RUN/nginx-error.log" -c "$RUN/nginx.conf" ||
        die "nginx config test"
    start nginx /usr/sbin/nginx -p "$RUN" -e "$RUN/nginx-error.log" -c "$RUN/nginx.conf" \
        -g 'daemon off;'
    NGINX_PID=$STARTED_PID
    wait_listen "$NGINX_PID" "$NGINX_PORT"
}

# start_httpd NAME [apache2 args...]: a fresh httpd from httpd.conf.in on a
# free port; sets HTTPD_PID and HTTPD_PORT. Waits until its pid file names it
# and it listens.
start_httpd() {
    local name=$1
    shift
    HTTPD_PORT=$(free_port)
    sed -e "s/@NAME@/$name/g" -e "s/@PORT@/$HTTPD_PORT/g" "$RUN/httpd.conf.in" \
        >"$RUN/$name.conf"
    /usr/sbin/apache2 -t -f "$RUN/$name.conf" >"$RUN/$name-configtest.out" 2>&1 ||
        { cat "$RUN/$name-configtest.out" >&2; die "httpd config test"; }
    start "$name" /usr/sbin/apache2 -f "$RUN/$name.conf" -DFOREGROUND "$@"
    HTTPD_PID=$STARTED_PID
    wait_listen "$HTTPD_PID" "$HTTPD_PORT"
    for _ in $(seq 100); do
        [[ $(cat "$RUN/$name.pid" 2>/dev/null) == "$HTTPD_PID" ]] && return 0
        sleep 0.05
    done
    die "httpd $name: its pid file does not name $HTTPD_PID"
}

BODY_PLAIN='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}'
BODY_SSE='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}],"stream":true}'

# target_url SCENARIO TARGET: the URL a load test of that cell uses
target_url() {
    local nginx=http://127.0.0.1:$NGINX_PORT httpd=http://127.0.0.1:$HTTPD_PORT
    case $1/$2 in
        plain/direct) echo "$nginx/plain/v1/chat/completions" ;;
        plain/proxy_http) echo "$httpd/proxy_http/plain/v1/chat/completions" ;;
        plain/oaip) echo "$httpd/oaip_plain/chat/completions" ;;
        sse/direct) echo "$nginx/sse/v1/chat/completions" ;;
        sse/proxy_http) echo "$httpd/proxy_http/sse/v1/chat/completions" ;;
        sse/oaip) echo "$httpd/oaip_sse/chat/completions" ;;
        mock/direct) echo "http://127.0.0.1:$MOCK_PORT/v1/chat/completions" ;;
        mock/proxy_http) echo "$httpd/proxy_http/mock/v1/chat/completions" ;;
        mock/oaip) echo "$httpd/oaip_mock/chat/completions" ;;
        *) die "no target $1/$2" ;;
    esac
}

# check_targets: every wrk target answers 200 with the exact fixed body
check_targets() {
    local scenario target body expect code
    for scenario in plain sse; do
        body=$BODY_PLAIN expect=$RUN/plain.json
        [[ $scenario == sse ]] && { body=$BODY_SSE; expect=$RUN/sse.txt; }
        for target in direct proxy_http oaip; do
            code=$(timeout 10 curl -sS -o "$RUN/check.body" -w '%{http_code}' -X POST \
                -H 'Content-Type: application/json' --data-binary "$body" \
                "$(target_url "$scenario" "$target")") || die "curl $scenario/$target"
            [[ $code == 200 ]] ||
                { head -c 300 "$RUN/check.body" >&2; die "$scenario/$target: HTTP $code"; }
            cmp -s "$RUN/check.body" "$expect" ||
                die "$scenario/$target: the body differs from $expect"
        done
    done
}
