// Keeps a game's leaderboard fresh by polling its API (GET /v2/games/{id}/leaderboard): every
// pollMs (a third of the staleness bound, LEADERBOARD_MAX_STALENESS_S, which the API itself never
// exceeds) while the game runs, stopping once the board is final. A failed poll is reported and
// retried at the same pace. Shared by the game's page (game.js) and the dashboard on a game
// account (sync.js), so both follow a board the same way.

export function isFinal(board) {
  return Boolean(board) && board.status === "final";
}

export class BoardPoller {
  constructor({ url, pollMs, onBoard, onError = () => {}, fetchImpl = globalThis.fetch?.bind(globalThis), timers = globalThis }) {
    this.url = url;
    this.pollMs = Number(pollMs) || 1000;
    this.onBoard = onBoard;
    this.onError = onError;
    this.fetchImpl = fetchImpl;
    this.timers = timers;
    this.timer = null;
    this.stopped = false;
    this.polls = 0;
  }

  start() {
    if (!this.url || this.stopped) return;
    this.schedule();
  }

  stop() {
    this.stopped = true;
    if (this.timer !== null) this.timers.clearTimeout(this.timer);
    this.timer = null;
  }

  schedule() {
    this.timer = this.timers.setTimeout(() => this.poll(), this.pollMs);
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
      this.onError(error);
      this.schedule();
      return;
    }
    // Stopped while the answer was on its way (a new bootstrap took over): drop it.
    if (this.stopped) return;
    this.onBoard(board);
    if (isFinal(board)) {
      this.stopped = true;
    } else {
      this.schedule();
    }
  }
}
