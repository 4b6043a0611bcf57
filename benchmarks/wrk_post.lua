-- wrk script for bench_serving.py: POST JSON bodies read from a file (one body per line), round-robin, and print
-- the run's statistics as one JSON line prefixed "WRK_JSON " (latencies in microseconds): responses per status, how
-- many were not 2xx, and how many 429s carried a numeric Retry-After (with its smallest and largest value).
-- Usage: wrk -t1 -c32 -d10s -s wrk_post.lua http://127.0.0.1:8000/v1/predict -- bodies.jsonl [api-key]
-- A paced client: a script that runs `dofile("<this file>")` and then defines delay() (milliseconds).

local prepared = {}
local position = 0
local threads = {}
statuses = {} -- per thread (each wrk thread has its own Lua state): status -> responses; summed in done()
retry_after = 0 -- 429s with a numeric Retry-After
retry_after_min = -1
retry_after_max = -1

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
  statuses[status] = (statuses[status] or 0) + 1
  if status == 429 then
    for name, value in pairs(headers) do
      local seconds = string.lower(name) == "retry-after" and tonumber(value)
      if seconds then
        retry_after = retry_after + 1
        if retry_after_min < 0 or seconds < retry_after_min then retry_after_min = seconds end
        if seconds > retry_after_max then retry_after_max = seconds end
      end
    end
  end
end

function done(summary, latency, rates)
  local counts, bad, with_retry, low, high = {}, 0, 0, -1, -1
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses") or {}) do
      counts[status] = (counts[status] or 0) + n
      if status < 200 or status > 299 then bad = bad + n end
    end
    with_retry = with_retry + (thread:get("retry_after") or 0)
    local lo, hi = thread:get("retry_after_min") or -1, thread:get("retry_after_max") or -1
    if lo >= 0 and (low < 0 or lo < low) then low = lo end
    if hi > high then high = hi end
  end
  local parts = {}
  for status, n in pairs(counts) do
    parts[#parts + 1] = string.format('"%d": %d', status, n)
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "non_2xx": %d, "statuses": {%s}, ' ..
      '"retry_after": {"count": %d, "min": %d, "max": %d}, ' ..
      '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
      '"latency_us": {"mean": %.1f, "p50": %d, "p90": %d, "p99": %d, "max": %d}}\n',
    summary.requests, summary.duration, summary.bytes, bad, table.concat(parts, ", "), with_retry, low, high,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max
  ))
end
