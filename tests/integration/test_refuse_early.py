"""Refuse early, refuse cheaply: a request the proxy refuses before its body
matters (origin, unknown path, method, key, rate limit) is answered without
reading the body (no "100 Continue", no draining a 50 MB upload), and the
connection is closed when a body was announced. And every error a path
below the proxy's Location can get is JSON with CORS headers, also the ones
httpd answers itself (encoded slash, NUL byte, auth, LimitRequestBody, an
overlong header line).

The raw-socket tests never send a body: if the server waited for one, the
first thing the client reads would be "100 Continue" (or nothing until
httpd's Timeout), and the assertion on the first line fails at once."""

import json
import socket

import pytest

from harness import MESSAGES, basic_auth, proxy_location

ALLOWED = "https://app.example.com"
# a guard against a hang, far above any answer time; never a timing assertion
HANG = 60
BIG = 50_000_000


def config(mock, workdir):
    return f"OpenAIProxyAllowOrigin {ALLOWED}\n" + "".join([
        proxy_location(mock),
        proxy_location(mock, "OpenAIProxyRateLimit 1/h", path="/limited"),
        proxy_location(mock, path="/nokey", key=None),
        proxy_location(mock, "OpenAIProxyAllowClientKey On", path="/byok", key=None),
        proxy_location(mock, "OpenAIProxyErrorFormat openai", "LimitRequestBody 100",
                       path="/openai"),
        proxy_location(mock, *basic_auth(f"{workdir}/nobody.htpasswd", realm="proxy"),
                       path="/locked"),
        proxy_location(mock, "Require all denied", path="/denied"),
    ])


@pytest.fixture
def server(own_httpd, mock, workdir):
    with open(f"{workdir}/nobody.htpasswd", "w") as f:
        f.write("")
    srv, client = own_httpd(config(mock, workdir) + "LimitRequestFieldSize 200\n")
    return srv, client


def read_head(sock):
    """Status line and headers of the first answer the server sends."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers, rest


def read_body(sock, headers, rest):
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return rest[:length], rest[length:]


def closed_by_server(sock):
    """True when the server closes (EOF, or a reset after it closed)."""
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True


def refused_without_body(port, method, path, headers):
    """Sends only the head of a request announcing a 50 MB body and
    Expect: 100-continue; returns (status line, headers, JSON body) of the
    answer and whether the server then closed the connection."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1",
             "Content-Type: application/json", f"Content-Length: {BIG}",
             "Expect: 100-continue"] + [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection(("127.0.0.1", port), timeout=HANG) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        status, hdrs, rest = read_head(sock)
        body, extra = read_body(sock, hdrs, rest)
        assert extra == b""
        return status, hdrs, json.loads(body), closed_by_server(sock)


CASES = [
    ("origin", "POST", "/v1", {"Origin": "https://evil.example.com"}, 403, "Origin Not Allowed"),
    ("unknown path", "POST", "/v1/nope", {}, 404, "unknown_url"),
    ("method", "PUT", "/v1", {}, 405, "Method Not Allowed"),
    ("no key", "POST", "/nokey", {}, 500, "Configuration Error"),
    ("bad client key", "POST", "/byok", {"x-openai-key": "sk bad key"}, 400, "Bad Request"),
]


@pytest.mark.parametrize("what,method,path,headers,status,title", CASES,
                         ids=[c[0] for c in CASES])
def test_refused_before_the_body_without_100_continue(server, mock, error_log, what, method,
                                                      path, headers, status, title):
    error_log.allow("api_key_not_configured")  # the "no key" case, logged as our fault
    srv, _ = server
    line, hdrs, body, closed = refused_without_body(srv.port, method, path, headers)
    assert line.startswith(f"HTTP/1.1 {status} "), f"first line: {line!r}"
    assert "100" not in line.split()[1]
    # the Location itself answers in the Worker's shape (its title), a path
    # below it in the SDKs' (the code)
    below = "/" in path[1:]
    assert (body["error"]["code"] if below else body["error"]) == title
    assert hdrs["content-type"] == "application/json"
    assert hdrs.get("connection", "").lower() == "close"
    assert closed, "the server kept the connection with 50 MB unread"
    assert mock.requests() == []


def test_rate_limited_request_is_refused_before_its_body(server, mock):
    srv, client = server
    first = client.post("/limited", {"messages": MESSAGES})
    assert first.status == 200
    line, hdrs, body, closed = refused_without_body(srv.port, "POST", "/limited", {})
    assert line.startswith("HTTP/1.1 429 "), line
    assert body["error"] == "Too Many Requests"
    assert "retry-after" in hdrs
    assert hdrs.get("connection", "").lower() == "close"
    assert closed
    assert len(mock.requests()) == 1


def test_a_chunked_body_is_not_read_either(server, mock):
    srv, _ = server
    head = ("POST /v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: https://evil.example.com\r\n"
            "Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=HANG) as sock:
        sock.sendall(head.encode())
        line, hdrs, rest = read_head(sock)
        assert line.startswith("HTTP/1.1 403 "), line
        read_body(sock, hdrs, rest)
        assert hdrs.get("connection", "").lower() == "close"
        assert closed_by_server(sock)


def test_a_bodyless_refusal_keeps_the_connection(server, mock):
    srv, _ = server
    request = (b"GET /v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: " + ALLOWED.encode() +
               b"\r\n\r\n")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=HANG) as sock:
        for _ in range(2):  # the second answer comes on the same connection
            sock.sendall(request)
            line, hdrs, rest = read_head(sock)
            assert line.startswith("HTTP/1.1 405 "), line
            body, extra = read_body(sock, hdrs, rest)
            assert extra == b""
            assert json.loads(body)["error"] == "Method Not Allowed"
            assert hdrs.get("connection", "").lower() != "close"


# httpd's own errors below the Location, taken over as JSON with CORS


def assert_json_error(resp, status, code=None, title=None, cors=True):
    assert resp.status == status, resp.text
    assert resp.header("Content-Type") == "application/json", resp.headers
    body = resp.json()
    if code is not None:
        assert body["error"]["code"] == code, body
        assert body["error"]["message"]
    if title is not None:
        assert body["error"] == title, body
        assert body["message"]
    assert int(resp.header("Content-Length")) == len(resp.body)
    if cors:
        assert resp.header("Access-Control-Allow-Origin") == ALLOWED
        assert "Origin" in resp.header("Vary")
    return body


def test_encoded_slash_is_json_404(server):
    _, client = server
    resp = client.request("GET", "/v1/models%2Fx", headers={"Origin": ALLOWED})
    assert_json_error(resp, 404, code="unknown_url")


def test_nul_byte_in_the_path_is_json(server, mock):
    # httpd refuses %00 while decoding the path, as it does %2F: 404
    _, client = server
    resp = client.request("POST", "/openai/chat%00completions", body=b"{}",
                          headers={"Origin": ALLOWED})
    assert_json_error(resp, 404, code="unknown_url")
    assert mock.requests() == []


def test_limit_request_body_is_json_413(server, mock):
    _, client = server
    resp = client.post("/openai", {"messages": MESSAGES, "pad": "x" * 200},
                       headers={"Origin": ALLOWED})
    assert_json_error(resp, 413, code="request_too_large")
    assert mock.requests() == []


def test_a_malformed_chunked_body_is_json_400(server, mock):
    srv, _ = server
    request = ("POST /v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: " + ALLOWED +
               "\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
               "zz-not-a-size\r\n{}\r\n0\r\n\r\n")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=HANG) as sock:
        sock.sendall(request.encode())
        line, hdrs, rest = read_head(sock)
        body, _ = read_body(sock, hdrs, rest)
    assert line.startswith("HTTP/1.1 400 "), line
    assert hdrs["content-type"] == "application/json"
    assert json.loads(body)["error"] == "Bad Request"
    assert hdrs["access-control-allow-origin"] == ALLOWED
    assert mock.requests() == []


def test_httpd_auth_401_is_json_with_the_challenge(server):
    _, client = server
    resp = client.post("/locked", {"messages": MESSAGES}, headers={"Origin": ALLOWED})
    body = assert_json_error(resp, 401, title="Unauthorized")
    assert "Authentication" in body["message"]
    assert resp.header("WWW-Authenticate") == 'Basic realm="proxy"'


def test_require_all_denied_403_is_json(server, error_log):
    error_log.allow("AH01630")  # authz_core logs the denial as an error
    _, client = server
    resp = client.request("GET", "/denied/models", headers={"Origin": ALLOWED})
    assert_json_error(resp, 403, code="forbidden")


def test_an_overlong_header_line_is_json_400(server):
    # httpd stops reading the headers at the long line and keeps none of
    # them, Origin included: JSON, but no CORS headers can be chosen
    _, client = server
    resp = client.post("/openai", {"messages": MESSAGES},
                       headers={"Origin": ALLOWED, "X-Long": "y" * 400})
    assert_json_error(resp, 400, code="bad_request", cors=False)


def test_a_disallowed_origin_gets_the_json_without_cors(server):
    _, client = server
    resp = client.request("GET", "/v1/models%2Fx", headers={"Origin": "https://evil.test"})
    assert resp.status == 404
    assert resp.header("Content-Type") == "application/json"
    assert resp.header("Access-Control-Allow-Origin") is None


def test_httpd_errors_elsewhere_stay_html(server):
    _, client = server
    resp = client.request("GET", "/static/a%2Fb")
    assert resp.status == 404
    assert resp.header("Content-Type").startswith("text/html")
