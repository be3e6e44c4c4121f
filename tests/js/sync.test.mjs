import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { Store } from "../../static/js/store.js";
import { Resyncer, applyDashboardMessage, applyOrder, mergeOrder, rolloverDelay } from "../../static/js/sync.js";
import { fakeTimers } from "./fake-timers.mjs";

function accountStore() {
  return new Store(
    { account: null, positions: [], openOrders: [], orders: [], fills: [], leaderboard: null },
    { schedule: () => {}, now: () => 0 },
  );
}

function order(status, updatedAt, extra = {}) {
  return { id: "o1", symbol: "AAPL", side: "buy", qty: "5", filled_qty: "0", status, updated_at: updatedAt, ...extra };
}

function tradeUpdate(event, orderState, extra = {}) {
  return { stream: "account_update", data: { trade_update: { event, order: orderState, timestamp: orderState.updated_at, ...extra } } };
}

/** A promise the test settles when it wants: the bootstrap GET in flight. */
function deferred() {
  let resolve;
  let reject;
  const promise = new Promise((ok, fail) => {
    resolve = ok;
    reject = fail;
  });
  return { promise, resolve, reject };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe("order states from the POST answer and the stream", () => {
  test("a POST answer arriving after the stream's fill does not roll the order back", () => {
    const store = accountStore();
    applyDashboardMessage(store, tradeUpdate("new", order("new", "2026-01-02T15:00:00.100Z")));
    applyDashboardMessage(
      store,
      tradeUpdate("fill", order("filled", "2026-01-02T15:00:00.200Z", { filled_qty: "5" }), { price: "10", qty: "5" }),
    );
    assert.deepEqual(store.state.openOrders, []);

    assert.equal(applyOrder(store, order("accepted", "2026-01-02T15:00:00.050Z")), false);
    assert.deepEqual(store.state.openOrders, [], "the filled order does not come back as open");
    assert.equal(store.state.orders[0].status, "filled");
  });

  test("a POST answer after the stream's cancel, even with an equal timestamp, is ignored", () => {
    const state = { openOrders: [], orders: [order("canceled", "2026-01-02T15:00:00Z")] };
    assert.equal(mergeOrder(state, order("new", "2026-01-02T15:00:00Z")), null);
  });

  test("a later partial fill outranks an earlier answer; newer states still apply", () => {
    const partial = order("partially_filled", "2026-01-02T15:00:01Z", { filled_qty: "2" });
    const state = { openOrders: [partial], orders: [partial] };
    assert.equal(mergeOrder(state, order("new", "2026-01-02T15:00:00Z")), null);
    assert.equal(mergeOrder(state, order("new", "2026-01-02T15:00:01Z")), null, "same instant: the further-filled copy wins");
    const filled = order("filled", "2026-01-02T15:00:02Z", { filled_qty: "5" });
    const merged = mergeOrder(state, filled);
    assert.deepEqual(merged.openOrders, []);
    assert.deepEqual(merged.orders, [filled]);
    const first = mergeOrder({ openOrders: [], orders: [] }, order("new", "2026-01-02T15:00:00Z"));
    assert.equal(first.openOrders.length, 1, "an order the page has not seen is added");
  });

  test("a final copy wins over an open one whatever the timestamps (a cancel as of a game's end)", () => {
    // The open copy was published at the market's open, after the game ended at 16:00 the day before.
    const open = order("new", "2026-01-03T14:30:00Z");
    const state = { openOrders: [open], orders: [open] };
    const canceled = order("canceled", "2026-01-02T21:00:00Z");
    const merged = mergeOrder(state, canceled);
    assert.deepEqual(merged.openOrders, []);
    assert.deepEqual(merged.orders, [canceled]);
    // And the other way round: an open copy never reopens a final one.
    assert.equal(mergeOrder(merged, order("new", "2026-01-04T14:30:00Z")), null);
  });
});

describe("Resyncer", () => {
  function setup() {
    const store = accountStore();
    const timers = fakeTimers();
    const loads = [];
    const errors = [];
    const resyncer = new Resyncer({
      load: () => {
        const call = deferred();
        loads.push(call);
        return call.promise;
      },
      apply: (data) => {
        store.set("account", data.account);
        store.set("openOrders", data.orders.open);
        store.set("orders", data.orders.recent);
        store.set("fills", data.fills);
      },
      applyMessage: (message) => applyDashboardMessage(store, message),
      onError: (error) => errors.push(error),
      timers,
      delayMs: 250,
      rollover: { random: () => 0.5, jitterMs: 30000, floorMs: 1000 },
    });
    return { store, timers, loads, errors, resyncer };
  }

  const snapshot = { account: { cash: "100" }, orders: { open: [], recent: [] }, fills: [] };

  test("dashboard events that arrive while the snapshot is fetched are applied after it", async () => {
    const { store, timers, loads, resyncer } = setup();
    resyncer.schedule();
    resyncer.schedule();
    assert.deepEqual(timers.runAll(), [250], "calls within the delay share one fetch");
    assert.equal(loads.length, 1);

    const placed = order("new", "2026-01-02T15:00:00Z");
    resyncer.dispatch({ stream: "account_update", data: { account: { cash: "50" }, positions: [], trade_update: { event: "new", order: placed } } });
    resyncer.defer(() => applyOrder(store, placed));
    assert.equal(store.state.account, null, "held while the GET is in flight");

    loads[0].resolve(snapshot); // taken before the order was placed
    await settle();
    assert.deepEqual(store.state.account, { cash: "50" }, "the newer event wins over the older snapshot");
    assert.deepEqual(store.state.openOrders, [placed]);
    assert.equal(store.state.orders.length, 1);

    resyncer.dispatch({ stream: "account_update", data: { account: { cash: "40" } } });
    assert.deepEqual(store.state.account, { cash: "40" }, "applied at once with no fetch in flight");
  });

  test("a replayed fill that the snapshot already holds is not listed twice", async () => {
    const { store, timers, loads, resyncer } = setup();
    resyncer.schedule();
    timers.runAll();
    const filled = order("filled", "2026-01-02T15:00:00Z", { filled_qty: "5" });
    resyncer.dispatch(tradeUpdate("fill", filled, { price: "10", qty: "5" }));
    const activity = { id: "20260102150000000::x", activity_type: "FILL", order_id: "o1", qty: "5", price: "10", transaction_time: "2026-01-02T15:00:00.000000Z" };
    loads[0].resolve({ ...snapshot, orders: { open: [], recent: [filled] }, fills: [activity] });
    await settle();
    assert.deepEqual(store.state.fills, [activity]);
  });

  test("a reconnect reported during the fetch runs another resync after it", async () => {
    const { timers, loads, errors, resyncer } = setup();
    resyncer.schedule();
    timers.runAll();
    resyncer.schedule(); // the other socket came back while the GET was in flight
    assert.equal(timers.pending.size, 0);
    loads[0].resolve(snapshot);
    await settle();
    assert.deepEqual(timers.runAll(), [250]);
    assert.equal(loads.length, 2);
    loads[1].reject(new Error("signed out"));
    await settle();
    assert.equal(errors.length, 1);
    resyncer.schedule();
    assert.equal(timers.pending.size, 1, "a failed fetch does not block the next");
  });

  test("the next trading day's start schedules one resync, on the server's clock, with jitter", async () => {
    const { timers, loads, resyncer } = setup();
    const wait = resyncer.scheduleRollover("2026-01-03T05:00:00+00:00", "2026-01-03T04:00:00+00:00");
    assert.equal(wait, 3600000 + 1000 + 15000);
    resyncer.scheduleRollover("2026-01-03T05:00:00+00:00", "2026-01-03T04:30:00+00:00");
    assert.deepEqual(Array.from(timers.pending.values(), ({ ms }) => ms), [1800000 + 16000], "the newer bootstrap replaces the timer");
    timers.runAll();
    assert.deepEqual(timers.runAll(), [250]);
    assert.equal(loads.length, 1, "the boundary set off a bootstrap fetch");
    assert.equal(resyncer.scheduleRollover(undefined, "2026-01-03T04:30:00+00:00"), null);
    assert.equal(timers.pending.size, 0);
  });

  test("rollover waits spread pages across the jitter and never go past setTimeout's range", () => {
    const at = (random) => rolloverDelay("2026-01-03T05:00:00Z", "2026-01-03T05:00:00Z", { random, jitterMs: 30000, floorMs: 1000 });
    assert.equal(at(() => 0), 1000);
    assert.equal(at(() => 0.999), 1000 + 29970);
    assert.equal(rolloverDelay("2026-01-03T05:00:00Z", "2026-01-03T06:00:00Z", { random: () => 0 }), 1000, "a past boundary refetches soon");
    assert.equal(rolloverDelay("2099-01-01T00:00:00Z", "2026-01-01T00:00:00Z"), 2 ** 31 - 1);
  });
});
