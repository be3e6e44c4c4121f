import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  ConnectionIndicator,
  DashboardStream,
  MarketDataStream,
  ReconnectingSocket,
  backoffDelay,
  combinedState,
} from "../../static/js/streams.js";
import { fakeTimers } from "./fake-timers.mjs";

/** WebSockets that the test opens, feeds and closes by hand. */
function fakeSockets() {
  const opened = [];
  class FakeWebSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      opened.push(this);
    }

    send(data) {
      this.sent.push(JSON.parse(data));
    }

    close() {
      this.readyState = 3;
      this.onclose && this.onclose({ code: 1000 });
    }

    // Test side.
    open() {
      this.readyState = 1;
      this.onopen && this.onopen();
    }

    receive(message) {
      this.onmessage && this.onmessage({ data: JSON.stringify(message) });
    }

    drop() {
      this.readyState = 3;
      this.onclose && this.onclose({ code: 1006 });
    }
  }
  return { FakeWebSocket, opened };
}

describe("backoffDelay", () => {
  test("waits grow exponentially, stay within the upper half of the ceiling and never pass the cap", () => {
    for (const random of [() => 0, () => 0.5, () => 0.999999]) {
      let previousCeiling = 0;
      for (let attempt = 0; attempt < 40; attempt++) {
        const ceiling = Math.min(15000, 500 * 2 ** attempt);
        const wait = backoffDelay(attempt, { baseMs: 500, capMs: 15000, random });
        assert.ok(wait >= ceiling / 2 && wait <= ceiling, `attempt ${attempt}: ${wait}`);
        assert.ok(ceiling >= previousCeiling);
        previousCeiling = ceiling;
      }
    }
    assert.equal(backoffDelay(0, { baseMs: 500, random: () => 0 }), 250);
    assert.equal(backoffDelay(3, { baseMs: 500, random: () => 0 }), 2000);
    assert.equal(backoffDelay(1000, { baseMs: 500, capMs: 15000, random: () => 1 }), 15000);
  });

  test("jitter spreads reconnects: random waits of one attempt differ", () => {
    const waits = new Set();
    for (let i = 0; i < 50; i++) waits.add(Math.round(backoffDelay(4)));
    assert.ok(waits.size > 10);
  });
});

describe("ReconnectingSocket", () => {
  test("a dropped socket is retried after the backoff, which resets once the protocol is ready", () => {
    const { FakeWebSocket, opened } = fakeSockets();
    const timers = fakeTimers();
    const states = [];
    const socket = new ReconnectingSocket({
      url: "ws://x/ws/dashboard",
      WebSocketImpl: FakeWebSocket,
      timers,
      backoff: { baseMs: 100, capMs: 1000, random: () => 0 },
      onState: (state) => states.push(state),
    });
    socket.start();
    assert.equal(opened.length, 1);
    opened[0].drop();
    opened[0].drop(); // a stale socket's late events are ignored
    assert.deepEqual(timers.runAll(), [50]);
    opened[1].drop();
    assert.deepEqual(timers.runAll(), [100]);
    opened[2].drop();
    assert.deepEqual(timers.runAll(), [200]);
    opened[3].open();
    socket.ready();
    assert.equal(socket.state, "open");
    opened[3].drop();
    assert.deepEqual(timers.runAll(), [50], "the backoff started over after a good connection");
    assert.deepEqual(states.filter((s, i) => s !== states[i - 1]), ["connecting", "reconnecting", "open", "reconnecting"]);
    socket.stop();
    assert.equal(socket.state, "closed");
    assert.equal(timers.pending.size, 0);
    opened[4].drop();
    assert.equal(timers.pending.size, 0, "a stopped socket stays down");
  });
});

describe("MarketDataStream", () => {
  test("authenticates with the session, subscribes to everything and passes data frames on", () => {
    const { FakeWebSocket, opened } = fakeSockets();
    const timers = fakeTimers();
    const frames = [];
    const readies = [];
    const stream = new MarketDataStream({
      url: "ws://x/v2/iex",
      WebSocketImpl: FakeWebSocket,
      timers,
      onData: (messages) => frames.push(messages),
      onReady: (info) => readies.push(info),
    });
    stream.start();
    const ws = opened[0];
    ws.open();
    ws.receive([{ T: "success", msg: "connected" }]);
    assert.deepEqual(ws.sent, [{ action: "auth" }], "no key or secret: the session cookie authenticates");
    ws.receive([{ T: "success", msg: "authenticated" }]);
    assert.deepEqual(ws.sent[1], { action: "subscribe", trades: ["*"], quotes: ["*"], bars: ["*"] });
    assert.equal(stream.socket.state, "connecting", "not live until subscribed");
    ws.receive([{ T: "subscription", trades: ["*"], quotes: ["*"], bars: ["*"] }]);
    assert.equal(stream.socket.state, "open");
    assert.deepEqual(readies, [{ reconnected: false }]);
    ws.receive([{ T: "t", S: "AAPL", p: 1 }, { T: "q", S: "AAPL", bp: 1, ap: 2 }]);
    assert.equal(frames.length, 1);
    assert.equal(frames[0].length, 2);

    ws.drop();
    timers.runAll();
    const again = opened[1];
    again.open();
    again.receive([{ T: "success", msg: "connected" }]);
    again.receive([{ T: "success", msg: "authenticated" }]);
    again.receive([{ T: "subscription", trades: ["*"] }]);
    assert.deepEqual(readies[1], { reconnected: true }, "the page resumes from a snapshot after this");
  });

  test("a refused session stops retrying and says so", () => {
    const { FakeWebSocket, opened } = fakeSockets();
    const timers = fakeTimers();
    const states = [];
    const stream = new MarketDataStream({
      url: "ws://x/v2/iex",
      WebSocketImpl: FakeWebSocket,
      timers,
      onData: () => {},
      onState: (state, detail) => states.push([state, detail.reason]),
    });
    stream.start();
    opened[0].open();
    opened[0].receive([{ T: "success", msg: "connected" }]);
    opened[0].receive([{ T: "error", code: 402, msg: "auth failed" }]);
    assert.deepEqual(states.at(-1), ["closed", "signed out"]);
    assert.equal(timers.pending.size, 0);
  });

  test("a connection-limit error is retried after a backoff", () => {
    const { FakeWebSocket, opened } = fakeSockets();
    const timers = fakeTimers();
    const stream = new MarketDataStream({ url: "ws://x/v2/iex", WebSocketImpl: FakeWebSocket, timers, onData: () => {} });
    stream.start();
    opened[0].open();
    opened[0].receive([{ T: "error", code: 406, msg: "connection limit exceeded" }]);
    assert.equal(stream.socket.state, "reconnecting");
    assert.equal(timers.pending.size, 1);
  });
});

describe("DashboardStream", () => {
  test("is live at the first account_update (the snapshot) and hands objects with a stream name to the page", () => {
    const { FakeWebSocket, opened } = fakeSockets();
    const timers = fakeTimers();
    const messages = [];
    const readies = [];
    const stream = new DashboardStream({
      url: "ws://x/ws/dashboard",
      WebSocketImpl: FakeWebSocket,
      timers,
      onMessage: (m) => messages.push(m),
      onReady: (info) => readies.push(info),
    });
    stream.start();
    opened[0].open();
    assert.equal(stream.socket.state, "connecting", "an open socket is not yet a working channel");
    assert.deepEqual(readies, []);
    opened[0].receive({ stream: "account_update", data: { account: {}, positions: [] } });
    assert.equal(stream.socket.state, "open");
    assert.deepEqual(readies, [{ reconnected: false }]);
    opened[0].receive({ stream: "account_update", data: { account: {}, positions: [] } });
    opened[0].receive(["not", "an", "object"]);
    assert.equal(messages.length, 2);
    assert.equal(readies.length, 1, "only the first frame of a connection makes it ready");

    opened[0].drop();
    timers.runAll();
    opened[1].open();
    opened[1].receive({ stream: "account_update", data: { account: {}, positions: [] } });
    assert.deepEqual(readies[1], { reconnected: true });
  });

  test("a server that accepts and then closes meets a growing backoff and no resyncs", () => {
    const { FakeWebSocket, opened } = fakeSockets();
    const timers = fakeTimers();
    const readies = [];
    const stream = new DashboardStream({
      url: "ws://x/ws/dashboard",
      WebSocketImpl: FakeWebSocket,
      timers,
      backoff: { baseMs: 100, capMs: 10000, random: () => 0 },
      onMessage: () => {},
      onReady: (info) => readies.push(info),
    });
    stream.start();
    const waits = [];
    for (let i = 0; i < 5; i++) {
      opened[i].open();
      opened[i].receive({ stream: "leaderboard", data: {} }); // not the snapshot: still not ready
      opened[i].drop();
      waits.push(...timers.runAll());
    }
    assert.deepEqual(waits, [50, 100, 200, 400, 800]);
    assert.deepEqual(readies, []);
    assert.equal(stream.socket.state, "reconnecting");
  });
});

describe("MarketDataStream readiness", () => {
  test("a server that accepts, says connected and closes meets a growing backoff and no resyncs", () => {
    const { FakeWebSocket, opened } = fakeSockets();
    const timers = fakeTimers();
    const readies = [];
    const stream = new MarketDataStream({
      url: "ws://x/v2/iex",
      WebSocketImpl: FakeWebSocket,
      timers,
      backoff: { baseMs: 100, capMs: 10000, random: () => 0 },
      onData: () => {},
      onReady: (info) => readies.push(info),
    });
    stream.start();
    const waits = [];
    for (let i = 0; i < 4; i++) {
      opened[i].open();
      opened[i].receive([{ T: "success", msg: "connected" }]);
      opened[i].receive([{ T: "success", msg: "authenticated" }]);
      opened[i].drop();
      waits.push(...timers.runAll());
    }
    assert.deepEqual(waits, [50, 100, 200, 400]);
    assert.deepEqual(readies, []);
  });
});

describe("connection indicator", () => {
  test("the combined state is the worst stream's", () => {
    assert.equal(combinedState({ a: "open", b: "open" }), "open");
    assert.equal(combinedState({ a: "open", b: "connecting" }), "connecting");
    assert.equal(combinedState({ a: "reconnecting", b: "connecting" }), "reconnecting");
    assert.equal(combinedState({ a: "closed", b: "reconnecting" }), "closed");
  });

  test("writes data-state, per-stream attributes and words", () => {
    const element = { dataset: {}, textContent: "", title: "", querySelector: () => null };
    const indicator = new ConnectionIndicator(element, ["marketData", "dashboard"]);
    assert.equal(element.dataset.state, "connecting");
    indicator.set("marketData", "open");
    indicator.set("dashboard", "open");
    assert.equal(element.dataset.state, "open");
    assert.equal(element.textContent, "Live");
    indicator.set("dashboard", "reconnecting", { retryInMs: 2400 });
    assert.equal(element.dataset.state, "reconnecting");
    assert.equal(element.dataset.dashboard, "reconnecting");
    assert.equal(element.dataset.marketData, "open");
    assert.match(element.textContent, /Reconnecting \(retry in 2 s\)/);
  });
});
