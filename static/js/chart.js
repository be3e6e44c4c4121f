// The price chart of the selected symbol: lightweight-charts (TradingView's maintained financial
// charting library, from npm through the import map) with candles and volume. History comes from
// GET /v2/stocks/{symbol}/bars; after that the stream's trades move the forming candle and its
// minute bars settle it. The library loads lazily, so the rest of the page never waits for it.

import { errorMessage } from "./api.js";
import { toNumber } from "./format.js";

export const CHART_BARS = 240;
// Bars kept in memory and in the chart; older ones are dropped (bounded over hours of ticking).
export const MAX_CHART_BARS = 600;

/** An Alpaca bar {t, o, h, l, c, v} as a chart bar {time (s), open, high, low, close, volume}. */
export function barFromAlpaca(bar) {
  return {
    time: Math.floor(Date.parse(bar.t) / 1000),
    open: Number(bar.o),
    high: Number(bar.h),
    low: Number(bar.l),
    close: Number(bar.c),
    volume: Number(bar.v) || 0,
  };
}

/**
 * Folds a trade into the bars (ascending by time): the minute's bar grows, or a new one starts.
 * Returns the bar to hand to the chart, or null for a trade older than the newest bar's minute.
 */
export function foldTrade(bars, { price, size, timeSeconds }) {
  const minute = Math.floor(timeSeconds / 60) * 60;
  const last = bars[bars.length - 1];
  if (last && minute < last.time) return null;
  if (last && minute === last.time) {
    const bar = {
      ...last,
      high: Math.max(last.high, price),
      low: Math.min(last.low, price),
      close: price,
      volume: last.volume + size,
    };
    bars[bars.length - 1] = bar;
    return bar;
  }
  const bar = { time: minute, open: price, high: price, low: price, close: price, volume: size };
  bars.push(bar);
  return bar;
}

/** Places a settled bar (a "b" message): replaces the same minute or appends a newer one. */
export function foldBar(bars, bar) {
  const last = bars[bars.length - 1];
  if (last && bar.time < last.time) return null;
  if (last && bar.time === last.time) bars[bars.length - 1] = bar;
  else bars.push(bar);
  return bar;
}

function timeOf(iso) {
  const ms = Date.parse(iso);
  return Number.isFinite(ms) ? ms / 1000 : null;
}

const UP = "#2fbf71";
const DOWN = "#ff5c5c";

export class PriceChart {
  constructor({ container, status, api }) {
    this.container = container;
    this.status = status;
    this.api = api;
    this.symbol = null;
    this.bars = [];
    this.loadToken = 0;
    this.library = null;
    this.chart = null;
  }

  async #ensureChart() {
    if (this.chart) return true;
    try {
      this.library = this.library || (await import("lightweight-charts"));
    } catch (error) {
      console.error("dashboard: lightweight-charts did not load", error);
      this.#say("The chart library did not load (run `npm ci`, then collectstatic).");
      return false;
    }
    const { createChart, CandlestickSeries, HistogramSeries, ColorType, CrosshairMode } = this.library;
    const styles = getComputedStyle(document.documentElement);
    const text = styles.getPropertyValue("--muted").trim() || "#93a1b5";
    const grid = styles.getPropertyValue("--line").trim() || "#2a3546";
    this.chart = createChart(this.container, {
      autoSize: true,
      layout: { background: { type: ColorType.Solid, color: "transparent" }, textColor: text, attributionLogo: true },
      grid: { vertLines: { color: grid }, horzLines: { color: grid } },
      crosshair: { mode: CrosshairMode.Normal },
      rightPriceScale: { borderColor: grid },
      timeScale: { borderColor: grid, timeVisible: true, secondsVisible: false },
      localization: {
        timeFormatter: (time) => new Date(time * 1000).toLocaleString("en-GB", { hour12: false }),
      },
    });
    this.candles = this.chart.addSeries(CandlestickSeries, {
      upColor: UP,
      downColor: DOWN,
      borderVisible: false,
      wickUpColor: UP,
      wickDownColor: DOWN,
    });
    this.volume = this.chart.addSeries(HistogramSeries, {
      priceFormat: { type: "volume" },
      priceScaleId: "",
      lastValueVisible: false,
      priceLineVisible: false,
    });
    this.volume.priceScale().applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
    this.candles.priceScale().applyOptions({ scaleMargins: { top: 0.08, bottom: 0.25 } });
    return true;
  }

  #say(text) {
    if (this.status) {
      this.status.textContent = text;
      this.status.hidden = !text;
    }
  }

  #volumeBar(bar) {
    return { time: bar.time, value: bar.volume, color: bar.close >= bar.open ? `${UP}66` : `${DOWN}66` };
  }

  /** Shows `symbol`: one GET of its recent minute bars, then live updates. */
  async load(symbol) {
    const token = ++this.loadToken;
    this.symbol = symbol;
    this.bars = [];
    this.container.dataset.symbol = symbol;
    this.container.setAttribute("aria-busy", "true");
    this.#say(`Loading ${symbol}\u2026`);
    const [ready, bars] = await Promise.all([
      this.#ensureChart(),
      this.api
        .get(`/v2/stocks/${encodeURIComponent(symbol)}/bars?timeframe=1Min&limit=${CHART_BARS}&sort=desc`)
        .then(
          (body) => (body && Array.isArray(body.bars) ? body.bars : []),
          (error) => {
            if (token === this.loadToken) this.#say(errorMessage(error));
            return null;
          },
        ),
    ]);
    if (token !== this.loadToken) return;
    this.container.removeAttribute("aria-busy");
    if (!ready || bars === null) return;
    // Fetched newest first (so `limit` takes the latest); the chart wants oldest first.
    this.bars = bars.map(barFromAlpaca).filter((bar) => Number.isFinite(bar.time)).reverse();
    this.candles.setData(this.bars);
    this.volume.setData(this.bars.map((bar) => this.#volumeBar(bar)));
    this.chart.timeScale().fitContent();
    this.#say(this.bars.length ? "" : `No bars for ${symbol} yet; they appear as it trades.`);
    this.container.dataset.bars = String(this.bars.length);
  }

  /** Live messages of the selected symbol (trades and minute bars), in stream order. */
  apply(events) {
    if (!this.chart || !this.symbol || this.container.hasAttribute("aria-busy")) return;
    let changed = null;
    for (const event of events) {
      if (event.S !== this.symbol) continue;
      let bar = null;
      if (event.T === "t") {
        const price = toNumber(event.p);
        const timeSeconds = timeOf(event.t);
        if (price === null || timeSeconds === null) continue;
        bar = foldTrade(this.bars, { price, size: toNumber(event.s) ?? 0, timeSeconds });
      } else if (event.T === "b") {
        bar = foldBar(this.bars, barFromAlpaca(event));
      }
      if (bar) changed = bar;
      if (bar && this.bars.length > MAX_CHART_BARS) {
        this.bars.splice(0, this.bars.length - MAX_CHART_BARS);
        this.candles.setData(this.bars);
        this.volume.setData(this.bars.map((item) => this.#volumeBar(item)));
        changed = null;
      } else if (bar) {
        this.candles.update(bar);
        this.volume.update(this.#volumeBar(bar));
      }
    }
    if (changed && this.status && !this.status.hidden) this.#say("");
    if (changed) this.container.dataset.bars = String(this.bars.length);
  }
}
