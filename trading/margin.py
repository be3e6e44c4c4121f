"""The margin rules of short selling (docs/architecture.md, Short selling).

Longs are paid in full (a cash account's buying power); only shorts use margin:

- **Initial margin (Reg T, 150 %)**: a short's proceeds go to cash, and 150 % of the short's
  entry value (the proceeds plus half again) is held from buying power while it is open, so
  opening a short of $1,000 costs $500 of buying power.
- **An opening short sell** is checked as Alpaca checks it: at the higher of its limit and 3 %
  above the ask, and a resting one holds half of that value (its 50 % beyond the proceeds).
- **Maintenance (30 %)**: when equity falls below 30 % of the shorts' market value, the market
  buys the shorts back (``trading.services.account_margin_call``).

Money is integer cents, prices 1/10,000 dollars, quantities 1/10^9 share (trading/units.py).
"""

from __future__ import annotations

from trading.units import trade_value_cents

INITIAL_MARGIN_PERCENT = 150
MAINTENANCE_MARGIN_PERCENT = 30
# Alpaca values an opening short sell at 3 % above the ask, or its limit if that is higher.
SHORT_ESTIMATE_MARKUP_PERCENT = 103


def _ceil_percent(value: int, percent: int) -> int:
    return -(-value * percent // 100)


def short_hold_cents(*, qty: int, cost_basis_cents: int) -> int:
    """What an open short holds from buying power: 150 % of its entry value (a long: nothing)."""
    if qty >= 0:
        return 0
    return _ceil_percent(abs(cost_basis_cents), INITIAL_MARGIN_PERCENT)


def short_open_estimate_units(*, ask_units: int, limit_units: int | None) -> int:
    """The per-share price an opening short sell is valued at: the higher of its limit and 3 %
    above the ask."""
    marked_up = _ceil_percent(ask_units, SHORT_ESTIMATE_MARKUP_PERCENT)
    return max(marked_up, limit_units or 0)


def short_open_reserve_cents(*, ask_units: int, limit_units: int | None, qty: int) -> int:
    """What a resting opening short sell holds: the 50 % of its estimated value beyond the
    proceeds it will bring."""
    value = trade_value_cents(
        price_units=short_open_estimate_units(ask_units=ask_units, limit_units=limit_units), qty=qty
    )
    return _ceil_percent(value, INITIAL_MARGIN_PERCENT - 100)


def maintenance_requirement_units(*, short_market_value_units: int) -> int:
    """The equity the shorts need (in price units): 30 % of their market value."""
    return _ceil_percent(abs(short_market_value_units), MAINTENANCE_MARGIN_PERCENT)


def below_maintenance(*, equity_units: int, short_market_value_units: int) -> bool:
    return short_market_value_units != 0 and equity_units < maintenance_requirement_units(
        short_market_value_units=short_market_value_units
    )
