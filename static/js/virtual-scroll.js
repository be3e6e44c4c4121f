// VirtualScrollManager: a list over `threshold` (50) items renders only the rows in view plus
// `overscan` rows either side (Property 18, docs/properties.md), keeps aria-rowcount/aria-rowindex
// right for screen readers, and moves an active row with the keyboard. The arithmetic is in pure
// functions below.

export const DEFAULT_THRESHOLD = 50;

/**
 * The rows to render, [start, end) in list order. Lists of at most `threshold` items render
 * whole; longer ones render the rows meeting the viewport plus `overscan` either side, never
 * more than maxWindowRows(...).
 */
export function visibleRange({ scrollTop, viewportHeight, rowHeight, count, overscan = 0, threshold = DEFAULT_THRESHOLD }) {
  if (!(rowHeight > 0)) throw new RangeError("rowHeight must be positive");
  const total = Math.max(0, Math.floor(count) || 0);
  if (total <= threshold) return { start: 0, end: total };
  const height = Math.max(0, Number(viewportHeight) || 0);
  const extra = Math.max(0, Math.floor(overscan) || 0);
  const maxTop = Math.max(0, total * rowHeight - height);
  const top = Math.min(Math.max(0, Number(scrollTop) || 0), maxTop);
  const first = Math.min(total - 1, Math.floor(top / rowHeight));
  // +1: a row partly scrolled off the top leaves room for one more at the bottom.
  const last = first + Math.ceil(height / rowHeight) + 1;
  return { start: Math.max(0, first - extra), end: Math.min(total, last + extra) };
}

/** The most rows visibleRange() renders for a list longer than the threshold. */
export function maxWindowRows({ viewportHeight, rowHeight, overscan = 0 }) {
  return Math.ceil(Math.max(0, viewportHeight) / rowHeight) + 1 + 2 * Math.max(0, Math.floor(overscan));
}

/** The scrollTop that brings row `index` fully into view, moving as little as possible. */
export function scrollTopToReveal(index, { scrollTop, viewportHeight, rowHeight }) {
  const rowTop = index * rowHeight;
  const rowBottom = rowTop + rowHeight;
  if (rowTop < scrollTop) return rowTop;
  if (rowBottom > scrollTop + viewportHeight) return Math.max(0, rowBottom - viewportHeight);
  return scrollTop;
}

/**
 * The active row after a key press, or null when the key is not a navigation key.
 * `index` -1 means no active row yet; `pageRows` is how many rows a page key moves.
 */
export function nextActiveIndex(key, index, count, pageRows) {
  if (count <= 0) return null;
  const page = Math.max(1, pageRows);
  let next;
  switch (key) {
    case "ArrowDown":
      next = index < 0 ? 0 : index + 1;
      break;
    case "ArrowUp":
      next = index < 0 ? 0 : index - 1;
      break;
    case "PageDown":
      next = (index < 0 ? 0 : index) + page;
      break;
    case "PageUp":
      next = (index < 0 ? 0 : index) - page;
      break;
    case "Home":
      next = 0;
      break;
    case "End":
      next = count - 1;
      break;
    default:
      return null;
  }
  return Math.min(count - 1, Math.max(0, next));
}

/**
 * Drives one scrolling grid. The owner renders rows: `onRange(start, end)` is called whenever
 * the window changes, and positions each row element with `placeRow(element, index)`.
 *
 * DOM: `viewport` is the scroll container (role=grid, focusable), `body` the element holding
 * the rows, sized to the whole list so the scrollbar is true; `headerHeight` is the height of a
 * sticky header inside the viewport.
 */
export class VirtualScrollManager {
  constructor({
    viewport,
    body,
    rowHeight,
    overscan = 8,
    threshold = DEFAULT_THRESHOLD,
    headerRows = 1,
    onRange,
    onActiveChange,
    onActivate,
    onKey,
    win = globalThis,
  }) {
    this.viewport = viewport;
    this.body = body;
    this.rowHeight = rowHeight;
    this.overscan = overscan;
    this.threshold = threshold;
    this.headerRows = headerRows;
    this.onRange = onRange;
    this.onActiveChange = onActiveChange || (() => {});
    this.onActivate = onActivate || (() => {});
    this.onKey = onKey || (() => false);
    this.count = 0;
    this.activeIndex = -1;
    this.range = { start: 0, end: 0 };
    this.headerHeight = 0;
    this.win = win;
    this.#listen();
  }

  #frame = 0;

  #listen() {
    this.viewport.addEventListener("scroll", () => this.#scheduleUpdate(), { passive: true });
    this.viewport.addEventListener("keydown", (event) => this.#keydown(event));
    if (typeof this.win.ResizeObserver === "function") {
      this.resizeObserver = new this.win.ResizeObserver(() => this.#scheduleUpdate());
      this.resizeObserver.observe(this.viewport);
    }
  }

  #scheduleUpdate() {
    if (this.#frame) return;
    this.#frame = this.win.requestAnimationFrame(() => {
      this.#frame = 0;
      this.update();
    });
  }

  /** Height of the rows area in view (the viewport less its sticky header). */
  get bodyViewportHeight() {
    return Math.max(0, this.viewport.clientHeight - this.headerHeight);
  }

  setCount(count) {
    this.count = count;
    this.body.style.height = `${count * this.rowHeight}px`;
    this.viewport.setAttribute("aria-rowcount", String(count + this.headerRows));
    if (this.activeIndex >= count) this.setActive(count - 1, { scroll: false });
    this.update(true);
  }

  /** Recomputes the window from the scroll position; calls onRange when it moved (or `force`). */
  update(force = false) {
    const range = visibleRange({
      scrollTop: this.viewport.scrollTop,
      viewportHeight: this.bodyViewportHeight,
      rowHeight: this.rowHeight,
      count: this.count,
      overscan: this.overscan,
      threshold: this.threshold,
    });
    if (!force && range.start === this.range.start && range.end === this.range.end) return;
    this.range = range;
    this.onRange(range.start, range.end);
  }

  placeRow(element, index) {
    element.style.transform = `translateY(${index * this.rowHeight}px)`;
    element.setAttribute("aria-rowindex", String(index + 1 + this.headerRows));
  }

  get pageRows() {
    return Math.max(1, Math.floor(this.bodyViewportHeight / this.rowHeight) - 1);
  }

  setActive(index, { scroll = true } = {}) {
    this.activeIndex = index;
    if (scroll && index >= 0) this.reveal(index);
    this.onActiveChange(index);
  }

  reveal(index) {
    const target = scrollTopToReveal(index, {
      scrollTop: this.viewport.scrollTop,
      viewportHeight: this.bodyViewportHeight,
      rowHeight: this.rowHeight,
    });
    if (target !== this.viewport.scrollTop) {
      this.viewport.scrollTop = target;
      this.update();
    }
  }

  #keydown(event) {
    if (event.target !== this.viewport) return; // keys typed into a header or a button are theirs
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    const next = nextActiveIndex(event.key, this.activeIndex, this.count, this.pageRows);
    if (next !== null) {
      event.preventDefault();
      this.setActive(next);
      return;
    }
    if (this.activeIndex < 0) return;
    if (event.key === "Enter") {
      event.preventDefault();
      this.onActivate(this.activeIndex, event);
    } else if (this.onKey(this.activeIndex, event)) {
      event.preventDefault();
    }
  }
}
