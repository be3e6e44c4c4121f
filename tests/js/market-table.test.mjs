import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { marketRowFromAsset, reduceMarketEvents } from "../../static/js/market-model.js";
import { MarketTable, RESORT_INTERVAL_MS } from "../../static/js/market-table.js";
import { Store } from "../../static/js/store.js";
import { FakeDocument, FakeWindow, rowOf } from "./fake-dom.mjs";

function setup(count = 500) {
  const doc = new FakeDocument();
  const win = new FakeWindow();
  const frames = [];
  let clock = 0;
  const market = new Map();
  for (let i = 0; i < count; i++) {
    const symbol = `S${String(i).padStart(3, "0")}`;
    market.set(symbol, marketRowFromAsset({ symbol, name: `${symbol} Inc.`, last: 100 + i, prev_close: 100, volume: 0, spark: [] }));
  }
  const store = new Store(
    {
      market,
      assetsVersion: 1,
      watchlist: { id: "w", symbols: [] },
      positions: [],
      ui: { query: "", watchOnly: false, sortKey: "symbol", sortDir: "asc", selected: null },
    },
    { schedule: (callback) => frames.push(callback), now: () => clock },
  );
  const root = doc.createElement("div");
  const table = new MarketTable({
    root,
    store,
    api: null,
    onSelect: () => {},
    announce: () => {},
    now: () => clock,
    doc,
    win,
  });
  table.table.grid.clientHeight = 520;
  store.subscribe((state, change) => table.update(state, change));
  const frame = () => {
    const due = frames.splice(0);
    for (const callback of due) callback();
    return due.length;
  };
  store.set("assetsVersion", 1.5); // first render
  frame();
  return { doc, store, table, frame, tick: (events) => store.upsert("market", reduceMarketEvents(store.state.market, events)), advance: (ms) => (clock += ms) };
}

const rowsIn = (table) => table.table.body.children;

describe("MarketTable", () => {
  test("Properties 16, 18, 20: a burst of 1,000 ticks is one frame that touches only the ticked rows in view", () => {
    const { doc, table, frame, tick } = setup();
    assert.ok(rowsIn(table).length <= 60);
    doc.takeMutations();
    const events = [];
    for (let i = 0; i < 1000; i++) events.push({ T: "t", S: i % 2 ? "S002" : "S300", p: 200 + i / 100, s: 1 });
    for (let i = 0; i < 10; i++) tick(events.slice(i * 100, (i + 1) * 100));
    assert.equal(frame(), 1, "ten stream frames, one render");
    const touched = new Set(doc.takeMutations().map((m) => rowOf(m.target)?.getAttribute("data-symbol")));
    assert.deepEqual(touched, new Set(["S002"]), "S300 is out of view; nothing else changed");
    const last = rowsIn(table).find((row) => row.getAttribute("data-symbol") === "S002");
    assert.equal(last.children.find((cell) => cell.getAttribute("data-field") === "last").textContent, "209.99");
  });

  test("Property 17: a flush that changes nothing the table shows does not recompute or write", () => {
    const { doc, store, table, frame } = setup();
    const runs = table.visibleRows.runs;
    doc.takeMutations();
    store.set("positions", [{ symbol: "S001", qty: "1" }]);
    frame();
    assert.equal(table.visibleRows.runs, runs);
    assert.equal(doc.takeMutations().length, 0);
  });

  test("search and the watchlist filter rebuild the list; sorting by a moving figure re-sorts at most every interval", () => {
    const { store, table, frame, tick, advance } = setup(100);
    store.patch("ui", { query: "S01" });
    frame();
    assert.equal(table.table.count, 10);
    store.patch("ui", { query: "", sortKey: "last", sortDir: "desc" });
    frame();
    assert.equal(table.table.keys[0], "S099");
    tick([{ T: "t", S: "S000", p: 5000, s: 1 }]);
    frame();
    assert.equal(table.table.keys[0], "S099", "not re-sorted within the interval");
    advance(RESORT_INTERVAL_MS);
    tick([{ T: "t", S: "S001", p: 1, s: 1 }]);
    frame();
    assert.equal(table.table.keys[0], "S000", "re-sorted once the interval passed");
    assert.equal(table.table.headers.get("last").getAttribute("aria-sort"), "descending");
  });
});
