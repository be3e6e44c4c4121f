// Keeps a game's leaderboard fresh by polling its API (GET /v2/games/{id}/leaderboard): every
// pollMs (a third of the staleness bound, LEADERBOARD_MAX_STALENESS_S, which the API itself never
// exceeds) while the game runs, stopping once the board is final. A failed poll is reported and
// retried at the same pace. Shared by the game's page (game.js) and the dashboard on a game
// account (sync.js), so both follow a board the same way, and mark it stale by one rule
// (BoardPoller.staleAtMs).

// The server may serve a board up to the bound old (the job refreshes it a little inside the
// bound), and the page shows it until its next poll answers: in normal use the shown board's age
// passes the bound by up to a poll interval and a request's time. This covers the request.
export const STALE_MARGIN_MS = 1000;

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
 * the shown board turns stale and when a good poll clears it. Given `maxAgeMs` (the staleness
 * bound), the shown board is stale once no poll has succeeded for the bound (a poll that fails or
 * hangs says nothing else), or, with the server's clock known, once its age passes the bound plus
 * a poll interval and STALE_MARGIN_MS (a board served just inside the bound still ages until the
 * next poll: no flicker in normal use). Without `maxAgeMs`, a failed poll marks it at once.
 * `board` is the board shown when polling starts (the page's or the bootstrap's).
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
   * The instant (on this client's clock) at which the shown board turns stale with no good poll
   * before it, or null for never (no bound, no board, or a final one).
   */
  staleAtMs() {
    if (!this.maxAgeMs || !this.board || isFinal(this.board)) return null;
    let at = this.receivedAtMs + this.maxAgeMs;
    const asOf = Date.parse(this.board.as_of);
    if (Number.isFinite(this.serverOffsetMs) && Number.isFinite(asOf)) {
      at = Math.min(at, asOf - this.serverOffsetMs + this.maxAgeMs + this.pollMs + STALE_MARGIN_MS);
    }
    return at;
  }

  /**
   * Whether the shown board is fresh by staleAtMs; if so, arranges for it to turn stale by itself
   * at that instant with no good poll before it.
   */
  watch() {
    this.unwatch();
    const at = this.staleAtMs();
    if (at === null) return true;
    const left = at - this.now();
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
      // One failed poll is not yet stale under a bound: the watchdog from the last good one says.
      this.setStale(this.maxAgeMs ? !this.watch() : true);
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
