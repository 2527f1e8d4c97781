"""Several backends (README "Several backends"): OpenAIProxyBackend,
OpenAIProxyRoute, OpenAIProxyBalance, OpenAIProxyFailover,
OpenAIProxyCooldown and OpenAIProxyModelAlias against three mock upstreams
on loopback, each a backend with its own key, auth and query. Failover
before anything reached the client, never after; cooldowns every process
sees; weighted and least-busy choices; model routing and aliases; the
config errors apachectl -t names; every backend's key kept from clients,
other backends and logs (conftest.py scans for BACKEND_KEYS)."""

import math
import os
import threading
import time
import uuid

import pytest

from harness import (BACKEND_KEYS, MESSAGES, REPO, STATUS_LOCATION, MockUpstream, config_test,
                     log_line, openai_error, parallel_posts, reserve_dead_port, sse_data_lines,
                     sse_error_event, usage_fields, wait_for)
from valgrind import not_under_valgrind

NAMES = ("alpha", "bravo", "charlie")
KEY_A, KEY_B, KEY_C = BACKEND_KEYS
FAILOVER_LINE = "goes to backend"


@pytest.fixture(scope="module")
def trio(workdir):
    """Three mock upstreams, one per backend."""
    mocks = [MockUpstream(workdir, name=f"backend-{name}").start() for name in NAMES]
    yield mocks
    for m in mocks:
        m.stop()


@pytest.fixture(autouse=True)
def fresh_trio(trio):
    for m in trio:
        m.reset()  # also clears their directives


@pytest.fixture(scope="module")
def key_c_file(workdir):
    path = os.path.join(workdir, "backend-charlie.key")
    with open(path, "w") as f:
        f.write(KEY_C + "\n")
    return path


@pytest.fixture(scope="module")
def dead():
    sock, port = reserve_dead_port()
    yield f"http://127.0.0.1:{port}/v1"
    sock.close()


def backend_lines(trio, key_c_file, options=("", "", ""), dead_url=None):
    """alpha: bearer key; bravo: Azure style (api-key header, api-version
    query, key from the environment); charlie: key from a file; "dead": a
    port that refuses connections, when given."""
    a, b, c = trio
    lines = [
        f"OpenAIProxyBackend alpha {a.api} key={KEY_A} {options[0]}",
        f"OpenAIProxyBackend bravo {b.api} key=env:OAIP_BACKEND_B_KEY auth=header:api-key "
        f"query=api-version=2024-10-21 {options[1]}",
        f"OpenAIProxyBackend charlie {c.api} key=file:{key_c_file} {options[2]}",
    ]
    if dead_url:
        lines.append(f"OpenAIProxyBackend dead {dead_url} key={KEY_A}")
        lines.append(f"OpenAIProxyBackend dead2 {dead_url} key={KEY_C}")
    return "\n".join(lines) + "\n"


def location(*directives, path="/v1"):
    return (f"<Location {path}>\n  SetHandler openai-proxy\n"
            + "".join(f"  {d}\n" for d in directives) + "</Location>\n")


def usage_log(httpd):
    return os.path.join(httpd.workdir, f"{httpd.name}-usage.log")


def start(own_httpd, trio, key_c_file, *directives, options=("", "", ""), dead_url=None,
          mpm="event", extra=""):
    """An httpd with the three backends (and the dead ones), /v1 with
    `directives`, the status page and the usage log."""
    def body(httpd):
        return (f"Include {REPO}/conf/openai_proxy_log.conf\n"
                f'CustomLog "{usage_log(httpd)}" openai_proxy\n'
                + backend_lines(trio, key_c_file, options, dead_url)
                + location(*directives) + STATUS_LOCATION + extra)
    return own_httpd(body, mpm=mpm, env={"OAIP_BACKEND_B_KEY": KEY_B})


def chat(model="gpt-4o-mini", stream=False, **fields):
    body = dict({"model": model, "messages": MESSAGES}, **fields)
    if stream:
        body["stream"] = True
    return body


def post(client, body=None, **kw):
    """A POST to /v1 with a marker in its query: (response, marker)."""
    marker = uuid.uuid4().hex
    return client.post(f"/v1/chat/completions?t={marker}", body or chat(), **kw), marker


def logged(httpd, marker):
    return usage_fields(log_line(usage_log(httpd), marker).decode())


def counts(trio):
    return [len(m.requests()) for m in trio]


def backends_status(client, total=None):
    """The status page's backends by name, once `total` requests settled."""
    def read():
        doc = client.request("GET", "/proxy-status").json()
        return doc if total is None or doc["requests"]["total"] >= total else None
    doc = wait_for(read, 30, f"{total} requests settled")
    return {b["name"]: b for b in doc["backends"]}


def auth_of(record):
    return record["headers"].get("authorization"), record["headers"].get("api-key")


# -- failover --------------------------------------------------------------------

def test_failover_on_connect_refused(own_httpd, trio, key_c_file, dead, error_log):
    error_log.allow("upstream request failed")
    httpd, client = start(own_httpd, trio, key_c_file, "OpenAIProxyRoute dead alpha bravo",
                          dead_url=dead)
    resp, marker = post(client)
    assert resp.status == 200, resp.text
    assert resp.json()["object"] == "chat.completion"
    assert counts(trio) == [1, 0, 0]
    assert auth_of(trio[0].requests()[0]) == (f"Bearer {KEY_A}", None)
    fields = logged(httpd, marker)
    assert fields["backend"] == "alpha" and fields["attempts"] == "2"
    status = backends_status(client, 1)
    assert status["dead"]["failures"]["connect"] == 1
    assert status["dead"]["cooling_down_until"] is not None
    assert status["alpha"]["answered"] == 1 and status["alpha"]["in_flight"] == 0
    # dead cools down: the next request goes straight to alpha
    resp, marker = post(client)
    assert resp.status == 200 and logged(httpd, marker)["attempts"] == "1"
    assert backends_status(client, 2)["dead"]["requests"] == 1


@not_under_valgrind("every process of the server must skip the backend; valgrind runs "
                    "apache2 -X (one)")
@pytest.mark.parametrize("mpm", ["prefork", "event"])
def test_429_with_retry_after_is_skipped_by_every_process(own_httpd, trio, key_c_file, mpm):
    alpha, bravo, _ = trio
    # Retry-After (120 s) is longer than the cooldown (1 s): it wins
    alpha.set_directives(status=429, raw_headers=[["Retry-After", "120"]])
    httpd, client = start(own_httpd, trio, key_c_file, "OpenAIProxyRoute alpha bravo",
                          "OpenAIProxyCooldown 1", mpm=mpm)
    resp, marker = post(client)
    assert resp.status == 200, resp.text
    assert logged(httpd, marker)["backend"] == "bravo"
    assert counts(trio)[:2] == [1, 1]
    before = time.time()
    # many connections at once: prefork serves them in several processes,
    # event in several threads of more than one child
    answers = parallel_posts(client, "/v1", 40, chat(), workers=20)
    assert [r.status for r in answers] == [200] * 40
    assert counts(trio)[:2] == [1, 41]  # alpha was skipped by every process
    status = backends_status(client, 41)
    assert status["alpha"]["failures"]["rate_limited"] == 1
    assert status["alpha"]["cooling_down_until"] >= before + 60
    assert status["bravo"]["answered"] == 41
    if mpm == "prefork":
        assert len(httpd.children()) >= 2


def test_failover_on_503_and_the_client_sees_only_the_answer(own_httpd, trio, key_c_file):
    trio[0].set_directives(status=503)
    httpd, client = start(own_httpd, trio, key_c_file, "OpenAIProxyRoute alpha charlie")
    resp, marker = post(client)
    assert resp.status == 200
    assert logged(httpd, marker)["backend"] == "charlie"
    assert auth_of(trio[2].requests()[0]) == (f"Bearer {KEY_C}", None)
    assert any(FAILOVER_LINE in line for line in httpd.new_log_lines())


@pytest.mark.parametrize("status", [400, 401, 404])
def test_no_failover_on_client_errors(own_httpd, trio, key_c_file, status):
    trio[0].set_directives(status=status)
    httpd, client = start(own_httpd, trio, key_c_file, "OpenAIProxyRoute alpha bravo")
    resp, marker = post(client)
    assert resp.status == status
    assert "error" in resp.json()
    assert counts(trio)[:2] == [1, 0]
    assert logged(httpd, marker)["backend"] == "alpha"


def test_a_failover_statuses_list_of_its_own(own_httpd, trio, key_c_file):
    trio[0].set_directives(status=404)
    trio[1].set_directives(status=503)
    httpd, client = start(own_httpd, trio, key_c_file, "OpenAIProxyRoute alpha bravo charlie",
                          "OpenAIProxyFailover 404")
    resp, marker = post(client)
    # 404 moves on; bravo's 503 is not listed here: the client gets it
    assert resp.status == 503
    assert counts(trio) == [1, 1, 0]
    assert logged(httpd, marker)["backend"] == "bravo"


def test_a_stream_that_fails_before_its_first_byte_moves_on(own_httpd, trio, key_c_file):
    trio[0].set_directives(status=500)
    httpd, client = start(own_httpd, trio, key_c_file, "OpenAIProxyRoute alpha bravo")
    resp, marker = post(client, chat(stream=True, mock={"chunks": 3}), stream=True)
    assert resp.status == 200
    data = sse_data_lines(resp.body)
    assert data[-1] == "[DONE]" and "error" not in resp.text
    assert counts(trio)[:2] == [1, 1]
    assert logged(httpd, marker)["backend"] == "bravo"


def test_a_first_byte_timeout_moves_on_when_listed(own_httpd, trio, key_c_file, error_log):
    error_log.allow("upstream request failed")
    # alpha holds its answer until a gate that no one opens
    trio[0].set_directives(delay_headers=30, gate="never", gate_timeout=30)
    httpd, client = start(own_httpd, trio, key_c_file, "OpenAIProxyRoute alpha bravo",
                          "OpenAIProxyFirstByteTimeout 300ms",
                          "OpenAIProxyFailover connect timeout 429 500 502 503 504")
    resp, marker = post(client, chat(stream=True))
    assert resp.status == 200 and sse_data_lines(resp.body)[-1] == "[DONE]"
    assert logged(httpd, marker)["backend"] == "bravo"
    assert backends_status(client, 1)["alpha"]["failures"]["timeout"] == 1
    assert trio[0].last_finished()["outcome"] == "client_gone"


def test_a_first_byte_timeout_is_not_resent_unless_listed(own_httpd, trio, key_c_file,
                                                          error_log):
    error_log.allow("upstream request failed")
    trio[0].set_directives(delay_headers=30, gate="never", gate_timeout=30)
    httpd, client = start(own_httpd, trio, key_c_file, "OpenAIProxyRoute alpha bravo",
                          "OpenAIProxyFirstByteTimeout 300ms")
    resp, marker = post(client)
    assert resp.status == 504
    assert counts(trio)[1] == 0
    assert logged(httpd, marker)["backend"] == "alpha"


def test_a_stream_cut_after_its_first_byte_is_not_resent(own_httpd, trio, key_c_file,
                                                         error_log):
    error_log.allow("upstream request failed")
    trio[0].set_directives(hangup_after=2, chunks=5)
    httpd, client = start(own_httpd, trio, key_c_file, "OpenAIProxyRoute alpha bravo")
    resp, marker = post(client, chat(stream=True), stream=True)
    assert resp.status == 200
    assert len(sse_data_lines(resp.body)) >= 2
    assert "error" in sse_error_event(resp.text)
    assert counts(trio)[:2] == [1, 0]
    assert logged(httpd, marker)["backend"] == "alpha"


def test_all_backends_down(own_httpd, trio, key_c_file, dead, error_log):
    error_log.allow("upstream request failed")
    httpd, client = start(own_httpd, trio, key_c_file, "OpenAIProxyRoute dead dead2",
                          dead_url=dead)
    resp, marker = post(client)
    assert resp.status == 502
    assert openai_error(resp)["code"] == "upstream_unreachable"
    assert logged(httpd, marker)["attempts"] == "2"


def test_all_backends_failing_give_the_last_ones_answer(own_httpd, trio, key_c_file):
    trio[0].set_directives(status=503)
    trio[1].set_directives(status=429, raw_headers=[["Retry-After", "7"]])
    httpd, client = start(own_httpd, trio, key_c_file, "OpenAIProxyRoute alpha bravo")
    resp, marker = post(client)
    assert resp.status == 429
    assert resp.header("retry-after") == "7"
    assert "error" in resp.json()
    fields = logged(httpd, marker)
    assert fields["backend"] == "bravo" and fields["attempts"] == "2"
    # both cool down now: the next request tries them in order anyway
    resp, _ = post(client)
    assert resp.status == 429
    assert counts(trio)[:2] == [2, 2]


# -- balancing -------------------------------------------------------------------

def test_weighted_shares(own_httpd, trio, key_c_file):
    weights = (1, 2, 3)
    httpd, client = start(own_httpd, trio, key_c_file, "OpenAIProxyRoute alpha bravo charlie",
                          "OpenAIProxyBalance weighted",
                          options=tuple(f"weight={w}" for w in weights))
    total = 300
    answers = parallel_posts(client, "/v1", total, chat(), workers=10)
    assert all(r.status == 200 for r in answers)
    got = counts(trio)
    assert sum(got) == total
    for n, w in zip(got, weights):
        p = w / sum(weights)
        sd = math.sqrt(total * p * (1 - p))
        # 4.5 standard deviations: a correct choice fails this once in ~150,000
        # runs; a choice that ignored the weights (100 each) fails it always
        assert abs(n - total * p) <= 4.5 * sd, (got, weights)


def test_least_busy_goes_around_slow_streams(own_httpd, trio, key_c_file):
    alpha, bravo, _ = trio
    httpd, client = start(own_httpd, trio, key_c_file, "OpenAIProxyRoute alpha bravo",
                          "OpenAIProxyBalance least-busy")
    results = []
    slow = threading.Thread(target=lambda: results.append(post(
        client, chat(stream=True, mock={"chunks": 2, "gate": "slow"}), stream=True)))
    slow.start()
    try:
        wait_for(lambda: alpha.stats()["active_streams"] == 1, 15, "the slow stream on alpha")
        assert backends_status(client)["alpha"]["in_flight"] == 1
        for _ in range(3):  # alpha has one in flight, bravo none
            resp, marker = post(client)
            assert resp.status == 200 and logged(httpd, marker)["backend"] == "bravo"
    finally:
        alpha.open_gate("slow", permits=10)
        slow.join(30)
    resp, marker = results[0]
    assert resp.status == 200 and logged(httpd, marker)["backend"] == "alpha"
    assert counts(trio)[:2] == [1, 3]
    status = backends_status(client, 4)
    assert status["alpha"]["in_flight"] == 0 and status["bravo"]["in_flight"] == 0


# -- models ----------------------------------------------------------------------

def test_model_routing(own_httpd, trio, key_c_file):
    httpd, client = start(own_httpd, trio, key_c_file, "OpenAIProxyRoute alpha bravo",
                          options=("models=gpt-4o*", "models=llama-*,qwen-2", ""))
    for model, backend in [("gpt-4o-mini", "alpha"), ("llama-3-8b", "bravo"),
                           ("qwen-2", "bravo")]:
        resp, marker = post(client, chat(model))
        assert resp.status == 200, (model, resp.text)
        assert logged(httpd, marker)["backend"] == backend
    resp, _ = post(client, chat("claude-3"))
    assert resp.status == 400
    assert openai_error(resp)["code"] == "model_not_routed"
    assert counts(trio)[:2] == [1, 2]  # nothing went upstream for it


def test_model_alias(own_httpd, trio, key_c_file):
    httpd, client = start(own_httpd, trio, key_c_file, "OpenAIProxyRoute alpha bravo",
                          "OpenAIProxyModelAlias fast gpt-4o-mini",
                          "OpenAIProxyModelAlias local llama-3-8b",
                          "OpenAIProxyAllowModels fast local",
                          options=("models=gpt-4o-mini", "models=llama-*", ""))
    resp, marker = post(client, chat("fast"))
    assert resp.status == 200
    assert trio[0].requests()[-1]["body"]["model"] == "gpt-4o-mini"
    assert logged(httpd, marker)["model"] == "gpt-4o-mini"
    resp, _ = post(client, chat("local", stream=True), stream=True)
    assert resp.status == 200
    assert trio[1].requests()[-1]["body"]["model"] == "llama-3-8b"
    # the allow-list names what clients ask for: the target is not one
    resp, _ = post(client, chat("gpt-4o-mini"))
    assert resp.status == 400 and openai_error(resp)["code"] == "model_not_allowed"


def test_model_alias_with_the_single_upstream(own_httpd, trio, key_c_file):
    def body(httpd):
        return location(f"OpenAIProxyUpstream {trio[2].api}", f"OpenAIProxyAPIKey {KEY_C}",
                        "OpenAIProxyModelAlias smart o3", "OpenAIProxyDefault model smart")
    httpd, client = own_httpd(body)
    resp = client.post("/v1", {"messages": MESSAGES})  # the default model, aliased
    assert resp.status == 200
    sent = trio[2].requests()[-1]["body"]
    # the family follows the model that runs: o3 takes max_completion_tokens
    assert sent["model"] == "o3" and "max_tokens" not in sent and "temperature" not in sent


def test_a_take_back_and_a_failover_in_one_request(own_httpd, trio, key_c_file):
    # alpha refuses the proxy's stream_options, then answers 503 without it
    trio[0].set_directives(refuse_stream_options=True)
    httpd, client = start(own_httpd, trio, key_c_file, "OpenAIProxyRoute alpha bravo")
    resp, marker = post(client, chat(stream=True, mock={"chunks": 2}), stream=True)
    assert resp.status == 200 and sse_data_lines(resp.body)[-1] == "[DONE]"
    assert logged(httpd, marker)["backend"] == "alpha"
    assert "stream_options" not in trio[0].requests()[-1]["body"]
    trio[0].set_directives(status=503)
    resp, marker = post(client, chat(stream=True), stream=True)
    assert resp.status == 200 and logged(httpd, marker)["backend"] == "bravo"
    # bravo was never refused anything: it gets the usage chunk asked for
    assert trio[1].requests()[-1]["body"]["stream_options"] == {"include_usage": True}


# -- keys, limits, usage, status -------------------------------------------------

def test_each_backend_gets_its_own_key_auth_and_query(own_httpd, trio, key_c_file):
    for m in trio[:2]:
        m.set_directives(status=503)
    httpd, client = start(own_httpd, trio, key_c_file, "OpenAIProxyRoute alpha bravo charlie",
                          "OpenAIProxyCooldown 0")
    resp, _ = post(client)
    assert resp.status == 200
    a, b, c = (m.requests()[0] for m in trio)
    assert auth_of(a) == (f"Bearer {KEY_A}", None)
    assert auth_of(b) == (None, KEY_B)
    assert b["query"] == {"api-version": "2024-10-21"}
    assert "api-version" not in a["query"]
    assert auth_of(c) == (f"Bearer {KEY_C}", None)
    for record in (a, b, c):  # one backend's key never reaches another
        others = [k for k in BACKEND_KEYS if k not in (auth_of(record)[0] or "")
                  and k != auth_of(record)[1]]
        assert not any(k in repr(record) for k in others)


def test_echoed_keys_of_every_backend_are_masked(own_httpd, trio, key_c_file, dead,
                                                 error_log):
    error_log.allow("upstream request failed")
    trio[1].set_directives(echo_key="full", status=401, echo_key_header="x-echo")
    httpd, client = start(own_httpd, trio, key_c_file, "OpenAIProxyRoute dead bravo",
                          dead_url=dead)
    resp, _ = post(client)
    assert resp.status == 401
    assert KEY_B not in resp.text  # and conftest scans every response and log


def test_limits_count_a_failed_over_request_once(own_httpd, trio, key_c_file):
    trio[0].set_directives(status=503)
    httpd, client = start(own_httpd, trio, key_c_file, "OpenAIProxyRoute alpha bravo",
                          "OpenAIProxyCooldown 0", "OpenAIProxyRateLimit 2/h")
    assert [post(client)[0].status for _ in range(3)] == [200, 200, 429]
    assert counts(trio)[:2] == [2, 2]


def test_max_streams_count_a_failed_over_stream_once(own_httpd, trio, key_c_file):
    trio[0].set_directives(status=503)
    alpha, bravo, _ = trio
    httpd, client = start(own_httpd, trio, key_c_file, "OpenAIProxyRoute alpha bravo",
                          "OpenAIProxyCooldown 0", extra="OpenAIProxyMaxStreams 1\n")
    results = []
    slow = threading.Thread(target=lambda: results.append(post(
        client, chat(stream=True, mock={"chunks": 2, "gate": "held"}), stream=True)))
    slow.start()
    try:
        wait_for(lambda: bravo.stats()["active_streams"] == 1, 15, "the stream on bravo")
        resp, _ = post(client, chat(stream=True), stream=True)
        # one stream is open, not two
        assert resp.status == 503 and openai_error(resp)["code"] == "too_many_streams"
    finally:
        bravo.open_gate("held", permits=10)
        slow.join(30)
    assert results[0][0].status == 200


def test_usage_and_status_of_the_backend_that_answered(own_httpd, trio, key_c_file):
    trio[0].set_directives(status=502)
    httpd, client = start(own_httpd, trio, key_c_file, "OpenAIProxyRoute alpha bravo")
    resp, marker = post(client, chat(messages=[{"role": "user", "content": "one two three"}]))
    assert resp.status == 200
    usage = resp.json()["usage"]
    fields = logged(httpd, marker)
    assert fields["backend"] == "bravo" and fields["attempts"] == "2"
    assert fields["prompt_tokens"] == str(usage["prompt_tokens"])
    status = backends_status(client, 1)
    assert status["alpha"]["failures"]["server_error"] == 1
    assert status["alpha"]["answered"] == 0 and status["alpha"]["requests"] == 1
    assert status["bravo"]["tokens"] == {"prompt": usage["prompt_tokens"],
                                         "completion": usage["completion_tokens"]}
    text = client.request("GET", "/proxy-status?format=prometheus").text
    assert ('openai_proxy_backend_failures_total{backend="alpha",server="127.0.0.1:'
            in text)
    assert 'cause="server_error"} 1' in text
    assert f'openai_proxy_backend_tokens_total{{backend="bravo",server=' in text
    assert "openai_proxy_backend_in_flight{" in text


def test_a_virtual_host_sees_the_main_servers_backends_and_its_own(own_httpd, trio,
                                                                   key_c_file):
    def body(httpd):
        return (backend_lines(trio, key_c_file)
                + "<VirtualHost 127.0.0.1:*>\n  ServerName plain.test\n"
                + location("OpenAIProxyRoute alpha bravo") + "</VirtualHost>\n"
                + "<VirtualHost 127.0.0.1:*>\n  ServerName own.test\n"
                f"  OpenAIProxyBackend alpha {trio[2].api} key={KEY_C}\n"
                + location("OpenAIProxyRoute alpha bravo") + "</VirtualHost>\n")
    httpd, client = own_httpd(body, env={"OAIP_BACKEND_B_KEY": KEY_B})
    assert client.post("/v1", chat()).status == 200
    assert counts(trio) == [1, 0, 0]
    trio[0].reset()
    assert client.post("/v1", chat(), host="own.test").status == 200
    assert counts(trio) == [0, 0, 1]  # its own alpha is charlie's mock


# -- the configuration -----------------------------------------------------------

def configtest(workdir, trio, key_c_file, text):
    return config_test(workdir, backend_lines(trio, key_c_file) + text,
                       env={"OAIP_BACKEND_B_KEY": KEY_B})


@pytest.mark.parametrize("text,message", [
    (location("OpenAIProxyRoute alpha nowhere"), "OpenAIProxyRoute names nowhere"),
    ("OpenAIProxyBackend alpha http://127.0.0.1:1/v1\n", "already defined"),
    ("OpenAIProxyBackend x ftp://h/v1\n", "is not an http:// or https:// URL"),
    ("OpenAIProxyBackend x http://h/v1 colour=blue\n", "unknown option 'colour'"),
    ("OpenAIProxyBackend x http://h/v1 key\n", "'key' is not an option"),
    ("OpenAIProxyBackend x http://h/v1 key=file:/nonexistent/key\n", "cannot read key file"),
    ("OpenAIProxyBackend x http://h/v1 key=env:OAIP_NOT_SET_ANYWHERE\n", "is not set"),
    ("OpenAIProxyBackend x http://h/v1 weight=0\n", "weight=0 is not a whole number"),
    ("OpenAIProxyBackend x http://h/v1 auth=header:Host\n", "is not bearer or header:NAME"),
    ("OpenAIProxyBackend x http://h/v1 models=a*b\n", "'*' may only end"),
    ("OpenAIProxyBackend x http://h/v1 query=noequals\n", "noequals"),
    ("OpenAIProxyBackend bad/name http://h/v1\n", "is not a backend name"),
    ("OpenAIProxyBackend x\n", "takes a NAME, a URL"),
    (location("OpenAIProxyBackend y http://h/v1"), "not allowed"),
    (location("OpenAIProxyRoute alpha alpha"), "named twice"),
    (location("OpenAIProxyBalance random"), "not one of failover, weighted, least-busy"),
    (location("OpenAIProxyFailover 200"), "is not connect, timeout, a status"),
    (location("OpenAIProxyFailover none 429"), "none alone"),
    (location("OpenAIProxyCooldown soon"), "is not a time"),
    (location("OpenAIProxyModelAlias a*b c"), "without '*'"),
])
def test_config_errors(workdir, trio, key_c_file, text, message):
    result = configtest(workdir, trio, key_c_file, text)
    assert result.returncode != 0
    assert message in result.stderr + result.stdout, result.stderr
    for key in BACKEND_KEYS:
        assert key not in result.stderr + result.stdout


def test_an_unknown_backend_is_named_with_its_file_and_line(workdir, trio, key_c_file):
    text = "\n" + location("OpenAIProxyRoute alpha nowhere")
    result = configtest(workdir, trio, key_c_file, text)
    out = result.stderr + result.stdout
    conf = os.path.join(workdir, "configtest.conf")
    lines = open(conf).read().splitlines()
    line = next(i for i, l in enumerate(lines, 1) if "OpenAIProxyRoute alpha nowhere" in l)
    assert f"{conf} line {line}: OpenAIProxyRoute names nowhere" in out, out


def test_a_valid_configuration(workdir, trio, key_c_file):
    result = configtest(workdir, trio, key_c_file, location(
        "OpenAIProxyRoute alpha bravo charlie", "OpenAIProxyBalance weighted",
        "OpenAIProxyFailover connect timeout 429 500 502 503 504", "OpenAIProxyCooldown 2min",
        "OpenAIProxyModelAlias fast gpt-4o-mini"))
    assert result.returncode == 0, result.stderr


# -- a real client ---------------------------------------------------------------

def test_the_openai_sdk_sees_clean_answers_through_a_failover(own_httpd, trio, key_c_file,
                                                              responses, tmp_path):
    from node_deps import install_locked, require_node_version, run_node_test_file
    from test_sdk import NODE_DIR, PINNED_NODE, PINNED_PACKAGES, SDK_NODE_MAJOR, require_tool
    install_locked(NODE_DIR, PINNED_PACKAGES, lambda: require_tool("npm"))
    node = PINNED_NODE if os.access(PINNED_NODE, os.X_OK) else require_tool("node")
    require_node_version(node, "the SDK tests", SDK_NODE_MAJOR)
    trio[0].set_directives(status=503, raw_headers=[["Retry-After", "1"]])
    # no cooldown: every request of the SDK meets the failing backend first
    httpd, client = start(own_httpd, trio, key_c_file, "OpenAIProxyRoute alpha bravo",
                          "OpenAIProxyCooldown 0")
    record = str(tmp_path / "sdk-responses.jsonl")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update(OAIP_V1_URL=httpd.url("/v1"), OAIP_SDK_RECORD=record, NO_COLOR="1")
    got = run_node_test_file(node, os.path.join(NODE_DIR, "sdk-failover.mjs"), REPO, env,
                             record, responses, 180, min_tests=3)
    assert got and all(r.status == 200 for r in got)
    assert counts(trio)[:2] == [3, 3]  # each call failed over once
