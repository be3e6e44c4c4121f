// Keeping the page's copy of the account in step with the server. Order states arrive from two
// places (the POST answer and the dashboard channel) in no fixed order, and a resync replaces
// the state wholesale with a snapshot taken while events kept arriving: the rules here make the
// newest word win whichever way they interleave.

import { OPEN_STATUSES, fillFromTradeUpdate } from "./panels.js";
import { BoardPoller, isFinal } from "./board-poll.js";
import { boundedPrepend } from "./store.js";

// Bounded histories: the page may stay open for days.
export const MAX_ORDERS = 200;
export const MAX_FILLS = 200;

// States an order never leaves: a copy in one of them outranks any open copy.
export const FINAL_STATUSES = new Set(["filled", "canceled", "expired", "rejected", "replaced"]);

/**
 * Whether `incoming` is older than the page's `stored` copy of the same order, e.g. the answer
 * of POST /v2/orders ("new") arriving after the stream's "fill" event: applying it would roll
 * the order back. A final status wins over an open one whatever the timestamps say (an order
 * canceled as of its game's end may carry an earlier time than an open copy already shown).
 */
export function isStaleOrder(stored, incoming) {
  if (!stored) return false;
  const storedFinal = FINAL_STATUSES.has(stored.status);
  const incomingFinal = FINAL_STATUSES.has(incoming.status);
  if (storedFinal !== incomingFinal) return storedFinal;
  const storedAt = Date.parse(stored.updated_at);
  const incomingAt = Date.parse(incoming.updated_at);
  if (Number.isFinite(storedAt) && Number.isFinite(incomingAt)) {
    if (storedAt > incomingAt) return true;
    // Same instant (timestamps are only so fine): the further-filled copy is the later one.
    if (storedAt === incomingAt) return Number(stored.filled_qty || 0) > Number(incoming.filled_qty || 0);
  }
  return false;
}

/**
 * The open list and the history with `order`'s new state, or null when the page already holds
 * a later state of it.
 */
export function mergeOrder({ openOrders, orders }, order, maxOrders = MAX_ORDERS) {
  const openIndex = openOrders.findIndex((item) => item.id === order.id);
  const historyIndex = orders.findIndex((item) => item.id === order.id);
  // The history keeps an order after it left the open list: its copy there counts too.
  if (isStaleOrder(openOrders[openIndex], order) || isStaleOrder(orders[historyIndex], order)) return null;
  const isOpen = OPEN_STATUSES.has(order.status);
  let nextOpen = openOrders;
  if (isOpen && openIndex >= 0) {
    nextOpen = openOrders.slice();
    nextOpen[openIndex] = order;
  } else if (isOpen) {
    nextOpen = [order, ...openOrders];
  } else if (openIndex >= 0) {
    nextOpen = openOrders.filter((item) => item.id !== order.id);
  }
  let nextOrders;
  if (historyIndex >= 0) {
    nextOrders = orders.slice();
    nextOrders[historyIndex] = order;
  } else {
    nextOrders = boundedPrepend(orders, order, maxOrders);
  }
  return { openOrders: nextOpen, orders: nextOrders };
}

/** An order's new state (from the stream or a POST answer) in the store, unless it is stale. */
export function applyOrder(store, order) {
  const merged = mergeOrder(store.state, order);
  if (!merged) return false;
  if (merged.openOrders !== store.state.openOrders) store.set("openOrders", merged.openOrders);
  store.set("orders", merged.orders);
  return true;
}

/** The same execution as seen by the stream (a trade update) and by a snapshot (an activity). */
function sameFill(a, b) {
  if (a.id === b.id) return true;
  return (
    a.order_id === b.order_id &&
    Number(a.qty) === Number(b.qty) &&
    Date.parse(a.transaction_time) === Date.parse(b.transaction_time)
  );
}

/** One message of the dashboard channel applied to the store. */
export function applyDashboardMessage(store, message) {
  const data = message.data || {};
  if (message.stream === "account_update") {
    if (data.account) store.set("account", data.account);
    if (Array.isArray(data.positions)) store.set("positions", data.positions);
    const update = data.trade_update;
    if (update && update.order) {
      applyOrder(store, update.order);
      if (update.event === "fill" || update.event === "partial_fill") {
        const fill = fillFromTradeUpdate(update);
        // A replayed event may already be in the snapshot that came before it.
        if (!store.state.fills.some((known) => sameFill(known, fill))) {
          store.set("fills", boundedPrepend(store.state.fills, fill, MAX_FILLS));
        }
      }
    }
  } else if (message.stream === "leaderboard") {
    // The channel pushes the global board; a game account shows its game's board instead (the
    // global one holds default accounts only), kept fresh by gameBoardPoller.
    if (!store.state.game) showBoard(store, data);
  }
}

/** Whether two boards are the same board at two moments: one game's, or one global period's. */
function sameBoard(a, b) {
  return (a.game_id ?? null) === (b.game_id ?? null) && (a.period ?? null) === (b.period ?? null);
}

/**
 * The board to show when `incoming` arrives (a resync's bootstrap, a poll, a push) while
 * `current` is shown: a snapshot taken before the shown board was computed must not replace it.
 * Of two copies of the same board, a final one outranks a live one, then a dated one outranks an
 * undated (or unparseable) one, then the later `as_of` wins (a tie takes `incoming`); a different
 * board (another game's) is always `incoming`. A missing `incoming` (a bootstrap with no board)
 * keeps `current` when it is the board of `gameId`, the game that bootstrap is for.
 */
export function newerBoard(current, incoming, { gameId = null } = {}) {
  if (!incoming) return current && gameId !== null && current.game_id === gameId ? current : null;
  if (!current || !sameBoard(current, incoming)) return incoming;
  if (isFinal(current) !== isFinal(incoming)) return isFinal(current) ? current : incoming;
  const currentAt = Date.parse(current.as_of);
  const incomingAt = Date.parse(incoming.as_of);
  if (Number.isFinite(currentAt) !== Number.isFinite(incomingAt)) return Number.isFinite(currentAt) ? current : incoming;
  if (Number.isFinite(currentAt) && currentAt > incomingAt) return current;
  return incoming;
}

/** `board` into the store, unless the store already shows a newer copy of it (see newerBoard). */
export function showBoard(store, board, { gameId = null } = {}) {
  const shown = newerBoard(store.state.leaderboard, board, { gameId });
  if (shown !== store.state.leaderboard) store.set("leaderboard", shown);
  return shown === board;
}

/**
 * On a game account (the bootstrap's `game`), polls the game's board every `pollMs` into the
 * store until it is final; null for a default account or a board already final. Its answers are
 * dropped if the store has since moved to another game. `leaderboardStale` in the store says
 * whether the shown board is stale: the last poll failed, or the board passed `maxAgeMs` (the
 * staleness bound, on the server's clock given `serverOffsetMs`) with no newer one.
 */
export function gameBoardPoller(store, { game, pollMs, maxAgeMs = null, serverOffsetMs = null, now, fetchImpl, timers }) {
  if (!game || !game.leaderboard_url || isFinal(store.state.leaderboard)) return null;
  const current = () => Boolean(store.state.game) && store.state.game.id === game.id;
  const poller = new BoardPoller({
    url: game.leaderboard_url,
    pollMs,
    board: store.state.leaderboard,
    maxAgeMs,
    serverOffsetMs,
    now,
    fetchImpl,
    timers,
    onBoard: (board) => {
      if (current() && board.game_id === game.id) showBoard(store, board);
    },
    onStale: (stale) => {
      if (current()) store.set("leaderboardStale", stale);
    },
  });
  poller.start();
  return poller;
}

/**
 * A bootstrap's game and board into the store, and the game board's polling restarted from the
 * board shown (or ended): a resync's snapshot never replaces a newer board already shown
 * (showBoard), and the stale marker starts cleared, the new poller judging the board's age on the
 * server's clock (the bootstrap's `as_of` against `now()`). Returns the new poller, or null.
 */
export function applyBootstrapBoard(store, data, { previous = null, now = () => Date.now(), fetchImpl, timers } = {}) {
  if (previous) previous.stop();
  store.set("game", data.game || null);
  showBoard(store, data.leaderboard || null, { gameId: data.game ? data.game.id : null });
  store.set("leaderboardStale", false);
  const config = data.config || {};
  const serverOffsetMs = Date.parse(data.as_of) - now();
  return gameBoardPoller(store, {
    game: data.game,
    pollMs: config.leaderboard_poll_ms,
    maxAgeMs: config.leaderboard_max_staleness_ms,
    serverOffsetMs: Number.isFinite(serverOffsetMs) ? serverOffsetMs : null,
    now,
    fetchImpl,
    timers,
  });
}

// setTimeout's longest wait; a later instant is reached by waking early and rescheduling.
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * How long to wait before refetching for the trading day that starts at `nextDayStart`, as
 * measured on the server's clock (`asOf`, the bootstrap's time) so a skewed client clock cannot
 * make it fire early and loop. A random `jitterMs` spreads the pages; `floorMs` puts the call
 * safely past the boundary. Null when the bootstrap carried no boundary.
 */
export function rolloverDelay(nextDayStart, asOf, { random = Math.random, jitterMs = 30000, floorMs = 1000 } = {}) {
  const boundary = Date.parse(nextDayStart);
  const serverNow = Date.parse(asOf);
  if (!Number.isFinite(boundary) || !Number.isFinite(serverNow)) return null;
  return Math.min(MAX_TIMER_MS, Math.max(0, boundary - serverNow) + floorMs + random() * jitterMs);
}

/**
 * Re-fetches the bootstrap: `schedule()` after a socket comes back (calls in one `delayMs`
 * share one fetch), `scheduleRollover()` at the next trading day's start. Dashboard messages
 * that arrive while the fetch is in flight are held and applied after the snapshot, which would
 * otherwise overwrite them; a `schedule()` during the fetch runs another one after it, since the
 * reconnect it reports may postdate the snapshot.
 */
export class Resyncer {
  constructor({ load, apply, applyMessage, onError = () => {}, timers = globalThis, delayMs = 250, rollover = {} }) {
    this.load = load;
    this.apply = apply;
    this.applyMessage = applyMessage;
    this.onError = onError;
    this.timers = timers;
    this.delayMs = delayMs;
    this.rollover = rollover;
    this.timer = 0;
    this.rolloverTimer = 0;
    this.inFlight = false;
    this.again = false;
    this.held = [];
  }

  schedule() {
    if (this.inFlight) {
      this.again = true;
      return;
    }
    if (this.timer) return;
    this.timer = this.timers.setTimeout(() => this.#run(), this.delayMs);
  }

  /** A dashboard-channel message: applied now, or after the snapshot being fetched. */
  dispatch(message) {
    this.defer(() => this.applyMessage(message));
  }

  /** Any other change to the account's state (a POST answer): now, or after the snapshot. */
  defer(change) {
    if (this.inFlight) this.held.push(change);
    else change();
  }

  /** Schedules one resync just after `nextDayStart` (see rolloverDelay); replaces the last one. */
  scheduleRollover(nextDayStart, asOf) {
    if (this.rolloverTimer) this.timers.clearTimeout(this.rolloverTimer);
    this.rolloverTimer = 0;
    const wait = rolloverDelay(nextDayStart, asOf, this.rollover);
    if (wait === null) return null;
    this.rolloverTimer = this.timers.setTimeout(() => {
      this.rolloverTimer = 0;
      this.schedule();
    }, wait);
    return wait;
  }

  async #run() {
    this.timer = 0;
    this.inFlight = true;
    let data = null;
    try {
      data = await this.load();
    } catch (error) {
      this.onError(error);
    }
    this.inFlight = false;
    try {
      if (data !== null) this.apply(data);
    } catch (error) {
      this.onError(error);
    } finally {
      const held = this.held;
      this.held = [];
      for (const change of held) change();
      if (this.again) {
        this.again = false;
        this.schedule();
      }
    }
  }
}
