-- Shared by read.lua and write.lua: the token header, a tally of response status codes per
-- thread, and one machine-readable summary line printed by done() for scripts/bench-http.
--
-- Environment: BENCH_TOKEN (sent as X-Vault-Token), BENCH_LABEL (names the run in the output).

local token = os.getenv("BENCH_TOKEN")
if token == nil or token == "" then
  error("BENCH_TOKEN is not set")
end
wrk.headers["X-Vault-Token"] = token

-- setup() runs in the main Lua state once per thread before the run: keep the threads so that
-- done() can read their tallies, and give each a number (write.lua uses it in key names).
local threads = {}
function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

-- response() runs in each thread's own state: count every status code, and show the body of the
-- first failure of each thread so that a misconfigured run explains itself.
statuses = {}
local shown = false
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status >= 300 and not shown then
    shown = true
    io.stderr:write(string.format("first non-2xx response: %d %s\n", status, (body or ""):sub(1, 300)))
  end
end

-- done() runs in the main state after the run: add the threads' tallies up and print them with
-- the rate and latency percentiles on lines starting "BENCH" (latencies are in microseconds).
function done(summary, latency, requests)
  local total, non2xx = {}, 0
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      total[status] = (total[status] or 0) + n
      if status < 200 or status > 299 then non2xx = non2xx + n end
    end
  end
  local codes = {}
  for status, n in pairs(total) do table.insert(codes, status .. ":" .. n) end
  table.sort(codes)
  local e = summary.errors
  io.write(string.format(
    "BENCH label=%s requests=%d duration_us=%d rps=%.1f p50_us=%d p99_us=%d max_us=%d non2xx=%d " ..
    "err_connect=%d err_read=%d err_write=%d err_timeout=%d statuses=%s\n",
    os.getenv("BENCH_LABEL") or "-", summary.requests, summary.duration,
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), latency.max, non2xx,
    e.connect, e.read, e.write, e.timeout, table.concat(codes, ",")))
end
