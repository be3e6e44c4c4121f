import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { formatOrderSize, formatQuantity } from "../../static/js/format.js";
import { OpenOrdersPanel } from "../../static/js/panels.js";
import { Store } from "../../static/js/store.js";
import { FakeDocument, FakeWindow } from "./fake-dom.mjs";

describe("fractional quantities and notional orders", () => {
  test("quantities keep their up to 9 decimals and whole ones stay whole", () => {
    assert.equal(formatQuantity("10"), "10");
    assert.equal(formatQuantity("1250"), "1,250");
    assert.equal(formatQuantity("0.5"), "0.5");
    assert.equal(formatQuantity("0.999900009"), "0.999900009");
    assert.equal(formatQuantity("-2"), "-2");
    assert.equal(formatQuantity(null), "\u2014");
  });

  test("a notional order shows its dollar amount, a qty order its quantity", () => {
    assert.equal(formatOrderSize({ qty: null, notional: "100.00" }), "$100.00");
    assert.equal(formatOrderSize({ qty: null, notional: "1250.5" }), "$1,250.50");
    assert.equal(formatOrderSize({ qty: "1.25", notional: null }), "1.25");
    assert.equal(formatOrderSize({ qty: null, notional: null }), "\u2014");
  });

  test("the open orders panel names a notional order by its amount", () => {
    const doc = new FakeDocument();
    const body = doc.createElement("div");
    const parts = { ".panel-body": body, "[data-count]": doc.createElement("span"), ".panel-error": doc.createElement("p") };
    const root = doc.createElement("section");
    root.append(...Object.values(parts));
    root.querySelector = (selector) => parts[selector] || null;
    const order = { id: "n1", symbol: "AAPL", side: "buy", qty: null, notional: "250.00", type: "limit",
      limit_price: "90", status: "new", submitted_at: "2026-01-02T15:00:00Z" };
    const store = new Store({ openOrders: [order] }, { schedule: (callback) => callback(), now: () => 0 });
    const panel = new OpenOrdersPanel({ root, api: {}, store, announce: () => {}, onSelect: () => {}, doc, win: new FakeWindow() });
    panel.update(store.state);
    const texts = Array.from(body.descendants()).map((node) => node.textContent);
    assert.ok(texts.includes("$250.00"), texts.join("|"));
    const button = Array.from(body.descendants()).find((node) => node.getAttribute("data-action") === "cancel");
    assert.equal(button.getAttribute("aria-label"), "Cancel buy $250.00 AAPL limit");
  });
});
