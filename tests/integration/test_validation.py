"""Bad requests get a clear JSON error with the right status and never reach
the upstream."""

import http.client
import json

import pytest

from harness import MESSAGES, SLOWDOWN

BAD_BODIES = [
    ("", 400, "Invalid JSON", "empty"),
    ("   \n ", 400, "Invalid JSON", "empty"),
    ("{", 400, "Invalid JSON", "not valid JSON"),
    ("{'messages': []}", 400, "Invalid JSON", "not valid JSON"),
    ("null", 400, "Invalid request", "not null"),
    ("[1,2]", 400, "Invalid request", "not an array"),
    ('"text"', 400, "Invalid request", "not a string"),
    ("{}", 400, "Invalid messages format", "messages array"),
    ('{"messages":"hi"}', 400, "Invalid messages format", "not a string"),
    ('{"messages":null}', 400, "Invalid messages format", "not null"),
    ('{"messages":{}}', 400, "Invalid messages format", "not an object"),
    ('{"messages":[],"messages":[]}', 400, "Invalid JSON", "duplicate"),
    ('{"messages":[]} trailing', 400, "Invalid JSON", "not valid JSON"),
    ("[" * 5000 + "]" * 5000, 400, "Invalid JSON", "not valid JSON"),
    ('{"messages":[],"x":"\\ud800"}', 400, "Invalid JSON", "not valid JSON"),
    (b'{"messages":[{"content":"\xff\xfe"}]}', 400, "Invalid JSON", "not valid JSON"),
]


@pytest.mark.parametrize("body,status,title,phrase", BAD_BODIES)
def test_bad_bodies(client, mock, body, status, title, phrase):
    resp = client.post("/v1", body, headers={"Content-Type": "application/json"})
    assert resp.status == status
    assert resp.header("Content-Type") == "application/json"
    err = resp.json()
    assert err["error"] == title
    assert phrase in err["message"]
    assert mock.requests() == []


def test_openai_error_format_for_sdk_clients(client, mock):
    resp = client.post("/openai-errors", "{", headers={"Content-Type": "application/json"})
    assert resp.status == 400
    err = resp.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert err["code"] == "invalid_json"
    assert err["param"] is None
    assert "not valid JSON" in err["message"]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_405_with_allow(client, mock, method):
    resp = client.request(method, "/v1")
    assert resp.status == 405
    assert resp.header("Allow") == "POST, OPTIONS"
    assert resp.json() == {"error": "Method Not Allowed",
                           "message": f"{method} is not allowed; use POST"}


def test_head_is_405_without_a_body(client):
    resp = client.request("HEAD", "/v1")
    assert resp.status == 405
    assert resp.body == b""


def test_body_over_the_limit_is_413_json(client, mock):
    big = json.dumps({"messages": [{"role": "user", "content": "x" * 2000}]})
    resp = client.post("/small", big, headers={"Content-Type": "application/json"})
    assert resp.status == 413
    assert resp.json()["error"] == "Request Entity Too Large"
    assert "1024 bytes" in resp.json()["message"]
    assert mock.requests() == []


def test_chunked_body_over_the_limit_is_413_json(client, mock):
    body = json.dumps({"messages": [{"role": "user", "content": "y" * 5000}]}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", client.port, timeout=10 * SLOWDOWN)
    conn.request("POST", "/small", body=iter([body[i:i + 500] for i in range(0, len(body), 500)]),
                 encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
    resp = conn.getresponse()
    assert resp.status == 413
    assert json.loads(resp.read())["error"] == "Request Entity Too Large"
    conn.close()
    assert mock.requests() == []


def test_body_at_the_limit_is_accepted(client, mock):
    body = json.dumps({"messages": MESSAGES})
    body = body + " " * (1024 - len(body))
    assert len(body) == 1024
    resp = client.post("/small", body, headers={"Content-Type": "application/json"})
    assert resp.status == 200


def test_many_messages_are_fine(client, mock):
    resp = client.post("/v1", {"messages": [{"role": "user", "content": "m"}] * 20000})
    assert resp.status == 200
    assert len(mock.requests()[-1]["body"]["messages"]) == 20000


def test_keepalive_connection_survives_an_error(client, mock, httpd):
    conn = http.client.HTTPConnection("127.0.0.1", httpd.port, timeout=10 * SLOWDOWN)
    conn.request("POST", "/v1", body="{", headers={"Content-Type": "application/json"})
    first = conn.getresponse()
    assert first.status == 400
    first.read()
    conn.request("POST", "/v1", body=json.dumps({"messages": MESSAGES}),
                 headers={"Content-Type": "application/json"})
    second = conn.getresponse()
    assert second.status == 200
    second.read()
    conn.close()


def test_allow_models_refuses_other_models_before_the_upstream(client, mock):
    for model in ("gpt-4o-mini", "o3", "o3-mini"):
        resp = client.post("/models", {"messages": MESSAGES, "model": model})
        assert resp.status == 200, model
    for model in ("gpt-4o", "gpt-4o-mini-x", "GPT-4O-MINI"):
        resp = client.post("/models", {"messages": MESSAGES, "model": model})
        assert resp.status == 400, model
        assert resp.json() == {"error": "Model Not Allowed",
                               "message": f"The model {model} is not available here"}
    assert [r["body"]["model"] for r in mock.requests()] == ["gpt-4o-mini", "o3", "o3-mini"]


def test_the_default_model_counts_as_requested(client, mock):
    # the built-in default gpt-3.5-turbo is not on the list
    assert client.post("/models", {"messages": MESSAGES}).status == 400
    # an inner Location inherits the list and sets an allowed default
    assert client.post("/models/defaulted", {"messages": MESSAGES}).status == 200
    assert mock.requests()[-1]["body"]["model"] == "gpt-4o-mini"


def test_a_non_string_model_is_refused_where_models_are_listed(client, mock):
    resp = client.post("/models", {"messages": MESSAGES, "model": ["gpt-4o-mini"]})
    assert resp.status == 400
    assert resp.json()["message"] == "model must be a string"
    assert mock.requests() == []
