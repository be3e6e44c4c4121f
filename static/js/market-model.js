// The market table's data: one immutable row object per symbol, replaced (never mutated) when a
// stream message changes it, so a row's identity tells renderers whether anything changed.

import {
  formatCompact,
  formatPercent,
  formatPrice,
  formatSigned,
  signOf,
  toNumber,
} from "./format.js";

/** Minute closes kept per symbol for its sparkline (the bootstrap sends up to 30). */
export const SPARK_POINTS = 30;

export function marketRowFromAsset(asset, watched = false) {
  const spark = Array.isArray(asset.spark) ? asset.spark.map(Number).slice(-SPARK_POINTS) : [];
  return Object.freeze({
    symbol: asset.symbol,
    name: asset.name || "",
    sector: asset.sector || "",
    tradable: asset.tradable !== false,
    halted: Boolean(asset.halted),
    last: toNumber(asset.last),
    prev_close: toNumber(asset.prev_close),
    bid: toNumber(asset.bid),
    ask: toNumber(asset.ask),
    volume: toNumber(asset.volume) ?? 0,
    spark: Object.freeze(spark),
    // Direction of the latest trade against the one before: the last price's up/down signal.
    tick: "",
    watched,
  });
}

/**
 * Applies one frame of Alpaca market-data messages to the rows, producing at most one new row
 * object per symbol however many messages the frame holds for it.
 * Returns the changed rows by symbol; messages for unknown symbols are ignored.
 */
export function reduceMarketEvents(rows, events) {
  const changed = new Map();
  for (const event of events) {
    const symbol = event && event.S;
    if (!symbol) continue;
    const current = changed.get(symbol) || rows.get(symbol);
    if (!current) continue;
    const next = applyEvent(current, event);
    if (next !== current) changed.set(symbol, next);
  }
  for (const [symbol, row] of changed) changed.set(symbol, Object.freeze(row));
  return changed;
}

function applyEvent(row, event) {
  switch (event.T) {
    case "t": {
      const price = toNumber(event.p);
      if (price === null) return row;
      const previous = row.last;
      const tick = previous === null || price === previous ? row.tick : price > previous ? "up" : "down";
      return { ...row, last: price, tick, volume: row.volume + (toNumber(event.s) ?? 0) };
    }
    case "q": {
      const bid = toNumber(event.bp);
      const ask = toNumber(event.ap);
      if (bid === row.bid && ask === row.ask) return row;
      return { ...row, bid, ask };
    }
    case "b": {
      // A closed minute bar: its close becomes the sparkline's newest point.
      const close = toNumber(event.c);
      if (close === null) return row;
      const spark = row.spark.length >= SPARK_POINTS ? row.spark.slice(1) : row.spark.slice();
      spark.push(close);
      return { ...row, spark: Object.freeze(spark) };
    }
    case "s": {
      const halted = event.sc === "H";
      return halted === row.halted ? row : { ...row, halted };
    }
    default:
      return row;
  }
}

export function changeOf(row) {
  if (row.last === null || row.prev_close === null) return null;
  return row.last - row.prev_close;
}

export function changePctOf(row) {
  if (row.last === null || !row.prev_close) return null;
  return ((row.last - row.prev_close) / row.prev_close) * 100;
}

/** The sparkline as SVG polyline points in a width x height box: minute closes plus the last trade. */
export function sparkPoints(row, width = 64, height = 20) {
  const values = row.last === null ? row.spark : [...row.spark, row.last];
  if (values.length < 2) return "";
  let low = Infinity;
  let high = -Infinity;
  for (const value of values) {
    if (value < low) low = value;
    if (value > high) high = value;
  }
  const span = high - low || 1;
  const step = width / (values.length - 1);
  const pad = 1;
  const inner = height - 2 * pad;
  let points = "";
  for (let i = 0; i < values.length; i++) {
    const y = pad + inner - ((values[i] - low) / span) * inner;
    points += `${i ? " " : ""}${(i * step).toFixed(1)},${y.toFixed(1)}`;
  }
  return points;
}

/** Up or down over the sparkline's span (its first point to the last trade). */
export function sparkTrend(row) {
  const first = row.spark.length ? row.spark[0] : null;
  if (first === null || row.last === null) return "";
  return signOf(row.last - first);
}

/**
 * The market table's columns: shared by the selective renderer and the naive baseline, so both
 * show exactly the same text. `value` feeds sorting and the up/down flash; `trend` names how a
 * cell's persistent up/down signal is found ("tick": the last trade's direction; "sign": the sign
 * of the value).
 */
export const MARKET_COLUMNS = Object.freeze([
  { field: "watch", label: "\u2606", width: "1.9rem", sortable: false },
  {
    field: "symbol",
    label: "Symbol",
    width: "4.9rem",
    sortable: true,
    text: (row) => row.symbol,
    value: (row) => row.symbol,
  },
  {
    field: "last",
    label: "Last",
    width: "minmax(4.9rem, 1fr)",
    numeric: true,
    sortable: true,
    flash: true,
    trend: "tick",
    text: (row) => formatPrice(row.last),
    value: (row) => row.last,
  },
  {
    field: "change",
    label: "Chg",
    width: "minmax(4.4rem, 1.1fr)",
    numeric: true,
    sortable: true,
    flash: true,
    trend: "sign",
    text: (row) => formatSigned(changeOf(row)),
    value: changeOf,
  },
  {
    field: "change_pct",
    label: "Chg %",
    width: "minmax(5.3rem, 1.3fr)",
    numeric: true,
    sortable: true,
    flash: true,
    trend: "sign",
    text: (row) => formatPercent(changePctOf(row)),
    value: changePctOf,
  },
  {
    field: "bid",
    label: "Bid",
    width: "minmax(4rem, 1fr)",
    numeric: true,
    sortable: true,
    text: (row) => formatPrice(row.bid),
    value: (row) => row.bid,
  },
  {
    field: "ask",
    label: "Ask",
    width: "minmax(4rem, 1fr)",
    numeric: true,
    sortable: true,
    text: (row) => formatPrice(row.ask),
    value: (row) => row.ask,
  },
  {
    field: "volume",
    label: "Volume",
    width: "minmax(3.9rem, 0.9fr)",
    numeric: true,
    sortable: true,
    text: (row) => formatCompact(row.volume),
    value: (row) => row.volume,
  },
  { field: "spark", label: "Trend", width: "4.2rem", sortable: false },
]);

const COLUMN_BY_FIELD = new Map(MARKET_COLUMNS.map((column) => [column.field, column]));

/** Fields whose order changes as prices move (a table sorted by them is re-sorted now and then). */
export const LIVE_SORT_FIELDS = new Set(["last", "change", "change_pct", "bid", "ask", "volume"]);

/**
 * The rows to show, in order: the search matches a symbol prefix or a word of the name, the
 * watchlist filter keeps watched symbols. Rows without a value sort last in either direction.
 */
export function filterSortRows(rows, { query = "", watchOnly = false, sortKey = "symbol", sortDir = "asc" } = {}) {
  const needle = query.trim().toUpperCase();
  const out = [];
  for (const row of rows) {
    if (watchOnly && !row.watched) continue;
    if (needle && !row.symbol.startsWith(needle) && !row.name.toUpperCase().includes(needle)) continue;
    out.push(row);
  }
  const column = COLUMN_BY_FIELD.get(sortKey) || COLUMN_BY_FIELD.get("symbol");
  const value = column.value;
  const direction = sortDir === "desc" ? -1 : 1;
  const keyed = out.map((row) => [value(row), row]);
  keyed.sort((a, b) => {
    const [x, y] = [a[0], b[0]];
    if (x === y) return a[1].symbol < b[1].symbol ? -1 : a[1].symbol > b[1].symbol ? 1 : 0;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    return (x < y ? -1 : 1) * direction;
  });
  return keyed.map((pair) => pair[1]);
}

