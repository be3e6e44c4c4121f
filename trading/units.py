"""Exact money and price units, and their conversion at the API edge.

SQLite has no decimal type, so amounts are integer cents and prices integer units of 1/10,000 of
a dollar on every backend. Alpaca clients send decimal strings or numbers; answers are strings.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

PRICE_SCALE = 10_000  # price units per dollar
CENTS_PER_DOLLAR = 100
UNITS_PER_CENT = PRICE_SCALE // CENTS_PER_DOLLAR


class UnitError(ValueError):
    """A value that cannot be represented exactly in our units."""


def to_decimal(value: object, *, field: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise UnitError(f"{field} must be a number")
    if isinstance(value, float):
        value = repr(value)
    try:
        result = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise UnitError(f"{field} must be a number") from None
    if not result.is_finite():
        raise UnitError(f"{field} must be a finite number")
    return result


def price_to_units(value: object, *, field: str = "price") -> int:
    """A dollar price ('187.25', 187.25) to integer units; more than 4 decimals is an error."""
    amount = to_decimal(value, field=field) * PRICE_SCALE
    if amount != amount.to_integral_value():
        raise UnitError(f"{field} has more than 4 decimal places")
    return int(amount)


def dollars_to_cents(value: object, *, field: str = "amount") -> int:
    amount = to_decimal(value, field=field) * CENTS_PER_DOLLAR
    if amount != amount.to_integral_value():
        raise UnitError(f"{field} has more than 2 decimal places")
    return int(amount)


def units_to_decimal(units: int) -> Decimal:
    return Decimal(units) / PRICE_SCALE


def units_to_str(units: int | None) -> str | None:
    """Price units as Alpaca's decimal string: no exponent, trailing zeros kept to cents."""
    if units is None:
        return None
    return _format(Decimal(units) / PRICE_SCALE)


def units_to_float(units: int | None) -> float | None:
    return None if units is None else units / PRICE_SCALE


def cents_to_str(cents: int | None) -> str | None:
    if cents is None:
        return None
    return f"{Decimal(cents) / CENTS_PER_DOLLAR:.2f}"


def _format(value: Decimal) -> str:
    text = f"{value:f}"
    if "." in text:
        text = text.rstrip("0")
        whole, _, frac = text.partition(".")
        text = f"{whole}.{frac.ljust(2, '0')}"
    else:
        text = f"{text}.00"
    return text


def trade_value_cents(*, price_units: int, qty: int) -> int:
    """Price x quantity in cents, rounded half-even (DESIGN.md 5a)."""
    exact = Decimal(price_units) * qty / UNITS_PER_CENT
    return int(exact.to_integral_value(rounding=ROUND_HALF_EVEN))


def round_half_even(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_HALF_EVEN))
