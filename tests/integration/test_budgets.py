"""Token budgets that hold: reservations of each request's worst case under
parallel load, settled to the real usage (a negative step in every store),
released after refusals and errors; streams charged for what was generated
when their usage chunk never comes (the client left, the upstream ignores
stream_options), and answers without usage estimated.

The mock counts 3 prompt tokens for THREE_TOKEN_MESSAGES and one completion
token per chunk; it ignores max_tokens, so each test asks for at most the cap."""

import json
import os
import socket

import pytest

from harness import (REDIS_PASSWORD, STATUS_LOCATION, THREE_TOKEN_MESSAGES, openai_error,
                     parallel_posts, proxy_location, redis_command, redis_keys, settled, wait_for)
from valgrind import not_under_valgrind

PROMPT_TOKENS = 3
CAP = 20


def store_line(store, redis_server, memcached_server):
    if store == "redis":
        return (f"OpenAIProxyCounterStore redis://:{REDIS_PASSWORD}@127.0.0.1:"
                f"{redis_server.port}\n")
    if store == "memcache":
        return f"OpenAIProxyCounterStore memcache://127.0.0.1:{memcached_server.port}\n"
    return ""


def config(mock, budget, *directives, store=""):
    """/v1 with a token budget, and the status page: a test waits there
    until the previous request was charged (settled)."""
    return store + proxy_location(
        mock, "OpenAIProxyEndpoints chat/completions responses moderations",
        f"OpenAIProxyTokenBudget {budget}/h", *directives) + STATUS_LOCATION


def stores(request):
    """The store under test, its server started only when needed."""
    store = request.param
    redis = request.getfixturevalue("redis_server") if store == "redis" else None
    mc = request.getfixturevalue("memcached_server") if store == "memcache" else None
    return store, redis, mc


@pytest.fixture(params=["shm", "redis", "memcache"])
def store(request):
    return stores(request)


def redis_counter(redis):
    """The one token budget counter in redis."""
    keys = [k for k in redis_keys(redis.port) if k.startswith("oaip:t:")]
    assert len(keys) == 1, keys
    reply = redis_command(redis.port, "GET", keys[0])
    return int(reply.split("\r\n")[1])


@not_under_valgrind("50 parallel requests over several processes")
def test_parallel_burst_overshoots_by_at_most_one_worst_case(own_httpd, mock, store):
    """50 requests at once, each capped at 20 output tokens, against a
    budget of 300: every request reserves its worst case (cap + the bytes
    of its body) before it runs, so the requests admitted cost at most the
    budget plus one worst case. Charged after the answer only, all 50 went
    through (50 x 23 = 1150 tokens)."""
    name, redis, mc = store
    budget = 300
    server, client = own_httpd(config(mock, budget, f"OpenAIProxyMaxTokens {CAP}",
                                      store=store_line(name, redis, mc)))
    # slow answers: the requests overlap, as a burst from many clients does
    body = {"messages": THREE_TOKEN_MESSAGES, "max_tokens": 500,
            "mock": {"chunks": CAP, "delay_headers": 0.5}}

    results = parallel_posts(client, "/v1/chat/completions", 50, body)
    statuses = [r.status for r in results]
    assert set(statuses) <= {200, 429}, statuses
    admitted = statuses.count(200)
    records = mock.requests()
    assert len(records) == admitted
    # what went upstream: the cap written into the body
    assert all(r["body"]["max_tokens"] == CAP for r in records)
    real = PROMPT_TOKENS + CAP
    assert all(r.json()["usage"]["total_tokens"] == real for r in results
               if r.status == 200)
    worst = max(r["body_len"] for r in records) + CAP
    assert 1 <= admitted
    assert admitted * real < budget + worst, (admitted, worst)
    for r in results:
        if r.status == 429:
            assert openai_error(r)["code"] == "token_budget_exceeded"
            assert "Token budget of 300/h is spent" in openai_error(r)["message"]
    settled(client, 50)
    if redis is not None:
        # every reservation settled to the real usage (refused: to 0)
        assert redis_counter(redis) == admitted * real


def test_reservations_released_after_refusals_and_errors(own_httpd, mock, store, error_log):
    """A budget of 24 with answers of 23 tokens: after one answer, exactly
    one more request fits (23 < 24). Requests that reserved their worst case
    (about 170 tokens) and were then refused or failed give it back: a
    model not allowed, too many streams, upstream errors, an upstream that
    hangs up. Then the second answer fits and the budget is spent."""
    error_log.allow("upstream request failed: The upstream API failed to send a valid")
    name, redis, mc = store
    server, client = own_httpd(
        config(mock, 24, f"OpenAIProxyMaxTokens {CAP}", "OpenAIProxyAllowModels gpt-4o-mini",
               store=store_line(name, redis, mc)))
    good = {"model": "gpt-4o-mini", "messages": THREE_TOKEN_MESSAGES, "mock": {"chunks": CAP}}
    first = client.post("/v1/chat/completions", good)
    assert first.status == 200 and first.json()["usage"]["total_tokens"] == 23
    settled(client, 1)
    failures = [
        (dict(good, model="gpt-4o"), 400),
        (dict(good, mock={"status": 500}), 500),
        (dict(good, mock={"status": 429}), 429),
        (dict(good, mock={"hangup_before_headers": True}), 502),
        (dict(good, stream=True, mock={"status": 400}), 400),
    ]
    for n, (body, status) in enumerate(failures, start=2):
        resp = client.post("/v1/chat/completions", body)
        assert resp.status == status, (body, resp.status, resp.body)
        settled(client, n)
        if redis is not None:
            assert redis_counter(redis) == 23
    second = client.post("/v1/chat/completions", good)
    assert second.status == 200, second.body
    settled(client, len(failures) + 2)
    if redis is not None:
        assert redis_counter(redis) == 46
    refused = client.post("/v1/chat/completions", good)
    assert refused.status == 429


def test_stream_refused_for_too_many_streams_releases(own_httpd, mock, workdir, redis_server):
    """OpenAIProxyMaxStreams refuses after the reservation was made: the
    counter ends at the real usage of the requests that ran."""
    log = os.path.join(workdir, "budget-streams.log")
    server, client = own_httpd(
        "OpenAIProxyMaxStreams 1\n" + access_log_config(log)
        + config(mock, 1000, f"OpenAIProxyMaxTokens {CAP}",
                 store=store_line("redis", redis_server, None)))
    good = {"messages": THREE_TOKEN_MESSAGES, "mock": {"chunks": CAP}}
    assert client.post("/v1/chat/completions", good).status == 200
    settled(client, 1)
    # a stream held open (the mock waits before its first event) by a raw
    # client that leaves once the second stream was refused
    held = json.dumps(dict(good, stream=True, mock={"chunks": 1,
                                                     "first_chunk_delay": 60})).encode()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
                 b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                 % (len(held), held))
    wait_for(lambda: mock.stats()["active_streams"] == 1 or None, 10, "the held stream")
    resp = client.post("/v1/chat/completions", dict(good, stream=True))
    assert resp.status == 503, resp.body
    sock.close()
    settled(client, 3)
    charged = [int(line[3]) for line in log_lines(log) if line[3] != "-"]
    assert redis_counter(redis_server) == sum(charged)
    assert sorted(line[0] for line in log_lines(log)) == \
        ["client_gone", "ok", "too_many_streams"]


def access_log_config(path):
    return (f'LogFormat "%{{OPENAI_OUTCOME}}n %{{OPENAI_PROMPT_TOKENS}}n '
            f'%{{OPENAI_COMPLETION_TOKENS}}n %{{OPENAI_TOTAL_TOKENS}}n '
            f'%{{OPENAI_USAGE_ESTIMATED}}n" budget\nCustomLog "{path}" budget\n')


def log_lines(path):
    """The proxied requests' lines (not the status page's)."""
    return [line.split() for line in open(path) if line.strip() and line[0] != "-"]


@pytest.mark.parametrize("endpoint", ["chat/completions", "responses"],
                         ids=["chat", "responses"])
def test_stream_left_early_is_charged(own_httpd, mock, workdir, endpoint):
    """The client reads a few events and leaves: the usage chunk never
    comes, and the request is charged what was relayed (2 tokens per
    5-byte "tokN " delta) plus its prompt estimate, so the budget is spent
    for the next request. Unchanged, nothing was charged."""
    log = os.path.join(workdir, f"budget-left-{endpoint.replace('/', '-')}.log")
    server, client = own_httpd(access_log_config(log) + config(mock, 40))
    body = {"messages": THREE_TOKEN_MESSAGES, "input": "one two three", "stream": True,
            "mock": {"chunks": 500, "chunk_delay": 0.05}}
    seen = []

    def enough(data):
        seen[:] = [e for e in data.split(b"\n\n") if b"tok" in e]
        return len(seen) < 3
    resp = client.post(f"/v1/{endpoint}", body, stream=True, on_read=enough)
    assert resp.status == 200
    wait_for(lambda: mock.requests() and mock.requests()[-1]["outcome"] == "client_gone"
             or None, 30, "the upstream stream stopped")
    settled(client, 1)
    outcome, prompt, completion, total, estimated = log_lines(log)[-1]
    assert outcome == "client_gone"
    assert estimated == "1"
    sent = mock.requests()[-1]
    assert int(prompt) == -(-sent["body_len"] // 4)
    # at least what the client saw, at most what the mock sent
    assert 2 * len(seen) <= int(completion) <= 2 * sent["chunks_sent"]
    assert int(total) == int(prompt) + int(completion) >= 40
    refused = client.post(f"/v1/{endpoint}", dict(body, stream=False))
    assert refused.status == 429
    assert "Token budget of 40/h is spent" in openai_error(refused)["message"]


@pytest.mark.parametrize("stream", [True, False])
def test_answer_without_usage_is_charged(own_httpd, mock, workdir, stream):
    """An upstream that sends no usage chunk whatever stream_options says
    (or a whole answer without usage) is charged the estimate: 10 content
    deltas of 5 bytes (2 tokens each; one answer of 50 bytes: 13 tokens)
    plus ceil(body bytes / 4) for the prompt."""
    log = os.path.join(workdir, f"budget-nousage-{stream}.log")
    server, client = own_httpd(access_log_config(log) + config(mock, 50))
    body = {"messages": THREE_TOKEN_MESSAGES, "stream": stream,
            "mock": {"chunks": 10, "no_usage": True}}
    resp = client.post("/v1/chat/completions", body, stream=stream)
    assert resp.status == 200
    assert b"usage\": {" not in resp.body
    settled(client, 1)
    outcome, prompt, completion, total, estimated = log_lines(log)[-1]
    assert (outcome, estimated) == ("ok", "1")
    assert int(prompt) == -(-mock.requests()[-1]["body_len"] // 4)
    assert int(completion) == (20 if stream else 13)
    assert int(total) == int(prompt) + int(completion)
    assert client.post("/v1/chat/completions", body).status == 429


def test_reported_usage_is_not_estimated(own_httpd, mock, workdir):
    log = os.path.join(workdir, "budget-reported.log")
    server, client = own_httpd(access_log_config(log) + config(mock, 1000))
    body = {"messages": THREE_TOKEN_MESSAGES, "stream": True, "mock": {"chunks": 10}}
    assert client.post("/v1/chat/completions", body, stream=True).status == 200
    settled(client, 1)
    assert log_lines(log)[-1] == ["ok", "3", "10", "13", "-"]


def test_answers_that_generate_nothing_are_not_charged(own_httpd, mock, workdir):
    """A moderation answer carries no usage and generates no tokens: it is
    not estimated, and the budget of 1 token stays unspent."""
    log = os.path.join(workdir, "budget-moderation.log")
    server, client = own_httpd(access_log_config(log) + config(mock, 1))
    for n in (1, 2):
        resp = client.post("/v1/moderations", {"input": "one two three four five six"})
        assert resp.status == 200 and "usage" not in resp.json()
        # the reservation holds the budget until log_transaction settles it,
        # which may come after the client has the answer
        settled(client, n)
    assert [line[1:] for line in log_lines(log)] == [["-", "-", "-", "-"]] * 2
    assert client.post("/v1/chat/completions", {"messages": THREE_TOKEN_MESSAGES}).status == 200
