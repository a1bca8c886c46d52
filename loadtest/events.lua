-- wrk script for loadtest/run.sh: every request is the same POST /v1/events with the design's sample event
-- (tests/fixtures/sample_event.json, site "demo"). The body file is named by LOADTEST_BODY; LOADTEST_BEARER is
-- the tenant's server secret, sent as a server-side caller sends it (no Origin, Authorization: Bearer).
--
-- No response() hook on purpose: it makes wrk call into Lua for every response and slows the client down for
-- both targets. wrk counts every status >= 400 itself ("Non-2xx or 3xx responses"), and run.sh checks the spool.

local path = os.getenv("LOADTEST_BODY")
if path == nil or path == "" then
  error("LOADTEST_BODY must name the request body file")
end
local bearer = os.getenv("LOADTEST_BEARER")
if bearer == nil or bearer == "" then
  error("LOADTEST_BEARER must hold the tenant's server secret")
end
local f = assert(io.open(path, "rb"))
local body = f:read("*a")
f:close()

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. bearer
wrk.body = body

-- One machine-readable line for run.sh; the times are microseconds.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "LOADTEST requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d " ..
    "status_errors=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max,
    e.status, e.connect, e.read, e.write, e.timeout))
end
