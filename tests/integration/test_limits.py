"""Rate limits and token budgets: exact counts under parallel load across
httpd processes and threads, callers told apart by IP, user (Basic auth) or
header, per virtual host, budgets charged from plain and streamed answers.
The counter stores of a cluster (redis, memcache) are in test_counter_stores.py."""

import os
import subprocess
import time

import pytest

from harness import (STATUS_LOCATION, TEST_KEY, THREE_TOKEN_MESSAGES, basic_auth,
                     openai_error, parallel_posts, proxy_location, settled)
import valgrind
from valgrind import not_under_valgrind

# A budget's reservation is settled in the log phase, after the client has
# its answer: a client that sends the next request at once can be faster
# than that (it was, under ASan). The status page (STATUS_LOCATION) counts a
# request right after its settlement, so a test that depends on it waits for
# that count (settled).


def hour_window():
    return int(time.time()) // 3600


def assert_rate_limited(resp, limit_text):
    assert resp.status == 429
    assert resp.header("Content-Type") == "application/json"
    body = openai_error(resp)  # /v1/chat/completions: an SDK's path
    assert (body["code"], body["type"]) == ("rate_limit_exceeded", "requests")
    assert f"Rate limit of {limit_text} reached" in body["message"]
    retry = int(resp.header("Retry-After"))
    assert 1 <= retry <= 3600
    # the SDKs retry a 429 after at most 60 s of Retry-After, and after
    # their own short backoff when it says more: a refusal they cannot wait
    # out tells them not to retry
    assert resp.header("x-should-retry") == ("false" if retry > 60 else None)


@not_under_valgrind("counts across several processes; valgrind runs apache2 -X (one)")
@pytest.mark.parametrize("mpm", ["prefork", "event"])
def test_parallel_burst_lets_exactly_n_through(own_httpd, mock, workdir, mpm):
    """60 requests at once over separate connections, served by several
    processes (and threads under event): exactly 20 reach the upstream."""
    pid_log = os.path.join(workdir, f"pids-{mpm}.log")
    config = (f'LogFormat "%P %>s" pids\nCustomLog "{pid_log}" pids\n'
              + proxy_location(mock, "OpenAIProxyRateLimit 20/h by=ip"))
    server, client = own_httpd(config, mpm=mpm)
    # slow answers keep the connections open together, spread over processes
    body = {"messages": THREE_TOKEN_MESSAGES, "mock": {"delay_headers": 0.5}}
    for attempt in range(2):
        window = hour_window()
        mock.reset()
        results = parallel_posts(client, f"/v1/chat/completions?attempt={attempt}", 60, body)
        if hour_window() == window:
            break
        # the hour turned during the burst: the counts span two windows, so
        # run it again within the new one
    statuses = sorted(r.status for r in results)
    assert statuses.count(200) == 20, statuses
    assert statuses.count(429) == 40, statuses
    assert len(mock.requests()) == 20
    for resp in results:
        if resp.status == 429:
            assert_rate_limited(resp, "20/h by=ip")
    served_by = {line.split()[0] for line in open(pid_log) if line.strip()}
    assert len(served_by) > 1, "the burst was served by one process only"


def test_callers_by_basic_auth_user(own_httpd, mock, workdir):
    htpasswd = os.path.join(workdir, "limits.htpasswd")
    subprocess.run(["htpasswd", "-cbB", htpasswd, "alice", "alice-pw"], check=True,
                   capture_output=True)
    subprocess.run(["htpasswd", "-bB", htpasswd, "bob", "bob-pw"], check=True,
                   capture_output=True)
    os.chmod(htpasswd, 0o644)
    server, client = own_httpd(proxy_location(
        mock, *basic_auth(htpasswd), "OpenAIProxyRateLimit 2/h by=user"))
    import base64

    def as_user(name, password):
        token = base64.b64encode(f"{name}:{password}".encode()).decode()
        return client.post("/v1", {"messages": THREE_TOKEN_MESSAGES},
                           headers={"Authorization": f"Basic {token}"})

    assert [as_user("alice", "alice-pw").status for _ in range(3)] == [200, 200, 429]
    # bob is someone else, from the same address
    assert [as_user("bob", "bob-pw").status for _ in range(2)] == [200, 200]
    assert client.post("/v1", {"messages": THREE_TOKEN_MESSAGES}).status == 401  # httpd's own auth
    # the Basic credentials never went upstream
    for record in mock.requests():
        assert record["headers"]["authorization"] == f"Bearer {TEST_KEY}"


def test_callers_by_header_fall_back_to_address(own_httpd, mock):
    server, client = own_httpd(proxy_location(
        mock, "OpenAIProxyRateLimit 2/h by=header:X-Team"))

    def post(team=None):
        return client.post("/v1", {"messages": THREE_TOKEN_MESSAGES},
                           headers={"X-Team": team} if team else {}).status

    assert [post("red"), post("red"), post("red")] == [200, 200, 429]
    assert [post("blue"), post("blue")] == [200, 200]
    # without the header the caller is its address, a counter of its own
    assert [post(), post(), post()] == [200, 200, 429]


def test_limits_per_virtual_host_and_location(own_httpd, mock):
    """The same Location in two virtual hosts counts apart; an inner
    Location can lift the limit with none; preflights are not counted."""
    location = proxy_location(mock, "OpenAIProxyRateLimit 1/h",
                              "OpenAIProxyAllowOrigin https://app.example")
    free = proxy_location(mock, "OpenAIProxyRateLimit none", path="/v1/free")
    server, client = own_httpd(
        f"<VirtualHost 127.0.0.1:*>\n ServerName one.test\n{location}{free}</VirtualHost>\n"
        f"<VirtualHost 127.0.0.1:*>\n ServerName two.test\n{location}</VirtualHost>\n")
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    for _ in range(3):
        assert client.request("OPTIONS", "/v1", host="one.test",
                              headers=preflight).status == 204
    body = {"messages": THREE_TOKEN_MESSAGES}
    assert client.post("/v1", body, host="one.test").status == 200
    refused = client.post("/v1", body, host="one.test",
                          headers={"Origin": "https://app.example"})
    assert refused.status == 429
    # the browser may read the refusal and its Retry-After
    assert refused.header("Access-Control-Allow-Origin") == "https://app.example"
    assert "retry-after" in refused.header("Access-Control-Expose-Headers")
    assert client.post("/v1", body, host="two.test").status == 200
    assert [client.post("/v1/free", body, host="one.test").status for _ in range(3)] \
        == [200, 200, 200]


def test_refusal_in_openai_format_never_reaches_upstream(own_httpd, mock):
    server, client = own_httpd(proxy_location(
        mock, "OpenAIProxyRateLimit 1/h", "OpenAIProxyErrorFormat openai"))
    assert client.post("/v1", {"messages": THREE_TOKEN_MESSAGES}).status == 200
    mock.reset()
    resp = client.post("/v1", {"messages": THREE_TOKEN_MESSAGES, "stream": True})
    assert resp.status == 429
    error = resp.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests"
    assert "Rate limit of 1/h reached" in error["message"]
    assert mock.requests() == []


def test_token_budget_counts_plain_and_streamed_answers(own_httpd, mock):
    """Each answer costs 3 prompt + 7 completion tokens at the mock: with a
    budget of 25, three answers fit (checked before, settled after) and the
    fourth request is refused without reaching the upstream."""
    server, client = own_httpd(proxy_location(
        mock, "OpenAIProxyTokenBudget 25/h") + STATUS_LOCATION)
    body = {"messages": THREE_TOKEN_MESSAGES, "mock": {"chunks": 7}}
    first = client.post("/v1", body)
    assert first.status == 200 and first.json()["usage"]["total_tokens"] == 10
    settled(client, 1)
    streamed = client.post("/v1", dict(body, stream=True), stream=True)
    assert streamed.status == 200
    # the usage chunk the proxy asked for is not shown to this client
    assert b'"usage": {' not in streamed.body and b'"usage":{' not in streamed.body
    settled(client, 2)
    assert client.post("/v1", dict(body, stream=True), stream=True).status == 200
    settled(client, 3)
    mock.reset()
    refused = client.post("/v1", body)
    assert refused.status == 429
    assert refused.json()["error"] == "Too Many Requests"
    assert "Token budget of 25/h is spent" in refused.json()["message"]
    assert 1 <= int(refused.header("Retry-After")) <= 3600
    assert mock.requests() == []


def test_token_budget_with_a_rate_limit_and_suffixes(own_httpd, mock):
    """Both kinds of limit on one Location; a budget in k; a refused
    request is not charged."""
    server, client = own_httpd(proxy_location(
        mock, "OpenAIProxyRateLimit 5/h", "OpenAIProxyTokenBudget 1k/h",
        "OpenAIProxyErrorFormat openai") + STATUS_LOCATION)
    body = {"messages": THREE_TOKEN_MESSAGES, "mock": {"chunks": 400}}
    answers = []
    for n in range(6):
        answers.append(client.post("/v1", body))
        settled(client, n + 1)
    codes = [a.json()["error"]["code"] if a.status != 200 else 200 for a in answers]
    # 403 tokens each: the third request starts with 806 < 1000 spent; the
    # fourth and fifth find the budget spent; the sixth is over the rate
    assert codes == [200, 200, 200, "token_budget_exceeded", "token_budget_exceeded",
                     "rate_limit_exceeded"]
    assert answers[3].json()["error"]["type"] == "tokens"
    assert len(mock.requests()) == 3


def test_client_address_from_mod_remoteip(own_httpd, mock):
    """Behind a trusted front proxy, the caller is the address mod_remoteip
    found in X-Forwarded-For, not the proxy's."""
    server, client = own_httpd(
        "RemoteIPHeader X-Forwarded-For\nRemoteIPInternalProxy 127.0.0.1\n"
        + proxy_location(mock, "OpenAIProxyRateLimit 1/h by=ip"),
        modules=["remoteip"])

    def post(address):
        return client.post("/v1", {"messages": THREE_TOKEN_MESSAGES},
                           headers={"X-Forwarded-For": address}).status

    assert [post("203.0.113.5"), post("203.0.113.5"), post("203.0.113.6")] == [200, 429, 200]


def test_graceful_restarts_between_limit_settings(own_httpd, mock):
    """A graceful restart keeps the shm counter table (README, "Graceful
    restarts and key rotation"): a generation without limits counts
    nothing, and when the limit comes back the caller's count carries on
    where it was, so a reload never hands out a fresh quota. Each restart
    returns once the old generation's children are gone (under valgrind's
    one process it is a stop and a start, which starts afresh). The window
    is 366 days, so that no window boundary falls within the test."""
    limited = proxy_location(mock, "OpenAIProxyRateLimit 1/366d")
    server, client = own_httpd(limited)

    def statuses(n):
        return [client.post("/v1", {"messages": THREE_TOKEN_MESSAGES}).status for _ in range(n)]

    assert statuses(2) == [200, 429]
    server.graceful_restart(proxy_location(mock))
    assert statuses(3) == [200, 200, 200]
    server.graceful_restart(limited)
    assert statuses(2) == ([200, 429] if valgrind.ENABLED else [429, 429])
