-- wrk script: KV v2 read of one secret, GET /v1/secret/data/bench/key (written once beforehand
-- by scripts/bench-http). Token from BENCH_TOKEN.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "common.lua")

wrk.method = "GET"
wrk.path = "/v1/secret/data/bench/key"
