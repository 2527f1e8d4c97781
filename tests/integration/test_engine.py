"""The upstream engine: connection reuse, cost safety when the client leaves,
timeouts, heartbeats, the stream limit, and unbuffered streams under every
MPM and HTTP/2."""

import json
import select
import socket
import subprocess
import time

import pytest

from harness import (KEEP_ALIVE, MESSAGES, after_a_keep_alive, assert_unbuffered, config_test,
                     gated_stream_body, open_raw_post, prompt, proxy_location, silent_upstream,
                     sse_data_lines, sse_error_event, wait_for)
from valgrind import not_under_valgrind


# the upstream says nothing (before its head, or between events) until the
# proxy hangs up: a gate that nobody opens, so no timing race with the
# proxy's own timeouts whatever the machine's load
SILENT_UNTIL_HUNG_UP = {"delay_headers": 1, "gate": "never-opened", "gate_timeout": 300}


def test_upstream_connections_are_reused(client, mock):
    for _ in range(50):
        assert client.post("/v1", {"messages": MESSAGES}).status == 200
    stats = mock.stats()
    assert stats["requests"] == 50
    # one kept-alive connection per httpd child that served requests
    assert stats["connections_accepted"] <= 4, stats


@pytest.mark.parametrize("stream", [True, False])
def test_client_leaving_while_the_model_thinks_stops_the_upstream(httpd, mock, stream):
    # the upstream thinks until the proxy hangs up (a gate nobody opens)
    sock = open_raw_post(httpd.port, {"messages": MESSAGES, "stream": stream,
                                      "mock": SILENT_UNTIL_HUNG_UP})
    # the upstream has the request (it records it once read) and thinks
    wait_for(lambda: mock.requests(), 5, "the request to reach the upstream")
    sock.close()
    closed_at = time.time()
    record = mock.last_finished()
    # the proxy hung up on the silent upstream, and promptly: noticed from
    # curl's progress callback, about once a second (the bound is generous
    # and scaled for a loaded machine, ASan and valgrind)
    assert record["outcome"] == "client_gone"
    assert record["ended_at"] - closed_at < prompt(2)


def test_first_byte_timeout_is_504_json(own_httpd, mock, error_log):
    error_log.allow("upstream request failed")
    _, client = own_httpd(proxy_location(mock, "OpenAIProxyFirstByteTimeout 1"))
    for stream in (False, True):
        resp = client.post("/v1", {"messages": MESSAGES, "stream": stream,
                                   "mock": SILENT_UNTIL_HUNG_UP})
        assert resp.status == 504
        assert resp.json() == {"error": "Gateway Timeout",
                               "message": "The upstream API did not answer within 1 seconds"}
    assert mock.last_finished()["outcome"] == "client_gone"


def test_first_byte_timeout_in_milliseconds(own_httpd, mock, error_log):
    # httpd's time syntax: a timeout below a second is kept as written
    error_log.allow("upstream request failed")
    _, client = own_httpd(proxy_location(mock, "OpenAIProxyFirstByteTimeout 700ms"))
    resp = client.post("/v1", {"messages": MESSAGES, "mock": SILENT_UNTIL_HUNG_UP})
    assert resp.status == 504
    assert resp.json()["message"] == "The upstream API did not answer within 700 ms"


def test_idle_timeout_mid_stream_ends_with_sse_error(own_httpd, mock, error_log):
    error_log.allow("upstream request failed")
    _, client = own_httpd(proxy_location(mock, "OpenAIProxyIdleTimeout 1"))
    silent_after_the_role_chunk = {"chunks": 3, "gate": "never-opened", "gate_timeout": 300}
    resp = client.post("/v1", {"messages": MESSAGES, "stream": True,
                               "mock": silent_after_the_role_chunk}, stream=True)
    assert resp.status == 200
    text = resp.body.decode()
    assert text.startswith("data: {")  # the role chunk came before the silence
    err = sse_error_event(text)["error"]
    assert err["code"] == "upstream_timeout"
    assert "silent for more than 1 seconds" in err["message"]


def two_then_one_keep_alive(events):
    """Before the head: silent until two keep-alives came; the gap after the
    first event: until one more came; the other gaps end at once."""
    data = [i for i, e in enumerate(events) if e.startswith("data: ")]
    if not data:
        return 1 if events.count(KEEP_ALIVE) >= 2 else 0
    if KEEP_ALIVE not in events[data[0] + 1:]:
        return 1
    return 1 + len(data)


def test_heartbeats_while_the_upstream_is_silent(own_httpd, mock):
    _, client = own_httpd(proxy_location(mock, "OpenAIProxyHeartbeat 1"))
    resp = silent_upstream(client, mock, {"delay_headers": 1, "chunks": 2},
                           two_then_one_keep_alive)
    assert resp.status == 200
    assert resp.header("Content-Type").startswith("text/event-stream")
    events = resp.body.decode().split("\n\n")[:-1]
    assert events[0] == ": keep-alive", "no comment while waiting for the first byte"
    first_data = next(i for i, e in enumerate(events) if e.startswith("data: "))
    assert first_data >= 2
    # comments also fill the silences between events, never inside one
    data_positions = [i for i, e in enumerate(events) if e.startswith("data: ")]
    assert any(events[i] == ": keep-alive" for i in range(data_positions[0], data_positions[-1]))
    for e in events:
        assert e == ": keep-alive" or e.startswith("data: ")
    assert sse_data_lines(resp.body)[-1] == "[DONE]"


def test_heartbeat_after_the_upstream_head_keeps_its_headers(own_httpd, mock):
    """The upstream answered at once but the model is slow to its first
    event: the heartbeat commits the upstream's own head (x-request-id...)."""
    _, client = own_httpd(proxy_location(mock, "OpenAIProxyHeartbeat 1"))
    resp = silent_upstream(client, mock, {"first_chunk_delay": 1, "chunks": 1},
                           after_a_keep_alive)
    assert resp.status == 200
    assert resp.body.decode().startswith(": keep-alive\n\n")
    assert resp.header("x-request-id").startswith("req_")
    assert resp.header("Content-Type") == "text/event-stream; charset=utf-8"


def test_heartbeat_then_upstream_error_becomes_an_sse_error_event(own_httpd, mock):
    _, client = own_httpd(proxy_location(mock, "OpenAIProxyHeartbeat 1"))
    resp = silent_upstream(client, mock, {"delay_headers": 1, "status": 429},
                           after_a_keep_alive)
    assert resp.status == 200  # committed by the heartbeats
    text = resp.body.decode()
    assert text.startswith(": keep-alive\n\n")
    data = sse_error_event(text)
    assert data["status"] == 429
    assert data["error"]["code"] == "rate_limit_exceeded"


def test_no_heartbeat_for_plain_requests(own_httpd, mock):
    _, client = own_httpd(proxy_location(mock, "OpenAIProxyHeartbeat 1"))
    # a silence longer than two heartbeats is the behaviour under test (no
    # comment may come into a JSON answer): a time, as no event can end it
    resp = client.post("/v1", {"messages": MESSAGES, "mock": {"delay_headers": 2.2}})
    assert resp.status == 200
    assert resp.json()["object"] == "chat.completion"


@not_under_valgrind("needs several prefork processes; valgrind runs apache2 -X (one)")
def test_max_streams_over_all_processes(own_httpd, mock):
    """prefork: each stream is in its own process, so only shared counters
    can enforce the limit."""
    server, client = own_httpd(
        f"<VirtualHost 127.0.0.1:*>\n  OpenAIProxyMaxStreams 2\n"
        f"{proxy_location(mock)}</VirtualHost>\n", mpm="prefork")
    long_stream = {"messages": MESSAGES, "stream": True,
                   "mock": {"chunks": 100, "chunk_delay": 0.1}}
    socks = [open_raw_post(server.port, long_stream) for _ in range(2)]
    wait_for(lambda: mock.stats()["active_streams"] == 2, 10, "two open streams")
    refused = client.post("/v1", {"messages": MESSAGES, "stream": True})
    assert refused.status == 503
    assert refused.header("Retry-After") == "2"
    assert refused.json()["error"] == "Service Unavailable"
    # plain requests are not streams
    assert client.post("/v1", {"messages": MESSAGES}).status == 200
    for s in socks:
        s.close()
    wait_for(lambda: mock.stats()["active_streams"] == 0, 10, "the streams to end")
    # the proxy frees a slot when its request ends, just after the upstream
    # saw the end: retried as a client told Retry-After would, until accepted
    wait_for(lambda: client.post("/v1", {"messages": MESSAGES, "stream": True,
                                         "mock": {"chunk_delay": 0}},
                                 stream=True).status == 200, 10, "a stream slot to free up")


def test_max_streams_is_per_virtual_host(workdir):
    result = config_test(workdir, "<Location /x>\nOpenAIProxyMaxStreams 3\n</Location>\n",
                         name="maxstreams-ctx")
    assert result.returncode != 0
    assert "not allowed" in result.stderr


@pytest.mark.parametrize("mpm", ["worker", "prefork"])
def test_streams_are_unbuffered_under_every_mpm(own_httpd, mock, mpm):
    _, client = own_httpd(proxy_location(mock), mpm=mpm)
    gate, body = gated_stream_body()
    resp = client.post("/v1", body, stream=True, on_read=mock.gate_by_events(gate))
    assert_unbuffered(sse_data_lines(resp.body), mock.last_finished())


def curl_stream_lines(url, body, *args, on_line=None):
    """Runs curl and returns the lines it prints, calling on_line(line) as
    each one arrives."""
    proc = subprocess.Popen(["curl", "-sN", *args, url, "-H", "Content-Type: application/json",
                             "-d", json.dumps(body), "-w", "\\nHTTP_VERSION=%{http_version}\\n"],
                            stdout=subprocess.PIPE)
    lines = []
    for raw in proc.stdout:
        lines.append(raw.decode().rstrip("\n"))
        if on_line:
            on_line(lines[-1])
    proc.wait(30)
    return lines


def test_streams_are_unbuffered_over_http2(own_httpd, mock):
    server, _ = own_httpd("Protocols h2c http/1.1\n" + proxy_location(mock),
                          modules=["http2"])
    gate, body = gated_stream_body()
    lines = curl_stream_lines(server.url("/v1"), body, "--http2-prior-knowledge",
                              on_line=lambda l: l.startswith("data: ") and mock.open_gate(gate))
    assert "HTTP_VERSION=2" in lines
    assert_unbuffered([l[len("data: "):] for l in lines if l.startswith("data: ")],
                      mock.last_finished())


def test_http2_client_reset_stops_the_upstream(own_httpd, mock):
    server, _ = own_httpd("Protocols h2c http/1.1\n" + proxy_location(mock),
                          modules=["http2"])
    body = {"messages": MESSAGES, "stream": True, "mock": {"chunks": 200, "chunk_delay": 0.1}}
    proc = subprocess.Popen(["curl", "-sN", "--http2-prior-knowledge", server.url("/v1"),
                             "-H", "Content-Type: application/json", "-d", json.dumps(body)],
                            stdout=subprocess.PIPE)
    seen = 0
    for raw in proc.stdout:
        seen += raw.startswith(b"data: ")
        if seen >= 3:
            break
    proc.kill()
    proc.wait()
    closed_at = time.time()
    record = mock.last_finished()
    # stopped before the end of the 20 s stream, promptly (generous, scaled)
    assert record["outcome"] == "client_gone"
    assert record["chunks_sent"] < 200
    assert record["ended_at"] - closed_at < prompt(2)


def test_heartbeat_then_upstream_ignoring_stream_relays_its_answer(own_httpd, mock):
    _, client = own_httpd(proxy_location(mock, "OpenAIProxyHeartbeat 1"))
    resp = silent_upstream(client, mock, {"delay_headers": 1,
                                          "content_type": "application/json",
                                          "status": 200, "error_body": '{"ok":true}'},
                           after_a_keep_alive)
    assert resp.status == 200
    assert resp.body.decode().startswith(": keep-alive\n\n")
    assert resp.body.decode().endswith('{"ok":true}')


def test_connect_timeout_is_504_json(own_httpd, error_log):
    """An upstream whose accept queue is full never completes the handshake."""
    error_log.allow("upstream request failed")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):  # fill the accept queue; later SYNs are dropped
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    # the queue (one connection for a backlog of 0) is full once a filler's
    # handshake completed: it becomes writable
    wait_for(lambda: select.select([], fillers, [], 0.1)[1], 5, "the accept queue to fill")
    try:
        _, client = own_httpd(proxy_location(f"http://127.0.0.1:{port}/v1",
                                             "OpenAIProxyConnectTimeout 1"))
        started = time.monotonic()
        resp = client.post("/v1", {"messages": MESSAGES})
        assert resp.status == 504
        assert "Could not connect to the upstream API in time" in resp.json()["message"]
        # the 1 s connect timeout, not httpd's Timeout 20 (generous, scaled)
        assert time.monotonic() - started < prompt(3)
    finally:
        for s in fillers:
            s.close()
        listener.close()
