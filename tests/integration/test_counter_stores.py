"""Counter stores shared by a cluster: a real redis-server and memcached
(Debian's) on loopback, two httpd instances counting against one limit, and
the store going away (OpenAIProxyCounterStoreFail open / closed)."""

from harness import (REDIS_PASSWORD, THREE_TOKEN_MESSAGES, proxy_location, redis_command,
                     redis_keys, reserve_dead_port, wait_for)

# The store servers (redis_server, memcached_server) are fixtures of conftest.py.


def cluster_config(mock, store, limit="5/h", fail=None):
    return (f"OpenAIProxyCounterStore {store}\n"
            + (f"OpenAIProxyCounterStoreFail {fail}\n" if fail else "")
            + "<VirtualHost 127.0.0.1:*>\n  ServerName api.cluster.test\n"
            + proxy_location(mock, f"OpenAIProxyRateLimit {limit}") + "</VirtualHost>\n")


def post(client):
    return client.post("/v1", {"messages": THREE_TOKEN_MESSAGES}, host="api.cluster.test")


def test_two_httpd_share_a_redis_limit(own_httpd, mock, redis_server):
    store = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis_server.port}"
    first, client_a = own_httpd(cluster_config(mock, store), name="cluster-a", mpm="prefork")
    second, client_b = own_httpd(cluster_config(mock, store), name="cluster-b")
    statuses = [post(client_a).status, post(client_b).status, post(client_a).status,
                post(client_b).status, post(client_a).status, post(client_b).status,
                post(client_a).status]
    assert statuses == [200] * 5 + [429] * 2
    assert len(mock.requests()) == 5
    # one counter for the caller, with an expiry (no key outlives its window)
    keys = redis_keys(redis_server.port)
    assert len(keys) == 1, keys
    ttl = int(redis_command(redis_server.port, "TTL", keys[0]).strip().lstrip(":"))
    assert 0 < ttl <= 3601
    # the store's password is in no log line (the autouse check also looks)
    for server in (first, second):
        assert REDIS_PASSWORD not in open(server.error_log).read()


def test_two_httpd_share_a_memcache_limit(own_httpd, mock, memcached_server):
    store = f"memcache://127.0.0.1:{memcached_server.port}"
    first, client_a = own_httpd(cluster_config(mock, store, "3/h"), name="mc-a")
    second, client_b = own_httpd(cluster_config(mock, store, "3/h"), name="mc-b",
                                 mpm="prefork")
    statuses = [post(c).status for c in (client_a, client_b, client_b, client_a, client_b)]
    assert statuses == [200, 200, 200, 429, 429]
    assert len(mock.requests()) == 3


def test_store_away_fails_open_with_a_warning(own_httpd, mock, redis_server, error_log):
    error_log.allow("counter store redis://127.0.0.1:")
    store = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis_server.port}"
    server, client = own_httpd(cluster_config(mock, store, "2/h"))
    assert [post(client).status for _ in range(3)] == [200, 200, 429]
    redis_server.stop()
    # the store is gone: requests go on, unlimited, and the error log says why
    assert [post(client).status for _ in range(3)] == [200, 200, 200]
    log = open(server.error_log).read()
    assert "limits not applied (OpenAIProxyCounterStoreFail open)" in log
    assert "[openai_proxy:warn]" in log
    assert REDIS_PASSWORD not in log
    # it comes back (empty: a restarted redis without persistence)
    redis_server.restart()
    wait_for(lambda: post(client).status == 429 or None, 10, "limits applied again")


def test_store_away_fails_closed(own_httpd, mock, error_log):
    error_log.allow("counter store memcache://127.0.0.1:")
    holder, dead = reserve_dead_port()  # refuses connections, and nobody can take it
    server, client = own_httpd(cluster_config(mock, f"memcache://127.0.0.1:{dead}", "2/h",
                                              fail="closed"))
    resp = post(client)
    assert resp.status == 503
    assert resp.json()["error"] == "Service Unavailable"
    assert "Usage limits cannot be checked" in resp.json()["message"]
    assert resp.header("Retry-After") == "1"
    assert mock.requests() == []
    assert "refusing requests (OpenAIProxyCounterStoreFail closed)" in \
        open(server.error_log).read()
    holder.close()
