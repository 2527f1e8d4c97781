"""Changes without dropped streams: `apachectl graceful` (SIGUSR1) and
`graceful-stop` (SIGWINCH) while streams are open, under prefork and event.
Every open stream finishes with all its chunks; requests after a restart
get the new configuration (a key re-read from `file:`, origins, limits);
the status page, the rate limit and budget counters and the
OpenAIProxyMaxStreams count carry on over a graceful restart (README,
"Graceful restarts and key rotation"), the old generation's streams
included, and nothing is leaked or counted twice once they end.

The upstream holds each stream at its gate (HeldStream) until the test
releases it: the streams are open across the restart by construction,
never by a time."""

import json
import os

import pytest

from harness import (MESSAGES, STATUS_LOCATION, THREE_TOKEN_MESSAGES, HeldStreams,
                     begin_graceful_restart, graceful_stop_signal, listening_children,
                     openai_error, port_accepts, proxy_location, settled, sse_data_lines,
                     wait_for, wait_generation_gone)
from valgrind import not_under_valgrind

pytestmark = not_under_valgrind("a graceful restart needs a parent and children; "
                                "valgrind runs apache2 -X")

MPMS = pytest.mark.parametrize("mpm", ["prefork", "event"])

# Keys of the graceful tests' own: the log and answer scans look for them
OLD_KEY = "sk-graceful-OLD-KEY-5e4d3c2b1a09f8e7"
NEW_KEY = "sk-graceful-NEW-KEY-7a6b5c4d3e2f1a0b"
KEYS = (OLD_KEY, NEW_KEY)
CHUNKS = 5


def write_key(path, key):
    """Writes a key file the way the README says: a new file renamed over
    the old one, so that httpd never reads half a key."""
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write(key + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


@pytest.fixture
def key_path(workdir, request):
    path = os.path.join(workdir, f"graceful-{request.node.name[:60]}.key")
    write_key(path, OLD_KEY)
    return path


def config(mock, key_path, generation, *directives, server=()):
    """A body with the proxy at /v1 (key from `key_path`), the status page
    and a response header that names the generation (each restart in a test
    gives a new one); `server`: lines at the server level."""
    return ("".join(f"{line}\n" for line in server)
            + f'Header always set X-Generation "{generation}"\n'
            + proxy_location(mock, *directives, key=f"file:{key_path}")
            + STATUS_LOCATION)


def assert_complete(resp, chunks=CHUNKS):
    """A stream that ended with every token and [DONE]: the role chunk, the
    tokens, the stop chunk, [DONE]."""
    assert resp.status == 200, resp.text
    lines = sse_data_lines(resp.body)
    assert lines[-1] == "[DONE]", resp.text
    text = "".join(json.loads(line)["choices"][0]["delta"].get("content") or ""
                   for line in lines[:-1])
    assert text == "".join(f"tok{i} " for i in range(chunks)), resp.text


def marked(marker, **fields):
    """A chat body whose message names `marker`, by which the test finds
    its requests in the mock's records (the proxy passes no query on)."""
    return dict({"messages": [{"role": "user", "content": f"marker {marker}"}]}, **fields)


def records_of(mock, marker):
    return [r for r in mock.requests() if f"marker {marker}" in (r["body_raw"] or "")]


def authorization_of(mock, marker):
    """The Authorization header the mock received for each request whose
    message holds `marker` (see marked)."""
    return [r["headers"].get("authorization") for r in records_of(mock, marker)]


def assert_no_key_anywhere(server, responses):
    """Neither key in any response, header or log line of the workdir."""
    forms = {form for key in KEYS for form in (key, key[:12], key[-12:])}
    for resp in responses:
        blob = resp.body + repr(resp.headers).encode()
        for form in forms:
            assert form.encode() not in blob, f"a key reached a client ({resp.status})"
    for name in os.listdir(server.workdir):
        if name.endswith((".log", ".stdout")):
            with open(os.path.join(server.workdir, name), "rb") as f:
                data = f.read()
            for form in forms:
                assert form.encode() not in data, f"a key reached {name}"


def status(client):
    return client.request("GET", "/proxy-status").json()


def new_generation_serves(client, generation):
    """Waits until a new connection is answered by `generation`'s config."""
    wait_for(lambda: client.request("GET", "/proxy-status").header("X-Generation")
             == str(generation), 30, f"generation {generation} to answer")


# -- 1. graceful restart while streams are open ------------------------------


@MPMS
def test_graceful_restart_finishes_open_streams_and_serves_the_new_config(
        own_httpd, mock, key_path, responses, mpm):
    """Three streams are open (each held at the upstream's gate after two
    events) when the config changes: a new key in the key file, a new
    allowed origin, a smaller request body limit. Requests after the
    restart get all three while the old streams are still open; then the
    old streams go on and each ends with every token and [DONE], sent
    upstream with the old key, answered with the old origin."""
    server, client = own_httpd(
        config(mock, key_path, 1, "OpenAIProxyAllowOrigin https://old.example",
               "OpenAIProxyMaxRequestBody 1M"), mpm=mpm)
    def big(marker):  # 4 KB: within 1M, over 1K
        return {"messages": [{"role": "user", "content": f"marker {marker} " + "x" * 4000}]}
    assert client.post("/v1", big("before")).status == 200
    old_origin = {"Origin": "https://old.example"}
    new_origin = {"Origin": "https://new.example"}
    assert client.post("/v1", marked("before"), headers=new_origin).status == 403

    with HeldStreams(client, mock) as held:
        streams = [held.open(body=marked(f"old-stream-{i}"), headers=old_origin)
                   for i in range(3)]
        for stream in streams:
            stream.wait_held()
        write_key(key_path, NEW_KEY)
        old = begin_graceful_restart(server, config(
            mock, key_path, 2, "OpenAIProxyAllowOrigin https://new.example",
            "OpenAIProxyMaxRequestBody 1K"))
        new_generation_serves(client, 2)

        # the new configuration, while the old streams are held open
        allowed = client.post("/v1", marked("after"), headers=new_origin)
        assert allowed.status == 200
        assert allowed.header("Access-Control-Allow-Origin") == "https://new.example"
        refused = client.post("/v1", marked("after"), headers=old_origin)
        assert refused.status == 403 and refused.header("Access-Control-Allow-Origin") is None
        assert client.post("/v1", big("after")).status == 413
        assert all(stream.held() for stream in streams)
        assert server.children() & old, "the old generation ended under its open streams"

        for stream in streams:
            stream.release()
        for stream in streams:
            resp = stream.result()
            assert_complete(resp)
            assert resp.header("Access-Control-Allow-Origin") == "https://old.example"
            assert resp.header("X-Generation") == "1"
    wait_generation_gone(server, old)

    records = records_of(mock, "old-stream")
    assert len(records) == 3
    assert all(r["outcome"] == "ok" and r["gate_timeouts"] == 0 for r in records)
    assert set(authorization_of(mock, "old-stream")) == {f"Bearer {OLD_KEY}"}
    assert set(authorization_of(mock, "after")) == {f"Bearer {NEW_KEY}"}
    assert set(authorization_of(mock, "before")) == {f"Bearer {OLD_KEY}"}
    assert_no_key_anywhere(server, responses)


# -- 2. the status page and the counters over a graceful restart --------------


@MPMS
def test_status_page_and_counters_carry_on_over_a_graceful_restart(
        own_httpd, mock, key_path, mpm):
    """The README's promise: the status page, the rate limit and the token
    budget counters (shm) are kept over a graceful restart, and the old
    generation's requests count in them until they end.

    /budget has a budget of 9 tokens (366-day windows: no window boundary
    falls within the test; a stream of 5 chunks costs 3 + 5 = 8,
    a plain answer of one chunk 3 + 1 = 4); /limited 3 requests a window.
    A stream admitted before the restart reserves its worst case; held
    across it, that reservation keeps the new generation's requests out;
    settled to 8 by its old child after the restart, one more plain answer
    fits (8 < 9), then none (12)."""
    def body(generation, origin):
        return config(mock, key_path, generation, f"OpenAIProxyAllowOrigin {origin}") + (
            proxy_location(mock, "OpenAIProxyTokenBudget 9/366d", "OpenAIProxyMaxTokens 20",
                           path="/budget", key=f"file:{key_path}")
            + proxy_location(mock, "OpenAIProxyRateLimit 3/366d", path="/limited",
                             key=f"file:{key_path}"))
    server, client = own_httpd(body(1, "https://one.example"), mpm=mpm)
    plain = {"messages": THREE_TOKEN_MESSAGES, "mock": {"chunks": 1}}
    assert [client.post("/limited", plain).status for _ in range(2)] == [200, 200]
    before = settled(client, 2)
    assert before["requests"]["active_streams"] == 0

    with HeldStreams(client, mock) as held:
        stream = held.open("/budget", body={"messages": THREE_TOKEN_MESSAGES})
        stream.wait_held()
        old = begin_graceful_restart(server, body(2, "https://two.example"))
        new_generation_serves(client, 2)

        during = status(client)
        assert during["started"] == before["started"], "the statistics were reset"
        assert during["requests"]["total"] >= 2
        assert during["requests"]["active_streams"] == 1, "the old generation's stream"
        # the rate limit carries on: the third request of the hour, then 429
        assert [client.post("/limited", plain).status for _ in range(2)] == [200, 429]
        # the held stream's reservation counts for the new generation too
        refused = client.post("/budget/chat/completions", plain)
        assert refused.status == 429, refused.text
        assert openai_error(refused)["code"] == "token_budget_exceeded"
        assert stream.held()

        stream.release()
        assert_complete(stream.result())
    wait_generation_gone(server, old)
    after = settled(client, 6)  # 4 to /limited, the stream, the refused one
    assert after["requests"]["active_streams"] == 0
    assert after["requests"]["active"] == 0
    assert after["started"] == before["started"]
    # settled to its usage in the shared table by the old child: 8 of 9
    assert client.post("/budget", plain).status == 200
    settled(client, 7)
    assert client.post("/budget", plain).status == 429
    final = settled(client, 8)
    assert final["requests"]["by_status"]["429"] == 3
    assert final["requests"]["by_status"]["200"] == 5


# -- 3. graceful-stop ---------------------------------------------------------------


@MPMS
def test_graceful_stop_finishes_open_streams_then_exits(own_httpd, mock, key_path, mpm):
    """SIGWINCH (apachectl graceful-stop) with two streams open: the port
    refuses new connections at once, the streams go on to their last
    token and [DONE], then httpd exits by itself. GracefulShutdownTimeout 0
    (wait as long as the streams take): the streams end when the test
    releases them, not when a timer runs out."""
    server, client = own_httpd(config(mock, key_path, 1, server=["GracefulShutdownTimeout 0"]),
                               mpm=mpm)
    with HeldStreams(client, mock) as held:
        streams = [held.open(body=marked(f"stop-{i}")) for i in range(2)]
        for stream in streams:
            stream.wait_held()
        graceful_stop_signal(server)
        wait_for(lambda: not port_accepts(server.port), 30, "the port to refuse connections")
        assert not listening_children(server)
        assert server.proc.poll() is None, "httpd exited under its open streams"
        assert all(stream.held() for stream in streams)
        for stream in streams:
            stream.release()
        for stream in streams:
            assert_complete(stream.result())
    assert server.proc.wait(timeout=60) == 0
    assert not port_accepts(server.port)
    records = records_of(mock, "stop-")
    assert [r["outcome"] for r in records] == ["ok", "ok"]


# -- 4. OpenAIProxyMaxStreams changed by graceful restarts -------------------------


@MPMS
def test_max_streams_raised_and_lowered_while_streams_are_open(own_httpd, mock, key_path, mpm):
    """MaxStreams 2 with two streams open; raised to 3: the old streams
    still count, so one more stream is admitted, not three; lowered to 1
    with three open: none. Once all have ended (and their generations are
    gone), the full limit of the last config is free: exactly one stream,
    nothing leaked or counted twice."""
    def body(generation, limit):
        return config(mock, key_path, generation, server=[f"OpenAIProxyMaxStreams {limit}"])

    def refused_stream():
        resp = client.post("/v1/chat/completions", {"messages": MESSAGES, "stream": True})
        return (resp.status == 503 and resp.header("Retry-After") == "2"
                and "Too many streams" in openai_error(resp)["message"])

    server, client = own_httpd(body(1, 2), mpm=mpm)
    with HeldStreams(client, mock) as held:
        first = [held.open(body=marked("gen1")) for _ in range(2)]
        for stream in first:
            stream.wait_held()
        assert refused_stream()

        old1 = begin_graceful_restart(server, body(2, 3))
        new_generation_serves(client, 2)
        assert status(client)["requests"]["active_streams"] == 2
        second = held.open(body=marked("gen2"))
        second.wait_held()
        assert refused_stream(), "the old generation's streams were not counted"

        old2 = begin_graceful_restart(server, body(3, 1))
        new_generation_serves(client, 3)
        assert status(client)["requests"]["active_streams"] == 3
        assert refused_stream()
        assert all(stream.held() for stream in first + [second])

        for stream in first + [second]:
            stream.release()
        for stream in first + [second]:
            assert_complete(stream.result())
    wait_generation_gone(server, old1 | old2)
    wait_for(lambda: status(client)["requests"]["active_streams"] == 0, 30,
             "the streams to leave the status page")

    with HeldStreams(client, mock) as held:
        last = held.open(body=marked("gen3"))
        last.wait_held()
        assert refused_stream()
        last.release()
        assert_complete(last.result())
    # and the one slot is free again
    resp = client.post("/v1", {"messages": MESSAGES, "stream": True})
    assert resp.status == 200 and sse_data_lines(resp.body)[-1] == "[DONE]"


# -- 5. key rotation ----------------------------------------------------------------


@MPMS
def test_key_rotation_through_the_key_file_and_a_graceful_restart(
        own_httpd, mock, key_path, responses, error_log, mpm):
    """The README's way to rotate the upstream key: write the new key into
    the file OpenAIProxyAPIKey file: names (a new file renamed over it),
    then a graceful restart. Streams opened with the old key finish with
    it; every new request, plain or streamed, goes with the new one; an
    upstream that quotes the key it got in its error finds it masked; and
    neither key is in any log line or answer."""
    error_log.allow("upstream")  # the echoed 401 may be logged as an upstream error
    server, client = own_httpd(config(mock, key_path, 1), mpm=mpm)
    assert client.post("/v1", marked("rot-before")).status == 200

    with HeldStreams(client, mock) as held:
        streams = [held.open(body=marked(f"rot-old-{i}")) for i in range(2)]
        for stream in streams:
            stream.wait_held()
        write_key(key_path, NEW_KEY)
        old = begin_graceful_restart(server, config(mock, key_path, 2))
        new_generation_serves(client, 2)

        assert client.post("/v1", marked("rot-new")).status == 200
        fresh = client.post("/v1", marked("rot-new", stream=True), stream=True)
        assert fresh.status == 200 and sse_data_lines(fresh.body)[-1] == "[DONE]"
        echoed = client.post("/v1", marked("rot-new", mock={"echo_key": "full"}))
        assert echoed.status == 401
        assert all(stream.held() for stream in streams)
        for stream in streams:
            stream.release()
        for stream in streams:
            assert_complete(stream.result())
    wait_generation_gone(server, old)

    assert set(authorization_of(mock, "rot-before")) == {f"Bearer {OLD_KEY}"}
    assert set(authorization_of(mock, "rot-old-")) == {f"Bearer {OLD_KEY}"}
    assert set(authorization_of(mock, "rot-new")) == {f"Bearer {NEW_KEY}"}
    assert_no_key_anywhere(server, responses)
