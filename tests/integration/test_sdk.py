"""A real client: the official openai Node SDK (tests/node/, `node --test`)
against the session httpd and mock upstream. Each tests/node/*.test.mjs file
runs as one pytest test, so a file that provokes an httpd error line on
purpose can be allowed it alone. Every response the SDK received is handed
to the secret scan of conftest.py, and httpd's error log is checked as for
any other test."""

import glob
import hashlib
import os
import shutil

import pytest

from harness import REPO, TEST_KEY
from node_deps import MIN_NODE_MAJOR, install_locked, require_node_version, run_node_test_file

NODE_DIR = os.path.join(REPO, "tests", "node")
TEST_FILES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(NODE_DIR, "*.test.mjs")))
# httpd error-log lines a test file provokes on purpose
ALLOWED_LOG_LINES = {
    "sdk-stream-cut.test.mjs": ["upstream request failed"],
}
NODE_TIMEOUT = 180


def require_tool(name):
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not installed: the SDK tests need Node.js {MIN_NODE_MAJOR}+ "
                    "and npm (Debian: apt-get install nodejs npm)", pytrace=False)
    return path


@pytest.fixture(scope="module")
def node():
    """The node binary, with tests/node's dependencies installed as locked."""
    node = require_tool("node")
    require_node_version(node, "the SDK tests")
    install_locked(NODE_DIR, "openai", lambda: require_tool("npm"))
    return node


@pytest.mark.parametrize("test_file", TEST_FILES)
def test_openai_node_sdk(test_file, node, httpd, mock, error_log, responses, tmp_path):
    for pattern in ALLOWED_LOG_LINES.get(test_file, []):
        error_log.allow(pattern)
    record = str(tmp_path / "sdk-responses.jsonl")
    # no real OPENAI_* settings (key, organization, base URL) reach the SDK
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update(
        OAIP_V1_URL=httpd.url("/v1"),
        OAIP_OPENAI_ERRORS_URL=httpd.url("/openai-errors"),
        OAIP_SMALL_URL=httpd.url("/small"),
        OAIP_LIMITED_URL=httpd.url("/openai-limited"),
        OAIP_ENDPOINTS_URL=httpd.url("/endpoints"),
        OAIP_MOCK_URL=mock.base,
        OAIP_UPSTREAM_KEY_SHA256=hashlib.sha256(TEST_KEY.encode()).hexdigest(),
        OAIP_SDK_RECORD=record,
        NO_COLOR="1",
    )
    got = run_node_test_file(node, os.path.join(NODE_DIR, test_file), REPO, env, record,
                             responses, NODE_TIMEOUT)
    assert got, "the SDK's responses were not recorded for the secret scan"
