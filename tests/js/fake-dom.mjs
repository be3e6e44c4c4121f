// Just enough of the DOM for the dashboard's rendering modules, with a log of every write
// (like a MutationObserver), so tests can say which nodes a render touched. No jsdom: the
// modules under test use a small, known part of the DOM.

export class FakeDocument {
  constructor() {
    this.mutations = [];
    this.created = 0;
  }

  createElement(tag) {
    this.created += 1;
    return new FakeElement(this, tag);
  }

  createElementNS(_ns, tag) {
    return this.createElement(tag);
  }

  createTextNode(data) {
    return new FakeText(this, data);
  }

  record(target, type, name) {
    this.mutations.push({ target, type, name });
  }

  takeMutations() {
    const taken = this.mutations;
    this.mutations = [];
    return taken;
  }
}

class FakeText {
  constructor(doc, data) {
    this.doc = doc;
    this.nodeType = 3;
    this.parentNode = null;
    this._data = String(data);
  }

  get data() {
    return this._data;
  }

  set data(value) {
    this._data = String(value);
    this.doc.record(this, "characterData", null);
  }

  get textContent() {
    return this._data;
  }
}

class FakeClassList {
  constructor(element) {
    this.element = element;
  }

  #set() {
    return new Set(this.element.className.split(/\s+/).filter(Boolean));
  }

  contains(name) {
    return this.#set().has(name);
  }

  add(...names) {
    const set = this.#set();
    for (const name of names) set.add(name);
    this.element.className = Array.from(set).join(" ");
  }

  remove(...names) {
    const set = this.#set();
    for (const name of names) set.delete(name);
    this.element.className = Array.from(set).join(" ");
  }

  toggle(name, force) {
    const want = force === undefined ? !this.contains(name) : Boolean(force);
    if (want) this.add(name);
    else this.remove(name);
    return want;
  }
}

export class FakeElement {
  constructor(doc, tag) {
    this.doc = doc;
    this.tagName = tag.toUpperCase();
    this.nodeType = 1;
    this.parentNode = null;
    this.childNodes = [];
    this.attributes = new Map();
    this._className = "";
    this.classList = new FakeClassList(this);
    this.listeners = new Map();
    this.scrollTop = 0;
    this.clientHeight = 0;
    this.hidden = false;
    this.tabIndex = -1;
    this.id = "";
    const element = this;
    const styles = {};
    this.style = new Proxy(styles, {
      get(target, name) {
        if (name === "setProperty") {
          return (prop, value) => {
            target[prop] = value;
            element.doc.record(element, "attributes", "style");
          };
        }
        return target[name];
      },
      set(target, name, value) {
        target[name] = value;
        element.doc.record(element, "attributes", "style");
        return true;
      },
    });
    this.dataset = new Proxy(
      {},
      {
        get: (_target, name) => element.getAttribute(`data-${String(name).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`) ?? undefined,
        set: (_target, name, value) => {
          element.setAttribute(`data-${String(name).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`, value);
          return true;
        },
      },
    );
  }

  get className() {
    return this._className;
  }

  set className(value) {
    this._className = String(value);
    this.doc.record(this, "attributes", "class");
  }

  setAttribute(name, value) {
    this.attributes.set(name, String(value));
    this.doc.record(this, "attributes", name);
  }

  getAttribute(name) {
    return this.attributes.has(name) ? this.attributes.get(name) : null;
  }

  hasAttribute(name) {
    return this.attributes.has(name);
  }

  removeAttribute(name) {
    if (this.attributes.delete(name)) this.doc.record(this, "attributes", name);
  }

  get firstChild() {
    return this.childNodes[0] || null;
  }

  get lastChild() {
    return this.childNodes[this.childNodes.length - 1] || null;
  }

  get children() {
    return this.childNodes.filter((node) => node.nodeType === 1);
  }

  append(...nodes) {
    for (const node of nodes) {
      const child = typeof node === "string" ? this.doc.createTextNode(node) : node;
      if (child.parentNode) child.parentNode.removeChild(child);
      child.parentNode = this;
      this.childNodes.push(child);
      this.doc.record(this, "childList", null);
    }
  }

  removeChild(child) {
    const index = this.childNodes.indexOf(child);
    if (index >= 0) {
      this.childNodes.splice(index, 1);
      child.parentNode = null;
      this.doc.record(this, "childList", null);
    }
    return child;
  }

  remove() {
    if (this.parentNode) this.parentNode.removeChild(this);
  }

  get textContent() {
    return this.childNodes.map((node) => node.textContent).join("");
  }

  set textContent(value) {
    for (const child of this.childNodes) child.parentNode = null;
    this.childNodes = [];
    if (value !== "") {
      const text = this.doc.createTextNode(value);
      text.parentNode = this;
      this.childNodes.push(text);
    }
    this.doc.record(this, "childList", null);
  }

  addEventListener(type, listener) {
    if (!this.listeners.has(type)) this.listeners.set(type, []);
    this.listeners.get(type).push(listener);
  }

  dispatch(type, event = {}) {
    const full = { target: this, preventDefault() {}, ...event };
    for (const listener of this.listeners.get(type) || []) listener(full);
  }

  closest(selector) {
    // Enough for the tests: ".class", "[attr]" and "tag" selectors, comma-separated.
    const tests = selector.split(",").map((part) => part.trim());
    for (let node = this; node && node.nodeType === 1; node = node.parentNode) {
      if (tests.some((test) => node.matches(test))) return node;
    }
    return null;
  }

  matches(test) {
    if (test.startsWith(".")) return this.classList.contains(test.slice(1));
    if (test.startsWith("[")) return this.hasAttribute(test.slice(1, -1).split("=")[0]);
    return this.tagName === test.toUpperCase();
  }

  /** Every element below this one, depth first. */
  *descendants() {
    for (const child of this.childNodes) {
      if (child.nodeType !== 1) continue;
      yield child;
      yield* child.descendants();
    }
  }
}

/** A window for the modules: frames run when the test says so. */
export class FakeWindow {
  constructor() {
    this.callbacks = [];
    this.ResizeObserver = undefined;
  }

  requestAnimationFrame(callback) {
    this.callbacks.push(callback);
    return this.callbacks.length;
  }

  runFrame(now = 0) {
    const due = this.callbacks;
    this.callbacks = [];
    for (const callback of due) callback(now);
    return due.length;
  }
}

/** The row element (role=row) a node belongs to, or null. */
export function rowOf(node) {
  let current = node.nodeType === 3 ? node.parentNode : node;
  while (current && current.getAttribute && current.getAttribute("role") !== "row") current = current.parentNode;
  return current || null;
}
