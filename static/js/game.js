// A game's page (templates/games/game.html; analytics/game_pages.py): keeps the game's leaderboard
// fresh. The server renders the board when the page loads; while the game runs this module asks
// the game's leaderboard API for it again every data-poll-ms (a third of the staleness bound,
// LEADERBOARD_MAX_STALENESS_S, which the API itself never exceeds), and stops once the board is
// final (board-poll.js, shared with the dashboard). A failed poll, or a board older than the
// staleness bound (data-max-age-ms), keeps the shown board, says so, and polling goes on at the
// same pace; the next good poll clears it.
// A module file, not an inline script: the pages' Content-Security-Policy runs no inline code.

import { BoardPoller, isFinal } from "./board-poll.js";

export { isFinal };

// --- Pure helpers (tested in node: tests/js/game.test.mjs) -------------------------------------

/** The cells of one board entry, in the table's column order. */
export function entryCells(entry) {
  return [
    String(entry.rank),
    entry.username,
    formatMoney(entry.equity),
    formatPercent(entry.return_pct),
    formatRatio(entry.sharpe),
    formatDrawdown(entry.max_drawdown),
  ];
}

export function formatMoney(text) {
  const value = Number(text);
  if (text == null || !Number.isFinite(value)) return "—";
  return value.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
}

export function formatPercent(value) {
  const number = Number(value);
  if (value == null || !Number.isFinite(number)) return "—";
  return `${number >= 0 ? "+" : ""}${number.toFixed(2)} %`;
}

/** A drawdown (a fraction of the peak) as an unsigned percent. */
export function formatDrawdown(value) {
  const number = Number(value);
  if (value == null || !Number.isFinite(number)) return "—";
  return `${(Math.abs(number) * 100).toFixed(2)} %`;
}

export function formatRatio(value) {
  const number = Number(value);
  if (value == null || !Number.isFinite(number)) return "—";
  return number.toFixed(2);
}

/** The line under the board: when it was computed, and whether it is final. */
export function boardStatus(board) {
  if (!board || !board.as_of) return "Not computed yet.";
  const when = board.as_of.replace("T", " ").replace(/\.\d+/, "").replace(/(\+00:00|Z)$/, " UTC");
  if (isFinal(board)) return `Final standings, as of ${when}.`;
  if (board.status === "closing") return `The game is over; final standings in a moment (last live board ${when}).`;
  return `Live, computed ${when}.`;
}

/** The caller's own line under the board (the API's `me`, wherever it ranks), or "" for none. */
export function meLine(board) {
  const me = board && board.me;
  if (!me) return "";
  return `Your rank: #${me.rank} of ${board.player_count} (${formatPercent(me.return_pct)}).`;
}

// --- The page ----------------------------------------------------------------------------------

export class GameBoard {
  constructor({ root, fetchImpl = globalThis.fetch?.bind(globalThis), timers = globalThis, doc = globalThis.document, now = () => Date.now() }) {
    this.root = root;
    this.url = root.dataset.leaderboardUrl;
    this.pollMs = Number(root.dataset.pollMs) || 1000;
    this.doc = doc;
    this.body = root.querySelector("tbody");
    this.status = root.querySelector("[data-field=status]");
    this.me = root.querySelector("[data-field=me]");
    this.title = root.querySelector("#leaderboard-title");
    this.board = { as_of: root.dataset.asOf || null, status: root.dataset.final === "true" ? "final" : "live" };
    this.poller = new BoardPoller({
      url: this.url,
      pollMs: this.pollMs,
      // The board the server rendered, its age counted from the page's load.
      board: root.dataset.asOf ? this.board : null,
      maxAgeMs: Number(root.dataset.maxAgeMs) || null,
      now,
      fetchImpl,
      timers,
      onBoard: (board) => {
        this.render(board);
        if (isFinal(board)) {
          this.root.dataset.final = "true";
          // A page loaded within the freeze grace showed the closing board under "Leaderboard".
          if (this.title) this.title.textContent = "Final standings";
        }
      },
      // A failed poll, or a board older than the staleness bound: kept, and said so.
      onStale: (stale) => {
        this.root.dataset.stale = String(stale);
        this.showStatus();
      },
    });
  }

  showStatus() {
    if (!this.status) return;
    this.status.textContent = this.poller.stale ? "Could not refresh the leaderboard; retrying." : boardStatus(this.board);
  }

  start() {
    if (this.root.dataset.final === "true" || !this.url) return;
    this.poller.start();
  }

  render(board) {
    const rows = (board.entries || []).map((entry) => {
      const row = this.doc.createElement("tr");
      row.setAttribute("data-username", entry.username);
      for (const [index, text] of entryCells(entry).entries()) {
        const cell = this.doc.createElement("td");
        if (index !== 1) cell.className = "num";
        cell.textContent = text;
        row.append(cell);
      }
      return row;
    });
    this.body.textContent = "";
    this.body.append(...rows);
    this.board = board;
    this.root.dataset.asOf = board.as_of || "";
    this.showStatus();
    if (this.me) {
      this.me.textContent = meLine(board);
      this.me.hidden = !board.me;
    }
  }
}

if (globalThis.document) {
  const root = document.getElementById("game-leaderboard");
  if (root) new GameBoard({ root }).start();
}
