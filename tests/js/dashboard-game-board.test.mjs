// The dashboard on a game account (issue 16): its Leaderboard panel shows the game's board, polled
// at the bootstrap's leaderboard_poll_ms until final; the dashboard channel's global-board pushes
// do not overwrite it (they still do on a default account); the panel's title names the game.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { LeaderboardPanel, leaderboardTitle } from "../../static/js/panels.js";
import { Store } from "../../static/js/store.js";
import { applyDashboardMessage, gameBoardPoller } from "../../static/js/sync.js";
import { FakeDocument, FakeWindow } from "./fake-dom.mjs";
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
