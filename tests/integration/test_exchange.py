"""The exchange's states (engine/upstream.c): a stream's head goes to the
client as soon as the upstream's head is known; a successful answer that is
neither SSE nor JSON passes through as it arrives instead of being held
whole; JSON answers stay whole, with their Content-Length."""

import http.client
import json
import socket
import uuid

from harness import MESSAGES, open_raw_post, proxy_location, sse_data_lines


def read_until(sock, marker, data=b""):
    while marker not in data:
        more = sock.recv(65536)
        if not more:
            break
        data += more
    return data


def test_a_streams_head_comes_before_its_first_event(httpd, mock):
    """A model that thinks for a long time sends its head at once and no
    event: the client has the status and headers while the upstream still
    holds its first event (gated: it waits until the test opens the gate)."""
    gate = uuid.uuid4().hex
    sock = open_raw_post(httpd.port, {"messages": MESSAGES, "stream": True,
                                      "mock": {"chunks": 2, "gate": gate,
                                               "first_chunk_delay": 30,
                                               "gate_timeout": 30}})
    sock.settimeout(20)
    try:
        head = read_until(sock, b"\r\n\r\n")
        status_line, _, rest = head.partition(b"\r\n")
        assert b" 200 " in status_line, head
        assert b"content-type: text/event-stream" in rest.lower(), head
        assert b"data:" not in head, "an event came before the gate opened"
        mock.open_gate(gate, permits=10)
        body = read_until(sock, b"[DONE]", head)
    finally:
        sock.close()
    assert b"data: [DONE]" in body
    record = mock.last_finished()
    assert record["gate_timeouts"] == 0


def test_a_binary_answer_passes_through_as_it_arrives(client, mock):
    """A 2xx answer that is no event stream and no JSON (speech audio,
    images, files) reaches the client piece by piece: each piece arrives
    before the upstream sends the next (gated on what the client read), and
    the bytes are the upstream's, unchanged and unparsed."""
    gate = uuid.uuid4().hex
    body = {"messages": MESSAGES, "stream": True,
            "mock": {"chunks": 4, "gate": gate, "content_type": "audio/mpeg"}}
    resp = client.post("/v1", body, stream=True, on_read=mock.gate_by_events(gate))
    record = mock.last_finished()
    assert resp.status == 200
    assert resp.header("Content-Type") == "audio/mpeg"
    assert resp.header("Content-Length") is None
    assert record["gate_timeouts"] == 0, "the answer was held back until it was whole"
    data = sse_data_lines(resp.body)
    assert data[-1] == "[DONE]"
    # nothing hidden, nothing added: the usage chunk the proxy asked for is
    # part of an answer it does not read
    assert any(json.loads(d).get("usage") for d in data[:-1])


def test_a_binary_answer_cut_short_ends_the_body(client, mock, error_log):
    """The upstream hangs up in the middle of a passed-through answer: the
    client's body ends there (its head went out), no JSON error is written
    into audio bytes, and the worker is free for the next request."""
    error_log.allow("upstream request failed")
    body = {"messages": MESSAGES, "stream": True,
            "mock": {"chunks": 6, "hangup_after": 3, "content_type": "audio/mpeg",
                     "chunk_delay": 0}}
    try:
        resp = client.post("/v1", body, stream=True)
        assert resp.status == 200
        assert b"upstream_error" not in resp.body
    except (ConnectionError, socket.error, http.client.HTTPException):
        pass  # the chunked body could not end cleanly: the connection was closed
    assert client.post("/v1", {"messages": MESSAGES}).status == 200


def test_a_json_answer_is_read_whole(client, mock):
    resp = client.post("/v1", {"messages": MESSAGES})
    assert resp.status == 200
    assert int(resp.header("Content-Length")) == len(resp.body)
    assert resp.json()["usage"]["total_tokens"] > 0


def test_a_stream_left_open_after_done_is_ended_by_the_proxy(own_httpd, mock):
    """An upstream that keeps its stream open after data: [DONE]: the
    client's stream ends cleanly soon after [DONE] (no error event, outcome
    ok), not after the idle timeout with an error event after a complete
    stream. The idle timeout here is far longer than the test may take."""
    _, client = own_httpd(proxy_location(mock, "OpenAIProxyIdleTimeout 120"))
    body = {"messages": MESSAGES, "stream": True,
            "mock": {"chunks": 2, "chunk_delay": 0, "linger_after_done": 100}}
    resp = client.post("/v1", body, stream=True, timeout=60)
    assert resp.status == 200
    assert resp.body.endswith(b"data: [DONE]\n\n"), resp.body[-200:]
    assert b"event: error" not in resp.body
    assert mock.last_finished(timeout=30)["outcome"] == "client_gone"


def test_an_empty_compressed_answer_still_gets_its_head(client, mock):
    """A compressed answer's head waits for its first decoded byte; one
    that decodes to nothing still gets its status and type at the end."""
    body = {"messages": MESSAGES, "stream": True,
            "mock": {"status": 200, "error_body": "", "content_type": "audio/mpeg",
                     "gzip": True}}
    resp = client.post("/v1", body, stream=True)
    assert resp.status == 200
    assert resp.header("Content-Type") == "audio/mpeg"
    assert resp.body == b""
