"""A soak: N mixed requests against one httpd (event MPM, the module, the
mock upstream), from several client processes at once.

    /usr/bin/python3 tests/soak/soak.py [-n N] [--workers W] [--out FILE.md]

The mix: plain and streamed answers, streams the client leaves mid-way,
upstream 4xx/5xx passed through, the proxy's own 400/413/405/404, and
upstream hang-ups (before the answer: 502; mid-stream: an SSE error event).
Measured: every request answered with the status class its kind expects
(mismatches are counted and shown), the RSS of all httpd processes sampled
over time (growth after a warm-up of 10% of the requests, in KiB per 10k
requests, from a least-squares fit), error-log lines at warn or above (the
hang-ups' own "upstream request failed" lines are expected, one per
hang-up; anything else is noise), and that the access log has one line per
request sent. Nothing here is timed against a limit: the machine is noisy.
"""

import argparse
import datetime
import http.client
import json
import multiprocessing
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from harness import MESSAGES, REPO, Httpd, MockUpstream, proxy_location, wait_for  # noqa: E402

# kind -> (weight, expected status or statuses)
MIX = {
    "plain": (30, (200,)),
    "stream": (25, (200,)),
    "client_abort": (8, (200,)),
    "upstream_4xx": (5, (400, 429)),
    "upstream_5xx": (5, (500, 503)),
    "bad_json": (6, (400,)),
    "too_large": (4, (413,)),
    "wrong_method": (4, (405,)),
    "unknown_path": (3, (404,)),
    "hangup_before_answer": (3, (502,)),
    "hangup_mid_stream": (7, (200,)),
}
# kinds whose every request must leave exactly one "upstream request failed" error
HANGUPS = ("hangup_before_answer", "hangup_mid_stream")
REACH_UPSTREAM = ("plain", "stream", "client_abort", "upstream_4xx", "upstream_5xx") + HANGUPS
WARN_OR_WORSE = re.compile(r"\[(?:[a-z_0-9]+:)?(warn|error|crit|alert|emerg)\]")


def config(mock_api):
    locations = (proxy_location(mock_api)
                 + proxy_location(mock_api, "OpenAIProxyMaxRequestBody 1K", path="/small"))
    return f"""
# the soak's own settings (after the harness's: these win)
LogLevel warn
MaxConnectionsPerChild 0
StartServers 2
MinSpareThreads 25
MaxSpareThreads 100
Include {REPO}/conf/openai_proxy_log.conf
CustomLog "{{workdir}}/usage.log" openai_proxy
{locations}"""


def schedule(n, seed=7, only=None):
    kinds = [k for k, (w, _) in MIX.items() for _ in range(w) if only in (None, k)]
    rng = random.Random(seed)
    return [rng.choice(kinds) for _ in range(n)]


def request_for(kind, i):
    """(method, path, body bytes or None, whether to leave mid-stream)."""
    mock = {}
    body = {"messages": MESSAGES}
    if kind == "stream":
        body["stream"] = True
        mock = {"chunks": 5, "chunk_delay": 0}
    elif kind == "client_abort":
        body["stream"] = True
        mock = {"chunks": 40, "chunk_delay": 0.02}
    elif kind == "upstream_4xx":
        mock = {"status": (400, 429)[i % 2]}
    elif kind == "upstream_5xx":
        mock = {"status": (500, 503)[i % 2]}
        body["stream"] = bool(i % 4 < 2)
    elif kind == "hangup_before_answer":
        mock = {"hangup_before_headers": True}
    elif kind == "hangup_mid_stream":
        body["stream"] = True
        mock = {"chunks": 6, "chunk_delay": 0, "hangup_after": 3}
    elif kind == "bad_json":
        return "POST", "/v1", b'{"messages": [', False
    elif kind == "too_large":
        return "POST", "/small", json.dumps(
            {"messages": [{"role": "user", "content": "x" * 2048}]}).encode(), False
    elif kind == "wrong_method":
        return "GET", "/v1", None, False
    elif kind == "unknown_path":
        return "POST", "/v1/embeddings", b'{"input":"x"}', False
    if mock:
        body["mock"] = mock
    return "POST", "/v1", json.dumps(body).encode(), kind == "client_abort"


def check_body(kind, status, body):
    """Whether an answer of this kind is what the proxy should send."""
    if kind == "stream":
        return body.rstrip().endswith(b"data: [DONE]")
    if kind == "hangup_mid_stream":
        return b"event: error" in body and b"[DONE]" not in body
    if kind in ("plain",):
        return b'"chat.completion"' in body
    if status >= 400:
        return body.startswith(b"{") and b"error" in body
    return True


def one_request(port, kind, i):
    method, path, body, leave = request_for(kind, i)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        if leave:
            resp.read1(65536)  # the first events, then the client leaves
            conn.sock.shutdown(socket.SHUT_RDWR)
            return resp.status, True
        data = resp.read()
        return resp.status, check_body(kind, resp.status, data)
    finally:
        conn.close()


def worker(port, jobs, progress, results):
    counts, mismatches = {}, []
    for i, kind in jobs:
        try:
            status, body_ok = one_request(port, kind, i)
        except (OSError, http.client.HTTPException) as e:
            status, body_ok = f"{type(e).__name__}: {e}", False
        ok = status in MIX[kind][1] and body_ok
        c = counts.setdefault(kind, [0, 0])
        c[0] += 1
        c[1] += 0 if ok else 1
        if not ok and len(mismatches) < 20:
            mismatches.append((i, kind, status, body_ok))
        with progress.get_lock():
            progress.value += 1
    results.put((counts, mismatches))


def httpd_processes(parent_pid):
    """{pid: rss_kib} of the httpd parent and its children."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if int(pid) == parent_pid or int(fields.get("PPid", "0").strip()) == parent_pid:
            if "VmRSS" in fields:
                out[int(pid)] = int(fields["VmRSS"].split()[0])
    return out


def slope_per_10k(points):
    """Least-squares slope of (requests, KiB), in KiB per 10,000 requests."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    sxy = sum((x - mx) * (y - my) for x, y in points)
    return 0.0 if sxx == 0 else sxy / sxx * 10000


def count_lines(path):
    if not os.path.exists(path):
        return 0
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def run(n, workers=8, sample_every=0.5, keep=False, log=print, only=None):
    workdir = tempfile.mkdtemp(prefix="oaip-soak-")
    os.chmod(workdir, 0o755)
    mock = MockUpstream(workdir).start()
    server = Httpd(workdir, config(mock.api).replace("{workdir}", workdir), name="soak")
    server.start()
    try:
        return _soak(server, mock, n, workers, sample_every, log, only)
    finally:
        server.stop()
        mock.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"work directory kept: {workdir}")


def _soak(server, mock, n, workers, sample_every, log, only):
    plan = schedule(n, only=only)
    mock.reset()
    progress = multiprocessing.Value("l", 0)
    results = multiprocessing.Queue()
    procs = [multiprocessing.Process(
        target=worker, args=(server.port, [(i, plan[i]) for i in range(w, n, workers)],
                             progress, results)) for w in range(workers)]
    samples = []  # (requests done, total RSS KiB, {pid: KiB})
    pids_at_start = set(httpd_processes(server.proc.pid))
    started = time.monotonic()
    for p in procs:
        p.start()
    done = threading.Event()

    def sample():
        last_report = 0
        while not done.is_set():
            rss = httpd_processes(server.proc.pid)
            samples.append((progress.value, sum(rss.values()), rss))
            if progress.value - last_report >= max(n // 10, 1):
                last_report = progress.value
                log(f"  {progress.value}/{n} requests, httpd RSS {sum(rss.values())} KiB")
            done.wait(sample_every)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    collected = [results.get() for _ in procs]
    for p in procs:
        p.join()
    elapsed = time.monotonic() - started
    done.set()
    sampler.join()
    final_rss = httpd_processes(server.proc.pid)
    samples.append((progress.value, sum(final_rss.values()), final_rss))

    counts, mismatches = {}, []
    for c, m in collected:
        for kind, (total, bad) in c.items():
            counts.setdefault(kind, [0, 0])
            counts[kind][0] += total
            counts[kind][1] += bad
        mismatches += m
    sent = sum(total for total, _ in counts.values())

    # every request leaves an access log line once httpd finished it
    # (a stream the client left ends when the module notices)
    try:
        wait_for(lambda: count_lines(server.access_log) >= sent, 60, "the access log")
    except TimeoutError:
        pass
    access_lines = count_lines(server.access_log)

    with open(server.error_log, "rb") as f:
        lines = f.read().decode("utf-8", "replace").splitlines()
    loud = [line for line in lines if WARN_OR_WORSE.search(line)]
    expected = [line for line in loud if "upstream request failed" in line]
    noise = [line for line in loud if "upstream request failed" not in line]
    hangups = sum(counts.get(k, [0])[0] for k in HANGUPS)
    upstream_expected = sum(counts.get(k, [0])[0] for k in REACH_UPSTREAM)
    upstream_got = mock.stats()["requests"]

    sanitizer = server.sanitizer_reports()  # OAIP_ASAN_PRELOAD runs: reports of this httpd

    # memory of the processes that lived through the whole soak (the MPM may
    # start more children under load; their start-up would read as growth)
    steady = pids_at_start & set(final_rss)
    warm = n // 10
    after = [(x, sum(kib for pid, kib in rss.items() if pid in steady))
             for x, _, rss in samples if x >= warm]
    second_half = [(x, y) for x, y in after if x >= n // 2]
    per_process = {}
    for x, _, rss in samples:
        if x >= warm:
            for pid, kib in rss.items():
                per_process.setdefault(pid, []).append((x, kib))
    # the curve: total RSS at the first sample past each tenth of the run
    curve = []
    for tenth in range(1, 11):
        mark = n * tenth // 10
        at = next((y for x, y, _ in samples if x >= mark), samples[-1][1])
        curve.append((mark, at))
    return {
        "rss_curve_kib": curve,
        "requests": n,
        "sent": sent,
        "workers": workers,
        "seconds": round(elapsed, 1),
        "requests_per_second": round(sent / elapsed, 1) if elapsed else 0,
        "counts": {k: {"sent": t, "mismatched": b} for k, (t, b) in sorted(counts.items())},
        "mismatched": sum(b for _, b in counts.values()),
        "mismatch_examples": mismatches[:20],
        "access_log_lines": access_lines,
        "upstream_requests_expected": upstream_expected,
        "upstream_requests_seen": upstream_got,
        "error_log_warn_or_worse": len(loud),
        "error_log_expected_hangup_lines": len(expected),
        "hangup_requests": hangups,
        "error_log_noise": noise[:20],
        "error_log_noise_count": len(noise),
        "httpd_pids_start": sorted(pids_at_start),
        "httpd_pids_end": sorted(final_rss),
        "rss_kib_at_warmup": after[0][1] if after else None,
        "rss_kib_end": samples[-1][1],
        "rss_kib_max_after_warmup": max((y for _, y in after), default=None),
        "rss_growth_kib_per_10k": round(slope_per_10k(after), 1),
        "rss_growth_second_half_kib_per_10k": round(slope_per_10k(second_half), 1),
        "rss_growth_kib_per_10k_by_process": {
            pid: round(slope_per_10k(pts), 1) for pid, pts in sorted(per_process.items())},
        "rss_samples": len(samples),
        "sanitizer_reports": [text[:3000] for text in sanitizer],
    }


def verdict(r):
    """The failures a soak run shows (empty: clean)."""
    problems = []
    if r["mismatched"]:
        problems.append(f"{r['mismatched']} answers of an unexpected status or shape")
    if r["access_log_lines"] != r["sent"]:
        problems.append(f"access log has {r['access_log_lines']} lines for {r['sent']} requests")
    if r["error_log_noise_count"]:
        problems.append(f"{r['error_log_noise_count']} unexpected warn/error lines")
    if r["error_log_expected_hangup_lines"] != r["hangup_requests"]:
        problems.append(f"{r['error_log_expected_hangup_lines']} 'upstream request failed' "
                        f"lines for {r['hangup_requests']} hang-ups")
    # libcurl sends a request again, once, when a reused connection closes
    # without an answer (it takes the connection for a stale one): a hang-up
    # before the answer may reach the upstream twice
    retries = r["counts"].get("hangup_before_answer", {}).get("sent", 0)
    if not (r["upstream_requests_expected"] <= r["upstream_requests_seen"]
            <= r["upstream_requests_expected"] + retries):
        problems.append(f"upstream saw {r['upstream_requests_seen']} requests, expected "
                        f"{r['upstream_requests_expected']} (+ up to {retries} retries)")
    if r["sanitizer_reports"]:
        problems.append(f"{len(r['sanitizer_reports'])} sanitizer reports")
    lost = set(r["httpd_pids_start"]) - set(r["httpd_pids_end"])
    if lost:
        problems.append(f"httpd processes {sorted(lost)} ended during the soak")
    return problems


def markdown(r, command):
    commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "mod_openai_proxy"],
                           capture_output=True, text=True).stdout.strip()
    rows = "\n".join(f"| {k} | {v['sent']} | {v['mismatched']} |" for k, v in r["counts"].items())
    problems = verdict(r)
    per_proc = ", ".join(f"{pid}: {v}" for pid, v in r["rss_growth_kib_per_10k_by_process"].items())
    return f"""# Soak: latest run

- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}
- commit: `{commit}`{' (module sources modified)' if dirty else ''}
- command: `{command}`
- {r['sent']} requests from {r['workers']} client processes in {r['seconds']} s
  ({r['requests_per_second']} req/s), one httpd (event MPM, 2 children x 25 threads,
  MaxConnectionsPerChild 0), the mock upstream on loopback
- verdict: {'clean' if not problems else '; '.join(problems)}

| kind | sent | unexpected answers |
|---|--:|--:|
{rows}

| measure | value |
|---|--:|
| answers of an unexpected status or shape | {r['mismatched']} |
| access log lines / requests sent | {r['access_log_lines']} / {r['sent']} |
| requests the upstream saw / expected (libcurl retries a hang-up before the answer once on a reused connection) | {r['upstream_requests_seen']} / {r['upstream_requests_expected']} |
| error log lines at warn or above | {r['error_log_warn_or_worse']} |
| of which the hang-ups' "upstream request failed" (one per hang-up: {r['hangup_requests']}) | {r['error_log_expected_hangup_lines']} |
| of which unexpected | {r['error_log_noise_count']} |
| httpd processes (parent + children) at start / end; all of the start still there | {len(r['httpd_pids_start'])} / {len(r['httpd_pids_end'])}; {not (set(r['httpd_pids_start']) - set(r['httpd_pids_end']))} |
| httpd RSS of those processes after warm-up ({r['requests'] // 10:,} requests) | {r['rss_kib_at_warmup']} KiB |
| httpd RSS at the end (all processes) | {r['rss_kib_end']} KiB |
| highest RSS after warm-up | {r['rss_kib_max_after_warmup']} KiB |
| RSS growth after warm-up (least squares over {r['rss_samples']} samples) | {r['rss_growth_kib_per_10k']} KiB per 10k requests |
| RSS growth over the second half of the run | {r['rss_growth_second_half_kib_per_10k']} KiB per 10k requests |
| by process, after warm-up (pid: KiB per 10k) | {per_proc} |

httpd RSS (all processes, KiB) after each tenth of the requests:

| requests | {' | '.join(f"{x:,}" for x, _ in r['rss_curve_kib'])} |
|---|{'--:|' * len(r['rss_curve_kib'])}
| RSS KiB | {' | '.join(str(y) for _, y in r['rss_curve_kib'])} |

Unexpected error log lines (first 20): {json.dumps(r['error_log_noise']) if r['error_log_noise'] else 'none'}

Mismatches (first 20): {json.dumps(r['mismatch_examples']) if r['mismatch_examples'] else 'none'}
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=100000, help="requests (default 100000)")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--out", help="write the figures as markdown here")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--only", choices=sorted(MIX), help="one kind of request only (to find "
                    "which kind makes memory grow)")
    args = ap.parse_args()
    result = run(args.n, args.workers, keep=args.keep, only=args.only)
    print(json.dumps(result, indent=1))
    if args.out:
        command = os.environ.get("OAIP_SOAK_COMMAND", " ".join(sys.argv))
        with open(args.out, "w") as f:
            f.write(markdown(result, command))
    problems = verdict(result)
    print("soak:", "clean" if not problems else "; ".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
