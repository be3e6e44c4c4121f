import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { barFromAlpaca, foldBar, foldTrade } from "../../static/js/chart.js";
import { accountFigures, describeOrderPrice, fillFromTradeUpdate, positionFigures, statementPeriods } from "../../static/js/panels.js";
import { DROPPED_FRAME_MS, PerfMonitor, countFrames, percentile } from "../../static/js/perf.js";

describe("perf figures", () => {
  test("nearest-rank percentiles", () => {
    const values = Array.from({ length: 100 }, (_, i) => i + 1);
    assert.equal(percentile(values, 50), 50);
    assert.equal(percentile(values, 95), 95);
    assert.equal(percentile(values, 100), 100);
    assert.equal(percentile([], 50), 0);
    assert.equal(percentile([7], 95), 7);
  });

  test("a frame over 1.5 periods drops the frames it skipped; long gaps are a hidden tab", () => {
    assert.deepEqual(countFrames([16.7, 16.6, 16.7]), { frames: 3, dropped: 0 });
    assert.deepEqual(countFrames([DROPPED_FRAME_MS + 0.1]), { frames: 1, dropped: 1 });
    assert.deepEqual(countFrames([100]), { frames: 1, dropped: 5 });
    assert.deepEqual(countFrames([5000, 16.7]), { frames: 1, dropped: 0 });
  });
});

describe("PerfMonitor.report()", () => {
  function monitor({ post }) {
    const clock = { now: 1000 };
    const win = {
      performance: { now: () => clock.now, memory: { usedJSHeapSize: 12_000_000 } },
      requestAnimationFrame: () => 0,
      setInterval: () => 0,
    };
    const doc = { getElementsByTagName: () => ({ length: 321 }) };
    const calls = [];
    const api = {
      post: async (url, body, options) => {
        calls.push({ url, body, options });
        return post(url, body);
      },
    };
    const perf = new PerfMonitor({ url: "/v2/metrics/frontend", intervalS: 30, renderer: "naive", api, win, doc });
    return { perf, clock, calls };
  }

  test("posts the interval's figures with the renderer, then starts a new interval", async () => {
    const { perf, clock, calls } = monitor({ post: async () => null });
    for (const ms of [1, 2, 3, 4, 10]) perf.recordRender(ms, 5);
    clock.now += 30_000;
    const body = await perf.report();
    assert.equal(calls.length, 1);
    assert.equal(calls[0].url, "/v2/metrics/frontend");
    assert.deepEqual(calls[0].options, { keepalive: true });
    assert.equal(calls[0].body, body);
    assert.deepEqual(body, {
      page: "dashboard",
      renderer: "naive",
      interval_s: 30,
      renders: 5,
      updates: 25,
      render_ms_p50: 3,
      render_ms_p95: 10,
      render_ms_max: 10,
      long_tasks: 0,
      long_task_ms: 0,
      frames: 0,
      dropped_frames: 0,
      js_heap_bytes: 12_000_000,
      dom_nodes: 321,
    });
    assert.equal(perf.totals.reports, 1);
    assert.equal(perf.totals.last_report_status, "ok");
    // The next report covers only what came after this one.
    perf.recordRender(2, 1);
    const next = await perf.report();
    assert.equal(next.renders, 1);
    assert.equal(next.interval_s, 0);
    assert.equal(perf.totals.renders, 6);
  });

  test("a refused report is recorded with its status and does not throw", async () => {
    const refused = Object.assign(new Error("rate limited"), { status: 429 });
    const { perf } = monitor({
      post: async () => {
        throw refused;
      },
    });
    const body = await perf.report();
    assert.equal(body.renders, 0);
    assert.equal(perf.totals.last_report_status, 429);
    assert.equal(perf.totals.reports, 1);
  });
});

describe("chart bars", () => {
  test("Alpaca bars become chart bars in seconds", () => {
    assert.deepEqual(barFromAlpaca({ t: "2026-01-02T15:04:00Z", o: 1, h: 2, l: 0.5, c: 1.5, v: 10, n: 1, vw: 1 }), {
      time: Date.parse("2026-01-02T15:04:00Z") / 1000,
      open: 1,
      high: 2,
      low: 0.5,
      close: 1.5,
      volume: 10,
    });
  });

  test("trades grow the minute's candle or start the next; stale trades are ignored", () => {
    const bars = [{ time: 60, open: 10, high: 11, low: 9, close: 10, volume: 5 }];
    assert.deepEqual(foldTrade(bars, { price: 12, size: 2, timeSeconds: 100 }), { time: 60, open: 10, high: 12, low: 9, close: 12, volume: 7 });
    assert.deepEqual(foldTrade(bars, { price: 8, size: 1, timeSeconds: 121 }), { time: 120, open: 8, high: 8, low: 8, close: 8, volume: 1 });
    assert.equal(foldTrade(bars, { price: 8, size: 1, timeSeconds: 30 }), null);
    assert.equal(bars.length, 2);
    foldBar(bars, { time: 120, open: 8, high: 9, low: 7, close: 8.5, volume: 40 });
    assert.equal(bars[1].volume, 40, "a settled minute bar replaces the forming one");
    assert.equal(foldBar(bars, { time: 60, open: 1, high: 1, low: 1, close: 1, volume: 1 }), null);
  });
});

describe("portfolio figures", () => {
  const positions = [
    { symbol: "A", qty: "10", avg_entry_price: "100", current_price: "100", market_value: "1000", unrealized_pl: "0" },
    { symbol: "B", qty: "-5", avg_entry_price: "50", current_price: "50", market_value: "-250", unrealized_pl: "0" },
  ];
  const account = { cash: "5000.00", buying_power: "4800.00", last_equity: "5700.00" };

  test("positions are valued live at the last trade, shorts included", () => {
    assert.deepEqual(positionFigures(positions[0], 110), { qty: 10, avg: 100, price: 110, marketValue: 1100, pnl: 100, pnlPct: 0.1 });
    const short = positionFigures(positions[1], 40);
    assert.equal(short.marketValue, -200);
    assert.equal(short.pnl, 50, "a short gains when the price falls");
    assert.equal(positionFigures(positions[0], null).price, 100, "falls back to the snapshot's price");
  });

  test("equity is cash plus positions at the last trade; P&L is live", () => {
    const last = { A: 110, B: 40 };
    const figures = accountFigures(account, positions, (symbol) => last[symbol]);
    assert.equal(figures.cash, 5000);
    assert.equal(figures.buying_power, 4800);
    assert.equal(figures.equity, 5000 + 1100 - 200);
    assert.equal(figures.pnl, 150);
    assert.equal(figures.day_pnl, 5900 - 5700);
    assert.equal(accountFigures(null, [], () => null), null);
  });

  test("order prices in a few words", () => {
    assert.equal(describeOrderPrice({ type: "market" }), "mkt");
    assert.equal(describeOrderPrice({ type: "limit", limit_price: "101" }), "lmt 101.00");
    assert.equal(describeOrderPrice({ type: "stop_limit", limit_price: "98.5", stop_price: "99" }), "stp 99.00 lmt 98.50");
    assert.equal(describeOrderPrice({ type: "trailing_stop", trail_percent: "2.5", trail_price: null }), "trail 2.5%");
    assert.equal(describeOrderPrice({ type: "trailing_stop", trail_percent: null, trail_price: "1" }), "trail 1.00");
  });

  test("a fill trade update becomes a FILL activity", () => {
    const fill = fillFromTradeUpdate({
      event: "fill",
      timestamp: "2026-01-01T00:00:00Z",
      price: "10.5",
      qty: "3",
      order: { id: "o1", side: "buy", symbol: "A", filled_qty: "3" },
    });
    assert.equal(fill.symbol, "A");
    assert.equal(fill.order_id, "o1");
    assert.equal(fill.price, "10.5");
    assert.equal(fill.transaction_time, "2026-01-01T00:00:00Z");
  });

  test("statement periods are the finished months, newest first", () => {
    assert.deepEqual(statementPeriods(new Date(Date.UTC(2026, 0, 15)), 3), ["2025-12", "2025-11", "2025-10"]);
    assert.deepEqual(statementPeriods(new Date(Date.UTC(2026, 10, 25)), 2), ["2026-10", "2026-09"]);
  });
});
