-- wrk script for bench_serving.py: POST JSON bodies read from a file (one body per line), round-robin, and print
-- the run's statistics as one JSON line prefixed "WRK_JSON " (latencies in microseconds).
-- Usage: wrk -t1 -c32 -d10s -s wrk_post.lua http://127.0.0.1:8000/v1/predict -- bodies.jsonl [api-key]

local prepared = {}
local position = 0
local threads = {}
non_2xx = 0 -- per thread (each wrk thread has its own Lua state); summed in done()

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(args[1], "r"), "cannot open the bodies file " .. tostring(args[1]))
  local headers = { ["Content-Type"] = "application/json" }
  if args[2] then
    headers["X-API-Key"] = args[2]
  end
  for line in file:lines() do
    if #line > 0 then
      prepared[#prepared + 1] = wrk.format("POST", nil, headers, line)
    end
  end
  file:close()
  assert(#prepared > 0, "no bodies in " .. args[1])
  position = math.random(#prepared) - 1 -- threads start at different bodies
end

function request()
  position = position % #prepared + 1
  return prepared[position]
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non_2xx = non_2xx + 1
  end
end

function done(summary, latency, rates)
  local bad = 0
  for _, thread in ipairs(threads) do
    bad = bad + (thread:get("non_2xx") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "non_2xx": %d, ' ..
      '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
      '"latency_us": {"mean": %.1f, "p50": %d, "p90": %d, "p99": %d, "max": %d}}\n',
    summary.requests, summary.duration, summary.bytes, bad,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max
  ))
end
