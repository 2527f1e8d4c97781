#!/usr/bin/env python3
"""Keeps the manual in step with the code (issue 10).

Rules (each failure is one line; exit 1 if there is any):

(a) Directives. Every directive of the module's command tables (an
    AP_INIT_*("Name", ...) entry in any mod_openai_proxy/**/*.c) has a
    `### Name` section in README.md and a row in its directive summary table
    (the table whose first header cell is "Directive"); README.md has no
    `### OpenAIProxy...` section and no table row for a directive the code
    does not have, and none twice. The context of each directive, in its
    table row and on its section's `Context:` line, is the one its
    req_override argument allows (macros resolved):
      RSRC_CONF   -> "server config, virtual host"
      ACCESS_CONF -> "directory, location" (also <Files>, <If>, the *Match forms)
      OR_*        -> ".htaccess"
    written in that order, comma-separated, and followed by nothing but an
    explanation that does not start with a comma ("(not ...)" is fine).

(b) Configuration structs. Every field of oaip_dir_conf and oaip_server_conf
    (the typedef structs in mod_openai_proxy/**/config.h) is handled by the
    merge function (a function of config.c whose name contains
    merge_dir_conf / merge_server_conf): its name appears there as
    `->field` or `.field`, as the first argument of a macro (`MERGE_INT(field`),
    or in the definition of a macro used there. The create function
    (create_dir_conf / create_server_conf) sets a field (`->field =`, or a
    macro as above) when
      - the struct is not zeroed (no apr_pcalloc/calloc/memset in create), or
      - the field's comment in config.h names an *_UNSET constant, or
      - merge handles the field through a macro that compares with an
        *_UNSET constant (MERGE_INT: 0 would read as "set");
    otherwise apr_pcalloc's NULL/0 is the field's unset value.
    RUNTIME_FIELDS below lists the fields that are state, not configuration
    (filled after the merge); merge need not handle those, and an entry for
    a field that no longer exists is an error.

(c) Links. Every relative link in README.md, mod_openai_proxy/README.md,
    tests/README.md, tests/fuzz/README.md and tests/bench/README.md points
    to an existing file or directory, and a #fragment to a heading of the
    target file (GitHub's anchors).

Usage: python3 build/check_docs.py [--root DIR]   (DIR: a checkout; default:
the one this script is in). Python 3 standard library only.
"""
import argparse
import glob
import os
import re
import sys

# Fields that hold per-process state rather than configuration: set for
# every server_rec after the configuration is merged, so merge leaves them
# NULL on purpose. "struct.field": why.
RUNTIME_FIELDS = {
    "oaip_server_conf.counter_client":
        "this process's counter store client, set for every server_rec in child_init",
}

HTTPD_OVERRIDE_FLAGS = {
    "OR_NONE", "OR_LIMIT", "OR_OPTIONS", "OR_FILEINFO", "OR_AUTHCFG", "OR_INDEXES",
    "OR_UNSET", "OR_ALL", "ACCESS_CONF", "RSRC_CONF", "EXEC_ON_READ",
    "NONFATAL_OVERRIDE", "NONFATAL_UNKNOWN", "NONFATAL_ALL",
}

DOC_FILES = ["README.md", "mod_openai_proxy/README.md", "tests/README.md",
             "tests/fuzz/README.md", "tests/bench/README.md"]

problems = []


def problem(msg):
    problems.append(msg)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def literal_end(text, i):
    """text[i] opens a C string or character literal: the index after it."""
    j = i + 1
    while j < len(text) and text[j] != text[i]:
        j += 2 if text[j] == "\\" else 1
    return j + 1


def strip_c_comments(text, keep_lines=True):
    """Removes /* */ and // comments, leaving string literals alone."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"' or c == "'":
            j = literal_end(text, i)
            out.append(text[i:j])
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(" " + ("\n" * text.count("\n", i, j) if keep_lines else ""))
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def c_sources(src, ext):
    return sorted(glob.glob(os.path.join(src, "**", "*" + ext), recursive=True))


def macros_of(texts):
    """#define NAME body (object-like and function-like), continuation lines joined."""
    defs = {}
    for text in texts:
        joined = text.replace("\\\n", " ")
        for m in re.finditer(r"^[ \t]*#[ \t]*define[ \t]+(\w+)(\([^)]*\))?[ \t]*(.*)$",
                             joined, re.M):
            defs[m.group(1)] = (m.group(2), m.group(3).strip())
    return defs


def split_args(text, start):
    """text[start] is '('; returns the top-level arguments up to its ')'."""
    depth, i, n = 0, start, len(text)
    args, cur = [], []
    while i < n:
        c = text[i]
        if c == '"' or c == "'":
            j = literal_end(text, i)
            cur.append(text[i:j])
            i = j
            continue
        if c == "(":
            depth += 1
            if depth == 1:
                i += 1
                continue
        elif c == ")":
            depth -= 1
            if depth == 0:
                args.append("".join(cur).strip())
                return args
        elif c == "," and depth == 1:
            args.append("".join(cur).strip())
            cur = []
            i += 1
            continue
        cur.append(c)
        i += 1
    return None


def override_flags(expr, macros, seen=()):
    """The httpd flags an override expression names, macros expanded."""
    flags = set()
    for ident in re.findall(r"[A-Za-z_]\w*", expr):
        if ident in HTTPD_OVERRIDE_FLAGS:
            flags.add(ident)
        elif ident in macros and ident not in seen:
            flags |= override_flags(macros[ident][1], macros, seen + (ident,))
        else:
            raise ValueError(ident)
    return flags


def context_of(flags):
    words = []
    if "RSRC_CONF" in flags:
        words += ["server config", "virtual host"]
    if "ACCESS_CONF" in flags:
        words += ["directory", "location"]
    if any(f.startswith("OR_") and f not in ("OR_NONE", "OR_UNSET") for f in flags):
        words.append(".htaccess")
    return ", ".join(words)


def context_matches(text, expected):
    text = re.sub(r"[`*]", "", text).strip()
    if not text.startswith(expected):
        return False
    rest = text[len(expected):].lstrip()
    return not rest.startswith(",")


# ---------------------------------------------------------------- (a)

def code_directives(root, src):
    files = c_sources(src, ".c")
    texts = {f: strip_c_comments(read(f)) for f in files}
    macros = macros_of(list(texts.values()) +
                       [strip_c_comments(read(h)) for h in c_sources(src, ".h")])
    found = {}
    for path, text in texts.items():
        for m in re.finditer(r"\bAP_INIT_[A-Z0-9_]*\s*\(", text):
            args = split_args(text, m.end() - 1)
            if not args or not re.fullmatch(r'"[^"]+"', args[0]):
                continue
            name = args[0][1:-1]
            rel = os.path.relpath(path, root)
            if name in found:
                problem(f"{rel}: directive {name} is in the command tables twice")
            if len(args) < 5:
                problem(f"{rel}: cannot read the arguments of {name}'s AP_INIT entry")
                found[name] = None
                continue
            try:
                found[name] = context_of(override_flags(args[3], macros))
            except ValueError as e:
                problem(f"{rel}: {name}: cannot resolve '{e}' in its context "
                        f"'{args[3]}' (not an httpd flag nor a macro of the module)")
                found[name] = None
    return found


def md_tables(text):
    """Yields (first line number, rows as lists of cells) for each table."""
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        if lines[i].lstrip().startswith("|") and i + 1 < len(lines) and \
                re.match(r"^\s*\|?\s*:?-{3,}", lines[i + 1]):
            start = i
            rows = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                if i != start + 1:
                    rows.append((i + 1, split_row(lines[i])))
                i += 1
            yield start + 1, rows
        else:
            i += 1


def split_row(line):
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    cells, cur, in_code = [], [], False
    i = 0
    while i < len(line):
        c = line[i]
        if c == "`":
            in_code = not in_code
        if c == "\\" and i + 1 < len(line) and line[i + 1] == "|":
            cur.append("|")
            i += 2
            continue
        if c == "|" and not in_code:
            cells.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
        i += 1
    cells.append("".join(cur).strip())
    return cells


def outside_fences(text):
    """The text with fenced code blocks blanked (line numbers kept)."""
    out, fence = [], None
    for line in text.split("\n"):
        m = re.match(r"^\s*(```+|~~~+)", line)
        if fence is None and m:
            fence = m.group(1)[0] * 3
            out.append("")
        elif fence is not None:
            if line.strip().startswith(fence):
                fence = None
            out.append("")
        else:
            out.append(line)
    return "\n".join(out)


def check_directives(root, src):
    directives = code_directives(root, src)
    if not directives:
        problem("no AP_INIT_* directive found under mod_openai_proxy/ (is the tree there?)")
        return 0
    readme_path = os.path.join(root, "README.md")
    text = outside_fences(read(readme_path))
    lines = text.split("\n")

    sections = {}
    for no, line in enumerate(lines, 1):
        m = re.match(r"^###\s+`?(OpenAIProxy\w*)`?\s*(.*)$", line)
        if m:
            name = m.group(1)
            if m.group(2).strip():
                problem(f"README.md:{no}: the heading of {name} holds more than its name")
            if name in sections:
                problem(f"README.md:{no}: a second '### {name}' section "
                        f"(first at line {sections[name]})")
            else:
                sections[name] = no

    table = None
    for start, rows in md_tables(text):
        if rows and rows[0][1] and re.sub(r"[*`]", "", rows[0][1][0]).strip().lower() == "directive":
            table = (start, rows)
            break
    rows = {}
    if table is None:
        problem("README.md: no directive summary table (a table whose first header cell "
                "is 'Directive')")
    else:
        start, table_rows = table
        header = [re.sub(r"[*`]", "", c).strip().lower() for c in table_rows[0][1]]
        ctx_col = header.index("context") if "context" in header else None
        if ctx_col is None:
            problem(f"README.md:{start}: the directive table has no 'Context' column")
        for no, cells in table_rows[1:]:
            m = re.search(r"(OpenAIProxy\w*)", cells[0])
            if not m:
                problem(f"README.md:{no}: a row of the directive table names no "
                        f"OpenAIProxy* directive in its first cell")
                continue
            name = m.group(1)
            if name in rows:
                problem(f"README.md:{no}: {name} has a second row in the directive table")
                continue
            rows[name] = (no, cells[ctx_col] if ctx_col is not None and
                          ctx_col < len(cells) else None)

    for name in sorted(directives):
        if name not in sections:
            problem(f"README.md: directive {name} has no '### {name}' section")
        if table is not None and name not in rows:
            problem(f"README.md: directive {name} has no row in the directive table")
    for name, no in sorted(sections.items()):
        if name not in directives:
            problem(f"README.md:{no}: section '### {name}' for a directive the module "
                    "does not have")
    for name, (no, _) in sorted(rows.items()):
        if name not in directives:
            problem(f"README.md:{no}: table row for {name}, a directive the module "
                    "does not have")

    # contexts
    for name, expected in sorted(directives.items()):
        if expected is None:
            continue
        if name in rows and rows[name][1] is not None and \
                not context_matches(rows[name][1], expected):
            problem(f"README.md:{rows[name][0]}: {name}'s context is '{rows[name][1]}'; "
                    f"its command table entry allows: {expected}")
        if name in sections:
            start = sections[name]
            end = len(lines)
            for no in range(start, len(lines)):
                if re.match(r"^#{1,3}\s", lines[no]):
                    end = no
                    break
            ctx = None
            for no in range(start, end):
                m = re.match(r"^\s*Context:\s*(.*?)\s*$", lines[no])
                if m:
                    ctx = (no + 1, m.group(1))
                    break
            if ctx is None:
                problem(f"README.md:{start}: section {name} has no 'Context:' line")
            elif not context_matches(ctx[1], expected):
                problem(f"README.md:{ctx[0]}: {name}'s context is '{ctx[1]}'; "
                        f"its command table entry allows: {expected}")
    return len(directives)


# ---------------------------------------------------------------- (b)

def struct_fields(text, name):
    """[(field, comment)] of `typedef struct [tag] { ... } name;`."""
    m = None
    for cand in re.finditer(r"typedef\s+struct\s*\w*\s*\{", text):
        depth, i = 1, cand.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if re.match(r"\s*" + re.escape(name) + r"\s*;", text[i:]):
            m = (cand.end(), i - 1)
            break
    if m is None:
        return None
    body = text[m[0]:m[1]]
    fields = []
    # declarations end at ';' (outside nested braces); the comments that
    # follow a declaration on its line or precede it belong to it
    pending_comment = []
    decl, depth, i = [], 0, 0
    comments_after = {}
    while i < len(body):
        if body.startswith("/*", i):
            j = body.find("*/", i + 2)
            j = len(body) if j < 0 else j + 2
            pending_comment.append(body[i + 2:j - 2])
            i = j
            continue
        if body.startswith("//", i):
            j = body.find("\n", i)
            j = len(body) if j < 0 else j
            pending_comment.append(body[i + 2:j])
            i = j
            continue
        c = body[i]
        if c in "{(":
            depth += 1
        elif c in "})":
            depth -= 1
        if c == ";" and depth == 0:
            names = declarator_names("".join(decl))
            # a comment on the same line, after the ';'
            trailing = ""
            mm = TRAILING_BLOCK.match(body, i + 1) or TRAILING_LINE.match(body, i + 1)
            if mm:
                trailing = mm.group(1)
                i = mm.end()
            else:
                i += 1
            comment = " ".join(pending_comment + [trailing])
            for n in names:
                fields.append((n, comment))
            pending_comment, decl = [], []
            continue
        decl.append(c)
        i += 1
    return fields


TRAILING_BLOCK = re.compile(r"[ \t]*/\*(.*?)\*/", re.S)
TRAILING_LINE = re.compile(r"[ \t]*//([^\n]*)")


def declarator_names(decl):
    decl = " ".join(decl.split())
    if not decl:
        return []
    if re.search(r"\b(struct|union)\s*\w*\s*\{", decl):
        # an inner struct: its name is after the closing brace
        decl = re.sub(r"\{.*\}", " ", decl)
    parts, cur, depth = [], [], 0
    for c in decl:
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        if c == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    parts.append("".join(cur))
    names = []
    for p in parts:
        fp = re.search(r"\(\s*\*+\s*(\w+)\s*\)", p)
        if fp:
            names.append(fp.group(1))
            continue
        p = re.sub(r"\[[^\]]*\]", "", p)
        p = re.sub(r":\s*\w+\s*$", "", p)
        p = re.sub(r"=.*$", "", p)
        m = re.search(r"(\w+)\s*$", p)
        if m:
            names.append(m.group(1))
    return names


def function_body(text, name_part):
    """(name, body) of the one function whose name contains name_part."""
    found = []
    for m in re.finditer(r"\b(\w*" + re.escape(name_part) + r"\w*)\s*\(([^;{}]*)\)\s*\{",
                         text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            c = text[i]
            if c == '"' or c == "'":
                j = i + 1
                while j < len(text) and text[j] != c:
                    j += 2 if text[j] == "\\" else 1
                i = j + 1
                continue
            depth += {"{": 1, "}": -1}.get(c, 0)
            i += 1
        found.append((m.group(1), text[m.end():i - 1]))
    return found


def macros_used(body, macros):
    return {ident for ident in re.findall(r"\b([A-Z_][A-Z0-9_]*)\b", body) if ident in macros}


def field_mentioned(field, body, macros, assign=False):
    f = re.escape(field)
    tail = r"\s*=(?!=)" if assign else r"\b"
    if re.search(r"(->|\.)\s*" + f + tail, body):
        return True
    for m in re.finditer(r"\b([A-Z_][A-Z0-9_]*)\s*\(\s*" + f + r"\s*[,)]", body):
        if m.group(1) in macros:
            return True
    for mac in macros_used(body, macros):
        params, definition = macros[mac]
        if params is None and re.search(r"(->|\.)\s*" + f + tail, definition):
            return True
    return False


def unset_macro_fields(body, macros):
    """Fields merged through a macro whose definition compares with *_UNSET."""
    out = set()
    for m in re.finditer(r"\b([A-Z_][A-Z0-9_]*)\s*\(\s*(\w+)\s*[,)]", body):
        mac = macros.get(m.group(1))
        if mac and re.search(r"\b\w*_UNSET\b", mac[1]):
            out.add(m.group(2))
    return out


def check_config(root, src):
    headers = [h for h in c_sources(src, ".h") if os.path.basename(h) == "config.h"]
    sources = [c for c in c_sources(src, ".c") if os.path.basename(c) == "config.c"]
    if len(headers) != 1 or len(sources) != 1:
        problem(f"expected one config.h and one config.c under mod_openai_proxy/, found "
                f"{[os.path.relpath(p, root) for p in headers + sources]}")
        return
    header_rel = os.path.relpath(headers[0], root)
    source_rel = os.path.relpath(sources[0], root)
    header = read(headers[0])
    source = read(sources[0])
    code = strip_c_comments(source)
    macros = macros_of([code, strip_c_comments(header)])

    for struct, kind in (("oaip_dir_conf", "dir_conf"), ("oaip_server_conf", "server_conf")):
        fields = struct_fields(header, struct)
        if fields is None:
            problem(f"{header_rel}: no 'typedef struct {{ ... }} {struct};'")
            continue
        if not fields:
            problem(f"{header_rel}: {struct} has no fields that could be read")
            continue
        names = [f for f, _ in fields]
        for key in RUNTIME_FIELDS:
            s, f = key.split(".")
            if s == struct and f not in names:
                problem(f"build/check_docs.py: RUNTIME_FIELDS names {key}, which "
                        f"{header_rel} no longer has")
        bodies = {}
        for what in ("create_" + kind, "merge_" + kind):
            found = function_body(code, what)
            if len(found) != 1:
                problem(f"{source_rel}: expected one function whose name contains "
                        f"'{what}', found {[n for n, _ in found] or 'none'}")
                continue
            bodies[what] = found[0]
        if len(bodies) != 2:
            continue
        cname, create = bodies["create_" + kind]
        mname, merge = bodies["merge_" + kind]
        zeroed = re.search(r"\b(apr_pcalloc|apr_pcalloc_debug|calloc|memset)\s*\(", create)
        by_unset_macro = unset_macro_fields(merge, macros)
        for field, comment in fields:
            if f"{struct}.{field}" not in RUNTIME_FIELDS and \
                    not field_mentioned(field, merge, macros):
                problem(f"{source_rel}: {mname}() does not handle {struct}.{field} "
                        "(an inner section's value would be lost)")
            reasons = []
            if not zeroed:
                reasons.append(f"{cname}() does not zero the struct")
            if re.search(r"\b\w*_UNSET\b", comment):
                reasons.append("its comment in " + header_rel + " names an *_UNSET value")
            if field in by_unset_macro:
                reasons.append(f"{mname}() merges it with a macro that compares with *_UNSET")
            if reasons and not field_mentioned(field, create, macros, assign=True):
                problem(f"{source_rel}: {cname}() does not set {struct}.{field} "
                        f"({'; '.join(reasons)})")


# ---------------------------------------------------------------- (c)

def github_anchors(text):
    anchors, counts = set(), {}
    for line in outside_fences(text).split("\n"):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1))
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        n = counts.get(slug, 0)
        counts[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def check_links(root):
    anchor_cache = {}

    def anchors_of(path):
        if path not in anchor_cache:
            anchor_cache[path] = github_anchors(read(path))
        return anchor_cache[path]

    for doc in DOC_FILES:
        path = os.path.join(root, doc)
        if not os.path.exists(path):
            problem(f"{doc}: missing")
            continue
        text = outside_fences(read(path))
        text = re.sub(r"`[^`\n]*`", "", text)  # code spans are no links
        for no, line in enumerate(text.split("\n"), 1):
            targets = re.findall(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", line)
            targets += re.findall(r"^\s*\[[^\]]+\]:\s*(\S+)", line)
            for target in targets:
                if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
                    continue  # http:, https:, mailto:
                file_part, _, fragment = target.partition("#")
                dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) \
                    if file_part else path
                if file_part and not os.path.exists(dest):
                    problem(f"{doc}:{no}: link to {target}: "
                            f"{os.path.relpath(dest, root)} does not exist")
                    continue
                if fragment and os.path.isfile(dest) and dest.endswith(".md") and \
                        fragment not in anchors_of(dest):
                    problem(f"{doc}:{no}: link to {target}: no heading "
                            f"#{fragment} in {os.path.relpath(dest, root)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=os.path.join(os.path.dirname(
        os.path.abspath(__file__)), ".."), help="the checkout to check")
    root = os.path.abspath(parser.parse_args().root)
    src = os.path.join(root, "mod_openai_proxy")
    n = check_directives(root, src)
    check_config(root, src)
    check_links(root)
    if problems:
        for p in problems:
            print(p, file=sys.stderr)
        print(f"check_docs: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"check_docs: OK ({n} directives documented with their contexts, "
          "config structs created and merged, links resolve)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
