"""A real browser: the chat demo (conf/demo/index.html) in Debian's headless
Chromium, driven by playwright-core (tests/browser/, `node --test`), against
an httpd of its own with three origins on loopback ports:

  A  serves the demo page, and is the origin the proxy allows
  B  hosts the proxy Locations (OpenAIProxyAllowOrigin = A)
  C  serves the same page, and is not allowed

Every response the browser got from B is handed to the secret scan of
conftest.py, and httpd's error log is checked as for any other test."""

import hashlib
import os
import shutil
import textwrap

import pytest

from harness import REPO, TEST_KEY, bare_location, basic_auth, htpasswd_line
from node_deps import MIN_NODE_MAJOR, install_locked, require_node_version, run_node_test_file

BROWSER_DIR = os.path.join(REPO, "tests", "browser")
TEST_FILE = os.path.join(BROWSER_DIR, "demo.test.mjs")
DEMO_PAGE = os.path.join(REPO, "conf", "demo", "index.html")
CHROMIUM = os.environ.get("OAIP_CHROMIUM", "/usr/bin/chromium")
NODE_TIMEOUT = 240


def require(path, what):
    if path is None or not os.access(path, os.X_OK):
        pytest.fail(f"{what} is not installed: the browser test needs Node.js "
                    f"{MIN_NODE_MAJOR}+, npm and Debian's chromium "
                    "(`sudo bash build/deps.sh test` installs them)", pytrace=False)
    return path


@pytest.fixture(scope="module")
def node():
    """The node binary, with chromium present and tests/browser's
    dependencies installed as locked."""
    node = require(shutil.which("node"), "`node`")
    require(CHROMIUM, f"chromium ({CHROMIUM})")
    require_node_version(node, "the browser test")
    install_locked(BROWSER_DIR, "playwright-core", lambda: require(shutil.which("npm"), "`npm`"))
    return node


def site_root(workdir):
    """A document root with the demo page that www-data (httpd's children)
    can read wherever the repository lives."""
    root = os.path.join(workdir, "browser-site")
    os.makedirs(os.path.join(root, "demo"), exist_ok=True)
    shutil.copyfile(DEMO_PAGE, os.path.join(root, "demo", "index.html"))
    for path in (root, os.path.join(root, "demo")):
        os.chmod(path, 0o755)
    os.chmod(os.path.join(root, "demo", "index.html"), 0o644)
    return root


def three_origins(mock_api, root, port_a, port_b, port_c):
    # B's upstream and key are the virtual host's
    # /v1 answers in the seed format although the demo calls
    # /v1/chat/completions (the SDKs' path, openai by default): the page
    # shows both formats readably
    locations = (bare_location("OpenAIProxyAllowModels gpt-4o-mini",
                               "OpenAIProxyDefault model gpt-4o-mini",
                               "OpenAIProxyErrorFormat seed")
                 + bare_location("OpenAIProxyErrorFormat openai", "OpenAIProxyMaxRequestBody 1K",
                                 path="/strict")
                 + bare_location("OpenAIProxyHeartbeat 1", path="/heartbeat"))
    page_host = """  ServerName 127.0.0.1
  DocumentRoot "{root}"
"""
    return f"""
Listen 127.0.0.1:{port_a}
Listen 127.0.0.1:{port_b}
Listen 127.0.0.1:{port_c}
<VirtualHost 127.0.0.1:{port_a}>
{page_host.format(root=root)}</VirtualHost>
<VirtualHost 127.0.0.1:{port_c}>
{page_host.format(root=root)}</VirtualHost>
<VirtualHost 127.0.0.1:{port_b}>
  ServerName 127.0.0.1
  OpenAIProxyUpstream {mock_api}
  OpenAIProxyAPIKey env:OAIP_TEST_KEY
  OpenAIProxyAllowOrigin http://127.0.0.1:{port_a}
{textwrap.indent(locations, "  ")}</VirtualHost>
"""


def test_demo_page_in_chromium(node, own_httpd, mock, workdir, error_log, responses, tmp_path):
    error_log.allow("upstream request failed")  # the upstream hang-up mid-stream, on purpose
    root = site_root(workdir)
    # the harness picks the three ports (afresh if one is taken before httpd binds it)
    server, _ = own_httpd(lambda s: three_origins(mock.api, root, *s.extra_ports),
                          name="browser", env={"OAIP_TEST_KEY": TEST_KEY}, extra_ports=3)
    port_a, port_b, port_c = server.extra_ports
    origin = {name: f"http://127.0.0.1:{port}"
              for name, port in (("A", port_a), ("B", port_b), ("C", port_c))}
    record = str(tmp_path / "browser-responses.jsonl")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update(
        OAIP_CHROMIUM=CHROMIUM,
        OAIP_ORIGIN_A=origin["A"], OAIP_ORIGIN_B=origin["B"], OAIP_ORIGIN_C=origin["C"],
        OAIP_DEMO_PATH="/demo/index.html",
        OAIP_MOCK_URL=mock.base,
        OAIP_UPSTREAM_KEY_SHA256=hashlib.sha256(TEST_KEY.encode()).hexdigest(),
        OAIP_BROWSER_RECORD=record,
        NO_COLOR="1",
    )
    got = run_node_test_file(node, TEST_FILE, BROWSER_DIR, env, record, responses,
                             NODE_TIMEOUT, min_tests=4)
    assert any(r.status == 200 and b"data: [DONE]" in r.body for r in got), \
        "no streamed answer from B was recorded for the secret scan"

    # httpd's own account of origin C: the preflight was refused, and no
    # request from C reached the proxy's handler past it
    with open(server.access_log) as f:
        from_c = [line for line in f if f'"{origin["C"]}"' in line]
    assert any('"OPTIONS /v1/chat/completions HTTP/1.1" 403' in line for line in from_c), from_c
    assert not any('"POST ' in line for line in from_c), from_c


CREDENTIALS_FILE = os.path.join(BROWSER_DIR, "credentials.test.mjs")
BASIC_USER, BASIC_PASSWORD = "browser-user", "browser-pass-7f3a"


def protected_proxy(mock_api, root, passwd, port_a, port_b, port_c):
    """A and C serve pages; B's Location is behind Basic auth and allows A
    with credentials."""
    # B's upstream and key are the virtual host's
    location = bare_location("OpenAIProxyAllowCredentials On", *basic_auth(passwd))
    return f"""
Listen 127.0.0.1:{port_a}
Listen 127.0.0.1:{port_b}
Listen 127.0.0.1:{port_c}
<VirtualHost 127.0.0.1:{port_a} 127.0.0.1:{port_c}>
  ServerName 127.0.0.1
  DocumentRoot "{root}"
</VirtualHost>
<VirtualHost 127.0.0.1:{port_b}>
  ServerName 127.0.0.1
  OpenAIProxyUpstream {mock_api}
  OpenAIProxyAPIKey env:OAIP_TEST_KEY
  OpenAIProxyAllowOrigin http://127.0.0.1:{port_a}
{textwrap.indent(location, "  ")}</VirtualHost>
"""


def test_credentials_in_chromium(node, own_httpd, mock, workdir, responses, tmp_path):
    passwd = os.path.join(workdir, "browser.htpasswd")
    with open(passwd, "w") as f:
        f.write(htpasswd_line(BASIC_USER, BASIC_PASSWORD))
    os.chmod(passwd, 0o644)
    root = site_root(workdir)
    # the harness picks the three ports (afresh if one is taken before httpd binds it)
    server, _ = own_httpd(lambda s: protected_proxy(mock.api, root, passwd, *s.extra_ports),
                          name="browser-credentials", env={"OAIP_TEST_KEY": TEST_KEY},
                          extra_ports=3)
    port_a, port_b, port_c = server.extra_ports
    origin_a, origin_c = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_c}"
    record = str(tmp_path / "credentials-responses.jsonl")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update(OAIP_CHROMIUM=CHROMIUM, OAIP_ORIGIN_A=origin_a, OAIP_ORIGIN_C=origin_c,
               OAIP_PAGE_PATH="/demo/index.html", OAIP_PROXY_URL=f"http://127.0.0.1:{port_b}/v1",
               OAIP_BASIC_USER=BASIC_USER, OAIP_BASIC_PASSWORD=BASIC_PASSWORD,
               OAIP_MOCK_URL=mock.base, OAIP_BROWSER_RECORD=record, NO_COLOR="1")
    got = run_node_test_file(node, CREDENTIALS_FILE, BROWSER_DIR, env, record, responses,
                             NODE_TIMEOUT, min_tests=3)
    assert any(r.status == 200 and b"data: [DONE]" in r.body for r in got), \
        "no streamed answer from B was recorded for the secret scan"

    # httpd's account: A's preflight was answered 204 without credentials,
    # C's refused 403 (not 401), and no POST from C was served
    with open(server.access_log) as f:
        lines = f.readlines()
    from_a = [line for line in lines if f'"{origin_a}"' in line]
    from_c = [line for line in lines if f'"{origin_c}"' in line]
    assert any('"OPTIONS /v1/chat/completions HTTP/1.1" 204' in line for line in from_a), from_a
    assert any('"POST /v1/chat/completions HTTP/1.1" 200' in line for line in from_a), from_a
    assert any('"OPTIONS /v1/chat/completions HTTP/1.1" 403' in line for line in from_c), from_c
    assert not any('"POST ' in line for line in from_c), from_c
