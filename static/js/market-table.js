// The market table: every symbol with last, change, %, bid, ask, volume and a sparkline; search,
// sortable columns, a watchlist star and a watchlist-only filter. Built on VirtualTable, so 500
// symbols keep only the visible window (about 40 rows) in the document, and each tick writes only
// the cells it changed.

import { errorMessage } from "./api.js";
import {
  LIVE_SORT_FIELDS,
  MARKET_COLUMNS,
  filterSortRows,
  sparkPoints,
  sparkTrend,
} from "./market-model.js";
import { setText } from "./selective-renderer.js";
import { memoizeLast } from "./store.js";
import { VirtualTable } from "./virtual-table.js";

// A table sorted by a moving figure is re-sorted at most this often: rows jumping on every tick
// cannot be read (or clicked).
export const RESORT_INTERVAL_MS = 2000;
const SVG_NS = "http://www.w3.org/2000/svg";

/** The sort after a click on a column header: the same column flips, a new one starts sensibly. */
export function nextSort({ sortKey, sortDir }, field) {
  if (field === sortKey) return { sortKey, sortDir: sortDir === "asc" ? "desc" : "asc" };
  return { sortKey: field, sortDir: field === "symbol" ? "asc" : "desc" };
}

/** Marks symbols watched or not in the market rows (new row objects for the ones that changed). */
export function applyWatchlist(store, symbols) {
  const watched = new Set(symbols);
  const market = store.state.market;
  const changed = [];
  for (const [symbol, row] of market) {
    const want = watched.has(symbol);
    if (row.watched !== want) changed.push([symbol, Object.freeze({ ...row, watched: want })]);
  }
  store.upsert("market", changed);
  store.patch("watchlist", { symbols: Array.from(watched) });
}

/** Stars or unstars a symbol on the "Dashboard" watchlist through Alpaca's watchlist endpoints. */
export async function toggleWatch({ store, api, symbol, announce }) {
  const watchlist = store.state.watchlist;
  const row = store.state.market.get(symbol);
  if (!row) return;
  if (!watchlist || !watchlist.id) {
    announce("The watchlist is not available right now.");
    return;
  }
  const before = watchlist.symbols || [];
  const watch = !row.watched;
  applyWatchlist(store, watch ? [...before, symbol] : before.filter((item) => item !== symbol));
  try {
    const id = encodeURIComponent(watchlist.id);
    const body = watch
      ? await api.post(`/v2/watchlists/${id}`, { symbol })
      : await api.delete(`/v2/watchlists/${id}/${encodeURIComponent(symbol)}`);
    if (body && Array.isArray(body.assets)) applyWatchlist(store, body.assets.map((asset) => asset.symbol));
    announce(watch ? `${symbol} added to the watchlist.` : `${symbol} removed from the watchlist.`);
  } catch (error) {
    applyWatchlist(store, before);
    announce(`Watchlist not changed: ${errorMessage(error)}`);
  }
}

/** The market columns with the cells only this table builds: the star and the sparkline. */
function tableColumns() {
  return MARKET_COLUMNS.map((column) => {
    if (column.field === "watch") {
      return {
        ...column,
        srLabel: "Watchlist",
        create: (cell, doc) => {
          const button = doc.createElement("button");
          button.type = "button";
          button.className = "star";
          // The grid is one tab stop; Space on the active row toggles the star from the keyboard.
          button.tabIndex = -1;
          cell.append(button);
        },
        text: (row) => `${row.symbol}|${row.watched ? 1 : 0}`,
        write: (cell, _text, row) => {
          const button = cell.firstChild;
          button.textContent = row.watched ? "\u2605" : "\u2606";
          button.setAttribute("aria-pressed", row.watched ? "true" : "false");
          button.setAttribute("aria-label", `Watch ${row.symbol}`);
        },
      };
    }
    if (column.field === "symbol") {
      return {
        ...column,
        className: "symbol",
        trend: (row) => (row.halted ? "halted" : ""),
        write: (cell, text, row) => {
          setText(cell, text);
          cell.title = row.halted ? `${row.name} (trading halted)` : row.name;
        },
      };
    }
    if (column.field === "spark") {
      return {
        ...column,
        srLabel: "Trend (last 30 minutes)",
        create: (cell, doc) => {
          const svg = doc.createElementNS(SVG_NS, "svg");
          svg.setAttribute("viewBox", "0 0 64 20");
          svg.setAttribute("preserveAspectRatio", "none");
          svg.setAttribute("aria-hidden", "true");
          svg.setAttribute("focusable", "false");
          const line = doc.createElementNS(SVG_NS, "polyline");
          svg.append(line);
          cell.append(svg);
        },
        text: (row) => `${sparkTrend(row)}|${sparkPoints(row)}`,
        write: (cell, text) => {
          const split = text.indexOf("|");
          const svg = cell.firstChild;
          svg.setAttribute("class", text.slice(0, split));
          svg.firstChild.setAttribute("points", text.slice(split + 1));
        },
      };
    }
    return column;
  });
}

export class MarketTable {
  constructor({ root, store, api, onSelect, announce, now = () => performance.now(), doc = document, win = window }) {
    this.root = root;
    this.store = store;
    this.api = api;
    this.announce = announce;
    this.now = now;
    this.lastSortAt = 0;
    // Bumped when a table sorted by a moving figure is due for a re-sort.
    this.sortEpoch = 0;
    this.rows = null;
    // The shown rows are recomputed only when one of these inputs changed (Property 17,
    // docs/properties.md).
    this.visibleRows = memoizeLast((market, assetsVersion, query, watchOnly, sortKey, sortDir, _watchlist, _sortEpoch) =>
      filterSortRows(market.values(), { query, watchOnly, sortKey, sortDir }),
    );
    root.dataset.renderer = "selective";
    this.table = new VirtualTable({
      root,
      label: "Market: every symbol. Arrow keys move, Enter charts the symbol, Space stars it.",
      columns: tableColumns(),
      keyOf: (row) => row.symbol,
      keyAttribute: "data-symbol",
      rowHeight: 32,
      overscan: 8,
      emptyText: "No symbol matches.",
      onActivate: (symbol) => onSelect(symbol),
      onKey: (symbol, _row, event) => {
        if (event.key === " " || event.key === "w") {
          this.toggle(symbol);
          return true;
        }
        return false;
      },
      onSort: (field) => store.patch("ui", nextSort(store.state.ui, field)),
      doc,
      win,
    });
    root.addEventListener("click", (event) => {
      const star = event.target.closest("button.star");
      const row = star && star.closest("[data-symbol]");
      if (row) this.toggle(row.getAttribute("data-symbol"));
    });
  }

  toggle(symbol) {
    toggleWatch({ store: this.store, api: this.api, symbol, announce: this.announce });
  }

  /** Per store flush: rebuild the list when its membership or order changed, else touch changed rows. */
  update(state, change) {
    const { ui, assetsVersion, watchlist } = state;
    const changedSymbols = change.items.get("market");
    if (changedSymbols && LIVE_SORT_FIELDS.has(ui.sortKey) && this.now() - this.lastSortAt >= RESORT_INTERVAL_MS) {
      this.sortEpoch += 1;
    }
    const rows = this.visibleRows(
      state.market,
      assetsVersion,
      ui.query,
      ui.watchOnly,
      ui.sortKey,
      ui.sortDir,
      // Starring changes membership only under the watchlist filter.
      ui.watchOnly ? watchlist : null,
      LIVE_SORT_FIELDS.has(ui.sortKey) ? this.sortEpoch : 0,
    );
    if (rows !== this.rows) {
      this.rows = rows;
      this.lastSortAt = this.now();
      this.table.setItems(rows);
      this.table.setSort(ui.sortKey, ui.sortDir);
      this.table.setSelected(ui.selected);
      return rows.length;
    }
    if (changedSymbols) {
      for (const symbol of changedSymbols) this.table.update(symbol, state.market.get(symbol));
    }
    if (change.keys.has("ui")) this.table.setSelected(ui.selected);
    return this.table.count;
  }
}
