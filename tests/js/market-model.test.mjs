import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  SPARK_POINTS,
  changeOf,
  changePctOf,
  filterSortRows,
  marketRowFromAsset,
  reduceMarketEvents,
  sparkPoints,
} from "../../static/js/market-model.js";
import { formatPercent, formatPrice, formatSigned, formatSignedMoney } from "../../static/js/format.js";
import { nextSort } from "../../static/js/market-table.js";
import { escapeHtml, tableHtml } from "../../static/js/naive-table.js";

function rows(...assets) {
  return new Map(assets.map((asset) => [asset.symbol, marketRowFromAsset({ name: `${asset.symbol} Corp`, prev_close: 100, volume: 0, spark: [], ...asset })]));
}

describe("reduceMarketEvents", () => {
  test("one new row object per symbol per frame, unchanged rows keep their identity", () => {
    const market = rows({ symbol: "A", last: 100 }, { symbol: "B", last: 50 });
    const events = [];
    for (let i = 0; i < 100; i++) events.push({ T: "t", S: "A", p: 100 + i / 100, s: 10 }, { T: "q", S: "A", bp: 99, ap: 101 + i });
    events.push({ T: "t", S: "UNKNOWN", p: 1, s: 1 });
    const changed = reduceMarketEvents(market, events);
    assert.deepEqual(Array.from(changed.keys()), ["A"]);
    const a = changed.get("A");
    assert.ok(Object.isFrozen(a));
    assert.equal(a.last, 100.99);
    assert.equal(a.volume, 1000);
    assert.equal(a.ask, 200);
    assert.equal(a.tick, "up");
    assert.equal(market.get("A").last, 100, "the input rows are not mutated");
  });

  test("the sparkline keeps the newest 30 minute closes", () => {
    let market = rows({ symbol: "A", last: 100, spark: [1, 2, 3] });
    for (let i = 0; i < 100; i++) {
      const changed = reduceMarketEvents(market, [{ T: "b", S: "A", o: 1, h: 1, l: 1, c: i, v: 1, t: "2026-01-01T00:00:00Z" }]);
      market = new Map([...market, ...changed]);
      assert.ok(market.get("A").spark.length <= SPARK_POINTS);
    }
    assert.deepEqual(market.get("A").spark, Array.from({ length: 30 }, (_, i) => 70 + i));
  });

  test("halts and resumptions from status messages", () => {
    const market = rows({ symbol: "A", last: 1 });
    const halted = reduceMarketEvents(market, [{ T: "s", S: "A", sc: "H" }]).get("A");
    assert.equal(halted.halted, true);
    assert.equal(reduceMarketEvents(new Map([["A", halted]]), [{ T: "s", S: "A", sc: "T" }]).get("A").halted, false);
  });

  test("change and change % against the previous close; none before a first trade", () => {
    const [row] = rows({ symbol: "A", last: 105, prev_close: 100 }).values();
    assert.equal(changeOf(row), 5);
    assert.equal(changePctOf(row), 5);
    const [fresh] = rows({ symbol: "B", last: null }).values();
    assert.equal(changeOf(fresh), null);
    assert.equal(formatSigned(changeOf(row)), "+5.00");
    assert.equal(formatPercent(changePctOf(row)), "+5.00%");
    assert.equal(formatPrice(null), "\u2014");
    assert.equal(formatSigned(-0.001), "0.00", "a move that rounds to nothing is flat");
    assert.equal(formatSignedMoney(-1234.5), "-1,234.50");
  });

  test("sparkPoints scales closes plus the last trade into the box", () => {
    const [row] = rows({ symbol: "A", last: 3, spark: [1, 2] }).values();
    assert.equal(sparkPoints(row, 64, 20), "0.0,19.0 32.0,10.0 64.0,1.0");
    const [flat] = rows({ symbol: "B", last: null, spark: [5] }).values();
    assert.equal(sparkPoints(flat), "");
  });
});

describe("filterSortRows", () => {
  const market = rows(
    { symbol: "AAPL", name: "Apple Inc.", last: 190 },
    { symbol: "AMZN", name: "Amazon.com", last: 120 },
    { symbol: "MSFT", name: "Microsoft", last: 300 },
    { symbol: "NEW", name: "Never Traded", last: null },
  );

  test("search matches a symbol prefix or a name; the watchlist filter keeps starred rows", () => {
    assert.deepEqual(filterSortRows(market.values(), { query: "a" }).map((r) => r.symbol), ["AAPL", "AMZN", "NEW"]);
    assert.deepEqual(filterSortRows(market.values(), { query: " am " }).map((r) => r.symbol), ["AMZN"]);
    assert.deepEqual(filterSortRows(market.values(), { query: "soft" }).map((r) => r.symbol), ["MSFT"]);
    const watched = new Map(market);
    watched.set("MSFT", { ...market.get("MSFT"), watched: true });
    assert.deepEqual(filterSortRows(watched.values(), { watchOnly: true }).map((r) => r.symbol), ["MSFT"]);
  });

  test("sorts either way by a column, rows without a value last", () => {
    assert.deepEqual(filterSortRows(market.values(), { sortKey: "last", sortDir: "desc" }).map((r) => r.symbol), ["MSFT", "AAPL", "AMZN", "NEW"]);
    assert.deepEqual(filterSortRows(market.values(), { sortKey: "last", sortDir: "asc" }).map((r) => r.symbol), ["AMZN", "AAPL", "MSFT", "NEW"]);
    assert.deepEqual(filterSortRows(market.values(), { sortKey: "symbol", sortDir: "desc" }).map((r) => r.symbol), ["NEW", "MSFT", "AMZN", "AAPL"]);
  });

  test("a header click flips the same column, a new column starts descending (symbol ascending)", () => {
    assert.deepEqual(nextSort({ sortKey: "symbol", sortDir: "asc" }, "symbol"), { sortKey: "symbol", sortDir: "desc" });
    assert.deepEqual(nextSort({ sortKey: "symbol", sortDir: "asc" }, "volume"), { sortKey: "volume", sortDir: "desc" });
    assert.deepEqual(nextSort({ sortKey: "volume", sortDir: "desc" }, "symbol"), { sortKey: "symbol", sortDir: "asc" });
  });
});

describe("naive baseline", () => {
  test("renders every row with the same hooks and text as the selective table", () => {
    const market = rows({ symbol: "A&B", name: "<script>", last: 101.5 }, { symbol: "C", last: 99 });
    const html = tableHtml(filterSortRows(market.values(), {}), { sortKey: "symbol", sortDir: "asc", selected: "C" });
    assert.equal((html.match(/<tr data-symbol=/g) || []).length, 2);
    assert.match(html, /data-symbol="A&amp;B"/);
    assert.match(html, /<td data-field="last" class="num up">101.50<\/td>|<td data-field="last" class="num">101.50<\/td>/);
    assert.match(html, /<td data-field="change_pct" class="num up">\+1.50%<\/td>/);
    assert.ok(!html.includes("<script>"), "names are escaped");
    assert.match(html, /<tr data-symbol="C" aria-selected="true">/);
    assert.equal(escapeHtml(`"'<>&`), "&quot;&#39;&lt;&gt;&amp;");
  });
});
