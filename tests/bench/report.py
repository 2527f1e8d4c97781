#!/usr/bin/python3
"""Turns the raw results of run.sh into one markdown report (stdout + --out)
and one JSON file (--json). Exits 1 when any measurement had an error (wrk
socket errors or non-2xx answers, errors in httpd's log, incomplete streams):
a benchmark with errors is not a result."""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys

TARGETS = ("direct", "proxy_http", "oaip")
SHORT_TARGETS = ("direct", "ceiling", "nginx_proxy", "proxy_http", "oaip")
NAMES = {"direct": "direct (nginx)", "ceiling": "ceiling (httpd)",
         "nginx_proxy": "nginx proxy_pass", "proxy_http": "mod_proxy_http",
         "oaip": "mod_openai_proxy"}
LABELS = {"plain": "non-stream", "sse": "stream (SSE)"}


def load_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def version(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (out.stdout + out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"


def ms(us):
    return us / 1000.0


def fmt_ratio(x):
    return "n/a" if x is None else f"{x:.2f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wrk", required=True)
    ap.add_argument("--latency", required=True)
    ap.add_argument("--memory", required=True)
    ap.add_argument("--duration", required=True)
    ap.add_argument("--warmup", required=True)
    ap.add_argument("--streams", type=int, required=True)
    ap.add_argument("--stream-chunks", required=True)
    ap.add_argument("--stream-delay", required=True)
    ap.add_argument("--lat-streams", required=True)
    ap.add_argument("--lat-chunks", required=True)
    ap.add_argument("--lat-delay", required=True)
    ap.add_argument("--module-info", default="?")
    ap.add_argument("--out", required=True)
    ap.add_argument("--json", required=True)
    a = ap.parse_args()

    wrk = load_jsonl(a.wrk)
    lat = load_jsonl(a.latency)
    mem = load_jsonl(a.memory)
    problems = []
    lines = []
    out = lines.append

    out("# mod_openai_proxy benchmark: short requests (run.sh)")
    out("")
    out(f"- run: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}, "
        f"{os.cpu_count()} CPUs, Linux {platform.release()}")
    out(f"- module: {a.module_info}")
    out(f"- {version(['/usr/sbin/apache2', '-v'])}; "
        f"{version(['/usr/sbin/nginx', '-v'])}; {version(['wrk', '--version'])}")
    out(f"- load: wrk, POST of a Chat Completions body, {a.warmup} s warm-up then "
        f"{a.duration} s measured per cell, keep-alive connections; everything "
        "(wrk, nginx, httpd) shares the same CPUs, so compare ratios, not absolute numbers")
    out("")

    # ---- throughput table
    cells = {}
    for rec in wrk:
        w = rec["wrk"]
        errors = sum(v for k, v in w.items() if k.startswith("err_"))
        cells[(rec["scenario"], rec["conc"], rec["target"])] = {
            "rps": w["requests"] / w["duration_us"] * 1e6,
            "p50": ms(w["lat_p50_us"]), "p99": ms(w["lat_p99_us"]),
            "bytes_per_resp": w["bytes"] / max(w["requests"], 1),
            "cpu_us_per_req": rec.get("server_cpu_us", 0) / max(w["requests"], 1),
            "wrk_errors": errors, "log_errors": rec["log_errors"], "raw": w}
        if errors or rec["log_errors"]:
            problems.append(
                f"wrk {rec['scenario']} {rec['target']} c={rec['conc']}: "
                f"non-2xx {w['err_status']}, connect {w['err_connect']}, read {w['err_read']}, "
                f"write {w['err_write']}, timeout {w['err_timeout']}, "
                f"httpd log errors {rec['log_errors']}")
    out("## Short requests (wrk)")
    out("")
    out("req/s per target; **oaip / proxy_http** = mod_openai_proxy req/s / mod_proxy_http "
        "req/s; ceiling = an httpd handler that reads the body and answers the same bytes "
        "without any upstream (the most any module in that httpd can do); nginx proxy_pass "
        "= a second nginx in front of the same upstream nginx.")
    out("")
    out("| scenario | conc | direct (nginx) | ceiling (httpd) | nginx proxy_pass "
        "| mod_proxy_http | mod_openai_proxy | **oaip / proxy_http** | ceiling / proxy_http "
        "| p50 / p99 ms: nginx proxy_pass | mod_proxy_http | mod_openai_proxy | errors |")
    out("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    rows = []
    for scenario in ("plain", "sse"):
        concs = sorted({c for (s, c, _) in cells if s == scenario})
        for c in concs:
            got = {t: cells.get((scenario, c, t)) for t in SHORT_TARGETS}
            if not all(got.values()):
                problems.append(f"wrk {scenario} c={c}: no result for "
                                f"{[t for t, v in got.items() if not v]}")
                continue
            d, ce, nx, p, o = (got[t] for t in SHORT_TARGETS)
            ratio = o["rps"] / p["rps"] if p["rps"] else None
            ceil_ratio = ce["rps"] / p["rps"] if p["rps"] else None
            cpu_ratio = (o["cpu_us_per_req"] / p["cpu_us_per_req"]
                         if p["cpu_us_per_req"] else None)
            errs = sum(x["wrk_errors"] + x["log_errors"] for x in got.values())
            out(f"| {LABELS[scenario]} | {c} | {d['rps']:.0f} | {ce['rps']:.0f} "
                f"| {nx['rps']:.0f} | {p['rps']:.0f} | {o['rps']:.0f} "
                f"| **{fmt_ratio(ratio)}** | {fmt_ratio(ceil_ratio)} "
                f"| {nx['p50']:.2f} / {nx['p99']:.2f} | {p['p50']:.2f} / {p['p99']:.2f} "
                f"| {o['p50']:.2f} / {o['p99']:.2f} | {errs} |")
            rows.append({"scenario": scenario, "conc": c, **got,
                         "oaip_over_proxy_http_rps": ratio,
                         "ceiling_over_proxy_http_rps": ceil_ratio,
                         "oaip_over_proxy_http_cpu": cpu_ratio})
    out("")
    out("Server CPU time per request, µs (user + system of all the target's server "
        "processes during the measured run / the requests wrk completed: the upstream "
        "nginx for direct, the proxy nginx alone for nginx proxy_pass, httpd for the "
        "others; never the upstream behind a proxy):")
    out("")
    out("| scenario | conc | nginx (direct) | httpd ceiling | nginx proxy_pass "
        "| httpd mod_proxy_http | httpd mod_openai_proxy | **oaip / proxy_http CPU** |")
    out("|---|--:|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        out(f"| {LABELS[r['scenario']]} | {r['conc']} | "
            + " | ".join(f"{r[t]['cpu_us_per_req']:.1f}" for t in SHORT_TARGETS)
            + f" | **{fmt_ratio(r['oaip_over_proxy_http_cpu'])}** |")
    out("")
    out("Bytes per response as wrk counted them (headers + body; a check that every "
        "path returned the same body): " + ", ".join(
            f"{s}/{NAMES[t]} {cells[(s, c, t)]['bytes_per_resp']:.0f}"
            for s in ("plain", "sse") for t in SHORT_TARGETS
            for c in [max((c for (s2, c, t2) in cells if s2 == s and t2 == t), default=0)]
            if (s, c, t) in cells))
    out("")

    # ---- chunk latency
    out("## Per-chunk latency (mock upstream, streamed, chunks carry their send time)")
    out("")
    out(f"{a.lat_streams} streams one after another, {a.lat_chunks} content chunks each "
        f"(+ role and stop events), {a.lat_delay} s apart; delay = arrival at the client "
        "- mock_sent_at (both time.time() on this machine).")
    out("")
    out("| path | chunks | p50 ms | p99 ms | added p50 / p99 ms over direct |")
    out("|---|--:|--:|--:|--:|")
    by_target = {r["target"]: r for r in lat}
    base = by_target.get("direct", {}).get("result", {})
    for t in TARGETS:
        r = by_target.get(t)
        if not r:
            continue
        res = r["result"]
        if (res["complete"] != res["streams"] or res["chunks"] != res["expected_chunks"]
                or r["log_errors"]):
            problems.append(f"chunk latency {t}: {res['complete']}/{res['streams']} streams "
                            f"complete, {res['chunks']}/{res['expected_chunks']} chunks, "
                            f"statuses {res['statuses']}, errors {res['errors']}, "
                            f"httpd log errors {r['log_errors']}")
        added = "" if t == "direct" or res["p50_ms"] is None else (
            f"{res['p50_ms'] - base['p50_ms']:+.3f} / {res['p99_ms'] - base['p99_ms']:+.3f}")
        p50 = "n/a" if res["p50_ms"] is None else f"{res['p50_ms']:.3f}"
        p99 = "n/a" if res["p99_ms"] is None else f"{res['p99_ms']:.3f}"
        out(f"| {NAMES[t].replace('nginx', 'mock upstream')} | {res['chunks']} | {p50} "
            f"| {p99} | {added or '(baseline)'} |")
    out("")

    # ---- memory
    out(f"## Memory: {a.streams} concurrent open streams")
    out("")
    out(f"Each proxy on a fresh httpd (same config); {a.streams} streams at once to the mock "
        f"upstream, {a.stream_chunks} chunks {a.stream_delay} s apart. RSS = sum of VmRSS "
        "of the httpd parent and its children (shared pages counted in each process); PSS "
        "divides shared pages among them. The loaded figure is the largest of the samples "
        "taken every 0.2 s while all streams were open.")
    out("")
    out("| proxy | idle RSS MiB (procs) | RSS with all open MiB (procs, threads) | PSS idle → open MiB "
        "| RSS per open stream KiB | streams complete |")
    out("|---|--:|--:|--:|--:|--:|")
    per_stream = {}
    for r in mem:
        t, idle, ld = r["target"], r["idle"], r["loaded"]
        ok = (ld["complete"] == ld["count"] and ld["errors"] == 0 and not r["log_errors"])
        if not ok:
            problems.append(f"memory {t}: {ld['complete']}/{ld['count']} streams complete "
                            f"(events {ld['events']}/{ld['expected_events']}, [DONE] "
                            f"{ld['done']}), statuses {ld['statuses']}, errors "
                            f"{ld['error_examples']}, httpd log errors {r['log_errors']}")
        open_s = ld.get("all_open_peak")
        if open_s is None:
            problems.append(f"memory {t}: never had all {ld['count']} streams open at once "
                            f"(at most {ld['max_open']})")
            out(f"| {NAMES[t]} | {idle['rss_kib'] / 1024:.1f} ({idle['procs']}) | never all "
                f"open (max {ld['max_open']}) | | | {ld['complete']}/{ld['count']} |")
            continue
        ps = (open_s["rss_kib"] - idle["rss_kib"]) / ld["count"]
        per_stream[t] = ps
        out(f"| {NAMES[t]} | {idle['rss_kib'] / 1024:.1f} ({idle['procs']}) "
            f"| {open_s['rss_kib'] / 1024:.1f} ({open_s['procs']}, {open_s['threads']}) "
            f"| {idle['pss_kib'] / 1024:.1f} → {open_s.get('pss_kib', 0) / 1024:.1f} "
            f"| {ps:.1f} | {ld['complete']}/{ld['count']} |")
    if "oaip" in per_stream and per_stream.get("proxy_http"):
        out("")
        out(f"RSS per open stream, mod_openai_proxy / mod_proxy_http: "
            f"**{per_stream['oaip'] / per_stream['proxy_http']:.2f}**")
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
        json.dump({"wrk": wrk, "rows": [{k: v for k, v in r.items()} for r in rows],
                   "chunk_latency": lat, "memory": mem, "problems": problems}, f, indent=1,
                  default=str)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
