"""The chat proxy end to end: what reaches the upstream, what comes back."""

import json

from harness import SLOWDOWN, TEST_KEY, TEST_KEY_B, openai_error

# the mock's answer quotes the user's words: "You said: Hello there"
ECHOED_MESSAGES = [{"role": "user", "content": "Hello there"}]


def last_upstream_request(mock):
    records = mock.requests()
    assert records, "the upstream received nothing"
    return records[-1]


def test_plain_answer_is_relayed_byte_for_byte(client, mock):
    resp = client.post("/v1", {"messages": ECHOED_MESSAGES})
    assert resp.status == 200
    assert resp.header("Content-Type").startswith("application/json")
    body = resp.json()
    assert body["object"] == "chat.completion"
    assert "You said: Hello there" in body["choices"][0]["message"]["content"]
    # the mock pretty-prints; a re-serialising proxy would change the bytes
    assert resp.body == json.dumps(body, indent=2).encode()
    assert int(resp.header("Content-Length")) == len(resp.body)


def test_openai_headers_pass_through_and_others_do_not(client, mock):
    resp = client.post("/v1", {"messages": ECHOED_MESSAGES})
    assert resp.header("x-request-id").startswith("req_")
    assert resp.header("openai-processing-ms").isdigit()
    assert resp.header("x-ratelimit-remaining-requests") == "9999"
    assert resp.header("x-ratelimit-reset-tokens") == "300ms"
    assert resp.header("Set-Cookie") is None, "upstream cookies must not reach the client"


def test_upstream_gets_the_configured_key_and_never_client_credentials(client, mock):
    client.post("/v1", {"messages": ECHOED_MESSAGES},
                headers={"Authorization": "Bearer client-token", "Cookie": "session=abc",
                         "x-openai-key": "sk-client-should-be-ignored",
                         "X-Forwarded-For": "10.1.2.3", "OpenAI-Organization": "org-x"})
    seen = last_upstream_request(mock)
    assert seen["method"] == "POST"
    assert seen["path"] == "/v1/chat/completions"
    headers = seen["headers"]
    assert headers["authorization"] == f"Bearer {TEST_KEY}"
    assert headers["content-type"] == "application/json"
    for name in ("cookie", "x-openai-key", "x-forwarded-for", "openai-organization"):
        assert name not in headers


def test_defaults_fill_only_absent_fields(client, mock):
    client.post("/v1", {"messages": ECHOED_MESSAGES})
    sent = last_upstream_request(mock)["body"]
    assert sent["model"] == "gpt-3.5-turbo"
    assert sent["temperature"] == 0.7
    assert sent["max_tokens"] == 1000
    assert sent["stream"] is False
    assert '"temperature":0.7' in last_upstream_request(mock)["body_raw"]


def test_client_values_win_even_when_falsy(client, mock):
    client.post("/v1", {"messages": ECHOED_MESSAGES, "temperature": 0, "max_tokens": None,
                        "model": "gpt-4o", "stream": False})
    sent = last_upstream_request(mock)["body"]
    assert sent["temperature"] == 0
    assert sent["max_tokens"] is None  # no cap here: null is the client's to send
    assert sent["model"] == "gpt-4o"


def test_every_other_field_is_forwarded_unchanged(client, mock):
    raw = ('{"messages":[{"role":"user","content":"caf\\u00e9 \\ud83d\\ude00"}],'
           '"top_p":0.95,"frequency_penalty":-0.5,"presence_penalty":1e-3,'
           '"tools":[{"type":"function","function":{"name":"f","parameters":{}}}],'
           '"response_format":{"type":"json_object"},"seed":12345678901,"user":"u-1"}')
    client.post("/v1", raw, headers={"Content-Type": "application/json"})
    seen = last_upstream_request(mock)
    # the client's bytes are kept; defaults are appended before the last brace
    assert seen["body_raw"].startswith(raw[:-1])
    assert seen["body"]["seed"] == 12345678901
    assert seen["body"]["presence_penalty"] == 1e-3


def test_no_max_tokens_added_next_to_max_completion_tokens(client, mock):
    client.post("/v1", {"messages": ECHOED_MESSAGES, "max_completion_tokens": 50})
    sent = last_upstream_request(mock)["body"]
    assert sent["max_completion_tokens"] == 50
    assert "max_tokens" not in sent


def test_configured_defaults_override_and_remove(client, mock):
    resp = client.post("/defaults", {"messages": ECHOED_MESSAGES})
    assert resp.status == 200
    sent = last_upstream_request(mock)["body"]
    assert sent["model"] == "gpt-4o-mini"
    assert "temperature" not in sent
    assert sent["user"] == "from-proxy"
    assert sent["max_tokens"] == 256
    assert sent["stream"] is False


def test_location_and_chat_completions_subpath_both_work(client, mock):
    for path in ("/v1", "/v1/", "/v1/chat/completions"):
        resp = client.post(path, {"messages": ECHOED_MESSAGES})
        assert resp.status == 200, path
    assert len(mock.requests()) == 3


def test_other_subpaths_are_json_404_without_upstream_call(client, mock):
    for path in ("/v1/models", "/v1/embeddings", "/v1/chat/completions/x", "/v1/chat"):
        resp = client.post(path, {"messages": ECHOED_MESSAGES})
        assert resp.status == 404, path
        # below the Location, where SDKs call: the OpenAI shape
        assert openai_error(resp)["code"] == "unknown_url"
        assert path in openai_error(resp)["message"]
    assert mock.requests() == []


def test_chunked_request_body(client, mock):
    body = json.dumps({"messages": ECHOED_MESSAGES * 200}).encode()

    def chunks():
        for i in range(0, len(body), 1000):
            yield body[i:i + 1000]
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", client.port, timeout=10 * SLOWDOWN)
    conn.request("POST", "/v1", body=chunks(), encode_chunked=True,
                 headers={"Content-Type": "application/json",
                          "Transfer-Encoding": "chunked"})
    resp = conn.getresponse()
    assert resp.status == 200
    resp.read()
    conn.close()
    assert len(last_upstream_request(mock)["body"]["messages"]) == 200


def test_upstream_errors_pass_through_with_status_and_body(client, mock):
    resp = client.post("/v1", {"messages": ECHOED_MESSAGES, "mock": {"status": 429}})
    assert resp.status == 429
    err = resp.json()["error"]
    assert err["code"] == "rate_limit_exceeded"
    assert resp.header("x-request-id").startswith("req_")
    resp = client.post("/v1", {"messages": ECHOED_MESSAGES, "mock": {"status": 401}})
    assert resp.status == 401
    assert resp.json()["error"]["code"] == "invalid_api_key"


def test_upstream_error_on_stream_request_is_json_with_its_status(client, mock):
    resp = client.post("/v1", {"messages": ECHOED_MESSAGES, "stream": True,
                               "mock": {"status": 503}})
    assert resp.status == 503
    assert resp.header("Content-Type").startswith("application/json")
    assert "error" in resp.json()


def test_unreachable_upstream_is_502_json(client, error_log):
    error_log.allow("upstream request failed")
    resp = client.post("/down", {"messages": ECHOED_MESSAGES})
    assert resp.status == 502
    body = resp.json()
    assert body["error"] == "Bad Gateway"
    assert "Could not reach the upstream API" in body["message"]
    assert "127.0.0.1" not in body["message"], "upstream address leaked to the client"


def test_upstream_hangup_before_answer_is_502(client, mock, error_log):
    error_log.allow("upstream request failed")
    for directive in ({"hangup_before_headers": True}, {"malformed": True}):
        resp = client.post("/v1", {"messages": ECHOED_MESSAGES, "mock": directive})
        assert resp.status == 502, directive
        assert resp.json()["error"] == "Bad Gateway"


def test_virtual_hosts_have_their_own_key_origin_and_upstream(client, mock):
    resp = client.post("/api", {"messages": ECHOED_MESSAGES}, host="b.test",
                       headers={"Origin": "https://b.example.net"})
    assert resp.status == 200
    assert resp.header("Access-Control-Allow-Origin") == "https://b.example.net"
    seen = last_upstream_request(mock)
    assert seen["path"] == "/v1/vhost-b/chat/completions"
    assert seen["headers"]["authorization"] == f"Bearer {TEST_KEY_B}"
    # vhost a's origin is not allowed on vhost b, and the reverse
    assert client.post("/api", {"messages": ECHOED_MESSAGES}, host="b.test",
                       headers={"Origin": "https://app.example.com"}).status == 403
    assert client.post("/v1", {"messages": ECHOED_MESSAGES}, host="a.test",
                       headers={"Origin": "https://b.example.net"}).status == 403


def test_max_tokens_cap_lowers_but_never_raises(client, mock):
    client.post("/capped", {"messages": ECHOED_MESSAGES, "max_tokens": 5000, "temperature": 0.7})
    sent = last_upstream_request(mock)["body"]
    assert sent["max_tokens"] == 64
    assert sent["temperature"] == 0.7
    client.post("/capped", {"messages": ECHOED_MESSAGES})  # the default 1000 is lowered too
    assert last_upstream_request(mock)["body"]["max_tokens"] == 64
    client.post("/capped", {"messages": ECHOED_MESSAGES, "max_completion_tokens": 500})
    sent = last_upstream_request(mock)["body"]
    assert sent["max_completion_tokens"] == 64
    assert "max_tokens" not in sent
    raw = '{"messages":[{"role":"user","content":"x"}],"max_tokens":10}'
    client.post("/capped", raw, headers={"Content-Type": "application/json"})
    seen = last_upstream_request(mock)
    assert seen["body"]["max_tokens"] == 10
    assert seen["body_raw"].startswith(raw[:-1])  # below the cap: bytes untouched
