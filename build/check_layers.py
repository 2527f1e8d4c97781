#!/usr/bin/env python3
"""Keeps the module's layers visible (mod_openai_proxy/README.md):

- core/ includes only the C library, APR, apr-util, jansson and other core
  headers: no httpd header (httpd.h, http_*.h, ap_*.h, util_*.h), no curl;
- curl/curl.h is included by engine/ only;
- no include cycle between the module's files, a file and its header
  counting as one unit (foo.c + foo.h); mod_openai_proxy.h, the module
  declaration every glue file needs, is a unit of its own and includes no
  other file of the module.

Run from anywhere: python3 build/check_layers.py [--root CHECKOUT]. Exit 1 with one line per
problem.
"""
import argparse
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "mod_openai_proxy")
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)
HTTPD_HEADER = re.compile(r"^(httpd|http_[a-z_]+|ap_[a-z_]+|util_[a-z_]+|mpm_[a-z_]+|scoreboard)\.h$")
CORE_ALLOWED_SYSTEM = re.compile(r"^(apr[a-z_0-9]*|apu[a-z_0-9]*|jansson)\.h$|^[a-z_/]+\.h$")


def sources():
    for folder, _, names in os.walk(ROOT):
        for name in sorted(names):
            if name.endswith((".c", ".h")):
                path = os.path.join(folder, name)
                yield os.path.relpath(path, ROOT).replace(os.sep, "/")


def unit_of(rel):
    """foo/bar.c and foo/bar.h are one unit; mod_openai_proxy.h its own."""
    if rel == "mod_openai_proxy.h":
        return "mod_openai_proxy.h (module declaration)"
    return rel[:-2]


def main():
    global ROOT
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", help="the checkout to check (default: this one)")
    args = parser.parse_args()
    if args.root:
        ROOT = os.path.join(os.path.abspath(args.root), "mod_openai_proxy")
    problems = []
    files = list(sources())
    known = set(files)
    edges = {}
    for rel in files:
        with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
            text = f.read()
        layer = rel.split("/")[0] if "/" in rel else ""
        for kind, header in INCLUDE.findall(text):
            base = os.path.basename(header)
            if kind == '"':
                if header not in known:
                    problems.append(f"{rel}: includes \"{header}\", which is not a file of the "
                                    "module (includes name the layer: \"core/sse.h\")")
                    continue
                if layer == "core" and not header.startswith("core/"):
                    problems.append(f"{rel}: the core includes \"{header}\" of another layer")
                if rel == "mod_openai_proxy.h":
                    problems.append(f"{rel}: the module declaration includes \"{header}\"")
                if unit_of(header) != unit_of(rel):
                    edges.setdefault(unit_of(rel), set()).add(unit_of(header))
                continue
            if header == "curl/curl.h" and layer != "engine":
                problems.append(f"{rel}: includes <curl/curl.h>; only engine/ may")
            if layer == "core" and (HTTPD_HEADER.match(base) or header.startswith("curl/")):
                problems.append(f"{rel}: the core includes the httpd/curl header <{header}>")
            elif layer == "core" and not CORE_ALLOWED_SYSTEM.match(header):
                problems.append(f"{rel}: the core includes <{header}>, not APR/apr-util/jansson/libc")
    problems += cycles(edges)
    for p in problems:
        print("check_layers:", p)
    if problems:
        return 1
    print(f"check_layers: ok ({len(files)} files, {len(edges)} units with includes, no cycle)")
    return 0


def cycles(edges):
    """Each include cycle once, as a path a -> b -> ... -> a."""
    found, state, stack = [], {}, []

    def visit(unit):
        state[unit] = 1
        stack.append(unit)
        for nxt in sorted(edges.get(unit, ())):
            if state.get(nxt) == 1:
                loop = stack[stack.index(nxt):] + [nxt]
                found.append("include cycle: " + " -> ".join(loop))
            elif state.get(nxt) is None:
                visit(nxt)
        stack.pop()
        state[unit] = 2

    for unit in sorted(edges):
        if state.get(unit) is None:
            visit(unit)
    return found


if __name__ == "__main__":
    sys.exit(main())
