-- wrk script of the benchmark: POSTs a Chat Completions request and prints,
-- at the end, one machine-readable line (BENCH_JSON {...}) that run.sh keeps.
-- BENCH_STREAM=1 adds "stream":true (mod_openai_proxy decides streaming from
-- the body; nginx and mod_proxy_http ignore it, the URL picks the SSE body).
-- No response() hook: it would make wrk parse every response in Lua and
-- slow the load generator down, which shares the 2 cores with the servers.

local body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}'
if os.getenv("BENCH_STREAM") == "1" then
    body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}],"stream":true}'
end

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
        '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
        '"lat_mean_us":%.1f,"lat_p50_us":%d,"lat_p90_us":%d,"lat_p99_us":%d,"lat_max_us":%d}\n',
        summary.requests, summary.duration, summary.bytes,
        e.connect, e.read, e.write, e.status, e.timeout,
        latency.mean, latency:percentile(50), latency:percentile(90),
        latency:percentile(99), latency.max))
end
