// Text shown in cells. Plain ASCII signs and en-US grouping, so the figures read the same for
// every visitor and tests can parse them back.

const grouped = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const money = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });

export const DASH = "\u2014";

export function toNumber(value) {
  if (value === null || value === undefined || value === "") return null;
  const number = typeof value === "number" ? value : Number(value);
  return Number.isFinite(number) ? number : null;
}

/** A price: 2 decimals, 4 below one dollar (prices are stored to 1/10,000). */
export function formatPrice(value) {
  const number = toNumber(value);
  if (number === null) return DASH;
  return number.toFixed(Math.abs(number) < 1 && number !== 0 ? 4 : 2);
}

export function formatSigned(value, digits = 2) {
  const number = toNumber(value);
  if (number === null) return DASH;
  const text = number.toFixed(digits);
  // toFixed keeps a minus on values that round to zero ("-0.00"): that is flat, not down.
  if (Number(text) === 0) return (0).toFixed(digits);
  return number > 0 ? `+${text}` : text;
}

/** A percentage from a percent value (1.5 -> "+1.50%"). */
export function formatPercent(value, digits = 2) {
  const text = formatSigned(value, digits);
  return text === DASH ? DASH : `${text}%`;
}

/** A percentage from a ratio (0.015 -> "+1.50%"). */
export function formatRatio(value, digits = 2) {
  const number = toNumber(value);
  return number === null ? DASH : formatPercent(number * 100, digits);
}

export function formatInteger(value) {
  const number = toNumber(value);
  return number === null ? DASH : grouped.format(number);
}

const quantity = new Intl.NumberFormat("en-US", { maximumFractionDigits: 9 });

/** A share quantity: grouped, with the up to 9 decimals a fractional quantity has ("1,250", "0.5"). */
export function formatQuantity(value) {
  const number = toNumber(value);
  return number === null ? DASH : quantity.format(number);
}

/** An order's size: its quantity, or its dollar amount for a notional order (qty is null). */
export function formatOrderSize(order) {
  if ((order.qty === null || order.qty === undefined) && toNumber(order.notional) !== null) {
    return `$${money.format(toNumber(order.notional))}`;
  }
  return formatQuantity(order.qty);
}

/** A large count in a few characters: 950, 12.3K, 6.37M, 1.2B. */
export function formatCompact(value) {
  const number = toNumber(value);
  if (number === null) return DASH;
  const size = Math.abs(number);
  if (size < 10_000) return grouped.format(number);
  if (size < 1_000_000) return `${(number / 1_000).toFixed(1)}K`;
  if (size < 1_000_000_000) return `${(number / 1_000_000).toFixed(2)}M`;
  return `${(number / 1_000_000_000).toFixed(2)}B`;
}

export function formatMoney(value) {
  const number = toNumber(value);
  return number === null ? DASH : money.format(number);
}

export function formatSignedMoney(value) {
  const number = toNumber(value);
  if (number === null) return DASH;
  const text = money.format(Math.abs(number));
  if (text === "0.00") return text;
  return number > 0 ? `+${text}` : `-${text}`;
}

export function formatTime(iso) {
  if (!iso) return DASH;
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return DASH;
  return date.toLocaleTimeString("en-GB", { hour12: false });
}

export function formatDateTime(iso) {
  if (!iso) return DASH;
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return DASH;
  return `${date.toLocaleDateString("en-CA")} ${date.toLocaleTimeString("en-GB", { hour12: false })}`;
}

/** "up", "down" or "" from the sign of a number. */
export function signOf(value) {
  const number = toNumber(value);
  if (number === null || number === 0) return "";
  return number > 0 ? "up" : "down";
}

/** "up", "down" or "" from a signed text as shown ("+1.20%", "-3.00", "0.00"). */
export function signOfText(text) {
  if (text.startsWith("+")) return "up";
  if (text.startsWith("-")) return "down";
  return "";
}
