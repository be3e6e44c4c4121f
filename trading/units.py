"""Exact money and price units, and their conversion at the API edge.

SQLite has no decimal type, so amounts are integer cents, prices integer units of 1/10,000 of
a dollar and quantities integer units of 1/1,000,000,000 share (Alpaca takes 9 decimals) on every
backend. Alpaca clients send decimal strings or numbers; answers are strings.

``to_decimal`` and ``to_integer`` are the one parser of every number a client sends (quantities,
prices, percentages, trail values, limits and page sizes). They take ASCII digits only:
``Decimal()`` and ``int()`` also take the digits of other scripts (U+0663 ARABIC-INDIC DIGIT
THREE, U+FF11 FULLWIDTH DIGIT ONE) and underscores, which no client means as a number and which
would let a display show one value while the server reads another.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Decimal

PRICE_SCALE = 10_000  # price units per dollar
CENTS_PER_DOLLAR = 100
UNITS_PER_CENT = PRICE_SCALE // CENTS_PER_DOLLAR
_PRICE_DIGITS = len(str(PRICE_SCALE)) - 1  # a price unit's decimal places
QTY_SCALE = 1_000_000_000  # quantity units per share


class UnitError(ValueError):
    """A value that cannot be represented exactly in our units."""


# A JSON number's grammar (leading zeros and a bare "." tolerated), in ASCII; the exponent is
# bounded so no arithmetic on the value can leave the decimal context's range.
_DECIMAL_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?", re.ASCII)
_INTEGER_RE = re.compile(r"[+-]?[0-9]+", re.ASCII)
# Whitespace a client may leave around a number in a string; Unicode's other spaces are not it.
_ASCII_SPACE = " \t\r\n"
_NON_FINITE = {"nan", "snan", "inf", "infinity"}
# No quantity, price or percentage comes near this; past it a value is refused before any use.
MAGNITUDE_MAX = Decimal(10) ** 18


def _number_text(value: object, *, field: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise UnitError(f"{field} must be a number")
    if isinstance(value, float):
        return repr(value)  # nan and inf fail the grammar below
    return str(value).strip(_ASCII_SPACE)


def to_decimal(value: object, *, field: str) -> Decimal:
    """A number sent as a JSON number or a decimal string (ASCII digits, e.g. "187.25", "1e3")."""
    text = _number_text(value, field=field)
    if _DECIMAL_RE.fullmatch(text) is None:
        if text.lstrip("+-").lower() in _NON_FINITE:
            raise UnitError(f"{field} must be a finite number")
        raise UnitError(f"{field} must be a number written with the digits 0-9")
    result = Decimal(text)
    if abs(result) >= MAGNITUDE_MAX:
        raise UnitError(f"{field} is too large")
    return result


def to_integer(value: object, *, field: str) -> int:
    """A whole number sent as a JSON integer or a string of ASCII digits (e.g. a page size)."""
    text = _number_text(value, field=field)
    if isinstance(value, float) or _INTEGER_RE.fullmatch(text) is None or len(text) > 20:
        raise UnitError(f"{field} must be a whole number written with the digits 0-9")
    return int(text)


def price_to_units(value: object, *, field: str = "price") -> int:
    """A dollar price ('187.25', 187.25) to integer units; more than 4 decimals is an error."""
    amount = to_decimal(value, field=field) * PRICE_SCALE
    if amount != amount.to_integral_value():
        raise UnitError(f"{field} has more than 4 decimal places")
    return int(amount)


def price_increment_valid(units: int) -> bool:
    """SEC Rule 612, as Alpaca applies it to limit and stop prices: whole cents from $1.00 up,
    at most 4 decimals (any whole unit) below."""
    return units < PRICE_SCALE or units % UNITS_PER_CENT == 0


def dollars_to_cents(value: object, *, field: str = "amount") -> int:
    amount = to_decimal(value, field=field) * CENTS_PER_DOLLAR
    if amount != amount.to_integral_value():
        raise UnitError(f"{field} has more than 2 decimal places")
    return int(amount)


def qty_to_units(value: object, *, field: str = "qty") -> int:
    """A share quantity ('1.5', 2, '0.000000001') to integer units of 1/10^9 share; more than 9
    decimals is an error, not a rounding."""
    amount = to_decimal(value, field=field) * QTY_SCALE
    if amount != amount.to_integral_value():
        raise UnitError(f"{field} has more than 9 decimal places")
    return int(amount)


def shares_to_units(shares: int) -> int:
    """Whole shares (a setting, a tick's size) in quantity units."""
    return shares * QTY_SCALE


def qty_to_str(qty: int | None) -> str | None:
    """Quantity units as Alpaca writes a quantity: '10', '0.5', '-1.25' (no exponent, no
    trailing zeros)."""
    if qty is None:
        return None
    sign = "-" if qty < 0 else ""
    whole, fraction = divmod(abs(qty), QTY_SCALE)
    if not fraction:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{f'{fraction:09d}'.rstrip('0')}"


def qty_to_decimal(qty: int) -> Decimal:
    return Decimal(qty) / QTY_SCALE


def units_to_decimal(units: int) -> Decimal:
    return Decimal(units) / PRICE_SCALE


def units_to_str(units: int | None) -> str | None:
    """Price units as Alpaca's decimal string: no exponent, trailing zeros kept to cents."""
    if units is None:
        return None
    # In integers, as the decimal quotient units / PRICE_SCALE is written (no exponent, trailing
    # zeros trimmed to cents) but without building a Decimal: every price and value an answer
    # shows goes through here, several per position or order.
    whole, fraction = divmod(-units if units < 0 else units, PRICE_SCALE)
    sign = "-" if units < 0 else ""
    if fraction % UNITS_PER_CENT:
        return f"{sign}{whole}.{f'{fraction:0{_PRICE_DIGITS}d}'.rstrip('0')}"
    return f"{sign}{whole}.{fraction // UNITS_PER_CENT:02d}"


def units_to_float(units: int | None) -> float | None:
    return None if units is None else units / PRICE_SCALE


def cents_to_str(cents: int | None) -> str | None:
    if cents is None:
        return None
    # In integers, as f"{Decimal(cents) / CENTS_PER_DOLLAR:.2f}" writes it (see units_to_str).
    whole, fraction = divmod(-cents if cents < 0 else cents, CENTS_PER_DOLLAR)
    return f"{'-' if cents < 0 else ''}{whole}.{fraction:02d}"


def divide_half_even(numerator: int, denominator: int) -> int:
    """An exact integer quotient rounded half-even, at any size (no float, no decimal context)."""
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2):
        quotient += 1
    return quotient


def trade_value_cents(*, price_units: int, qty: int) -> int:
    """Price units x quantity units in cents, rounded half-even (docs/architecture.md, Units of
    money and quantities)."""
    return divide_half_even(price_units * qty, UNITS_PER_CENT * QTY_SCALE)


# A ratio's decimal places as Alpaca writes one (unrealized_plpc, change_today).
RATIO_SCALE = 1_000_000


def ratio_to_str(numerator: int, denominator: int) -> str:
    """``numerator / denominator`` as Alpaca writes a ratio: six decimals rounded half-even,
    0 for a zero denominator.

    In integers, byte for byte as the Decimal quotient quantized half-even was written (negative
    zero included: a negative ratio that rounds to nothing is "-0.000000"): each position's
    answer writes three ratios, and the Decimal divisions, quantizations and formatting cost more
    than the rest of its valuation. The Decimal quotient was rounded to 28 digits first, which
    can move a tie only for numerators past 10**21, far beyond any value here.
    """
    if not denominator:
        return "0.000000"
    negative = (numerator < 0) != (denominator < 0)
    whole, fraction = divmod(divide_half_even(abs(numerator) * RATIO_SCALE, abs(denominator)), RATIO_SCALE)
    return f"{'-' if negative else ''}{whole}.{fraction:06d}"


def holding_value_units(*, price_units: int, qty: int) -> int:
    """Price units x quantity units in price units (a position's market value), half-even."""
    return divide_half_even(price_units * qty, QTY_SCALE)


def qty_for_value(*, cents: int, price_units: int) -> int:
    """The most quantity units that ``cents`` buys at ``price_units``: a notional order's size,
    rounded down so the order never spends more than its notional."""
    return cents * UNITS_PER_CENT * QTY_SCALE // price_units


def round_half_even(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_HALF_EVEN))
