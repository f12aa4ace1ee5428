-- wrk script: single-row PUTs of distinct machines, for the issue 2 target
-- (32 concurrent clients, acknowledged writes/s). Each connection writes its
-- own keys, so every request is a new row.
--
--   strata agent &   # the embedded default, API on 127.0.0.1:7070
--   wrk -t2 -c32 -d20s -s docs/bench/put.lua http://127.0.0.1:7070
local counter = 0
local thread_id = 0

function setup(thread)
  thread:set("id", thread_id)
  thread_id = thread_id + 1
end

function init(args)
  counter = 0
end

request = function()
  counter = counter + 1
  local key = string.format("w%d-%09d", id, counter)
  local body = string.format('{"id":"%s","app":"web-frontend","state":"MACHINE_STATE_STARTED","healthy":true,"host":"host-ord-rack17-unit-0042.internal","private_ip":"10.17.42.199","updatedAt":"2026-11-26T14:00:00Z"}', key)
  return wrk.format("PUT", "/v1/regional/machines/" .. key, {["Content-Type"] = "application/json"}, body)
end

done = function(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format("acknowledged writes/s: %.0f (non-2xx or errors: %d)\n", (summary.requests - errors) / (summary.duration / 1e6), errors))
  io.write(string.format("latency p50 %.2f ms, p99 %.2f ms\n", latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
