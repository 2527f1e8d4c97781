"""Browsers with credentials: a Location behind httpd's Basic auth, called
from a page on another origin. The preflight comes without credentials and
is answered before authentication (for allowed origins only); every other
request still needs them; OpenAIProxyAllowCredentials On adds
Access-Control-Allow-Credentials: true, and is refused with "*"."""

import base64

import pytest

from harness import (MESSAGES, bare_location, basic_auth, config_test, htpasswd_line,
                     openai_error, proxy_location)

ALLOWED = "https://app.example.com"
USER, PASSWORD = "alice", "wonderland-42"


def auth_location(path, mock, passwd, *directives):
    return proxy_location(mock, "OpenAIProxyEndpoints chat/completions models",
                          *basic_auth(passwd), *directives, path=path)


@pytest.fixture
def server(own_httpd, mock, workdir):
    passwd = f"{workdir}/credentials.htpasswd"
    with open(passwd, "w") as f:
        f.write(htpasswd_line(USER, PASSWORD))
    body = (f"OpenAIProxyAllowOrigin {ALLOWED}\n"
            + auth_location("/v1", mock, passwd, "OpenAIProxyAllowCredentials On")
            + auth_location("/nocreds", mock, passwd))
    return own_httpd(body)


def basic():
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def preflight(client, path, origin=ALLOWED, method="POST"):
    return client.request("OPTIONS", path, headers={
        "Origin": origin, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "content-type"})


def test_preflight_is_answered_without_credentials(server, mock):
    _, client = server
    resp = preflight(client, "/v1/chat/completions")
    assert resp.status == 204, resp.text
    assert resp.header("Access-Control-Allow-Origin") == ALLOWED
    assert resp.header("Access-Control-Allow-Credentials") == "true"
    assert resp.header("Access-Control-Allow-Methods") == "POST, OPTIONS"
    assert "content-type" in resp.header("Access-Control-Allow-Headers").lower()
    assert resp.header("WWW-Authenticate") is None
    models = preflight(client, "/v1/models", method="GET")
    assert models.status == 204
    assert models.header("Access-Control-Allow-Methods") == "GET, HEAD, OPTIONS"
    assert mock.requests() == []


def test_preflight_of_a_disallowed_origin_is_json_403_not_401(server):
    _, client = server
    resp = preflight(client, "/v1", origin="https://evil.example.com")
    assert resp.status == 403
    assert resp.json()["error"] == "Origin Not Allowed"
    assert resp.header("Access-Control-Allow-Origin") is None
    assert resp.header("Access-Control-Allow-Credentials") is None


def test_preflight_of_an_unknown_path_is_json_404(server):
    _, client = server
    resp = preflight(client, "/v1/nope")
    assert resp.status == 404
    assert openai_error(resp)["code"] == "unknown_url"


@pytest.mark.parametrize("method,path,headers", [
    ("POST", "/v1", {"Origin": ALLOWED}),
    ("GET", "/v1/models", {"Origin": ALLOWED}),
    # an OPTIONS that is not a preflight is not answered early
    ("OPTIONS", "/v1", {"Origin": ALLOWED}),
    ("OPTIONS", "/v1", {"Access-Control-Request-Method": "POST"}),
    # a preflight header on another method opens nothing
    ("POST", "/v1", {"Origin": ALLOWED, "Access-Control-Request-Method": "POST"}),
])
def test_everything_else_still_needs_credentials(server, mock, method, path, headers):
    _, client = server
    body = b'{"messages":[{"role":"user","content":"hi"}]}' if method == "POST" else None
    resp = client.request(method, path, body=body, headers=headers)
    assert resp.status == 401, resp.text
    assert resp.header("WWW-Authenticate") == 'Basic realm="chat"'
    assert resp.header("Content-Type") == "application/json"
    if "Origin" in headers:  # the page can read the 401
        assert resp.header("Access-Control-Allow-Origin") == ALLOWED
        assert resp.header("Access-Control-Allow-Credentials") == "true"
    assert mock.requests() == []


def test_authenticated_request_carries_allow_credentials(server, mock):
    _, client = server
    resp = client.post("/v1", {"messages": MESSAGES}, headers={"Origin": ALLOWED, **basic()})
    assert resp.status == 200, resp.text
    assert resp.header("Access-Control-Allow-Origin") == ALLOWED
    assert resp.header("Access-Control-Allow-Credentials") == "true"
    assert len(mock.requests()) == 1
    stream = client.post("/v1", {"messages": MESSAGES, "stream": True},
                         headers={"Origin": ALLOWED, **basic()}, stream=True)
    assert stream.status == 200
    assert stream.header("Access-Control-Allow-Credentials") == "true"
    assert b"data: [DONE]" in stream.body


def test_without_the_directive_no_allow_credentials(server, mock):
    _, client = server
    pre = preflight(client, "/nocreds")
    assert pre.status == 204
    assert pre.header("Access-Control-Allow-Credentials") is None
    resp = client.post("/nocreds", {"messages": MESSAGES}, headers={"Origin": ALLOWED, **basic()})
    assert resp.status == 200
    assert resp.header("Access-Control-Allow-Credentials") is None


def test_other_origins_never_get_allow_credentials(server, mock):
    _, client = server
    resp = client.post("/v1", {"messages": MESSAGES},
                       headers={"Origin": "https://evil.example.com", **basic()})
    assert resp.status == 403
    assert resp.header("Access-Control-Allow-Credentials") is None


@pytest.mark.parametrize("body", [
    bare_location("OpenAIProxyAllowOrigin *", "OpenAIProxyAllowCredentials On"),
    # set at two levels: still the same hole
    "OpenAIProxyAllowOrigin *\n" + bare_location("OpenAIProxyAllowCredentials On"),
    "<VirtualHost 127.0.0.1:*>\n ServerName v.test\n OpenAIProxyAllowCredentials On\n"
    + bare_location("OpenAIProxyAllowOrigin * ") + "</VirtualHost>\n",
    "OpenAIProxyAllowOrigin *\nOpenAIProxyAllowCredentials On\n",
], ids=["same-location", "server-origins", "vhost-credentials", "server"])
def test_credentials_with_any_origin_is_refused_at_config_time(workdir, body):
    result = config_test(workdir, body, name="credentials-configtest")
    assert result.returncode != 0, result.stderr
    assert "OpenAIProxyAllowCredentials On cannot be combined with " \
           "OpenAIProxyAllowOrigin *" in result.stderr + result.stdout


def test_credentials_with_listed_origins_is_accepted(workdir):
    # a Location that allows "*" may turn the server's credentials Off
    body = ("OpenAIProxyAllowOrigin https://b.test\nOpenAIProxyAllowCredentials On\n"
            + bare_location("OpenAIProxyAllowOrigin https://a.test")
            + bare_location("OpenAIProxyAllowOrigin *", "OpenAIProxyAllowCredentials Off",
                            path="/public"))
    result = config_test(workdir, body, name="credentials-configtest")
    assert result.returncode == 0, result.stderr
    assert "Syntax OK" in result.stderr


def test_credentials_value_must_be_on_or_off(workdir):
    result = config_test(workdir, "OpenAIProxyAllowCredentials maybe\n",
                         name="credentials-configtest")
    assert result.returncode != 0
    assert "OpenAIProxyAllowCredentials" in result.stderr
