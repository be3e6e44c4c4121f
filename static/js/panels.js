// The portfolio side of the page: account figures, positions, open orders (with cancel), order
// history, fills, leaderboard, analytics and statements. Each panel re-renders only when its own
// inputs changed and lists use VirtualTable (virtual past 50 items): Properties 17 and 18,
// docs/properties.md.

import { errorMessage } from "./api.js";
import {
  DASH,
  formatDateTime,
  formatInteger,
  formatMoney,
  formatOrderSize,
  formatPercent,
  formatQuantity,
  formatPrice,
  formatRatio,
  formatSignedMoney,
  formatTime,
  signOfText,
  toNumber,
} from "./format.js";
import { setText } from "./selective-renderer.js";
import { shallowEqual } from "./store.js";
import { VirtualTable } from "./virtual-table.js";

export const OPEN_STATUSES = new Set([
  "new",
  "partially_filled",
  "accepted",
  "pending_new",
  "accepted_for_bidding",
  "held",
  "pending_replace",
  "pending_cancel",
  "calculated",
]);

/** The live value of a position: qty (negative when short) times the last trade. */
export function positionFigures(position, lastPrice) {
  const qty = toNumber(position.qty) ?? 0;
  const avg = toNumber(position.avg_entry_price) ?? 0;
  const price = lastPrice ?? toNumber(position.current_price);
  if (price === null) return { qty, avg, price: null, marketValue: null, pnl: null, pnlPct: null };
  const marketValue = qty * price;
  const cost = qty * avg;
  const pnl = marketValue - cost;
  return { qty, avg, price, marketValue, pnl, pnlPct: cost ? pnl / Math.abs(cost) : null };
}

/**
 * The account's figures from the last account snapshot and live prices: equity is cash plus
 * every position at its last trade; P&L is the positions' unrealized P&L; day P&L is equity
 * against the previous day's close (last_equity).
 */
export function accountFigures(account, positions, lastPriceOf) {
  if (!account) return null;
  const cash = toNumber(account.cash) ?? 0;
  let marketValue = 0;
  let pnl = 0;
  for (const position of positions) {
    const figures = positionFigures(position, lastPriceOf(position.symbol));
    marketValue += figures.marketValue ?? toNumber(position.market_value) ?? 0;
    pnl += figures.pnl ?? toNumber(position.unrealized_pl) ?? 0;
  }
  const equity = cash + marketValue;
  const lastEquity = toNumber(account.last_equity);
  return {
    cash,
    buying_power: toNumber(account.buying_power),
    equity,
    market_value: marketValue,
    pnl,
    day_pnl: lastEquity === null ? null : equity - lastEquity,
  };
}

/** Standalone figures: each [data-field] element written only when its text changes. */
class Figures {
  constructor(root) {
    this.elements = new Map();
    for (const element of root.querySelectorAll("[data-field]")) this.elements.set(element.dataset.field, element);
    this.texts = new Map();
    this.classes = new Map();
  }

  set(field, text, trend = undefined) {
    const element = this.elements.get(field);
    if (!element) return;
    if (this.texts.get(field) !== text) {
      this.texts.set(field, text);
      setText(element, text);
    }
    if (trend !== undefined && this.classes.get(field) !== trend) {
      this.classes.set(field, trend);
      element.classList.remove("up", "down");
      if (trend) element.classList.add(trend);
    }
  }
}

export class AccountPanel {
  constructor({ root }) {
    this.figures = new Figures(root);
    this.inputs = null;
    this.renders = 0;
  }

  update(state, heldChanged) {
    const inputs = { account: state.account, positions: state.positions };
    if (!heldChanged && shallowEqual(inputs, this.inputs)) return;
    this.inputs = inputs;
    const { account, positions } = inputs;
    const market = state.market;
    const figures = accountFigures(account, positions, (symbol) => {
      const row = market.get(symbol);
      return row ? row.last : null;
    });
    if (!figures) return;
    this.renders += 1;
    this.figures.set("cash", formatMoney(figures.cash));
    this.figures.set("buying_power", formatMoney(figures.buying_power));
    this.figures.set("equity", formatMoney(figures.equity));
    this.figures.set("market_value", formatMoney(figures.market_value));
    const pnl = formatSignedMoney(figures.pnl);
    const dayPnl = formatSignedMoney(figures.day_pnl);
    this.figures.set("pnl", pnl, signOfText(pnl));
    this.figures.set("day_pnl", dayPnl, signOfText(dayPnl));
  }
}

const POSITION_COLUMNS = [
  { field: "symbol", label: "Symbol", width: "4.6rem", text: (row) => row.symbol },
  { field: "qty", label: "Qty", width: "minmax(3rem, 1fr)", numeric: true, text: (row) => formatQuantity(row.qty) },
  {
    field: "avg_entry_price",
    label: "Avg cost",
    width: "minmax(4.5rem, 1fr)",
    numeric: true,
    text: (row) => formatPrice(row.avg),
  },
  {
    field: "last",
    label: "Last",
    width: "minmax(4.5rem, 1fr)",
    numeric: true,
    flash: true,
    trend: "tick",
    text: (row) => formatPrice(row.price),
    value: (row) => row.price,
  },
  {
    field: "market_value",
    label: "Value",
    width: "minmax(5.5rem, 1fr)",
    numeric: true,
    text: (row) => formatMoney(row.marketValue),
  },
  {
    field: "unrealized_pl",
    label: "P&L",
    width: "minmax(5.5rem, 1fr)",
    numeric: true,
    flash: true,
    trend: "sign",
    text: (row) => formatSignedMoney(row.pnl),
    value: (row) => row.pnl,
  },
  {
    field: "unrealized_plpc",
    label: "P&L %",
    width: "minmax(4.5rem, 1fr)",
    numeric: true,
    trend: "sign",
    text: (row) => formatRatio(row.pnlPct),
    value: (row) => row.pnlPct,
  },
];

export class PositionsPanel {
  constructor({ root, onSelect }) {
    this.table = new VirtualTable({
      root: root.querySelector(".panel-body"),
      label: "Positions",
      columns: POSITION_COLUMNS,
      keyOf: (row) => row.symbol,
      keyAttribute: "data-symbol",
      emptyText: "No positions yet: place an order to open one.",
      onActivate: (symbol) => onSelect(symbol),
    });
    this.count = root.querySelector("[data-count]");
    this.positions = null;
    this.rows = new Map(); // symbol -> {position, market, row}
  }

  #row(position, marketRow) {
    const cached = this.rows.get(position.symbol);
    if (cached && cached.position === position && cached.market === marketRow) return cached.row;
    const figures = positionFigures(position, marketRow ? marketRow.last : null);
    const row = Object.freeze({ symbol: position.symbol, tick: marketRow ? marketRow.tick : "", ...figures });
    this.rows.set(position.symbol, { position, market: marketRow, row });
    return row;
  }

  update(state, changedSymbols) {
    const { positions, market } = state;
    if (positions !== this.positions) {
      this.positions = positions;
      const symbols = new Set(positions.map((position) => position.symbol));
      for (const symbol of this.rows.keys()) if (!symbols.has(symbol)) this.rows.delete(symbol);
      this.table.setItems(positions.map((position) => this.#row(position, market.get(position.symbol))));
      if (this.count) this.count.textContent = String(positions.length);
      return;
    }
    if (!changedSymbols) return;
    for (const position of positions) {
      if (changedSymbols.has(position.symbol)) {
        this.table.update(position.symbol, this.#row(position, market.get(position.symbol)));
      }
    }
  }
}

/** How an order is priced, in a few characters: "lmt 101.00", "stp 99.00 lmt 98.50", "trail 2%". */
export function describeOrderPrice(order) {
  switch (order.type) {
    case "limit":
      return `lmt ${formatPrice(order.limit_price)}`;
    case "stop":
      return `stp ${formatPrice(order.stop_price)}`;
    case "stop_limit":
      return `stp ${formatPrice(order.stop_price)} lmt ${formatPrice(order.limit_price)}`;
    case "trailing_stop":
      return order.trail_percent ? `trail ${Number(order.trail_percent)}%` : `trail ${formatPrice(order.trail_price)}`;
    default:
      return "mkt";
  }
}

function typeLabel(type) {
  return (type || "").replace("_", " ");
}

const ORDER_BASE_COLUMNS = [
  { field: "symbol", label: "Symbol", width: "4.4rem", text: (order) => order.symbol },
  { field: "side", label: "Side", width: "3rem", text: (order) => order.side, trend: (order) => (order.side === "buy" ? "buy" : "sell") },
  { field: "type", label: "Type", width: "minmax(5rem, 1fr)", text: (order) => typeLabel(order.type) },
  { field: "qty", label: "Qty", width: "minmax(3rem, 0.6fr)", numeric: true, text: (order) => formatOrderSize(order) },
];

const OPEN_ORDER_COLUMNS = [
  ...ORDER_BASE_COLUMNS,
  { field: "price", label: "Price", width: "minmax(7rem, 1.4fr)", text: describeOrderPrice },
  { field: "status", label: "Status", width: "minmax(5.5rem, 1fr)", text: (order) => order.status.replace("_", " ") },
  { field: "submitted_at", label: "Placed", width: "5.4rem", text: (order) => formatTime(order.submitted_at) },
  {
    field: "cancel",
    label: "",
    srLabel: "Cancel",
    width: "4.6rem",
    create: (cell, doc) => {
      const button = doc.createElement("button");
      button.type = "button";
      button.className = "small danger";
      button.dataset.action = "cancel";
      button.textContent = "Cancel";
      cell.append(button);
    },
    text: (order) => `${order.symbol}|${order.status}|${order.canceling ? 1 : 0}`,
    write: (cell, _text, order) => {
      const button = cell.firstChild;
      button.disabled = Boolean(order.canceling);
      button.textContent = order.canceling ? "Canceling\u2026" : "Cancel";
      button.setAttribute("aria-label", `Cancel ${order.side} ${formatOrderSize(order)} ${order.symbol} ${typeLabel(order.type)}`);
    },
  },
];

export class OpenOrdersPanel {
  constructor({ root, api, store, announce, onSelect, doc, win }) {
    this.api = api;
    this.store = store;
    this.announce = announce;
    // Ids whose DELETE is in flight: kept here, not on the stored orders, which the stream and
    // resyncs replace at any moment and would bring the Cancel button back mid-request.
    this.canceling = new Set();
    this.table = new VirtualTable({
      doc,
      win,
      root: root.querySelector(".panel-body"),
      label: "Open orders",
      columns: OPEN_ORDER_COLUMNS,
      keyOf: (order) => order.id,
      keyAttribute: "data-order-id",
      emptyText: "No open orders.",
      onActivate: (_id, order) => onSelect(order.symbol),
      onKey: (id, _order, event) => {
        if (event.key === "Delete" || event.key === "Backspace") {
          this.cancel(id);
          return true;
        }
        return false;
      },
    });
    this.count = root.querySelector("[data-count]");
    this.error = root.querySelector(".panel-error");
    this.orders = null;
    root.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action=cancel]");
      if (!button) return;
      const row = button.closest("[data-order-id]");
      if (row) this.cancel(row.getAttribute("data-order-id"));
    });
  }

  update(state) {
    if (state.openOrders === this.orders) return;
    this.orders = state.openOrders;
    this.#render();
    if (this.count) this.count.textContent = String(this.orders.length);
  }

  #render() {
    const orders = this.orders || [];
    const canceling = this.canceling;
    const shown = canceling.size ? orders.map((order) => (canceling.has(order.id) ? { ...order, canceling: true } : order)) : orders;
    this.table.setItems(shown);
  }

  async cancel(id) {
    const order = this.store.state.openOrders.find((item) => item.id === id);
    if (!order || this.canceling.has(id)) return;
    this.canceling.add(id);
    this.#render();
    this.error.textContent = "";
    try {
      await this.api.delete(`/v2/orders/${encodeURIComponent(id)}`);
      this.canceling.delete(id);
      // Canceled: it leaves the open list now; the stream's "canceled" event confirms it.
      this.store.set(
        "openOrders",
        this.store.state.openOrders.filter((item) => item.id !== id),
      );
      this.announce(`Canceled ${order.side} ${formatOrderSize(order)} ${order.symbol}.`);
    } catch (error) {
      this.canceling.delete(id);
      this.#render();
      this.error.textContent = errorMessage(error);
    }
  }
}

const HISTORY_COLUMNS = [
  ...ORDER_BASE_COLUMNS,
  { field: "price", label: "Price", width: "minmax(7rem, 1.4fr)", text: describeOrderPrice },
  {
    field: "filled_avg_price",
    label: "Fill",
    width: "minmax(4.5rem, 1fr)",
    numeric: true,
    text: (order) => (order.filled_avg_price ? formatPrice(order.filled_avg_price) : DASH),
  },
  { field: "status", label: "Status", width: "minmax(5.5rem, 1fr)", text: (order) => order.status.replace("_", " ") },
  {
    field: "updated_at",
    label: "Time",
    width: "5.4rem",
    text: (order) => formatTime(order.filled_at || order.canceled_at || order.updated_at || order.submitted_at),
  },
];

export class OrderHistoryPanel {
  constructor({ root, onSelect }) {
    this.table = new VirtualTable({
      root: root.querySelector(".panel-body"),
      label: "Order history",
      columns: HISTORY_COLUMNS,
      keyOf: (order) => order.id,
      keyAttribute: "data-order-id",
      emptyText: "No orders yet.",
      onActivate: (_id, order) => onSelect(order.symbol),
    });
    this.orders = null;
  }

  update(state) {
    if (state.orders === this.orders) return;
    this.orders = state.orders;
    this.table.setItems(this.orders);
  }
}

const FILL_COLUMNS = [
  { field: "transaction_time", label: "Time", width: "5.4rem", text: (fill) => formatTime(fill.transaction_time) },
  { field: "symbol", label: "Symbol", width: "4.4rem", text: (fill) => fill.symbol },
  { field: "side", label: "Side", width: "3rem", text: (fill) => fill.side, trend: (fill) => (fill.side === "buy" ? "buy" : "sell") },
  { field: "qty", label: "Qty", width: "minmax(3rem, 1fr)", numeric: true, text: (fill) => formatQuantity(fill.qty) },
  { field: "price", label: "Price", width: "minmax(4.5rem, 1fr)", numeric: true, text: (fill) => formatPrice(fill.price) },
  {
    field: "value",
    label: "Value",
    width: "minmax(5.5rem, 1fr)",
    numeric: true,
    text: (fill) => formatMoney((toNumber(fill.qty) ?? 0) * (toNumber(fill.price) ?? 0)),
  },
];

/** A FILL activity from a trade update, in GET /v2/account/activities/FILL's shape. */
export function fillFromTradeUpdate(update) {
  const order = update.order || {};
  return {
    id: `${order.id}:${update.timestamp}:${update.qty}`,
    activity_type: "FILL",
    transaction_time: update.timestamp,
    type: update.event,
    price: update.price,
    qty: update.qty,
    side: order.side,
    symbol: order.symbol,
    order_id: order.id,
    cum_qty: order.filled_qty,
  };
}

export class FillsPanel {
  constructor({ root, onSelect }) {
    this.table = new VirtualTable({
      root: root.querySelector(".panel-body"),
      label: "Fills",
      columns: FILL_COLUMNS,
      keyOf: (fill) => String(fill.id),
      keyAttribute: "data-fill-id",
      emptyText: "No fills yet.",
      onActivate: (_id, fill) => onSelect(fill.symbol),
    });
    this.fills = null;
  }

  update(state) {
    if (state.fills === this.fills) return;
    this.fills = state.fills;
    this.table.setItems(this.fills);
  }
}

/** The panel's title: which board it shows, the global one or the account's game's. */
export function leaderboardTitle(game, board) {
  if (!game) return "Leaderboard";
  const final = board && board.status === "final" ? " (final standings)" : "";
  return `Leaderboard: ${game.name}${final}`;
}

/** The line beside the panel's title: when the board was computed, and whether it is stale. */
export function leaderboardAsOf(board, stale) {
  const when = board && board.as_of ? `as of ${formatTime(board.as_of)}` : "";
  if (!stale) return when;
  return when ? `${when}; could not refresh, retrying` : "Could not refresh the leaderboard; retrying";
}

export class LeaderboardPanel {
  // Entries name players by username only (the API shows no account numbers): rows are keyed by
  // it, and the viewer's own row is the one with the signed-in user's name.
  constructor({ root, doc, win }) {
    this.root = root;
    this.asOf = root.querySelector("[data-field=as_of]");
    this.title = root.querySelector("[data-field=title]");
    this.table = new VirtualTable({
      doc,
      win,
      root: root.querySelector(".panel-body"),
      label: "Leaderboard",
      columns: [
        { field: "rank", label: "#", width: "2.6rem", numeric: true, text: (entry) => String(entry.rank) },
        { field: "username", label: "Trader", width: "minmax(6rem, 2fr)", text: (entry) => (entry.you ? `${entry.username} (you)` : entry.username) },
        { field: "equity", label: "Equity", width: "minmax(6rem, 1fr)", numeric: true, text: (entry) => formatMoney(entry.equity) },
        {
          field: "return_pct",
          label: "Return",
          width: "minmax(5rem, 1fr)",
          numeric: true,
          trend: "sign",
          text: (entry) => formatPercent(entry.return_pct),
          value: (entry) => toNumber(entry.return_pct),
        },
      ],
      keyOf: (entry) => entry.username,
      keyAttribute: "data-username",
      emptyText: "The leaderboard is computed shortly after the first trades.",
    });
    this.board = undefined;
    this.username = undefined;
    this.game = undefined;
    this.stale = undefined;
  }

  update(state) {
    const board = state.leaderboard;
    const username = state.user && state.user.username;
    const game = state.game || null;
    const stale = Boolean(state.leaderboardStale);
    const changed = board !== this.board || username !== this.username || game !== this.game;
    if (!changed && stale === this.stale) return;
    // The game page's marker (game.js): data-stale on the panel, its as-of line in the warning colour.
    if (stale !== this.stale) this.root.dataset.stale = String(stale);
    this.stale = stale;
    if (this.asOf) this.asOf.textContent = leaderboardAsOf(board, stale);
    if (!changed) return;
    this.board = board;
    this.username = username;
    this.game = game;
    if (this.title) this.title.textContent = leaderboardTitle(game, board);
    const entries = board && Array.isArray(board.entries) ? board.entries : [];
    this.table.setItems(entries.map((entry) => ({ ...entry, you: entry.username === username })));
  }
}

export class AnalyticsPanel {
  constructor({ root, api, store }) {
    this.root = root;
    this.api = api;
    this.store = store;
    this.figures = new Figures(root);
    this.empty = root.querySelector(".panel-empty");
    this.sectors = root.querySelector(".sectors");
    this.analytics = undefined;
    const refresh = root.querySelector("button[data-action=refresh]");
    if (refresh) {
      refresh.addEventListener("click", async () => {
        refresh.disabled = true;
        try {
          store.set("analytics", await api.get("/v2/analytics/account"));
        } catch (error) {
          this.empty.hidden = false;
          this.empty.textContent = errorMessage(error);
        } finally {
          refresh.disabled = false;
        }
      });
    }
  }

  update(state) {
    const analytics = state.analytics;
    if (analytics === this.analytics) return;
    this.analytics = analytics;
    this.empty.hidden = Boolean(analytics);
    if (!analytics) {
      this.empty.textContent = "Analytics appear after the first scheduled run.";
      return;
    }
    const returns = analytics.returns || {};
    for (const [name, value] of Object.entries(returns)) {
      const text = formatRatio(value);
      this.figures.set(`return_${name}`, text, signOfText(text));
    }
    this.figures.set("volatility", formatRatio(analytics.volatility));
    this.figures.set("max_drawdown", formatRatio(analytics.max_drawdown));
    this.figures.set("sharpe", analytics.sharpe === null || analytics.sharpe === undefined ? DASH : Number(analytics.sharpe).toFixed(2));
    this.figures.set("win_rate", formatRatio(analytics.win_rate, 0));
    this.figures.set("closed_trades", formatInteger(analytics.closed_trades));
    this.figures.set("rank", analytics.rank ? `#${analytics.rank}` : DASH);
    this.figures.set("analytics_as_of", formatDateTime(analytics.as_of));
    if (this.sectors) {
      const entries = Object.entries(analytics.sector_allocation || {}).sort((a, b) => b[1] - a[1]);
      this.sectors.replaceChildren(
        ...entries.map(([sector, share]) => {
          const item = document.createElement("li");
          const label = document.createElement("span");
          label.textContent = sector;
          const bar = document.createElement("span");
          bar.className = "bar";
          bar.style.setProperty("--share", String(Math.max(0, Math.min(1, share))));
          const value = document.createElement("span");
          value.className = "num";
          value.textContent = formatRatio(share, 1).replace("+", "");
          item.append(label, bar, value);
          return item;
        }),
      );
    }
  }
}

/** The finished months a statement can be asked for, newest first ("YYYY-MM"). */
export function statementPeriods(now = new Date(), count = 12) {
  const periods = [];
  let year = now.getUTCFullYear();
  let month = now.getUTCMonth(); // the current month is unfinished: start one before it
  for (let i = 0; i < count; i++) {
    if (month === 0) {
      month = 12;
      year -= 1;
    }
    periods.push(`${year}-${String(month).padStart(2, "0")}`);
    month -= 1;
  }
  return periods;
}

const JOB_POLL_MS = [500, 1000, 1000, 2000, 2000, 3000, 5000];
// A job still queued after this long waits on a worker that is down or swamped: stop polling.
export const JOB_GIVE_UP_MS = 120000;

/**
 * Follows a statement job until it ends, calling `onStatus(job)` before each wait. Returns the
 * finished job, or the last one seen with `gaveUp: true` once `giveUpMs` passed on `now()`.
 */
export async function followJob({ api, job, timers, now = Date.now, onStatus = () => {}, giveUpMs = JOB_GIVE_UP_MS }) {
  const started = now();
  for (let poll = 0; job.status === "queued" || job.status === "running"; poll++) {
    if (now() - started >= giveUpMs) return { ...job, gaveUp: true };
    onStatus(job);
    await new Promise((resolve) => timers.setTimeout(resolve, JOB_POLL_MS[Math.min(poll, JOB_POLL_MS.length - 1)]));
    job = await api.get(`/v2/jobs/${encodeURIComponent(job.job_id)}`);
  }
  return job;
}

export class StatementsPanel {
  constructor({ root, api, store, announce, timers = window, now = Date.now }) {
    this.api = api;
    this.store = store;
    this.announce = announce;
    this.timers = timers;
    this.now = now;
    this.form = root.querySelector("form");
    this.status = root.querySelector("[data-job-status]");
    this.select = this.form.elements.namedItem("period");
    for (const period of statementPeriods()) {
      const option = document.createElement("option");
      option.value = period;
      option.textContent = period;
      this.select.append(option);
    }
    this.table = new VirtualTable({
      root: root.querySelector(".panel-body"),
      label: "Statements",
      columns: [
        { field: "period", label: "Month", width: "5rem", text: (s) => s.period },
        { field: "closing_equity", label: "Equity", width: "minmax(6rem, 1fr)", numeric: true, text: (s) => formatMoney(s.closing_equity) },
        {
          field: "realized_pl",
          label: "Realized",
          width: "minmax(5.5rem, 1fr)",
          numeric: true,
          trend: "sign",
          text: (s) => formatSignedMoney(s.realized_pl),
          value: (s) => toNumber(s.realized_pl),
        },
        { field: "trade_count", label: "Trades", width: "4rem", numeric: true, text: (s) => formatInteger(s.trade_count) },
        {
          field: "pdf",
          label: "PDF",
          width: "4rem",
          create: (cell, doc) => {
            const link = doc.createElement("a");
            link.textContent = "PDF";
            cell.append(link);
          },
          text: (s) => s.pdf_url || `/v2/statements/${s.id}/pdf`,
          write: (cell, href, s) => {
            const link = cell.firstChild;
            link.href = href;
            link.dataset.statementId = s.id;
            link.setAttribute("download", "");
            link.setAttribute("aria-label", `Download the ${s.period} statement (PDF)`);
          },
        },
      ],
      keyOf: (s) => s.id,
      keyAttribute: "data-statement-id",
      emptyText: "No statements yet. Request one for a finished month.",
    });
    this.statements = null;
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.request(this.select.value);
    });
  }

  update(state) {
    if (state.statements === this.statements) return;
    this.statements = state.statements;
    this.table.setItems(this.statements);
  }

  #status(state, text) {
    this.status.dataset.jobStatus = state;
    this.status.textContent = text;
  }

  async request(period) {
    const button = this.form.querySelector("button[type=submit]");
    button.disabled = true;
    this.#status("queued", `Requesting the ${period} statement\u2026`);
    try {
      const job = await followJob({
        api: this.api,
        job: await this.api.post("/v2/statements", { period }),
        timers: this.timers,
        now: this.now,
        onStatus: (current) => this.#status(current.status, `Statement ${period}: ${current.status}\u2026`),
      });
      if (job.gaveUp) {
        this.#status(job.status, `Statement ${period} is still ${job.status} - check back later.`);
        return;
      }
      if (job.status !== "succeeded") {
        this.#status("failed", `Statement ${period} failed: ${job.error || "unknown error"}`);
        return;
      }
      this.store.set("statements", await this.api.get("/v2/statements"));
      this.#status("succeeded", `Statement ${period} is ready.`);
      this.announce(`Statement ${period} is ready to download.`);
    } catch (error) {
      this.#status("failed", errorMessage(error));
    } finally {
      button.disabled = false;
    }
  }
}
