"""More of the API (OpenAIProxyEndpoints) and other upstream auth styles
(OpenAIProxyUpstreamAuth, OpenAIProxyUpstreamQuery): each endpoint through a
real apache2 to the mock upstream, what reaches the upstream, accounting in
the access log, and the configuration errors."""

import hashlib
import json
import os
import threading
import uuid

import pytest

from harness import (CLIENT_KEY, MESSAGES, REPO, TEST_KEY, bare_location, config_test, log_line,
                     openai_error, proxy_location, usage_fields)

ORIGIN = "https://app.example.com"
ENDPOINTS = ("chat/completions models models/* embeddings responses moderations "
             "audio/transcriptions images/generations")


def proxy_config(mock, name, *directives, endpoints=ENDPOINTS):
    """/v1 serving `endpoints`, with a usage log of its own (usage_log_path)."""
    return (f"Include {REPO}/conf/openai_proxy_log.conf\n"
            f'CustomLog "{usage_log_path(mock, name)}" openai_proxy\n'
            + proxy_location(mock, f"OpenAIProxyAllowOrigin {ORIGIN}",
                             "OpenAIProxyMaxRequestBody 64K", f"OpenAIProxyEndpoints {endpoints}",
                             *directives))


def usage_log_path(mock, name):
    return os.path.join(mock.workdir, f"{name}-usage.log")


@pytest.fixture
def proxy(own_httpd, mock, request):
    """An httpd whose /v1 serves ENDPOINTS; returns (server, client, name)."""
    name = "ep-" + request.node.name[:30].replace("[", "-").replace("]", "")
    server, client = own_httpd(proxy_config(mock, name), name=name)
    return server, client, name


def logged_fields(mock, name, marker):
    """The openai_proxy access log fields of the request with `marker` in
    its query string."""
    return usage_fields(log_line(usage_log_path(mock, name), marker).decode())


def marked(path):
    marker = uuid.uuid4().hex
    return f"{path}?t={marker}", marker


def multipart(fields, files, boundary=None):
    """A multipart/form-data body: (content type, bytes)."""
    boundary = boundary or "----oaip" + uuid.uuid4().hex
    out = b""
    for name, value in fields.items():
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                f"{value}\r\n").encode()
    for name, (filename, data) in files.items():
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                f"filename=\"{filename}\"\r\nContent-Type: audio/wav\r\n\r\n").encode()
        out += data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", out


def sha256(data):
    return hashlib.sha256(data).hexdigest()


# ---- each endpoint ----

def test_get_models_and_one_model(proxy, mock):
    _, client, _ = proxy
    resp = client.request("GET", "/v1/models")
    assert resp.status == 200, resp.text
    assert "gpt-4o" in [m["id"] for m in resp.json()["data"]]
    sent = mock.requests()[-1]
    assert (sent["method"], sent["path"]) == ("GET", "/v1/models")
    assert sent["headers"]["authorization"] == f"Bearer {TEST_KEY}"
    assert sent["body_len"] == 0 and "content-type" not in sent["headers"]

    resp = client.request("GET", "/v1/models/gpt-4o-mini")
    assert resp.status == 200
    assert resp.json()["id"] == "gpt-4o-mini"
    assert mock.requests()[-1]["path"] == "/v1/models/gpt-4o-mini"
    # the upstream's own 404 for an unknown model is relayed
    resp = client.request("GET", "/v1/models/ft:gpt-4o-mini:acme::x1")
    assert resp.status == 404
    assert resp.json()["error"]["code"] == "model_not_found"
    assert mock.requests()[-1]["path"] == "/v1/models/ft:gpt-4o-mini:acme::x1"


def test_head_models(proxy, mock):
    _, client, _ = proxy
    resp = client.request("HEAD", "/v1/models")
    assert resp.status == 200
    assert resp.body == b""
    assert mock.requests()[-1]["method"] == "GET"


def test_embeddings_forwarded_as_sent_and_accounted(proxy, mock):
    _, client, name = proxy
    body = (b'{"model": "text-embedding-3-small",   "input": ["one two three", "four"],'
            b' "dimensions": 8}')
    path, marker = marked("/v1/embeddings")
    resp = client.post(path, body, headers={"Content-Type": "application/json"})
    assert resp.status == 200, resp.text
    answer = resp.json()
    assert len(answer["data"]) == 2 and len(answer["data"][0]["embedding"]) == 8
    sent = mock.requests()[-1]
    assert sent["path"] == "/v1/embeddings"  # the client's query string stays here
    assert sent["body_sha256"] == sha256(body)  # no defaults, no re-encoding
    assert sent["headers"]["content-type"] == "application/json"
    fields = logged_fields(mock, name, marker)
    assert fields["model"] == "text-embedding-3-small"
    assert fields["stream"] == "0"
    assert fields["outcome"] == "ok" and fields["upstream"] == "200"
    assert int(fields["prompt_tokens"]) == answer["usage"]["prompt_tokens"] == 4
    assert int(fields["total_tokens"]) == answer["usage"]["total_tokens"]
    assert fields["completion_tokens"] == "-"


def test_responses_plain_is_accounted(proxy, mock):
    _, client, name = proxy
    path, marker = marked("/v1/responses")
    resp = client.post(path, {"model": "gpt-4o-mini", "input": "say hello to me"})
    assert resp.status == 200, resp.text
    answer = resp.json()
    assert answer["object"] == "response" and answer["status"] == "completed"
    assert mock.requests()[-1]["body"] == {"model": "gpt-4o-mini", "input": "say hello to me"}
    usage = answer["usage"]
    fields = logged_fields(mock, name, marker)
    assert fields["model"] == "gpt-4o-mini" and fields["stream"] == "0"
    assert int(fields["prompt_tokens"]) == usage["input_tokens"]
    assert int(fields["completion_tokens"]) == usage["output_tokens"]
    assert int(fields["total_tokens"]) == usage["total_tokens"]


def sse_events(body):
    """(event name, parsed data) of each event of an SSE body."""
    out = []
    for block in body.decode().split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        out.append((lines.get("event"), json.loads(lines["data"])))
    return out


def test_responses_stream_relays_named_events_unchanged(proxy, mock):
    _, client, name = proxy
    path, marker = marked("/v1/responses")
    resp = client.post(path, {"model": "gpt-4o", "input": "stream this", "stream": True,
                              "mock": {"tokens": ["Hel", "lo", " there"], "chunk_delay": 0,
                                       "split_events": True}},
                       stream=True)
    assert resp.status == 200
    assert resp.header("Content-Type").startswith("text/event-stream")
    # the client may have the last event before the mock has written its record
    sent = mock.last_finished()
    assert sent["outcome"] == "ok"
    assert sha256(resp.body) == sent["sent_sha256"]  # byte for byte what the upstream sent
    events = sse_events(resp.body)
    names = [n for n, _ in events]
    assert names[0] == "response.created" and names[-1] == "response.completed"
    assert all(data["type"] == n for n, data in events)
    deltas = [d["delta"] for n, d in events if n == "response.output_text.delta"]
    assert deltas == ["Hel", "lo", " there"]
    assert b"[DONE]" not in resp.body
    usage = events[-1][1]["response"]["usage"]
    fields = logged_fields(mock, name, marker)
    assert fields["stream"] == "1" and fields["outcome"] == "ok"
    assert int(fields["prompt_tokens"]) == usage["input_tokens"]
    assert int(fields["completion_tokens"]) == usage["output_tokens"] == 3
    assert int(fields["total_tokens"]) == usage["total_tokens"]


def test_moderations_and_images(proxy, mock):
    _, client, name = proxy
    resp = client.post("/v1/moderations", {"input": ["fine", "forbidden words"]})
    assert resp.status == 200
    assert [r["flagged"] for r in resp.json()["results"]] == [False, True]
    assert mock.requests()[-1]["path"] == "/v1/moderations"
    path, marker = marked("/v1/images/generations")
    resp = client.post(path, {"model": "gpt-image-1", "prompt": "a red cat", "n": 2})
    assert resp.status == 200
    assert len(resp.json()["data"]) == 2
    assert mock.requests()[-1]["path"] == "/v1/images/generations"
    fields = logged_fields(mock, name, marker)
    assert fields["model"] == "gpt-image-1"
    assert int(fields["total_tokens"]) == resp.json()["usage"]["total_tokens"]


def test_chat_still_served_and_validated(proxy, mock):
    _, client, _ = proxy
    resp = client.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]})
    assert resp.status == 200
    assert mock.requests()[-1]["body"]["temperature"] == 0.7  # built-in defaults apply
    resp = client.post("/v1", {"messages": [{"role": "user", "content": "x"}]})
    assert resp.status == 200
    assert mock.requests()[-1]["path"] == "/v1/chat/completions"
    assert client.post("/v1/chat/completions", {"input": "x"}).status == 400


def test_json_endpoints_refuse_what_is_not_an_object(proxy, mock):
    _, client, _ = proxy
    for body, code in (("[1, 2]", "invalid_body"), ("{", "invalid_json"),
                       ("", "empty_body"), ('{"a":1,"a":2}', "invalid_json")):
        resp = client.post("/v1/embeddings", body,
                           headers={"Content-Type": "application/json"})
        assert resp.status == 400, body
        assert resp.header("Content-Type") == "application/json"
        assert openai_error(resp)["code"] == code, body
    assert mock.requests() == []


CATALOG = [  # every endpoint the proxy knows: method and body
    ("chat/completions", "POST", "json"), ("completions", "POST", "json"),
    ("responses", "POST", "json"), ("embeddings", "POST", "json"),
    ("moderations", "POST", "json"), ("images/generations", "POST", "json"),
    ("audio/speech", "POST", "json"), ("images/edits", "POST", "multipart"),
    ("audio/transcriptions", "POST", "multipart"),
    ("audio/translations", "POST", "multipart"), ("models", "GET", None),
    ("models/*", "GET", None),
]


def test_every_known_endpoint_reaches_its_upstream_path(own_httpd, mock):
    """Whatever the mock answers (it has no audio/speech, images/edits or
    completions: its 404 is relayed), the request went to <upstream>/<path>
    with the endpoint's method and body."""
    everything = " ".join(pattern for pattern, _, _ in CATALOG)
    config = proxy_config(mock, "ep-all", endpoints=everything)
    _, client = own_httpd(config, name="ep-all")
    for pattern, method, kind in CATALOG:
        path = pattern.replace("*", "gpt-4o")
        headers, body = {}, None
        if kind == "json":
            body = json.dumps({"model": "m", "input": "x", "prompt": "p",
                               "messages": [{"role": "user", "content": "x"}]}).encode()
            headers["Content-Type"] = "application/json"
        elif kind == "multipart":
            ctype, body = multipart({"model": "whisper-1"}, {"file": ("a.wav", b"RIFF")})
            headers["Content-Type"] = ctype
        resp = client.request(method, f"/v1/{path}", body=body, headers=headers)
        assert resp.status in (200, 404), (pattern, resp.status)
        sent = mock.requests()[-1]
        assert (sent["method"], sent["path"]) == (method, f"/v1/{path}"), pattern
        if kind is None:
            assert sent["body_len"] == 0 and "content-type" not in sent["headers"]
        else:
            assert sent["headers"]["content-type"] == headers["Content-Type"], pattern
            if kind == "multipart":
                assert sent["body_sha256"] == sha256(body)
    assert len(mock.requests()) == len(CATALOG)


# ---- multipart ----

def test_multipart_forwarded_byte_for_byte(proxy, mock):
    _, client, name = proxy
    audio = os.urandom(40 * 1024)  # every byte value, CRLFs and NULs included
    ctype, body = multipart({"model": "whisper-1", "language": "en"},
                            {"file": ("speech.wav", audio)})
    path, marker = marked("/v1/audio/transcriptions")
    resp = client.post(path, body, headers={"Content-Type": ctype})
    assert resp.status == 200, resp.text
    received = resp.json()["mock_received"]
    assert received["fields"] == {"model": "whisper-1", "language": "en"}
    assert received["files"] == [{"field": "file", "filename": "speech.wav",
                                  "content_type": "audio/wav", "bytes": len(audio),
                                  "sha256": sha256(audio)}]
    sent = mock.requests()[-1]
    assert sent["body_len"] == len(body) and sent["body_sha256"] == sha256(body)
    assert sent["headers"]["content-type"] == ctype  # the client's boundary
    fields = logged_fields(mock, name, marker)
    assert fields["model"] == "whisper-1" and fields["outcome"] == "ok"


def test_multipart_above_the_size_limit_is_413(proxy, mock):
    _, client, _ = proxy
    ctype, body = multipart({"model": "whisper-1"}, {"file": ("big.wav", b"\0" * 70_000)})
    resp = client.post("/v1/audio/transcriptions", body, headers={"Content-Type": ctype})
    assert resp.status == 413
    assert openai_error(resp)["code"] == "request_too_large"
    assert mock.requests() == []


def test_multipart_endpoint_needs_a_multipart_body(proxy, mock):
    _, client, _ = proxy
    for ctype in ("application/json", "multipart/form-data", None):
        headers = {"Content-Type": ctype} if ctype else {}
        resp = client.post("/v1/audio/transcriptions", '{"model":"whisper-1"}',
                           headers=headers)
        assert resp.status == 400, ctype
        assert "multipart/form-data" in openai_error(resp)["message"]
    assert mock.requests() == []


# ---- routing ----

def test_unlisted_paths_are_404_json(proxy, mock):
    _, client, _ = proxy
    for method, path in (("POST", "/v1/files"), ("POST", "/v1/audio/speech"),
                         ("GET", "/v1/models/a/b"), ("GET", "/v1/models/%C3%A9"),
                         ("POST", "/v1/embeddings/x"), ("GET", "/v1/responses/resp_1"),
                         ("POST", "/v1/chat"), ("GET", "/v1x/models")):
        resp = client.request(method, path, body=b"{}" if method == "POST" else None)
        if path.startswith("/v1x"):
            assert resp.status == 404  # not our Location at all
            continue
        assert resp.status == 404, path
        assert openai_error(resp)["code"] == "unknown_url", path
    assert mock.requests() == []


def test_encoded_slashes_and_dots_never_reach_the_upstream(own_httpd, mock):
    """With AllowEncodedSlashes NoDecode httpd leaves %2F in the path: the
    one-segment match refuses it (by default httpd itself answers 404).
    Dot segments are resolved by httpd before the proxy sees the path."""
    _, client = own_httpd("AllowEncodedSlashes NoDecode\n" + proxy_config(mock, "ep-encoded"),
                          name="ep-encoded")
    for path in ("/v1/models/a%2Fb", "/v1/models/..%2Fembeddings", "/v1/models/a%20b",
                 "/v1/models/%2e%2e"):
        resp = client.request("GET", path)
        if path.endswith("%2e%2e"):
            # httpd resolves it to /v1/: the Location itself, chat, in the
            # Worker's shape
            assert resp.status == 405, path
            assert resp.json()["error"] == "Method Not Allowed", path
            continue
        assert resp.status == 404, path
        assert openai_error(resp)["code"] == "unknown_url", path
    assert mock.requests() == []
    resp = client.request("GET", "/v1/embeddings/../models")
    assert resp.status == 200
    assert [r["path"] for r in mock.requests()] == ["/v1/models"]


def test_client_query_strings_are_not_forwarded(proxy, mock):
    _, client, _ = proxy
    resp = client.request("GET", "/v1/models?api-key=evil&api-version=1999&limit=1")
    assert resp.status == 200
    sent = mock.requests()[-1]
    assert sent["path"] == "/v1/models" and sent["query"] == {}


def test_wrong_method_is_405_with_allow(proxy, mock):
    _, client, _ = proxy
    resp = client.request("GET", "/v1/embeddings")
    assert resp.status == 405
    assert resp.header("Allow") == "POST, OPTIONS"
    assert openai_error(resp)["code"] == "method_not_allowed"
    resp = client.post("/v1/models", {"x": 1})
    assert resp.status == 405
    assert resp.header("Allow") == "GET, HEAD, OPTIONS"
    assert "use GET" in openai_error(resp)["message"]
    resp = client.request("DELETE", "/v1/models/gpt-4o")
    assert resp.status == 405
    assert mock.requests() == []


def test_default_location_serves_chat_and_responses(client, mock):
    """The shared httpd's /v1 has no OpenAIProxyEndpoints: the Location
    itself and chat/completions (the Worker's endpoint) and the Responses
    API (what the Vercel AI SDK's openai(model) calls) are served, nothing
    else."""
    for method, path in (("GET", "/v1/models"), ("POST", "/v1/embeddings"),
                         ("POST", "/v1/completions"), ("GET", "/v1/responses/resp_1"),
                         ("POST", "/v1/moderations")):
        resp = client.request(method, path, body=b"{}" if method == "POST" else None)
        assert resp.status == 404, path
        assert openai_error(resp)["code"] == "unknown_url"
    assert mock.requests() == []
    resp = client.post("/v1/responses", {"model": "gpt-4o-mini", "input": "Hi there"})
    assert resp.status == 200, resp.text
    assert resp.json()["object"] == "response"
    resp = client.post("/v1/responses/", {"model": "gpt-4o-mini", "input": "x",
                                          "stream": True, "mock": {"chunks": 2}})
    assert resp.status == 200 and resp.header("Content-Type").startswith("text/event-stream")
    assert b"event: response.completed" in resp.body
    assert [r["path"] for r in mock.requests()] == ["/v1/responses"] * 2
    # GET on the Responses API: 405, it is served by POST
    resp = client.request("GET", "/v1/responses")
    assert resp.status == 405 and resp.header("Allow") == "POST, OPTIONS"


def test_cors_on_new_endpoints(proxy, mock):
    _, client, _ = proxy
    resp = client.request("OPTIONS", "/v1/models", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization"})
    assert resp.status == 204
    assert resp.header("Access-Control-Allow-Origin") == ORIGIN
    assert resp.header("Access-Control-Allow-Methods") == "GET, HEAD, OPTIONS"
    assert resp.header("Allow") == "GET, HEAD, OPTIONS"
    resp = client.request("OPTIONS", "/v1/audio/transcriptions", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    assert resp.header("Access-Control-Allow-Methods") == "POST, OPTIONS"
    resp = client.request("GET", "/v1/models", headers={"Origin": ORIGIN})
    assert resp.status == 200
    assert resp.header("Access-Control-Allow-Origin") == ORIGIN
    assert "x-request-id" in resp.header("Access-Control-Expose-Headers")
    resp = client.post("/v1/embeddings", {"input": "x"},
                       headers={"Origin": "https://evil.example.com"})
    assert resp.status == 403
    assert [r["method"] for r in mock.requests()] == ["GET"]


def test_model_allow_list_covers_every_endpoint(own_httpd, mock):
    _, client = own_httpd(proxy_config(mock, "ep-allow",
                                       "OpenAIProxyAllowModels gpt-4o* whisper-1"),
                          name="ep-allow")
    resp = client.post("/v1/embeddings", {"model": "text-embedding-3-small", "input": "x"})
    assert resp.status == 400
    assert openai_error(resp)["code"] == "model_not_allowed"
    assert client.post("/v1/responses", {"input": "x"}).status == 400  # no model
    ctype, body = multipart({"model": "whisper-2"}, {"file": ("a.wav", b"RIFF")})
    assert client.post("/v1/audio/transcriptions", body,
                       headers={"Content-Type": ctype}).status == 400
    assert mock.requests() == []
    assert client.post("/v1/responses", {"model": "gpt-4o-mini", "input": "x"}).status == 200
    ctype, body = multipart({"model": "whisper-1"}, {"file": ("a.wav", b"RIFF")})
    assert client.post("/v1/audio/transcriptions", body,
                       headers={"Content-Type": ctype}).status == 200
    assert client.request("GET", "/v1/models").status == 200  # names no model


def test_max_tokens_caps_other_endpoints(own_httpd, mock):
    """OpenAIProxyMaxTokens lowers the Responses API's max_output_tokens; a
    lower one is kept and a missing one gets the cap (the Responses API has
    no limit of its own)."""
    _, client = own_httpd(proxy_config(mock, "ep-cap", "OpenAIProxyMaxTokens 64"), name="ep-cap")
    assert client.post("/v1/responses", {"model": "gpt-4o-mini", "input": "x",
                                         "max_output_tokens": 5000}).status == 200
    assert client.post("/v1/responses", {"model": "gpt-4o-mini", "input": "x",
                                         "max_output_tokens": 10}).status == 200
    assert client.post("/v1/responses", {"model": "gpt-4o-mini", "input": "x"}).status == 200
    sent = [r["body"] for r in mock.requests()]
    assert [b.get("max_output_tokens") for b in sent] == [64, 10, 64]


def test_responses_stream_counts_against_max_streams(own_httpd, mock):
    """OpenAIProxyMaxStreams covers Responses API streams too."""
    _, client = own_httpd("OpenAIProxyMaxStreams 1\n" + proxy_config(mock, "ep-streams"),
                          name="ep-streams")
    started = threading.Event()
    results = {}
    gate = uuid.uuid4().hex  # the upstream holds the first stream open until the test opens it

    def long_stream():
        results["first"] = client.post(
            "/v1/responses", {"model": "gpt-4o", "input": "x", "stream": True,
                              "mock": {"chunks": 3, "gate": gate}},
            stream=True, on_read=lambda data: started.set())
    thread = threading.Thread(target=long_stream)
    thread.start()
    assert started.wait(15)
    second = client.post("/v1/responses", {"model": "gpt-4o", "input": "y", "stream": True})
    mock.open_gate(gate, permits=20)
    thread.join(30)
    assert second.status == 503
    assert openai_error(second)["code"] == "too_many_streams"
    assert results["first"].status == 200
    # a plain answer is no stream: not limited
    assert client.post("/v1/responses", {"model": "gpt-4o", "input": "z"}).status == 200


# ---- upstream auth and query ----

AZURE = ("OpenAIProxyUpstreamAuth header:api-key",
         "OpenAIProxyUpstreamQuery api-version=2024-10-21")


def assert_azure_style(sent, key):
    assert sent["headers"]["api-key"] == key
    assert "authorization" not in sent["headers"]
    assert sent["query"] == {"api-version": "2024-10-21"}
    assert sent["path"].endswith("?api-version=2024-10-21")


def test_azure_style_auth_and_query(own_httpd, mock):
    _, client = own_httpd(proxy_config(mock, "ep-azure", *AZURE), name="ep-azure")
    resp = client.post("/v1/chat/completions?api-version=evil&x=1",
                       {"messages": MESSAGES},
                       headers={"Authorization": "Bearer sk-from-the-browser"})
    assert resp.status == 200
    sent = mock.requests()[-1]
    assert sent["path"] == "/v1/chat/completions?api-version=2024-10-21"
    assert_azure_style(sent, TEST_KEY)
    assert "sk-from-the-browser" not in json.dumps(sent["headers"])
    assert client.request("GET", "/v1/models").status == 200
    assert_azure_style(mock.requests()[-1], TEST_KEY)


def test_auth_style_from_another_level_than_the_key(own_httpd, mock):
    """Key at server level, auth style and query in the Location: the
    headers are built per request with the Location's style; the client's
    own key goes the same way."""
    body = (f"OpenAIProxyAPIKey {TEST_KEY}\nOpenAIProxyUpstream {mock.api}\n"
            + bare_location("OpenAIProxyAllowClientKey On", "OpenAIProxyEndpoints embeddings",
                            "OpenAIProxyUpstreamQuery api-version=2024-10-21 'note=a b&c'",
                            "OpenAIProxyUpstreamAuth header:api-key", path="/azure")
            + bare_location(path="/plain"))
    _, client = own_httpd(body, name="ep-levels")
    assert client.post("/azure/embeddings", {"input": "x"}).status == 200
    sent = mock.requests()[-1]
    assert sent["headers"]["api-key"] == TEST_KEY and "authorization" not in sent["headers"]
    assert sent["query_string"] == "api-version=2024-10-21&note=a%20b%26c"
    assert client.post("/azure/embeddings", {"input": "x"},
                       headers={"x-openai-key": CLIENT_KEY}).status == 200
    assert mock.requests()[-1]["headers"]["api-key"] == CLIENT_KEY
    assert client.post("/plain", {"messages": []}).status == 200
    sent = mock.requests()[-1]
    assert sent["headers"]["authorization"] == f"Bearer {TEST_KEY}"
    assert "api-key" not in sent["headers"] and sent["query"] == {}


def test_explicit_bearer_in_an_inner_location(own_httpd, mock):
    body = (f"OpenAIProxyAPIKey {TEST_KEY}\nOpenAIProxyUpstream {mock.api}\n"
            "OpenAIProxyUpstreamAuth header:x-api-key\n"
            + bare_location(path="/a")
            + bare_location("OpenAIProxyUpstreamAuth bearer", path="/b"))
    _, client = own_httpd(body, name="ep-bearer")
    client.post("/a", {"messages": []})
    assert mock.requests()[-1]["headers"]["x-api-key"] == TEST_KEY
    client.post("/b", {"messages": []})
    sent = mock.requests()[-1]
    assert sent["headers"]["authorization"] == f"Bearer {TEST_KEY}"
    assert "x-api-key" not in sent["headers"]


# ---- configuration ----

def endpoints_config_test(workdir, *directives):
    """`apache2 -t` of /v1 with these directives only."""
    return config_test(workdir, bare_location(*directives), name="configtest-ep")


def test_good_endpoint_config_is_accepted(workdir):
    result = endpoints_config_test(
        workdir,
        "OpenAIProxyEndpoints chat/completions completions responses embeddings",
        "OpenAIProxyEndpoints moderations images/generations images/edits audio/speech",
        "OpenAIProxyEndpoints audio/transcriptions audio/translations models models/*",
        "OpenAIProxyEndpoints models",
        "OpenAIProxyUpstreamAuth header:api-key",
        "OpenAIProxyUpstreamAuth Bearer",
        "OpenAIProxyUpstreamQuery api-version=2024-10-21 empty=",
        "OpenAIProxyUpstreamQuery 'spaced value=a b'")
    assert result.returncode == 0, result.stderr
    assert "Syntax OK" in result.stderr


BAD = [
    ("OpenAIProxyEndpoints files", "'files' is not an API path the proxy knows; use one "
     "of: chat/completions, completions, responses"),
    ("OpenAIProxyEndpoints /models", "'/models' is not an API path the proxy knows"),
    ("OpenAIProxyEndpoints models/", "'models/' is not an API path"),
    ("OpenAIProxyEndpoints models/**", "'models/**' is not an API path"),
    ("OpenAIProxyEndpoints ../models", "'../models' is not an API path"),
    ("OpenAIProxyEndpoints embeddings/*", "'embeddings/*' is not an API path"),
    ("OpenAIProxyEndpoints", "requires at least one argument"),
    ("OpenAIProxyUpstreamAuth basic", "'basic' is not bearer or header:NAME"),
    ("OpenAIProxyUpstreamAuth header:", "is not bearer or header:NAME"),
    ("OpenAIProxyUpstreamAuth 'header:api key'", "is not bearer or header:NAME"),
    ("OpenAIProxyUpstreamAuth header:api-key:x", "is not bearer or header:NAME"),
    ("OpenAIProxyUpstreamAuth header:Content-Length", "other than Host, Content-Type"),
    ("OpenAIProxyUpstreamAuth header:host", "is not bearer or header:NAME"),
    ("OpenAIProxyUpstreamQuery api-version", "'api-version': expected NAME=VALUE"),
    ("OpenAIProxyUpstreamQuery =x", "'=x': expected NAME=VALUE with a non-empty NAME"),
]


@pytest.mark.parametrize("directive,message", BAD)
def test_bad_values_fail_the_config_test(workdir, directive, message):
    result = endpoints_config_test(workdir, directive)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert "Syntax error on line" in result.stderr
