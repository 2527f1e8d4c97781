"""Fixtures: one mock upstream and one httpd (two virtual hosts, several
Locations) for the whole session, a fresh httpd where a test needs its own
config, and after every test two checks: no unexpected error in httpd's error
log, and no configured secret in any response the test received."""

import os
import shutil
import subprocess
import tempfile
import textwrap

import pytest

from harness import (REPO, APACHE_BIN, CLIENT_KEY, REDIS_PASSWORD, SECRETS, TEST_KEY_B,
                     BAD_LOG_LINE, Client, Httpd, MockUpstream, StoreServer, proxy_location,
                     reserve_dead_port)

ORIGIN_RULES = "https://app.example.com https://*.example.org http://localhost:3000"

# What an upstream may quote of a key: the whole key, or a part (its first 12
# characters before "...", its end after "***"). The test keys are chosen so
# that these pieces occur in no harmless text.
SECRET_FORMS = tuple(dict.fromkeys(form for secret in SECRETS
                                   for form in (secret, secret[:12], secret[-12:])))


def main_config(mock_api, key_file, dead_port, usage_log):
    def proxy(path, *directives):
        # no key of its own: vhost a's (env:OAIP_TEST_KEY); in vhost b, none
        return proxy_location(mock_api, *directives, path=path, key=None)
    a_locations = "".join([
        proxy("/v1"),
        proxy("/openai-errors", "OpenAIProxyErrorFormat openai"),
        proxy("/openai-limited", "OpenAIProxyErrorFormat openai", "OpenAIProxyRateLimit 1/h"),
        proxy("/small", "OpenAIProxyMaxRequestBody 1K"),
        proxy("/seed-errors", "OpenAIProxyErrorFormat seed", "OpenAIProxyMaxRequestBody 1K"),
        proxy("/any-origin", "OpenAIProxyAllowOrigin *"),
        proxy("/defaults", "OpenAIProxyDefault model gpt-4o-mini",
              "OpenAIProxyDefault temperature none", "OpenAIProxyDefault user '\"from-proxy\"'",
              "OpenAIProxyDefault max_tokens 256"),
        proxy_location(f"http://127.0.0.1:{dead_port}/v1", path="/down", key=None),
        proxy("/deflated", "SetOutputFilter DEFLATE"),
        proxy("/models", "OpenAIProxyAllowModels gpt-4o-mini o3*"),
        proxy("/models/defaulted", "OpenAIProxyDefault model gpt-4o-mini"),
        proxy("/capped", "OpenAIProxyMaxTokens 64"),
        proxy("/guarded",
              "OpenAIProxyEndpoints chat/completions completions responses embeddings",
              "OpenAIProxyEndpoints images/generations audio/transcriptions",
              "OpenAIProxyMaxTokens 64",
              "OpenAIProxyAllowModels gpt-4o-mini whisper-1 text-embedding-3-small gpt-image-1"),
        proxy("/byok", "OpenAIProxyAllowClientKey On"),
        proxy("/endpoints",
              "OpenAIProxyEndpoints chat/completions models models/* embeddings responses",
              "OpenAIProxyEndpoints audio/transcriptions"),
    ])
    b_locations = (proxy_location(f"{mock_api}/vhost-b", path="/api", key=f"file:{key_file}")
                   + proxy("/nokey", "OpenAIProxyAllowClientKey On"))
    return f"""
Include {REPO}/conf/openai_proxy_log.conf
<VirtualHost 127.0.0.1:*>
  ServerName a.test
  CustomLog {usage_log} openai_proxy
  OpenAIProxyAPIKey env:OAIP_TEST_KEY
  OpenAIProxyAllowOrigin {ORIGIN_RULES}
{textwrap.indent(a_locations, "  ")}</VirtualHost>

<VirtualHost 127.0.0.1:*>
  ServerName b.test
  OpenAIProxyAllowOrigin https://b.example.net
{textwrap.indent(b_locations, "  ")}</VirtualHost>
"""


@pytest.fixture(scope="session")
def workdir():
    # httpd's children run as www-data and walk the DocumentRoot: pytest's own
    # temporary directories are private to root, so use a readable one
    path = tempfile.mkdtemp(prefix="oaip-tests-")
    os.chmod(path, 0o755)
    yield path
    if os.environ.get("OAIP_KEEP_WORKDIR") != "1":
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def mock(workdir):
    upstream = MockUpstream(workdir).start()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="session")
def key_file(workdir):
    path = os.path.join(workdir, "vhost-b.key")
    with open(path, "w") as f:
        f.write(f"\n  {TEST_KEY_B}  \n")  # whitespace is trimmed
    return path


@pytest.fixture(scope="session")
def httpd(workdir, mock, key_file):
    from harness import TEST_KEY
    # /down's upstream: a port held (bound, not listening) for the session,
    # so that it refuses connections and nothing else can take it
    dead, dead_port = reserve_dead_port()
    server = Httpd(workdir,
                   main_config(mock.api, key_file, dead_port,
                               os.path.join(workdir, "usage.log")), name="main",
                   env={"OAIP_TEST_KEY": TEST_KEY})
    server.start()
    yield server
    server.stop()
    dead.close()


def require_binary(binary, package):
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} is missing: apt-get install {package} "
                    "(build/deps.sh test installs it)", pytrace=False)
    return path


@pytest.fixture
def redis_server(workdir):
    """A redis-server of the test's own, with REDIS_PASSWORD."""
    binary = require_binary("redis-server", "redis-server")
    data = os.path.join(workdir, "redis-data")
    os.makedirs(data, exist_ok=True)
    server = StoreServer(lambda port: [binary, "--port", str(port), "--bind", "127.0.0.1",
                                       "--save", "", "--appendonly", "no", "--dir", data,
                                       "--requirepass", REDIS_PASSWORD]).start()
    yield server
    server.stop()


@pytest.fixture
def memcached_server():
    """A memcached of the test's own."""
    binary = require_binary("memcached", "memcached")
    server = StoreServer(lambda port: [binary, "-p", str(port), "-l", "127.0.0.1", "-U", "0",
                                       "-u", "nobody"]).start()
    yield server
    server.stop()


@pytest.fixture
def responses():
    return []


@pytest.fixture
def client(httpd, responses):
    return Client(httpd.port, responses)


@pytest.fixture(autouse=True)
def reset_mock(request):
    if "mock" in request.fixturenames:
        request.getfixturevalue("mock").reset()


def core_backtraces(directory):
    """Backtraces of the cores crashed children left, for the failure text."""
    out = []
    for name in sorted(os.listdir(directory)):
        if name.startswith("core"):
            path = os.path.join(directory, name)
            try:
                result = subprocess.run(["gdb", "-batch", "-ex", "thread apply all bt 30",
                                         APACHE_BIN, path], capture_output=True, text=True)
                out.append(f"== {path}\n{result.stdout[-8000:]}")
            except FileNotFoundError:
                out.append(f"== {path} (install gdb for a backtrace)")
    return "\n".join(out)


class LogExpectations:
    def __init__(self):
        self.patterns = []

    def allow(self, pattern):
        """A test that provokes an error line says which one it expects."""
        self.patterns.append(pattern)


@pytest.fixture
def error_log():
    return LogExpectations()


@pytest.fixture(autouse=True)
def check_logs_and_secrets(request, error_log, responses):
    servers = []
    if "httpd" in request.fixturenames:
        servers.append(request.getfixturevalue("httpd"))
        servers[0].new_log_lines()  # skip what earlier tests left
    yield
    for server in servers + getattr(request.node, "extra_servers", []):
        lines = server.new_log_lines()
        for line in lines:
            for secret in SECRET_FORMS:
                assert secret not in line, "a secret reached the error log"
            if BAD_LOG_LINE.search(line) and not any(p in line for p in error_log.patterns):
                pytest.fail(f"unexpected error in {server.name}'s error log: {line}\n"
                            f"{core_backtraces(server.core_dir())}")
        reports = server.sanitizer_reports()
        assert not reports, "sanitizer report:\n" + "\n".join(reports)[:6000]
        for name in os.listdir(server.workdir):  # access, usage and error logs
            if name.endswith(".log"):
                with open(os.path.join(server.workdir, name), "rb") as f:
                    text = f.read().decode("utf-8", "replace")
                for secret in SECRET_FORMS:
                    assert secret not in text, f"a secret reached {name}"
    for resp in responses:
        blob = resp.body + repr(resp.headers).encode()
        for secret in SECRET_FORMS:
            assert secret.encode() not in blob, f"a secret reached a client: {resp.status}"


@pytest.fixture
def own_httpd(request, workdir, responses):
    """Starts an httpd with a config of the test's own; stopped afterwards
    and its logs checked like the shared one's."""
    started = []

    def start(body, name=None, env=None, mpm="event", modules=(), extra_ports=0):
        server = Httpd(workdir, body, name=name or f"own{len(started)}-{request.node.name[:40]}",
                       env=env, mpm=mpm, modules=modules, extra_ports=extra_ports)
        server.start()
        started.append(server)
        request.node.extra_servers = started
        return server, Client(server.port, responses)

    yield start
    for server in started:
        server.stop()


__all__ = ["CLIENT_KEY"]
