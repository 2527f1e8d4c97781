"""CORS: an allow-list checked exactly, refusals before any upstream call,
and the headers on every answer, errors included."""

import pytest

from harness import MESSAGES

ALLOWED = "https://app.example.com"


def preflight(client, origin, path="/v1", request_headers=None, host=None):
    headers = {"Origin": origin, "Access-Control-Request-Method": "POST"}
    if request_headers:
        headers["Access-Control-Request-Headers"] = request_headers
    return client.request("OPTIONS", path, headers=headers, host=host)


def test_preflight_from_allowed_origin(client, mock):
    resp = preflight(client, ALLOWED, request_headers="content-type, x-stainless-os")
    assert resp.status == 204
    assert resp.body == b""
    assert resp.header("Access-Control-Allow-Origin") == ALLOWED
    assert resp.header("Access-Control-Allow-Methods") == "POST, OPTIONS"
    allowed = [h.strip().lower() for h in resp.header("Access-Control-Allow-Headers").split(",")]
    for name in ("content-type", "authorization", "x-openai-key", "x-stainless-os"):
        assert name in allowed
    assert allowed.count("content-type") == 1
    assert resp.header("Access-Control-Max-Age") == "86400"
    assert "Origin" in resp.header("Vary")
    assert mock.requests() == []


def test_preflight_from_other_origin_is_403(client, mock):
    resp = preflight(client, "https://evil.example.com")
    assert resp.status == 403
    assert resp.header("Access-Control-Allow-Origin") is None
    assert resp.json()["error"] == "Origin Not Allowed"


def test_options_without_preflight_headers(client):
    resp = client.request("OPTIONS", "/v1")
    assert resp.status == 204
    assert resp.header("Allow") == "POST, OPTIONS"


def test_post_from_allowed_origin_carries_cors_headers(client, mock):
    resp = client.post("/v1", {"messages": MESSAGES}, headers={"Origin": ALLOWED})
    assert resp.status == 200
    assert resp.header("Access-Control-Allow-Origin") == ALLOWED
    assert "Origin" in resp.header("Vary")
    exposed = resp.header("Access-Control-Expose-Headers").lower()
    for name in ("x-request-id", "x-ratelimit-remaining-requests", "openai-processing-ms"):
        assert name in exposed


HOSTILE = ["https://app.example.com.evil.com", "http://app.example.com",
           "https://app.example.com:8443", "https://evilapp.example.com",
           "https://app.example.com@evil.com", "https://app.example.com/", "null",
           "https://example.org", "https://x.example.org.evil.net", "http://localhost:30000",
           "http://localhost", "https://app.example.com%2f.evil.com", "",
           "https://APP.example.com.", "file://", "https://app.example.com\tx"]


@pytest.mark.parametrize("origin", HOSTILE)
def test_hostile_origins_are_refused_before_the_upstream(client, mock, origin):
    resp = client.post("/v1", {"messages": MESSAGES}, headers={"Origin": origin})
    assert resp.status == 403
    assert resp.header("Access-Control-Allow-Origin") is None
    assert resp.header("Content-Type") == "application/json"
    assert mock.requests() == []


@pytest.mark.parametrize("origin", ["https://APP.example.com", "https://app.example.com:443",
                                    "https://chat.example.org", "https://a.b.example.org",
                                    "http://localhost:3000"])
def test_allowed_origin_forms(client, mock, origin):
    resp = client.post("/v1", {"messages": MESSAGES}, headers={"Origin": origin})
    assert resp.status == 200
    assert resp.header("Access-Control-Allow-Origin") == origin


def test_star_allows_any_origin_with_star(client, mock):
    for origin in ("https://anything.test", "null"):
        resp = client.post("/any-origin", {"messages": MESSAGES}, headers={"Origin": origin})
        assert resp.status == 200
        assert resp.header("Access-Control-Allow-Origin") == "*"


def test_requests_without_origin_are_served_without_cors_headers(client, mock):
    resp = client.post("/v1", {"messages": MESSAGES})
    assert resp.status == 200
    assert resp.header("Access-Control-Allow-Origin") is None


def test_same_origin_page_needs_no_allow_list_entry(client, mock, httpd):
    host = f"a.test:{httpd.port}"  # the virtual host's ServerName
    resp = client.post("/v1", {"messages": MESSAGES}, headers={"Origin": f"http://{host}"},
                       host=host)
    assert resp.status == 200


def test_a_domain_pointed_at_the_server_is_not_same_origin(client, mock, httpd):
    """A catch-all virtual host must not take any Host for its own name."""
    host = f"evil.test:{httpd.port}"
    resp = client.post("/v1", {"messages": MESSAGES}, headers={"Origin": f"http://{host}"},
                       host=host)
    assert resp.status == 403
    assert mock.requests() == []


def test_error_answers_carry_cors_headers(client, mock, error_log):
    error_log.allow("upstream request failed")
    cases = [
        client.post("/v1", "{", headers={"Origin": ALLOWED}),                     # 400
        client.post("/v1/nope", {"messages": MESSAGES}, headers={"Origin": ALLOWED}),  # 404
        client.request("GET", "/v1", headers={"Origin": ALLOWED}),                # 405
        client.post("/v1", {"messages": MESSAGES, "mock": {"status": 429}},
                    headers={"Origin": ALLOWED}),                                  # upstream 429
        client.post("/down", {"messages": MESSAGES}, headers={"Origin": ALLOWED}),  # 502
    ]
    assert [r.status for r in cases] == [400, 404, 405, 429, 502]
    for resp in cases:
        assert resp.header("Access-Control-Allow-Origin") == ALLOWED, resp.status
        assert "Origin" in resp.header("Vary")
    assert "retry-after" in cases[3].header("Access-Control-Expose-Headers").lower()
