// The dashboard page: one bootstrap call and one chart call on first load (at most three calls to
// /v2/: Property 19, docs/properties.md), then everything live over two WebSockets; REST again only
// on user actions and, after a reconnect, one bootstrap call to resume from a fresh snapshot.
//
// ?renderer=naive swaps the market table for the innerHTML-rebuilding baseline `benchmark
// dashboard` measures against (Property 40), a module of the benchmark's only: imported in that
// mode alone, so the normal page never fetches it.

import { ApiClient, errorMessage } from "./api.js";
import { PriceChart } from "./chart.js";
import { formatPercent, formatPrice, signOfText } from "./format.js";
import { MarketTable } from "./market-table.js";
import { changePctOf, marketRowFromAsset, reduceMarketEvents } from "./market-model.js";
import { OrderTicket } from "./order-ticket.js";
import {
  AccountPanel,
  AnalyticsPanel,
  FillsPanel,
  LeaderboardPanel,
  OpenOrdersPanel,
  OrderHistoryPanel,
  PositionsPanel,
  StatementsPanel,
} from "./panels.js";
import { PerfMonitor } from "./perf.js";
import { Store } from "./store.js";
import { ConnectionIndicator, DashboardStream, MarketDataStream, backoffDelay } from "./streams.js";
import { MAX_FILLS, MAX_ORDERS, Resyncer, applyBootstrapBoard, applyDashboardMessage, applyOrder } from "./sync.js";

const SYMBOL_KEY = "dashboard.symbol";
const RESYNC_DELAY_MS = 250;

const root = document.getElementById("dashboard");
const config = {
  bootstrapUrl: root.dataset.bootstrapUrl,
  perfUrl: root.dataset.perfUrl,
  wsBase: (root.dataset.wsBase || "").replace(/\/$/, ""),
};
const rendererName = new URLSearchParams(location.search).get("renderer") === "naive" ? "naive" : "selective";
root.dataset.renderer = rendererName;
// Fetched while the bootstrap loads rather than after it.
const naiveTableModule = rendererName === "naive" ? import("./naive-table.js") : null;

const api = new ApiClient();
const store = new Store({
  user: null,
  market: new Map(),
  assetsVersion: 0,
  watchlist: null,
  account: null,
  positions: [],
  openOrders: [],
  orders: [],
  fills: [],
  leaderboard: null,
  leaderboardStale: false,
  game: null,
  analytics: null,
  statements: [],
  streamDashboard: "connecting",
  ui: { query: "", watchOnly: false, sortKey: "symbol", sortDir: "asc", selected: null },
});

const statusRegion = document.getElementById("dashboard-status");
let statusTimer = 0;
function announce(text) {
  statusRegion.textContent = text;
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => {
    statusRegion.textContent = "";
  }, 8000);
}

const dashboard = {
  store,
  api,
  renderer: rendererName,
  ready: false,
  resyncs: 0,
  streams: {},
};
window.__dashboard = dashboard;

// --- State from the server ----------------------------------------------------------------------

let gamePoller = null;

function applyBootstrap(data) {
  const watchedSymbols = new Set((data.watchlist && data.watchlist.symbols) || []);
  const market = new Map();
  for (const asset of data.assets || []) market.set(asset.symbol, marketRowFromAsset(asset, watchedSymbols.has(asset.symbol)));
  store.set("user", data.user || null);
  store.set("market", market);
  store.set("assetsVersion", store.state.assetsVersion + 1);
  store.set("watchlist", data.watchlist ? { ...data.watchlist, symbols: Array.from(watchedSymbols) } : null);
  store.set("account", data.account || null);
  store.set("positions", data.positions || []);
  store.set("openOrders", (data.orders && data.orders.open) || []);
  store.set("orders", ((data.orders && data.orders.recent) || []).slice(0, MAX_ORDERS));
  store.set("fills", (data.fills || []).slice(0, MAX_FILLS));
  // A new bootstrap restarts the game board's polling from its board (or ends it), keeping a
  // newer board already shown.
  gamePoller = applyBootstrapBoard(store, data, { previous: gamePoller });
  store.set("analytics", data.analytics || null);
  store.set("statements", data.statements || []);
  resyncer.scheduleRollover(data.config && data.config.next_day_start, data.as_of);
}

let bootstrapAttempt = 0;
async function loadBootstrap() {
  for (;;) {
    try {
      const data = await api.get(config.bootstrapUrl);
      bootstrapAttempt = 0;
      return data;
    } catch (error) {
      if (error.status === 401 || error.status === 403) {
        announce(errorMessage(error));
        throw error;
      }
      const wait = backoffDelay(bootstrapAttempt++);
      announce(`Could not load the dashboard (${errorMessage(error)}); retrying in ${Math.ceil(wait / 1000)} s.`);
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }
}

// After a socket comes back, ticks and order events may have been missed: one bootstrap call
// brings everything to the server's present. Both sockets reconnecting together share one call.
// The same call at the next trading day's start brings the new day's change, volume and day P&L.
const resyncer = new Resyncer({
  load: loadBootstrap,
  apply: (data) => {
    applyBootstrap(data);
    dashboard.resyncs += 1;
    const selected = store.state.ui.selected;
    if (selected && chart) chart.load(selected);
  },
  applyMessage: (message) => applyDashboardMessage(store, message),
  onError: (error) => console.error("dashboard: resync failed", error),
  delayMs: RESYNC_DELAY_MS,
});
dashboard.resyncer = resyncer;
const scheduleResync = () => resyncer.schedule();

// --- Components -----------------------------------------------------------------------------------

let chart = null;
let ticket = null;

function initialSymbol(state) {
  let stored;
  try {
    stored = localStorage.getItem(SYMBOL_KEY);
  } catch {
    stored = null;
  }
  const candidates = [
    stored,
    ...((state.watchlist && state.watchlist.symbols) || []),
    ...state.positions.map((position) => position.symbol),
    state.market.keys().next().value,
  ];
  return candidates.find((symbol) => symbol && state.market.has(symbol)) || null;
}

function select(symbol) {
  if (!symbol || !store.state.market.has(symbol)) return;
  const changed = store.state.ui.selected !== symbol;
  store.patch("ui", { selected: symbol });
  ticket.setSymbol(symbol);
  try {
    localStorage.setItem(SYMBOL_KEY, symbol);
  } catch {
    // Storage refused (private mode): the choice just is not remembered.
  }
  if (changed) chart.load(symbol);
}

class ChartHeader {
  constructor() {
    this.symbol = document.getElementById("chart-symbol");
    this.name = document.getElementById("chart-name");
    this.last = document.querySelector("#chart-quote [data-field=last]");
    this.pct = document.querySelector("#chart-quote [data-field=change_pct]");
    this.row = null;
  }

  update(row) {
    if (row === this.row) return;
    const previous = this.row;
    this.row = row;
    if (!row) return;
    if (!previous || previous.symbol !== row.symbol) {
      this.symbol.textContent = row.symbol;
      this.name.textContent = row.halted ? `${row.name} \u00b7 halted` : row.name;
    }
    this.last.textContent = formatPrice(row.last);
    this.last.className = `num ${row.tick || ""}`.trim();
    const pct = formatPercent(changePctOf(row));
    this.pct.textContent = pct;
    this.pct.className = `num ${signOfText(pct)}`.trim();
  }
}

async function main() {
  const perf = new PerfMonitor({ url: config.perfUrl, renderer: rendererName, api });
  dashboard.perf = perf;
  store.onFlush = (ms, change) => perf.recordRender(ms, change.updates);

  const indicator = new ConnectionIndicator(document.getElementById("connection-state"), ["marketData", "dashboard"]);

  let data;
  try {
    data = await loadBootstrap();
  } catch {
    return;
  }
  applyBootstrap(data);
  perf.intervalS = (data.config && data.config.perf_report_interval_s) || perf.intervalS;
  perf.start();

  const onSelect = (symbol) => select(symbol);
  const marketRoot = document.getElementById("market-table");
  const naive = naiveTableModule !== null;
  const TableClass = naive ? (await naiveTableModule).NaiveMarketTable : MarketTable;
  const marketTable = new TableClass({ root: marketRoot, store, api, onSelect, announce });
  dashboard.marketTable = marketTable;

  chart = new PriceChart({
    container: document.getElementById("chart"),
    status: document.getElementById("chart-status"),
    api,
  });
  ticket = new OrderTicket({
    form: document.getElementById("order-ticket"),
    api,
    store,
    announce,
    onSymbol: (symbol) => select(symbol),
    onPlaced: (order) => {
      resyncer.defer(() => applyOrder(store, order));
      // Without the dashboard channel, positions and cash would wait for the next reconnect.
      if (store.state.streamDashboard !== "open") scheduleResync();
    },
  });
  const chartHeader = new ChartHeader();
  const account = new AccountPanel({ root: document.getElementById("account") });
  const positions = new PositionsPanel({ root: document.getElementById("positions"), onSelect });
  const openOrders = new OpenOrdersPanel({ root: document.getElementById("open-orders"), api, store, announce, onSelect });
  const history = new OrderHistoryPanel({ root: document.getElementById("order-history"), onSelect });
  const fills = new FillsPanel({ root: document.getElementById("fills"), onSelect });
  const leaderboard = new LeaderboardPanel({ root: document.getElementById("leaderboard") });
  const analytics = new AnalyticsPanel({ root: document.getElementById("analytics"), api, store });
  const statements = new StatementsPanel({ root: document.getElementById("statements"), api, store, announce });
  const marketCountElement = document.getElementById("market-count");
  const showMarketCount = (shown, total) => {
    const text = `${shown} of ${total}`;
    if (marketCountElement.textContent !== text) marketCountElement.textContent = text;
  };

  const renderNaive = () => {
    const started = performance.now();
    const count = marketTable.render();
    perf.recordRender(performance.now() - started, 1);
    showMarketCount(count, store.state.market.size);
  };

  store.subscribe((state, change) => {
    const changedSymbols = change.items.get("market") || null;
    if (!naive) {
      const count = marketTable.update(state, change);
      showMarketCount(count, state.market.size);
    } else if (change.keys.has("ui") || change.keys.has("assetsVersion") || change.keys.has("watchlist")) {
      renderNaive();
    }
    const marketReplaced = change.keys.has("market");
    const held = marketReplaced || (changedSymbols && state.positions.some((p) => changedSymbols.has(p.symbol)));
    account.update(state, held);
    positions.update(state, marketReplaced ? new Set(state.market.keys()) : changedSymbols);
    openOrders.update(state);
    history.update(state);
    fills.update(state);
    leaderboard.update(state);
    analytics.update(state);
    statements.update(state);
    const selected = state.ui.selected ? state.market.get(state.ui.selected) : null;
    chartHeader.update(selected || null);
    ticket.setQuote(selected || null);
  });

  const search = document.getElementById("market-search");
  search.addEventListener("input", () => store.patch("ui", { query: search.value }));
  const watchOnly = document.getElementById("watch-only");
  watchOnly.addEventListener("change", () => store.patch("ui", { watchOnly: watchOnly.checked }));
  document.addEventListener("keydown", (event) => {
    const typing = event.target.closest && event.target.closest("input, select, textarea");
    if (event.key === "/" && !typing) {
      event.preventDefault();
      search.focus();
    }
  });

  // The first paint and the one chart call of the first load.
  const first = initialSymbol(store.state);
  store.flush();
  if (first) select(first);

  const streams = (data && data.streams) || {};
  const marketData = new MarketDataStream({
    url: streams.market_data || `${config.wsBase}/v2/iex`,
    onState: (state, detail) => indicator.set("marketData", state, detail),
    onReady: ({ reconnected }) => {
      if (reconnected) scheduleResync();
    },
    onData: (messages) => {
      perf.recordMessages(messages.length);
      const changed = reduceMarketEvents(store.state.market, messages);
      store.upsert("market", changed);
      chart.apply(messages);
      if (naive) renderNaive();
    },
  });
  const dashboardStream = new DashboardStream({
    url: streams.dashboard || `${config.wsBase}/ws/dashboard`,
    onState: (state, detail) => {
      indicator.set("dashboard", state, detail);
      store.set("streamDashboard", state);
    },
    onReady: ({ reconnected }) => {
      if (reconnected) scheduleResync();
    },
    onMessage: (message) => resyncer.dispatch(message),
  });
  dashboard.streams = { marketData, dashboard: dashboardStream };
  marketData.start();
  dashboardStream.start();

  root.dataset.ready = "true";
  dashboard.ready = true;
}

main().catch((error) => {
  console.error("dashboard: failed to start", error);
  announce(`The dashboard failed to start: ${errorMessage(error)}`);
});
