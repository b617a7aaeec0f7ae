-- wrk script for `python -m bench.run`: replays pre-signed Sinch callbacks, each once.
-- VG_WRK_REQUESTS: a file of "authorization\tx-timestamp\tcontent-type\tbody" lines.
-- VG_WRK_THREADS: wrk's -t; thread i sends lines i, i + threads, … from VG_WRK_OFFSET on.
-- Prints one JSON line: requests, latency percentiles (us), allowed / denied / other.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads - 1)
end

function init(args)
  requests = {}
  local file = assert(io.open(os.getenv("VG_WRK_REQUESTS"), "r"))
  for line in file:lines() do
    local auth, stamp, ctype, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
    requests[#requests + 1] = wrk.format(
      "POST", nil, {["authorization"] = auth, ["x-timestamp"] = stamp, ["content-type"] = ctype}, body)
  end
  file:close()
  stride = tonumber(os.getenv("VG_WRK_THREADS") or "1")
  counter = tid + tonumber(os.getenv("VG_WRK_OFFSET") or "0")
  allowed, denied, other, reused = 0, 0, 0, 0
end

function request()
  if counter >= #requests then reused = reused + 1 end
  local r = requests[(counter % #requests) + 1]
  counter = counter + stride
  return r
end

function response(status, headers, body)
  if status ~= 200 then
    other = other + 1
  elseif body:find('"allow"', 1, true) then
    allowed = allowed + 1
  else
    denied = denied + 1
  end
end

function done(summary, latency, requests)
  local a, d, o, r = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    a, d, o, r = a + t:get("allowed"), d + t:get("denied"), o + t:get("other"), r + t:get("reused")
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "p999_us": %d, '
    .. '"max_us": %d, "allowed": %d, "denied": %d, "non_200": %d, "socket_errors": %d, '
    .. '"reused_requests": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), latency.max, a, d, o,
    e.connect + e.read + e.write + e.timeout, r))
end
