// The ops page's pure helpers (static/js/ops.js): which lines a chart draws, their data, merging
// refreshed rows into a range, and how figures read.
import { test } from "node:test";
import assert from "node:assert/strict";

import { chartKeys, formatValue, keyLabel, lineData, mergePoints } from "../../static/js/ops.js";

const points = [
  [100, { "api.p99_ms": 4.5, "process.rss_bytes.web-0": 1048576, "process.rss_bytes.ws-0": 2097152 }],
  [110, { "api.p99_ms": 6.0, "process.rss_bytes.web-0": 1048576, "api.slow_routes": [["orders", 9, 3]] }],
];

test("a prefix series expands to every key with that prefix, sorted; missing keys are left out", () => {
  assert.deepEqual(chartKeys(["process.rss_bytes.*"], points, null), ["process.rss_bytes.web-0", "process.rss_bytes.ws-0"]);
  assert.deepEqual(chartKeys(["api.p50_ms", "api.p99_ms"], points, null), ["api.p99_ms"]);
  assert.deepEqual(chartKeys(["market.ticks_per_s"], points, { t: 120, values: { "market.ticks_per_s": 3 } }), ["market.ticks_per_s"]);
});

test("a line's data is the numbers of one key, scaled, in time order", () => {
  assert.deepEqual(lineData(points, "process.rss_bytes.ws-0", 1 / 1048576), [{ time: 100, value: 2 }]);
  assert.deepEqual(lineData(points, "api.slow_routes"), []);
});

test("refreshed rows are appended once and the range keeps its span", () => {
  const merged = mergePoints(points, [[110, {}], [120, { "api.p99_ms": 1 }]], 15, 120);
  assert.deepEqual(merged.map(([time]) => time), [110, 120]);
});

test("figures read with their unit; a missing one is a dash", () => {
  assert.equal(formatValue(0.0123, "%", 100), "1.23 %");
  assert.equal(formatValue(1234.5, "/s"), "1235 /s");
  assert.equal(formatValue(3.14159, "ms"), "3.14 ms");
  assert.equal(formatValue(undefined, "ms"), "—");
  assert.equal(keyLabel("process.rss_bytes.web-0", ["process.rss_bytes.*"]), "web-0");
  assert.equal(keyLabel("api.p99_ms", ["api.p99_ms"]), "p99");
  assert.equal(keyLabel("api.requests_per_s", ["api.requests_per_s"]), "requests");
  assert.equal(keyLabel("ws.fanout_lag_p99_ms", ["ws.fanout_lag_p99_ms"]), "fanout lag p99");
});
