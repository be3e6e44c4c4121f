import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { LeaderboardPanel } from "../../static/js/panels.js";
import { FakeDocument, FakeWindow } from "./fake-dom.mjs";

/** The leaderboard section: the parts the panel looks up by selector. */
function panelRoot(doc) {
  const root = doc.createElement("section");
  const parts = { ".panel-body": doc.createElement("div"), "[data-field=as_of]": doc.createElement("span") };
  root.append(...Object.values(parts));
  root.querySelector = (selector) => parts[selector] || null;
  return { root, parts };
}

// GET /v2/leaderboard's body: players by username, no account numbers.
const BOARD = {
  period: "overall",
  as_of: "2026-11-25T10:00:00+00:00",
  trading_day: "2026-11-25",
  account_count: 2,
  entries: [
    { rank: 1, username: "alice", equity: "104250.00", baseline: "100000.00", return_pct: 4.25 },
    { rank: 2, username: "bob", equity: "99000.00", baseline: "100000.00", return_pct: -1.0 },
  ],
};

describe("leaderboard panel", () => {
  test("rows are keyed by username and the viewer's own row says so", () => {
    const doc = new FakeDocument();
    const win = new FakeWindow();
    const { root, parts } = panelRoot(doc);
    const panel = new LeaderboardPanel({ root, doc, win });

    panel.update({ leaderboard: BOARD, user: { username: "bob" } });
    win.runFrame();

    const rows = Array.from(parts[".panel-body"].descendants()).filter((node) => node.getAttribute("data-username"));
    assert.deepEqual(
      rows.map((row) => row.getAttribute("data-username")),
      ["alice", "bob"],
    );
    const names = rows.map((row) => Array.from(row.descendants()).find((node) => node.getAttribute("data-field") === "username").textContent);
    assert.deepEqual(names, ["alice", "bob (you)"]);
    assert.ok(!JSON.stringify(rows.map((row) => row.textContent)).includes("undefined"));
  });
});
