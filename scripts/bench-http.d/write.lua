-- wrk script: KV v2 writes, POST /v1/secret/data/bench/w-<thread>-<n> with the body
-- {"data":{"value":"..."}}. n cycles over BENCH_WRITE_KEYS keys (default 1000) so the run
-- exercises both new keys and new versions of existing ones; BENCH_WRITE_KEYS=1 writes one key
-- per thread; BENCH_PREFIX (default w) starts the names, so several wrk processes (one per hub,
-- scripts/bench-hubs) write apart. Both servers acknowledge a write only once it is durable (OpenBao: raft log
-- fsync; coffer: its store's commit). Token from BENCH_TOKEN.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "common.lua")

local keys = tonumber(os.getenv("BENCH_WRITE_KEYS") or "1000")
local headers = { ["X-Vault-Token"] = wrk.headers["X-Vault-Token"], ["Content-Type"] = "application/json" }
local prefix = os.getenv("BENCH_PREFIX") or "w"
local n = 0

function request()
  n = n + 1
  -- id is set per thread by setup() in common.lua.
  local path = string.format("/v1/secret/data/bench/%s-%d-%d", prefix, id or 0, n % keys)
  -- A 32-character value, different on every write.
  local body = string.format('{"data":{"value":"%032d"}}', n)
  return wrk.format("POST", path, headers, body)
end
