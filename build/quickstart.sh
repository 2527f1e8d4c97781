#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to a running proxy:
#   sudo bash build/quickstart.sh                              (offline mock)
#   sudo OPENAI_API_KEY=sk-... bash build/quickstart.sh        (real OpenAI)
# Installs what is missing, builds the module, and runs httpd in the
# foreground on 127.0.0.1:${PORT:-8080} with the proxy at /v1 and a chat demo
# page at /demo/. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
port=${PORT:-8080}

bash build/deps.sh run
make -f Makefile.apxs >/dev/null

if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use; choose another with PORT=NNNN" >&2
    exit 1
fi

# httpd's children (www-data) must be able to walk this directory
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/mod_openai_proxy.XXXXXX")
chmod 755 "$run_dir"
mock_pid=
cleanup() {
    [[ -n $mock_pid ]] && kill "$mock_pid" 2>/dev/null || true
    rm -rf "$run_dir"
}
trap cleanup EXIT
mkdir "$run_dir/demo"
cp conf/demo/index.html "$run_dir/demo/"
chmod -R a+rX "$run_dir/demo"

if [[ -n ${OPENAI_API_KEY:-} ]]; then
    export OAIP_UPSTREAM=${OPENAI_BASE_URL:-https://api.openai.com/v1}
    export OAIP_UPSTREAM_KEY=$OPENAI_API_KEY
    export OAIP_MODEL=${OPENAI_MODEL:-gpt-4o-mini}
    what="OpenAI ($OAIP_UPSTREAM) with your OPENAI_API_KEY"
else
    python3 tests/mock_upstream/mock_upstream.py --port 0 \
        --port-file "$run_dir/mock.port" --quiet &
    mock_pid=$!
    for _ in $(seq 100); do [[ -s $run_dir/mock.port ]] && break; sleep 0.05; done
    export OAIP_UPSTREAM="http://127.0.0.1:$(cat "$run_dir/mock.port")/v1"
    export OAIP_UPSTREAM_KEY=sk-local-mock-key
    export OAIP_MODEL=gpt-4o-mini
    what="the bundled mock upstream at $OAIP_UPSTREAM (set OPENAI_API_KEY for the real API)"
fi
export OAIP_RUN_DIR=$run_dir OAIP_PORT=$port OAIP_REPO=$repo
export OAIP_MODULE=$repo/mod_openai_proxy/.libs/mod_openai_proxy.so
defines=()
[[ $(id -u) == 0 ]] && defines=(-DOAIP_AS_ROOT)

cat <<MSG
mod_openai_proxy is serving http://127.0.0.1:$port/v1, proxying to $what.
Chat demo: open http://127.0.0.1:$port/demo/ in a browser.
Counters: http://127.0.0.1:$port/proxy-status (add ?format=prometheus for a scrape).
Or try, in another terminal:
  curl -N http://127.0.0.1:$port/v1/chat/completions -H 'Content-Type: application/json' \\
       -d '{"messages":[{"role":"user","content":"Hello!"}],"stream":true}'
Press Ctrl-C to stop.
MSG
/usr/sbin/apache2 -f "$repo/build/quickstart.conf" "${defines[@]}" -DFOREGROUND &
httpd_pid=$!
trap 'kill -TERM $httpd_pid 2>/dev/null; wait $httpd_pid; cleanup' INT TERM
wait $httpd_pid
