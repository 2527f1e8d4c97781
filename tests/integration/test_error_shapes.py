"""The shape of the errors the proxy makes, as the client on each path reads
them: at the Location itself the Worker's {"error": title, "message"}
(OpenAIProxyErrorFormat unset), below it (an SDK's baseURL +
/chat/completions, /responses, ...) the OpenAI shape SDKs parse, and where
OpenAIProxyErrorFormat is set, at any level, that format everywhere. Inside
a stream that already started, the error event of the endpoint: the
Chat Completions error object, or the Responses API's `error` event with
the sequence_number after the last event relayed."""

import json

from harness import (KEEP_ALIVE, MESSAGES, after_a_keep_alive, openai_error, proxy_location,
                     silent_upstream)

SEED_KEYS = ["error", "message"]
RESPONSES_ERROR_KEYS = ["type", "code", "message", "param", "sequence_number"]


def seed_error(resp):
    body = resp.json()
    assert list(body) == SEED_KEYS and isinstance(body["error"], str), body
    return body


def sse_events(text):
    """[(event name or None, parsed data or the raw text)] of an SSE body;
    comments are left out."""
    out = []
    for block in text.split("\n\n"):
        if not block or block.startswith(":"):
            continue
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                data.append(line[len("data: "):])
        joined = "\n".join(data)
        try:
            out.append((name, json.loads(joined)))
        except ValueError:
            out.append((name, joined))
    return out


def responses_error(text):
    """The Responses API error event that ends the stream `text`: exactly
    the documented members; returns its data."""
    events = sse_events(text)
    name, data = events[-1]
    assert name == "error", events[-3:]
    assert list(data) == RESPONSES_ERROR_KEYS, data
    assert data["type"] == "error" and data["param"] is None, data
    assert isinstance(data["code"], str) and isinstance(data["message"], str), data
    assert "[DONE]" not in text
    return data


def last_sequence_number(text):
    numbers = [d["sequence_number"] for name, d in sse_events(text)[:-1]
               if isinstance(d, dict) and "sequence_number" in d]
    return numbers[-1] if numbers else None


# ---- per path ----

def test_the_location_itself_answers_in_the_workers_shape(client, mock):
    for path in ("/v1", "/v1/"):
        resp = client.post(path, {"messages": "not an array"})
        assert resp.status == 400, path
        assert seed_error(resp)["error"] == "Invalid messages format", path
        resp = client.request("GET", path)
        assert resp.status == 405, path
        assert seed_error(resp) == {"error": "Method Not Allowed",
                                    "message": "GET is not allowed; use POST"}
    assert mock.requests() == []


def test_the_sdk_paths_below_it_answer_in_the_openai_shape(client, mock):
    resp = client.post("/v1/chat/completions", {"messages": "not an array"})
    assert resp.status == 400
    err = openai_error(resp)
    assert (err["type"], err["code"], err["param"]) == ("invalid_request_error",
                                                        "invalid_messages", None)
    resp = client.post("/v1/responses", "[]", headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert openai_error(resp)["code"] == "invalid_body"
    resp = client.request("GET", "/v1/models")
    assert resp.status == 404
    assert openai_error(resp)["message"] == "No API endpoint at /v1/models"
    # httpd's own errors below the Location too (413 from LimitRequestBody
    # is in test_refuse_early; here an encoded slash)
    resp = client.request("POST", "/v1/chat%2Fcompletions", body=b"{}")
    assert resp.status == 404
    assert openai_error(resp)["code"] == "unknown_url"
    assert mock.requests() == []


def test_a_set_error_format_holds_on_every_path(own_httpd, mock):
    """OpenAIProxyErrorFormat set, in the Location or at an outer level
    (merged in): that format below the Location as at the Location."""
    _, client = own_httpd(
        "OpenAIProxyErrorFormat seed\n"
        + proxy_location(mock, path="/inherited")
        + proxy_location(mock, "OpenAIProxyErrorFormat seed", path="/seed")
        + proxy_location(mock, "OpenAIProxyErrorFormat openai", path="/openai"))
    for base in ("/inherited", "/seed"):
        for path in (base, base + "/chat/completions"):
            resp = client.post(path, {"messages": 1})
            assert seed_error(resp)["error"] == "Invalid messages format", path
        resp = client.request("GET", base + "/models")
        assert seed_error(resp)["error"] == "Not Found"
    for path in ("/openai", "/openai/", "/openai/chat/completions"):
        resp = client.post(path, {"messages": 1})
        assert openai_error(resp)["code"] == "invalid_messages", path
    assert mock.requests() == []


# ---- inside a stream: the endpoint's error event ----

def test_a_responses_stream_cut_ends_with_a_responses_error_event(client, mock, error_log):
    error_log.allow("upstream request failed")
    resp = client.post("/v1/responses", {
        "model": "gpt-4o-mini", "input": "hi", "stream": True,
        # response.created, .in_progress, .output_item.added,
        # .content_part.added and one delta (sequence numbers 0-4), then
        # the upstream hangs up
        "mock": {"tokens": ["a", "b", "c"], "hangup_after": 5, "chunk_delay": 0}})
    assert resp.status == 200
    text = resp.body.decode()
    assert last_sequence_number(text) == 4
    data = responses_error(text)
    assert data["sequence_number"] == 5
    assert data["code"] == "upstream_invalid_response"
    assert data["message"].startswith("The upstream API failed to send a valid response")
    assert mock.requests()[-1]["outcome"] == "hangup"


def test_a_chat_stream_cut_keeps_the_chat_error_object(client, mock, error_log):
    error_log.allow("upstream request failed")
    resp = client.post("/v1/chat/completions", {
        "messages": MESSAGES, "stream": True,
        "mock": {"chunks": 5, "hangup_after": 3, "chunk_delay": 0}})
    name, data = sse_events(resp.body.decode())[-1]
    assert name == "error"
    assert list(data) == ["error"] and data["error"]["code"] == "upstream_invalid_response"


def test_a_silent_responses_stream_times_out_with_a_responses_error_event(own_httpd, mock,
                                                                        error_log):
    error_log.allow("upstream request failed")
    _, client = own_httpd(proxy_location(mock, "OpenAIProxyIdleTimeout 1"))
    resp = client.post("/v1/responses", {
        "model": "gpt-4o-mini", "input": "hi", "stream": True,
        # response.created, then silence until the proxy gives up
        "mock": {"gate": "never-opened", "gate_timeout": 300}})
    assert resp.status == 200
    text = resp.body.decode()
    assert last_sequence_number(text) == 0
    data = responses_error(text)
    assert data["sequence_number"] == 1
    assert data["code"] == "upstream_timeout"
    assert "silent for more than 1 seconds" in data["message"]


def test_heartbeats_then_an_upstream_error_on_responses(own_httpd, mock):
    """The heartbeats committed the head before the upstream answered 429:
    its error becomes the stream's first event, number 0."""
    _, client = own_httpd(proxy_location(mock, "OpenAIProxyHeartbeat 1"))
    resp = silent_upstream(client, mock, {"delay_headers": 1, "status": 429},
                           after_a_keep_alive, path="/v1/responses")
    assert resp.status == 200
    text = resp.body.decode()
    assert text.startswith(KEEP_ALIVE + "\n\n")
    data = responses_error(text)
    assert data == {"type": "error", "code": "rate_limit_exceeded",
                    "message": "Rate limit reached for requests", "param": None,
                    "sequence_number": 0}


def test_heartbeats_then_an_upstream_error_quoting_the_key(own_httpd, mock):
    """The Responses error event is masked like the chat one (the secret scan
    of conftest.py fails the test if any form of the key reached it)."""
    _, client = own_httpd(proxy_location(mock, "OpenAIProxyHeartbeat 1"))
    resp = silent_upstream(client, mock, {"delay_headers": 1, "echo_key": "full"},
                           after_a_keep_alive, path="/v1/responses")
    data = responses_error(resp.body.decode())
    assert data["code"] == "invalid_api_key"
    assert data["message"].startswith("Incorrect API key provided: ")
    assert data["sequence_number"] == 0
