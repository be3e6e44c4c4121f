"""Exact money and price units (docs/architecture.md, Units of money and quantities): conversions,
rounding and what is refused."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

import pytest
from hypothesis import given, strategies as st

from trading.units import (
    PRICE_SCALE,
    QTY_SCALE,
    UnitError,
    cents_to_str,
    divide_half_even,
    dollars_to_cents,
    holding_value_units,
    price_increment_valid,
    price_to_units,
    qty_for_value,
    qty_to_str,
    qty_to_units,
    ratio_to_str,
    round_half_even,
    to_decimal,
    to_integer,
    trade_value_cents,
    units_to_decimal,
    units_to_float,
    units_to_str,
)

# Up to a trillion dollars: far beyond any price or balance, well inside float's exact range.
price_units = st.integers(min_value=-(10**16), max_value=10**16)
cents = st.integers(min_value=-(10**14), max_value=10**14)


# --- round trips -------------------------------------------------------------------------------


@given(price_units)
def test_price_units_round_trip_through_the_wire_string(units: int) -> None:
    text = units_to_str(units)
    assert text is not None
    assert price_to_units(text) == units
    # Alpaca's shape: a plain decimal, never an exponent, at least cents.
    assert "e" not in text.lower()
    assert len(text.partition(".")[2]) in (2, 3, 4)


@given(price_units)
def test_price_units_round_trip_through_decimal(units: int) -> None:
    assert price_to_units(units_to_decimal(units)) == units


@given(st.integers(min_value=-(10**14), max_value=10**14))
def test_price_units_round_trip_through_json_floats(units: int) -> None:
    # alpaca-py sends numbers as floats; any price with at most 4 decimals survives that trip.
    as_float = units_to_float(units)
    assert as_float is not None
    assert price_to_units(as_float) == units


@given(cents)
def test_cents_round_trip(amount: int) -> None:
    text = cents_to_str(amount)
    assert text is not None
    assert dollars_to_cents(text) == amount
    assert len(text.partition(".")[2]) == 2


@pytest.mark.parametrize(
    ("value", "units"),
    [
        ("187.25", 1_872_500),
        (187.25, 1_872_500),
        (187, 1_870_000),
        ("0.0001", 1),
        (" 12.5 ", 125_000),
        ("1E+2", 1_000_000),
        (Decimal("99.9999"), 999_999),
        ("-3.50", -35_000),
    ],
)
def test_price_to_units_accepts_alpaca_inputs(value: object, units: int) -> None:
    assert price_to_units(value) == units


@pytest.mark.parametrize(
    ("units", "text"),
    [
        (1_872_500, "187.25"),
        (1_870_000, "187.00"),
        (1_872_510, "187.251"),
        (1_872_512, "187.2512"),
        (1, "0.0001"),
        (0, "0.00"),
        (-35_000, "-3.50"),
        (None, None),
    ],
)
def test_units_to_str(units: int | None, text: str | None) -> None:
    assert units_to_str(units) == text


def test_cents_to_str_and_none() -> None:
    assert cents_to_str(1) == "0.01"
    assert cents_to_str(-12_345) == "-123.45"
    assert cents_to_str(None) is None
    assert units_to_float(None) is None


# --- rejection -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1.00001", "0.00005", 0.00001, 1.23456, Decimal("187.123456")])
def test_more_than_four_decimals_is_refused(value: object) -> None:
    with pytest.raises(UnitError, match="more than 4 decimal places"):
        price_to_units(value, field="limit_price")


@pytest.mark.parametrize("value", ["1.001", "0.005", 10.125])
def test_more_than_two_decimals_in_an_amount_is_refused(value: object) -> None:
    with pytest.raises(UnitError, match="more than 2 decimal places"):
        dollars_to_cents(value)


@pytest.mark.parametrize(
    "value",
    [
        float("nan"),
        float("inf"),
        float("-inf"),
        "NaN",
        "nan",
        "sNaN",
        "Infinity",
        "-inf",
        Decimal("NaN"),
        Decimal("Infinity"),
    ],
)
def test_non_finite_numbers_are_refused(value: object) -> None:
    with pytest.raises(UnitError, match="finite"):
        price_to_units(value)
    with pytest.raises(UnitError, match="finite"):
        dollars_to_cents(value)


@pytest.mark.parametrize("value", [True, False, None, "", "abc", "1,5", "1.2.3", [], {}, object()])
def test_non_numbers_and_bools_are_refused(value: object) -> None:
    # bool is an int subclass: True would otherwise be accepted as $1.
    with pytest.raises(UnitError, match="must be a number"):
        price_to_units(value, field="stop_price")
    with pytest.raises(UnitError, match="must be a number"):
        dollars_to_cents(value)


def test_unit_error_is_a_value_error_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"^limit_price must be a number$"):
        price_to_units(True, field="limit_price")


# --- rounding ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "qty", "value"),
    [
        (1_000_000, 1, 10_000),  # $100 x 1
        (1_000_100, 10, 100_010),  # $100.01 x 10
        (50, 1, 0),  # 0.5 cent -> 0 (even)
        (150, 1, 2),  # 1.5 cents -> 2 (even)
        (250, 1, 2),  # 2.5 cents -> 2 (even)
        (350, 1, 4),  # 3.5 cents -> 4 (even)
        (149, 1, 1),
        (151, 1, 2),
        (12_345, 3, 370),  # 370.35 cents
        (33_335, 3, 1_000),  # 1000.05 -> 1000
        (1, 50, 0),  # 0.5 -> 0
        (1, 150, 2),  # 1.5 -> 2
        (0, 100, 0),
    ],
)
def test_trade_value_cents_rounds_half_even(price: int, qty: int, value: int) -> None:
    """Whole shares (``qty`` here) x price, in quantity units as the function takes them."""
    assert trade_value_cents(price_units=price, qty=qty * QTY_SCALE) == value


@pytest.mark.parametrize(
    ("price", "qty", "value"),
    [
        (1_000_000, QTY_SCALE // 2, 5_000),  # $100 x 0.5
        (1_000_100, 1, 0),  # one unit (1/10^9 share) of a $100.01 share
        (1_000_000, 5_000_000, 50),  # $100 x 0.005 = 50 cents
        (1_000_000, 15_000_000, 150),
        (100, 5 * QTY_SCALE // 10, 0),  # 0.5 cent -> 0 (even)
        (100, 15 * QTY_SCALE // 10, 2),  # 1.5 cents -> 2 (even)
    ],
)
def test_trade_value_cents_of_fractions(price: int, qty: int, value: int) -> None:
    assert trade_value_cents(price_units=price, qty=qty) == value


@given(price=st.integers(min_value=0, max_value=10**10), qty=st.integers(min_value=0, max_value=10**16))
def test_trade_value_cents_is_exact_half_even(price: int, qty: int) -> None:
    exact = Fraction(price * qty, PRICE_SCALE // 100 * QTY_SCALE)
    # round() on a Fraction rounds half to even, with no float anywhere.
    assert trade_value_cents(price_units=price, qty=qty) == round(exact)
    assert holding_value_units(price_units=price, qty=qty) == round(Fraction(price * qty, QTY_SCALE))


@given(price=st.integers(min_value=1, max_value=10**9), qty=st.integers(min_value=1, max_value=10**15))
def test_trade_value_is_within_half_a_cent(price: int, qty: int) -> None:
    value = trade_value_cents(price_units=price, qty=qty)
    assert abs(Fraction(value) - Fraction(price * qty, 100 * QTY_SCALE)) <= Fraction(1, 2)


@given(numerator=st.integers(-(10**30), 10**30), denominator=st.integers(1, 10**20))
def test_divide_half_even_is_exact(numerator: int, denominator: int) -> None:
    assert divide_half_even(numerator, denominator) == round(Fraction(numerator, denominator))


@given(cents=st.integers(100, 10**12), price=st.integers(1, 10**9))
def test_a_notional_buys_the_most_units_it_pays_for(cents: int, price: int) -> None:
    """Sized down: the value never exceeds the notional, and one more unit would."""
    qty = qty_for_value(cents=cents, price_units=price)
    assert Fraction(price * qty, 100 * QTY_SCALE) <= cents < Fraction(price * (qty + 1), 100 * QTY_SCALE)


# --- quantities ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "units"),
    [("1", QTY_SCALE), (10, 10 * QTY_SCALE), ("0.5", QTY_SCALE // 2), (1.5, 1_500_000_000),
     ("0.000000001", 1), ("123.456789012", 123_456_789_012), ("1e-9", 1), (" 2.50 ", 2_500_000_000),
     (Decimal("3.0"), 3 * QTY_SCALE)],
)  # fmt: skip
def test_qty_to_units_reads_up_to_nine_decimals(value: object, units: int) -> None:
    assert qty_to_units(value) == units


@pytest.mark.parametrize(
    "value", ["0.0000000001", "1.0000000005", 1e-10, "\u0663", "1\u0665", "\uff11.5", "1_0"]
)
def test_qty_to_units_refuses_tenth_decimals_and_other_digits(value: object) -> None:
    """Decimal("\u0663") is 3 (U+0663 ARABIC-INDIC DIGIT THREE): the one parser refuses digits of other scripts in quantities too."""
    with pytest.raises(UnitError):
        qty_to_units(value)


@pytest.mark.parametrize(
    ("units", "text"),
    [(QTY_SCALE, "1"), (10 * QTY_SCALE, "10"), (QTY_SCALE // 2, "0.5"), (1, "0.000000001"),
     (-1_250_000_000, "-1.25"), (0, "0"), (123_456_789_012, "123.456789012"), (None, None)],
)  # fmt: skip
def test_qty_to_str(units: int | None, text: str | None) -> None:
    assert qty_to_str(units) == text


@given(units=st.integers(-(10**18), 10**18))
def test_qty_round_trips_through_its_string(units: int) -> None:
    text = qty_to_str(units)
    assert text is not None and "e" not in text.lower()
    assert qty_to_units(text) == units


@pytest.mark.parametrize(
    ("value", "rounded"),
    [("0.5", 0), ("1.5", 2), ("2.5", 2), ("-0.5", 0), ("-1.5", -2), ("2.4999", 2), ("2.5001", 3)],
)
def test_round_half_even(value: str, rounded: int) -> None:
    assert round_half_even(Decimal(value)) == rounded


# --- ASCII digits only ---------------------------------------------------------------------------

# Decimal digits of every script but ASCII's (Arabic-Indic, Devanagari, fullwidth, mathematical...).
other_digits = st.characters(categories=["Nd"]).filter(lambda char: not char.isascii())


@given(
    text=st.lists(st.one_of(other_digits, st.sampled_from("0123456789")), min_size=1, max_size=8)
    .filter(lambda chars: any(not char.isascii() for char in chars))
    .map("".join),
    decoration=st.sampled_from(["{}", "-{}", "{}.5", "1.{}", "{}e2", " {} "]),
)
def test_property_digits_of_other_scripts_are_refused(text: str, decoration: str) -> None:
    """Python's Decimal() and int() read Arabic-Indic and fullwidth digits as numbers; the API's numbers must not."""
    value = decoration.format(text)
    for parse in (to_decimal, to_integer):
        with pytest.raises(UnitError, match="digits 0-9"):
            parse(value, field="qty")
    with pytest.raises(UnitError):
        price_to_units(value, field="limit_price")


@pytest.mark.parametrize(
    "value", ["1_000", "\u00a010", "10\u2003", "0x10", "1e1000", "1e18", "-1e19", 10**18]
)
def test_underscores_unicode_spaces_and_huge_numbers_are_refused(value: object) -> None:
    with pytest.raises(UnitError):
        to_decimal(value, field="qty")


@pytest.mark.parametrize(
    ("value", "parsed"),
    [("10", Decimal(10)), (" 10\t", Decimal(10)), ("+1.50", Decimal("1.50")), (".5", Decimal("0.5")), ("2.", Decimal(2)),
     ("1e3", Decimal(1000)), ("1E-2", Decimal("0.01")), (7, Decimal(7)), (0.1, Decimal("0.1")), (1e-7, Decimal("1e-7"))],
)  # fmt: skip
def test_ascii_numbers_are_read(value: object, parsed: Decimal) -> None:
    assert to_decimal(value, field="qty") == parsed


@pytest.mark.parametrize(("value", "parsed"), [("10", 10), ("-3", -3), (" 42 ", 42), (500, 500)])
def test_ascii_integers_are_read(value: object, parsed: int) -> None:
    assert to_integer(value, field="limit") == parsed


@pytest.mark.parametrize("value", ["1.0", "1e3", 1.0, True, None, "", "1" * 21])
def test_integers_are_whole_numbers_written_as_such(value: object) -> None:
    with pytest.raises(UnitError):
        to_integer(value, field="limit")


# --- SEC Rule 612 price increments (the order validation Alpaca applies) -------------------------


@given(st.integers(min_value=1, max_value=10**12))
def test_price_increment_is_a_cent_from_one_dollar_and_a_ten_thousandth_below(units: int) -> None:
    valid = price_increment_valid(units)
    price = Decimal(units) / 10_000
    if price >= 1:
        assert valid == (price == price.quantize(Decimal("0.01")))
    else:
        assert valid  # every price unit below $1 is a 4-decimal price


@pytest.mark.parametrize(
    ("units", "valid"),
    [(10_000, True), (9_999, True), (10_001, False), (1_234_500, True), (1_234_560, False), (1, True)],
)
def test_price_increment_edges(units: int, valid: bool) -> None:
    assert price_increment_valid(units) is valid


# --- the answers' strings, in integers ---------------------------------------------------------


def _units_to_str_by_decimal(units: int) -> str:
    """What units_to_str wrote when it divided a Decimal (the Alpaca shape's reference)."""
    text = f"{Decimal(units) / PRICE_SCALE:f}"
    if "." in text:
        whole, _, fraction = text.rstrip("0").partition(".")
        return f"{whole}.{fraction.ljust(2, '0')}"
    return f"{text}.00"


@given(st.one_of(price_units, st.integers(min_value=-(10**20), max_value=10**20), st.integers(-200, 200)))
def test_units_and_cents_are_written_as_their_decimal_quotients_are(units: int) -> None:
    """The integer formatting answers what formatting the decimal quotient answered, every sign,
    size and trailing zero (decimal's 28 digits hold every figure drawn here exactly)."""
    assert units_to_str(units) == _units_to_str_by_decimal(units)
    assert cents_to_str(units) == f"{Decimal(units) / 100:.2f}"


def _ratio_by_decimal(numerator: int, denominator: int) -> str:
    """What a position's ratios (plpc, change_today) wrote when they were Decimal quotients."""
    ratio = Decimal(numerator) / Decimal(denominator) if denominator else Decimal(0)
    return f"{ratio.quantize(Decimal('0.000001'), rounding=ROUND_HALF_EVEN):f}"


def _avg_entry_by_decimal(cost_basis: int, qty: int) -> str:
    """What avg_entry_price wrote from a Decimal: 4 places half-even, zeros trimmed to two."""
    value = Decimal(abs(cost_basis)) * QTY_SCALE / abs(qty) / 10_000
    text = f"{value.quantize(Decimal('0.0001'), rounding=ROUND_HALF_EVEN):f}"
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"


@given(
    st.one_of(price_units, st.integers(-10, 10)),
    st.one_of(price_units, st.integers(-10, 10), st.sampled_from([0, 3, 7, 8, 16, 2_000_000])),
)
def test_ratios_are_written_as_their_decimal_quotients_were(numerator: int, denominator: int) -> None:
    """Byte for byte, negative zero and half-way ties included (a denominator dividing 2 x 10^6
    makes ties: 1/8 = 0.125 exactly at the 7th place after scaling)."""
    assert ratio_to_str(numerator, denominator) == _ratio_by_decimal(numerator, denominator)


@pytest.mark.parametrize(
    ("numerator", "denominator", "text"),
    [(0, 5, "0.000000"), (0, -5, "-0.000000"), (-1, 10**9, "-0.000000"), (1, 8_000_000, "0.000000"),
     (3, 8_000_000, "0.000000"), (5, 8_000_000, "0.000001"), (7, 0, "0.000000"), (-2, 3, "-0.666667")],
)  # fmt: skip
def test_ratio_edges(numerator: int, denominator: int, text: str) -> None:
    assert ratio_to_str(numerator, denominator) == text == _ratio_by_decimal(numerator, denominator)


@given(st.integers(-(10**14), 10**14), st.integers(1, 10**15).flatmap(lambda q: st.sampled_from([q, -q])))
def test_avg_entry_price_is_written_as_its_decimal_was(cost_basis: int, qty: int) -> None:
    """PositionValue.avg_entry_units through units_to_str, against the Decimal path it replaced."""
    assert units_to_str(divide_half_even(abs(cost_basis) * QTY_SCALE, abs(qty))) == _avg_entry_by_decimal(
        cost_basis, qty
    )
