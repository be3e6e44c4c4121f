// SelectiveRenderer: row components keyed by id (a symbol, an order id). A price update writes
// only the cells whose text changed; a row handed the same inputs, or inputs that format to the
// same text, is not touched at all (Properties 16 and 17, docs/properties.md).
//
// A changed numeric cell flashes up or down. The flash restarts by switching between two
// animation classes (flash-up-0/flash-up-1), so nothing has to remove it later: the only DOM
// writes are those of a value that changed. Up/down is never colour alone: a cell with a trend
// carries the class "up" or "down", which the stylesheet turns into a ▲/▼ glyph with alt text.

import { signOfText } from "./format.js";

/** Sets an element's text, reusing its text node (one characterData change, no node churn). */
export function setText(element, text) {
  const node = element.firstChild;
  if (node && node.nodeType === 3 && node === element.lastChild) {
    node.data = text;
  } else {
    element.textContent = text;
  }
}

function trendOf(column, inputs, text) {
  if (!column.trend) return "";
  if (column.trend === "tick") return inputs.tick || "";
  // The sign as shown: a change that rounds to 0.00 is flat, not down.
  if (column.trend === "sign") return signOfText(text);
  return column.trend(inputs, text) || "";
}

function numeric(value) {
  return typeof value === "number" && Number.isFinite(value);
}

/**
 * One row: its element, its cells by field, and what was last written to each, so an update
 * compares against the previous text instead of reading the DOM.
 *
 * A column is {field, text(inputs) -> string, value?(inputs), flash?, trend?, className?,
 * write?(cell, text, inputs)}; `write` replaces the default text write for custom cells
 * (a sparkline, a button), `text` is then the cell's comparison key.
 */
export class RowComponent {
  constructor({ element, cells, columns, keyAttribute = "data-key" }) {
    this.element = element;
    this.cells = cells;
    this.columns = columns.filter((column) => cells.has(column.field) && column.text);
    this.keyAttribute = keyAttribute;
    this.key = undefined;
    this.inputs = undefined;
    this.renders = 0;
    this.texts = new Map();
    this.values = new Map();
    this.classes = new Map();
    this.parity = new Map();
  }

  /** Shows another row's data (a recycled element): every cell written, nothing flashes. */
  bind(key, inputs) {
    if (this.key !== key) {
      this.key = key;
      this.element.setAttribute(this.keyAttribute, key);
    }
    this.inputs = inputs;
    this.renders += 1;
    let writes = 0;
    for (const column of this.columns) writes += this.#cell(column, inputs, false, true);
    return writes;
  }

  /** Brings the row to new inputs of the same key; returns how many cells were written. */
  update(inputs) {
    if (inputs === this.inputs) return 0;
    this.inputs = inputs;
    let writes = 0;
    for (const column of this.columns) writes += this.#cell(column, inputs, true, false);
    if (writes) this.renders += 1;
    return writes;
  }

  #cell(column, inputs, flash, force) {
    const field = column.field;
    const cell = this.cells.get(field);
    const text = column.text(inputs);
    const previousText = this.texts.get(field);
    const value = column.value ? column.value(inputs) : undefined;
    const previousValue = this.values.get(field);
    this.values.set(field, value);
    if (!force && text === previousText) return 0;
    this.texts.set(field, text);
    if (column.write) column.write(cell, text, inputs);
    else setText(cell, text);

    let className = column.className || "";
    const trend = trendOf(column, inputs, text);
    if (trend) className = className ? `${className} ${trend}` : trend;
    if (flash && column.flash && numeric(value) && numeric(previousValue) && value !== previousValue) {
      const parity = this.parity.get(field) ? 0 : 1;
      this.parity.set(field, parity);
      const flashClass = `flash-${value > previousValue ? "up" : "down"}-${parity}`;
      className = className ? `${className} ${flashClass}` : flashClass;
    }
    if (force || this.classes.get(field) !== className) {
      this.classes.set(field, className);
      cell.className = className;
    }
    return 1;
  }
}

export class SelectiveRenderer {
  #shown = new Map();
  #free = [];

  /**
   * @param {{columns: object[], createRow: () => {element, cells: Map<string, object>}, keyAttribute?: string}} options
   */
  constructor({ columns, createRow, keyAttribute = "data-key" }) {
    this.columns = columns;
    this.createRow = createRow;
    this.keyAttribute = keyAttribute;
    this.stats = { rowRenders: 0, rowSkips: 0, cellWrites: 0, binds: 0, created: 0 };
  }

  get shownCount() {
    return this.#shown.size;
  }

  get freeCount() {
    return this.#free.length;
  }

  isShown(key) {
    return this.#shown.has(key);
  }

  component(key) {
    return this.#shown.get(key);
  }

  shownKeys() {
    return this.#shown.keys();
  }

  /** The component showing `key`: updated if already shown, else a recycled or new one bound to it. */
  show(key, inputs) {
    const existing = this.#shown.get(key);
    if (existing) {
      this.render(key, inputs);
      return existing;
    }
    let component = this.#free.pop();
    if (!component) {
      const { element, cells } = this.createRow();
      component = new RowComponent({ element, cells, columns: this.columns, keyAttribute: this.keyAttribute });
      this.stats.created += 1;
    }
    this.stats.binds += 1;
    this.stats.cellWrites += component.bind(key, inputs);
    this.#shown.set(key, component);
    return component;
  }

  /** Stops showing `key`; its component waits in the free list for the next show(). */
  hide(key) {
    const component = this.#shown.get(key);
    if (!component) return null;
    this.#shown.delete(key);
    this.#free.push(component);
    return component;
  }

  /** Components hidden and not reused since: their elements can leave the document. */
  takeFree() {
    return this.#free;
  }

  /** Updates the row showing `key`, if shown; returns the number of cells written. */
  render(key, inputs) {
    const component = this.#shown.get(key);
    if (!component) return 0;
    const writes = component.update(inputs);
    if (writes) {
      this.stats.rowRenders += 1;
      this.stats.cellWrites += writes;
    } else {
      this.stats.rowSkips += 1;
    }
    return writes;
  }
}
