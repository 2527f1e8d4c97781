"""Counter stores shared by a cluster: a real redis-server and memcached
(Debian's) on loopback, two httpd instances counting against one limit, and
the store going away (OpenAIProxyCounterStoreFail open / closed)."""

import os
import shutil
import signal
import socket
import subprocess

import pytest

from harness import TEST_KEY, free_port, pid_listens, reserve_dead_port, wait_for

MESSAGES = [{"role": "user", "content": "one two three"}]
REDIS_PASSWORD = "redis-pw-not-for-logs"


def require(binary, package):
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} is missing: apt-get install {package} "
                    "(build/deps.sh test installs it)", pytrace=False)
    return path


class Server:
    """A store server on a loopback port, stopped with the test. `argv` is a
    function of the port: a port picked free may be taken by another process
    before the server binds it, so a start that loses it tries a new one."""

    ATTEMPTS = 5

    def __init__(self, argv):
        self.argv = argv
        self.port = None
        self.proc = None

    def start(self):
        for _ in range(self.ATTEMPTS):
            if self.start_on(free_port()):
                return self
        raise RuntimeError(f"no free port for {self.argv(0)[0]}")

    def start_on(self, port):
        """Starts on `port`; False if the server exited (it could not bind)."""
        self.port = port
        self.proc = subprocess.Popen(self.argv(port), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        state = wait_for(lambda: ("exited" if self.proc.poll() is not None else
                                  pid_listens(self.proc.pid, port) and "listening"),
                         10, f"{self.argv(port)[0]} on {port}")
        return state == "listening"

    def restart(self):
        """Starts again on the same port (the httpd configs name it)."""
        assert self.start_on(self.port), f"port {self.port} was taken while the store was away"

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)


@pytest.fixture
def redis_server(workdir):
    binary = require("redis-server", "redis-server")
    data = os.path.join(workdir, "redis-data")
    os.makedirs(data, exist_ok=True)
    server = Server(lambda port: [binary, "--port", str(port), "--bind", "127.0.0.1",
                                  "--save", "", "--appendonly", "no", "--dir", data,
                                  "--requirepass", REDIS_PASSWORD]).start()
    yield server
    server.stop()


@pytest.fixture
def memcached_server():
    binary = require("memcached", "memcached")
    server = Server(lambda port: [binary, "-p", str(port), "-l", "127.0.0.1", "-U", "0",
                                  "-u", "nobody"]).start()
    yield server
    server.stop()


def redis_command(port, *args):
    """One command over RESP; returns the raw reply line(s)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        out = b""
        for command in (["AUTH", REDIS_PASSWORD], list(args)):
            payload = f"*{len(command)}\r\n".encode()
            for a in command:
                a = str(a).encode()
                payload += b"$%d\r\n%s\r\n" % (len(a), a)
            s.sendall(payload)
            out = s.recv(65536)
        return out.decode()


def redis_keys(port):
    reply = redis_command(port, "KEYS", "oaip:*")
    return [line for line in reply.split("\r\n") if line.startswith("oaip:")]


def cluster_config(mock, store, limit="5/h", fail=None):
    return (f"OpenAIProxyCounterStore {store}\n"
            + (f"OpenAIProxyCounterStoreFail {fail}\n" if fail else "")
            + "<VirtualHost 127.0.0.1:*>\n  ServerName api.cluster.test\n"
            f"  <Location /v1>\n    SetHandler openai-proxy\n"
            f"    OpenAIProxyUpstream {mock.api}\n    OpenAIProxyAPIKey {TEST_KEY}\n"
            f"    OpenAIProxyRateLimit {limit}\n  </Location>\n</VirtualHost>\n")


def post(client):
    return client.post("/v1", {"messages": MESSAGES}, host="api.cluster.test")


def test_two_httpd_share_a_redis_limit(own_httpd, mock, redis_server):
    store = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis_server.port}"
    first, client_a = own_httpd(cluster_config(mock, store), name="cluster-a", mpm="prefork")
    second, client_b = own_httpd(cluster_config(mock, store), name="cluster-b")
    statuses = [post(client_a).status, post(client_b).status, post(client_a).status,
                post(client_b).status, post(client_a).status, post(client_b).status,
                post(client_a).status]
    assert statuses == [200] * 5 + [429] * 2
    assert len(mock.requests()) == 5
    # one counter for the caller, with an expiry (no key outlives its window)
    keys = redis_keys(redis_server.port)
    assert len(keys) == 1, keys
    ttl = int(redis_command(redis_server.port, "TTL", keys[0]).strip().lstrip(":"))
    assert 0 < ttl <= 3601
    # the store's password is in no log line (the autouse check also looks)
    for server in (first, second):
        assert REDIS_PASSWORD not in open(server.error_log).read()


def test_two_httpd_share_a_memcache_limit(own_httpd, mock, memcached_server):
    store = f"memcache://127.0.0.1:{memcached_server.port}"
    first, client_a = own_httpd(cluster_config(mock, store, "3/h"), name="mc-a")
    second, client_b = own_httpd(cluster_config(mock, store, "3/h"), name="mc-b",
                                 mpm="prefork")
    statuses = [post(c).status for c in (client_a, client_b, client_b, client_a, client_b)]
    assert statuses == [200, 200, 200, 429, 429]
    assert len(mock.requests()) == 3


def test_store_away_fails_open_with_a_warning(own_httpd, mock, redis_server, error_log):
    error_log.allow("counter store redis://127.0.0.1:")
    store = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis_server.port}"
    server, client = own_httpd(cluster_config(mock, store, "2/h"))
    assert [post(client).status for _ in range(3)] == [200, 200, 429]
    redis_server.stop()
    # the store is gone: requests go on, unlimited, and the error log says why
    assert [post(client).status for _ in range(3)] == [200, 200, 200]
    log = open(server.error_log).read()
    assert "limits not applied (OpenAIProxyCounterStoreFail open)" in log
    assert "[openai_proxy:warn]" in log
    assert REDIS_PASSWORD not in log
    # it comes back (empty: a restarted redis without persistence)
    redis_server.restart()
    wait_for(lambda: post(client).status == 429 or None, 10, "limits applied again")


def test_store_away_fails_closed(own_httpd, mock, error_log):
    error_log.allow("counter store memcache://127.0.0.1:")
    holder, dead = reserve_dead_port()  # refuses connections, and nobody can take it
    server, client = own_httpd(cluster_config(mock, f"memcache://127.0.0.1:{dead}", "2/h",
                                              fail="closed"))
    resp = post(client)
    assert resp.status == 503
    assert resp.json()["error"] == "Service Unavailable"
    assert "Usage limits cannot be checked" in resp.json()["message"]
    assert resp.header("Retry-After") == "1"
    assert mock.requests() == []
    assert "refusing requests (OpenAIProxyCounterStoreFail closed)" in \
        open(server.error_log).read()
    holder.close()
