"""The harness's own guarantees, which the rest of the suite relies on: a
graceful restart has scoreboard room for the old generation, and returns
only once the old children are gone."""

import concurrent.futures
import uuid

from harness import MESSAGES, proxy_location, sse_data_lines, wait_for
from valgrind import not_under_valgrind

STREAMS = 60  # more than two children's 25 threads: at least three children are busy


@not_under_valgrind("a graceful restart needs a parent and children; valgrind runs apache2 -X")
def test_graceful_restart_while_the_old_children_are_busy(own_httpd, mock):
    """The old generation's children keep their scoreboard slots until their
    streams end. With room for them (ServerLimit above MaxRequestWorkers /
    ThreadsPerChild) the new generation starts its children at once; with
    ServerLimit 4 it could not, and the parent logged AH03490 "scoreboard is
    full" (the log check fails on it). The old streams end intact, and the
    restart returns once their children are gone."""
    server, client = own_httpd(proxy_location(mock))
    gate = uuid.uuid4().hex  # the upstream holds every stream open until the test opens it
    with concurrent.futures.ThreadPoolExecutor(STREAMS + 1) as pool:
        streams = [pool.submit(client.post, "/v1",
                               {"messages": MESSAGES, "stream": True,
                                "mock": {"chunks": 1, "gate": gate}}, stream=True)
                   for _ in range(STREAMS)]
        wait_for(lambda: mock.stats()["active_streams"] == STREAMS, 20, "every stream open")
        old = server.children()
        restart = pool.submit(server.graceful_restart,
                              proxy_location(mock, "OpenAIProxyRateLimit 1/h"))
        # the new generation gets its StartServers children while every old
        # child still serves
        wait_for(lambda: len(server.children() - old) >= 2, 20, "the new generation's children")
        assert server.children() >= old, "an old child ended while its stream was held"
        mock.open_gate(gate, permits=10 * STREAMS)
        restart.result()
        assert not server.children() & old
        for stream in streams:
            resp = stream.result()
            assert resp.status == 200 and sse_data_lines(resp.body)[-1] == "[DONE]"
    # the new config serves
    assert [client.post("/v1", {"messages": MESSAGES}).status for _ in range(2)] == [200, 429]
