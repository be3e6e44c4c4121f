// A game's page (templates/games/game.html; analytics/game_pages.py): keeps the game's leaderboard
// fresh. The server renders the board when the page loads; while the game runs this module asks
// the game's leaderboard API for it again every data-poll-ms (a third of the staleness bound,
// LEADERBOARD_MAX_STALENESS_S, which the API itself never exceeds), and stops once the board is
// final (board-poll.js, shared with the dashboard). A failed poll, or a board older than the
// staleness bound (data-max-age-ms), keeps the shown board, says so, and polling goes on at the
// same pace; the next good poll clears it.
// The page's clock is the server's: the page carries the server's time when it was rendered
// (data-server-now), and this module keeps the offset between it and the browser's clock, so the
// countdown (starts in, ends in), the game's phase (upcoming, running, closing, final) and the
// board's age read right on a computer whose clock is off (GameClock).
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

/**
 * The server's clock less the browser's, in ms, from the server's time when the page was rendered
 * (`serverNow`, ISO 8601) and the browser's at load (`clientNowMs`); null when not given. The
 * page's transfer time is counted as skew, a second at worst: the countdown shows whole seconds.
 */
export function serverOffsetMs(serverNow, clientNowMs) {
  const server = Date.parse(serverNow);
  return Number.isFinite(server) ? server - clientNowMs : null;
}

/**
 * Where the game is at `nowMs` on the server's clock: "upcoming" before `startsAtMs`, "running"
 * until `endsAtMs`, then "closing" until the board is final (the server freezes it
 * GAME_FREEZE_GRACE_S after the end), then "final". The board's own status (`boardStatus`, the
 * server's word) wins: "closing" for a game its organiser ended before `endsAtMs`, "final" once
 * the standings are frozen.
 */
export function gamePhase({ nowMs, startsAtMs, endsAtMs, boardStatus = null }) {
  if (boardStatus === "final" || boardStatus === "closing") return boardStatus;
  if (nowMs < startsAtMs) return "upcoming";
  if (nowMs < endsAtMs) return "running";
  return "closing";
}

/** A duration as its two largest units, rounded up to the second: "2 d 3 h", "4 min 05 s". */
export function formatDuration(ms) {
  const seconds = Math.max(0, Math.ceil(ms / 1000));
  const days = Math.floor(seconds / 86400);
  const hours = Math.floor((seconds % 86400) / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  const rest = seconds % 60;
  const pad = (value) => String(value).padStart(2, "0");
  if (days) return `${days} d ${hours} h`;
  if (hours) return `${hours} h ${pad(minutes)} min`;
  if (minutes) return `${minutes} min ${pad(rest)} s`;
  return `${rest} s`;
}

/** The countdown line for `phase` at `nowMs` (the server's clock). */
export function countdownText(phase, { nowMs, startsAtMs, endsAtMs }) {
  if (phase === "upcoming") return `Starts in ${formatDuration(startsAtMs - nowMs)}.`;
  if (phase === "running") return `Ends in ${formatDuration(endsAtMs - nowMs)}.`;
  if (phase === "closing") return "The game is over; final standings in a moment.";
  return "The game is over; these are the final standings.";
}

// The page's data-state for a phase: the one the server renders (templates/games/game.html).
const PAGE_STATE = { upcoming: "upcoming", running: "running", closing: "over", final: "over" };

/**
 * The game's countdown and phase on the server's clock: `root` carries data-server-now (the
 * server's time when it rendered the page), data-starts-at and data-ends-at; the countdown goes
 * into its [data-field=countdown], and its data-state and data-phase follow the phase. Ticks on
 * the server clock's whole seconds, and stops once the board is final (`setBoardStatus`).
 * Without a readable data-server-now the server's clock is unknown, not the browser's: `offsetMs`
 * is null (so the board's age counts from its arrival, board-poll.js, instead of against a clock
 * taken for the server's), the countdown runs on the browser's clock as the best there is, and
 * `root`'s data-clock says which clock it reads ("server" or "browser").
 */
export class GameClock {
  constructor({ root, timers = globalThis, now = () => Date.now() }) {
    this.root = root;
    this.timers = timers;
    this.now = now;
    this.offsetMs = serverOffsetMs(root.dataset.serverNow, now());
    root.dataset.clock = this.offsetMs === null ? "browser" : "server";
    this.startsAtMs = Date.parse(root.dataset.startsAt);
    this.endsAtMs = Date.parse(root.dataset.endsAt);
    this.countdown = root.querySelector("[data-field=countdown]");
    this.boardStatus = null;
    this.timer = null;
  }

  /** Now on the server's clock; the browser's own when the server's is unknown (`offsetMs` null). */
  serverNowMs() {
    return this.offsetMs === null ? this.now() : this.now() + this.offsetMs;
  }

  phase() {
    return gamePhase({ nowMs: this.serverNowMs(), startsAtMs: this.startsAtMs, endsAtMs: this.endsAtMs, boardStatus: this.boardStatus });
  }

  /** The status of the board the page shows (rendered, or a poll's answer); "final" stops it. */
  setBoardStatus(status) {
    if (status === this.boardStatus) return;
    this.boardStatus = status;
    if (Number.isFinite(this.startsAtMs) && Number.isFinite(this.endsAtMs)) this.tick();
  }

  start() {
    if (!Number.isFinite(this.startsAtMs) || !Number.isFinite(this.endsAtMs)) return;
    this.tick();
  }

  stop() {
    if (this.timer !== null) this.timers.clearTimeout(this.timer);
    this.timer = null;
  }

  tick() {
    this.stop();
    const nowMs = this.serverNowMs();
    const phase = this.phase();
    this.root.dataset.phase = phase;
    this.root.dataset.state = PAGE_STATE[phase];
    if (this.countdown) {
      this.countdown.textContent = countdownText(phase, { nowMs, startsAtMs: this.startsAtMs, endsAtMs: this.endsAtMs });
    }
    if (phase === "final") return;
    // At the next whole second of the server's clock, when the countdown changes.
    this.timer = this.timers.setTimeout(() => this.tick(), 1000 - (((nowMs % 1000) + 1000) % 1000));
  }
}

// --- The page ----------------------------------------------------------------------------------

export class GameBoard {
  constructor({
    root,
    fetchImpl = globalThis.fetch?.bind(globalThis),
    timers = globalThis,
    doc = globalThis.document,
    now = () => Date.now(),
    serverOffsetMs = null,
    onStatus = () => {},
  }) {
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
      // The board's age on the server's clock (its as_of is the server's), when the page gave it.
      serverOffsetMs,
      now,
      fetchImpl,
      timers,
      onBoard: (board) => {
        this.render(board);
        onStatus(board.status);
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
  const page = document.getElementById("game");
  const clock = page ? new GameClock({ root: page }) : null;
  const root = document.getElementById("game-leaderboard");
  if (clock && root) clock.boardStatus = root.dataset.boardStatus || null;
  clock?.start();
  if (root) {
    new GameBoard({ root, serverOffsetMs: clock ? clock.offsetMs : null, onStatus: (status) => clock?.setBoardStatus(status) }).start();
  }
}
