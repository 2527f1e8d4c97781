"""An upstream error that quotes the credential it rejected (in full, its
first 12 characters and "...", or OpenAI's first-8***last-4) reaches neither
the client nor a log: the key is masked whatever its source (a literal,
env:, file:) and so is the client's own key (x-openai-key). The suite's
scan (conftest.check_logs_and_secrets) checks every response and log for
the keys and their 12-character prefixes and suffixes as well."""

import pytest

from harness import (CLIENT_KEY, MESSAGES, TEST_KEY, TEST_KEY_B, Client, Httpd,
                     after_a_keep_alive, proxy_location, silent_upstream, sse_error_event)

ORIGIN = "https://app.example.com"
ENV_VAR = "OAIP_ECHO_TEST_KEY"
# every Location here: the page's origin may read the answers, in OpenAI's format
ECHO = (f"OpenAIProxyAllowOrigin {ORIGIN}", "OpenAIProxyErrorFormat openai")

# path -> (the key the upstream receives, extra request headers)
SOURCES = {
    "literal": ("/literal", TEST_KEY, {}),
    "env": ("/env", TEST_KEY_B, {}),
    "file": ("/file", TEST_KEY_B, {}),
    "client": ("/client", CLIENT_KEY, {"x-openai-key": CLIENT_KEY}),
}


@pytest.fixture(scope="module")
def echo_httpd(workdir, mock, key_file):
    config = "".join([
        proxy_location(mock, *ECHO, path="/literal"),
        proxy_location(mock, *ECHO, path="/env", key=f"env:{ENV_VAR}"),
        proxy_location(mock, *ECHO, path="/file", key=f"file:{key_file}"),
        proxy_location(mock, *ECHO, "OpenAIProxyAllowClientKey On", path="/client"),
        proxy_location(mock, *ECHO, "OpenAIProxyHeartbeat 1", path="/heartbeat"),
        proxy_location(mock, *ECHO, "OpenAIProxyUpstreamAuth header:api-key",
                       path="/header-auth"),
    ])
    server = Httpd(workdir, config, name="keyecho", env={ENV_VAR: TEST_KEY_B})
    server.start()
    yield server
    server.stop()


@pytest.fixture
def echo_client(request, echo_httpd, responses):
    """A client of the module's httpd, whose logs the suite's scan reads
    after each test like any test's own httpd's."""
    echo_httpd.new_log_lines()  # what earlier tests left was checked then
    request.node.extra_servers = [echo_httpd]
    return Client(echo_httpd.port, responses)


def masked_echo(form, key):
    """What the client must see where the mock wrote its echo of `key`."""
    if form == "prefix":
        return "*" * 12 + "..."
    return "*" * len(key)  # full; openai: its first 8, its stars, its last 4


def assert_masked(resp, key, form):
    assert resp.status == 401
    assert resp.header("Access-Control-Allow-Origin") == ORIGIN
    assert resp.header("Content-Type") == "application/json"
    assert int(resp.header("Content-Length")) == len(resp.body)
    error = resp.json()["error"]  # still valid JSON
    assert error["code"] == "invalid_api_key"
    assert error["message"] == (
        f"Incorrect API key provided: {masked_echo(form, key)}. You can find your API key "
        "at https://platform.openai.com/account/api-keys.")
    for piece in (key, key[:12], key[:8], key[-8:]):
        assert piece.encode() not in resp.body


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("form", ["full", "prefix", "openai"])
@pytest.mark.parametrize("source", list(SOURCES))
def test_echoed_key_is_masked(echo_client, mock, source, form, stream):
    path, key, headers = SOURCES[source]
    resp = echo_client.post(path, {"messages": MESSAGES, "stream": stream,
                                   "mock": {"echo_key": form}},
                            headers=dict(headers, Origin=ORIGIN))
    # the mock did receive, and quote, this key
    assert mock.requests()[-1]["headers"]["authorization"] == f"Bearer {key}"
    assert_masked(resp, key, form)


def test_echo_of_a_key_sent_in_another_header_is_masked(echo_client, mock):
    resp = echo_client.post("/header-auth", {"messages": MESSAGES,
                                             "mock": {"echo_key": "prefix"}},
                            headers={"Origin": ORIGIN})
    assert mock.requests()[-1]["headers"]["api-key"] == TEST_KEY
    assert_masked(resp, TEST_KEY, "prefix")


def test_partial_echo_of_any_length_is_masked(echo_client, mock):
    """Rule 1 masks any run of 8 or more of the key's characters."""
    for chars in (8, 9, 20, len(TEST_KEY) - 1):
        resp = echo_client.post("/literal", {"messages": MESSAGES, "mock": {
            "echo_key": "prefix", "echo_key_chars": chars}}, headers={"Origin": ORIGIN})
        assert resp.status == 401
        assert resp.json()["error"]["message"].startswith(
            "Incorrect API key provided: " + "*" * chars + "...")


def test_client_key_is_masked_where_it_replaced_no_configured_key(own_httpd, mock):
    """Vhost b's /nokey has no key of its own: only the client's is sent."""
    _, client = own_httpd(proxy_location(mock, *ECHO, "OpenAIProxyAllowClientKey On",
                                         path="/nokey", key=None))
    resp = client.post("/nokey", {"messages": MESSAGES, "mock": {"echo_key": "full"}},
                       headers={"Origin": ORIGIN, "x-openai-key": CLIENT_KEY})
    assert_masked(resp, CLIENT_KEY, "full")


def test_echo_in_a_text_body_is_masked(echo_client, mock):
    resp = echo_client.post("/env", {"messages": MESSAGES, "mock": {
        "echo_key": "full", "echo_key_text": True, "status": 403}},
        headers={"Origin": ORIGIN})
    assert resp.status == 403
    assert resp.header("Access-Control-Allow-Origin") == ORIGIN
    assert resp.header("Content-Type") == "text/plain; charset=utf-8"
    assert resp.text.startswith("Unauthorized. Incorrect API key provided: " +
                                "*" * len(TEST_KEY_B) + ". ")


def test_echo_in_a_passed_header_is_masked(echo_client, mock):
    resp = echo_client.post("/file", {"messages": MESSAGES, "mock": {
        "echo_key": "full", "echo_key_header": "x-ratelimit-echo"}},
        headers={"Origin": ORIGIN})
    assert resp.status == 401
    assert resp.header("x-ratelimit-echo") == "*" * len(TEST_KEY_B)


def after_heartbeats(echo_client, mock, directives):
    """A stream on /heartbeat whose upstream answers (as `directives` say)
    only once a keep-alive reached the client: heartbeats committed a 200."""
    return silent_upstream(echo_client, mock, dict(directives, delay_headers=1),
                           after_a_keep_alive, path="/heartbeat", headers={"Origin": ORIGIN})


@pytest.mark.parametrize("form", ["full", "prefix", "openai"])
def test_echo_after_heartbeats_is_masked_in_the_sse_error_event(echo_client, mock, form):
    """The heartbeats committed a 200 stream before the upstream answered
    401: its error becomes an SSE error event, masked too."""
    resp = after_heartbeats(echo_client, mock, {"echo_key": form})
    assert resp.status == 200
    assert resp.header("Access-Control-Allow-Origin") == ORIGIN
    text = resp.text
    assert text.startswith(": keep-alive\n\n")
    data = sse_error_event(text)
    assert data["status"] == 401
    assert data["error"]["message"].startswith(
        f"Incorrect API key provided: {masked_echo(form, TEST_KEY)}. ")
    for piece in (TEST_KEY, TEST_KEY[:12], TEST_KEY[:8], TEST_KEY[-8:]):
        assert piece not in text


def test_masking_is_logged_without_the_key(echo_client, echo_httpd, mock):
    echo_client.post("/literal", {"messages": MESSAGES, "mock": {"echo_key": "full"}})
    with open(echo_httpd.error_log, "rb") as f:  # the suite's scan reads it after
        f.seek(echo_httpd.log_offset)
        text = f.read().decode("utf-8", "replace")
    assert "masked %d bytes of the upstream's 401 answer" % len(TEST_KEY) in text, text


def test_success_answers_pass_unchanged(echo_client, mock):
    """Only error answers are masked: a 2xx answer keeps its bytes even
    where they look like a piece of a key."""
    reply = "keys look like " + TEST_KEY[:8]
    resp = echo_client.post("/literal", {"messages": MESSAGES, "mock": {"reply": reply}},
                            headers={"Origin": ORIGIN})
    assert resp.status == 200
    assert resp.json()["choices"][0]["message"]["content"] == reply



def test_escaped_echo_is_masked_in_the_sse_error_event(echo_client, mock):
    """The SSE error event is built from the parsed error: a key written
    with JSON escapes is plain text there, and masked there too."""
    escaped = "".join("\\u%04x" % ord(c) for c in TEST_KEY)
    resp = after_heartbeats(echo_client, mock, {
        "status": 401,
        "error_body": '{"error":{"message":"Incorrect API key provided: %s."}}' % escaped})
    assert resp.status == 200
    data = sse_error_event(resp.text)
    assert data["error"]["message"] == (
        "Incorrect API key provided: " + "*" * len(TEST_KEY) + ".")
