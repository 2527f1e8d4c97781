"""Directive parsing: `apache2 -t` rejects bad values with a clear message;
good ones take effect, merged from server to VirtualHost to Location."""

import os

import pytest

from harness import MESSAGES, TEST_KEY, bare_location, config_test, proxy_location


def test_good_config_is_accepted(workdir, key_file):
    result = config_test(workdir, bare_location(
        "OpenAIProxyAPIKey sk-literal-key",
        "OpenAIProxyUpstream https://example.test/openai/v1/",
        "OpenAIProxyCAFile /etc/ssl/certs/ca-certificates.crt",
        "OpenAIProxyAllowOrigin https://a.example.com http://localhost:3000 https://*.b.example",
        "OpenAIProxyAllowOrigin http://[::1]:8080",
        "OpenAIProxyDefault model gpt-4o-mini",
        "OpenAIProxyDefault temperature 0.2",
        "OpenAIProxyDefault response_format '{\"type\":\"json_object\"}'",
        "OpenAIProxyDefault max_tokens none",
        "OpenAIProxyMaxRequestBody 512K",
        "OpenAIProxyAllowClientKey Off",
        "OpenAIProxyErrorFormat openai",
        "OpenAIProxyConnectTimeout 5",
        "OpenAIProxyConnectTimeout 500ms",
        "OpenAIProxyFirstByteTimeout 600",
        "OpenAIProxyFirstByteTimeout 10min",
        "OpenAIProxyIdleTimeout 60",
        "OpenAIProxyIdleTimeout 90s",
        "OpenAIProxyIdleTimeout 1h",
        "OpenAIProxyHeartbeat 15",
        "OpenAIProxyHeartbeat 250ms",
        "OpenAIProxyHeartbeat Off",
        "OpenAIProxyAllowModels gpt-4o-mini o3*",
        "OpenAIProxyMaxTokens 4096",
        "OpenAIProxyRateLimit 60/m",
        "OpenAIProxyRateLimit 1000/d by=user",
        "OpenAIProxyRateLimit 10/10s by=header:X-Team",
        "OpenAIProxyTokenBudget 200k/d by=ip",
        "OpenAIProxyTokenBudget none")
        + "OpenAIProxyMaxStreams 100\nOpenAIProxyCounterStore redis://:pw@127.0.0.1:6379\n"
        "OpenAIProxyCounterStoreFail closed\n")
    assert result.returncode == 0, result.stderr
    assert "Syntax OK" in result.stderr


BAD = [
    ("OpenAIProxyUpstream ftp://example.test/v1", "is not an http:// or https:// URL"),
    ("OpenAIProxyUpstream not-a-url", "is not an http:// or https:// URL"),
    ("OpenAIProxyUpstream https://user:pw@example.test/v1", "must not carry user info"),
    ("OpenAIProxyUpstream https://example.test/v1?x=1", "must not carry user info"),
    ("OpenAIProxyCAFile /nonexistent/ca.pem", "does not exist"),
    ("OpenAIProxyAllowOrigin https://a.example.com/", "invalid origin 'https://a.example.com/'"),
    ("OpenAIProxyAllowOrigin a.example.com", "invalid origin"),
    ("OpenAIProxyAllowOrigin https://*.com", "at least two labels"),
    ("OpenAIProxyAllowOrigin https://a.*.example.com", "first label"),
    ("OpenAIProxyAllowOrigin https://a.example.com:99999", "invalid origin"),
    ("OpenAIProxyDefault temperature {bad", "neither JSON nor a bare word"),
    ("OpenAIProxyDefault messages []", "other than messages"),
    ("OpenAIProxyDefault 'bad name' 1", "field name"),
    ("OpenAIProxyDefault max_tokens '\"9999\"'", "max_tokens must be an integer of at least 1"),
    ("OpenAIProxyDefault stream yes", "stream must be a boolean"),
    ("OpenAIProxyDefault MAX_TOKENS 5", "Unrecognized parameter MAX_TOKENS"),
    ("OpenAIProxyMaxRequestBody 0", "is not a size"),
    ("OpenAIProxyMaxRequestBody lots", "is not a size"),
    ("OpenAIProxyMaxRequestBody 2G", "is not a size"),
    ("OpenAIProxyMaxRequestBody 10X", "is not a size"),
    ("OpenAIProxyAllowClientKey maybe", "must be On or Off"),
    ("OpenAIProxyErrorFormat xml", "is not one of seed, openai"),
    ("OpenAIProxyAPIKey env:OAIP_SURELY_UNSET_VARIABLE",
     "environment variable OAIP_SURELY_UNSET_VARIABLE is not set"),
    ("OpenAIProxyAPIKey file:/nonexistent/key", "cannot read key file /nonexistent/key"),
    ("OpenAIProxyDefault model", "takes two arguments"),
    ("OpenAIProxyConnectTimeout 0", "'0' is not a time from 1ms to 86400 seconds"),
    ("OpenAIProxyConnectTimeout 0ms", "is not a time from 1ms to 86400 seconds"),
    ("OpenAIProxyFirstByteTimeout 100000", "is not a time from 1ms to 86400 seconds"),
    ("OpenAIProxyFirstByteTimeout 25h", "is not a time from 1ms to 86400 seconds"),
    ("OpenAIProxyIdleTimeout soon", "is not a time from 1ms to 86400 seconds"),
    ("OpenAIProxyIdleTimeout 5sausages", "is not a time from 1ms to 86400 seconds"),
    ("OpenAIProxyIdleTimeout -5", "is not a time from 1ms to 86400 seconds"),
    ("OpenAIProxyIdleTimeout 1.5s", "is not a time from 1ms to 86400 seconds"),
    ("OpenAIProxyHeartbeat 0", "is not a time from 1ms to 3600 seconds"),
    ("OpenAIProxyHeartbeat 2h", "is not a time from 1ms to 3600 seconds"),
    ("OpenAIProxyHeartbeat maybe", "is not a time from 1ms to 3600 seconds"),
    ("OpenAIProxyAllowModels gpt-4o gpt*mini", "'*' may only end a model name"),
    ("OpenAIProxyMaxTokens 0", "is not a number of tokens from 1 to 100000000"),
    ("OpenAIProxyRateLimit 60", "'60': expected N/PERIOD, e.g. 60/m"),
    ("OpenAIProxyRateLimit 60/w", "the period must end in s, m, h or d"),
    ("OpenAIProxyRateLimit 0/m", "the amount must be a number from 1 to 4000000000"),
    ("OpenAIProxyRateLimit 10k/m", "expected N/PERIOD"),
    ("OpenAIProxyRateLimit 60/m by=host", "the caller must be by=ip, by=user or by=header:NAME"),
    ("OpenAIProxyRateLimit 60/m by=header:", "the caller must be"),
    ("OpenAIProxyRateLimit 1/400d", "must not exceed 366 days"),
    ("OpenAIProxyRateLimit none by=ip", "OpenAIProxyRateLimit: none takes no by="),
    ("OpenAIProxyTokenBudget 5000M/d", "OpenAIProxyTokenBudget: '5000M/d': the amount"),
    ("OpenAIProxyRateLimit", "takes 1-2 arguments"),
    ("OpenAIProxyCounterStore shm", "not allowed in <Location>"),
]


@pytest.mark.parametrize("directive,message", BAD)
def test_bad_values_fail_the_config_test(workdir, directive, message):
    result = config_test(workdir, bare_location(directive))
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert "Syntax error on line" in result.stderr


@pytest.mark.parametrize("value", ["0", "-1", "many", "2000000"])
def test_bad_max_streams_fails_the_config_test(workdir, value):
    result = config_test(workdir, f"OpenAIProxyMaxStreams {value}\n")
    assert result.returncode != 0
    assert "OpenAIProxyMaxStreams: '" + value + "' is not a number from 1 to 1000000" \
        in result.stderr


@pytest.mark.parametrize("directive,message", [
    ("OpenAIProxyCounterStore redis://", "expected redis://[:password@]host[:port]"),
    ("OpenAIProxyCounterStore redis://:pw-SECRET@h:99999", "expected redis://"),
    ("OpenAIProxyCounterStore memcache://u:pw-SECRET@h:11211", "takes no user or password"),
    ("OpenAIProxyCounterStore file:/tmp/x", "expected shm, redis://host:port"),
    ("OpenAIProxyCounterStoreFail maybe", "'maybe' is not one of open, closed"),
])
def test_bad_counter_store_fails_the_config_test(workdir, directive, message):
    result = config_test(workdir, directive + "\n")
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert "pw-SECRET" not in result.stderr + result.stdout


def test_key_errors_never_echo_the_key(workdir):
    secret = "sk-" + "S3CRET" * 4
    result = config_test(workdir, bare_location(f'OpenAIProxyAPIKey "{secret} trailing"'))
    assert result.returncode != 0
    assert "white space" in result.stderr
    assert "S3CRET" not in result.stderr + result.stdout


def test_empty_key_file_is_refused(workdir):
    path = os.path.join(workdir, "empty.key")
    open(path, "w").write("\n \n")
    result = config_test(workdir, bare_location(f"OpenAIProxyAPIKey file:{path}"))
    assert result.returncode != 0
    assert f"key file {path} is empty" in result.stderr


def test_empty_environment_variable_is_refused(workdir):
    result = config_test(workdir, bare_location("OpenAIProxyAPIKey env:OAIP_EMPTY_KEY"),
                         env={"OAIP_EMPTY_KEY": "  "})
    assert result.returncode != 0
    assert "environment variable OAIP_EMPTY_KEY is empty" in result.stderr


def test_server_level_settings_and_httpd_variables(own_httpd, mock, workdir):
    """Directives at server level apply to every Location; ${VAR} is httpd's
    own expansion from its environment."""
    server, client = own_httpd(
        f"OpenAIProxyAPIKey ${{OAIP_KEY_VAR}}\nOpenAIProxyUpstream {mock.api}\n"
        + bare_location(path="/chat"),
        env={"OAIP_KEY_VAR": TEST_KEY})
    resp = client.post("/chat/chat/completions", {"messages": MESSAGES})
    assert resp.status == 200
    assert mock.requests()[-1]["headers"]["authorization"] == f"Bearer {TEST_KEY}"
    log = open(server.error_log).read()
    assert "[openai_proxy:debug]" in log and "upstream POST" in log
    assert TEST_KEY not in log


def test_inner_location_overrides_outer(own_httpd, mock):
    server, client = own_httpd(
        f"OpenAIProxyUpstream {mock.api}\nOpenAIProxyAPIKey {TEST_KEY}\n"
        "OpenAIProxyAllowOrigin https://outer.example\n"
        "OpenAIProxyDefault model outer-model\n"
        + bare_location(path="/a")
        + proxy_location(f"{mock.api}/inner", "OpenAIProxyAllowOrigin https://inner.example",
                         "OpenAIProxyDefault temperature 0.1", path="/b", key=None))
    assert client.post("/a", {"messages": MESSAGES},
                       headers={"Origin": "https://outer.example"}).status == 200
    assert mock.requests()[-1]["body"]["model"] == "outer-model"
    assert client.post("/b", {"messages": MESSAGES},
                       headers={"Origin": "https://outer.example"}).status == 403
    assert client.post("/b", {"messages": MESSAGES},
                       headers={"Origin": "https://inner.example"}).status == 200
    last = mock.requests()[-1]
    assert last["path"] == "/v1/inner/chat/completions"
    assert last["body"]["model"] == "outer-model"
    assert last["body"]["temperature"] == 0.1
