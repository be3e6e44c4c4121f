// Keeps a game's leaderboard fresh by polling its API (GET /v2/games/{id}/leaderboard): every
// pollMs (a third of the staleness bound, LEADERBOARD_MAX_STALENESS_S, which the API itself never
// exceeds) while the game runs, stopping once the board is final. A failed poll is reported and
// retried at the same pace. Shared by the game's page (game.js) and the dashboard on a game
// account (sync.js), so both follow a board the same way, and mark it stale the same way.

export function isFinal(board) {
  return Boolean(board) && board.status === "final";
}

/**
 * How old `board` is now, in ms. With the server's clock known (`serverOffsetMs`: the server's
 * clock less the client's), its `as_of` against that clock, so a skewed client clock does not
 * count; otherwise the time since it was received (`receivedAtMs`), its age then unknown.
 */
export function boardAgeMs(board, { nowMs, serverOffsetMs = null, receivedAtMs = nowMs }) {
  const asOf = Date.parse(board && board.as_of);
  if (Number.isFinite(serverOffsetMs) && Number.isFinite(asOf)) return nowMs + serverOffsetMs - asOf;
  return nowMs - receivedAtMs;
}

/**
 * Polls `url` every `pollMs` into `onBoard` until the board is final. `onStale(stale)` is told when
 * the shown board turns stale (a poll failed, or, given `maxAgeMs`, no newer board came before
 * the shown one passed that age: a poll that hangs says nothing else) and when a good poll clears
 * it. `board` is the board shown when polling starts (the page's or the bootstrap's).
 */
export class BoardPoller {
  constructor({
    url,
    pollMs,
    onBoard,
    onError = () => {},
    onStale = () => {},
    board = null,
    maxAgeMs = null,
    serverOffsetMs = null,
    now = () => Date.now(),
    fetchImpl = globalThis.fetch?.bind(globalThis),
    timers = globalThis,
  }) {
    this.url = url;
    this.pollMs = Number(pollMs) || 1000;
    this.onBoard = onBoard;
    this.onError = onError;
    this.onStale = onStale;
    this.board = board;
    this.maxAgeMs = Number(maxAgeMs) || null;
    this.serverOffsetMs = serverOffsetMs;
    this.now = now;
    this.receivedAtMs = now();
    this.fetchImpl = fetchImpl;
    this.timers = timers;
    this.timer = null;
    this.watchdog = null;
    this.stopped = false;
    this.stale = false;
    this.polls = 0;
  }

  start() {
    if (!this.url || this.stopped) return;
    if (!this.watch()) this.setStale(true);
    this.schedule();
  }

  stop() {
    this.stopped = true;
    if (this.timer !== null) this.timers.clearTimeout(this.timer);
    this.timer = null;
    this.unwatch();
  }

  schedule() {
    this.timer = this.timers.setTimeout(() => this.poll(), this.pollMs);
  }

  setStale(stale) {
    if (stale === this.stale) return;
    this.stale = stale;
    this.onStale(stale);
  }

  unwatch() {
    if (this.watchdog !== null) this.timers.clearTimeout(this.watchdog);
    this.watchdog = null;
  }

  /**
   * Whether the shown board is within maxAgeMs (a final one always is); if so, arranges for it to
   * turn stale by itself when it passes that age with no newer board.
   */
  watch() {
    this.unwatch();
    if (!this.maxAgeMs || !this.board || isFinal(this.board)) return true;
    const age = boardAgeMs(this.board, { nowMs: this.now(), serverOffsetMs: this.serverOffsetMs, receivedAtMs: this.receivedAtMs });
    const left = this.maxAgeMs - age;
    if (left <= 0) return false;
    this.watchdog = this.timers.setTimeout(() => {
      this.watchdog = null;
      this.setStale(true);
    }, left);
    return true;
  }

  async poll() {
    this.timer = null;
    this.polls += 1;
    let board;
    try {
      const response = await this.fetchImpl(this.url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      board = await response.json();
    } catch (error) {
      if (this.stopped) return;
      this.setStale(true);
      this.onError(error);
      this.schedule();
      return;
    }
    // Stopped while the answer was on its way (a new bootstrap took over): drop it.
    if (this.stopped) return;
    this.board = board;
    this.receivedAtMs = this.now();
    this.onBoard(board);
    this.setStale(!this.watch());
    if (isFinal(board)) {
      this.stopped = true;
    } else {
      this.schedule();
    }
  }
}
