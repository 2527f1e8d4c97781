"""SetHandler openai-proxy-status: the counters of the whole server (every
process of a prefork httpd), as JSON and as Prometheus text that
prometheus_client's own parser reads."""

import json
import threading
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness import (STATUS_LOCATION, THREE_TOKEN_MESSAGES, proxy_location, settled,
                     wait_for)

ODD_MODEL = 'we"ird\\model\nname'


def config(mock):
    return (proxy_location(mock)
            + proxy_location(mock, "OpenAIProxyRateLimit 1/h", path="/limited")
            + STATUS_LOCATION)


def prometheus(client):
    resp = client.request("GET", "/proxy-status?format=prometheus")
    assert resp.status == 200
    assert resp.header("Content-Type").startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(resp.body.decode())}
    return families


def sample(families, family, name, **labels):
    values = [s.value for s in families[family].samples
              if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(values) == 1, (name, labels, families[family].samples)
    return values[0]


@pytest.fixture
def traffic(own_httpd, mock):
    server, client = own_httpd(config(mock), mpm="prefork")
    plain = {"model": "gpt-4o-mini", "messages": THREE_TOKEN_MESSAGES, "mock": {"chunks": 7}}
    streamed = {"model": "gpt-4.1-nano", "messages": THREE_TOKEN_MESSAGES, "stream": True,
                "mock": {"chunks": 5}}
    for _ in range(3):
        assert client.post("/v1", plain).status == 200
    for _ in range(2):
        assert client.post("/v1", streamed, stream=True).status == 200
    assert client.post("/v1", "{not json").status == 400
    assert client.post("/v1", dict(plain, mock={"status": 429})).status == 429
    assert client.post("/limited", plain).status == 200
    assert client.post("/limited", plain).status == 429
    assert client.post("/v1", {"model": ODD_MODEL, "messages": THREE_TOKEN_MESSAGES,
                               "mock": {"chunks": 1}}).status == 200
    return server, client


def idle(client):
    """The status once no request is active: the gauges drop when a
    request's pool is freed, just after its log phase."""
    def read():
        doc = client.request("GET", "/proxy-status").json()
        return doc if doc["requests"]["active"] == doc["requests"]["active_streams"] == 0 \
            else None
    return wait_for(read, 10, "the requests to leave the gauges")


def test_json_counts_every_request_of_every_process(traffic):
    server, client = traffic
    settled(client, 10, timeout=10)
    doc = idle(client)
    requests = doc["requests"]
    assert requests["total"] == 10
    assert requests["by_outcome"] == {"ok": 7, "invalid_json": 1, "upstream_error": 1,
                                      "rate_limit_exceeded": 1}
    assert requests["by_status"] == {"200": 7, "400": 1, "429": 2}
    assert requests["active"] == 0 and requests["active_streams"] == 0
    assert doc["tokens"]["by_model"] == {
        "gpt-4o-mini": {"requests": 4, "prompt_tokens": 12, "completion_tokens": 28},
        "gpt-4.1-nano": {"requests": 2, "prompt_tokens": 6, "completion_tokens": 10},
        ODD_MODEL: {"requests": 1, "prompt_tokens": 3, "completion_tokens": 1},
    }
    assert doc["tokens"]["prompt"] == 21 and doc["tokens"]["completion"] == 39
    assert doc["upstream"] == {"errors": 1, "timeouts": 0, "second_attempts": 0}
    assert doc["limits"] == {"rate_limited": 1, "budget_exhausted": 0, "store_errors": 0}
    latency = doc["latency_seconds"]
    assert latency["request"]["count"] == 10
    assert latency["request"]["buckets"]["+Inf"] == 10
    buckets = list(latency["request"]["buckets"].values())
    assert buckets == sorted(buckets)  # cumulative
    # the upstream was reached by 8 of them (not the 400, not the refused one)
    assert latency["first_byte"]["count"] == 8
    assert doc["version"] and doc["uptime_seconds"] >= 0


def test_prometheus_text_parses_and_matches(traffic):
    server, client = traffic
    doc = settled(client, 10, timeout=10)
    families = prometheus(client)
    assert families["openai_proxy_requests"].type == "counter"
    assert sample(families, "openai_proxy_requests", "openai_proxy_requests_total",
                  outcome="ok") == 7
    assert sample(families, "openai_proxy_responses", "openai_proxy_responses_total",
                  code="429") == 2
    assert sample(families, "openai_proxy_tokens", "openai_proxy_tokens_total",
                  model="gpt-4o-mini", type="completion") == 28
    # an odd model name comes back intact through the label escapes
    assert sample(families, "openai_proxy_tokens", "openai_proxy_tokens_total",
                  model=ODD_MODEL, type="prompt") == 3
    assert families["openai_proxy_active_streams"].type == "gauge"
    assert sample(families, "openai_proxy_limited", "openai_proxy_limited_total",
                  limit="rate") == 1
    duration = families["openai_proxy_request_duration_seconds"]
    assert duration.type == "histogram"
    assert sample(families, "openai_proxy_request_duration_seconds",
                  "openai_proxy_request_duration_seconds_count") == 10
    assert sample(families, "openai_proxy_request_duration_seconds",
                  "openai_proxy_request_duration_seconds_bucket", le="+Inf") == 10
    total_seconds = sample(families, "openai_proxy_request_duration_seconds",
                           "openai_proxy_request_duration_seconds_sum")
    assert total_seconds == pytest.approx(doc["latency_seconds"]["request"]["sum"],
                                          rel=0.01, abs=0.01)


def test_open_streams_show_as_active(own_httpd, mock):
    server, client = own_httpd(config(mock))
    started = threading.Event()
    gate = uuid.uuid4().hex  # the upstream holds the stream open until the test opens it

    def slow_stream():
        client.post("/v1", {"messages": THREE_TOKEN_MESSAGES, "stream": True,
                            "mock": {"chunks": 3, "gate": gate}},
                    stream=True, on_read=lambda _: started.set())
    thread = threading.Thread(target=slow_stream)
    thread.start()
    assert started.wait(10)
    doc = client.request("GET", "/proxy-status").json()
    mock.open_gate(gate, permits=10)
    thread.join(15)
    assert doc["requests"]["active"] == 1 and doc["requests"]["active_streams"] == 1
    settled(client, 1, timeout=10)
    doc = idle(client)
    assert doc["requests"]["active"] == 0 and doc["requests"]["active_streams"] == 0


def test_status_handler_methods_and_access(own_httpd, mock):
    server, client = own_httpd(config(mock))
    assert client.request("POST", "/proxy-status", body="{}").status == 405
    head = client.request("HEAD", "/proxy-status")
    assert head.status == 200 and head.body == b""
    assert client.request("GET", "/proxy-status").header("Cache-Control") == "no-store"
    json.loads(client.request("GET", "/proxy-status?format=json").body)


def test_long_multibyte_model_name_is_cut_at_a_character(own_httpd, mock):
    server, client = own_httpd(config(mock))
    model = "модель-" * 12  # 84 characters, 156 bytes
    assert client.post("/v1", {"model": model, "messages": THREE_TOKEN_MESSAGES,
                               "mock": {"chunks": 2}}).status == 200
    doc = settled(client, 1, timeout=10)
    (name,) = doc["tokens"]["by_model"].keys()
    assert model.startswith(name) and 0 < len(name.encode()) < 64
    families = prometheus(client)
    assert sample(families, "openai_proxy_tokens", "openai_proxy_tokens_total",
                  model=name, type="completion") == 2
