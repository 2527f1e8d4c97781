#!/usr/bin/python3
"""Turns the raw results of streams.sh into the long-stream table (markdown,
--out, and stdout) and JSON (--json). Exits 1 when any run had an error: a
stream that did not deliver every chunk and [DONE], a client error, an error
in the server's log, a window with every stream open that never came, a
system-call count that failed or fell outside that window."""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys

ORDER = ("direct", "proxy_http", "nginx", "oaip")
NAMES = {"direct": "direct (upstream alone)", "proxy_http": "mod_proxy_http",
         "nginx": "nginx proxy_pass", "oaip": "mod_openai_proxy"}


def version(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (out.stdout + out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"


def ratio(a, b):
    return None if a is None or not b else a / b


def fmt(x, spec=".2f", none="n/a"):
    return none if x is None else format(x, spec)


def derive(r, problems):
    """The figures of one (N, target) run, and its problems."""
    c = r["client"]
    w = c.get("window")
    where = f"{NAMES[r['target']]} N={r['n']}"
    d = {"n": r["n"], "target": r["target"], "complete": c["complete"],
         "streams": c["streams"], "chunks": c["chunks"], "expected": c["expected_chunks"],
         "p50_ms": c["delay_us"]["p50"] / 1000.0, "p99_ms": c["delay_us"]["p99"] / 1000.0,
         "max_ms": c["delay_us"]["max"] / 1000.0, "cpu_per_chunk_us": None,
         "setup_cpu_per_stream_us": None, "syscalls_per_chunk": None,
         "rss_per_stream_kib": None, "threads": None, "procs": None, "window_s": None,
         "open_after_s": None, "ramp_s": c.get("ramp_ms", 0) / 1000.0,
         "sizing": r.get("sizing")}
    errs = sum(c["errors"].values())
    if (c["complete"] != c["streams"] or c["chunks"] != c["expected_chunks"] or errs
            or r["log_errors"]):
        problems.append(f"{where}: {c['complete']}/{c['streams']} streams complete, "
                        f"{c['chunks']}/{c['expected_chunks']} chunks, statuses "
                        f"{c['statuses']}, errors {c['errors']} {c['error_examples']}, "
                        f"server log errors {r['log_errors']}")
    if not w:
        problems.append(f"{where}: never had all {c['streams']} streams open at once "
                        f"(at most {c['max_open']}): no CPU, system call or RSS figure")
        return d
    d["window_s"] = w["duration_us"] / 1e6
    d["open_after_s"] = w["open_after_us"] / 1e6
    if w["chunks"]:
        d["cpu_per_chunk_us"] = w["cpu_us"] / w["chunks"]
        d["setup_cpu_per_stream_us"] = max(
            0.0, (w["cpu_before_us"] - w["chunks_before"] * d["cpu_per_chunk_us"])
            / c["streams"])
    if "open" in c:
        d["rss_per_stream_kib"] = (c["open"]["rss_kib"] - c["idle"]["rss_kib"]) / c["streams"]
        d["threads"], d["procs"] = c["open"]["threads"], c["open"]["procs"]
    marks = c.get("marks", [])
    conns = r.get("child_conns", [0, 0])
    if r.get("child_syscalls") is None or len(marks) < 2:
        problems.append(f"{where}: no system call count (perf stat on pid "
                        f"{r.get('syscall_child')} for {r.get('syscall_seconds')} s of the "
                        f"window; marks {marks})")
    elif not (w["start_wall_us"] <= marks[0]["wall_us"] and
              marks[1]["wall_us"] <= w["end_wall_us"]):
        problems.append(f"{where}: the system call count ran outside the window with "
                        "every stream open (lower STREAMS_SYSCALL_SECONDS or raise "
                        "STREAMS_CHUNKS)")
    else:
        share = (conns[0] + conns[1]) / 2.0 / c["streams"]
        relayed = (marks[1]["chunks"] - marks[0]["chunks"]) * share
        d["syscall_child_share"] = share
        d["syscalls_per_chunk"] = r["child_syscalls"] / relayed if relayed else None
        if not relayed:
            problems.append(f"{where}: pid {r.get('syscall_child')} relayed no chunk while "
                            f"perf counted ({conns[0]} connections of {c['streams']})")
    return d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jsonl", required=True)
    ap.add_argument("--chunks", required=True)
    ap.add_argument("--delay-ms", required=True)
    ap.add_argument("--ramp-ms", required=True)
    ap.add_argument("--syscall-seconds", required=True)
    ap.add_argument("--module-info", default="?")
    ap.add_argument("--out", required=True)
    ap.add_argument("--json", required=True)
    a = ap.parse_args()
    with open(a.jsonl) as f:
        raw = [json.loads(line) for line in f if line.strip()]
    problems = []
    rows = [derive(r, problems) for r in raw]
    by = {(d["n"], d["target"]): d for d in rows}

    lines = []
    out = lines.append
    out("# mod_openai_proxy benchmark: long streams (streams.sh)")
    out("")
    out(f"- run: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}, "
        f"{os.cpu_count()} CPUs, Linux {platform.release()}")
    out(f"- module: {a.module_info}")
    out(f"- {version(['/usr/sbin/apache2', '-v'])}; {version(['/usr/sbin/nginx', '-v'])}")
    ramp = (f"{int(a.ramp_ms) / 1000:g} s" if a.ramp_ms.isdigit() else
            "max(2, N / 1000) s")
    out(f"- N streams opened evenly over {ramp}, each {a.chunks} "
        f"chunks {a.delay_ms} ms apart from the C upstream (streamer/upstream.c), read by "
        "the C client (streamer/client.c); a fresh server per row, sized for N. The window "
        "= while all N streams are open (from the last stream's first chunk to the first "
        "stream's last chunk).")
    out(f"- delay = arrival at the client - the upstream's send stamp (CLOCK_REALTIME "
        "both); CPU per chunk = utime + stime of all the server's processes over the "
        "window / chunks delivered in it; setup CPU per stream = (CPU before the window "
        "- its chunks x CPU per chunk) / N; system calls per chunk = perf stat "
        f"raw_syscalls:sys_enter on the server process with the most connections, for "
        f"{a.syscall_seconds} s of the window (or what is left of it) / (chunks delivered "
        "meanwhile x its share of "
        "the connections); RSS per open stream = (summed VmRSS of the server's processes, "
        "largest sample in the window - before the first stream) / N.")
    out("")
    out("| N | target | streams completed | chunks delivered | delay p50 / p99 ms "
        "| added p50 / p99 ms | all open after / window s | CPU µs / chunk "
        "| setup CPU µs / stream | syscalls / chunk | RSS KiB / open stream "
        "| threads (procs) |")
    out("|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    ns = sorted({d["n"] for d in rows})
    summary = []
    for n in ns:
        base = by.get((n, "direct"))
        for t in ORDER:
            d = by.get((n, t))
            if not d:
                continue
            added = "(baseline)" if t == "direct" else "n/a (no direct row)" if not base else (
                f"{d['p50_ms'] - base['p50_ms']:+.3f} / {d['p99_ms'] - base['p99_ms']:+.3f}")
            d["added_p50_ms"] = None if t == "direct" or not base else d["p50_ms"] - base["p50_ms"]
            d["added_p99_ms"] = None if t == "direct" or not base else d["p99_ms"] - base["p99_ms"]
            threads = "" if d["threads"] is None else f"{d['threads']} ({d['procs']})"
            out(f"| {n} | {NAMES[t]} | {d['complete']}/{d['streams']} "
                f"| {d['chunks']}/{d['expected']} | {d['p50_ms']:.3f} / {d['p99_ms']:.3f} "
                f"| {added} | {fmt(d['open_after_s'], '.1f', 'never')} / "
                f"{fmt(d['window_s'], '.1f', '-')} | {fmt(d['cpu_per_chunk_us'], '.1f')} "
                f"| {fmt(d['setup_cpu_per_stream_us'], '.0f')} "
                f"| {fmt(d['syscalls_per_chunk'])} | {fmt(d['rss_per_stream_kib'], '.1f')} "
                f"| {threads} |")
        p, o, x = by.get((n, "proxy_http")), by.get((n, "oaip")), by.get((n, "nginx"))
        if p and o:
            s = {"n": n}
            for key in ("cpu_per_chunk_us", "setup_cpu_per_stream_us", "syscalls_per_chunk",
                        "rss_per_stream_kib"):
                s["oaip_" + key] = ratio(o[key], p[key])
                s["nginx_" + key] = ratio(x[key], p[key]) if x else None
            summary.append(s)
    out("")
    if summary:
        out("Ratios to mod_proxy_http at the same N (mod_openai_proxy in bold; nginx "
            "proxy_pass after the slash):")
        out("")
        out("| N | CPU / chunk | setup CPU / stream | syscalls / chunk | RSS / open stream |")
        out("|--:|--:|--:|--:|--:|")
        for s in summary:
            out(f"| {s['n']} | " + " | ".join(
                f"**{fmt(s['oaip_' + k])}** / {fmt(s['nginx_' + k])}"
                for k in ("cpu_per_chunk_us", "setup_cpu_per_stream_us", "syscalls_per_chunk",
                          "rss_per_stream_kib")) + " |")
        out("")
    sizing = [(d["n"], d["target"], d["sizing"]) for d in rows
              if d["sizing"] and d["target"] in ("proxy_http", "nginx")]
    if sizing:
        out("Server sizing per N: " + "; ".join(
            f"N={n} httpd ServerLimit {s['servers']} x ThreadsPerChild {s['tpc']} = "
            f"MaxRequestWorkers {s['workers']}" if t == "proxy_http" else
            f"N={n} nginx worker_connections {s['conns']}, worker_rlimit_nofile {s['nofile']}"
            for n, t, s in sizing))
        out("")
    behind = [d for d in rows if d["target"] != "direct" and d.get("added_p50_ms") is not None
              and d["added_p50_ms"] > int(a.delay_ms) / 4]
    if behind:
        out("Behind schedule (added p50 delay over a quarter of the chunk interval): "
            + ", ".join(f"{NAMES[d['target']]} N={d['n']} (+{d['added_p50_ms']:.0f} ms)"
                        for d in behind)
            + ". Such a server cannot relay the chunks as fast as they come on this "
            "machine at that moment (its CPU, or the machine's, is saturated): chunks "
            "queue, several go in one read and one write, so its CPU and system calls "
            "per chunk are those of a backlog, lower than in the steady state.")
        out("")
    if problems:
        out("## ERRORS: this run is not a valid result")
        out("")
        for p in problems:
            out(f"- {p}")
        out("")
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        f.write(text + "\n")
    with open(a.json, "w") as f:
        json.dump({"raw": raw, "rows": rows, "ratios": summary, "problems": problems}, f,
                  indent=1)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
