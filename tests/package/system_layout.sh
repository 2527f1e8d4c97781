#!/usr/bin/env bash
# The Debian package in the system layout (build/test.sh runs it after the
# integration tests; needs root):
#   sudo bash tests/package/system_layout.sh
#
# Builds the package (build/package.sh, lintian included) and installs it
# into the system apache2 with apt; checks that it did not enable itself;
# a2enmod openai_proxy; a site with the proxy on a free 127.0.0.1 port in
# front of the mock upstream (tests/mock_upstream) on another; apache2ctl
# configtest and start; one plain and one streamed chat completion with curl
# (and the demo page and the usage log the package ships); apache2ctl stop;
# apt-get purge with the module still enabled (its maintainer scripts must
# disable it).
#
# The system is left as it was found. For the time of the run
# /etc/apache2/ports.conf is swapped for one with only "Listen
# 127.0.0.1:PORT" (so the default site's port 80, taken or not, plays no
# part), the site oaip-systest is added and enabled (it also moves the
# server's ErrorLog to the run's directory, so /var/log/apache2 gets
# nothing), and /usr/sbin/policy-rc.d says no to service starts if there is
# none (so that the purge's "restart apache2" does not start the system's
# server). Each change is recorded in /var/tmp/oaip-systest/ (with the
# original ports.conf) before it is made; an EXIT trap undoes them, and so
# does the next run if this one was killed. The end compares /etc/apache2,
# /var/lib/apache2 and apache2's run and lock directories with a listing
# taken at the start.
#
# Exit status 77 (skipped): not root, the system apache2 is running, or the
# package is installed already: the test does not touch a server in use.
# OAIP_SYSTEST_TAKE_PORT=1 occupies the first port chosen, to exercise the
# retry when another process takes the port between choice and start.
set -euo pipefail
cd "$(dirname "$0")/../.."
pkg=libapache2-mod-openai-proxy
site=oaip-systest
state=/var/tmp/oaip-systest          # what the run changed, while it runs
marker="# oaip-systest: temporary"
pidfile=/var/run/apache2/apache2.pid
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
t0=$SECONDS

say() { printf '== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
skip() { printf 'SKIP: %s\n' "$*"; exit 77; }
# poll CONDITION-COMMAND... for at most $1 seconds, every 0.05 s
wait_for() {
    local deadline=$((SECONDS + $1)); shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.05
    done
}

[[ $(id -u) == 0 ]] || skip "needs root: sudo bash $0"
bash build/deps.sh package

# One run at a time on a machine: the lock is on /etc/apache2 itself (fd 9,
# which the servers this script starts do not inherit).
exec 9</etc/apache2
flock -w 900 9 || fail "another run holds the lock on /etc/apache2"

system_apache_pid() {
    local p
    [[ -r $pidfile ]] && p=$(<"$pidfile") && [[ $p =~ ^[0-9]+$ ]] &&
        kill -0 "$p" 2>/dev/null &&
        [[ $(readlink "/proc/$p/exe" 2>/dev/null) == /usr/sbin/apache2 ]] &&
        echo "$p"
}
manifest() {
    local d
    for d in /etc/apache2 /var/lib/apache2; do
        if [[ -e $d ]]; then
            find "$d" -printf '%y %m %u:%g %p -> %l\n' | LC_ALL=C sort
            find "$d" -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum
        fi
    done
    for d in /var/run/apache2 /var/lock/apache2; do
        [[ -e $d ]] && find "$d" -printf '%y %p\n' | LC_ALL=C sort
    done
    return 0
}
stop_apache() {  # apache2ctl stop, and wait until the server is gone
    local p
    p=$(system_apache_pid) || return 0
    apache2ctl stop >/dev/null 2>&1 || true
    if ! wait_for 30 eval '! kill -0 '"$p"' 2>/dev/null'; then
        echo "apache2 (pid $p) did not stop in 30 s; TERM, then KILL" >&2
        kill -TERM "$p" 2>/dev/null || true
        wait_for 10 eval '! kill -0 '"$p"' 2>/dev/null' || kill -KILL "$p" 2>/dev/null || true
        return 1
    fi
}
apt_get() {
    DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=300 \
        --no-install-recommends "$@"
}
pkg_present() {
    local st
    st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null) && [[ ${st:1:1} != n ]]
}

# Everything the run changes is written down in $state before it is done,
# so that undo() can take it back: from the EXIT trap, or, when a run was
# killed before its trap could run, at the start of the next run.
undo() (
    set +e
    # the system apache2 with this test's ports.conf is this test's server
    grep -qF "$marker" /etc/apache2/ports.conf 2>/dev/null && stop_apache
    if [[ -s $state/mock.pid ]]; then
        p=$(<"$state/mock.pid")
        # this run's mock: its --port-file is in this run's oaip-systest.* directory
        if grep -qaF oaip-systest. "/proc/$p/cmdline" 2>/dev/null; then
            kill "$p"
            wait_for 10 eval '! kill -0 '"$p"' 2>/dev/null'
        fi
    fi
    if [[ -e /etc/apache2/sites-enabled/$site.conf || -e /etc/apache2/sites-available/$site.conf ]]; then
        a2dissite -q -p "$site" >/dev/null 2>&1
        rm -f "/etc/apache2/sites-available/$site.conf" "/etc/apache2/sites-enabled/$site.conf"
    fi
    if [[ -e $state/ports.conf ]] &&
       { grep -qF "$marker" /etc/apache2/ports.conf 2>/dev/null || [[ ! -e /etc/apache2/ports.conf ]]; }; then
        mv -f "$state/ports.conf" /etc/apache2/ports.conf
    fi
    if [[ -e $state/installed ]] && pkg_present; then
        echo "undo: purging $pkg"
        # disabled first: the prerm's restart is for an enabled module
        a2query -q -m openai_proxy && a2dismod -q -p -f openai_proxy >/dev/null
        apt_get purge "$pkg" >"$state/purge.log" 2>&1 || cat "$state/purge.log" >&2
    fi
    if [[ -e $state/policy ]] && grep -qF "$marker" /usr/sbin/policy-rc.d 2>/dev/null; then
        rm -f /usr/sbin/policy-rc.d
    fi
    # the marker directories of a2enmod, a2ensite and the maintainer scripts
    if [[ -e $state/dirs-before.txt ]]; then
        find /var/lib/apache2 -depth -mindepth 1 -type d 2>/dev/null | while read -r d; do
            grep -qxF "$d" "$state/dirs-before.txt" || rmdir "$d" 2>/dev/null
        done
    fi
    # a2query and apache2ctl make apache2's run and lock directories
    if [[ -e $state/no-run-dir ]]; then
        rmdir /var/run/apache2/socks /var/run/apache2 2>/dev/null
    fi
    if [[ -e $state/no-lock-dir ]]; then
        rmdir /var/lock/apache2 2>/dev/null
    fi
    d=$(cat "$state/rundir" 2>/dev/null)
    [[ $d == /run/oaip-systest.* ]] && rm -rf "$d"
    rm -rf "$state"
    exit 0
)

if [[ -d $state ]]; then
    echo "note: undoing what an interrupted run left (recorded in $state)"
    old_tmp=$(cat "$state/tmp" 2>/dev/null || true)
    undo
    [[ $old_tmp == */oaip-systest.* ]] && rm -rf "$old_tmp"
fi
if p=$(system_apache_pid); then
    skip "the system apache2 is running (pid $p); this test starts and stops it"
fi
if [[ -d /run/systemd/system ]] && systemctl is-active --quiet apache2 2>/dev/null; then
    skip "apache2.service is active; this test starts and stops the system apache2"
fi
if pkg_present; then
    skip "$pkg is installed; this test would replace and purge it"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/oaip-systest.XXXXXX")
chmod 755 "$tmp"
taker_pid=
on_exit() {
    local rc=$?
    [[ -n $taker_pid ]] && kill "$taker_pid" 2>/dev/null
    undo
    if ((rc != 0)); then
        manifest >"$tmp/after.txt"
        if ! diff -u "$tmp/before.txt" "$tmp/after.txt" >"$tmp/diff.txt"; then
            echo "the system differs from before the run:" >&2
            cat "$tmp/diff.txt" >&2
        fi
    fi
    rm -rf "$tmp"
    exit "$rc"
}
manifest >"$tmp/before.txt"
mkdir -p "$state"
echo "$tmp" >"$state/tmp"
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
find /var/lib/apache2 -mindepth 1 -type d 2>/dev/null | LC_ALL=C sort >"$state/dirs-before.txt" || true
[[ -e /var/run/apache2 ]] || touch "$state/no-run-dir"
[[ -e /var/lock/apache2 ]] || touch "$state/no-lock-dir"
# apache2's logs and the key: not under /tmp, which is private to
# apache2.service where "apache2ctl start" means systemctl start
rundir=$(mktemp -d /run/oaip-systest.XXXXXX)
chmod 755 "$rundir"
echo "$rundir" >"$state/rundir"

say "build the package (build/package.sh)"
t_build=$SECONDS
bash build/package.sh "$tmp/out"
t_build=$((SECONDS - t_build))
arch=$(dpkg --print-architecture)
debs=("$tmp/out/${pkg}_"*"_$arch.deb")
[[ ${#debs[@]} == 1 && -e ${debs[0]} ]] || fail "expected one ${pkg}_*_$arch.deb in $tmp/out"
deb=${debs[0]}
chmod -R a+rX "$tmp/out"  # apt reads the file as _apt

# No service starts from the maintainer scripts: the purge below, with the
# module enabled, restarts apache2 through invoke-rc.d.
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    touch "$state/policy"
    printf '#!/bin/sh\n%s (tests/package/system_layout.sh)\nexit 101\n' "$marker" >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
fi
purge_enabled=1
if ! { /usr/sbin/policy-rc.d apache2 restart >/dev/null 2>&1; (($? == 101)); }; then
    echo "note: /usr/sbin/policy-rc.d allows service restarts; the module is disabled before the purge"
    purge_enabled=0
fi

say "install $(basename "$deb")"
touch "$state/installed"
apt_get install "$deb" >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log" >&2; fail "apt-get install"; }
[[ $(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg") == "ii " ]] || fail "$pkg is not installed"
for f in /usr/lib/apache2/modules/mod_openai_proxy.so \
         /etc/apache2/mods-available/openai_proxy.load \
         /etc/apache2/mods-available/openai_proxy.conf \
         /etc/apache2/mod_openai_proxy/openai_proxy_log.conf \
         "/usr/share/$pkg/demo/index.html" \
         "/usr/share/doc/$pkg/README.Debian" \
         "/usr/share/doc/$pkg/README.md.gz" \
         "/usr/share/doc/$pkg/examples/example-vhost.conf"; do
    [[ -f $f ]] || fail "the package did not install $f"
done
so=$(awk '$1 == "LoadModule" {print $3}' /etc/apache2/mods-available/openai_proxy.load)
[[ $so == /usr/lib/apache2/modules/mod_openai_proxy.so ]] || fail "openai_proxy.load loads '$so'"
if [[ -e /etc/apache2/mods-enabled/openai_proxy.load ]] || a2query -q -m openai_proxy; then
    fail "the package enabled the module on installation"
fi
echo "installed, not enabled (a2query -m openai_proxy: $(a2query -m openai_proxy 2>&1 || true))"

say "a2enmod openai_proxy"
a2enmod -q openai_proxy
a2query -q -m openai_proxy || fail "a2enmod did not enable openai_proxy"

# the mock upstream on a loopback port it picks itself
/usr/bin/python3 tests/mock_upstream/mock_upstream.py --port 0 \
    --port-file "$tmp/mock.port" --quiet >"$tmp/mock.out" 2>&1 9<&- &
echo $! >"$state/mock.pid"
wait_for 15 test -s "$tmp/mock.port" || fail "the mock upstream did not start"
mock_port=$(<"$tmp/mock.port")
mock=http://127.0.0.1:$mock_port

key=sk-oaip-systest-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
(umask 077; printf '%s\n' "$key" >"$rundir/openai.key")
nonce=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
mkdir -p "$rundir/docroot"
syslog=$rundir/server-error.log  # the server's ErrorLog (the site sets it)
chmod 755 "$rundir/docroot"

free_port() {
    /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
write_config() {
    local port=$1
    [[ -e $state/ports.conf ]] || mv /etc/apache2/ports.conf "$state/ports.conf"
    cat >/etc/apache2/ports.conf <<EOF
$marker, written by tests/package/system_layout.sh for
# the time of its run; the original is $state/ports.conf.
Listen 127.0.0.1:$port
EOF
    cat >"/etc/apache2/sites-available/$site.conf" <<EOF
# oaip-systest: written by tests/package/system_layout.sh, removed when it ends
Include /etc/apache2/mod_openai_proxy/openai_proxy_log.conf
ErrorLog $syslog
<VirtualHost 127.0.0.1:$port>
    ServerName oaip-systest.localhost
    DocumentRoot $rundir/docroot
    <Directory $rundir/docroot>
        Require all granted
    </Directory>
    ErrorLog $rundir/error.log
    CustomLog $rundir/access.log openai_proxy
    ErrorDocument 404 "oaip-systest $nonce"

    OpenAIProxyAPIKey file:$rundir/openai.key
    OpenAIProxyUpstream $mock/v1
    <Location /v1>
        SetHandler openai-proxy
    </Location>
    <IfModule alias_module>
        Alias /demo/ /usr/share/$pkg/demo/
    </IfModule>
</VirtualHost>
EOF
    a2query -q -s "$site" || a2ensite -q "$site"
}
new_log() {  # what the server's error log got since the offset in $log_offset
    tail -c "+$((log_offset + 1))" "$syslog" 2>/dev/null || true
}
ours_answers() {  # the server on $port is this run's apache2
    [[ $(curl -s -m 2 "http://127.0.0.1:$port/oaip-systest-probe" 2>/dev/null) == *"$nonce"* ]]
}
lost_port() {
    grep -qE 'Address already in use|could not bind|no listening sockets' "$tmp/start.out" 2>/dev/null ||
        new_log | grep -qE 'Address already in use|could not bind|no listening sockets'
}
ready_or_lost() { ours_answers || { ! system_apache_pid >/dev/null && lost_port; }; }

say "site $site on 127.0.0.1, apache2ctl configtest and start"
port=
for attempt in 1 2 3 4 5; do
    port=$(free_port)
    if [[ ${OAIP_SYSTEST_TAKE_PORT:-0} == 1 && $attempt == 1 ]]; then
        /usr/bin/python3 -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); time.sleep(300)' "$port" 9<&- &
        taker_pid=$!
        wait_for 10 eval "(exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null" || fail "could not take port $port"
        echo "note: port $port taken on purpose (OAIP_SYSTEST_TAKE_PORT=1)"
    fi
    write_config "$port"
    apache2ctl configtest >"$tmp/configtest.out" 2>&1 || { cat "$tmp/configtest.out" >&2; fail "apache2ctl configtest"; }
    grep -q "Syntax OK" "$tmp/configtest.out" || { cat "$tmp/configtest.out" >&2; fail "configtest: no 'Syntax OK'"; }
    log_offset=$(stat -c %s "$syslog" 2>/dev/null || echo 0)
    apache2ctl start >"$tmp/start.out" 2>&1 9<&- || true  # the lock stays with us
    if wait_for 30 ready_or_lost && ours_answers; then
        break
    fi
    if lost_port; then
        echo "note: port $port was taken before apache2 could bind it; another port"
        stop_apache || true
        if [[ -n $taker_pid ]]; then
            kill "$taker_pid" 2>/dev/null || true
            wait "$taker_pid" 2>/dev/null || true
            taker_pid=
        fi
        port=
        continue
    fi
    cat "$tmp/start.out" >&2
    new_log | tail -n 20 >&2
    fail "apache2 did not answer on 127.0.0.1:$port within 30 s"
done
[[ -n $port ]] || fail "no free port after 5 attempts"
base=http://127.0.0.1:$port
echo "apache2 (pid $(system_apache_pid)) answers on $base; the mock upstream is on $mock"

say "a plain chat completion"
code=$(curl -sS --noproxy '*' -m 30 -o "$tmp/plain.json" -w '%{http_code}' \
    -H 'Content-Type: application/json' \
    -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello!"}],"mock":{"reply":"Hello from the system layout"}}' \
    "$base/v1/chat/completions")
[[ $code == 200 ]] || { cat "$tmp/plain.json" >&2; fail "plain request: HTTP $code"; }
/usr/bin/python3 - "$tmp/plain.json" <<'EOF' || fail "plain request: unexpected answer"
import json, sys
answer = json.load(open(sys.argv[1]))
assert answer["object"] == "chat.completion", answer
content = answer["choices"][0]["message"]["content"]
assert content == "Hello from the system layout", content
print(f"200 chat.completion: {content!r}, usage {answer.get('usage')}")
EOF

say "a streamed chat completion"
curl -sS --noproxy '*' -N -m 30 -D "$tmp/stream.headers" -o "$tmp/stream.txt" \
    -H 'Content-Type: application/json' \
    -d '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Hello!"}],"mock":{"chunks":5,"chunk_delay":0.01}}' \
    "$base/v1/chat/completions"
/usr/bin/python3 - "$tmp/stream.headers" "$tmp/stream.txt" <<'EOF' || fail "streamed request: unexpected answer"
import json, sys
head = open(sys.argv[1]).read().splitlines()
assert head[0].split()[1] == "200", head[0]
ctype = [h.split(":", 1)[1].strip() for h in head if h.lower().startswith("content-type:")]
assert ctype and ctype[0].startswith("text/event-stream"), ctype
data = [l[len("data: "):] for l in open(sys.argv[2]).read().split("\n") if l.startswith("data: ")]
assert len(data) >= 3, data
assert data[-1] == "[DONE]", data[-1]
text = "".join((json.loads(d)["choices"] or [{}])[0].get("delta", {}).get("content") or ""
               for d in data[:-1])
assert text == "tok0 tok1 tok2 tok3 tok4 ", repr(text)
print(f"200 text/event-stream: {len(data)} data: events, the last [DONE], content {text!r}")
EOF

# the key went upstream, from the file, as a bearer token
curl -s --noproxy '*' -m 10 "$mock/__mock/requests" >"$tmp/records.json"
/usr/bin/python3 - "$tmp/records.json" "$key" <<'EOF' || fail "the upstream did not get the key"
import json, sys
records = json.load(open(sys.argv[1]))
records = records.get("requests", records) if isinstance(records, dict) else records
chats = [r for r in records if r["path"].endswith("/chat/completions")]
assert len(chats) == 2, [r["path"] for r in records]
assert all(r["headers"].get("authorization") == "Bearer " + sys.argv[2] for r in chats)
print("the mock upstream got both requests with the key from the file")
EOF

if a2query -q -m alias; then
    code=$(curl -sS --noproxy '*' -m 10 -o "$tmp/demo.html" -w '%{http_code}' "$base/demo/")
    [[ $code == 200 ]] && cmp -s "$tmp/demo.html" "/usr/share/$pkg/demo/index.html" ||
        fail "the demo page: HTTP $code, not the installed index.html"
    echo "the demo page (Alias /demo/ /usr/share/$pkg/demo/): 200, the installed file"
fi

usage_lines() { [[ $(grep -c 'outcome=ok' "$rundir/access.log" 2>/dev/null) -ge 2 ]]; }
wait_for 10 usage_lines || { cat "$rundir/access.log" >&2; fail "no usage log lines (openai_proxy_log.conf)"; }
grep -q 'stream=1 outcome=ok' "$rundir/access.log" || fail "no stream=1 line in the usage log"
echo "usage log (openai_proxy_log.conf):"
grep 'outcome=ok' "$rundir/access.log" | sed 's/^/  /'

say "apache2ctl stop"
apache_pid=$(system_apache_pid)
stop_apache || fail "apache2 did not stop"
[[ ! -e $pidfile ]] || fail "$pidfile is still there after the stop"
if new_log | grep -E 'AH00052|Segmentation|child pid [0-9]+ exit signal' >&2; then
    fail "an apache2 child crashed (above, from $syslog)"
fi
echo "stopped (pid $apache_pid is gone)"

say "remove the site, put ports.conf back, purge the package"
a2dissite -q -p "$site"
rm -f "/etc/apache2/sites-available/$site.conf"
mv -f "$state/ports.conf" /etc/apache2/ports.conf
if ((!purge_enabled)); then
    a2dismod -q -p openai_proxy
fi
apt_get purge "$pkg" >"$tmp/purge.log" 2>&1 || { cat "$tmp/purge.log" >&2; fail "apt-get purge"; }
[[ $(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true) == @(|un |pn ) ]] ||
    fail "$pkg is still known to dpkg after the purge"
for f in /etc/apache2/mods-enabled/openai_proxy.load /etc/apache2/mods-enabled/openai_proxy.conf \
         /etc/apache2/mods-available/openai_proxy.load /etc/apache2/mod_openai_proxy \
         /usr/lib/apache2/modules/mod_openai_proxy.so "/usr/share/$pkg"; do
    [[ ! -e $f && ! -L $f ]] || fail "$f is still there after the purge"
done
if p=$(system_apache_pid); then
    fail "apache2 runs again after the purge (pid $p)"
fi
((purge_enabled)) && echo "purged with the module enabled: its prerm disabled it, no restart took place"

trap - EXIT
undo
manifest >"$tmp/after.txt"
if ! diff -u "$tmp/before.txt" "$tmp/after.txt" >&2; then
    rm -rf "$tmp"
    fail "/etc/apache2, /var/lib/apache2 or apache2's run directories differ from before the run (above)"
fi
rm -rf "$tmp"
echo "/etc/apache2, /var/lib/apache2 and apache2's run and lock directories are as before"
say "system layout: OK in $((SECONDS - t0)) s (package build and lintian: $t_build s)"
