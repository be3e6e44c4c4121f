// The game page's leaderboard (static/js/game.js): how an entry and the board's age read, and the
// polling: every poll-ms while the game runs, the same pace after a failure (the shown board
// kept), and no more polls once the board is final.
import { test } from "node:test";
import assert from "node:assert/strict";

import { FakeDocument } from "./fake-dom.mjs";
import { fakeTimers } from "./fake-timers.mjs";
import { GameBoard, boardStatus, entryCells, formatPercent, meLine } from "../../static/js/game.js";

const live = {
  as_of: "2026-12-07T10:00:05.123456+00:00",
  status: "live",
  entries: [
    { rank: 1, username: "ann", equity: "101234.5", return_pct: 1.2345, sharpe: 1.5, max_drawdown: 0.0123 },
    { rank: 2, username: "bob", equity: "99000", return_pct: -1, sharpe: null, max_drawdown: null },
  ],
};

function page(doc, { final = "false" } = {}) {
  const body = doc.createElement("tbody");
  const status = doc.createElement("p");
  const attributes = { "leaderboard-url": "/v2/games/g/leaderboard", "poll-ms": "1666", final };
  const dataset = new Proxy(attributes, {
    get: (target, name) => target[String(name).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)],
    set: (target, name, value) => {
      target[String(name).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)] = value;
      return true;
    },
  });
  const parts = { tbody: body, "[data-field=status]": status };
  const root = { dataset, querySelector: (selector) => parts[selector] ?? null };
  return { root, body, status };
}

function answers(...bodies) {
  const calls = [];
  const fetchImpl = async (url) => {
    calls.push(url);
    const next = bodies.shift();
    if (next instanceof Error) throw next;
    return { ok: true, json: async () => next };
  };
  return { calls, fetchImpl };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

test("an entry reads as rank, player, equity, signed return, Sharpe ratio and drawdown", () => {
  assert.deepEqual(entryCells(live.entries[0]), ["1", "ann", "101,234.50", "+1.23 %", "1.50", "1.23 %"]);
  assert.deepEqual(entryCells(live.entries[1]), ["2", "bob", "99,000.00", "-1.00 %", "—", "—"]);
  assert.equal(formatPercent(null), "—");
});

test("the status says whether the board is live or final, and when it was computed", () => {
  assert.equal(boardStatus(live), "Live, computed 2026-12-07 10:00:05 UTC.");
  assert.equal(boardStatus({ ...live, status: "final" }), "Final standings, as of 2026-12-07 10:00:05 UTC.");
  assert.equal(boardStatus(null), "Not computed yet.");
  assert.match(boardStatus({ ...live, status: "closing" }), /^The game is over; final standings in a moment/);
});

test("the caller's own rank shows wherever it is, and nothing for a non-player", () => {
  const me = { ...live.entries[1], rank: 7321 };
  assert.equal(meLine({ ...live, player_count: 10000, me }), "Your rank: #7321 of 10000 (-1.00 %).");
  assert.equal(meLine({ ...live, me: null }), "");
});

test("a running game's board is polled at poll-ms, rendered, and polling stops when final", async () => {
  const doc = new FakeDocument();
  const { root, body, status } = page(doc);
  const timers = fakeTimers();
  const { calls, fetchImpl } = answers(live, { ...live, status: "final", entries: [live.entries[1], live.entries[0]] });
  const board = new GameBoard({ root, fetchImpl, timers, doc });
  board.start();
  assert.deepEqual(timers.runAll(), [1666]);
  await settle();
  assert.deepEqual(body.children.map((row) => row.getAttribute("data-username")), ["ann", "bob"]);
  assert.match(status.textContent, /^Live/);
  assert.deepEqual(timers.runAll(), [1666]);
  await settle();
  assert.deepEqual(body.children.map((row) => row.getAttribute("data-username")), ["bob", "ann"]);
  assert.equal(root.dataset.final, "true");
  assert.equal(timers.pending.size, 0);
  assert.equal(calls.length, 2);
});

test("a failed poll keeps the board, marks it stale and tries again at the same pace", async () => {
  const doc = new FakeDocument();
  const { root, body } = page(doc);
  const timers = fakeTimers();
  const { fetchImpl } = answers(live, new TypeError("offline"), live);
  const board = new GameBoard({ root, fetchImpl, timers, doc });
  board.start();
  timers.runAll();
  await settle();
  assert.deepEqual(timers.runAll(), [1666]);
  await settle();
  assert.equal(root.dataset.stale, "true");
  assert.equal(body.children.length, 2);
  assert.deepEqual(timers.runAll(), [1666]);
  await settle();
  assert.equal(root.dataset.stale, "false");
});

test("a game that is over when the page loads is not polled", () => {
  const doc = new FakeDocument();
  const { root } = page(doc, { final: "true" });
  const timers = fakeTimers();
  new GameBoard({ root, fetchImpl: answers().fetchImpl, timers, doc }).start();
  assert.equal(timers.pending.size, 0);
});

test("a board that passes the staleness bound with no newer one is marked stale until a good poll", async () => {
  const doc = new FakeDocument();
  const { root, status } = page(doc);
  root.dataset.asOf = live.as_of;
  root.dataset.maxAgeMs = "5000";
  const timers = fakeTimers();
  const { fetchImpl } = answers(live);
  new GameBoard({ root, fetchImpl, timers, doc, now: () => 0 }).start();
  // The rendered board's age counts from the page's load: stale 5 s later, with no poll back yet.
  const watchdog = Array.from(timers.pending.entries()).find(([, entry]) => entry.ms === 5000);
  assert.ok(watchdog, "a timer for the bound");
  timers.pending.delete(watchdog[0]);
  watchdog[1].callback();
  assert.equal(root.dataset.stale, "true");
  assert.equal(status.textContent, "Could not refresh the leaderboard; retrying.");
  timers.runAll();
  await settle();
  assert.equal(root.dataset.stale, "false");
  assert.equal(status.textContent, "Live, computed 2026-12-07 10:00:05 UTC.");
});
