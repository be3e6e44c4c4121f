// Frontend performance figures: render time per store flush (or per naive rebuild), long tasks,
// dropped frames, JS heap and DOM size. Posted to the server every `intervalS` seconds (keepalive
// fetch) and always readable on window.__dashboardPerf for browser tests and the benchmark.

const FRAME_MS = 1000 / 60;
// A frame that took longer than this is a dropped frame (one and a half frames at 60 Hz).
export const DROPPED_FRAME_MS = FRAME_MS * 1.5;
// A gap this long is a hidden tab or a paused debugger, not jank.
const GAP_MS = 1000;
const MAX_SAMPLES = 5000;

/** The p-th percentile (0..100) of ascending `sorted` values, nearest-rank; 0 for none. */
export function percentile(sorted, p) {
  if (!sorted.length) return 0;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/** Frames and dropped frames from the times of consecutive animation frames. */
export function countFrames(deltas) {
  let frames = 0;
  let dropped = 0;
  for (const delta of deltas) {
    if (delta >= GAP_MS) continue;
    frames += 1;
    if (delta > DROPPED_FRAME_MS) dropped += Math.round(delta / FRAME_MS) - 1;
  }
  return { frames, dropped };
}

function emptyInterval(now) {
  return {
    started: now,
    renders: 0,
    updates: 0,
    messages: 0,
    samples: [],
    render_ms_total: 0,
    long_tasks: 0,
    long_task_ms: 0,
    frames: 0,
    dropped_frames: 0,
  };
}

function round(value, digits = 3) {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

export class PerfMonitor {
  constructor({ url, intervalS = 30, renderer, api, win = window, doc = document }) {
    this.url = url;
    this.intervalS = intervalS;
    this.api = api;
    this.win = win;
    this.doc = doc;
    this.interval = emptyInterval(win.performance.now());
    this.totals = {
      renderer,
      renders: 0,
      updates: 0,
      messages: 0,
      render_ms_total: 0,
      render_ms_max: 0,
      long_tasks: 0,
      long_task_ms: 0,
      frames: 0,
      dropped_frames: 0,
      reports: 0,
      last_report_status: null,
    };
    this.lastFrame = null;
    this.timer = null;
  }

  start() {
    this.win.__dashboardPerf = this;
    const loop = (now) => {
      if (this.lastFrame !== null) this.#frame(now - this.lastFrame);
      this.lastFrame = now;
      this.win.requestAnimationFrame(loop);
    };
    this.win.requestAnimationFrame(loop);
    const Observer = this.win.PerformanceObserver;
    if (Observer && (Observer.supportedEntryTypes || []).includes("longtask")) {
      this.longTaskObserver = new Observer((list) => {
        for (const entry of list.getEntries()) this.#longTask(entry.duration);
      });
      this.longTaskObserver.observe({ type: "longtask", buffered: true });
    }
    if (this.url && this.intervalS > 0) {
      this.timer = this.win.setInterval(() => this.report(), this.intervalS * 1000);
    }
  }

  #frame(delta) {
    const { frames, dropped } = countFrames([delta]);
    this.interval.frames += frames;
    this.interval.dropped_frames += dropped;
    this.totals.frames += frames;
    this.totals.dropped_frames += dropped;
  }

  #longTask(duration) {
    this.interval.long_tasks += 1;
    this.interval.long_task_ms += duration;
    this.totals.long_tasks += 1;
    this.totals.long_task_ms += duration;
  }

  /** One render (a store flush or a naive rebuild) that took `ms` for `updates` state changes. */
  recordRender(ms, updates = 1) {
    const interval = this.interval;
    interval.renders += 1;
    interval.updates += updates;
    interval.render_ms_total += ms;
    if (interval.samples.length < MAX_SAMPLES) interval.samples.push(ms);
    else interval.samples[interval.renders % MAX_SAMPLES] = ms;
    const totals = this.totals;
    totals.renders += 1;
    totals.updates += updates;
    totals.render_ms_total += ms;
    if (ms > totals.render_ms_max) totals.render_ms_max = ms;
  }

  /** One WebSocket data frame holding `count` messages. */
  recordMessages(count) {
    this.interval.messages += count;
    this.totals.messages += count;
  }

  heapBytes() {
    const memory = this.win.performance.memory;
    return memory && Number.isFinite(memory.usedJSHeapSize) ? memory.usedJSHeapSize : null;
  }

  domNodes() {
    return this.doc.getElementsByTagName("*").length;
  }

  /** The current interval as the report body (docs/dashboard.md). */
  snapshot() {
    const interval = this.interval;
    const sorted = interval.samples.slice().sort((a, b) => a - b);
    const elapsed = (this.win.performance.now() - interval.started) / 1000;
    return {
      page: "dashboard",
      renderer: this.totals.renderer,
      interval_s: round(elapsed, 1),
      renders: interval.renders,
      updates: interval.updates,
      render_ms_p50: round(percentile(sorted, 50)),
      render_ms_p95: round(percentile(sorted, 95)),
      render_ms_max: round(sorted.length ? sorted[sorted.length - 1] : 0),
      long_tasks: interval.long_tasks,
      long_task_ms: round(interval.long_task_ms, 1),
      frames: interval.frames,
      dropped_frames: interval.dropped_frames,
      js_heap_bytes: this.heapBytes(),
      dom_nodes: this.domNodes(),
    };
  }

  /** Posts the interval's figures and starts a new interval. */
  async report() {
    const body = this.snapshot();
    this.interval = emptyInterval(this.win.performance.now());
    this.lastReport = body;
    try {
      await this.api.post(this.url, body, { keepalive: true });
      this.totals.last_report_status = "ok";
    } catch (error) {
      this.totals.last_report_status = error && error.status ? error.status : "failed";
    }
    this.totals.reports += 1;
    return body;
  }
}
