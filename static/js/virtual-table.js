// A keyboard-usable grid of rows: VirtualScrollManager decides which rows exist, the
// SelectiveRenderer keeps their cells current. Every list of the dashboard is one of these;
// one over 50 items only ever has its visible window (plus overscan) in the document.

import { SelectiveRenderer } from "./selective-renderer.js";
import { VirtualScrollManager } from "./virtual-scroll.js";

const SORT_ARIA = { asc: "ascending", desc: "descending" };

let tableCount = 0;

export class VirtualTable {
  /**
   * @param {object} options
   * @param {HTMLElement} options.root element the grid is built into
   * @param {string} options.label accessible name of the grid
   * @param {object[]} options.columns {field, label, width, numeric?, sortable?, text, value?,
   *   flash?, trend?, create?(cell, doc), write?(cell, text, inputs)}
   * @param {(item) => string} options.keyOf
   * @param {string} options.keyAttribute the row attribute carrying the key (data-symbol, ...)
   */
  constructor({
    root,
    label,
    columns,
    keyOf,
    keyAttribute = "data-key",
    rowHeight = 32,
    overscan = 8,
    threshold,
    emptyText = "Nothing here yet.",
    onActivate,
    onKey,
    onSort,
    doc = document,
    win = window,
  }) {
    tableCount += 1;
    this.id = root.id ? `${root.id}-grid` : `grid-${tableCount}`;
    this.doc = doc;
    // A numeric column's cells are right-aligned tabular figures ("num").
    columns = columns.map((column) => ({ ...column, className: column.className ?? (column.numeric ? "num" : "") }));
    this.columns = columns;
    this.keyOf = keyOf;
    this.keyAttribute = keyAttribute;
    this.onActivateItem = onActivate || (() => {});
    this.onKeyItem = onKey || (() => false);
    this.onSort = onSort || null;
    this.keys = [];
    this.indexOf = new Map();
    this.byKey = new Map();
    this.activeKey = null;
    this.selectedKey = null;
    this.rowSerial = 0;

    this.grid = doc.createElement("div");
    this.grid.className = "vt";
    this.grid.id = this.id;
    this.grid.setAttribute("role", "grid");
    this.grid.setAttribute("aria-label", label);
    this.grid.setAttribute("aria-colcount", String(columns.length));
    this.grid.tabIndex = 0;
    this.grid.style.setProperty("--vt-columns", columns.map((c) => c.width || "1fr").join(" "));
    this.grid.style.setProperty("--vt-row-height", `${rowHeight}px`);

    const head = doc.createElement("div");
    head.className = "vt-head";
    head.setAttribute("role", "rowgroup");
    const headRow = doc.createElement("div");
    headRow.className = "vt-row vt-header";
    headRow.setAttribute("role", "row");
    headRow.setAttribute("aria-rowindex", "1");
    this.headers = new Map();
    columns.forEach((column, i) => {
      const cell = doc.createElement("div");
      cell.setAttribute("role", "columnheader");
      cell.setAttribute("aria-colindex", String(i + 1));
      // data-column, not data-field: [data-field] selects the cells of data rows only.
      cell.dataset.column = column.field;
      cell.className = column.numeric ? "num" : "";
      cell.textContent = column.label;
      if (column.srLabel) cell.setAttribute("aria-label", column.srLabel);
      if (column.sortable && this.onSort) {
        cell.tabIndex = 0;
        cell.classList.add("sortable");
        cell.setAttribute("aria-sort", "none");
        cell.addEventListener("click", () => this.onSort(column.field));
        cell.addEventListener("keydown", (event) => {
          if (event.key === "Enter" || event.key === " ") {
            event.preventDefault();
            this.onSort(column.field);
          }
        });
      }
      this.headers.set(column.field, cell);
      headRow.append(cell);
    });
    head.append(headRow);

    this.body = doc.createElement("div");
    this.body.className = "vt-body";
    this.body.setAttribute("role", "rowgroup");
    this.grid.append(head, this.body);

    this.empty = doc.createElement("p");
    this.empty.className = "vt-empty muted";
    this.empty.textContent = emptyText;
    root.append(this.grid, this.empty);

    this.renderer = new SelectiveRenderer({
      columns,
      keyAttribute,
      createRow: () => this.#createRow(),
    });
    this.scroll = new VirtualScrollManager({
      viewport: this.grid,
      body: this.body,
      rowHeight,
      overscan,
      threshold,
      win,
      onRange: (start, end) => this.#renderRange(start, end),
      onActiveChange: (index) => this.#markActive(index >= 0 ? this.keys[index] : null),
      onActivate: (index, event) => this.#activate(index, event),
      onKey: (index, event) => {
        const key = this.keys[index];
        return key !== undefined && this.onKeyItem(key, this.byKey.get(key), event);
      },
    });
    this.scroll.headerHeight = rowHeight;

    this.body.addEventListener("click", (event) => {
      if (event.target.closest("button, a, input")) return;
      const row = event.target.closest(".vt-row");
      const key = row && row.getAttribute(keyAttribute);
      if (key === null || key === undefined || !this.indexOf.has(key)) return;
      this.scroll.setActive(this.indexOf.get(key), { scroll: false });
      this.onActivateItem(key, this.byKey.get(key), event);
    });
  }

  #createRow() {
    const element = this.doc.createElement("div");
    element.className = "vt-row";
    element.setAttribute("role", "row");
    this.rowSerial += 1;
    element.id = `${this.id}-r${this.rowSerial}`;
    const cells = new Map();
    this.columns.forEach((column, i) => {
      const cell = this.doc.createElement("div");
      cell.setAttribute("role", "gridcell");
      cell.setAttribute("aria-colindex", String(i + 1));
      cell.dataset.field = column.field;
      if (column.className) cell.className = column.className;
      if (column.create) column.create(cell, this.doc);
      cells.set(column.field, cell);
      element.append(cell);
    });
    return { element, cells };
  }

  /** Replaces the list (new order, new members); rows still shown keep their elements. */
  setItems(items) {
    const keys = new Array(items.length);
    const indexOf = new Map();
    const byKey = new Map();
    for (let i = 0; i < items.length; i++) {
      const key = this.keyOf(items[i]);
      keys[i] = key;
      indexOf.set(key, i);
      byKey.set(key, items[i]);
    }
    this.keys = keys;
    this.indexOf = indexOf;
    this.byKey = byKey;
    this.empty.hidden = items.length > 0;
    const active = this.activeKey !== null && indexOf.has(this.activeKey) ? indexOf.get(this.activeKey) : -1;
    this.scroll.activeIndex = active;
    this.scroll.setCount(items.length);
    this.#markActive(active >= 0 ? this.activeKey : null);
  }

  /** New inputs for one item already in the list; its row (if shown) updates its changed cells. */
  update(key, inputs) {
    if (!this.byKey.has(key)) return 0;
    this.byKey.set(key, inputs);
    return this.renderer.render(key, inputs);
  }

  get count() {
    return this.keys.length;
  }

  get renderedRows() {
    return this.renderer.shownCount;
  }

  setSort(field, dir) {
    for (const [name, cell] of this.headers) {
      if (!cell.hasAttribute("aria-sort")) continue;
      cell.setAttribute("aria-sort", name === field ? SORT_ARIA[dir] || "none" : "none");
    }
  }

  /** Marks the row of `key` aria-selected (the chart's symbol), scrolling it into view if asked. */
  setSelected(key, { reveal = false } = {}) {
    const previous = this.selectedKey;
    this.selectedKey = key;
    if (previous !== null && previous !== key) this.#decorate(this.renderer.component(previous));
    this.#decorate(this.renderer.component(key));
    if (reveal && this.indexOf.has(key)) this.scroll.reveal(this.indexOf.get(key));
  }

  focus() {
    this.grid.focus();
  }

  #renderRange(start, end) {
    const wanted = new Set();
    for (let i = start; i < end; i++) wanted.add(this.keys[i]);
    for (const key of Array.from(this.renderer.shownKeys())) {
      if (!wanted.has(key)) this.renderer.hide(key);
    }
    for (let i = start; i < end; i++) {
      const key = this.keys[i];
      const wasShown = this.renderer.isShown(key);
      const component = this.renderer.show(key, this.byKey.get(key));
      if (component.index !== i) {
        component.index = i;
        this.scroll.placeRow(component.element, i);
      }
      if (!component.element.parentNode) this.body.append(component.element);
      if (!wasShown) this.#decorate(component);
    }
    for (const component of this.renderer.takeFree()) {
      if (component.element.parentNode) component.element.remove();
      component.index = -1;
    }
    this.#syncActiveDescendant();
  }

  #syncActiveDescendant() {
    const component = this.activeKey === null ? null : this.renderer.component(this.activeKey);
    const id = component ? component.element.id : null;
    if (this.grid.getAttribute("aria-activedescendant") === id) return;
    if (id) this.grid.setAttribute("aria-activedescendant", id);
    else this.grid.removeAttribute("aria-activedescendant");
  }

  #decorate(component) {
    if (!component) return;
    const active = component.key === this.activeKey;
    const selected = component.key === this.selectedKey;
    if (component.active !== active) {
      component.active = active;
      component.element.classList.toggle("active", active);
    }
    if (component.selected !== selected) {
      component.selected = selected;
      component.element.setAttribute("aria-selected", selected ? "true" : "false");
    }
  }

  #markActive(key) {
    const previous = this.activeKey;
    this.activeKey = key;
    if (previous !== null && previous !== key) this.#decorate(this.renderer.component(previous));
    this.#decorate(key === null ? null : this.renderer.component(key));
    this.#syncActiveDescendant();
  }

  #activate(index, event) {
    const key = this.keys[index];
    if (key !== undefined) this.onActivateItem(key, this.byKey.get(key), event);
  }
}
