"""The second attempt (README "Second attempts"): fields the proxy added
that an upstream refuses are taken back and the request sent again before
anything reached the client; the refusal is remembered, so later requests
go in one attempt; the client's own fields go as sent; model families get
the defaults they take; limits and the logs count the request once."""

import hashlib
import json
import os
import uuid

import pytest

from harness import (KEEP_ALIVE, MESSAGES, REPO, STATUS_LOCATION, config_test, bare_location,
                     log_line, parallel_posts, proxy_location, settled, sse_data_lines,
                     sse_error_event, usage_fields)

REASONING_MODELS = ["o1", "o3", "o3-2025-04-16", "o4-mini", "gpt-5", "gpt-5-mini",
                    "gpt-5-nano"]
CHAT_MODELS = ["gpt-4o", "gpt-4.1", "gpt-4o-mini", "gpt-3.5-turbo"]
RETRY_LINE = "which the proxy added, not the client"


def server(own_httpd, mock, *directives, status=False, mpm="event"):
    """An httpd of the test's own (a fresh refusal memory) whose /v1 has
    `directives`, with the usage log format of conf/openai_proxy_log.conf
    in NAME-usage.log."""
    def body(httpd):
        return (f"Include {REPO}/conf/openai_proxy_log.conf\n"
                f'CustomLog "{usage_log(httpd)}" openai_proxy\n'
                + proxy_location(mock, *directives)
                + (STATUS_LOCATION if status else ""))
    return own_httpd(body, mpm=mpm)


def usage_log(httpd):
    return os.path.join(httpd.workdir, f"{httpd.name}-usage.log")


def post(client, body, **kw):
    """A POST to /v1 with a marker in its query: (response, marker)."""
    marker = uuid.uuid4().hex
    return client.post(f"/v1?t={marker}", body, **kw), marker


def logged(httpd, marker):
    return usage_fields(log_line(usage_log(httpd), marker).decode())


def bodies(mock):
    return [r["body"] for r in mock.requests()]


def chat(model=None, stream=False, **fields):
    body = dict({"messages": MESSAGES}, **fields)
    if model is not None:
        body["model"] = model
    if stream:
        body["stream"] = True
    return body


def retry_lines(httpd):
    return [line for line in httpd.new_log_lines() if RETRY_LINE in line]


# -- model families: the built-in defaults they take ------------------------------

@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_models_through_a_default_location(client, mock, stream):
    for model in REASONING_MODELS:
        resp = client.post("/v1", chat(model, stream), stream=stream)
        assert resp.status == 200, (model, resp.text)
    sent = bodies(mock)
    assert [b["model"] for b in sent] == REASONING_MODELS  # one attempt each
    for body in sent:
        assert "temperature" not in body
        assert "max_tokens" not in body
        assert body["max_completion_tokens"] == 1000


def test_chat_models_keep_the_workers_defaults(client, mock):
    for model in CHAT_MODELS:
        assert client.post("/v1", chat(model)).status == 200
    for body in bodies(mock):
        assert body["temperature"] == 0.7
        assert body["max_tokens"] == 1000
        assert "max_completion_tokens" not in body


def test_the_cap_is_written_in_the_field_the_model_takes(own_httpd, mock):
    _, client = server(own_httpd, mock, "OpenAIProxyMaxTokens 64",
                       "OpenAIProxyDefault max_tokens none")
    for model in ("o3", "gpt-4o"):
        assert client.post("/v1", chat(model)).status == 200
    reasoning, plain = bodies(mock)
    assert reasoning["max_completion_tokens"] == 64 and "max_tokens" not in reasoning
    assert plain["max_tokens"] == 64 and "max_completion_tokens" not in plain


def test_the_cap_lowers_the_default_in_the_models_field(client, mock):
    # /capped: OpenAIProxyMaxTokens 64 over the built-in 1000
    assert client.post("/capped", chat("o4-mini")).status == 200
    sent = bodies(mock)[-1]
    assert sent["max_completion_tokens"] == 64 and "max_tokens" not in sent


def test_an_operator_max_tokens_goes_as_max_completion_tokens_to_reasoning_models(
        client, mock):
    # /defaults: OpenAIProxyDefault max_tokens 256, temperature none
    assert client.post("/defaults", chat("o3")).status == 200
    assert client.post("/defaults", chat("gpt-4o")).status == 200
    reasoning, plain = bodies(mock)
    assert reasoning["max_completion_tokens"] == 256 and "max_tokens" not in reasoning
    assert plain["max_tokens"] == 256


# -- refused defaults: taken back, remembered ------------------------------------

def test_an_operator_temperature_refused_is_taken_back_and_remembered(own_httpd, mock):
    httpd, client = server(own_httpd, mock, "OpenAIProxyDefault temperature 0.2")
    httpd.new_log_lines()
    resp, marker = post(client, chat("o3"))
    assert resp.status == 200 and resp.json()["object"] == "chat.completion"
    first, second = bodies(mock)
    assert first["temperature"] == 0.2
    assert "temperature" not in second
    assert second["max_completion_tokens"] == 1000
    fields = logged(httpd, marker)
    assert (fields["outcome"], fields["upstream"], fields["attempts"]) == ("ok", "200", "2")
    lines = retry_lines(httpd)
    assert len(lines) == 1 and "[openai_proxy:info]" in lines[0]
    assert "refused temperature (400)" in lines[0] and "attempt 2" in lines[0]

    # remembered for this upstream and model: the next request goes in one attempt
    mock.reset()
    resp, marker = post(client, chat("o3", stream=True), stream=True)
    assert sse_data_lines(resp.body)[-1] == "[DONE]"
    assert ["temperature" in b for b in bodies(mock)] == [False]
    assert logged(httpd, marker)["attempts"] == "1"
    # another model pays its own second attempt; a chat model takes the value
    mock.reset()
    assert client.post("/v1", chat("o4-mini")).status == 200
    assert client.post("/v1", chat("gpt-4o")).status == 200
    assert [b.get("temperature") for b in bodies(mock)] == [0.2, None, 0.2]


def test_the_memory_is_shared_by_every_process(own_httpd, mock):
    # prefork: parallel requests are served by different processes
    _, client = server(own_httpd, mock, "OpenAIProxyDefault temperature 0.2", mpm="prefork")
    assert client.post("/v1", chat("o3")).status == 200
    assert len(mock.requests()) == 2
    resps = parallel_posts(client, "/v1", 8, chat("o3"))
    assert [r.status for r in resps] == [200] * 8
    sent = bodies(mock)[2:]
    assert len(sent) == 8 and not any("temperature" in b for b in sent)


def test_each_refused_field_is_taken_back_in_turn(own_httpd, mock):
    # a deployment name the proxy does not know, refusing like a reasoning model
    httpd, client = server(own_httpd, mock)
    refusing = {"refuse_params": ["max_tokens", "temperature"]}
    resp, marker = post(client, chat("my-deployment", mock=refusing))
    assert resp.status == 200
    sent = bodies(mock)
    assert [sorted(k for k in ("temperature", "max_tokens", "max_completion_tokens")
                   if k in b) for b in sent] == [
        ["max_tokens", "temperature"], ["max_completion_tokens", "temperature"],
        ["max_completion_tokens"]]
    assert sent[2]["max_completion_tokens"] == 1000  # the limit moved, never dropped
    assert logged(httpd, marker)["attempts"] == "3"
    mock.reset()
    assert client.post("/v1", chat("my-deployment", mock=refusing)).status == 200
    assert len(bodies(mock)) == 1


def test_a_retry_never_lifts_the_cap(own_httpd, mock):
    _, client = server(own_httpd, mock, "OpenAIProxyMaxTokens 64",
                       "OpenAIProxyDefault max_tokens none")
    assert client.post("/v1", chat("gpt-4o", mock={"refuse_params": ["max_tokens"]})
                       ).status == 200
    first, second = bodies(mock)
    assert first["max_tokens"] == 64
    assert second["max_completion_tokens"] == 64 and "max_tokens" not in second


def test_a_validators_422_naming_a_field_is_understood(own_httpd, mock):
    # FastAPI-style validators answer 422 and name the field in detail[].loc
    _, client = server(own_httpd, mock)
    error = json.dumps({"detail": [{"type": "extra_forbidden",
                                    "loc": ["body", "temperature"], "msg": "Extra inputs"}]})
    resp = client.post("/v1", chat("gpt-4o", mock={"status": 422, "error_body": error}))
    assert resp.status == 422  # the mock refuses every attempt: the last one is relayed
    first, second = bodies(mock)
    assert "temperature" in first and "temperature" not in second
    assert resp.body == error.encode()


# -- stream_options -------------------------------------------------------------

@pytest.mark.parametrize("style", ["message", "param"])
def test_stream_options_refused_goes_again_without_and_is_remembered(own_httpd, mock, style):
    httpd, client = server(own_httpd, mock)
    refusing = {"refuse_stream_options": style, "chunks": 3}
    resp, marker = post(client, chat(stream=True, mock=refusing), stream=True)
    assert resp.status == 200
    data = sse_data_lines(resp.body)
    assert data[-1] == "[DONE]" and len(data) == 1 + 3 + 1 + 1
    first, second = bodies(mock)
    assert first["stream_options"] == {"include_usage": True}
    assert "stream_options" not in second
    fields = logged(httpd, marker)
    assert fields["attempts"] == "2" and fields["estimated"] == "1"
    assert int(fields["completion_tokens"]) > 0

    # the next stream (any model of this upstream) does not ask: one attempt
    mock.reset()
    resp, marker = post(client, chat("gpt-4o-mini", stream=True, mock=refusing), stream=True)
    assert sse_data_lines(resp.body)[-1] == "[DONE]"
    assert ["stream_options" in b for b in bodies(mock)] == [False]
    assert mock.stats()["requests"] == 1
    fields = logged(httpd, marker)
    assert fields["attempts"] == "1" and fields["estimated"] == "1"


def test_stream_usage_on_always_asks_and_relays_the_refusal(own_httpd, mock):
    _, client = server(own_httpd, mock, "OpenAIProxyStreamUsage on")
    for _ in range(2):  # nothing remembered either
        resp = client.post("/v1", chat(stream=True, mock={"refuse_stream_options": "param"}),
                           stream=True)
        assert resp.status == 400
        assert resp.json()["error"]["param"] == "stream_options"
    assert ["stream_options" in b for b in bodies(mock)] == [True, True]
    assert client.post("/v1", chat(stream=True), stream=True).status == 200
    assert bodies(mock)[-1]["stream_options"] == {"include_usage": True}


def test_stream_usage_off_never_asks(own_httpd, mock):
    httpd, client = server(own_httpd, mock, "OpenAIProxyStreamUsage off")
    resp, marker = post(client, chat(stream=True, mock={"chunks": 2}), stream=True)
    assert sse_data_lines(resp.body)[-1] == "[DONE]"
    assert "stream_options" not in bodies(mock)[-1]
    assert logged(httpd, marker)["estimated"] == "1"
    # the client's own options go as sent (include_usage false is not turned on)
    resp = client.post("/v1", chat(stream=True, stream_options={"include_usage": False}),
                       stream=True)
    assert resp.status == 200
    assert bodies(mock)[-1]["stream_options"] == {"include_usage": False}


def test_bad_stream_usage_fails_the_config_test(workdir):
    result = config_test(workdir, bare_location("OpenAIProxyStreamUsage sometimes"))
    assert result.returncode != 0
    assert "OpenAIProxyStreamUsage: 'sometimes' is not one of auto" in result.stderr
    assert "Syntax error on line" in result.stderr


# -- the client's own fields go as sent ------------------------------------------

@pytest.mark.parametrize("fields,mock_directives", [
    ({"model": "o3", "temperature": 0.7}, {}),
    ({"model": "o3", "max_tokens": 50}, {}),
    ({"stream": True, "stream_options": {"include_usage": True}},
     {"refuse_stream_options": "param"}),
    ({"stream": True, "stream_options": {"include_usage": False}},
     {"refuse_stream_options": "message"}),
])
def test_a_refusal_of_the_clients_own_field_is_relayed_as_is(own_httpd, mock, fields,
                                                            mock_directives):
    httpd, client = server(own_httpd, mock)
    resp, marker = post(client, dict(chat(mock=mock_directives), **fields),
                        stream=bool(fields.get("stream")))
    assert resp.status == 400
    records = mock.requests()
    assert len(records) == 1
    assert hashlib.sha256(resp.body).hexdigest() == records[0]["sent_sha256"]
    for name, value in fields.items():
        if name != "stream_options":
            assert records[0]["body"][name] == value
    assert "stream_options" in records[0]["body"] or "stream_options" not in fields
    assert logged(httpd, marker)["attempts"] == "1"
    assert not retry_lines(httpd)


# -- never after a byte of an answer reached the client ---------------------------

def test_no_second_attempt_for_a_stream_cut_mid_answer(own_httpd, mock, error_log):
    error_log.allow("upstream request failed")
    _, client = server(own_httpd, mock)
    resp = client.post("/v1", chat(stream=True, mock={"chunks": 5, "hangup_after": 3}),
                       stream=True)
    assert resp.status == 200
    assert sse_error_event(resp.text)["error"]["code"] == "upstream_invalid_response"
    assert len(mock.requests()) == 1


def test_no_second_attempt_after_a_timeout_once_the_request_was_sent(own_httpd, mock,
                                                                     error_log):
    error_log.allow("upstream request failed")
    _, client = server(own_httpd, mock, "OpenAIProxyFirstByteTimeout 1")
    resp = client.post("/v1", chat(mock={"delay_headers": 300}))
    assert resp.status == 504
    assert mock.last_finished()["outcome"] == "client_gone"
    assert len(mock.requests()) == 1


def every_keep_alive_and_event(events):
    """A gate permit per keep-alive and per event the client received: each
    attempt's pause before its head ends after a heartbeat."""
    return sum(e.startswith((KEEP_ALIVE, "data: ")) for e in events)


def test_a_refusal_after_heartbeats_goes_again_on_the_same_stream(own_httpd, mock):
    # the keep-alive comments are the proxy's, no part of an answer: the
    # second attempt's events follow them in the stream already begun
    _, client = server(own_httpd, mock, "OpenAIProxyHeartbeat 1")
    gate = uuid.uuid4().hex
    body = chat(stream=True, mock={"delay_headers": 1, "gate": gate, "chunks": 2,
                                   "refuse_stream_options": "param"})
    resp = client.post("/v1", body, stream=True,
                       on_read=mock.gate_by_events(gate, every_keep_alive_and_event))
    assert resp.status == 200
    text = resp.text
    assert text.startswith(KEEP_ALIVE)
    assert sse_data_lines(resp.body)[-1] == "[DONE]"
    assert "event: error" not in text
    records = mock.requests()
    assert [("stream_options" in r["body"], r["status"]) for r in records] == [
        (True, 400), (False, 200)]
    assert all(r["gate_timeouts"] == 0 for r in records)


# -- one request for limits, logs and the status page -----------------------------

def test_a_second_attempt_is_one_request_for_limits_logs_and_status(own_httpd, mock):
    httpd, client = server(own_httpd, mock, "OpenAIProxyRateLimit 2/h",
                           "OpenAIProxyTokenBudget 100k/h", status=True)
    resp, marker = post(client, chat(stream=True, mock={"refuse_stream_options": "param"}),
                        stream=True)
    assert resp.status == 200
    assert client.post("/v1", chat()).status == 200  # the second of 2 an hour
    assert client.post("/v1", chat()).status == 429
    doc = settled(client, 3)
    assert doc["requests"]["total"] == 3
    assert doc["requests"]["by_status"] == {"200": 2, "429": 1}
    assert doc["upstream"]["second_attempts"] == 1
    assert len(mock.requests()) == 3  # 2 + 1
    with open(httpd.access_log, "rb") as f:
        assert sum(marker.encode() in line for line in f) == 1
    assert logged(httpd, marker)["attempts"] == "2"
