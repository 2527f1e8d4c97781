#!/usr/bin/python3
"""Streaming client of the benchmark (Python 3 standard library, asyncio).

    sse_client.py latency --url URL [--streams 10 --chunks 40 --chunk-delay 0.01]
        Streams one after another through URL to the mock upstream with
        "mock":{"chunks":N,"chunk_delay":S,"timestamps":true}; every chunk
        carries the mock's send time (mock_sent_at, time.time()). Prints JSON
        with the per-chunk delay (arrival - sent) p50/p99 in ms.

    sse_client.py streams --url URL --count 1000 --httpd-pid PID [--chunks 20
                  --chunk-delay 0.5]
        Opens COUNT streams at once, samples the RSS of the httpd process tree
        every 0.2 s while all COUNT are open (headers and first event received,
        [DONE] not yet) and keeps the first and the largest such sample.
        Counts that every stream delivered every event and [DONE]. Prints JSON.

    sse_client.py rss --httpd-pid PID
        Prints the RSS (and PSS) of the httpd parent and its children as JSON.

    sse_client.py cpu --httpd-pid PID
        Prints the CPU time (user + system, all threads) of PID and its
        children in microseconds (works for nginx's master too).

The HTTP/1.1 client is hand-made so that arrival times are taken as soon as
an HTTP chunk is decoded: Connection: close, chunked or length-delimited or
until-EOF bodies, SSE events split on a blank line.
"""

import argparse
import asyncio
import json
import os
import sys
import time
import urllib.parse

EXPECT_EVENTS_EXTRA = 2  # the mock sends a role event, N content events, a stop event


def request_body(chunks, chunk_delay, timestamps):
    return json.dumps({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Hello"}],
        "stream": True,
        "mock": {"chunks": chunks, "chunk_delay": chunk_delay, "timestamps": timestamps},
    }, separators=(",", ":")).encode()


# --------------------------------------------------------------------------
# process memory
# --------------------------------------------------------------------------

def _status_kib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def process_tree(parent):
    pids = [parent]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # the comm field may hold spaces: the ppid is the 2nd field after ')'
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            pids.append(int(entry))
    return pids


def rss_sample(parent, pss=False):
    pids = process_tree(parent)
    sample = {"procs": len(pids),
              "rss_kib": sum(_status_kib(p, "VmRSS") for p in pids),
              "threads": sum(_status_kib(p, "Threads") for p in pids)}
    if pss:
        sample["pss_kib"] = sum(_pss_kib(p) for p in pids)
    return sample


def cpu_us(parent):
    ticks = 0
    for pid in process_tree(parent):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks * 1_000_000 // os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------
# HTTP/1.1 + SSE
# --------------------------------------------------------------------------

class Stream:
    """One streamed request; collects events and their arrival times."""

    def __init__(self):
        self.status = None
        self.events = 0          # data events other than [DONE]
        self.done = False
        self.opened = False      # headers and a first event received
        self.delays_ms = []      # arrival - mock_sent_at, per event
        self.error = None
        self._buf = b""

    def feed(self, data, arrived, want_delays):
        self._buf += data
        while True:
            end = self._buf.find(b"\n\n")
            if end < 0:
                return
            event, self._buf = self._buf[:end], self._buf[end + 2:]
            for line in event.split(b"\n"):
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    self.done = True
                    continue
                self.events += 1
                self.opened = True
                if want_delays:
                    sent = json.loads(payload).get("mock_sent_at")
                    if sent is not None:
                        self.delays_ms.append((arrived - sent) * 1000.0)


async def run_stream(url, body, stream, want_delays, timeout):
    u = urllib.parse.urlsplit(url)
    host, port = u.hostname, u.port or 80
    path = u.path + (("?" + u.query) if u.query else "")
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        writer.write((f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                      f"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
                      f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
                     + body)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout)
        parts = status_line.split()
        if len(parts) < 2:
            raise ConnectionError(f"bad status line {status_line[:60]!r}")
        stream.status = int(parts[1])
        headers = {}
        while True:
            line = await asyncio.wait_for(reader.readline(), timeout)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                size_line = await asyncio.wait_for(reader.readline(), timeout)
                if not size_line:
                    raise ConnectionError("connection closed inside the chunked body")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    break
                data = await asyncio.wait_for(reader.readexactly(size + 2), timeout)
                stream.feed(data[:-2], time.time(), want_delays)
        else:
            left = int(headers["content-length"]) if "content-length" in headers else None
            while left is None or left > 0:
                data = await asyncio.wait_for(reader.read(65536), timeout)
                if not data:
                    break
                if left is not None:
                    left -= len(data)
                stream.feed(data, time.time(), want_delays)
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError,
            KeyError) as exc:
        stream.error = f"{type(exc).__name__}: {exc}"
    finally:
        if writer is not None:
            writer.close()


def percentile(values, pct):
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * pct / 100.0
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# --------------------------------------------------------------------------
# modes
# --------------------------------------------------------------------------

async def mode_latency(a):
    body = request_body(a.chunks, a.chunk_delay, True)
    delays, statuses, complete, errors = [], {}, 0, []
    for _ in range(a.streams):
        s = Stream()
        await run_stream(a.url, body, s, True, a.timeout)
        statuses[str(s.status)] = statuses.get(str(s.status), 0) + 1
        if s.error:
            errors.append(s.error)
        if s.done and s.events == a.chunks + EXPECT_EVENTS_EXTRA and not s.error:
            complete += 1
        delays += s.delays_ms
    return {"url": a.url, "streams": a.streams, "complete": complete, "statuses": statuses,
            "errors": errors[:5], "chunks": len(delays),
            "expected_chunks": a.streams * (a.chunks + EXPECT_EVENTS_EXTRA),
            "p50_ms": percentile(delays, 50), "p99_ms": percentile(delays, 99),
            "mean_ms": sum(delays) / len(delays) if delays else None,
            "max_ms": max(delays) if delays else None}


async def mode_streams(a):
    body = request_body(a.chunks, a.chunk_delay, False)
    streams = [Stream() for _ in range(a.count)]
    result = {"url": a.url, "count": a.count, "chunks": a.chunks,
              "chunk_delay": a.chunk_delay, "all_open_samples": 0}
    finished = asyncio.Event()

    async def sampler():
        peak = None
        first_all_open = None
        max_open = 0
        while not finished.is_set():
            open_now = sum(1 for s in streams if s.opened and not s.done and not s.error)
            max_open = max(max_open, open_now)
            if open_now == a.count:
                sample = rss_sample(a.httpd_pid, pss=True)
                result["all_open_samples"] += 1
                if first_all_open is None:
                    first_all_open = dict(sample, t=round(time.monotonic() - t0, 2))
                if peak is None or sample["rss_kib"] > peak["rss_kib"]:
                    peak = sample
            try:
                await asyncio.wait_for(finished.wait(), 0.2)
            except asyncio.TimeoutError:
                pass
        result.update(max_open=max_open, all_open=first_all_open, all_open_peak=peak)

    t0 = time.monotonic()
    sampler_task = asyncio.create_task(sampler())
    await asyncio.gather(*(run_stream(a.url, body, s, False, a.timeout) for s in streams))
    finished.set()
    await sampler_task
    statuses, errors = {}, []
    for s in streams:
        statuses[str(s.status)] = statuses.get(str(s.status), 0) + 1
        if s.error:
            errors.append(s.error)
    result.update(
        elapsed_s=round(time.monotonic() - t0, 2), statuses=statuses,
        complete=sum(1 for s in streams if s.done and not s.error
                     and s.events == a.chunks + EXPECT_EVENTS_EXTRA),
        events=sum(s.events for s in streams),
        expected_events=a.count * (a.chunks + EXPECT_EVENTS_EXTRA),
        done=sum(1 for s in streams if s.done), errors=len(errors),
        error_examples=sorted(set(errors))[:5])
    return result


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("latency")
    p.add_argument("--url", required=True)
    p.add_argument("--streams", type=int, default=10)
    p.add_argument("--chunks", type=int, default=40)
    p.add_argument("--chunk-delay", type=float, default=0.01)
    p.add_argument("--timeout", type=float, default=30)
    p = sub.add_parser("streams")
    p.add_argument("--url", required=True)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--chunks", type=int, default=20)
    p.add_argument("--chunk-delay", type=float, default=0.5)
    p.add_argument("--httpd-pid", type=int, required=True)
    p.add_argument("--timeout", type=float, default=60)
    p = sub.add_parser("rss")
    p.add_argument("--httpd-pid", type=int, required=True)
    p = sub.add_parser("cpu")
    p.add_argument("--httpd-pid", type=int, required=True)
    a = ap.parse_args()

    if a.mode == "rss":
        out = rss_sample(a.httpd_pid, pss=True)
    elif a.mode == "cpu":
        out = cpu_us(a.httpd_pid)
    else:
        if a.mode == "streams":
            import resource
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            want = min(hard, max(soft, a.count * 2 + 256))
            if soft < want:
                resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        out = asyncio.run(mode_latency(a) if a.mode == "latency" else mode_streams(a))
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
