import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  maxWindowRows,
  nextActiveIndex,
  scrollTopToReveal,
  visibleRange,
} from "../../static/js/virtual-scroll.js";

// Hypothesis-style: many random cases from a seeded generator, so a failure reproduces.
function generator(seed) {
  let state = seed >>> 0;
  const next = () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 4294967296;
  };
  return {
    int: (low, high) => low + Math.floor(next() * (high - low + 1)),
    pick: (items) => items[Math.floor(next() * items.length)],
  };
}

describe("visibleRange", () => {
  test("Property 18: lists over 50 items render a bounded window at any scroll position", () => {
    const gen = generator(18);
    for (let i = 0; i < 20000; i++) {
      const count = gen.int(51, 20000);
      const rowHeight = gen.int(12, 60);
      const viewportHeight = gen.int(0, 1400);
      const overscan = gen.int(0, 20);
      const scrollTop = gen.pick([gen.int(-500, count * rowHeight + 5000), 0, count * rowHeight, NaN]);
      const { start, end } = visibleRange({ scrollTop, viewportHeight, rowHeight, count, overscan });
      const bound = maxWindowRows({ viewportHeight, rowHeight, overscan });
      assert.ok(0 <= start && start <= end && end <= count, `range [${start}, ${end}) of ${count}`);
      assert.ok(end - start <= bound, `window ${end - start} > bound ${bound}`);
      assert.ok(end - start >= 1, "something is rendered");
    }
  });

  test("Property 18: the window covers every row that meets the viewport", () => {
    const gen = generator(1818);
    for (let i = 0; i < 20000; i++) {
      const count = gen.int(51, 5000);
      const rowHeight = gen.int(12, 60);
      const viewportHeight = gen.int(1, 1400);
      const overscan = gen.int(0, 12);
      const maxTop = Math.max(0, count * rowHeight - viewportHeight);
      const scrollTop = gen.int(0, maxTop);
      const { start, end } = visibleRange({ scrollTop, viewportHeight, rowHeight, count, overscan });
      const firstVisible = Math.floor(scrollTop / rowHeight);
      const lastVisible = Math.min(count - 1, Math.floor((scrollTop + viewportHeight - 1) / rowHeight));
      assert.ok(start <= Math.max(0, firstVisible - overscan), `start ${start} misses overscan above ${firstVisible}`);
      assert.ok(end - 1 >= Math.min(count - 1, lastVisible), `end ${end} misses row ${lastVisible}`);
    }
  });

  test("Property 18: lists of at most 50 items render whole", () => {
    for (let count = 0; count <= 50; count++) {
      assert.deepEqual(visibleRange({ scrollTop: 999, viewportHeight: 100, rowHeight: 30, count, overscan: 2 }), {
        start: 0,
        end: count,
      });
    }
  });

  test("500 symbols in a 520px table at 32px rows keep under 60 rows", () => {
    const bound = maxWindowRows({ viewportHeight: 520, rowHeight: 32, overscan: 8 });
    assert.ok(bound < 60, `bound ${bound}`);
    for (let top = 0; top <= 500 * 32; top += 7) {
      const { start, end } = visibleRange({ scrollTop: top, viewportHeight: 520, rowHeight: 32, count: 500, overscan: 8 });
      assert.ok(end - start <= bound);
    }
  });

  test("a row height that is not positive is refused", () => {
    assert.throws(() => visibleRange({ scrollTop: 0, viewportHeight: 100, rowHeight: 0, count: 100 }), RangeError);
  });
});

describe("keyboard maths", () => {
  test("scrollTopToReveal brings any row fully into view, moving as little as possible", () => {
    const gen = generator(99);
    for (let i = 0; i < 10000; i++) {
      const rowHeight = gen.int(10, 50);
      const viewportHeight = gen.int(rowHeight, 1000);
      const count = gen.int(1, 3000);
      const index = gen.int(0, count - 1);
      const scrollTop = gen.int(0, Math.max(0, count * rowHeight - viewportHeight));
      const top = scrollTopToReveal(index, { scrollTop, viewportHeight, rowHeight });
      assert.ok(index * rowHeight >= top, "row top in view");
      assert.ok((index + 1) * rowHeight <= top + viewportHeight, "row bottom in view");
      const alreadyVisible = index * rowHeight >= scrollTop && (index + 1) * rowHeight <= scrollTop + viewportHeight;
      if (alreadyVisible) assert.equal(top, scrollTop, "a visible row does not scroll");
    }
  });

  test("nextActiveIndex moves within the list and ignores other keys", () => {
    assert.equal(nextActiveIndex("ArrowDown", -1, 10, 5), 0);
    assert.equal(nextActiveIndex("ArrowDown", 9, 10, 5), 9);
    assert.equal(nextActiveIndex("ArrowUp", 0, 10, 5), 0);
    assert.equal(nextActiveIndex("PageDown", 2, 10, 5), 7);
    assert.equal(nextActiveIndex("PageDown", 7, 10, 5), 9);
    assert.equal(nextActiveIndex("PageUp", 3, 10, 5), 0);
    assert.equal(nextActiveIndex("Home", 6, 10, 5), 0);
    assert.equal(nextActiveIndex("End", 0, 10, 5), 9);
    assert.equal(nextActiveIndex("a", 3, 10, 5), null);
    assert.equal(nextActiveIndex("ArrowDown", 0, 0, 5), null);
  });
});
