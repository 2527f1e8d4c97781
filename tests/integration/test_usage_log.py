"""What the access log shows of each request through conf/openai_proxy_log.conf:
model, stream, outcome, upstream status, time to first byte, token usage."""

import json
import socket
import uuid

import pytest

from harness import usage_line

# 4 prompt tokens at the mock, so that a logged count matches the answer's
# only if it was read from it (1 might by chance); the mock's answer quotes
# them: "You said: count my tokens please"
FOUR_TOKEN_MESSAGES = [{"role": "user", "content": "count my tokens please"}]


def request(client, body, **kw):
    marker = uuid.uuid4().hex
    resp = client.post(f"/v1?t={marker}", body, **kw)
    return resp, marker


def test_plain_answer_logs_model_outcome_and_usage(client, mock, httpd):
    resp, marker = request(client, {"messages": FOUR_TOKEN_MESSAGES, "model": "gpt-4o-mini"})
    usage = resp.json()["usage"]
    fields, line = usage_line(httpd, marker)
    assert fields["model"] == "gpt-4o-mini"
    assert fields["stream"] == "0"
    assert fields["outcome"] == "ok"
    assert fields["upstream"] == "200"
    assert int(fields["ttfb_ms"]) >= 0
    assert int(fields["prompt_tokens"]) == usage["prompt_tokens"]
    assert int(fields["completion_tokens"]) == usage["completion_tokens"]
    assert int(fields["total_tokens"]) == usage["total_tokens"]
    assert '" 200 ' in line


def test_stream_usage_is_read_from_the_last_chunk(client, mock, httpd):
    resp, marker = request(client, {"messages": FOUR_TOKEN_MESSAGES, "stream": True,
                                    "stream_options": {"include_usage": True},
                                    "mock": {"split_events": True, "chunk_delay": 0}},
                           stream=True)
    chunks = [json.loads(line[6:]) for line in resp.body.decode().split("\n")
              if line.startswith("data: {")]
    usage = chunks[-1]["usage"]
    fields, _ = usage_line(httpd, marker)
    assert fields["stream"] == "1"
    assert fields["outcome"] == "ok"
    assert int(fields["prompt_tokens"]) == usage["prompt_tokens"]
    assert int(fields["total_tokens"]) == usage["total_tokens"]


@pytest.mark.parametrize("options", [None, {"include_usage": False}, {"foo": 1}])
def test_stream_usage_is_counted_but_hidden_when_the_client_did_not_ask(client, mock, httpd,
                                                                        options):
    body = {"messages": FOUR_TOKEN_MESSAGES, "stream": True,
            "mock": {"split_events": True, "chunk_delay": 0}}
    if options is not None:
        body["stream_options"] = options
    resp, marker = request(client, body, stream=True)
    sent = mock.requests()[-1]["body"]
    assert sent["stream_options"]["include_usage"] is True  # asked upstream
    if options and "foo" in options:
        assert sent["stream_options"]["foo"] == 1
    data = [line[6:] for line in resp.body.decode().split("\n") if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert all(c["choices"] for c in chunks), "the usage chunk reached the client"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert "You said: count my tokens please" in text
    fields, _ = usage_line(httpd, marker)
    assert int(fields["prompt_tokens"]) > 0
    assert int(fields["total_tokens"]) == (int(fields["prompt_tokens"]) +
                                           int(fields["completion_tokens"]))


def test_outcomes_of_errors(client, mock, httpd, error_log):
    error_log.allow("upstream request failed")
    _, marker = request(client, {"messages": FOUR_TOKEN_MESSAGES, "mock": {"status": 429}})
    fields, _ = usage_line(httpd, marker)
    assert (fields["outcome"], fields["upstream"]) == ("upstream_error", "429")
    _, marker = request(client, {"messages": FOUR_TOKEN_MESSAGES},
                        headers={"Origin": "https://evil.example.com"})
    assert usage_line(httpd, marker)[0]["outcome"] == "origin_not_allowed"
    _, marker = request(client, "{", headers={"Content-Type": "application/json"})
    assert usage_line(httpd, marker)[0]["outcome"] == "invalid_json"
    _, marker = request(client, {"messages": FOUR_TOKEN_MESSAGES,
                                 "mock": {"hangup_before_headers": True}})
    assert usage_line(httpd, marker)[0]["outcome"] == "upstream_failed"


def test_client_gone_is_logged(httpd, mock):
    marker = uuid.uuid4().hex
    body = json.dumps({"messages": FOUR_TOKEN_MESSAGES, "stream": True,
                       "mock": {"chunks": 100, "chunk_delay": 0.1}}).encode()
    sock = socket.create_connection(("127.0.0.1", httpd.port))
    sock.sendall(f"POST /v1?t={marker} HTTP/1.1\r\nHost: a.test\r\n".encode() +
                 b"Content-Length: %d\r\n\r\n" % len(body) + body)
    received = b""
    while received.count(b"data: ") < 2:
        received += sock.recv(65536)
    sock.close()
    fields, _ = usage_line(httpd, marker)
    assert fields["outcome"] == "client_gone"
    assert fields["stream"] == "1"
