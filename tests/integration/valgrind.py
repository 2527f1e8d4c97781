"""apache2 under valgrind (memcheck) for the integration tests.

OAIP_VALGRIND=1 (set by build/valgrind.sh) makes harness.Httpd run apache2
as `valgrind ... apache2 -X`: one process, so every request of the test is
seen by one memcheck. Each process writes an XML report
(<workdir>/valgrind-<name>-<pid>.xml). What fails a run:
  - any memcheck error that is not a leak (invalid read/write, use of
    uninitialised values, bad free, ...) that tests/valgrind.supp does not
    suppress;
  - a definite or indirect leak with a frame in mod_openai_proxy;
  - a report that valgrind did not finish (the process was killed).
Leaks that only httpd, APR, libcurl or OpenSSL own are not the module's.

    python3 tests/integration/valgrind.py WORKDIR   checks every report there
"""

import os
import sys
import xml.etree.ElementTree as ET

ENABLED = os.environ.get("OAIP_VALGRIND") == "1"
SUPPRESSIONS = os.path.join(os.path.dirname(__file__), "..", "valgrind.supp")
MODULE_MARK = "mod_openai_proxy"
LEAKS_OF_INTEREST = ("Leak_DefinitelyLost", "Leak_IndirectlyLost")


def not_under_valgrind(reason):
    """Marks a test that cannot run in one process slowed down ~30x."""
    import pytest  # not needed by the command line checker
    return pytest.mark.skipif(ENABLED, reason=f"not under valgrind: {reason}")


def command(workdir, name):
    """The valgrind prefix for an apache2 command line (which gets -X)."""
    return ["valgrind", "--tool=memcheck", "--leak-check=full",
            "--show-leak-kinds=definite,indirect", "--errors-for-leak-kinds=definite,indirect",
            "--keep-debuginfo=yes",  # httpd unloads modules before the leak check
            "--num-callers=40", "--track-origins=yes", "--child-silent-after-fork=yes",
            "--vgdb=no",
            f"--suppressions={os.path.abspath(SUPPRESSIONS)}", "--gen-suppressions=all",
            "--xml=yes", f"--xml-file={workdir}/valgrind-{name}-%p.xml",
            f"--log-file={workdir}/valgrind-{name}-%p.log"]


def _frames(error):
    for frame in error.iter("frame"):
        yield " ".join(filter(None, (frame.findtext("fn"), frame.findtext("obj"),
                                     frame.findtext("dir"), frame.findtext("file"))))


def _describe(error):
    what = error.findtext("what") or error.findtext("xwhat/text") or ""
    aux = [a.text or "" for a in error.findall("auxwhat")]
    aux += [a.findtext("text") or "" for a in error.findall("xauxwhat")]
    stack = "\n    ".join(list(_frames(error))[:40])
    supp = error.findtext("suppression/rawtext") or ""
    return f"{error.findtext('kind')}: {what}\n    {stack}\n  {'; '.join(aux)}\n{supp}"


def problems(path):
    """What in one XML report fails the run (empty: clean)."""
    with open(path, "rb") as f:
        data = f.read()
    if b"</valgrindoutput>" not in data:
        return [f"{path}: report not finished (the process did not exit normally)"]
    found = []
    for error in ET.fromstring(data).iter("error"):
        kind = error.findtext("kind") or ""
        if kind.startswith("Leak_"):
            if kind in LEAKS_OF_INTEREST and any(MODULE_MARK in f for f in _frames(error)):
                found.append(_describe(error))
        else:
            found.append(_describe(error))
    return [f"{path}: {p}" for p in found]


def finished_reports(workdir, seen):
    """Problems in reports of processes that ended since the last call."""
    out = []
    for name in sorted(os.listdir(workdir)):
        path = os.path.join(workdir, name)
        if not (name.startswith("valgrind-") and name.endswith(".xml")) or name in seen:
            continue
        with open(path, "rb") as f:
            if b"</valgrindoutput>" not in f.read():
                continue  # still running: checked when it ends (or by main)
        seen.add(name)
        out.extend(problems(path))
    return out


def main(workdir):
    paths = []
    for root, _, names in os.walk(workdir):
        paths += [os.path.join(root, n) for n in names
                  if n.startswith("valgrind-") and n.endswith(".xml")]
    found = [p for path in sorted(paths) for p in problems(path)]
    for p in found:
        print(p, "\n")
    print(f"valgrind: {len(paths)} apache2 reports, {len(found)} problems")
    return 1 if found or not paths else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
