-- `manage.py benchmark trading` runs wrk with this script: each request is an order-shaped POST
-- from the next account in turn (its API key), the side alternating per account: buy on one pass
-- over the accounts, sell on the next. Arguments (after `--`): the accounts file (one line each:
-- key id, secret, symbol), the path to POST to, and wrk's thread count; each thread takes its own
-- share of the accounts, so no two threads send for one account. The file is read once per thread
-- at start; per request Lua only formats the request. After the run it prints the line the
-- benchmark parses, as benchmarks/wrk_latency.lua does.
local thread_count = 0

setup = function(thread)
  thread:set("thread_index", thread_count)
  thread_count = thread_count + 1
end

init = function(args)
  local file, path, threads = args[1], args[2], tonumber(args[3])
  accounts = {}
  local line_number = 0
  for line in io.lines(file) do
    if line_number % threads == thread_index then
      local key, secret, symbol = line:match("^(%S+) (%S+) (%S+)$")
      table.insert(accounts, { key = key, secret = secret, symbol = symbol })
    end
    line_number = line_number + 1
  end
  order_path = path
  sent = 0
end

request = function()
  local count = #accounts
  local account = accounts[sent % count + 1]
  local side = (math.floor(sent / count) % 2 == 0) and "buy" or "sell"
  sent = sent + 1
  local body = string.format(
    '{"symbol": "%s", "qty": "1", "side": "%s", "type": "market", "time_in_force": "day"}',
    account.symbol, side
  )
  return wrk.format("POST", order_path, {
    ["APCA-API-KEY-ID"] = account.key,
    ["APCA-API-SECRET-KEY"] = account.secret,
    ["Content-Type"] = "application/json",
  }, body)
end

done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "duration_us": %d, "p50_us": %.0f, "p99_us": %.0f, "max_us": %.0f, '
      .. '"non_2xx": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    errors.status, errors.connect + errors.read + errors.write + errors.timeout
  ))
end
