-- wrk script of the benchmark: POSTs to one path, each request taking the next line
-- of a file of "<token>\t<json body>" lines (thread t takes lines s + t, s + t + T, ...;
-- the file wraps around when used up). Arguments: file, path, number of threads T,
-- first line s (0-based). A line of three fields, "<path>\t<token>\t<json body>",
-- posts to its own path (the soak's mix of calls).
-- BENCH_DELAY_MS (environment): mean pause of each connection between a response
-- and its next request (uniform in [0.5, 1.5] times it), to run below the maximum
-- rate. done() prints one line "BENCH {json}" with the figures.

local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0") or 0
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  path = args[2]
  local file = args[1]
  nthreads = tonumber(args[3])
  first = tonumber(args[4] or "0")
  items = {}
  for line in io.lines(file) do
    local own_path = path
    local tab = line:find("\t", 1, true)
    local second = line:find("\t", tab + 1, true)
    if second then
      own_path = line:sub(1, tab - 1)
      line = line:sub(tab + 1)
      tab = second - tab
    end
    items[#items + 1] = { "Bearer " .. line:sub(1, tab - 1), line:sub(tab + 1), own_path }
  end
  count = 0
  math.randomseed(id + 1)
end

function request()
  local item = items[(first + id + count * nthreads) % #items + 1]
  count = count + 1
  return wrk.format("POST", item[3], {
    ["Authorization"] = item[1],
    ["Content-Type"] = "application/json",
  }, item[2])
end

if delay_ms > 0 then
  function delay()
    return math.floor(delay_ms * (0.5 + math.random()))
  end
end

function done(summary, latency, requests)
  local most = 0
  for _, t in ipairs(threads) do
    local c = t:get("count")
    if c > most then most = c end
  end
  local e = summary.errors
  -- The distribution as percentiles 1..99, 99.5 and 99.9 (to merge runs).
  local pcts = {}
  for q = 1, 99 do pcts[#pcts + 1] = tostring(latency:percentile(q)) end
  pcts[#pcts + 1] = tostring(latency:percentile(99.5))
  pcts[#pcts + 1] = tostring(latency:percentile(99.9))
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "mean_us": %.1f, "most_per_thread": %d, "pcts_us": [%s]}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean, most, table.concat(pcts, ", ")))
end
