// The plain baseline of Property 40 (docs/properties.md), selected with ?renderer=naive: every
// market-data message rebuilds the whole market table's HTML (all rows, no virtual window) and
// assigns it with innerHTML, the way a dashboard is commonly first written. Same columns, text and
// hooks as the selective table, so `manage.py benchmark dashboard` compares the two in one page
// build.

import { MARKET_COLUMNS, filterSortRows, sparkPoints, sparkTrend } from "./market-model.js";
import { signOfText } from "./format.js";
import { nextSort, toggleWatch } from "./market-table.js";

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (char) => ESCAPES[char]);
}

function cellHtml(column, row) {
  const field = column.field;
  if (field === "watch") {
    return `<td data-field="watch"><button type="button" class="star" aria-pressed="${row.watched}" aria-label="Watch ${escapeHtml(row.symbol)}">${row.watched ? "\u2605" : "\u2606"}</button></td>`;
  }
  if (field === "spark") {
    return `<td data-field="spark"><svg viewBox="0 0 64 20" preserveAspectRatio="none" aria-hidden="true" class="${sparkTrend(row)}"><polyline points="${sparkPoints(row)}"></polyline></svg></td>`;
  }
  const text = column.text(row);
  let trend = "";
  if (column.trend === "tick") trend = row.tick;
  else if (column.trend === "sign") trend = signOfText(text);
  const classes = [column.numeric ? "num" : field === "symbol" ? "symbol" : "", trend, field === "symbol" && row.halted ? "halted" : ""]
    .filter(Boolean)
    .join(" ");
  const title = field === "symbol" ? ` title="${escapeHtml(row.name)}"` : "";
  return `<td data-field="${field}" class="${classes}"${title}>${escapeHtml(text)}</td>`;
}

export function tableHtml(rows, ui) {
  const head = MARKET_COLUMNS.map((column) => {
    const sort = column.field === ui.sortKey ? (ui.sortDir === "asc" ? "ascending" : "descending") : "none";
    const attrs = column.sortable ? ` aria-sort="${sort}" tabindex="0" class="sortable${column.numeric ? " num" : ""}"` : "";
    return `<th scope="col" data-column="${column.field}"${attrs}>${escapeHtml(column.label)}</th>`;
  }).join("");
  let body = "";
  for (const row of rows) {
    const selected = row.symbol === ui.selected ? ' aria-selected="true"' : "";
    body += `<tr data-symbol="${escapeHtml(row.symbol)}"${selected}>${MARKET_COLUMNS.map((column) => cellHtml(column, row)).join("")}</tr>`;
  }
  return `<table class="naive-table"><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

export class NaiveMarketTable {
  constructor({ root, store, api, onSelect, announce }) {
    this.root = root;
    this.store = store;
    root.dataset.renderer = "naive";
    root.classList.add("naive");
    this.renders = 0;
    root.addEventListener("click", (event) => {
      const star = event.target.closest("button.star");
      const header = event.target.closest("th.sortable");
      const row = event.target.closest("tr[data-symbol]");
      if (star && row) toggleWatch({ store, api, symbol: row.dataset.symbol, announce });
      else if (header) store.patch("ui", nextSort(store.state.ui, header.dataset.column));
      else if (row) onSelect(row.dataset.symbol);
    });
    root.addEventListener("keydown", (event) => {
      const header = event.target.closest("th.sortable");
      if (header && (event.key === "Enter" || event.key === " ")) {
        event.preventDefault();
        store.patch("ui", nextSort(store.state.ui, header.dataset.column));
      }
    });
  }

  /** Rebuilds everything; returns the number of rows. */
  render() {
    const state = this.store.state;
    const rows = filterSortRows(state.market.values(), state.ui);
    // The scroll position survives the rebuild only because the scroller is the root itself.
    this.root.innerHTML = tableHtml(rows, state.ui);
    this.renders += 1;
    return rows.length;
  }
}
