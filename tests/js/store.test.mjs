import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { Store, boundedPrepend, memoizeLast, shallowEqual } from "../../static/js/store.js";

/** A frame scheduler driven by hand: what requestAnimationFrame is in the browser. */
class ManualFrames {
  constructor() {
    this.pending = [];
    this.scheduled = 0;
  }

  schedule = (callback) => {
    this.scheduled += 1;
    this.pending.push(callback);
  };

  run() {
    const due = this.pending;
    this.pending = [];
    for (const callback of due) callback();
    return due.length;
  }
}

function storeWithFrames(initial = {}) {
  const frames = new ManualFrames();
  let clock = 0;
  const store = new Store(initial, { schedule: frames.schedule, now: () => clock++ });
  return { store, frames };
}

describe("Store batching", () => {
  test("Property 20: a burst of 1,000 updates is one render in the next frame", () => {
    const { store, frames } = storeWithFrames({ market: new Map(), ui: { query: "" } });
    const renders = [];
    store.subscribe((state, change) => renders.push({ state, change }));
    for (let i = 0; i < 1000; i++) {
      store.upsert("market", [[`S${i % 500}`, { price: i }]]);
    }
    assert.equal(renders.length, 0, "nothing renders before the frame");
    assert.equal(frames.scheduled, 1, "one frame requested for the whole burst");
    assert.equal(frames.run(), 1);
    assert.equal(renders.length, 1);
    const { state, change } = renders[0];
    assert.equal(change.updates, 1000);
    assert.equal(change.items.get("market").size, 500);
    assert.deepEqual(state.market.get("S499"), { price: 999 }, "the render sees the latest values");
    assert.equal(frames.run(), 0, "no frame is left over");
    assert.equal(store.stats.flushes, 1);
  });

  test("Property 20: mixed set/patch/upsert bursts coalesce, across many random frames", () => {
    const { store, frames } = storeWithFrames({ market: new Map(), ui: { query: "" }, account: null });
    let renders = 0;
    store.subscribe(() => {
      renders += 1;
    });
    let seed = 7;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    for (let frame = 1; frame <= 200; frame++) {
      const burst = 1 + Math.floor(random() * 300);
      for (let i = 0; i < burst; i++) {
        const pick = random();
        if (pick < 0.6) store.upsert("market", [[`S${Math.floor(random() * 50)}`, { n: frame * 1000 + i }]]);
        else if (pick < 0.8) store.patch("ui", { query: `q${frame}-${i}` });
        else store.set("account", { frame, i });
      }
      frames.run();
      assert.equal(renders, frame, "at most one render per frame");
    }
  });

  test("an update made while rendering lands in the next frame", () => {
    const { store, frames } = storeWithFrames({ count: 0 });
    const seen = [];
    store.subscribe((state) => {
      seen.push(state.count);
      if (state.count < 3) store.set("count", state.count + 1);
    });
    store.set("count", 1);
    frames.run();
    frames.run();
    frames.run();
    assert.deepEqual(seen, [1, 2, 3]);
    assert.equal(frames.run(), 0);
  });

  test("setting a slice to the value it has is not an update", () => {
    const { store, frames } = storeWithFrames({ ui: { query: "a" } });
    let renders = 0;
    store.subscribe(() => renders++);
    const item = { p: 1 };
    store.upsert("market", [["A", item]]);
    frames.run();
    store.set("ui", store.state.ui);
    store.patch("ui", { query: "a" });
    store.upsert("market", [["A", item]]);
    assert.equal(frames.run(), 0, "no frame requested");
    assert.equal(renders, 1);
  });

  test("change records name the slices and item ids that changed", () => {
    const { store, frames } = storeWithFrames({ market: new Map(), ui: {} });
    let last;
    store.subscribe((_state, change) => {
      last = change;
    });
    store.upsert("market", [["A", { p: 1 }], ["B", { p: 2 }]]);
    store.patch("ui", { query: "x" });
    frames.run();
    assert.deepEqual(Array.from(last.keys), ["ui"]);
    assert.deepEqual(Array.from(last.items.get("market")).sort(), ["A", "B"]);
    store.upsert("market", [["B", { p: 3 }]]);
    frames.run();
    assert.deepEqual(Array.from(last.keys), []);
    assert.deepEqual(Array.from(last.items.get("market")), ["B"]);
  });

  test("a failing listener does not stop the others", (t) => {
    const { store, frames } = storeWithFrames({ a: 0 });
    t.mock.method(console, "error", () => {});
    let reached = false;
    store.subscribe(() => {
      throw new Error("broken panel");
    });
    store.subscribe(() => {
      reached = true;
    });
    store.set("a", 1);
    frames.run();
    assert.ok(reached);
  });

  test("onFlush hears each flush's duration and update count", () => {
    const { store, frames } = storeWithFrames({ a: 0 });
    const flushes = [];
    store.onFlush = (ms, change) => flushes.push([ms, change.updates]);
    store.subscribe(() => {});
    store.set("a", 1);
    store.set("a", 2);
    frames.run();
    assert.equal(flushes.length, 1);
    assert.equal(flushes[0][1], 2);
    assert.ok(flushes[0][0] >= 0);
  });
});

describe("memoisation", () => {
  test("Property 17: memoizeLast does not run again for identical inputs", () => {
    let runs = 0;
    const sorted = memoizeLast((rows, key) => {
      runs += 1;
      return [...rows].sort((a, b) => a[key] - b[key]);
    });
    const rows = [{ v: 3 }, { v: 1 }];
    const first = sorted(rows, "v");
    assert.equal(sorted(rows, "v"), first, "same result object");
    assert.equal(runs, 1);
    sorted([...rows], "v");
    assert.equal(runs, 2, "a new array is a new input");
    assert.equal(sorted.runs, 2);
  });

  test("shallowEqual compares one level by identity", () => {
    const item = { a: 1 };
    assert.ok(shallowEqual({ x: item, y: 2 }, { x: item, y: 2 }));
    assert.ok(!shallowEqual({ x: item }, { x: { a: 1 } }));
    assert.ok(!shallowEqual({ x: 1 }, { x: 1, y: undefined }));
    assert.ok(shallowEqual([1, item], [1, item]));
    assert.ok(!shallowEqual([1], { 0: 1 }));
  });
});

describe("bounded histories", () => {
  test("boundedPrepend keeps the newest entries only, replacing an entry with the same key", () => {
    let list = [];
    for (let i = 0; i < 1000; i++) {
      list = boundedPrepend(list, { id: i % 300, n: i }, 200);
      assert.ok(list.length <= 200);
    }
    assert.equal(list.length, 200);
    assert.deepEqual(list[0], { id: 999 % 300, n: 999 });
    assert.equal(new Set(list.map((entry) => entry.id)).size, 200, "no duplicates");
  });
});
