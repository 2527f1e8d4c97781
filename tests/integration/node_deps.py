"""Shared by the tests that run node (test_sdk.py, test_browser.py): run a
command with a time limit, check node's version, and install a package
directory's dependencies as its package-lock.json pins them."""

import json
import os
import re
import subprocess

import pytest

from harness import SECRETS

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


def require_node_version(node, purpose):
    version = run([node, "--version"], 30).stdout.strip()
    match = re.match(r"v(\d+)\.", version)
    if not match or int(match.group(1)) < MIN_NODE_MAJOR:
        pytest.fail(f"node {version or '(unknown version)'} is too old for {purpose}: "
                    f"Node.js {MIN_NODE_MAJOR}+ is needed", pytrace=False)


def locked_version(package_dir, package):
    with open(os.path.join(package_dir, "package-lock.json")) as f:
        return json.load(f)["packages"][f"node_modules/{package}"]["version"]


def installed_version(package_dir, package):
    try:
        with open(os.path.join(package_dir, "node_modules", package, "package.json")) as f:
            return json.load(f)["version"]
    except (OSError, ValueError, KeyError):
        return None


def install_locked(package_dir, package, find_npm):
    """`npm ci` in package_dir when `package` is not installed at its locked
    version (find_npm() gives npm's path, or fails the test)."""
    if installed_version(package_dir, package) == locked_version(package_dir, package):
        return
    npm = find_npm()
    result = run([npm, "ci", "--no-audit", "--no-fund"], NPM_TIMEOUT, cwd=package_dir)
    if result.returncode != 0:
        pytest.fail(f"npm ci in {package_dir} failed (exit {result.returncode}):\n"
                    f"{result.stdout}\n{result.stderr}", pytrace=False)
    assert installed_version(package_dir, package) == locked_version(package_dir, package)
