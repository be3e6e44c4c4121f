// The game page's leaderboard (static/js/game.js): how an entry and the board's age read, and the
// polling: every poll-ms while the game runs, the same pace after a failure (the shown board
// kept), and no more polls once the board is final. The countdown and phase on the server's
// clock, with the browser's clock injected and set wrong on purpose: never the wall clock.
import { test } from "node:test";
import assert from "node:assert/strict";

import { FakeDocument } from "./fake-dom.mjs";
import { answers, settle } from "./fake-fetch.mjs";
import { fakeTimers } from "./fake-timers.mjs";
import {
  GameBoard,
  GameClock,
  boardStatus,
  countdownText,
  entryCells,
  formatDuration,
  formatPercent,
  gamePhase,
  meLine,
  serverOffsetMs,
} from "../../static/js/game.js";

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

// --- The server's clock ------------------------------------------------------------------------

const SERVER_NOW = "2026-12-07T15:00:00+00:00";
const SERVER_NOW_MS = Date.parse(SERVER_NOW);
// This browser's clock is an hour and a quarter behind the server's.
const SKEW_MS = -75 * 60 * 1000;

/** A game page's root; `serverNow: undefined` for a page without data-server-now. */
function gameRoot({ startsAt, endsAt, ...rest }) {
  const countdown = { textContent: "" };
  const dataset = { startsAt, endsAt, state: "upcoming" };
  const serverNow = "serverNow" in rest ? rest.serverNow : SERVER_NOW;
  if (serverNow !== undefined) dataset.serverNow = serverNow;
  return { root: { dataset, querySelector: (selector) => (selector === "[data-field=countdown]" ? countdown : null) }, countdown };
}

/** A browser clock the test moves by hand, `SKEW_MS` off the server's. */
function browserClock() {
  let ms = SERVER_NOW_MS + SKEW_MS;
  return { now: () => ms, advance: (by) => (ms += by) };
}

const iso = (ms) => new Date(ms).toISOString();

test("the offset is the server's clock less the browser's; none without the server's time", () => {
  assert.equal(serverOffsetMs(SERVER_NOW, SERVER_NOW_MS + SKEW_MS), -SKEW_MS);
  assert.equal(serverOffsetMs("", 0), null);
  assert.equal(serverOffsetMs(undefined, 0), null);
});

test("the phase follows the window on the server's clock, and the board's own status wins", () => {
  const window = { startsAtMs: 1000, endsAtMs: 2000 };
  assert.equal(gamePhase({ ...window, nowMs: 999 }), "upcoming");
  assert.equal(gamePhase({ ...window, nowMs: 1000 }), "running");
  assert.equal(gamePhase({ ...window, nowMs: 1999 }), "running");
  assert.equal(gamePhase({ ...window, nowMs: 2000 }), "closing");
  assert.equal(gamePhase({ ...window, nowMs: 2000, boardStatus: "live" }), "closing");
  // Ended early by its organiser: the board says so before the planned end.
  assert.equal(gamePhase({ ...window, nowMs: 1500, boardStatus: "closing" }), "closing");
  assert.equal(gamePhase({ ...window, nowMs: 1500, boardStatus: "final" }), "final");
});

test("a countdown reads in its two largest units, rounded up to the second", () => {
  assert.equal(formatDuration(0), "0 s");
  assert.equal(formatDuration(1), "1 s");
  assert.equal(formatDuration(65_000), "1 min 05 s");
  assert.equal(formatDuration(3_600_000 + 5 * 60_000 + 1), "1 h 05 min");
  assert.equal(formatDuration(2 * 86_400_000 + 3 * 3_600_000), "2 d 3 h");
  const window = { startsAtMs: 10_000, endsAtMs: 70_000 };
  assert.equal(countdownText("upcoming", { ...window, nowMs: 0 }), "Starts in 10 s.");
  assert.equal(countdownText("running", { ...window, nowMs: 10_000 }), "Ends in 1 min 00 s.");
  assert.match(countdownText("closing", { ...window, nowMs: 70_000 }), /final standings in a moment/);
  assert.match(countdownText("final", { ...window, nowMs: 70_000 }), /final standings\.$/);
});

test("a browser whose clock is off counts down on the server's clock through start, end and final", () => {
  const clock = browserClock();
  const timers = fakeTimers();
  const { root, countdown } = gameRoot({ startsAt: iso(SERVER_NOW_MS + 90_000), endsAt: iso(SERVER_NOW_MS + 3_690_000) });
  const gameClock = new GameClock({ root, timers, now: clock.now });
  gameClock.start();
  // By the browser's own clock the game would start in an hour and a half.
  assert.equal(countdown.textContent, "Starts in 1 min 30 s.");
  assert.equal(root.dataset.state, "upcoming");

  clock.advance(30_000);
  assert.deepEqual(timers.runAll(), [1000]);
  assert.equal(countdown.textContent, "Starts in 1 min 00 s.");

  clock.advance(60_000);
  timers.runAll();
  assert.deepEqual([root.dataset.phase, root.dataset.state, countdown.textContent], ["running", "running", "Ends in 1 h 00 min."]);

  clock.advance(3_600_000);
  timers.runAll();
  assert.deepEqual([root.dataset.phase, root.dataset.state], ["closing", "over"]);
  assert.match(countdown.textContent, /final standings in a moment/);

  gameClock.setBoardStatus("final");
  assert.deepEqual([root.dataset.phase, root.dataset.state], ["final", "over"]);
  assert.equal(timers.pending.size, 0, "no more ticks once final");
});

test("ticks land on the server clock's whole seconds", () => {
  const clock = browserClock();
  const timers = fakeTimers();
  const { root } = gameRoot({ startsAt: iso(SERVER_NOW_MS + 10_000), endsAt: iso(SERVER_NOW_MS + 20_000) });
  const gameClock = new GameClock({ root, timers, now: clock.now });
  clock.advance(250); // started at 15:00:00.250 on the server's clock
  gameClock.start();
  assert.deepEqual(Array.from(timers.pending.values()).map(({ ms }) => ms), [750]);
});

test("a game its organiser ended early shows closing as soon as a poll says so", async () => {
  const clock = browserClock();
  const timers = fakeTimers();
  const { root: gamePage, countdown } = gameRoot({ startsAt: iso(SERVER_NOW_MS - 60_000), endsAt: iso(SERVER_NOW_MS + 3_600_000) });
  const gameClock = new GameClock({ root: gamePage, timers, now: clock.now });
  gameClock.start();
  assert.equal(gamePage.dataset.phase, "running");
  const doc = new FakeDocument();
  const { root } = page(doc);
  const { fetchImpl } = answers({ ...live, status: "closing" });
  new GameBoard({ root, fetchImpl, timers, doc, now: clock.now, onStatus: (status) => gameClock.setBoardStatus(status) }).start();
  const poll = Array.from(timers.pending.entries()).find(([, entry]) => entry.ms === 1666);
  timers.pending.delete(poll[0]);
  poll[1].callback();
  await settle();
  assert.deepEqual([gamePage.dataset.phase, gamePage.dataset.state], ["closing", "over"]);
  assert.match(countdown.textContent, /final standings in a moment/);
});

test("the board's age counts on the server's clock when the page gives it", () => {
  // Computed 4 s before the page was rendered; the bound 5 s, polled every 1.666 s: stale 3.666 s
  // after the load on any browser clock (the bound, a poll and STALE_MARGIN_MS past its as_of).
  const clock = browserClock();
  const doc = new FakeDocument();
  const { root } = page(doc);
  root.dataset.asOf = iso(SERVER_NOW_MS - 4000);
  root.dataset.maxAgeMs = "5000";
  const timers = fakeTimers();
  const offset = serverOffsetMs(SERVER_NOW, clock.now());
  new GameBoard({ root, fetchImpl: answers().fetchImpl, timers, doc, now: clock.now, serverOffsetMs: offset }).start();
  assert.deepEqual(Array.from(timers.pending.values()).map(({ ms }) => ms).sort(), [1666, 3666]);
});

test("without the server's time the clock is unknown: the countdown reads the browser's, the board's age counts from its arrival", () => {
  const clock = browserClock();
  const timers = fakeTimers();
  const { root: gamePage, countdown } = gameRoot({
    serverNow: undefined,
    startsAt: iso(SERVER_NOW_MS + SKEW_MS + 90_000),
    endsAt: iso(SERVER_NOW_MS + SKEW_MS + 3_690_000),
  });
  const gameClock = new GameClock({ root: gamePage, timers, now: clock.now });
  assert.equal(gameClock.offsetMs, null, "unknown, not an offset of 0");
  assert.equal(gamePage.dataset.clock, "browser");
  gameClock.start();
  assert.equal(countdown.textContent, "Starts in 1 min 30 s.");
  // The board was computed 4 s before the server rendered the page, an hour and a quarter ahead
  // of this browser's clock: against that clock it would look fresh for over an hour. With the
  // server's clock unknown its age counts from the page's load: stale at the bound, 5 s later.
  const doc = new FakeDocument();
  const { root } = page(doc);
  root.dataset.asOf = iso(SERVER_NOW_MS - 4000);
  root.dataset.maxAgeMs = "5000";
  const boardTimers = fakeTimers();
  new GameBoard({ root, fetchImpl: answers().fetchImpl, timers: boardTimers, doc, now: clock.now, serverOffsetMs: gameClock.offsetMs }).start();
  assert.deepEqual(Array.from(boardTimers.pending.values()).map(({ ms }) => ms).sort(), [1666, 5000]);
});

test("with the server's time the clock says so", () => {
  const { root } = gameRoot({ startsAt: iso(SERVER_NOW_MS), endsAt: iso(SERVER_NOW_MS + 60_000) });
  const gameClock = new GameClock({ root, timers: fakeTimers(), now: browserClock().now });
  assert.deepEqual([gameClock.offsetMs, root.dataset.clock], [-SKEW_MS, "server"]);
});
