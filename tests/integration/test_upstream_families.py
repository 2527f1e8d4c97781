"""Right with every OpenAI-compatible upstream: the mock's profiles
(tests/mock_upstream/README.md, "Profiles") answer as OpenAI, Azure OpenAI,
vLLM, llama.cpp's server, Groq, Ollama, Mistral and OpenRouter do, and the
proxy relays each answer whole and in order, reads the usage where each
family puts it (a separate chunk, the last content chunk, every chunk: the
last report counts, never a sum; Groq's x_groq.usage; the Responses API's
response.completed) for the access log notes, the status page and token
budgets, and tolerates what such servers do: no [DONE], HTTP/1.0 or
close-delimited answers, gzip nobody asked for, a UTF-8 byte order mark.

The client's side is read as a browser reads it (sse_events: WHATWG rules,
strict UTF-8), so garbled or compressed bytes, a stray mark or an error
event fail the test."""

import hashlib
import json
import os
import re
import sys
import urllib.request
import uuid

import pytest

from harness import (KEEP_ALIVE, REDIS_PASSWORD, REPO, STATUS_LOCATION, THREE_TOKEN_MESSAGES,
                     after_a_keep_alive, assert_unbuffered, gated_stream_body, proxy_location,
                     redis_command, redis_keys, settled, silent_upstream, sse_data_lines,
                     usage_line)

sys.path.insert(0, os.path.join(REPO, "tests", "mock_upstream"))
import mock_upstream  # noqa: E402  (its profiles and where they put the usage)

PROFILES = sorted(mock_upstream.PROFILES)
MODEL = "gpt-4o-mini"
# 3 prompt tokens at the mock, 5 completion tokens: every count differs
TOKENS = ["Once ", "upon ", "a ", "time", "."]
TEXT = "".join(TOKENS)
BOM = mock_upstream.UTF8_BOM

# What OpenAI-compatible servers do besides their chunks' shapes (mock
# directives, on top of each profile): the edge cases of the issue.
STREAM_EDGES = {
    "no_done": {"no_done": True},
    "unterminated": {"no_done": True, "unterminated": True},
    "http10": {"http10": True},
    "close_delimited": {"close_delimited": True},
    "gzip": {"gzip": True},
    "bom": {"bom": True},
    "bom_split": {"bom": "split"},
    "comment_crlf_nospace": {"comment": "PROCESSING", "line_end": "crlf",
                             "data_prefix": "data:"},
    "everything": {"no_done": True, "http10": True, "gzip": True, "bom": "split",
                   "line_end": "crlf", "data_prefix": "data:", "event_format": "multiline",
                   "split_events": True},
}
PLAIN_EDGES = {
    "http10": {"http10": True},
    "close_delimited": {"close_delimited": True},
    "gzip": {"gzip": True},
    "bom": {"bom": True},
    "everything": {"http10": True, "gzip": True, "bom": True},
}


def sse_events(body):
    """The (type, data) events a browser's EventSource reads from a stream's
    bytes (WHATWG: lines end with CRLF, LF or CR; one space after the colon
    is dropped; comments and an unfinished last event are no events). The
    bytes must be UTF-8: garbled or compressed ones fail here, and a byte
    order mark left in front of the first line would make it no data line."""
    text = body.decode("utf-8")
    events, data, name = [], [], ""
    for line in re.split(r"\r\n|\r|\n", text)[:-1]:  # the rest has no line end
        if line == "":
            if data:
                events.append((name or "message", "\n".join(data)))
            data, name = [], ""
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "data":
                data.append(value)
            elif field == "event":
                name = value
    return events


def sse_chunks(body):
    """The JSON chunks of a stream, as a browser reads it."""
    return [json.loads(value) for _, value in sse_events(body) if value != "[DONE]"]


def settings(profile, directives):
    """The mock's directives for a request: its profile's, then the test's."""
    return dict(mock_upstream.PROFILES[profile], **directives)


def sent_usage_counts(record):
    """(prompt, completion, total) of the last usage the upstream reported."""
    usage = record["usage_sent"]
    assert usage is not None, "the upstream reported no usage"
    if "input_tokens" in usage:
        return usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]
    return usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]


def logged_usage(httpd, marker):
    """(prompt, completion, total) of the access log notes, once the line is
    written; a usage the upstream reported is never an estimate."""
    fields, _ = usage_line(httpd, marker)
    assert fields["outcome"] == "ok", fields
    assert fields["estimated"] == "-", fields
    return (int(fields["prompt_tokens"]), int(fields["completion_tokens"]),
            int(fields["total_tokens"]))


def post(client, profile, directives=None, stream=False, stream_options=None,
         path="/v1/chat/completions"):
    """A chat request (THREE_TOKEN_MESSAGES, TOKENS) answered as `profile`
    with `directives` on top; (response, marker of its log line)."""
    marker = uuid.uuid4().hex
    body = {"model": MODEL, "messages": THREE_TOKEN_MESSAGES, "stream": stream,
            "mock": dict({"tokens": TOKENS, "chunk_delay": 0}, **(directives or {}))}
    if profile is not None:  # None: the mock-wide one
        body["mock"]["profile"] = profile
    if stream_options is not None:
        body["stream_options"] = stream_options
    return client.post(f"{path}?t={marker}", body, stream=stream), marker


def sent_body_of(d, body):
    """What the upstream's body was before gzip, from what the client got:
    the proxy drops a leading byte order mark."""
    return (BOM if d.get("bom") else b"") + body


def check_stream(resp, record, d, client_asked):
    """The client's stream is what the upstream sent, whole and in order,
    less the usage chunk the proxy asked for itself; a valid SSE stream that
    ends without an error event."""
    assert resp.status == 200, resp.text
    assert resp.header("Content-Type").startswith("text/event-stream")
    assert resp.header("Content-Encoding") is None
    assert not resp.body.startswith(BOM[:1]), "the byte order mark reached the client"
    assert record["outcome"] == "ok", record
    events = sse_events(resp.body)
    assert [name for name, _ in events] == ["message"] * len(events), "an error event"
    data = [value for _, value in events]
    assert (data[-1] == "[DONE]") == (not d.get("no_done")), "[DONE] lost or added"
    chunks = [json.loads(value) for value in data if value != "[DONE]"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks
                   if c["choices"])
    assert text == TEXT
    # the proxy asks every chat stream for its usage: a profile that sends a
    # separate usage chunk then sends one, which only a client that asked
    # itself may see
    separate = "chunk" in mock_upstream.usage_placements(d, True)
    usage_only = [c for c in chunks if c["choices"] == [] and isinstance(c.get("usage"), dict)]
    assert len(usage_only) == (1 if separate and client_asked else 0)
    hidden = 1 if separate and not client_asked else 0
    # a last event without its blank line is relayed as it came, and a
    # browser drops it; the usage chunk the proxy asked for is hidden still
    lost = 1 if d.get("unterminated") and not hidden else 0
    assert len(data) == record["chunks_sent"] - hidden - lost
    if not hidden:  # byte for byte: a last content chunk with usage too
        assert hashlib.sha256(sent_body_of(d, resp.body)).hexdigest() == record["sent_sha256"]


def check_plain(resp, record, d):
    assert resp.status == 200, resp.text
    assert resp.header("Content-Type").startswith("application/json")
    assert resp.header("Content-Encoding") is None
    assert int(resp.header("Content-Length")) == len(resp.body)
    answer = json.loads(resp.body.decode("utf-8"))  # a byte order mark fails here
    assert answer["choices"][0]["message"]["content"] == TEXT
    assert hashlib.sha256(sent_body_of(d, resp.body)).hexdigest() == record["sent_sha256"]
    assert record["outcome"] == "ok"


# -- each profile ---------------------------------------------------------------

@pytest.mark.parametrize("profile", PROFILES)
def test_plain_answer(client, mock, httpd, profile):
    resp, marker = post(client, profile)
    record = mock.last_finished()
    check_plain(resp, record, settings(profile, {}))
    assert logged_usage(httpd, marker) == sent_usage_counts(record) == (3, 5, 8)


@pytest.mark.parametrize("client_asked", [False, True], ids=["proxy_asks", "client_asks"])
@pytest.mark.parametrize("profile", PROFILES)
def test_stream(client, mock, httpd, profile, client_asked):
    resp, marker = post(client, profile, stream=True,
                        stream_options={"include_usage": True} if client_asked else None)
    record = mock.last_finished()
    check_stream(resp, record, settings(profile, {}), client_asked)
    assert record["body"]["stream_options"]["include_usage"] is True
    assert logged_usage(httpd, marker) == sent_usage_counts(record) == (3, 5, 8)


@pytest.mark.parametrize("profile,directives,stream_options", [
    ("vllm", {}, {"include_usage": True, "continuous_usage_stats": True}),
    ("openai", {"usage": "every"}, None),
    ("mistral", {"usage": ["every", "chunk"]}, None),
], ids=["vllm_continuous_usage_stats", "openai_every_chunk", "every_chunk_and_usage_chunk"])
def test_usage_on_every_chunk_counts_the_last(client, mock, httpd, profile, directives,
                                              stream_options):
    """Usage in every chunk, growing as the answer does: the last report
    counts (a sum would be 3 prompt tokens per chunk and more)."""
    resp, marker = post(client, profile, directives, stream=True,
                        stream_options=stream_options)
    record = mock.last_finished()
    check_stream(resp, record, settings(profile, directives), stream_options is not None)
    reports = [c["usage"] for c in sse_chunks(resp.body)
               if isinstance(c.get("usage"), dict)]
    assert len(reports) >= len(TOKENS), "the upstream did not report usage in every chunk"
    assert logged_usage(httpd, marker) == sent_usage_counts(record) == (3, 5, 8)


# -- what OpenAI-compatible servers do besides -------------------------------------

@pytest.mark.parametrize("edge", list(STREAM_EDGES))
@pytest.mark.parametrize("profile", PROFILES)
def test_stream_edge_cases(client, mock, httpd, profile, edge):
    """No [DONE] (the stream ends cleanly, no error event, no hang), nor
    the blank line after the last event, an HTTP/1.0 or close-delimited
    answer, gzip nobody asked for (decoded, never passed on), a byte order
    mark (dropped, in one read or split), SSE comments, CRLF and `data:`
    without a space, and all of them at once."""
    directives = STREAM_EDGES[edge]
    resp, marker = post(client, profile, directives, stream=True)
    record = mock.last_finished()
    check_stream(resp, record, settings(profile, directives), client_asked=False)
    assert "accept-encoding" not in record["headers"], "the proxy asked for compression"
    assert logged_usage(httpd, marker) == sent_usage_counts(record) == (3, 5, 8)


@pytest.mark.parametrize("edge", list(PLAIN_EDGES))
@pytest.mark.parametrize("profile", PROFILES)
def test_plain_edge_cases(client, mock, httpd, profile, edge):
    """A whole answer delimited by the connection's close (HTTP/1.0 or
    Connection: close), gzip nobody asked for (decoded: no Content-Encoding,
    the decoded Content-Length), a byte order mark (dropped)."""
    directives = PLAIN_EDGES[edge]
    resp, marker = post(client, profile, directives)
    record = mock.last_finished()
    check_plain(resp, record, settings(profile, directives))
    assert "accept-encoding" not in record["headers"], "the proxy asked for compression"
    assert logged_usage(httpd, marker) == sent_usage_counts(record) == (3, 5, 8)


@pytest.mark.parametrize("edge", ["gzip", "http10", "close_delimited", "bom_split"])
def test_decoded_streams_are_not_buffered(client, mock, edge):
    """Each event reaches the client before the upstream sends the next,
    gzip decoded or the body delimited by the close."""
    gate, body = gated_stream_body(chunks=3)
    body["mock"].update(STREAM_EDGES[edge], chunk_delay=0)
    resp = client.post("/v1", body, stream=True, on_read=mock.gate_by_events(gate))
    assert resp.status == 200
    assert_unbuffered(sse_data_lines(resp.body), mock.last_finished(), chunks=3)


def test_a_byte_order_mark_after_a_heartbeat_is_dropped(own_httpd, mock):
    """A heartbeat went out before the upstream's first event: a mark
    relayed after it would stand in the middle of the client's stream."""
    _, client = own_httpd(proxy_location(mock, "OpenAIProxyHeartbeat 1"))
    resp = silent_upstream(client, mock, {"first_chunk_delay": 1, "tokens": TOKENS,
                                          "bom": "split", "gzip": True, "chunk_delay": 0},
                           after_a_keep_alive)
    assert resp.status == 200
    assert resp.body.startswith(KEEP_ALIVE.encode() + b"\n\n")
    assert BOM not in resp.body
    check_stream(resp, mock.last_finished(), settings("openai", {"bom": True}),
                 client_asked=False)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_identity_encoding_is_relayed(client, mock, httpd, stream):
    directives = {"raw_headers": [["Content-Encoding", "identity"]]}
    resp, marker = post(client, "openai", directives, stream=stream)
    record = mock.last_finished()
    if stream:
        check_stream(resp, record, settings("openai", directives), client_asked=False)
    else:
        check_plain(resp, record, settings("openai", directives))
    assert logged_usage(httpd, marker) == (3, 5, 8)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_an_undecodable_encoding_is_a_502_never_garbled_bytes(client, mock, error_log,
                                                              stream):
    """Content-Encoding: gzip on a body that is no gzip: libcurl cannot
    decode it, and the client gets the proxy's JSON 502, not the bytes."""
    error_log.allow("upstream request failed")
    resp, _ = post(client, "openai", {"raw_headers": [["Content-Encoding", "gzip"]]},
                   stream=stream)
    assert resp.status == 502, resp.text
    assert resp.header("Content-Encoding") is None
    # below the Location: the OpenAI error shape the SDKs read
    assert resp.json()["error"]["code"] == "upstream_invalid_response"


@pytest.mark.parametrize("directives", [
    {}, {"line_end": "crlf", "data_prefix": "data:"},
    {"gzip": True, "bom": "split", "http10": True}, {"close_delimited": True, "bom": True},
], ids=["openai", "crlf_nospace", "gzip_bom_http10", "close_bom"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_responses_usage_from_response_completed(client, mock, httpd, directives, stream):
    """The Responses API reports input_tokens/output_tokens/total_tokens in
    the response, streamed in its response.completed event (no [DONE])."""
    marker = uuid.uuid4().hex
    body = {"model": MODEL, "input": "one two three", "stream": stream,
            "mock": dict({"tokens": TOKENS, "chunk_delay": 0}, **directives)}
    resp = client.post(f"/endpoints/responses?t={marker}", body, stream=stream)
    record = mock.last_finished()
    assert resp.status == 200, resp.text
    assert resp.header("Content-Encoding") is None
    assert hashlib.sha256(sent_body_of(directives, resp.body)).hexdigest() == \
        record["sent_sha256"]
    if stream:
        events = sse_events(resp.body)
        assert events[-1][0] == "response.completed"
        done = json.loads(events[-1][1])["response"]
        assert "".join(json.loads(data)["delta"] for name, data in events
                       if name == "response.output_text.delta") == TEXT
    else:
        assert int(resp.header("Content-Length")) == len(resp.body)
        done = json.loads(resp.body.decode("utf-8"))
    assert done["output"][0]["content"][0]["text"] == TEXT
    assert logged_usage(httpd, marker) == sent_usage_counts(record) == (3, 5, 8)


# -- budgets and the status page ----------------------------------------------------

def redis_budget_counter(redis):
    keys = [k for k in redis_keys(redis.port) if k.startswith("oaip:t:")]
    assert len(keys) == 1, keys
    return int(redis_command(redis.port, "GET", keys[0]).split("\r\n")[1])


@pytest.mark.parametrize("profile", PROFILES)
def test_budget_and_status_page_count_what_the_profile_reported(own_httpd, mock,
                                                                 redis_server, profile):
    """A plain answer, a stream whose usage the proxy asked for and one
    whose client asked: the token budget (in redis, read exactly) is
    charged their reported totals, and the status page counts their prompt
    and completion tokens for the model."""
    store = f"OpenAIProxyCounterStore redis://:{REDIS_PASSWORD}@127.0.0.1:{redis_server.port}\n"
    server, client = own_httpd(store + proxy_location(
        mock, "OpenAIProxyTokenBudget 100000/h") + STATUS_LOCATION)
    answers = [post(client, profile, path="/v1")[0],
               post(client, profile, {"no_done": True, "gzip": True}, stream=True,
                    path="/v1")[0],
               post(client, profile, stream=True, stream_options={"include_usage": True},
                    path="/v1")[0]]
    assert [r.status for r in answers] == [200] * 3
    reported = [sent_usage_counts(r) for r in mock.requests()]
    assert len(reported) == 3
    doc = settled(client, 3)
    assert redis_budget_counter(redis_server) == sum(total for _, _, total in reported)
    assert doc["tokens"]["prompt"] == sum(prompt for prompt, _, _ in reported)
    assert doc["tokens"]["completion"] == sum(completion for _, completion, _ in reported)
    assert doc["tokens"]["by_model"][MODEL] == {
        "requests": 3, "prompt_tokens": doc["tokens"]["prompt"],
        "completion_tokens": doc["tokens"]["completion"]}


def test_the_mock_wide_profile(client, mock, httpd):
    """POST /__mock/profile/NAME: the profile of requests that name none,
    until a reset."""
    def set_profile(name):
        urllib.request.urlopen(urllib.request.Request(
            f"{mock.base}/__mock/profile/{name}", data=b"", method="POST"), timeout=10).read()
    set_profile("groq")
    resp, marker = post(client, None, stream=True)
    record = mock.last_finished()
    check_stream(resp, record, settings("groq", {}), client_asked=False)
    assert '"x_groq"' in resp.text
    assert logged_usage(httpd, marker) == (3, 5, 8)
    mock.reset()
    resp, _ = post(client, None, stream=True)
    assert '"x_groq"' not in resp.text
    check_stream(resp, mock.last_finished(), settings("openai", {}), client_asked=False)
