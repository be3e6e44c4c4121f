// WebSockets of the page: Alpaca's market-data stream (JSON, session auth) and the dashboard
// channel. Both reconnect with capped exponential backoff and jitter, so a restarted server is
// not met by every open page at the same instant, and report their state to a visible indicator.

export const MARKET_DATA_CHANNELS = Object.freeze({ trades: ["*"], quotes: ["*"], bars: ["*"] });

/**
 * The wait before reconnect attempt `attempt` (0 = the first retry): an exponential ceiling
 * base * 2^attempt capped at `capMs`, of which a random upper half is taken ("equal jitter"),
 * so waits never collapse to zero and never exceed the cap.
 */
export function backoffDelay(attempt, { baseMs = 500, capMs = 15000, random = Math.random } = {}) {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.max(0, attempt));
  return ceiling / 2 + (random() * ceiling) / 2;
}

/**
 * One WebSocket that comes back after it drops. States: "connecting" (first attempt),
 * "open" (the protocol above said ready()), "reconnecting" (dropped; waiting or retrying),
 * "closed" (stop() was called: it stays down).
 */
export class ReconnectingSocket {
  constructor({
    url,
    WebSocketImpl = globalThis.WebSocket,
    backoff = {},
    timers = globalThis,
    onSocketOpen = () => {},
    onMessage = () => {},
    onState = () => {},
  }) {
    this.url = url;
    this.WebSocketImpl = WebSocketImpl;
    this.backoff = backoff;
    this.timers = timers;
    this.onSocketOpen = onSocketOpen;
    this.onMessage = onMessage;
    this.onState = onState;
    this.state = "idle";
    this.attempt = 0;
    this.readyCount = 0;
    this.socket = null;
    this.retryTimer = null;
    this.stopped = false;
  }

  start() {
    this.stopped = false;
    this.#setState("connecting");
    this.#connect();
  }

  #setState(state, detail = {}) {
    if (this.state === state && !detail.retryInMs) return;
    this.state = state;
    this.onState(state, detail);
  }

  #connect() {
    this.retryTimer = null;
    let socket;
    try {
      socket = new this.WebSocketImpl(this.url);
    } catch (error) {
      console.error("dashboard: cannot open", this.url, error);
      this.#scheduleRetry();
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      if (socket === this.socket) this.onSocketOpen(this);
    };
    socket.onmessage = (event) => {
      if (socket === this.socket) this.onMessage(event.data, this);
    };
    socket.onclose = () => {
      if (socket !== this.socket) return;
      this.socket = null;
      if (!this.stopped) this.#scheduleRetry();
    };
    // An error is always followed by a close, which decides what happens next.
    socket.onerror = () => {};
  }

  #scheduleRetry() {
    const wait = backoffDelay(this.attempt, this.backoff);
    this.attempt += 1;
    this.#setState("reconnecting", { retryInMs: wait });
    this.retryTimer = this.timers.setTimeout(() => this.#connect(), wait);
  }

  /** The protocol is up (authenticated, subscribed): the backoff starts over. */
  ready() {
    this.attempt = 0;
    this.readyCount += 1;
    this.#setState("open", { reconnected: this.readyCount > 1 });
  }

  send(message) {
    if (this.socket && this.socket.readyState === 1) {
      this.socket.send(typeof message === "string" ? message : JSON.stringify(message));
      return true;
    }
    return false;
  }

  /** Closes the socket; a later drop is retried again unless `stop()` was called. */
  drop() {
    if (this.socket) this.socket.close();
  }

  stop(reason = "") {
    this.stopped = true;
    if (this.retryTimer !== null) this.timers.clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.socket) {
      const socket = this.socket;
      this.socket = null;
      socket.close();
    }
    this.#setState("closed", { reason });
  }
}

/**
 * Alpaca's market-data protocol over JSON: wait for "connected", authenticate with the page's
 * session ({"action":"auth"} without key or secret), subscribe to every symbol's trades, quotes
 * and minute bars. Data frames are arrays of {"T": "t"|"q"|"b"|"s", ...}.
 */
export class MarketDataStream {
  constructor({ url, onData, onState = () => {}, onReady = () => {}, WebSocketImpl, timers, backoff }) {
    this.onData = onData;
    this.onReady = onReady;
    this.frames = 0;
    this.socket = new ReconnectingSocket({
      url,
      WebSocketImpl,
      timers,
      backoff,
      onState: (state, detail) => onState(state, detail),
      onMessage: (data) => this.#receive(data),
    });
  }

  start() {
    this.socket.start();
  }

  stop() {
    this.socket.stop();
  }

  #receive(data) {
    let messages;
    try {
      messages = JSON.parse(data);
    } catch {
      return; // a binary or garbled frame: not ours to guess at
    }
    if (!Array.isArray(messages) || messages.length === 0) return;
    const first = messages[0];
    // Control messages arrive alone in their frame; data frames hold only data.
    if (first.T === "success" || first.T === "error" || first.T === "subscription") {
      for (const message of messages) this.#control(message);
      return;
    }
    this.frames += 1;
    this.onData(messages);
  }

  #control(message) {
    if (message.T === "success" && message.msg === "connected") {
      this.socket.send({ action: "auth" });
    } else if (message.T === "success" && message.msg === "authenticated") {
      this.socket.send({ action: "subscribe", ...MARKET_DATA_CHANNELS });
    } else if (message.T === "subscription") {
      this.socket.ready();
      this.onReady({ reconnected: this.socket.readyCount > 1 });
    } else if (message.T === "error") {
      if (message.code === 401 || message.code === 402) {
        // The session is gone: retrying cannot help until the user signs in again.
        this.socket.stop("signed out");
      } else if (message.code === 406 || message.code === 404) {
        this.socket.drop(); // too many connections or auth timeout: retry after a backoff
      } else {
        console.warn("dashboard: market data stream error", message);
      }
    }
  }
}

/**
 * The dashboard channel: JSON objects {"stream": "account_update" | "leaderboard", "data": ...}.
 * The server refuses the handshake without a session, which reads here as a drop and is retried.
 * The channel is ready at its first account_update (the server's snapshot, always sent first),
 * not when the socket opens: a server that accepts and then closes must not reset the backoff
 * nor set off a resync on every attempt.
 */
export class DashboardStream {
  constructor({ url, onMessage, onState = () => {}, onReady = () => {}, WebSocketImpl, timers, backoff }) {
    this.onMessage = onMessage;
    this.awaitingSnapshot = false;
    this.socket = new ReconnectingSocket({
      url,
      WebSocketImpl,
      timers,
      backoff,
      onState: (state, detail) => onState(state, detail),
      onSocketOpen: () => {
        this.awaitingSnapshot = true;
      },
      onMessage: (data, socket) => {
        let message;
        try {
          message = JSON.parse(data);
        } catch {
          return;
        }
        if (!message || typeof message !== "object" || typeof message.stream !== "string") return;
        if (this.awaitingSnapshot && message.stream === "account_update") {
          this.awaitingSnapshot = false;
          socket.ready();
          onReady({ reconnected: socket.readyCount > 1 });
        }
        this.onMessage(message);
      },
    });
  }

  start() {
    this.socket.start();
  }

  stop() {
    this.socket.stop();
  }
}

const STATE_TEXT = {
  connecting: "Connecting\u2026",
  open: "Live",
  reconnecting: "Reconnecting\u2026",
  closed: "Disconnected",
};

/** The worst state of several streams: closed > reconnecting > connecting > open. */
export function combinedState(states) {
  const values = Object.values(states);
  for (const state of ["closed", "reconnecting", "connecting"]) {
    if (values.includes(state)) return state;
  }
  return values.length ? "open" : "connecting";
}

/**
 * The visible connection state: `data-state` holds the combined state, `data-<stream>` each
 * stream's own, and the text says it in words (never colour alone).
 */
export class ConnectionIndicator {
  constructor(element, names) {
    this.element = element;
    this.states = Object.fromEntries(names.map((name) => [name, "connecting"]));
    this.details = {};
    this.#render();
  }

  set(name, state, detail = {}) {
    this.states[name] = state;
    this.details[name] = detail;
    this.#render();
  }

  #render() {
    const state = combinedState(this.states);
    const element = this.element;
    element.dataset.state = state;
    for (const [name, value] of Object.entries(this.states)) element.dataset[name] = value;
    let text = STATE_TEXT[state];
    if (state === "reconnecting") {
      const waits = Object.values(this.details)
        .map((detail) => detail && detail.retryInMs)
        .filter((wait) => wait > 0);
      if (waits.length) text = `Reconnecting (retry in ${Math.max(1, Math.round(Math.min(...waits) / 1000))} s)\u2026`;
    } else if (state === "closed") {
      const reasons = Object.values(this.details)
        .map((detail) => detail && detail.reason)
        .filter(Boolean);
      if (reasons.length) text = `Disconnected: ${reasons[0]}`;
    }
    const label = element.querySelector(".connection-text") || element;
    if (label.textContent !== text) label.textContent = text;
    const pending = Object.entries(this.states)
      .filter(([, value]) => value !== "open")
      .map(([name, value]) => `${name.replace(/([A-Z])/g, " $1").toLowerCase()}: ${value}`);
    element.title = pending.length ? pending.join(", ") : "All streams live";
  }
}
