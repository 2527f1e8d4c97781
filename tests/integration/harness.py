"""Real processes for the integration tests: Debian's apache2 with the module
loaded from a generated config, and the mock OpenAI upstream. No mocks of
httpd or libcurl: everything talks HTTP over loopback.

And what the test files share: the config blocks (proxy_location,
STATUS_LOCATION, basic_auth), the request bodies (MESSAGES), the gated
streams, and waits for what the server counted or logged (settled,
log_line), never a sleep."""

import base64
import concurrent.futures
import hashlib
import http.client
import json
import os
import re
import resource
import signal
import socket
import subprocess
import time
import urllib.request
import uuid

import valgrind

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODULE = os.environ.get(
    "OAIP_MODULE", os.path.join(REPO, "mod_openai_proxy", ".libs", "mod_openai_proxy.so"))
APACHE_BIN = os.environ.get("APACHE_BIN", "/usr/sbin/apache2")
APACHE_MODULES = "/usr/lib/apache2/modules"
MOCK_SCRIPT = os.path.join(REPO, "tests", "mock_upstream", "mock_upstream.py")
PYTHON = "/usr/bin/python3"

# Secrets the tests configure; no response, header or log line may carry them.
TEST_KEY = "sk-test-SECRET-a1b2c3d4e5f6a7b8c9d0"
TEST_KEY_B = "sk-test-SECRET-vhostB-0f9e8d7c6b5a"
CLIENT_KEY = "sk-client-SECRET-byok-11223344"
# the keys of the OpenAIProxyBackend tests (test_backends*.py), one a backend
BACKEND_KEYS = ("sk-backend-SECRET-alpha-5a6b7c8d9e",
                "azure-backend-SECRET-bravo-1f2e3d4c",
                "sk-backend-SECRET-charlie-99887766")
SECRETS = (TEST_KEY, TEST_KEY_B, CLIENT_KEY) + BACKEND_KEYS

# The chat messages of a request whose content no test reads.
MESSAGES = [{"role": "user", "content": "hi"}]
# The mock counts one prompt token a word: 3 for these (limits and budgets).
THREE_TOKEN_MESSAGES = [{"role": "user", "content": "one two three"}]

# How much slower apache2 runs than plain: under ASan, and far more under
# valgrind (one process, every instruction translated). Waits for a
# condition scale their failure bound by it; the few assertions that a thing
# happens promptly use prompt() (generous, scaled), never a tight figure.
SLOWDOWN = 20 if valgrind.ENABLED else 3 if os.environ.get("OAIP_ASAN_PRELOAD") else 1


def prompt(seconds):
    """A bound for "this happens promptly": 3x the expected figure, scaled."""
    return 3 * seconds * SLOWDOWN


def allow_core_dumps():
    # a crashing child leaves a core in the workdir for gdb
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def stop_process_group(proc, timeout=15, stop_signal=signal.SIGTERM):
    """Sends `stop_signal` to the group's leader (started with
    start_new_session), SIGKILL to the whole group if it does not end in time."""
    if proc is None or proc.poll() is not None:
        return
    os.kill(proc.pid, stop_signal)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def free_port():
    """A port free now: whoever binds it later may lose a race to another
    process (Httpd.start retries with a new one on a bind failure)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reserve_dead_port():
    """(socket, port) of a loopback port that refuses connections for as long
    as the socket stays open: bound but not listening, so no other process
    can start listening there (a released free_port() could be taken)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s, s.getsockname()[1]


def listening_inodes(port):
    """Socket inodes listening on 127.0.0.1:port (from /proc/net/tcp)."""
    inodes = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            # local address 0100007F:PORT, state 0A = LISTEN
            if fields[1] == "0100007F:%04X" % port and fields[3] == "0A":
                inodes.add(fields[9])
    return inodes


def pid_listens(pid, port):
    """Whether process `pid` itself holds a socket listening on our port
    (something else on this machine may listen on a port we picked)."""
    inodes = listening_inodes(port)
    if not inodes:
        return False
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            return True
    return False


def child_pids(parent):
    """Pids whose parent is `parent` (zombies included: a child is gone once
    its parent has reaped it, which frees its scoreboard slot)."""
    out = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # the command may hold spaces and parentheses: fields follow the last ")"
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == parent:
            out.add(int(name))
    return out


def wait_for(predicate, timeout, what):
    """Polls `predicate` until it returns something true; `timeout` (scaled
    by SLOWDOWN) is only the bound after which the test fails."""
    deadline = time.monotonic() + timeout * SLOWDOWN
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(f"timed out waiting for {what}")


def port_accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def proxy_location(upstream, *directives, path="/v1", key=TEST_KEY):
    """A <Location `path`> block that the module serves: SetHandler
    openai-proxy; OpenAIProxyUpstream `upstream` (a MockUpstream: its /v1
    API; a URL; None: none here, as where an outer level sets it);
    OpenAIProxyAPIKey `key` (any key source, env:NAME or file:PATH too;
    None: none here); then `directives`, one a line, in order."""
    lines = ["SetHandler openai-proxy"]
    if upstream is not None:
        url = upstream if isinstance(upstream, str) else upstream.api
        lines.append(f"OpenAIProxyUpstream {url}")
    if key is not None:
        lines.append(f"OpenAIProxyAPIKey {key}")
    lines += directives
    return f"<Location {path}>\n" + "".join(f"  {line}\n" for line in lines) + "</Location>\n"


def bare_location(*directives, path="/v1"):
    """A proxy_location with no upstream and no key of its own: the
    directives only (a config test, or a Location that inherits both)."""
    return proxy_location(None, *directives, path=path, key=None)


# The counters of the whole server, for the tests that read them (settled()).
STATUS_LOCATION = ("<Location /proxy-status>\n  SetHandler openai-proxy-status\n"
                   "  Require ip 127.0.0.1\n</Location>\n")


def basic_auth(user_file, realm="chat"):
    """The directives that put a Location behind httpd's Basic auth, with
    the users of the htpasswd file `user_file`."""
    return ("AuthType Basic", f'AuthName "{realm}"', "AuthBasicProvider file",
            f'AuthUserFile "{user_file}"', "Require valid-user")


def htpasswd_line(user, password):
    """A line of an htpasswd file ({SHA}: no htpasswd binary needed)."""
    digest = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
    return f"{user}:{{SHA}}{digest}\n"


class MockUpstream:
    """The mock OpenAI server as a subprocess, and a client for its control API."""

    def __init__(self, workdir, name="mock"):
        """`name`: of its port file and log in `workdir` (several mocks at once
        play several upstreams)."""
        self.workdir = workdir
        self.name = name
        self.port_file = os.path.join(workdir, f"{name}.port")
        self.proc = None
        self.port = None

    def start(self):
        self.log = open(os.path.join(self.workdir, f"{self.name}.log"), "wb")
        self.proc = subprocess.Popen(
            [PYTHON, MOCK_SCRIPT, "--host", "127.0.0.1", "--port", "0",
             "--port-file", self.port_file],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        port_text = wait_for(lambda: os.path.exists(self.port_file)
                             and open(self.port_file).read().strip(), 15, "mock upstream port")
        self.port = int(port_text)
        wait_for(lambda: self._health(), 15, "mock upstream health")
        return self

    def _health(self):
        try:
            return self.get("/__mock/health")["ok"]
        except OSError:
            return False

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self):
        return f"{self.base}/v1"

    def get(self, path):
        with urllib.request.urlopen(self.base + path, timeout=10) as resp:
            return json.loads(resp.read())

    def reset(self):
        req = urllib.request.Request(self.base + "/__mock/reset", data=b"", method="POST")
        urllib.request.urlopen(req, timeout=10).read()

    def requests(self):
        return self.get("/__mock/requests")

    def set_directives(self, **directives):
        """Directives every API request gets from now on, under its own
        (POST /__mock/directives; a reset clears them)."""
        req = urllib.request.Request(self.base + "/__mock/directives",
                                     data=json.dumps(directives).encode(), method="POST")
        urllib.request.urlopen(req, timeout=10).read()

    def stats(self):
        return self.get("/__mock/stats")

    def open_gate(self, name, permits=1):
        """Ends one (or `permits`) pauses of the requests sent with the mock
        directive "gate": name (see tests/mock_upstream/README.md)."""
        req = urllib.request.Request(f"{self.base}/__mock/gate/{name}?permits={permits}",
                                     data=b"", method="POST")
        urllib.request.urlopen(req, timeout=10).read()

    def gate_by_events(self, name, permits_for=len):
        """An on_read callback for Client.request that opens gate `name` as
        the client receives events: `permits_for(events so far)` is how many
        pauses may have ended by then (by default one per event received, so
        the upstream sends each event only after the previous one arrived)."""
        opened = [0]

        def on_read(body):
            events = body.decode("utf-8", "replace").split("\n\n")[:-1]
            for _ in range(permits_for(events) - opened[0]):
                self.open_gate(name)
                opened[0] += 1
        return on_read

    def last_finished(self, timeout=15):
        """The record of the last request once the mock is done with it (its
        outcome is set then: ok, client_gone...)."""
        def done():
            records = self.requests()
            return records and records[-1]["outcome"] and records[-1]
        return wait_for(done, timeout, "the upstream request to end")

    def stop(self):
        stop_process_group(self.proc)
        self.log.close()


class Httpd:
    """A private apache2 from a generated config, on its own loopback port."""

    # a start that loses its port to another process is retried this often
    START_ATTEMPTS = 5

    def __init__(self, workdir, body, name="httpd", env=None, mpm="event", modules=(),
                 extra_ports=0):
        """`body` is config text, or a function of this Httpd returning it
        (for configs with Listen lines of their own: `extra_ports` more
        loopback ports are picked into self.extra_ports, afresh on a retry)."""
        self.workdir = workdir
        self.name = name
        self.extra_port_count = extra_ports
        self.pick_ports()
        self.body = body
        self.env = dict(os.environ, **(env or {}))
        preload = os.environ.get("OAIP_ASAN_PRELOAD")
        if preload:
            # the sanitizer runtime goes into apache2 only, never into the
            # test runner or the clients (curl deadlocks with libasan preloaded)
            self.env["LD_PRELOAD"] = preload
            self.env["ASAN_OPTIONS"] = ("detect_leaks=0:abort_on_error=0:halt_on_error=0:"
                                        f"log_path={workdir}/asan")
            self.env["UBSAN_OPTIONS"] = f"print_stacktrace=1:log_path={workdir}/ubsan"
        self.mpm = mpm
        self.modules = list(modules)
        self.conf_path = os.path.join(workdir, f"{name}.conf")
        self.error_log = os.path.join(workdir, f"{name}-error.log")
        self.access_log = os.path.join(workdir, f"{name}-access.log")
        self.pid_file = os.path.join(workdir, f"{name}.pid")
        self.proc = None
        self.log_offset = 0

    def pick_ports(self):
        ports = {free_port()}
        while len(ports) < 1 + self.extra_port_count:
            ports.add(free_port())
        self.port, *self.extra_ports = sorted(ports)

    def body_text(self):
        return self.body(self) if callable(self.body) else self.body

    def config_text(self):
        mods = ["mpm_" + self.mpm, "authz_core", "authz_host", "authn_core",
                "auth_basic", "authn_file", "authz_user", "mime", "filter", "deflate",
                "headers", "env", "setenvif"] + self.modules
        loads = "\n".join(f"LoadModule {m}_module {APACHE_MODULES}/mod_{m}.so" for m in mods)
        user = "User www-data\nGroup www-data\n" if os.geteuid() == 0 else ""
        return f"""# generated by tests/integration/harness.py
ServerRoot "{self.workdir}"
ServerName 127.0.0.1
Listen 127.0.0.1:{self.port}
PidFile "{self.pid_file}"
DefaultRuntimeDir "{self.workdir}"
Mutex file:{self.workdir} default
CoreDumpDirectory "{self.core_dir()}"
{loads}
LoadModule openai_proxy_module {MODULE}
{user}ErrorLog "{self.error_log}"
LogLevel info openai_proxy:debug
LogFormat "%h \\"%r\\" %>s %b %D \\"%{{Origin}}i\\"" brief
CustomLog "{self.access_log}" brief
TypesConfig /etc/mime.types
Timeout 20
GracefulShutdownTimeout 5
KeepAlive On
MaxKeepAliveRequests 0
{self.mpm_settings()}
DocumentRoot "{self.workdir}"
<Directory />
  AllowOverride None
  Require all granted
</Directory>
{self.body_text()}
"""

    def core_dir(self):
        # the children run as www-data: the core directory must be theirs to write
        path = os.path.join(self.workdir, "cores")
        os.makedirs(path, exist_ok=True)
        os.chmod(path, 0o1777)
        return path

    def mpm_settings(self):
        # Room for graceful restarts: the old generation's children keep
        # their scoreboard slots until they have finished, so ServerLimit is
        # far above what MaxRequestWorkers needs (else AH03490 "scoreboard is
        # full"). The spare bounds hold what StartServers starts, so the
        # parent neither spawns nor kills children while the suite is idle.
        if self.mpm == "prefork":
            return ("StartServers 4\nMinSpareServers 2\nMaxSpareServers 8\n"
                    "ServerLimit 96\nMaxRequestWorkers 32")
        # event and worker: 2 x 25 threads at the start, between the spare
        # bounds (MaxSpareThreads >= MinSpareThreads + ThreadsPerChild); up
        # to 4 children serve, 16 slots leave 3 generations' worth
        return ("StartServers 2\nThreadsPerChild 25\n"
                "MinSpareThreads 25\nMaxSpareThreads 75\n"
                "MaxRequestWorkers 100\nServerLimit 16")

    def write_config(self):
        with open(self.conf_path, "w") as f:
            f.write(self.config_text())

    def config_test(self):
        self.write_config()
        return subprocess.run([APACHE_BIN, "-t", "-f", self.conf_path], env=self.env,
                              capture_output=True, text=True, timeout=30)

    def start(self):
        for attempt in range(self.START_ATTEMPTS):
            if self._start_once():
                return self
            # another process took a port between free_port() and httpd's bind
            self.pick_ports()
        raise RuntimeError(f"{self.name}: no free port after {self.START_ATTEMPTS} attempts")

    def _start_once(self):
        """True once our httpd listens; False if it could not bind its port."""
        self.write_config()
        stdout_path = os.path.join(self.workdir, f"{self.name}.stdout")
        self.stdout = open(stdout_path, "wb")
        command = [APACHE_BIN, "-f", self.conf_path, "-DFOREGROUND"]
        if valgrind.ENABLED:  # one process, so that one memcheck sees every request
            command = valgrind.command(self.workdir, self.name) + command + ["-X"]
        self.proc = subprocess.Popen(command,
                                     env=self.env, stdout=self.stdout,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=allow_core_dumps)

        def ready():
            if self.proc.poll() is not None:
                return "exited"
            # our own httpd answers on our port: its pid file names our
            # process, and that process holds the listening socket
            return (os.path.exists(self.pid_file)
                    and open(self.pid_file).read().strip() == str(self.proc.pid)
                    and pid_listens(self.proc.pid, self.port)
                    and port_accepts(self.port) and "listening")
        state = wait_for(ready, 20, f"{self.name} to listen on {self.port}")
        if state == "listening":
            return True
        self.stdout.close()
        out = open(stdout_path, errors="replace").read()
        if "could not bind to address" in out or "Address already in use" in out:
            return False
        raise RuntimeError(f"apache2 exited with {self.proc.returncode}: {out}")

    def children(self):
        """The pids of httpd's children now (none under valgrind's -X)."""
        return child_pids(self.proc.pid)

    def graceful_restart(self, new_body=None):
        """A graceful restart (SIGUSR1), with `new_body` as the config body if
        given; returns once the new generation serves and every child of the
        old one has ended and been reaped, so that the next request is
        answered by the new config and the scoreboard has its slots back.
        Under valgrind (-X: one process, which does not restart) it is a
        stop and a start on the same port."""
        if new_body is not None:
            self.body = new_body
        if valgrind.ENABLED:
            self.stop()
            if not self._start_once():
                raise RuntimeError(f"{self.name}: port {self.port} taken during a restart")
            return self
        marker = "resuming normal operations"
        before_log = self._log_text().count(marker)
        old = self.children()
        self.write_config()
        os.kill(self.proc.pid, signal.SIGUSR1)

        def restarted():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited during a graceful restart "
                                   f"({self.proc.returncode}): see {self.error_log}")
            if self._log_text().count(marker) <= before_log:
                return False  # the parent has not read the new config yet
            now = self.children()
            return not (now & old) and bool(now)
        wait_for(restarted, 30, f"{self.name}'s graceful restart")
        return self

    def _log_text(self):
        if not os.path.exists(self.error_log):
            return ""
        with open(self.error_log, errors="replace") as f:
            return f.read()

    def stop(self):
        # graceful-stop, as an operator would: children finish the requests
        # they serve (a signal to every process of the group would make them
        # close sockets under their own running requests)
        if valgrind.ENABLED:  # -X: SIGTERM ends the one process; then the leak check
            stop_process_group(self.proc, timeout=180)
        else:
            stop_process_group(self.proc, stop_signal=signal.SIGWINCH)
        if self.proc:
            self.stdout.close()

    def sanitizer_reports(self):
        """New reports ASan/UBSan wrote (the workdir is shared: each report is
        returned once, to the test during which it appeared)."""
        reports = []
        for name in sorted(os.listdir(self.workdir)):
            if name.startswith(("asan.", "ubsan.")) and name not in SEEN_SANITIZER_REPORTS:
                SEEN_SANITIZER_REPORTS.add(name)
                with open(os.path.join(self.workdir, name)) as f:
                    reports.append(f.read())
        if valgrind.ENABLED:
            reports += valgrind.finished_reports(self.workdir, SEEN_SANITIZER_REPORTS)
        return reports

    def new_log_lines(self):
        """Error log lines written since the last call."""
        if not os.path.exists(self.error_log):
            return []
        with open(self.error_log, "rb") as f:
            f.seek(self.log_offset)
            data = f.read()
            self.log_offset = f.tell()
        return data.decode("utf-8", "replace").splitlines()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"


def config_test(workdir, body, name="configtest", env=None):
    """`apache2 -t` of a config with this body (the CompletedProcess)."""
    return Httpd(workdir, body, name=name, env=env).config_test()


SEEN_SANITIZER_REPORTS = set()

BAD_LOG_LINE = re.compile(r"\[(?:[a-z_]+:)?(error|crit|alert|emerg)\]|AH00052|AH00060|"
                          r"segfault|Segmentation|AddressSanitizer|runtime error:")


class Response:
    def __init__(self, status, headers, body, events=None):
        self.status = status
        self.headers = headers  # list of (name, value)
        self.body = body
        self.events = events or []  # (wall-clock arrival time, bytes) per read

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")


class Client:
    """HTTP/1.1 client over http.client that keeps every response for the
    secret scan, and can read a stream read by read with arrival times."""

    def __init__(self, port, recorder):
        self.port = port
        self.recorder = recorder

    def request(self, method, path, body=None, headers=None, stream=False, timeout=30,
                host=None, on_read=None):
        # the socket timeout only reports a hang: scaled like every wait
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout * SLOWDOWN)
        hdrs = dict(headers or {})
        if host:
            hdrs["Host"] = host
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            body = body.encode()
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            events = []
            chunks = []
            while True:
                data = resp.read1(65536) if stream else resp.read()
                if not data:
                    break
                events.append((time.time(), data))
                chunks.append(data)
                if on_read and on_read(b"".join(chunks)) is False:
                    break
                if not stream:
                    break
            result = Response(resp.status, resp.getheaders(), b"".join(chunks), events)
        finally:
            conn.close()
        self.recorder.append(result)
        return result

    def post(self, path, body, **kw):
        return self.request("POST", path, body=body, **kw)


def openai_error(resp):
    """The inner object of an error answer in the OpenAI shape,
    {"error": {"message", "type", "param", "code"}}: what the proxy answers
    below a Location (the SDKs' paths) unless OpenAIProxyErrorFormat is set."""
    body = resp.json()
    assert isinstance(body, dict) and list(body) == ["error"], body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


def sse_data_lines(body):
    """The data: payloads of an SSE body, in order."""
    return [line[6:] for line in body.decode().split("\n") if line.startswith("data: ")]


def sse_error_event(text):
    """The parsed data of the error event that ends the SSE text `text` (the
    proxy's way to report a failure once the stream is committed)."""
    tail = text.rstrip("\n").split("\n\n")[-1]
    assert tail.startswith("event: error\ndata: ")
    return json.loads(tail.split("data: ", 1)[1])


# -- streams -------------------------------------------------------------------

KEEP_ALIVE = ": keep-alive"  # the comment OpenAIProxyHeartbeat sends


def after_a_keep_alive(events):
    """For MockUpstream.gate_by_events: the gated pause (before the head, or
    before the first event) ends once a keep-alive came; later ones at
    once, one per event received. The test waits for a heartbeat, never
    for a time."""
    if KEEP_ALIVE not in events:
        return 0
    return 1 + sum(e.startswith("data: ") for e in events)


def silent_upstream(client, mock, directives, permits_for, path="/v1", **kw):
    """A stream whose upstream (answering as the mock `directives` say)
    stays silent at each pause until the client has received what
    `permits_for(events so far)` asks for (after_a_keep_alive...): the test
    waits for heartbeats, never for a time."""
    gate = uuid.uuid4().hex
    body = {"messages": MESSAGES, "stream": True, "mock": dict(directives, gate=gate)}
    return client.post(path, body, stream=True, on_read=mock.gate_by_events(gate, permits_for),
                       **kw)


def gated_stream_body(chunks=3):
    """(gate, body) of a stream of `chunks` tokens whose upstream sends each
    event only once the gate was opened for it: the client opens it as
    events arrive (on_read=mock.gate_by_events(gate)), so a proxy that held
    an event back would leave the upstream waiting."""
    gate = uuid.uuid4().hex
    return gate, {"messages": MESSAGES, "stream": True,
                  "mock": {"chunks": chunks, "gate": gate}}


def assert_unbuffered(data_lines, record, chunks=3):
    """Causal proof of no buffering of a gated stream: no pause of the
    upstream ran out, so every event reached the client before the
    upstream produced the next."""
    assert len(data_lines) == 1 + chunks + 1 + 1 and data_lines[-1] == "[DONE]"  # role, stop, DONE
    assert record["outcome"] == "ok"
    assert record["gate_timeouts"] == 0, "an event was held back: the stream was buffered"


def open_raw_post(port, body):
    """A socket on which a POST /v1 of `body` (JSON) was sent, the answer
    unread: the test reads what it wants and leaves when it wants."""
    data = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST /v1 HTTP/1.1\r\nHost: a.test\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(data) + data)
    return sock


def parallel_posts(client, path, count, body, headers=None, workers=None):
    """`count` POSTs at once, each on its own connection; their Responses."""
    def one(_):
        return client.post(path, body, headers=headers or {}, timeout=60)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers or count) as pool:
        return list(pool.map(one, range(count)))


# -- what the server counted and logged ------------------------------------------

def settled(client, total, timeout=30):
    """The status page (STATUS_LOCATION) once `total` proxied requests went
    through log_transaction, where budgets are settled and requests counted,
    after the client had its answer."""
    def read():
        doc = client.request("GET", "/proxy-status").json()
        return doc if doc["requests"]["total"] >= total else None
    return wait_for(read, timeout, f"{total} requests settled")


def log_line(path, marker):
    """The first line (bytes) of the log file at `path` that holds `marker`,
    waited for: httpd writes it in the log phase, after the answer."""
    wanted = marker.encode()

    def find():
        if os.path.exists(path):
            with open(path, "rb") as f:
                for line in f:
                    if wanted in line:
                        return line
        return None
    return wait_for(find, 10, f"the line of {marker} in {os.path.basename(path)}")


def usage_fields(line):
    """The name=value fields of an openai_proxy access log line
    (conf/openai_proxy_log.conf), after the request line."""
    return dict(re.findall(r"(\w+)=(\S+)", line.split('" ', 1)[1]))


def usage_line(server, marker):
    """(fields, line) of the request whose query carried `marker`, in the
    shared httpd's usage log (conftest.py)."""
    line = log_line(os.path.join(server.workdir, "usage.log"), marker).decode()
    return usage_fields(line), line


# -- the counter stores of a cluster (fixtures in conftest.py) -------------------

REDIS_PASSWORD = "redis-pw-not-for-logs"


class StoreServer:
    """A store server (redis-server, memcached) on a loopback port. `argv`
    is a function of the port: a port picked free may be taken by another
    process before the server binds it, so a start that loses it tries a
    new one."""

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


def redis_command(port, *args):
    """One command over RESP, after AUTH; returns the raw reply line(s)."""
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
    """The module's keys in redis."""
    reply = redis_command(port, "KEYS", "oaip:*")
    return [line for line in reply.split("\r\n") if line.startswith("oaip:")]


# -- graceful restarts with requests in flight (test_graceful.py) -----------------

def listening_children(server):
    """The children of `server` that hold its listening socket: a child of
    an old generation closes it as soon as it learns of a graceful restart
    or stop (prefork on the signal, event on the pipe of death), so these
    are the children that may accept a new connection."""
    return {pid for pid in server.children() if pid_listens(pid, server.port)}


def begin_graceful_restart(server, new_body):
    """A graceful restart (SIGUSR1) with `new_body` as the config body,
    while the old generation still serves (its open streams keep its
    children): returns the old children once the parent has read the new
    config and only new children listen, so the next connection is the new
    generation's. Unlike Httpd.graceful_restart it does not wait for the
    old children to end: wait_generation_gone(server, old) does."""
    marker = "resuming normal operations"
    before_log = server._log_text().count(marker)
    old = server.children()
    server.body = new_body
    server.write_config()
    os.kill(server.proc.pid, signal.SIGUSR1)

    def new_generation_listens():
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited during a graceful restart "
                               f"({server.proc.returncode}): see {server.error_log}")
        if server._log_text().count(marker) <= before_log:
            return False  # the parent has not read the new config yet
        listening = listening_children(server)
        return bool(listening) and not (listening & old)
    wait_for(new_generation_listens, 30, f"{server.name}'s new generation to listen")
    return old


def wait_generation_gone(server, old):
    """Waits until every child in `old` has ended and been reaped."""
    wait_for(lambda: not (server.children() & old), 30, "the old generation's children to end")


def graceful_stop_signal(server):
    """graceful-stop (SIGWINCH to the parent, what `apachectl graceful-stop`
    sends), without waiting: the children finish what they serve."""
    os.kill(server.proc.pid, signal.SIGWINCH)


class HeldStream:
    """A stream request in a thread of its own whose upstream (the mock,
    `chunks` tokens, gate `gate`) sends its first `hold` events (the role
    chunk, which the mock sends without a pause, and `hold` - 1 tokens),
    then waits at its gate until release(): the test decides when the
    stream goes on, by a condition, never by a time. `received()` is the
    data events the client has so far; result() the Response once the
    stream ended."""

    def __init__(self, pool, client, mock, path="/v1", chunks=5, hold=2, headers=None,
                 body=None):
        self.mock = mock
        self.gate = uuid.uuid4().hex
        self.data_events = 0
        self.hold = hold
        if hold > 1:
            mock.open_gate(self.gate, permits=hold - 1)
        directives = {"chunks": chunks, "gate": self.gate, "gate_timeout": 600}
        body = dict(body or {"messages": MESSAGES}, stream=True, mock=directives)

        def on_read(so_far):
            self.data_events = so_far.count(b"data: ")
        self.future = pool.submit(client.post, path, body, stream=True, on_read=on_read,
                                  headers=headers or {}, timeout=120)

    def received(self):
        return self.data_events

    def wait_held(self):
        """Waits until the client has the `hold` events (the stream is open,
        held at the gate)."""
        wait_for(lambda: self.data_events >= self.hold or self.future.done(), 30,
                 f"{self.hold} events of a held stream")
        if self.future.done():
            raise AssertionError(f"the stream ended early: {self.future.result().text}")

    def held(self):
        """Whether the stream is still open and held at its gate."""
        return self.data_events == self.hold and not self.future.done()

    def release(self):
        self.mock.open_gate(self.gate, permits=1000)

    def result(self):
        return self.future.result(timeout=120 * SLOWDOWN)


class HeldStreams:
    """HeldStream's in a thread pool; on leaving, whatever happened, every
    stream is released and awaited (a failed test ends at once instead of
    waiting for its held streams' timeouts)."""

    def __init__(self, client, mock, workers=16):
        self.client = client
        self.mock = mock
        self.pool = concurrent.futures.ThreadPoolExecutor(workers)
        self.streams = []

    def open(self, path="/v1", **kw):
        stream = HeldStream(self.pool, self.client, self.mock, path=path, **kw)
        self.streams.append(stream)
        return stream

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for stream in self.streams:
            stream.release()
        self.pool.shutdown(wait=True)
        return False
