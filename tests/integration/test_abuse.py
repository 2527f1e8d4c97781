"""Protocol abuse: slow clients (slowloris), injection through request
fields, invalid UTF-8, deep nesting, huge message counts, NUL bytes,
duplicate keys, overflowing numbers and bodies that are not objects. Each
gets a clear answer (or httpd's own timeout) and the server keeps serving;
the autouse check fails a test on a crash (error log, cores) or a leaked
secret."""

import json
import os
import re
import socket
import threading
import time
import uuid

import pytest

from harness import MESSAGES, log_line, proxy_location

# httpd's own defences against slow clients: mod_reqtimeout wants the
# headers within 2 s (extended to 4 s at 200 B/s) and the body within 2 s
# (extended at 200 B/s), and Timeout bounds any single read.
SLOW_CLIENT_LIMITS = """
RequestReadTimeout handshake=0 header=2-4,MinRate=200 body=2,MinRate=200
Timeout 3
"""
# A hang is reported by this socket timeout; it is far above httpd's limits
# so that a loaded machine cannot make the test flaky (no timing assertion).
HANG = 60


def head(length, path="/v1", extra=b""):
    return (b"POST %s HTTP/1.1\r\nHost: a.test\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n%s\r\n" % (path.encode(), length, extra))


def read_until_closed(sock):
    """Everything the server sends until it closes the connection."""
    sock.settimeout(HANG)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def split_response(raw):
    head_text, _, body = raw.partition(b"\r\n\r\n")
    lines = head_text.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and lines[0].startswith("HTTP/") else None
    return status, lines[1:], body


def post_raw(port, body, path="/v1", extra=b""):
    """One POST with these exact body bytes on a fresh connection that asks
    to be closed afterwards; (status, header lines, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=HANG) as sock:
        sock.sendall(head(len(body), path, extra + b"Connection: close\r\n") + body)
        return split_response(read_until_closed(sock))


def assert_still_serves(client):
    resp = client.post("/v1", {"messages": MESSAGES})
    assert resp.status == 200
    assert resp.json()["object"] == "chat.completion"


def trickle(sock, data, pause, stop, started):
    """Sends `data` one byte at a time, `pause` apart (the pace of a slow
    client, not a wait); sets `started` after the first bytes; stops when the
    server hung up."""
    for i in range(len(data)):
        if stop.is_set():
            return
        try:
            sock.sendall(data[i:i + 1])
        except OSError:
            return
        if i == 1:
            started.set()
        time.sleep(pause)


# -- slow clients ------------------------------------------------------------


@pytest.fixture
def guarded(own_httpd, mock):
    server, client = own_httpd(SLOW_CLIENT_LIMITS + proxy_location(mock),
                               modules=("reqtimeout",))
    return server, client


def answer_to_slow_sender(server, client, mock, payload, at_once=b""):
    """Sends `at_once`, then `payload` byte by byte, and while it trickles,
    checks that other clients are served. Returns what the slow connection
    got before httpd closed it."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=HANG)
    sock.sendall(at_once)
    stop, started = threading.Event(), threading.Event()
    sender = threading.Thread(target=trickle, args=(sock, payload, 0.2, stop, started),
                              daemon=True)
    sender.start()
    try:
        assert started.wait(HANG), "the slow sender could not send"
        assert_still_serves(client)  # the slow client holds one thread, not the server
        raw = read_until_closed(sock)
    finally:
        stop.set()
        sender.join(HANG)
        sock.close()
    mock.reset()  # assert_still_serves's own request reached the upstream
    return raw


def test_a_body_trickled_byte_by_byte_is_cut_by_reqtimeout(guarded, mock):
    server, client = guarded
    body = json.dumps({"messages": MESSAGES, "pad": "x" * 200}).encode()
    raw = answer_to_slow_sender(server, client, mock, body, at_once=head(len(body)))
    status, headers, resp_body = split_response(raw)
    assert status == 408
    assert "Content-Type: application/json" in headers
    assert json.loads(resp_body) == {"error": "Request Timeout",
                                     "message": "The request body did not arrive in time"}
    assert mock.requests() == []
    assert_still_serves(client)


def test_a_body_that_never_completes_is_cut(guarded, mock):
    server, client = guarded
    with socket.create_connection(("127.0.0.1", server.port), timeout=HANG) as sock:
        sock.sendall(head(5000) + b'{"messages":[')  # and then nothing
        assert_still_serves(client)
        status, _, resp_body = split_response(read_until_closed(sock))
    assert status == 408
    assert json.loads(resp_body)["error"] == "Request Timeout"
    mock.reset()
    assert_still_serves(client)
    assert len(mock.requests()) == 1


def test_a_stalled_body_without_reqtimeout_ends_at_timeout(own_httpd, mock):
    # no mod_reqtimeout: the core Timeout alone bounds a read that never comes
    server, client = own_httpd("Timeout 2\n" + proxy_location(mock))
    with socket.create_connection(("127.0.0.1", server.port), timeout=HANG) as sock:
        sock.sendall(head(100) + b'{"mess')
        status, _, resp_body = split_response(read_until_closed(sock))
    assert status == 408
    assert json.loads(resp_body)["error"] == "Request Timeout"
    assert mock.requests() == []
    assert_still_serves(client)


def test_headers_trickled_byte_by_byte_are_cut_before_the_handler(guarded, mock):
    server, client = guarded
    payload = (b"POST /v1 HTTP/1.1\r\nHost: a.test\r\n" +
               b"".join(b"X-Slow-%d: %s\r\n" % (i, b"y" * 40) for i in range(40)))
    raw = answer_to_slow_sender(server, client, mock, payload)
    # httpd answers 408 itself (or just closes): never the module, never upstream
    status, _, _ = split_response(raw)
    assert status in (None, 408)
    assert mock.requests() == []
    assert_still_serves(client)


# -- injection through request fields ----------------------------------------

INJECTIONS = [
    "gpt-4o\r\nX-Injected: yes",
    "gpt-4o\nX-Injected: yes",
    'gpt-4o" injected="yes',
    "gpt-4o\u001b[31mRED\u001b[0m",
    "gpt-4o\u0007\u0008\u007f",
    "gpt-4o\\x0d\\x0a",
]


def assert_no_raw_control_bytes(data):
    """No control byte other than line ends, and no injected line (the error
    log's format has no quoted fields: a quote there is harmless)."""
    assert not re.search(rb"[\x00-\x08\x0b-\x1f\x7f]", data.replace(b"\r\n", b"\n"))
    assert not re.search(rb"(^|\n)X-Injected", data)


def assert_no_raw_injection(data):
    """As above, and no quote that would end a quoted access log field."""
    assert_no_raw_control_bytes(data)
    assert b'injected="yes' not in data


@pytest.mark.parametrize("value", INJECTIONS)
def test_injection_through_model_and_user_stays_escaped(client, mock, httpd, value):
    error_log_size = os.path.getsize(httpd.error_log)
    for path in ("/v1", "/models"):  # forwarded; refused by the allow-list
        marker = uuid.uuid4().hex
        resp = client.post(f"{path}?t={marker}",
                           {"messages": MESSAGES, "model": value, "user": value})
        assert resp.status == (200 if path == "/v1" else 400)
        for name, header_value in resp.headers:
            assert "Injected" not in name + header_value
            assert "yes" not in header_value
        if path == "/models":
            # the error body names the model, JSON-escaped
            assert resp.json()["message"] == f"The model {value} is not available here"
        line = log_line(os.path.join(httpd.workdir, "usage.log"), marker)
        assert line.count(b"\n") == 1 and line.endswith(b"\n")
        assert_no_raw_injection(line[:-1])
        # mod_log_config escapes the module's note; it is there, escaped
        model_field = line.split(b" model=", 1)[1].split(b" stream=", 1)[0]
        assert model_field.startswith(b"gpt-4o")
        assert len(model_field) > len(b"gpt-4o")
    # the upstream got the values exactly, in the JSON body, not in headers
    record = mock.requests()[-1]
    assert record["body"]["model"] == value and record["body"]["user"] == value
    assert not any("Injected" in k or "yes" in v for k, v in record["headers"].items())
    with open(httpd.error_log, "rb") as f:
        f.seek(error_log_size)
        assert_no_raw_control_bytes(f.read())
    with open(httpd.access_log, "rb") as f:
        assert_no_raw_injection(f.read())


@pytest.mark.parametrize("origin,status", [
    # httpd's strict header parsing refuses control bytes before any module
    (b"https://evil.example\x1b[2J\x07", 400),
    # quotes and backslashes pass httpd; the module refuses the origin
    (b'https://evil.example" injected="yes\\', 403),
])
def test_odd_bytes_in_the_origin_header_stay_escaped(client, mock, httpd, origin, status):
    error_log_size = os.path.getsize(httpd.error_log)
    got, headers, body = post_raw(httpd.port, json.dumps({"messages": MESSAGES}).encode(),
                                  extra=b"Origin: " + origin + b"\r\n")
    assert got == status
    if status == 403:
        assert json.loads(body)["error"] == "Origin Not Allowed"
    assert_no_raw_injection(body)
    assert not any("evil" in h for h in headers)
    with open(httpd.error_log, "rb") as f:
        f.seek(error_log_size)
        assert_no_raw_control_bytes(f.read())
    assert mock.requests() == []
    assert_still_serves(client)


# -- bodies the parser must refuse -------------------------------------------

REFUSED = [
    # invalid UTF-8 in strings: a lone continuation byte, an overlong "/",
    # an encoded surrogate, a truncated sequence, a code point above U+10FFFF
    ("bad utf-8 ff", b'{"messages":[{"role":"user","content":"\xff"}]}'),
    ("bad utf-8 overlong", b'{"messages":[{"role":"user","content":"\xc0\xaf"}]}'),
    ("bad utf-8 surrogate", b'{"messages":[{"role":"user","content":"\xed\xa0\x80"}]}'),
    ("bad utf-8 truncated", b'{"messages":[{"role":"user","content":"\xe2\x82"}]}'),
    ("bad utf-8 in model", b'{"messages":[],"model":"gpt\xf5\x80\x80\x80"}'),
    ("bad utf-8 in key", b'{"messages":[],"\x80":1}'),
    # deep nesting: a stack overflow in a recursive parser would kill the child
    ("100k [", b"[" * 100000),
    ("100k [ in messages", b'{"messages":' + b"[" * 100000 + b"]" * 100000 + b"}"),
    ("100k objects", b'{"a":' * 100000 + b"1" + b"}" * 100000),
    # NUL bytes
    ("NUL inside a string", b'{"messages":[{"role":"user","content":"a\x00b"}]}'),
    ("NUL escape", b'{"messages":[{"role":"user","content":"a\\u0000b"}]}'),
    ("NUL before the body", b'\x00{"messages":[]}'),
    ("NUL after the body", b'{"messages":[]}\x00'),
    ("only NUL", b"\x00"),
    # duplicate keys
    ("duplicate model", b'{"messages":[],"model":"a","model":"b"}'),
    ("duplicate nested", b'{"messages":[{"role":"user","role":"system","content":"x"}]}'),
    # numbers that do not fit
    ("max_tokens 1e999", b'{"messages":[],"max_tokens":1e999}'),
    ("temperature -1e999", b'{"messages":[],"temperature":-1e999}'),
    ("huge integer", b'{"messages":[],"max_tokens":123456789012345678901234567890}'),
]


@pytest.mark.parametrize("name,body", REFUSED, ids=[r[0] for r in REFUSED])
def test_bodies_the_parser_refuses_are_400_json(httpd, mock, client, name, body):
    status, headers, resp_body = post_raw(httpd.port, body)
    assert status == 400, name
    assert "Content-Type: application/json" in headers
    err = json.loads(resp_body)
    assert err["error"] == "Invalid JSON", err
    assert "not valid JSON" in err["message"]
    assert_no_raw_injection(resp_body)
    assert mock.requests() == []
    assert_still_serves(client)


@pytest.mark.parametrize("body,kind", [
    (b"42", "a number"), (b"true", "a boolean"), (b'"{\\"messages\\":[]}"', "a string"),
    (b"[" + b'{"role":"user","content":"hi"},' * 1000 + b"{}]", "an array"),
])
def test_a_body_that_is_not_an_object_is_400(httpd, mock, client, body, kind):
    status, _, resp_body = post_raw(httpd.port, body)
    assert status == 400
    assert json.loads(resp_body) == {
        "error": "Invalid request",
        "message": f"The request body must be a JSON object, not {kind}"}
    assert mock.requests() == []
    assert_still_serves(client)


def test_tiny_and_huge_numbers_that_parse_are_forwarded(client, mock):
    resp = client.post("/v1", '{"messages":[],"temperature":1e-999,"top_p":1e308}',
                       headers={"Content-Type": "application/json"})
    assert resp.status == 200
    forwarded = mock.requests()[-1]["body"]
    assert forwarded["temperature"] == 0 and forwarded["top_p"] == 1e308
    # a token limit must be a whole number: 1e308 is no limit a lenient
    # upstream should be left to read (issue 9)
    resp = client.post("/v1", '{"messages":[],"max_tokens":1e308}',
                       headers={"Content-Type": "application/json"})
    assert resp.status == 400 and "max_tokens" in resp.json()["message"]


def test_a_huge_max_tokens_is_capped(client, mock):
    resp = client.post("/capped", '{"messages":[],"max_tokens":9223372036854775807,'
                       '"max_completion_tokens":9223372036854775807}',
                       headers={"Content-Type": "application/json"})
    assert resp.status == 200
    forwarded = mock.requests()[-1]["body"]
    assert forwarded["max_tokens"] == 64 and forwarded["max_completion_tokens"] == 64


# -- huge numbers of messages --------------------------------------------------

TINY = b'{"role":"user","content":"m"},'


def many_messages(n):
    return b'{"messages":[' + TINY * (n - 1) + TINY[:-1] + b"]}"


def test_200k_tiny_messages_within_the_limit_are_forwarded(httpd, mock, client):
    body = many_messages(200000)
    assert len(body) < 8 * 1024 * 1024
    status, _, resp_body = post_raw(httpd.port, body)
    assert status == 200
    assert json.loads(resp_body)["object"] == "chat.completion"
    assert len(mock.requests()[-1]["body"]["messages"]) == 200000
    assert_still_serves(client)


def test_300k_tiny_messages_above_the_limit_are_413(httpd, mock, client):
    body = many_messages(300000)
    assert len(body) > 8 * 1024 * 1024
    status, _, resp_body = post_raw(httpd.port, body)
    assert status == 413
    assert json.loads(resp_body)["error"] == "Request Entity Too Large"
    assert mock.requests() == []
    assert_still_serves(client)


def test_200k_tiny_messages_streamed_without_length_are_413_on_a_small_location(
        httpd, mock, client):
    body = many_messages(200000)
    with socket.create_connection(("127.0.0.1", httpd.port), timeout=HANG) as sock:
        sock.sendall(b"POST /small HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n"
                     b"Content-Type: application/json\r\n\r\n")
        try:
            for i in range(0, len(body), 65536):
                piece = body[i:i + 65536]
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # httpd may close once it answered 413
        status, _, resp_body = split_response(read_until_closed(sock))
    assert status == 413
    assert json.loads(resp_body)["error"] == "Request Entity Too Large"
    assert mock.requests() == []
    assert_still_serves(client)


def test_a_body_cut_short_by_the_client_is_400_and_never_forwarded(httpd, mock, client):
    with socket.create_connection(("127.0.0.1", httpd.port), timeout=HANG) as sock:
        sock.sendall(head(5000) + b'{"messages":[')
        sock.shutdown(socket.SHUT_WR)  # the client promised 5000 bytes, sent 13
        status, _, resp_body = split_response(read_until_closed(sock))
    assert status == 400
    assert json.loads(resp_body) == {"error": "Bad Request",
                                     "message": "The request body could not be read"}
    assert mock.requests() == []
    assert_still_serves(client)
