// The dashboard on a game account (docs/dashboard.md): its Leaderboard panel shows the game's board, polled
// at the bootstrap's leaderboard_poll_ms until final; the dashboard channel's global-board pushes
// do not overwrite it (they still do on a default account); the panel's title names the game.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { boardAgeMs } from "../../static/js/board-poll.js";
import { LeaderboardPanel, leaderboardAsOf, leaderboardTitle } from "../../static/js/panels.js";
import { Store } from "../../static/js/store.js";
import { applyBootstrapBoard, applyDashboardMessage, gameBoardPoller, newerBoard } from "../../static/js/sync.js";
import { FakeDocument, FakeWindow } from "./fake-dom.mjs";
import { answers, settle } from "./fake-fetch.mjs";
import { fakeTimers } from "./fake-timers.mjs";

const GAME = { id: "g1", name: "Autumn class", leaderboard_url: "/v2/games/g1/leaderboard?limit=20" };
const GLOBAL = { period: "overall", as_of: "2026-12-07T10:00:00+00:00", entries: [{ rank: 1, username: "zed", equity: "1", baseline: "1", return_pct: 0 }] };

function gameBoard(status, usernames, asOf = "2026-12-07T10:00:05+00:00") {
  return {
    game_id: "g1",
    status,
    as_of: asOf,
    entries: usernames.map((username, index) => ({ rank: index + 1, username, equity: "100.00", return_pct: 0, sharpe: null, max_drawdown: null })),
  };
}

function dashboardStore({ game = GAME, leaderboard = gameBoard("live", ["ann"]) } = {}) {
  return new Store({ game, leaderboard }, { schedule: () => {}, now: () => 0 });
}

/** Fires the pending timers asked for with `ms`; returns how many. */
function fire(timers, ms) {
  const due = Array.from(timers.pending.entries()).filter(([, entry]) => entry.ms === ms);
  for (const [id] of due) timers.pending.delete(id);
  for (const [, entry] of due) entry.callback();
  return due.length;
}

function leaderboardPanel() {
  const doc = new FakeDocument();
  const win = new FakeWindow();
  const root = doc.createElement("section");
  const parts = { ".panel-body": doc.createElement("div"), "[data-field=as_of]": doc.createElement("span"), "[data-field=title]": doc.createElement("h2") };
  root.append(...Object.values(parts));
  root.querySelector = (selector) => parts[selector] || null;
  return { panel: new LeaderboardPanel({ root, doc, win }), root, asOf: parts["[data-field=as_of]"], title: parts["[data-field=title]"] };
}

// The bootstrap's instant on the server's clock, and the client's clock 1 h behind it.
const SERVER_NOW = Date.parse("2026-12-07T10:00:10+00:00");
const CLIENT_NOW = SERVER_NOW - 3_600_000;

function bootstrap(leaderboard, { game = GAME, asOf = SERVER_NOW } = {}) {
  return {
    as_of: new Date(asOf).toISOString(),
    game,
    leaderboard,
    config: { leaderboard_poll_ms: 30000, leaderboard_max_staleness_ms: 90000 },
  };
}

describe("the dashboard's leaderboard on a game account", () => {
  test("global-board pushes never overwrite a game's board, but still update a default account's", () => {
    const store = dashboardStore();
    const board = store.state.leaderboard;
    applyDashboardMessage(store, { stream: "leaderboard", data: GLOBAL });
    assert.equal(store.state.leaderboard, board);

    const plain = dashboardStore({ game: null, leaderboard: null });
    applyDashboardMessage(plain, { stream: "leaderboard", data: GLOBAL });
    assert.deepEqual(plain.state.leaderboard, GLOBAL);
  });

  test("the game's board is polled at a third of the staleness bound into the store, until final", async () => {
    const store = dashboardStore();
    const timers = fakeTimers();
    const later = gameBoard("live", ["bob", "ann"]);
    const final = gameBoard("final", ["ann", "bob"], "2026-12-09T21:00:00+00:00");
    const { calls, fetchImpl } = answers(later, final);
    const poller = gameBoardPoller(store, { game: GAME, pollMs: 30000, fetchImpl, timers });
    assert.ok(poller);
    assert.deepEqual(timers.runAll(), [30000]);
    await settle();
    assert.deepEqual(store.state.leaderboard, later);
    // A push between polls changes nothing.
    applyDashboardMessage(store, { stream: "leaderboard", data: GLOBAL });
    assert.deepEqual(store.state.leaderboard, later);
    assert.deepEqual(timers.runAll(), [30000]);
    await settle();
    assert.deepEqual(store.state.leaderboard, final);
    assert.equal(timers.pending.size, 0, "no poll after the final standings");
    assert.deepEqual(calls, [GAME.leaderboard_url, GAME.leaderboard_url]);
  });

  test("a failed poll keeps the board and retries at the same pace", async () => {
    const store = dashboardStore();
    const shown = store.state.leaderboard;
    const timers = fakeTimers();
    const { fetchImpl } = answers(new TypeError("offline"), gameBoard("live", ["bob"]));
    gameBoardPoller(store, { game: GAME, pollMs: 500, fetchImpl, timers });
    timers.runAll();
    await settle();
    assert.equal(store.state.leaderboard, shown);
    assert.deepEqual(timers.runAll(), [500]);
    await settle();
    assert.deepEqual(store.state.leaderboard.entries.map((entry) => entry.username), ["bob"]);
  });

  test("nothing is polled for a default account or a board already final, nor after stop", async () => {
    const timers = fakeTimers();
    const { calls, fetchImpl } = answers(gameBoard("live", ["bob"]));
    assert.equal(gameBoardPoller(dashboardStore({ game: null, leaderboard: GLOBAL }), { game: null, pollMs: 1, fetchImpl, timers }), null);
    const finalStore = dashboardStore({ leaderboard: gameBoard("final", ["ann"]) });
    assert.equal(gameBoardPoller(finalStore, { game: GAME, pollMs: 1, fetchImpl, timers }), null);
    assert.equal(timers.pending.size, 0);

    // A new bootstrap stops the old poller; an answer already on its way is dropped.
    const store = dashboardStore();
    const shown = store.state.leaderboard;
    const poller = gameBoardPoller(store, { game: GAME, pollMs: 1, fetchImpl, timers });
    timers.runAll();
    poller.stop();
    await settle();
    assert.equal(store.state.leaderboard, shown);
    assert.equal(timers.pending.size, 0);
    assert.equal(calls.length, 1);
  });

  test("the title names the game, and says when the standings are final", () => {
    assert.equal(leaderboardTitle(null, GLOBAL), "Leaderboard");
    assert.equal(leaderboardTitle(GAME, gameBoard("live", [])), "Leaderboard: Autumn class");
    assert.equal(leaderboardTitle(GAME, gameBoard("final", [])), "Leaderboard: Autumn class (final standings)");

    const doc = new FakeDocument();
    const win = new FakeWindow();
    const root = doc.createElement("section");
    const parts = { ".panel-body": doc.createElement("div"), "[data-field=as_of]": doc.createElement("span"), "[data-field=title]": doc.createElement("h2") };
    root.append(...Object.values(parts));
    root.querySelector = (selector) => parts[selector] || null;
    const panel = new LeaderboardPanel({ root, doc, win });
    const live = gameBoard("live", ["ann"]);
    panel.update({ leaderboard: live, game: GAME, user: { username: "ann" } });
    assert.equal(parts["[data-field=title]"].textContent, "Leaderboard: Autumn class");
    // Unchanged inputs: no re-render (the title is not even rewritten).
    parts["[data-field=title]"].textContent = "untouched";
    panel.update({ leaderboard: live, game: GAME, user: { username: "ann" } });
    assert.equal(parts["[data-field=title]"].textContent, "untouched");
    panel.update({ leaderboard: gameBoard("final", ["ann"]), game: GAME, user: { username: "ann" } });
    assert.equal(parts["[data-field=title]"].textContent, "Leaderboard: Autumn class (final standings)");
  });
});

describe("the dashboard's game board is marked stale, as the game's page marks it", () => {
  test("a failed poll marks the panel stale, and the next good poll clears the mark", async () => {
    const store = dashboardStore();
    const timers = fakeTimers();
    const { fetchImpl } = answers(new TypeError("offline"), gameBoard("live", ["bob"], "2026-12-07T10:00:35+00:00"));
    gameBoardPoller(store, { game: GAME, pollMs: 30000, fetchImpl, timers });
    const { panel, root, asOf } = leaderboardPanel();
    panel.update({ ...store.state, user: { username: "ann" } });
    assert.equal(root.dataset.stale, "false");
    const shown = store.state.leaderboard;

    timers.runAll();
    await settle();
    assert.equal(store.state.leaderboardStale, true);
    assert.equal(store.state.leaderboard, shown, "the board is kept");
    panel.update({ ...store.state, user: { username: "ann" } });
    assert.equal(root.dataset.stale, "true");
    assert.match(asOf.textContent, /^as of .+; could not refresh, retrying$/);

    timers.runAll();
    await settle();
    assert.equal(store.state.leaderboardStale, false);
    panel.update({ ...store.state, user: { username: "ann" } });
    assert.equal(root.dataset.stale, "false");
    assert.doesNotMatch(asOf.textContent, /could not refresh/);
  });

  test("a board that passes the bound with no good poll turns stale, on the server's clock", async () => {
    const store = new Store({ game: null, leaderboard: null, leaderboardStale: false }, { schedule: () => {}, now: () => 0 });
    const timers = fakeTimers();
    let clientNow = CLIENT_NOW;
    const fresh = gameBoard("live", ["bob"], new Date(SERVER_NOW + 60_000).toISOString());
    const { fetchImpl } = answers(fresh);
    // Computed 10 s before the bootstrap: its age passes bound + poll interval + margin in
    // 90 + 30 + 1 - 10 = 111 s, but 90 s with no good poll comes first, whatever the client's clock says.
    const board = gameBoard("live", ["ann"], new Date(SERVER_NOW - 10_000).toISOString());
    applyBootstrapBoard(store, bootstrap(board), { now: () => clientNow, fetchImpl, timers });
    assert.equal(store.state.leaderboardStale, false);
    assert.deepEqual(Array.from(timers.pending.values(), (entry) => entry.ms).sort(), [30000, 90000]);

    // The poll hangs past the bound: nothing answers, yet the board is marked.
    clientNow += 90_000;
    assert.equal(fire(timers, 90000), 1);
    assert.equal(store.state.leaderboardStale, true);

    // A good poll clears it and watches the new board.
    clientNow += 1_000;
    fire(timers, 30000);
    await settle();
    assert.deepEqual(store.state.leaderboard, fresh);
    assert.equal(store.state.leaderboardStale, false);
    assert.ok(Array.from(timers.pending.values()).some((entry) => entry.ms === 90000));
  });

  // The served figures: a 5 s bound, polls every 1.67 s (a third of it), the job refreshing every 4 s.
  function servedPoller(bodies) {
    const store = new Store({ game: null, leaderboard: null, leaderboardStale: false }, { schedule: () => {}, now: () => 0 });
    const timers = fakeTimers();
    const clock = { now: CLIENT_NOW };
    const data = bootstrap(gameBoard("live", ["ann"], new Date(SERVER_NOW - 4_900).toISOString()));
    data.config = { leaderboard_poll_ms: 1670, leaderboard_max_staleness_ms: 5000 };
    const poller = applyBootstrapBoard(store, data, { now: () => clock.now, fetchImpl: answers(...bodies).fetchImpl, timers });
    return { store, timers, clock, poller };
  }

  test("a board served 4.9 s old, with the next good poll 1.67 s later, is never marked stale", async () => {
    // The next poll brings another board just inside the bound (the job refreshed it 4.9 s ago).
    const next = gameBoard("live", ["bob"], new Date(SERVER_NOW + 1_670 - 4_900).toISOString());
    const { store, timers, clock } = servedPoller([next]);
    assert.equal(store.state.leaderboardStale, false);
    // Its watchdog: 5 + 1.67 + 1 - 4.9 s from now, past the next poll.
    assert.deepEqual(Array.from(timers.pending.values(), (entry) => entry.ms).sort((a, b) => a - b), [1670, 2770]);
    clock.now += 1_670;
    fire(timers, 1670);
    await settle();
    assert.deepEqual(store.state.leaderboard, next);
    assert.equal(store.state.leaderboardStale, false, "no flicker: shown 6.57 s old, yet one poll interval late at most");
    // One watchdog, the new board's (4.9 s old in its turn): the old one is gone.
    assert.deepEqual(Array.from(timers.pending.values(), (entry) => entry.ms).sort((a, b) => a - b), [1670, 2770]);
  });

  test("failing polls mark the board stale; one failure alone does not", async () => {
    const { store, timers, clock } = servedPoller([new TypeError("offline"), new TypeError("offline")]);
    clock.now += 1_670;
    fire(timers, 1670);
    await settle();
    assert.equal(store.state.leaderboardStale, false, "one failed poll, the board still within its allowance");
    // The watchdog re-armed for what is left of the allowance.
    clock.now += 1_100;
    assert.equal(fire(timers, 1100), 1);
    assert.equal(store.state.leaderboardStale, true);
    clock.now += 570;
    fire(timers, 1670);
    await settle();
    assert.equal(store.state.leaderboardStale, true, "still failing: still stale");
  });

  test("a bootstrap whose board is already past bound + poll interval + margin shows it stale at once", () => {
    const store = dashboardStore();
    const old = gameBoard("live", ["ann"], new Date(SERVER_NOW - 121_001).toISOString());
    store.set("leaderboard", null);
    applyBootstrapBoard(store, bootstrap(old), { now: () => CLIENT_NOW, fetchImpl: answers().fetchImpl, timers: fakeTimers() });
    assert.equal(store.state.leaderboardStale, true);
  });

  test("a final board never turns stale, and a default account's board is never marked", () => {
    const timers = fakeTimers();
    const store = dashboardStore();
    const final = gameBoard("final", ["ann"], new Date(SERVER_NOW - 86_400_000).toISOString());
    assert.equal(applyBootstrapBoard(store, bootstrap(final), { now: () => CLIENT_NOW, timers }), null);
    assert.equal(store.state.leaderboardStale, false);
    const plain = dashboardStore({ game: null, leaderboard: null });
    assert.equal(applyBootstrapBoard(plain, bootstrap(GLOBAL, { game: null }), { now: () => CLIENT_NOW, timers }), null);
    assert.equal(plain.state.leaderboardStale, false);
    assert.equal(timers.pending.size, 0);
  });

  test("a board's age: its as_of on the server's clock, else the time since it came", () => {
    const board = { as_of: "2026-12-07T10:00:00+00:00" };
    const at = Date.parse(board.as_of);
    assert.equal(boardAgeMs(board, { nowMs: at - 3_600_000 + 5_000, serverOffsetMs: 3_600_000 }), 5_000);
    assert.equal(boardAgeMs(board, { nowMs: 12_000, receivedAtMs: 10_000 }), 2_000);
    assert.equal(leaderboardAsOf(null, true), "Could not refresh the leaderboard; retrying");
    assert.equal(leaderboardAsOf(null, false), "");
  });
});

describe("a resync never shows an older board than the one displayed", () => {
  const at = (seconds) => new Date(SERVER_NOW + seconds * 1000).toISOString();

  test("a resync's bootstrap older than the board shown keeps the shown one; a newer one replaces it", () => {
    const store = dashboardStore({ leaderboard: gameBoard("live", ["bob", "ann"], at(20)) });
    const shown = store.state.leaderboard;
    const options = { now: () => CLIENT_NOW, fetchImpl: answers().fetchImpl, timers: fakeTimers() };
    const poller = applyBootstrapBoard(store, bootstrap(gameBoard("live", ["ann", "bob"], at(5))), options);
    assert.equal(store.state.leaderboard, shown);
    // The new poller judges the board it kept.
    assert.equal(poller.board, shown);
    const newer = gameBoard("live", ["ann", "bob"], at(25));
    applyBootstrapBoard(store, bootstrap(newer), { ...options, previous: poller });
    assert.equal(store.state.leaderboard, newer);
  });

  test("a final board outranks any live copy; another game's board always replaces", () => {
    const final = gameBoard("final", ["ann"], at(0));
    assert.equal(newerBoard(final, gameBoard("live", ["bob"], at(30))), final);
    const later = gameBoard("live", ["bob"], at(30));
    assert.equal(newerBoard(gameBoard("live", ["ann"], at(0)), final), final);
    const other = { ...gameBoard("live", ["cy"], at(-60)), game_id: "g2" };
    assert.equal(newerBoard(later, other), other);
    assert.equal(newerBoard(later, null), null);
    assert.equal(newerBoard(null, later), later);
    // A bootstrap with no board for the game shown keeps the game's dated board.
    assert.equal(newerBoard(later, null, { gameId: "g1" }), later);
    assert.equal(newerBoard(later, null, { gameId: "g2" }), null);
    // The same instant: the incoming copy.
    const twin = gameBoard("live", ["bob"], at(30));
    assert.equal(newerBoard(later, twin), twin);
  });

  test("an undated or unparseable copy never replaces a dated one; a dated one replaces it", () => {
    const dated = gameBoard("live", ["bob"], at(30));
    for (const asOf of [null, undefined, "not a time"]) {
      const undated = gameBoard("live", ["ann"], asOf);
      if (asOf === undefined) delete undated.as_of;
      assert.equal(newerBoard(dated, undated), dated);
      assert.equal(newerBoard(undated, dated), dated);
    }
    const store = dashboardStore({ leaderboard: dated });
    const options = { now: () => CLIENT_NOW, fetchImpl: answers().fetchImpl, timers: fakeTimers() };
    applyBootstrapBoard(store, bootstrap(null), options);
    assert.equal(store.state.leaderboard, dated, "a bootstrap with no board keeps the game's board");
    applyBootstrapBoard(store, bootstrap(null, { game: null }), options);
    assert.equal(store.state.leaderboard, null, "a default account's bootstrap with no board clears it");
  });

  test("an older poll answer or channel push does not replace a newer board", async () => {
    const shownGame = gameBoard("live", ["bob"], at(20));
    const store = dashboardStore({ leaderboard: shownGame });
    const timers = fakeTimers();
    gameBoardPoller(store, { game: GAME, pollMs: 30000, fetchImpl: answers(gameBoard("live", ["ann"], at(10))).fetchImpl, timers });
    timers.runAll();
    await settle();
    assert.equal(store.state.leaderboard, shownGame);

    const globalNow = { ...GLOBAL, as_of: at(20) };
    const plain = dashboardStore({ game: null, leaderboard: globalNow });
    applyDashboardMessage(plain, { stream: "leaderboard", data: { ...GLOBAL, as_of: at(10) } });
    assert.equal(plain.state.leaderboard, globalNow);
    const daily = { ...GLOBAL, period: "daily", as_of: at(0) };
    applyDashboardMessage(plain, { stream: "leaderboard", data: daily });
    assert.equal(plain.state.leaderboard, daily, "another period is another board");
  });
});
