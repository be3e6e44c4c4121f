"""Short selling as Alpaca's paper accounts do it: opening and covering shorts, their initial
margin held from buying power, equity with the short market value, the refusals in Alpaca's
words, the position and account JSON, and the maintenance margin call (trading/margin.py).

The asset trades at $100.00, bid $99.99, ask $100.01; accounts start with $100,000 and no
commission, so a short of 10 shares brings 99,990 cents and holds 149,985 (150 %).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from pytest_django.fixtures import Settings

from tests.builders import add_tick, shares
from tests.trading.api_support import assert_alpaca_error, key_client, post_order
from tests.trading.test_services import assert_books_balance, fresh, place, position
from trading import selectors, services
from trading.errors import Forbidden
from trading.models import Account, Asset, Order
from trading.units import UNITS_PER_CENT

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_commission")]

START = 10_000_000
NOW = dt.datetime(2025, 6, 2, 15, 0, tzinfo=dt.UTC)

MakeAccount = Callable[..., Account]
MakeAsset = Callable[..., Asset]


@pytest.fixture
def shorting(asset: Asset, account: Account) -> Account:
    return services.account_configure(account_id=account.pk, no_shorting=False)


# --- margin and equity ------------------------------------------------------------------------


def test_a_short_sale_credits_its_proceeds_and_holds_150_percent(shorting: Account) -> None:
    order = place(shorting, qty=10, side="sell")
    assert (order.status, order.position_intent) == ("filled", "sell_to_open")
    account = assert_books_balance(shorting)
    assert (account.cash_cents, account.reserved_cents) == (START + 99_990, 149_985)
    # Opening the short cost half its value in buying power.
    assert account.buying_power_cents == START - 49_995
    pos = position(shorting)
    assert pos is not None and (pos.qty, pos.cost_basis_cents) == (shares(-10), -99_990)

    summary = selectors.account_summary(account=account)
    assert summary.short_market_value == -100_000 * UNITS_PER_CENT  # marked at the last trade
    assert summary.long_market_value == 0
    assert summary.equity == (START + 99_990 - 100_000) * UNITS_PER_CENT
    assert summary.initial_margin == 49_995 * UNITS_PER_CENT
    assert summary.maintenance_margin == 30_000 * UNITS_PER_CENT


def test_covering_gives_the_hold_back_in_proportion_and_realises_the_pl(shorting: Account) -> None:
    place(shorting, qty=10, side="sell")
    add_tick("AAPL", price_units=900_000)  # $90.00: ask $90.01
    cover = place(shorting, qty=4)
    assert (cover.position_intent, cover.filled_avg_price_units) == ("buy_to_close", 900_100)
    account = assert_books_balance(shorting)
    # 6 shares short at 9,999 each: basis -59,994, hold 89,991.
    assert (account.cash_cents, account.reserved_cents) == (START + 99_990 - 36_004, 89_991)
    assert cover.fills.get().realized_pl_cents == 39_996 - 36_004
    place(shorting, qty=6)
    account = assert_books_balance(shorting)
    assert account.reserved_cents == 0
    assert account.cash_cents == START + 99_990 - 36_004 - 54_006


def test_a_resting_short_sale_holds_half_its_value_at_the_higher_of_limit_and_ask_plus_3_percent(
    shorting: Account,
) -> None:
    high = place(shorting, qty=10, side="sell", type="limit", limit_price_units=1_100_000)
    # max($110.00, 103 % of $100.01) x 10 = $1,100.00; half of it is held.
    assert (high.status, high.reserved_cents) == ("new", 55_000)
    low = place(shorting, qty=10, side="sell", type="stop", stop_price_units=900_000)
    # No limit: 103 % of the ask, $103.0103 x 10 -> $1,030.10 (half-even); half of it held.
    assert low.reserved_cents == 51_505
    assert assert_books_balance(shorting).reserved_cents == 55_000 + 51_505
    services.order_cancel(account_id=shorting.pk, order_id=high.pk)
    services.order_cancel(account_id=shorting.pk, order_id=low.pk)
    assert assert_books_balance(shorting).reserved_cents == 0


def test_a_short_beyond_the_margin_is_refused_and_writes_nothing(
    make_account: MakeAccount, asset: Asset
) -> None:
    account = make_account(cash=49_994)  # 10 shares short need 49,995 of buying power
    services.account_configure(account_id=account.pk, no_shorting=False)
    with pytest.raises(Forbidden, match="insufficient buying power"):
        place(account, qty=10, side="sell")
    assert not Order.objects.filter(account=account).exists()
    services.account_grant_cash(account_id=account.pk, amount_cents=1)
    place(account, qty=10, side="sell")
    assert assert_books_balance(account).buying_power_cents == 0


# --- refusals ---------------------------------------------------------------------------------


def test_refusals_in_alpacas_words(make_asset: MakeAsset, shorting: Account, account: Account) -> None:
    make_asset("HARD", shortable=False)
    with pytest.raises(Forbidden, match='asset "HARD" cannot be sold short'):
        place(shorting, symbol="HARD", qty=1, side="sell")
    with pytest.raises(Forbidden, match="fractional"):
        place(shorting, qty="0.5", side="sell", time_in_force="day")
    # A sell larger than the long does not flip it short in one order, nor a buy a short long.
    place(shorting, qty=3)
    with pytest.raises(
        Forbidden, match=r"insufficient qty available for order \(requested: 5, available: 3\)"
    ):
        place(shorting, qty=5, side="sell")
    with pytest.raises(Forbidden, match=r"position intent mismatch\. inferred sell to close"):
        place(shorting, qty=1, side="sell", position_intent="sell_to_open")
    place(shorting, qty=3, side="sell", position_intent="sell_to_close")
    place(shorting, qty=2, side="sell", position_intent="sell_to_open")
    with pytest.raises(
        Forbidden, match=r"insufficient qty available for order \(requested: 3, available: 2\)"
    ):
        place(shorting, qty=3)
    # Opening one side while an order opening the other is open.
    place(shorting, qty=1, side="sell", type="limit", limit_price_units=1_200_000)
    services.position_close(account_id=shorting.pk, symbol="AAPL")
    with pytest.raises(Forbidden, match="cannot open a long buy while a short sell order is open"):
        place(shorting, qty=1)
    services.order_cancel_all(account_id=shorting.pk)
    place(shorting, qty=1, type="limit", limit_price_units=800_000)
    with pytest.raises(Forbidden, match="cannot open a short sell while a long buy order is open"):
        place(shorting, qty=1, side="sell")
    assert_books_balance(shorting)


def test_an_account_without_shorting_sells_only_what_it_holds(
    make_account: MakeAccount, asset: Asset
) -> None:
    account = make_account()
    with pytest.raises(
        Forbidden, match=r"insufficient qty available for order \(requested: 1, available: 0\)"
    ):
        place(account, qty=1, side="sell")


def test_covers_hold_what_they_cover(shorting: Account) -> None:
    place(shorting, qty=5, side="sell")
    resting = place(shorting, qty=3, type="limit", limit_price_units=900_000)
    assert (resting.position_intent, resting.reserved_cents) == ("buy_to_close", 0)
    assert position(shorting).qty_held == shares(3)  # type: ignore[union-attr]
    with pytest.raises(Forbidden, match=r"requested: 3, available: 2"):
        place(shorting, qty=3)
    add_tick("AAPL", price_units=950_000)
    replaced = services.order_replace(account_id=shorting.pk, order_id=resting.pk, qty=shares(2))
    assert position(shorting).qty_held == shares(2)  # type: ignore[union-attr]
    assert replaced.position_intent == "buy_to_close"
    assert_books_balance(shorting)


# --- the maintenance margin call --------------------------------------------------------------


def test_below_30_percent_the_shorts_are_bought_back(make_account: MakeAccount, asset: Asset) -> None:
    account = make_account(cash=60_000)
    services.account_configure(account_id=account.pk, no_shorting=False)
    place(account, qty=10, side="sell")  # cash 159,990; equity at $p is 159,990 - 10p
    # Equity below 30 % of the short's value once 159,990 < 13p, above $123.07.
    add_tick("AAPL", price_units=1_230_000)
    assert services.account_margin_call(account_id=account.pk, now=NOW) == []
    add_tick("AAPL", price_units=1_240_000)
    (cover,) = services.account_margin_call(account_id=account.pk, now=NOW)
    assert cover.client_order_id.startswith(services.MARGIN_CALL_CLIENT_ORDER_PREFIX)
    assert (cover.side, cover.position_intent, cover.qty, cover.status) == (
        "buy",
        "buy_to_close",
        shares(10),
        "filled",
    )
    account = assert_books_balance(account)
    assert (account.cash_cents, account.reserved_cents) == (159_990 - 124_010, 0)
    assert position(account).qty == 0  # type: ignore[union-attr]


def test_a_margin_call_cancels_the_shorts_orders_and_covers_what_the_cash_pays(
    make_account: MakeAccount, asset: Asset
) -> None:
    account = make_account(cash=60_000)
    services.account_configure(account_id=account.pk, no_shorting=False)
    place(account, qty=10, side="sell")
    stop = place(account, qty=4, type="stop", stop_price_units=1_600_000)
    # A gap to $170: each share covered costs 17,001 and gives back 14,998.5 of the hold, and
    # 10,005 of buying power pays for 4 of them (the 5th would leave the account short of cash).
    add_tick("AAPL", price_units=1_700_000)
    (cover,) = services.account_margin_call(account_id=account.pk, now=NOW)
    assert cover.qty == shares(4)
    stop.refresh_from_db()
    assert stop.status == "canceled"
    assert position(account).qty == shares(-6)  # type: ignore[union-attr]
    assert_books_balance(account)


def test_a_cover_racing_the_margin_call_is_refused_rather_than_opening_a_long(
    make_account: MakeAccount, asset: Asset, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = make_account(cash=60_000)
    services.account_configure(account_id=account.pk, no_shorting=False)
    place(account, qty=10, side="sell")
    add_tick("AAPL", price_units=1_240_000)
    real = services._margin_call_cover_qty

    def racing(**kwargs: Any) -> tuple[int, int]:
        sized = real(**kwargs)
        place(account, qty=10)  # the user's own cover lands after the call sized its order
        return sized

    monkeypatch.setattr(services, "_margin_call_cover_qty", racing)
    assert services.account_margin_call(account_id=account.pk, now=NOW) == []
    assert position(account).qty == 0  # type: ignore[union-attr]
    assert not Order.objects.filter(account=account, position_intent="buy_to_open").exists()
    assert_books_balance(account)


def test_a_margin_call_tries_no_order_in_a_halted_or_untradable_short(
    make_account: MakeAccount, asset: Asset, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = make_account(cash=60_000)
    services.account_configure(account_id=account.pk, no_shorting=False)
    place(account, qty=10, side="sell")
    add_tick("AAPL", price_units=1_240_000)
    tries: list[int | None] = []
    real = services._order_place

    def counting(**kwargs: Any) -> Order:
        tries.append(kwargs["request"].qty)
        return real(**kwargs)

    monkeypatch.setattr(services, "_order_place", counting)
    for halted, tradable in ((True, True), (False, False)):
        Asset.objects.filter(pk=asset.pk).update(halted=halted, tradable=tradable)
        assert services.account_margin_call(account_id=account.pk, now=NOW) == []
    assert tries == []
    assert position(account).qty == shares(-10)  # type: ignore[union-attr]


def test_a_margin_call_sizes_its_cover_with_the_per_share_commission_in_one_order(
    make_account: MakeAccount, asset: Asset, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = make_account(cash=60_000)
    services.account_configure(account_id=account.pk, no_shorting=False)
    place(account, qty=10, side="sell")
    settings.COMMISSION_PER_SHARE_CENTI_CENTS = 25_000  # $2.50 a share
    tries: list[int | None] = []
    real = services._order_place

    def counting(**kwargs: Any) -> Order:
        tries.append(kwargs["request"].qty)
        return real(**kwargs)

    monkeypatch.setattr(services, "_order_place", counting)
    # At $170 each share covered costs 17,001 + 250 and gives back 14,998.5 of the hold:
    # 10,005 of buying power pays for 4 (9,010) but not 5 (11,262).
    add_tick("AAPL", price_units=1_700_000)
    (cover,) = services.account_margin_call(account_id=account.pk, now=NOW)
    assert tries == [shares(4)]
    assert (cover.qty, cover.status) == (shares(4), "filled")
    assert assert_books_balance(account).buying_power_cents >= 0


def test_a_margin_call_cancels_every_open_order_so_their_cash_pays_the_cover(
    make_account: MakeAccount, make_asset: MakeAsset, asset: Asset
) -> None:
    make_asset("MSFT", price="100.00")
    account = make_account(cash=60_000)
    services.account_configure(account_id=account.pk, no_shorting=False)
    place(account, qty=10, side="sell")
    bid = place(account, symbol="MSFT", qty=1, type="limit", limit_price_units=500_000)  # holds 5,000
    add_tick("AAPL", price_units=1_700_000)
    (cover,) = services.account_margin_call(account_id=account.pk, now=NOW)
    bid.refresh_from_db()
    assert (bid.status, cover.qty) == ("canceled", shares(4))
    assert_books_balance(account)


def test_a_margin_call_that_can_cover_nothing_leaves_the_users_cover_alone(
    make_account: MakeAccount, asset: Asset
) -> None:
    account = make_account(cash=60_000)
    services.account_configure(account_id=account.pk, no_shorting=False)
    place(account, qty=10, side="sell")
    add_tick("AAPL", price_units=1_700_000)
    (first,) = services.account_margin_call(account_id=account.pk, now=NOW)
    assert first.qty == shares(4)  # all the buying power pays for
    protect = place(account, qty=1, type="stop", stop_price_units=1_800_000)  # the user's buy to close
    # The next window, still below maintenance at the same price: the call can do nothing, so
    # it does nothing.
    assert services.account_margin_call(account_id=account.pk, now=NOW) == []
    protect.refresh_from_db()
    assert protect.status == "new"
    assert position(account).qty == shares(-6)  # type: ignore[union-attr]


# --- the API ----------------------------------------------------------------------------------


def test_short_position_and_account_json_as_alpaca_shows_them(shorting: Account) -> None:
    from alpaca.trading.enums import PositionSide
    from alpaca.trading.models import Position as AlpacaPosition, TradeAccount

    client = key_client(shorting)
    response = post_order(client, symbol="AAPL", qty="10", side="sell", position_intent="sell_to_open")
    assert response.status_code == 200, response.content
    assert response.json()["position_intent"] == "sell_to_open"
    body = client.get("/v2/positions/AAPL").json()
    parsed = AlpacaPosition(**body)
    assert parsed.side == PositionSide.SHORT
    assert (body["qty"], body["qty_available"], body["market_value"], body["cost_basis"]) == (
        "-10",
        "-10",
        "-1000.00",
        "-999.90",
    )
    assert body["avg_entry_price"] == "99.99"
    account = client.get("/v2/account").json()
    TradeAccount(**account)
    assert (account["cash"], account["short_market_value"], account["equity"]) == (
        "100999.90",
        "-1000.00",
        "99999.90",
    )
    assert (account["buying_power"], account["initial_margin"], account["maintenance_margin"]) == (
        "99500.05",
        "499.95",
        "300.00",
    )
    asset = client.get("/v2/assets/AAPL").json()
    assert (asset["shortable"], asset["easy_to_borrow"], asset["margin_requirement_short"]) == (
        True,
        True,
        "150",
    )


def test_refusals_answer_in_alpacas_shape(make_asset: MakeAsset, account: Account, asset: Asset) -> None:
    client = key_client(account)
    body = assert_alpaca_error(post_order(client, symbol="AAPL", qty="1", side="sell"), 403)
    assert body["message"] == "insufficient qty available for order (requested: 1, available: 0)"
    services.account_configure(account_id=account.pk, no_shorting=False)
    make_asset("HARD", shortable=False)
    body = assert_alpaca_error(post_order(client, symbol="HARD", qty="1", side="sell"), 403)
    assert body["message"] == 'asset "HARD" cannot be sold short'
    body = assert_alpaca_error(
        post_order(client, symbol="AAPL", qty="1", side="buy", position_intent="buy_to_close"), 403
    )
    assert body["message"] == "position intent mismatch. inferred buy to open"
    assert_alpaca_error(
        post_order(client, symbol="AAPL", qty="1", side="buy", position_intent="sell_to_open"), 422
    )
    assert_alpaca_error(post_order(client, symbol="AAPL", qty="1", side="buy", position_intent="long"), 422)
    assert fresh(account).reserved_cents == 0
