import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { JOB_GIVE_UP_MS, OpenOrdersPanel, followJob } from "../../static/js/panels.js";
import { Store } from "../../static/js/store.js";
import { FakeDocument, FakeWindow } from "./fake-dom.mjs";

/** A panel section: the parts the panel looks up by selector. */
function panelRoot(doc) {
  const root = doc.createElement("section");
  const parts = {
    ".panel-body": doc.createElement("div"),
    "[data-count]": doc.createElement("span"),
    ".panel-error": doc.createElement("p"),
  };
  root.append(...Object.values(parts));
  root.querySelector = (selector) => parts[selector] || null;
  return { root, parts };
}

function cancelButtons(body) {
  return Array.from(body.descendants()).filter((node) => node.getAttribute("data-action") === "cancel");
}

describe("open orders panel", () => {
  test("a stream update during a cancel keeps the row's button disabled until the answer", async () => {
    const doc = new FakeDocument();
    const flushes = [];
    const store = new Store(
      { openOrders: [{ id: "o1", symbol: "AAPL", side: "buy", qty: "5", type: "limit", limit_price: "100", status: "new", submitted_at: "2026-01-02T15:00:00Z" }] },
      { schedule: (callback) => flushes.push(callback), now: () => 0 },
    );
    let answer;
    const api = { delete: () => new Promise((resolve) => (answer = resolve)) };
    const { root, parts } = panelRoot(doc);
    const panel = new OpenOrdersPanel({ root, api, store, announce: () => {}, onSelect: () => {}, doc, win: new FakeWindow() });
    store.subscribe((state) => panel.update(state));
    const flush = () => flushes.splice(0).forEach((callback) => callback());
    panel.update(store.state);
    assert.equal(cancelButtons(parts[".panel-body"])[0].disabled, false);

    const canceling = panel.cancel("o1");
    flush();
    let [button] = cancelButtons(parts[".panel-body"]);
    assert.equal(button.disabled, true);
    assert.equal(button.textContent, "Canceling\u2026");

    // The stream's partial fill replaces the stored order mid-request.
    store.set("openOrders", [{ ...store.state.openOrders[0], status: "partially_filled", filled_qty: "1" }]);
    flush();
    [button] = cancelButtons(parts[".panel-body"]);
    assert.equal(button.disabled, true, "the Cancel button does not come back");
    assert.equal(button.textContent, "Canceling\u2026");
    await panel.cancel("o1"); // a second click meanwhile sends nothing

    answer({});
    await canceling;
    flush();
    assert.equal(store.state.openOrders.length, 0);
    assert.equal(panel.canceling.size, 0);
  });

  test("a refused cancel brings the button back on the stream's latest copy", async () => {
    const doc = new FakeDocument();
    const store = new Store(
      { openOrders: [{ id: "o1", symbol: "AAPL", side: "buy", qty: "5", type: "market", status: "new" }] },
      { schedule: (callback) => callback(), now: () => 0 },
    );
    const api = {
      delete: async () => {
        throw Object.assign(new Error("order is not cancelable"), { status: 422 });
      },
    };
    const { root, parts } = panelRoot(doc);
    const panel = new OpenOrdersPanel({ root, api, store, announce: () => {}, onSelect: () => {}, doc, win: new FakeWindow() });
    store.subscribe((state) => panel.update(state));
    panel.update(store.state);
    await panel.cancel("o1");
    const [button] = cancelButtons(parts[".panel-body"]);
    assert.equal(button.disabled, false);
    assert.equal(button.textContent, "Cancel");
    assert.notEqual(parts[".panel-error"].textContent, "");
  });
});

describe("statement jobs", () => {
  function clockedTimers() {
    const clock = { now: 0 };
    const timers = {
      setTimeout(callback, ms) {
        clock.now += ms;
        queueMicrotask(callback);
        return 1;
      },
    };
    return { clock, timers };
  }

  test("polling gives up after about two minutes while the job stays queued", async () => {
    const { clock, timers } = clockedTimers();
    let polls = 0;
    const api = {
      get: async () => {
        polls += 1;
        return { job_id: "j1", status: "queued" };
      },
    };
    const job = await followJob({ api, job: { job_id: "j1", status: "queued" }, timers, now: () => clock.now });
    assert.equal(job.gaveUp, true);
    assert.equal(job.status, "queued");
    assert.ok(clock.now >= JOB_GIVE_UP_MS && clock.now < JOB_GIVE_UP_MS + 5000, `stopped at ${clock.now} ms`);
    assert.ok(polls > 10 && polls < 40, `${polls} polls`);
  });

  test("a job that finishes in time is returned as it ended", async () => {
    const { clock, timers } = clockedTimers();
    const answers = [{ status: "running" }, { status: "succeeded" }];
    const api = { get: async () => ({ job_id: "j1", ...answers.shift() }) };
    const statuses = [];
    const job = await followJob({
      api,
      job: { job_id: "j1", status: "queued" },
      timers,
      now: () => clock.now,
      onStatus: (current) => statuses.push(current.status),
    });
    assert.equal(job.status, "succeeded");
    assert.equal(job.gaveUp, undefined);
    assert.deepEqual(statuses, ["queued", "running"]);
  });
});
