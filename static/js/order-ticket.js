// The order ticket: market, limit, stop, stop_limit and trailing_stop orders. validateOrder()
// checks a form's values the way the server does and says what is wrong in words; the server's
// own Alpaca error message is shown when it refuses anyway (buying power, halts, ...).

import { errorMessage } from "./api.js";
import { formatMoney, toNumber } from "./format.js";

export const ORDER_TYPES = ["market", "limit", "stop", "stop_limit", "trailing_stop"];
export const TIME_IN_FORCE = ["day", "gtc", "ioc", "fok"];
export const DEFAULT_MAX_QTY = 1_000_000;
const PRICE_PATTERN = /^\d+(\.\d{1,4})?$/;
// Up to 9 decimals, as Alpaca takes them; fractions only on market and limit day orders.
const QTY_PATTERN = /^\d+(\.\d{1,9})?$/;
const FRACTIONAL_TYPES = ["market", "limit"];

function priceError(raw, label) {
  if (raw === "") return `Enter a ${label}.`;
  if (!PRICE_PATTERN.test(raw)) return `${label[0].toUpperCase()}${label.slice(1)} must be a number with at most 4 decimals.`;
  if (Number(raw) <= 0) return `${label[0].toUpperCase()}${label.slice(1)} must be above zero.`;
  return null;
}

/**
 * Checks the ticket's values. `fields` holds strings as typed: symbol, side, type, qty,
 * time_in_force, limit_price, stop_price, trail_price, trail_percent.
 * Returns {order, errors}: `order` is the POST /v2/orders body (null when there are errors),
 * `errors` maps a field name to a message.
 */
export function validateOrder(fields, { maxQty = DEFAULT_MAX_QTY, symbols = null } = {}) {
  const value = (name) => String(fields[name] ?? "").trim();
  const errors = {};
  const symbol = value("symbol").toUpperCase();
  const side = value("side");
  const type = value("type");
  const tif = value("time_in_force");
  const qty = value("qty");

  if (!symbol) errors.symbol = "Choose a symbol.";
  else if (symbols && !symbols.has(symbol)) errors.symbol = `${symbol} is not a listed symbol.`;
  if (side !== "buy" && side !== "sell") errors.side = "Choose buy or sell.";
  if (!ORDER_TYPES.includes(type)) errors.type = "Choose an order type.";
  if (!TIME_IN_FORCE.includes(tif)) errors.time_in_force = "Choose how long the order stays open.";
  if (!qty) errors.qty = "Enter a quantity.";
  else if (!QTY_PATTERN.test(qty)) errors.qty = "Quantity must be a number of shares with at most 9 decimals.";
  else if (Number(qty) <= 0 || Number(qty) > maxQty) errors.qty = `Quantity must be above 0 and at most ${maxQty.toLocaleString("en-US")}.`;
  else if (qty.includes(".") && Number(qty) % 1 !== 0 && (!FRACTIONAL_TYPES.includes(type) || tif !== "day")) {
    errors.qty = "Fractional quantities are for market and limit day orders.";
  }

  const order = { symbol, side, type, qty, time_in_force: tif };
  if (type === "limit" || type === "stop_limit") {
    const problem = priceError(value("limit_price"), "limit price");
    if (problem) errors.limit_price = problem;
    else order.limit_price = value("limit_price");
  }
  if (type === "stop" || type === "stop_limit") {
    const problem = priceError(value("stop_price"), "stop price");
    if (problem) errors.stop_price = problem;
    else order.stop_price = value("stop_price");
  }
  if (type === "trailing_stop") {
    const trailPrice = value("trail_price");
    const trailPercent = value("trail_percent");
    if (trailPrice && trailPercent) {
      errors.trail_price = "Give a trail price or a trail percent, not both.";
    } else if (!trailPrice && !trailPercent) {
      errors.trail_price = "Give a trail price or a trail percent.";
    } else if (trailPrice) {
      const problem = priceError(trailPrice, "trail price");
      if (problem) errors.trail_price = problem;
      else order.trail_price = trailPrice;
    } else {
      const problem = priceError(trailPercent, "trail percent");
      if (problem) errors.trail_percent = problem;
      else if (Number(trailPercent) >= 100) errors.trail_percent = "Trail percent must be below 100.";
      else order.trail_percent = trailPercent;
    }
    if (tif && tif !== "day" && tif !== "gtc" && !errors.time_in_force) {
      errors.time_in_force = "Trailing stop orders last a day or until canceled (day or gtc).";
    }
  }
  const ok = Object.keys(errors).length === 0;
  return { order: ok ? order : null, errors };
}

/** Which price inputs a type shows. */
export function fieldsForType(type) {
  return {
    limit_price: type === "limit" || type === "stop_limit",
    stop_price: type === "stop" || type === "stop_limit",
    trail: type === "trailing_stop",
  };
}

/** The estimated value of an order: qty times its limit price, else the quote it would take. */
export function estimateValue({ side, type, qty, limit_price: limitPrice }, row) {
  const shares = toNumber(qty);
  if (!shares) return null;
  let price = null;
  if ((type === "limit" || type === "stop_limit") && toNumber(limitPrice)) price = toNumber(limitPrice);
  else if (row) price = side === "sell" ? row.bid ?? row.last : row.ask ?? row.last;
  return price === null ? null : shares * price;
}

const FIELD_NAMES = ["symbol", "side", "type", "qty", "time_in_force", "limit_price", "stop_price", "trail_price", "trail_percent"];

/** The ticket form (server-rendered markup in templates/dashboard.html, so its hooks are stable). */
export class OrderTicket {
  constructor({ form, api, store, onPlaced, announce, onSymbol = () => {} }) {
    this.form = form;
    this.api = api;
    this.store = store;
    this.onPlaced = onPlaced;
    this.announce = announce;
    this.status = form.querySelector("#order-ticket-status");
    this.error = form.querySelector("#order-ticket-error");
    this.estimate = form.querySelector("#order-ticket-estimate");
    this.submit = form.querySelector("button[type=submit]");
    this.symbolRow = null;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.place();
    });
    form.addEventListener("input", () => this.#refresh());
    form.addEventListener("change", (event) => {
      if (event.target.name === "type") this.#showFields();
      // A symbol typed into the ticket charts it too (when it is listed).
      if (event.target.name === "symbol") onSymbol(event.target.value.trim().toUpperCase());
      this.#refresh();
    });
    this.#showFields();
  }

  values() {
    const data = new FormData(this.form);
    const values = {};
    for (const name of FIELD_NAMES) values[name] = data.get(name) ?? "";
    return values;
  }

  setSymbol(symbol) {
    const input = this.form.elements.namedItem("symbol");
    if (input && input.value !== symbol) {
      input.value = symbol;
      this.#clearError("symbol");
      this.#refresh();
    }
  }

  /** Called per store flush with the selected symbol's row, for the estimate and quote line. */
  setQuote(row) {
    if (row === this.symbolRow) return;
    this.symbolRow = row;
    this.#refresh();
  }

  #showFields() {
    const shown = fieldsForType(this.form.elements.namedItem("type").value);
    for (const element of this.form.querySelectorAll("[data-show-for]")) {
      const visible = Boolean(shown[element.dataset.showFor]);
      element.hidden = !visible;
      for (const input of element.querySelectorAll("input")) input.disabled = !visible;
    }
  }

  #refresh() {
    if (!this.estimate) return;
    const values = this.values();
    const row = this.symbolRow && this.symbolRow.symbol === values.symbol.trim().toUpperCase() ? this.symbolRow : null;
    const value = estimateValue(values, row);
    const text = value === null ? "" : `Estimated ${values.side === "sell" ? "proceeds" : "cost"}: $${formatMoney(value)}`;
    if (this.estimate.textContent !== text) this.estimate.textContent = text;
  }

  #clearError(name) {
    const input = this.form.elements.namedItem(name);
    const message = this.form.querySelector(`[data-error-for="${name}"]`);
    if (message) message.textContent = "";
    if (input && input.removeAttribute) input.removeAttribute("aria-invalid");
  }

  showErrors(errors) {
    let first = null;
    for (const name of FIELD_NAMES) {
      const message = this.form.querySelector(`[data-error-for="${name}"]`);
      const input = this.form.elements.namedItem(name);
      const text = errors[name] || "";
      if (message) message.textContent = text;
      if (input && input.setAttribute) {
        if (text) input.setAttribute("aria-invalid", "true");
        else input.removeAttribute("aria-invalid");
      }
      if (text && !first) first = input;
    }
    if (first && first.focus) first.focus();
  }

  async place() {
    const state = this.store.state;
    const symbols = state.market instanceof Map && state.market.size ? new Set(state.market.keys()) : null;
    const { order, errors } = validateOrder(this.values(), { symbols });
    this.showErrors(errors);
    this.error.textContent = "";
    this.status.textContent = "";
    if (!order) return;
    this.submit.disabled = true;
    this.form.setAttribute("aria-busy", "true");
    try {
      const placed = await this.api.post("/v2/orders", order);
      const what = `${placed.side} ${placed.qty} ${placed.symbol} ${placed.type.replace("_", " ")}`;
      this.status.textContent = `Order placed: ${what} (${placed.status}).`;
      this.announce(`Order placed: ${what}, ${placed.status}.`);
      this.onPlaced(placed);
    } catch (error) {
      this.error.textContent = errorMessage(error);
    } finally {
      this.submit.disabled = false;
      this.form.removeAttribute("aria-busy");
    }
  }
}
