"""Server-Sent Events: relayed unchanged, unbuffered, and stopped when
either side goes away."""

import json
import time

from harness import (MESSAGES, assert_unbuffered, gated_stream_body, open_raw_post, prompt,
                     sse_data_lines, sse_error_event)


def stream(client, path="/v1", mock_directives=None, **kw):
    body = {"messages": MESSAGES, "stream": True}
    if mock_directives:
        body["mock"] = mock_directives
    return client.post(path, body, stream=True, **kw)


def test_stream_headers_and_framing(client, mock):
    resp = stream(client, mock_directives={"tokens": ["Once ", "upon ", "a ", "time"],
                                           "chunk_delay": 0})
    assert resp.status == 200
    assert resp.header("Content-Type").startswith("text/event-stream")
    assert resp.header("Cache-Control") == "no-cache"
    assert resp.header("X-Accel-Buffering") == "no"
    assert resp.header("Content-Length") is None
    assert resp.header("x-request-id").startswith("req_")
    data = sse_data_lines(resp.body)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "Once upon a time"
    # nothing added, nothing lost: the body is exactly the upstream's events
    assert resp.body == b"".join(b"data: " + d.encode() + b"\n\n" for d in data)


def test_events_split_across_upstream_writes_arrive_intact(client, mock):
    resp = stream(client, mock_directives={"chunks": 6, "split_events": True,
                                           "chunk_delay": 0.01})
    data = sse_data_lines(resp.body)
    assert data[-1] == "[DONE]"
    assert len(data) == 1 + 6 + 1 + 1  # role, 6 tokens, stop, DONE
    for d in data[:-1]:
        json.loads(d)


def gated_stream(client, mock, path="/v1", chunks=4, **kw):
    """A gated stream (harness.gated_stream_body) read to its end, and the
    upstream's record of it."""
    gate, body = gated_stream_body(chunks)
    resp = client.post(path, body, stream=True, on_read=mock.gate_by_events(gate), **kw)
    return resp, mock.last_finished(timeout=10)


def test_each_event_reaches_the_client_before_the_next_is_sent(client, mock):
    resp, record = gated_stream(client, mock)
    assert_unbuffered(sse_data_lines(resp.body), record, chunks=4)


def test_client_disconnect_stops_the_upstream_transfer(client, mock, httpd):
    sock = open_raw_post(httpd.port, {"messages": MESSAGES, "stream": True,
                                      "mock": {"chunks": 200, "chunk_delay": 0.1}})
    received = b""
    while received.count(b"data: ") < 3:
        received += sock.recv(65536)
    sock.close()
    closed_at = time.time()
    record = mock.last_finished(timeout=10)
    # the upstream stopped before the end of its 20 s stream, and promptly
    # (curl's progress callback looks about once a second): the bound is
    # generous and scaled for a loaded machine, ASan and valgrind
    assert record["outcome"] == "client_gone", "the upstream kept streaming to nobody"
    assert record["chunks_sent"] < 200
    assert record["ended_at"] - closed_at < prompt(2)
    log = "\n".join(open(httpd.error_log).read().splitlines()[-50:])
    assert "client went away" in log


def test_upstream_hangup_mid_stream_ends_with_an_sse_error_event(client, mock, error_log):
    error_log.allow("upstream request failed")
    resp = stream(client, mock_directives={"chunks": 10, "hangup_after": 3,
                                           "chunk_delay": 0.01})
    assert resp.status == 200
    text = resp.body.decode()
    assert text.count("data: {") == 4  # 3 upstream events + the error event
    err = sse_error_event(text)["error"]
    assert err["type"] == "upstream_error"
    assert "[DONE]" not in text


def test_deflate_does_not_buffer_streams(client, mock):
    # the same Location compresses plain answers: the filter is really active
    plain = client.post("/deflated", {"messages": MESSAGES},
                        headers={"Accept-Encoding": "gzip"})
    assert plain.header("Content-Encoding") == "gzip"
    resp, record = gated_stream(client, mock, "/deflated", chunks=3,
                                headers={"Accept-Encoding": "gzip"})
    assert resp.header("Content-Encoding") is None
    assert_unbuffered(sse_data_lines(resp.body), record, chunks=3)


def test_stream_request_answered_with_json_is_relayed_as_json(client, mock):
    resp = stream(client, mock_directives={"content_type": "application/json",
                                           "status": 200, "error_body": '{"ok":true}'})
    assert resp.status == 200
    assert resp.header("Content-Type").startswith("application/json")
    assert resp.json() == {"ok": True}
