"""A small long/short momentum bot written against alpaca-py only, as it would be against Alpaca.

It needs nothing from this repository: point it at `make run` with the demo key `make run` prints
(two settings, Alpaca's own variable names)::

    APCA_API_KEY_ID=... APCA_API_SECRET_KEY=... python examples/momentum_bot.py --once

`SIM_BASE_URL` (default ``http://127.0.0.1:8000``) points it elsewhere; leave it unset for `make run`.

Each round it ranks a few symbols by the last close against their 10-minute average, then:

- buys the strongest with a notional order sized as a share of equity (a fractional position);
- enters the strongest again with a bracket order: whole shares, a take-profit limit above and a
  stop-loss stop below the entry, which the server activates when the entry fills;
- sells the weakest short (turning shorting on in the account configuration if it is off).

With ``--once`` it runs one round, waits for the fills, then cancels what is open (the bracket's
legs with it) and closes every position, buying the short back, so it leaves the account flat.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from uuid import UUID

from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.requests import StockBarsRequest, StockLatestQuoteRequest
from alpaca.data.timeframe import TimeFrame
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderClass, OrderSide, OrderStatus, QueryOrderStatus, TimeInForce
from alpaca.trading.models import Order, Position, TradeAccount
from alpaca.trading.requests import (
    GetOrdersRequest,
    MarketOrderRequest,
    StopLossRequest,
    TakeProfitRequest,
)

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_SYMBOLS = ("AAPL", "MSFT", "AMZN", "NVDA", "GOOGL")
AVERAGE_MINUTES = 10
NOTIONAL_SHARE_OF_EQUITY = Decimal("0.01")
BRACKET_SHARES = 2
SHORT_SHARES = 1
TAKE_PROFIT = Decimal("0.02")  # 2 % above the entry for a long bracket
STOP_LOSS = Decimal("0.02")  # 2 % below it
FILL_TIMEOUT_S = 30.0
CENT = Decimal("0.01")


@dataclass(frozen=True)
class Ranked:
    symbol: str
    momentum: Decimal  # last close / average close - 1


def log(message: str) -> None:
    print(message, flush=True)


def clients() -> tuple[TradingClient, StockHistoricalDataClient]:
    key_id = os.environ.get("APCA_API_KEY_ID", "")
    secret = os.environ.get("APCA_API_SECRET_KEY", "")
    if not key_id or not secret:
        sys.exit("Set APCA_API_KEY_ID and APCA_API_SECRET_KEY (make run prints the demo key).")
    base_url = os.environ.get("SIM_BASE_URL", DEFAULT_BASE_URL).rstrip("/")
    trading = TradingClient(key_id, secret, paper=True, url_override=base_url)
    data = StockHistoricalDataClient(key_id, secret, url_override=base_url)
    return trading, data


def rank(data: StockHistoricalDataClient, symbols: Sequence[str]) -> list[Ranked]:
    """Symbols by momentum, strongest first; a symbol without enough bars is left out."""
    bars = data.get_stock_bars(
        StockBarsRequest(symbol_or_symbols=list(symbols), timeframe=TimeFrame.Minute, limit=1000)
    )
    ranked = []
    for symbol in symbols:
        closes = [Decimal(str(bar.close)) for bar in bars.data.get(symbol, [])][-AVERAGE_MINUTES:]
        if len(closes) < 2:
            continue
        average = sum(closes, Decimal(0)) / len(closes)
        ranked.append(Ranked(symbol=symbol, momentum=closes[-1] / average - 1))
    return sorted(ranked, key=lambda item: item.momentum, reverse=True)


def ask_price(data: StockHistoricalDataClient, symbol: str) -> Decimal:
    quote = data.get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols=symbol))[symbol]
    return Decimal(str(quote.ask_price))


def wait_filled(trading: TradingClient, order: Order) -> Order:
    deadline = time.monotonic() + FILL_TIMEOUT_S
    while time.monotonic() < deadline:
        current = trading.get_order_by_id(order.id)
        assert isinstance(current, Order)
        if current.status == OrderStatus.FILLED:
            return current
        if current.status in {OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED}:
            raise RuntimeError(f"order {order.id} ended {current.status.value}")
        time.sleep(0.2)
    raise RuntimeError(f"order {order.id} did not fill within {FILL_TIMEOUT_S:.0f} s")


def submit(trading: TradingClient, request: MarketOrderRequest) -> Order:
    order = trading.submit_order(request)
    assert isinstance(order, Order)
    return order


def buy_notional(trading: TradingClient, account: TradeAccount, symbol: str) -> Order:
    notional = (Decimal(str(account.equity)) * NOTIONAL_SHARE_OF_EQUITY).quantize(CENT, ROUND_DOWN)
    order = submit(
        trading,
        MarketOrderRequest(
            symbol=symbol, notional=float(notional), side=OrderSide.BUY, time_in_force=TimeInForce.DAY
        ),
    )
    filled = wait_filled(trading, order)
    log(f"notional buy: ${notional} of {symbol} -> {filled.filled_qty} shares at {filled.filled_avg_price}")
    return filled


def enter_bracket(trading: TradingClient, data: StockHistoricalDataClient, symbol: str) -> Order:
    entry = ask_price(data, symbol)
    take_profit = (entry * (1 + TAKE_PROFIT)).quantize(CENT)
    stop_loss = (entry * (1 - STOP_LOSS)).quantize(CENT)
    order = submit(
        trading,
        MarketOrderRequest(
            symbol=symbol,
            qty=BRACKET_SHARES,
            side=OrderSide.BUY,
            time_in_force=TimeInForce.GTC,
            order_class=OrderClass.BRACKET,
            take_profit=TakeProfitRequest(limit_price=float(take_profit)),
            stop_loss=StopLossRequest(stop_price=float(stop_loss)),
        ),
    )
    filled = wait_filled(trading, order)
    legs = bracket_legs(trading, filled.id)
    log(
        f"bracket: {BRACKET_SHARES} {symbol} at {filled.filled_avg_price}, "
        f"take-profit {take_profit}, stop-loss {stop_loss}, legs {', '.join(legs)}"
    )
    return filled


def bracket_legs(trading: TradingClient, parent_id: UUID | str) -> list[str]:
    parent = trading.get_order_by_id(parent_id)
    assert isinstance(parent, Order)
    return [f"{leg.type.value}:{leg.status.value}" for leg in parent.legs or []]


def sell_short(trading: TradingClient, symbol: str) -> Order:
    configuration = trading.get_account_configurations()
    if configuration.no_shorting:
        configuration.no_shorting = False
        trading.set_account_configurations(configuration)
        log("shorting turned on in the account configuration")
    order = submit(
        trading,
        MarketOrderRequest(
            symbol=symbol, qty=SHORT_SHARES, side=OrderSide.SELL, time_in_force=TimeInForce.DAY
        ),
    )
    filled = wait_filled(trading, order)
    position = trading.get_open_position(symbol)
    assert isinstance(position, Position)
    log(
        f"short: sold {SHORT_SHARES} {symbol} at {filled.filled_avg_price}, position {position.qty} ({position.side.value})"
    )
    return filled


def flatten(trading: TradingClient) -> None:
    """Cancel what is open, then close every position (a short is bought back)."""
    trading.cancel_orders()
    deadline = time.monotonic() + FILL_TIMEOUT_S
    while trading.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN)):
        if time.monotonic() > deadline:
            raise RuntimeError("open orders did not cancel")
        time.sleep(0.2)
    trading.close_all_positions(cancel_orders=True)
    while trading.get_all_positions():
        if time.monotonic() > deadline:
            raise RuntimeError("positions did not close")
        time.sleep(0.2)
    log("flat: no open orders, no positions")


def run_round(trading: TradingClient, data: StockHistoricalDataClient, symbols: Sequence[str]) -> None:
    account = trading.get_account()
    assert isinstance(account, TradeAccount)
    log(f"account {account.account_number}: equity {account.equity}, buying power {account.buying_power}")
    ranked = rank(data, symbols)
    if len(ranked) < 2:
        raise RuntimeError(f"need bars for at least two of {', '.join(symbols)}")
    strongest, weakest = ranked[0], ranked[-1]
    log(
        f"strongest {strongest.symbol} ({strongest.momentum:+.4%}), weakest {weakest.symbol} ({weakest.momentum:+.4%})"
    )
    buy_notional(trading, account, strongest.symbol)
    enter_bracket(trading, data, strongest.symbol)
    sell_short(trading, weakest.symbol)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--symbols", default=",".join(DEFAULT_SYMBOLS), help="comma-separated symbols to rank"
    )
    parser.add_argument("--once", action="store_true", help="one round, then cancel and close everything")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between rounds without --once")
    options = parser.parse_args(argv)
    symbols = [symbol.strip().upper() for symbol in options.symbols.split(",") if symbol.strip()]
    trading, data = clients()
    if options.once:
        try:
            run_round(trading, data, symbols)
        finally:
            flatten(trading)
        return 0
    while True:  # each round starts flat, so positions never pile up across rounds
        flatten(trading)
        run_round(trading, data, symbols)
        time.sleep(options.interval)


if __name__ == "__main__":
    sys.exit(main())
