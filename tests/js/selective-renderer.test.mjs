import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { MARKET_COLUMNS, marketRowFromAsset, reduceMarketEvents } from "../../static/js/market-model.js";
import { RowComponent, SelectiveRenderer } from "../../static/js/selective-renderer.js";
import { FakeDocument, FakeWindow, rowOf } from "./fake-dom.mjs";
import { VirtualTable } from "../../static/js/virtual-table.js";

const COLUMNS = MARKET_COLUMNS.filter((column) => column.text);

function makeRow(doc) {
  const element = doc.createElement("div");
  element.setAttribute("role", "row");
  const cells = new Map();
  for (const column of COLUMNS) {
    const cell = doc.createElement("div");
    cells.set(column.field, cell);
    element.append(cell);
  }
  return { element, cells };
}

function asset(symbol, last, extra = {}) {
  return { symbol, name: `${symbol} Inc.`, last, prev_close: 100, bid: last - 0.01, ask: last + 0.01, volume: 1000, spark: [], ...extra };
}

describe("RowComponent", () => {
  test("Property 16: a price update writes only the cells whose text changed", () => {
    const doc = new FakeDocument();
    const { element, cells } = makeRow(doc);
    const row = new RowComponent({ element, cells, columns: COLUMNS, keyAttribute: "data-symbol" });
    const before = marketRowFromAsset(asset("AAPL", 101));
    row.bind("AAPL", before);
    assert.equal(cells.get("last").textContent, "101.00");
    assert.equal(element.getAttribute("data-symbol"), "AAPL");
    doc.takeMutations();

    // A quote moves bid and ask; last, change, volume stay as they were.
    const [after] = reduceMarketEvents(new Map([["AAPL", before]]), [{ T: "q", S: "AAPL", bp: 100.5, ap: 101.5 }]).values();
    const writes = row.update(after);
    assert.equal(writes, 2);
    const touched = new Set(doc.takeMutations().map((m) => (m.target.nodeType === 3 ? m.target.parentNode : m.target)));
    assert.deepEqual(touched, new Set([cells.get("bid"), cells.get("ask")]));
    assert.equal(cells.get("bid").textContent, "100.50");
    assert.equal(cells.get("ask").textContent, "101.50");
  });

  test("Property 17: the same inputs, or inputs showing the same text, write nothing", () => {
    const doc = new FakeDocument();
    const { element, cells } = makeRow(doc);
    const row = new RowComponent({ element, cells, columns: COLUMNS });
    const inputs = marketRowFromAsset(asset("MSFT", 250));
    row.bind("MSFT", inputs);
    const renders = row.renders;
    doc.takeMutations();
    assert.equal(row.update(inputs), 0, "identical inputs are skipped");
    // A new object whose values format the same (a sub-cent move) writes nothing either.
    assert.equal(row.update({ ...inputs, last: 250.001, bid: inputs.bid + 0.0001 }), 0);
    assert.equal(doc.takeMutations().length, 0);
    assert.equal(row.renders, renders);
  });

  test("a change flashes up or down and the flash restarts on a repeat, without a later write", () => {
    const doc = new FakeDocument();
    const { element, cells } = makeRow(doc);
    const row = new RowComponent({ element, cells, columns: COLUMNS });
    let current = marketRowFromAsset(asset("NVDA", 100));
    row.bind("NVDA", current);
    assert.ok(!/flash/.test(cells.get("last").className), "binding does not flash");
    const trade = (price) => {
      current = reduceMarketEvents(new Map([["NVDA", current]]), [{ T: "t", S: "NVDA", p: price, s: 10 }]).get("NVDA");
      row.update(current);
      return cells.get("last").className;
    };
    const first = trade(101);
    assert.match(first, /\bflash-up-[01]\b/);
    assert.match(first, /\bup\b/, "an up trade carries the 'up' class (the ▲ glyph)");
    const second = trade(102);
    assert.match(second, /\bflash-up-[01]\b/);
    assert.notEqual(first, second, "a second up move switches animation so it plays again");
    const third = trade(99);
    assert.match(third, /\bflash-down-[01]\b/);
    assert.match(third, /\bdown\b/);
    assert.match(cells.get("change").className, /\bdown\b/, "99 is below the previous close of 100");
  });

  test("a recycled row shows its new key's values with no flash", () => {
    const doc = new FakeDocument();
    const { element, cells } = makeRow(doc);
    const row = new RowComponent({ element, cells, columns: COLUMNS, keyAttribute: "data-symbol" });
    row.bind("A", marketRowFromAsset(asset("A", 10)));
    row.bind("B", marketRowFromAsset(asset("B", 500)));
    assert.equal(element.getAttribute("data-symbol"), "B");
    assert.equal(cells.get("last").textContent, "500.00");
    assert.ok(!/flash/.test(cells.get("last").className));
  });
});

describe("SelectiveRenderer", () => {
  test("hidden rows are reused for newly shown keys, never rebuilt", () => {
    const doc = new FakeDocument();
    const renderer = new SelectiveRenderer({ columns: COLUMNS, createRow: () => makeRow(doc), keyAttribute: "data-symbol" });
    for (let i = 0; i < 40; i++) renderer.show(`S${i}`, marketRowFromAsset(asset(`S${i}`, 10 + i)));
    assert.equal(renderer.stats.created, 40);
    for (let i = 0; i < 40; i++) renderer.hide(`S${i}`);
    for (let i = 40; i < 80; i++) renderer.show(`S${i}`, marketRowFromAsset(asset(`S${i}`, 10 + i)));
    assert.equal(renderer.stats.created, 40, "the 40 elements were recycled");
    assert.equal(renderer.shownCount, 40);
    assert.equal(renderer.render("S0", marketRowFromAsset(asset("S0", 1))), 0, "a hidden key renders nothing");
  });

  test("Property 17: render() counts skipped rows whose inputs did not change", () => {
    const doc = new FakeDocument();
    const renderer = new SelectiveRenderer({ columns: COLUMNS, createRow: () => makeRow(doc) });
    const rows = new Map();
    for (let i = 0; i < 10; i++) {
      const row = marketRowFromAsset(asset(`S${i}`, 50));
      rows.set(`S${i}`, row);
      renderer.show(`S${i}`, row);
    }
    const changed = reduceMarketEvents(rows, [{ T: "t", S: "S3", p: 51, s: 1 }]);
    for (const [symbol, row] of changed) rows.set(symbol, row);
    for (const [symbol, row] of rows) renderer.render(symbol, row);
    assert.equal(renderer.stats.rowRenders, 1);
    assert.equal(renderer.stats.rowSkips, 9);
  });
});

describe("VirtualTable with the market columns", () => {
  function marketTable(count) {
    const doc = new FakeDocument();
    const win = new FakeWindow();
    const root = doc.createElement("div");
    const table = new VirtualTable({
      root,
      label: "Market",
      columns: MARKET_COLUMNS.map((column) =>
        column.text ? column : { ...column, text: () => "", write: () => {} },
      ),
      keyOf: (row) => row.symbol,
      keyAttribute: "data-symbol",
      rowHeight: 32,
      overscan: 8,
      doc,
      win,
    });
    table.grid.clientHeight = 520;
    const rows = new Map();
    for (let i = 0; i < count; i++) {
      const symbol = `S${String(i).padStart(3, "0")}`;
      rows.set(symbol, marketRowFromAsset(asset(symbol, 100 + i / 10)));
    }
    table.setItems(Array.from(rows.values()));
    return { doc, win, table, rows };
  }

  test("Property 18: 500 symbols keep under 60 row elements however far the table scrolls", () => {
    const { table, win } = marketTable(500);
    const count = () => table.body.children.length;
    assert.ok(count() <= 60 && count() > 0, `rows in the document: ${count()}`);
    for (const top of [0, 1000, 5000, 12345, 500 * 32, 99999, 0]) {
      table.grid.scrollTop = top;
      table.grid.dispatch("scroll");
      win.runFrame();
      assert.ok(count() <= 60, `rows at scrollTop ${top}: ${count()}`);
      const indexes = table.body.children.map((row) => Number(row.getAttribute("aria-rowindex")));
      assert.equal(new Set(indexes).size, indexes.length, "each row element shows a different row");
    }
    assert.equal(table.grid.getAttribute("aria-rowcount"), "501");
  });

  test("Property 16: ticks change only the DOM nodes of the rows that ticked", () => {
    const { doc, table, rows } = marketTable(500);
    doc.takeMutations();
    const events = [
      { T: "t", S: "S003", p: 120.5, s: 100 },
      { T: "q", S: "S003", bp: 120.49, ap: 120.51 },
      { T: "t", S: "S010", p: 90, s: 5 },
      { T: "t", S: "S450", p: 1, s: 5 }, // off screen: nothing to write
    ];
    const changed = reduceMarketEvents(rows, events);
    for (const [symbol, row] of changed) table.update(symbol, row);
    const touchedRows = new Set(doc.takeMutations().map((m) => rowOf(m.target)).map((row) => row && row.getAttribute("data-symbol")));
    assert.deepEqual(touchedRows, new Set(["S003", "S010"]));
  });

  test("keyboard: arrows and End move the active row and scroll it into view", () => {
    const { table } = marketTable(500);
    const key = (name) => table.grid.dispatch("keydown", { key: name, target: table.grid });
    key("ArrowDown");
    key("ArrowDown");
    assert.equal(table.scroll.activeIndex, 1);
    const active = table.body.children.find((row) => row.classList.contains("active"));
    assert.equal(active.getAttribute("data-symbol"), "S001");
    assert.equal(table.grid.getAttribute("aria-activedescendant"), active.id);
    key("End");
    assert.equal(table.scroll.activeIndex, 499);
    assert.ok(table.grid.scrollTop > 0);
    const last = table.body.children.find((row) => row.getAttribute("data-symbol") === "S499");
    assert.ok(last && last.classList.contains("active"), "the last row is rendered and active");
    assert.equal(last.getAttribute("aria-rowindex"), "501");
  });
});
