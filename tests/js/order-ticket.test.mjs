import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { estimateValue, fieldsForType, validateOrder } from "../../static/js/order-ticket.js";

const base = { symbol: "aapl", side: "buy", type: "market", qty: "10", time_in_force: "day" };

describe("validateOrder", () => {
  test("a market order becomes the POST /v2/orders body", () => {
    const { order, errors } = validateOrder(base);
    assert.deepEqual(errors, {});
    assert.deepEqual(order, { symbol: "AAPL", side: "buy", type: "market", qty: "10", time_in_force: "day" });
  });

  test("every order type asks for its own prices and only those", () => {
    const limit = validateOrder({ ...base, type: "limit", limit_price: "189.5", stop_price: "1" });
    assert.deepEqual(limit.order, { ...base, symbol: "AAPL", type: "limit", limit_price: "189.5" });
    const stop = validateOrder({ ...base, type: "stop", stop_price: "180" });
    assert.equal(stop.order.stop_price, "180");
    assert.equal(stop.order.limit_price, undefined);
    const stopLimit = validateOrder({ ...base, type: "stop_limit", stop_price: "180", limit_price: "179.5" });
    assert.equal(stopLimit.order.limit_price, "179.5");
    assert.equal(stopLimit.order.stop_price, "180");
    const trail = validateOrder({ ...base, side: "sell", type: "trailing_stop", trail_percent: "2.5", time_in_force: "gtc" });
    assert.deepEqual(trail.order, { symbol: "AAPL", side: "sell", type: "trailing_stop", qty: "10", time_in_force: "gtc", trail_percent: "2.5" });
    const trailPrice = validateOrder({ ...base, type: "trailing_stop", trail_price: "1.25" });
    assert.equal(trailPrice.order.trail_price, "1.25");
  });

  test("missing or malformed values get a message per field", () => {
    const { order, errors } = validateOrder({ symbol: "", side: "hold", type: "limit", qty: "1.5", time_in_force: "opg", limit_price: "" });
    assert.equal(order, null);
    assert.deepEqual(Object.keys(errors).sort(), ["limit_price", "qty", "side", "symbol", "time_in_force"]);
    assert.match(errors.qty, /market and limit day orders/);
    assert.match(errors.limit_price, /limit price/);
  });

  test("quantities and prices must be positive and in range", () => {
    assert.match(validateOrder({ ...base, qty: "0" }).errors.qty, /above 0/);
    assert.match(validateOrder({ ...base, qty: "2000000" }).errors.qty, /at most 1,000,000/);
    assert.match(validateOrder({ ...base, qty: "5" }, { maxQty: 4 }).errors.qty, /at most 4/);
    assert.match(validateOrder({ ...base, qty: "-3" }).errors.qty, /9 decimals/);
    assert.match(validateOrder({ ...base, qty: "0.0000000001" }).errors.qty, /9 decimals/);
  });

  test("fractional quantities go on market and limit day orders, as Alpaca takes them", () => {
    const day = { ...base, time_in_force: "day" };
    assert.deepEqual(validateOrder({ ...day, qty: "0.5" }).errors, {});
    assert.equal(validateOrder({ ...day, qty: "1.25", type: "limit", limit_price: "90" }).order.qty, "1.25");
    assert.equal(validateOrder({ ...day, qty: "2.0" }).order.qty, "2.0");
    assert.match(validateOrder({ ...base, time_in_force: "gtc", qty: "0.5" }).errors.qty, /market and limit day/);
    assert.match(validateOrder({ ...day, qty: "0.5", type: "stop", stop_price: "90" }).errors.qty, /market and limit day/);
    assert.match(validateOrder({ ...base, type: "limit", limit_price: "0" }).errors.limit_price, /above zero/);
    assert.match(validateOrder({ ...base, type: "limit", limit_price: "1.23456" }).errors.limit_price, /4 decimals/);
    assert.match(validateOrder({ ...base, type: "stop", stop_price: "abc" }).errors.stop_price, /number/);
  });

  test("a trailing stop needs exactly one trail, under 100 %, for day or gtc", () => {
    const trailing = { ...base, type: "trailing_stop" };
    assert.match(validateOrder(trailing).errors.trail_price, /trail price or a trail percent/);
    assert.match(validateOrder({ ...trailing, trail_price: "1", trail_percent: "2" }).errors.trail_price, /not both/);
    assert.match(validateOrder({ ...trailing, trail_percent: "100" }).errors.trail_percent, /below 100/);
    assert.match(validateOrder({ ...trailing, trail_percent: "5", time_in_force: "ioc" }).errors.time_in_force, /day or gtc/);
  });

  test("an unknown symbol is refused when the listed symbols are known", () => {
    const symbols = new Set(["AAPL", "MSFT"]);
    assert.deepEqual(validateOrder(base, { symbols }).errors, {});
    assert.match(validateOrder({ ...base, symbol: "ZZZZ" }, { symbols }).errors.symbol, /not a listed symbol/);
  });
});

describe("ticket helpers", () => {
  test("fieldsForType shows the price inputs of each type", () => {
    assert.deepEqual(fieldsForType("market"), { limit_price: false, stop_price: false, trail: false });
    assert.deepEqual(fieldsForType("stop_limit"), { limit_price: true, stop_price: true, trail: false });
    assert.deepEqual(fieldsForType("trailing_stop"), { limit_price: false, stop_price: false, trail: true });
  });

  test("estimateValue uses the limit price, else the side's quote", () => {
    const row = { bid: 99, ask: 101, last: 100 };
    assert.equal(estimateValue({ side: "buy", type: "market", qty: "3" }, row), 303);
    assert.equal(estimateValue({ side: "sell", type: "market", qty: "3" }, row), 297);
    assert.equal(estimateValue({ side: "buy", type: "limit", qty: "2", limit_price: "95" }, row), 190);
    assert.equal(estimateValue({ side: "buy", type: "market", qty: "" }, row), null);
    assert.equal(estimateValue({ side: "buy", type: "market", qty: "1" }, null), null);
  });
});
