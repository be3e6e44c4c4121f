// The ops performance page (templates/ops.html; analytics/ops.py): charts of the monitor's stored
// samples over 1 h / 24 h / 7 d, the latest figures, the slow routes and queries, and the alerts.
// The first data comes in the page; newer rows are fetched every few seconds. Charts use the
// dashboard's library (lightweight-charts, through the import map), loaded when the page starts,
// so this module also imports in node for its unit tests (tests/js/ops.test.mjs).

const COLOURS = ["#4da3ff", "#f0b429", "#2fbf71", "#ff5c5c", "#b78cff", "#4dd4d4", "#ff9f5c", "#9fb1c9"];

// --- Pure helpers (tested in node) -------------------------------------------------------------

/** The keys a chart draws: its series, a "prefix.*" entry expanded to every key with that prefix
 * in the points or the latest row (sorted), keys without any value left out. */
export function chartKeys(series, points, latest) {
  const seen = new Set();
  for (const [, values] of points) for (const key of Object.keys(values)) seen.add(key);
  if (latest) for (const key of Object.keys(latest.values)) seen.add(key);
  const keys = [];
  for (const entry of series) {
    if (entry.endsWith(".*")) {
      const prefix = entry.slice(0, -1);
      keys.push(...[...seen].filter((key) => key.startsWith(prefix)).sort());
    } else if (seen.has(entry)) {
      keys.push(entry);
    }
  }
  return keys;
}

/** One line's data for lightweight-charts: {time, value} in time order, scaled, only numbers. */
export function lineData(points, key, scale = 1) {
  const data = [];
  for (const [time, values] of points) {
    const value = values[key];
    if (typeof value === "number" && Number.isFinite(value)) data.push({ time, value: value * scale });
  }
  return data;
}

/** Newer points appended to what is shown, without duplicates, the oldest dropped past the range. */
export function mergePoints(points, newer, spanSeconds, now) {
  const last = points.length ? points[points.length - 1][0] : -Infinity;
  const merged = points.concat(newer.filter(([time]) => time > last));
  const oldest = now - spanSeconds;
  return merged.filter(([time]) => time >= oldest);
}

export function formatValue(value, unit = "", scale = 1) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "—";
  const scaled = value * scale;
  const abs = Math.abs(scaled);
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3;
  const text = scaled.toFixed(digits);
  if (!unit) return text;
  return unit.startsWith("/") || unit === "%" ? `${text}${unit === "%" ? " %" : ` ${unit}`}` : `${text} ${unit}`;
}

/** A key's name on the page: the part after the group's prefix ("process.rss_bytes.web-0" -> "web-0"). */
export function keyLabel(key, series) {
  for (const entry of series) {
    if (entry.endsWith(".*") && key.startsWith(entry.slice(0, -1))) return key.slice(entry.length - 1);
  }
  // The unit is in the chart's title: "api.p99_ms" reads "p99", "api.requests_per_s" "requests".
  const name = key.split(".").slice(1).join(".").replace(/_(per_s|ms|s|bytes)$/, "");
  return name.replaceAll("_", " ");
}

const SPANS = { "1h": 3600, "24h": 86400, "7d": 7 * 86400 };

// --- The page ------------------------------------------------------------------------------------

function element(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text) node.textContent = text;
  return node;
}

class OpsPage {
  constructor(root, initial) {
    this.root = root;
    this.groups = initial.groups;
    this.dataUrl = initial.data_url;
    this.status = root.querySelector("#ops-status");
    this.charts = []; // {chart, spec, lines: Map(key -> series), container}
    this.library = null;
    this.timer = null;
    this.apply(initial.data, { replace: true });
  }

  apply(data, { replace }) {
    this.range = data.range;
    this.refreshSeconds = data.refresh_seconds;
    const now = Date.parse(data.now) / 1000;
    this.points = replace ? data.points : mergePoints(this.points, data.points, SPANS[this.range], now);
    this.latest = data.latest;
    this.alerts = data.alerts;
    this.slowQueries = data.slow_queries;
    this.updatedAt = new Date();
  }

  async start() {
    try {
      this.library = await import("lightweight-charts");
    } catch (error) {
      console.error("ops: lightweight-charts did not load", error);
    }
    this.buildGroups();
    this.render();
    for (const button of this.root.querySelectorAll(".ops-range")) {
      button.addEventListener("click", () => this.switchRange(button.dataset.range));
    }
    this.root.dataset.ready = "true";
    this.schedule();
  }

  schedule() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), this.refreshSeconds * 1000);
  }

  async fetchData(range, since) {
    const params = new URLSearchParams({ range });
    if (since !== undefined) params.set("since", String(since));
    const response = await fetch(`${this.dataUrl}?${params}`, { credentials: "same-origin" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    return response.json();
  }

  async refresh() {
    const last = this.points.length ? this.points[this.points.length - 1][0] : undefined;
    const range = this.range;
    try {
      const data = await this.fetchData(range, last);
      if (range === this.range) {
        this.apply(data, { replace: false });
        this.render();
      }
    } catch (error) {
      this.status.textContent = `Refresh failed (${error.message}); retrying.`;
    }
    this.schedule();
  }

  async switchRange(range) {
    if (!range || range === this.range) return;
    for (const button of this.root.querySelectorAll(".ops-range")) {
      button.setAttribute("aria-pressed", String(button.dataset.range === range));
    }
    this.range = range;
    try {
      const data = await this.fetchData(range);
      this.apply(data, { replace: true });
      this.render();
    } catch (error) {
      this.status.textContent = `Loading ${range} failed (${error.message}).`;
    }
    this.schedule();
  }

  buildGroups() {
    const container = this.root.querySelector("#ops-groups");
    for (const group of this.groups) {
      const section = element("section", { class: "card ops-group", "data-group": group.id, id: `ops-${group.id}` });
      section.append(element("h2", {}, group.title));
      section.append(element("dl", { class: "ops-figures" }));
      const charts = element("div", { class: "ops-charts" });
      for (const spec of group.charts) {
        const box = element("div", { class: "ops-chart", "data-chart": spec.title });
        box.append(element("h3", {}, spec.unit ? `${spec.title} (${spec.unit})` : spec.title));
        const canvas = element("div", { class: "ops-chart-canvas" });
        box.append(canvas);
        charts.append(box);
        this.charts.push({ spec, container: canvas, chart: null, lines: new Map(), group: group.id });
      }
      section.append(charts);
      for (const table of group.tables || []) section.append(element("div", { class: "ops-table-box", "data-table": table }));
      container.append(section);
    }
  }

  render() {
    const time = this.updatedAt.toLocaleTimeString("en-GB", { hour12: false });
    this.status.textContent = this.points.length || this.latest
      ? `Updated ${time} · ${this.range}: ${this.points.length} samples`
      : `Updated ${time} · no samples yet (is run_monitor running?)`;
    for (const group of this.groups) this.renderGroup(group);
    for (const entry of this.charts) this.renderChart(entry);
    this.renderAlerts();
  }

  renderGroup(group) {
    const section = this.root.querySelector(`[data-group="${group.id}"]`);
    const figures = section.querySelector(".ops-figures");
    figures.replaceChildren();
    let hasData = false;
    for (const spec of group.charts) {
      for (const key of chartKeys(spec.series, this.points, this.latest)) {
        hasData = true;
        const row = element("div", { "data-key": key });
        row.append(element("dt", {}, `${spec.title}: ${keyLabel(key, spec.series)}`));
        const value = this.latest ? this.latest.values[key] : undefined;
        row.append(element("dd", {}, formatValue(value, spec.unit, spec.scale || 1)));
        figures.append(row);
      }
    }
    if (group.tables?.includes("slow_routes")) hasData = this.renderSlowRoutes(section) || hasData;
    if (group.tables?.includes("slow_queries")) this.renderSlowQueries(section);
    section.dataset.hasData = String(hasData);
  }

  renderSlowRoutes(section) {
    const box = section.querySelector('[data-table="slow_routes"]');
    const rows = this.latest?.values["api.slow_routes"] || this.lastSlowRoutes() || [];
    box.replaceChildren(element("h3", {}, "Slowest routes (p99, last interval)"));
    if (!rows.length) {
      box.append(element("p", { class: "muted" }, "No requests in the last interval."));
      return false;
    }
    const table = element("table", { class: "ops-table" });
    table.append(this.headRow(["route", "p99 ms", "requests"]));
    for (const [route, p99, count] of rows) {
      const tr = element("tr", { "data-route": route });
      tr.append(element("td", {}, route), element("td", { class: "num" }, formatValue(p99)), element("td", { class: "num" }, String(count)));
      table.append(tr);
    }
    box.append(table);
    return true;
  }

  lastSlowRoutes() {
    for (let i = this.points.length - 1; i >= 0; i -= 1) {
      const rows = this.points[i][1]["api.slow_routes"];
      if (rows && rows.length) return rows;
    }
    return null;
  }

  renderSlowQueries(section) {
    const box = section.querySelector('[data-table="slow_queries"]');
    box.replaceChildren(element("h3", {}, "Slowest queries (recent, by statement)"));
    if (this.slowQueries === null) {
      box.append(element("p", { class: "muted" }, "Redis is unreachable: the recent slow queries cannot be read."));
      return;
    }
    if (!this.slowQueries.length) {
      box.append(element("p", { class: "muted" }, "No query slower than DB_SLOW_QUERY_MS recently."));
      return;
    }
    const table = element("table", { class: "ops-table" });
    table.append(this.headRow(["statement", "max ms", "mean ms", "count", "last route"]));
    for (const row of this.slowQueries) {
      const tr = element("tr", { class: "ops-slow-query" });
      const sql = element("td");
      sql.append(element("code", {}, row.sql));
      tr.append(sql, element("td", { class: "num" }, formatValue(row.max_ms)), element("td", { class: "num" }, formatValue(row.mean_ms)),
        element("td", { class: "num" }, String(row.count)), element("td", {}, row.route));
      table.append(tr);
    }
    box.append(table);
  }

  headRow(names) {
    const tr = element("tr");
    for (const name of names) tr.append(element("th", { scope: "col" }, name));
    return tr;
  }

  renderChart(entry) {
    if (!this.library) return;
    const { createChart, LineSeries, ColorType } = this.library;
    if (!entry.chart) {
      const styles = getComputedStyle(document.documentElement);
      const text = styles.getPropertyValue("--muted").trim() || "#93a1b5";
      const grid = styles.getPropertyValue("--line").trim() || "#2a3546";
      entry.chart = createChart(entry.container, {
        autoSize: true,
        layout: { background: { type: ColorType.Solid, color: "transparent" }, textColor: text, attributionLogo: true },
        grid: { vertLines: { color: grid }, horzLines: { color: grid } },
        rightPriceScale: { borderColor: grid },
        timeScale: { borderColor: grid, timeVisible: true, secondsVisible: false },
        localization: { timeFormatter: (time) => new Date(time * 1000).toLocaleString("en-GB", { hour12: false }) },
      });
    }
    const keys = chartKeys(entry.spec.series, this.points, this.latest);
    for (const key of keys) {
      if (!entry.lines.has(key)) {
        const colour = COLOURS[entry.lines.size % COLOURS.length];
        entry.lines.set(key, entry.chart.addSeries(LineSeries, {
          color: colour, lineWidth: 2, title: keyLabel(key, entry.spec.series), priceLineVisible: false,
        }));
      }
      entry.lines.get(key).setData(lineData(this.points, key, entry.spec.scale || 1));
    }
    entry.container.dataset.lines = String(keys.length);
  }

  renderAlerts() {
    const box = this.root.querySelector(".ops-alert-lists");
    box.replaceChildren();
    const { open, recent } = this.alerts;
    box.append(element("h3", {}, `Open (${open.length})`));
    box.append(open.length ? this.alertTable(open, "open") : element("p", { class: "muted", "data-empty": "open" }, "No open alert."));
    box.append(element("h3", {}, "Recently resolved"));
    box.append(recent.length ? this.alertTable(recent, "resolved") : element("p", { class: "muted" }, "None yet."));
  }

  alertTable(alerts, state) {
    const table = element("table", { class: "ops-table" });
    table.append(this.headRow(["severity", "rule", "summary", "opened", state === "open" ? "now" : "resolved", "peak"]));
    for (const alert of alerts) {
      const tr = element("tr", { class: "ops-alert", "data-rule": alert.rule, "data-state": state, "data-severity": alert.severity });
      const when = (iso) => new Date(iso).toLocaleString("en-GB", { hour12: false });
      tr.append(
        element("td", { class: "sev" }, alert.severity),
        element("td", {}, alert.rule),
        element("td", {}, alert.summary),
        element("td", {}, when(alert.opened_at)),
        element("td", { class: "num" }, state === "open" ? formatValue(alert.last) : when(alert.resolved_at)),
        element("td", { class: "num" }, formatValue(alert.peak)),
      );
      table.append(tr);
    }
    return table;
  }
}

if (typeof document !== "undefined") {
  const root = document.getElementById("ops");
  const initial = document.getElementById("ops-initial");
  if (root && initial) new OpsPage(root, JSON.parse(initial.textContent)).start();
}
