"""Upstream response headers that are no valid header value (a CR, a NUL, an
obs-fold continuation, a 16 KiB value) never become httpd's HTML 500
without CORS headers: a header the proxy passes on is dropped, a bad
Content-Type is a JSON 502, both with the CORS headers, whole or streamed.

The mock writes raw_headers as given; libcurl splits header lines at LF, so
a LF in a value arrives as a line of its own (the LF cases check that such
a line never becomes a header of the answer)."""

import pytest

from harness import (MESSAGES, after_a_keep_alive, proxy_location, silent_upstream, sse_data_lines,
                     sse_error_event)

ORIGIN = "https://app.example.com"
PROBE = "x-ratelimit-probe"  # a name the proxy passes on (x-ratelimit-*)

BAD_VALUES = {
    "cr": ["1\rX-Injected: yes"],
    "obs_fold": ["1\r\n\tX-Injected: yes"],
    "long": ["x" * 16384],
    "ctl": ["1\x1b[31m"],
}


def post(client, raw_headers, stream=False, **mock):
    return client.post("/v1", {"messages": MESSAGES, "stream": stream,
                               "mock": dict(mock, raw_headers=raw_headers)},
                       headers={"Origin": ORIGIN}, stream=stream)


def assert_cors(resp):
    assert resp.header("Access-Control-Allow-Origin") == ORIGIN
    assert resp.header("Vary") and "Origin" in resp.header("Vary")


def test_a_valid_passed_header_is_relayed(client, mock):
    """The control: the probe's name is one the proxy passes on."""
    resp = post(client, [[PROBE, "42"]])
    assert resp.status == 200
    assert resp.header(PROBE) == "42"


# what the SDKs' retries read of an answer (openai, the Vercel AI SDK:
# retry-after-ms before Retry-After; openai: x-should-retry over the status)
RETRY_HINTS = [["retry-after-ms", "250"], ["retry-after", "1"], ["x-should-retry", "true"]]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("status", [429, 200])
def test_the_retry_hints_reach_the_client_and_its_page(client, mock, stream, status):
    directives = {"status": status} if status != 200 else {}
    resp = post(client, RETRY_HINTS, stream=stream, **directives)
    assert resp.status == status
    for name, value in RETRY_HINTS:
        assert resp.header(name) == value, name
    assert_cors(resp)
    exposed = [h.strip() for h in resp.header("Access-Control-Expose-Headers").split(",")]
    assert {"retry-after", "retry-after-ms", "x-should-retry"} <= set(exposed), exposed
    # look-alikes are other headers: not passed
    resp = post(client, [["retry-after-msx", "1"], ["x-should-retry-after", "1"]])
    assert resp.header("retry-after-msx") is None
    assert resp.header("x-should-retry-after") is None


@pytest.mark.parametrize("case", list(BAD_VALUES))
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_bad_passed_header_is_dropped(client, mock, case, stream):
    resp = post(client, [[PROBE, *BAD_VALUES[case]]], stream=stream)
    assert resp.status == 200, resp.text[:300]
    assert_cors(resp)
    assert resp.header(PROBE) is None, "relayed cut short or with a control byte"
    assert resp.header("X-Injected") is None
    assert resp.header("x-request-id").startswith("req_")  # the valid ones still pass
    if stream:
        assert resp.header("Content-Type").startswith("text/event-stream")
        assert sse_data_lines(resp.body)[-1] == "[DONE]"
    else:
        assert resp.json()["object"] == "chat.completion"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_header_line_after_a_lf_is_not_a_header_of_the_answer(client, mock, stream):
    resp = post(client, [[PROBE, "1\nX-Injected: yes"]], stream=stream)
    assert resp.status == 200
    assert_cors(resp)
    assert resp.header("X-Injected") is None
    assert resp.header(PROBE) == "1"


def test_a_bad_header_of_an_error_answer_is_dropped(client, mock):
    resp = post(client, [[PROBE, *BAD_VALUES["cr"]]], status=429)
    assert resp.status == 429
    assert_cors(resp)
    assert resp.header(PROBE) is None
    assert resp.json()["error"]["code"] == "rate_limit_exceeded"


def test_a_bad_header_name_is_dropped(client, mock):
    resp = post(client, [["x-ratelimit-a b", "1"], ["x-ratelimit-\x01", "1"]])
    assert resp.status == 200
    assert_cors(resp)
    assert not [k for k, _ in resp.headers if k.lower().startswith("x-ratelimit-a")]


BAD_CONTENT_TYPES = {
    "cr": {"content_type": "application/json\rX-Injected: yes"},
    "obs_fold": {"content_type": "application/json;\r\n charset=utf-8"},
    "long": {"content_type": "application/json; x=" + "y" * 16384},
}


@pytest.mark.parametrize("case", list(BAD_CONTENT_TYPES))
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_bad_content_type_is_a_json_502(client, mock, error_log, case, stream):
    error_log.allow("upstream request failed")
    resp = client.post("/v1", {"messages": MESSAGES, "stream": stream,
                               "mock": BAD_CONTENT_TYPES[case]},
                       headers={"Origin": ORIGIN})
    assert resp.status == 502, resp.text[:300]
    assert_cors(resp)
    assert resp.header("Content-Type") == "application/json"
    assert resp.json()["error"] == "Bad Gateway"
    assert "Content-Type" in resp.json()["message"]


# The mock decodes \\x00 ("escaped": a JSON request body holds no NUL). This
# libcurl (7.88) refuses a NUL in a header line itself; the module's own
# check drops it where another libcurl passes it on.
NUL_HEADERS = {
    "passed": [[PROBE, "1\\x00X-Injected: yes", "escaped"]],
    # the mock's own Content-Type first, then this one
    "content_type": [["Content-Type", "application/json\\x00; x=1", "escaped"]],
}


@pytest.mark.parametrize("case", list(NUL_HEADERS))
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_nul_in_a_header_is_a_json_502_or_dropped(client, mock, error_log, case, stream):
    error_log.allow("upstream request failed")
    resp = post(client, NUL_HEADERS[case], stream=stream)
    assert_cors(resp)
    assert resp.header(PROBE) is None
    assert resp.header("X-Injected") is None
    if resp.status == 502:
        assert resp.header("Content-Type") == "application/json"
        assert resp.json()["error"] == "Bad Gateway"
    else:
        assert case == "passed" and resp.status == 200


def test_a_bad_content_type_after_heartbeats_is_an_sse_error_event(own_httpd, mock,
                                                                   error_log):
    error_log.allow("upstream request failed")
    _, client = own_httpd(proxy_location(mock, f"OpenAIProxyAllowOrigin {ORIGIN}",
                                         "OpenAIProxyHeartbeat 1"))
    # the upstream answers once a keep-alive reached the client
    resp = silent_upstream(client, mock, {"delay_headers": 1, **BAD_CONTENT_TYPES["cr"]},
                           after_a_keep_alive, headers={"Origin": ORIGIN})
    assert resp.status == 200  # committed by the heartbeats
    assert_cors(resp)
    error = sse_error_event(resp.text)["error"]
    assert error["code"] == "upstream_invalid_response"
    assert "Content-Type" in error["message"]
