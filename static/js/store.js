// The dashboard's state. Updates are coalesced: however many set/patch/upsert calls arrive between
// two animation frames, listeners run once, in the next frame (Property 20, docs/properties.md).
// Rendering once per frame is all a screen can show; rendering per message only burns the main
// thread.

/** requestAnimationFrame as a scheduler; tests inject their own to drive frames by hand. */
export function animationFrameScheduler(win = globalThis) {
  return (callback) => win.requestAnimationFrame(callback);
}

/** Shallow equality of two plain objects or arrays: same keys, identical (===) values. */
export function shallowEqual(a, b) {
  if (a === b) return true;
  if (!a || !b || typeof a !== "object" || typeof b !== "object") return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const keysA = Object.keys(a);
  if (keysA.length !== Object.keys(b).length) return false;
  for (const key of keysA) {
    if (!Object.prototype.hasOwnProperty.call(b, key) || a[key] !== b[key]) return false;
  }
  return true;
}

/**
 * Memoises a function on the identity of its arguments: called again with the same (===)
 * arguments it returns the previous result without running: how derived data such as the
 * filtered, sorted symbol list skips work for unchanged inputs (Property 17, docs/properties.md).
 */
export function memoizeLast(fn) {
  let lastArgs = null;
  let lastResult;
  const memoized = (...args) => {
    if (lastArgs !== null && lastArgs.length === args.length && lastArgs.every((arg, i) => arg === args[i])) {
      return lastResult;
    }
    lastResult = fn(...args);
    lastArgs = args;
    memoized.runs += 1;
    return lastResult;
  };
  memoized.runs = 0;
  return memoized;
}

/** A new array with `item` first and at most `max` entries; an entry with the same key is replaced. */
export function boundedPrepend(list, item, max, keyOf = (entry) => entry.id) {
  const key = keyOf(item);
  const rest = list.filter((entry) => keyOf(entry) !== key);
  rest.unshift(item);
  if (rest.length > max) rest.length = max;
  return rest;
}

export class Store {
  #state;
  #listeners = new Set();
  #schedule;
  #now;
  #scheduled = false;
  #pendingKeys = new Set();
  #pendingItems = new Map();
  #pendingUpdates = 0;

  /**
   * @param {object} initial slices by name; keyed slices are Maps (see upsert)
   * @param {{schedule?: (cb: Function) => void, now?: () => number, onFlush?: Function}} options
   */
  constructor(initial = {}, { schedule = animationFrameScheduler(), now = () => performance.now(), onFlush } = {}) {
    this.#state = { ...initial };
    this.#schedule = schedule;
    this.#now = now;
    this.onFlush = onFlush || null;
    this.stats = { updates: 0, flushes: 0, lastFlushMs: 0 };
  }

  get state() {
    return this.#state;
  }

  get pending() {
    return this.#scheduled;
  }

  /** Replaces a slice. A value identical to the current one is not a change. */
  set(key, value) {
    if (this.#state[key] === value) return;
    this.#state[key] = value;
    this.#mark(key);
  }

  /** Merges fields into an object slice, giving it a new identity when any field changed. */
  patch(key, fields) {
    const current = this.#state[key] || {};
    let changed = false;
    for (const name of Object.keys(fields)) {
      if (current[name] !== fields[name]) {
        changed = true;
        break;
      }
    }
    if (!changed) return;
    this.#state[key] = { ...current, ...fields };
    this.#mark(key);
  }

  /**
   * Replaces items of a keyed slice (a Map, kept as one object so a 500-symbol slice is not
   * copied per message). Listeners learn which ids changed from `change.items.get(key)`.
   * @param {string} key
   * @param {Map<string, object>|Iterable<[string, object]>} entries
   */
  upsert(key, entries) {
    let map = this.#state[key];
    if (!(map instanceof Map)) {
      map = new Map();
      this.#state[key] = map;
    }
    let ids = this.#pendingItems.get(key);
    let any = false;
    for (const [id, item] of entries) {
      if (map.get(id) === item) continue;
      map.set(id, item);
      if (!ids) {
        ids = new Set();
        this.#pendingItems.set(key, ids);
      }
      ids.add(id);
      any = true;
    }
    if (any) this.#mark(null);
  }

  /**
   * Listeners run once per frame with (state, change): change.keys holds the replaced slices,
   * change.items the changed ids per keyed slice, change.updates the calls coalesced.
   */
  subscribe(listener) {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #mark(key) {
    if (key !== null) this.#pendingKeys.add(key);
    this.#pendingUpdates += 1;
    this.stats.updates += 1;
    if (!this.#scheduled) {
      this.#scheduled = true;
      this.#schedule(() => this.flush());
    }
  }

  /** Runs the listeners now with everything pending (the scheduler calls this once per frame). */
  flush() {
    if (!this.#scheduled) return;
    const change = { keys: this.#pendingKeys, items: this.#pendingItems, updates: this.#pendingUpdates };
    this.#pendingKeys = new Set();
    this.#pendingItems = new Map();
    this.#pendingUpdates = 0;
    // Cleared before listeners run, so an update a listener makes lands in the next frame.
    this.#scheduled = false;
    const started = this.#now();
    for (const listener of this.#listeners) {
      try {
        listener(this.#state, change);
      } catch (error) {
        // One broken panel must not stop the others from rendering.
        console.error("dashboard: a store listener failed", error);
      }
    }
    const elapsed = this.#now() - started;
    this.stats.flushes += 1;
    this.stats.lastFlushMs = elapsed;
    if (this.onFlush) this.onFlush(elapsed, change);
  }
}
