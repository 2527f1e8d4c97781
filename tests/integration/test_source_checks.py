"""The two source checks of the test command find what they are for: a core
file that includes an httpd or curl header, an include cycle, curl outside
the engine (build/check_layers.py); a directive without its README section
or row, a config field the merge forgets (build/check_docs.py). Each runs
on a copy of the checkout with one such fault put in."""
import os
import re
import shutil
import subprocess
import sys

import pytest

CHECKOUT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@pytest.fixture
def tree(tmp_path):
    """A copy of the checkout (sources, READMEs and what they link to)."""
    root = tmp_path / "checkout"
    shutil.copytree(CHECKOUT, root, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "node_modules", "out", "run", "*.o", "*.lo", "*.slo", "*.la", ".libs",
        "__pycache__", "run_unit_tests"))
    return root


def check(script, root):
    return subprocess.run([sys.executable, os.path.join(CHECKOUT, "build", script),
                           "--root", str(root)], capture_output=True, text=True, timeout=60)


def edit(path, old, new):
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_both_checks_pass_on_the_checkout(tree):
    for script in ("check_layers.py", "check_docs.py"):
        result = check(script, tree)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("header", ["httpd.h", "http_protocol.h", "util_filter.h",
                                    "curl/curl.h"])
def test_core_including_httpd_or_curl_fails(tree, header):
    sse = tree / "mod_openai_proxy" / "core" / "sse.c"
    edit(sse, '#include "core/sse.h"\n', f'#include "core/sse.h"\n#include <{header}>\n')
    result = check("check_layers.py", tree)
    assert result.returncode == 1
    assert f"core/sse.c: the core includes the httpd/curl header <{header}>" in result.stdout


def test_core_including_glue_fails(tree):
    sse = tree / "mod_openai_proxy" / "core" / "sse.c"
    edit(sse, '#include "core/sse.h"\n', '#include "core/sse.h"\n#include "httpd/relay.h"\n')
    result = check("check_layers.py", tree)
    assert result.returncode == 1
    assert 'the core includes "httpd/relay.h" of another layer' in result.stdout


def test_curl_outside_the_engine_fails(tree):
    stats = tree / "mod_openai_proxy" / "httpd" / "stats.c"
    edit(stats, '#include "httpd/stats.h"\n', '#include "httpd/stats.h"\n#include <curl/curl.h>\n')
    result = check("check_layers.py", tree)
    assert result.returncode == 1
    assert "httpd/stats.c: includes <curl/curl.h>; only engine/ may" in result.stdout


def test_include_cycle_fails(tree):
    # sse.c includes buffer.h; buffer.h including sse.h closes a circle
    buffer_h = tree / "mod_openai_proxy" / "core" / "buffer.h"
    edit(buffer_h, "#include <apr", '#include "core/sse.h"\n#include <apr')
    result = check("check_layers.py", tree)
    assert result.returncode == 1
    assert re.search(r"include cycle: core/(buffer|sse) -> core/(sse|buffer) -> core/\1",
                     result.stdout), result.stdout


def test_module_header_including_others_fails(tree):
    header = tree / "mod_openai_proxy" / "mod_openai_proxy.h"
    edit(header, "#include <http_log.h>\n", '#include <http_log.h>\n#include "httpd/config.h"\n')
    result = check("check_layers.py", tree)
    assert result.returncode == 1
    assert 'mod_openai_proxy.h: the module declaration includes "httpd/config.h"' in result.stdout


def test_directive_without_readme_section_fails(tree):
    readme = tree / "README.md"
    text = readme.read_text()
    start = text.index("### OpenAIProxyIdleTimeout")
    end = text.index("\n### ", start + 1)
    readme.write_text(text[:start] + text[end + 1:])
    result = check("check_docs.py", tree)
    assert result.returncode == 1
    assert "OpenAIProxyIdleTimeout" in result.stderr


def test_field_missing_from_merge_fails(tree):
    config = tree / "mod_openai_proxy" / "httpd" / "config.c"
    edit(config, "    MERGE_INT(idle_timeout);\n", "")
    result = check("check_docs.py", tree)
    assert result.returncode == 1
    assert "idle_timeout" in result.stderr
