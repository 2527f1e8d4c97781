"""Where the upstream key comes from."""

from harness import CLIENT_KEY, MESSAGES, TEST_KEY


def test_no_key_configured_is_500_json(client, mock, error_log):
    error_log.allow("answering 500 api_key_not_configured")
    resp = client.post("/nokey", {"messages": MESSAGES}, host="b.test")
    assert resp.status == 500
    assert resp.json() == {"error": "Configuration Error",
                           "message": "OpenAI API key is not configured"}
    assert mock.requests() == []


def test_client_key_used_where_the_operator_allows_it(client, mock):
    resp = client.post("/nokey", {"messages": MESSAGES}, host="b.test",
                       headers={"x-openai-key": CLIENT_KEY})
    assert resp.status == 200
    assert mock.requests()[-1]["headers"]["authorization"] == f"Bearer {CLIENT_KEY}"
    # allowed and a configured key exists: the client's replaces it
    client.post("/byok", {"messages": MESSAGES}, headers={"x-openai-key": CLIENT_KEY})
    assert mock.requests()[-1]["headers"]["authorization"] == f"Bearer {CLIENT_KEY}"
    # without the header the configured key is used
    client.post("/byok", {"messages": MESSAGES})
    assert mock.requests()[-1]["headers"]["authorization"] == f"Bearer {TEST_KEY}"


def test_client_key_ignored_where_not_allowed(client, mock):
    client.post("/v1", {"messages": MESSAGES}, headers={"x-openai-key": CLIENT_KEY})
    assert mock.requests()[-1]["headers"]["authorization"] == f"Bearer {TEST_KEY}"


def test_malformed_client_key_is_400(client, mock):
    resp = client.post("/byok", {"messages": MESSAGES}, headers={"x-openai-key": "sk-a b"})
    assert resp.status == 400
    assert "x-openai-key" in resp.json()["message"]
    assert mock.requests() == []
