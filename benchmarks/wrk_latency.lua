-- `manage.py benchmark api` runs wrk with this script: the request (path, API-key headers) comes
-- from wrk's command line and nothing runs in Lua per request, so the load generator costs what
-- wrk itself costs. After the run it prints one line the benchmark parses: wrk's own latency
-- percentiles (microseconds), throughput and error counts.
done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "duration_us": %d, "p50_us": %.0f, "p99_us": %.0f, "max_us": %.0f, '
      .. '"non_2xx": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    errors.status, errors.connect + errors.read + errors.write + errors.timeout
  ))
end
