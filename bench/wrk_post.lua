-- wrk script for bench/run.py: POSTs the request bodies of a file (one per line) in turn (or
-- GETs the path when BODIES is "-"), and prints one JSON line with the counts and latency
-- percentiles at the end.
--   wrk -t1 -c8 -d5s -s bench/wrk_post.lua http://127.0.0.1:8000 -- BODIES PATH
local requests = {}
local index = 0

function init(args)
  if args[1] == "-" then  -- no bodies: GET the path (bench/static.py)
    requests[1] = wrk.format("GET", args[2])
    return
  end
  for line in io.lines(args[1]) do
    requests[#requests + 1] = wrk.format(
      "POST", args[2], {["Content-Type"] = "application/json"}, line)
  end
end

function request()
  index = index % #requests + 1
  return requests[index]
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "socket_errors": %d, "status_errors": %d, ' ..
    '"p50_us": %d, "p99_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout,
    e.status, latency:percentile(50), latency:percentile(99), latency.mean))
end
