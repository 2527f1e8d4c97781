"""Shared by the tests that run node (test_sdk.py, test_browser.py): run a
command with a time limit, check node's version, and install a package
directory's dependencies as its package-lock.json pins them."""

import base64
import json
import os
import re
import subprocess

import pytest

from harness import SECRETS, Response

NPM_TIMEOUT = 300
MIN_NODE_MAJOR = 20


def redact(text):
    for secret in SECRETS:
        text = text.replace(secret, "<SECRET>")
    return text


def run(cmd, timeout, **kw):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode("utf-8", "replace") if isinstance(exc.stdout, bytes) \
            else (exc.stdout or "")
        pytest.fail(f"`{' '.join(cmd)}` did not finish within {timeout} s:\n{redact(out)}",
                    pytrace=False)


def require_node_version(node, purpose, minimum=MIN_NODE_MAJOR):
    version = run([node, "--version"], 30).stdout.strip()
    match = re.match(r"v(\d+)\.", version)
    if not match or int(match.group(1)) < minimum:
        pytest.fail(f"node {version or '(unknown version)'} is too old for {purpose}: "
                    f"Node.js {minimum}+ is needed", pytrace=False)


def locked_version(package_dir, package):
    with open(os.path.join(package_dir, "package-lock.json")) as f:
        return json.load(f)["packages"][f"node_modules/{package}"]["version"]


def installed_version(package_dir, package):
    try:
        with open(os.path.join(package_dir, "node_modules", package, "package.json")) as f:
            return json.load(f)["version"]
    except (OSError, ValueError, KeyError):
        return None


def install_locked(package_dir, packages, find_npm):
    """`npm ci` in package_dir when one of `packages` (a name or a list) is
    not installed at its locked version (find_npm() gives npm's path, or
    fails the test)."""
    packages = [packages] if isinstance(packages, str) else list(packages)
    if all(installed_version(package_dir, p) == locked_version(package_dir, p)
           for p in packages):
        return
    npm = find_npm()
    result = run([npm, "ci", "--no-audit", "--no-fund"], NPM_TIMEOUT, cwd=package_dir)
    if result.returncode != 0:
        pytest.fail(f"npm ci in {package_dir} failed (exit {result.returncode}):\n"
                    f"{result.stdout}\n{result.stderr}", pytrace=False)
    for package in packages:
        assert installed_version(package_dir, package) == locked_version(package_dir, package)


def recorded_responses(path):
    """The responses a node test recorded (one JSON line each), as
    harness.Response objects."""
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            entry = json.loads(line)
            out.append(Response(entry["status"], [tuple(h) for h in entry["headers"]],
                                base64.b64decode(entry["body_b64"])))
    return out


def run_node_test_file(node, test_file, cwd, env, record, responses, timeout, min_tests=1):
    """Runs one `node --test` file; every response it recorded in `record`
    goes to the secret scan of conftest.py (appended to `responses`); fails
    unless all of at least `min_tests` tests passed. Returns the responses."""
    result = run([node, "--test", "--test-reporter=spec", test_file], timeout, cwd=cwd,
                 env=env)
    raw_output = result.stdout + result.stderr
    output = redact(raw_output)
    print(output)
    got = recorded_responses(record)
    responses.extend(got)
    if any(secret in raw_output for secret in SECRETS):
        # not an assert: pytest would print the secret in the comparison
        pytest.fail(f"a secret reached node's output (redacted here):\n{output}", pytrace=False)
    assert result.returncode == 0, \
        f"node --test {test_file} failed (exit {result.returncode}):\n{output}"
    counts = dict(re.findall(r"^\S* ?(tests|pass|fail) (\d+)$", output, re.M))
    assert int(counts.get("tests", 0)) >= min_tests, f"node ran too few tests:\n{output}"
    assert counts.get("pass") == counts.get("tests"), f"not every test passed:\n{output}"
    return got
