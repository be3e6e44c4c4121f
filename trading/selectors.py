"""Every read behind the trading API. Keyword-only, typed, a constant number of queries whatever
the number of rows behind a read (Property 2, docs/properties.md).

Portfolio reads load positions with their assets in one query, the latest quotes of all their
symbols in one batch (``trading.quotes.latest_quotes``), the previous trading day's closes in
one correlated-subquery query, and today's activity as aggregates; none of that grows with the
number of holdings. Values are integer price units (1/10,000 $) until the API edge formats them.

State "at an instant" (last_equity, the start of a portfolio history) is rebuilt backwards from
the current rows: cash then = cash now minus ledger entries after it; shares then = shares now
minus fills after it. Recent activity is small and indexed by (account, time), whereas summing the
whole ledger forwards would read every row an account ever wrote.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Generic, NamedTuple, TypeVar

from django.conf import settings
from django.db.models import (
    BigIntegerField,
    Count,
    F,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.expressions import CombinedExpression
from django.db.models.functions import Mod
from django.utils import timezone

from trading import calendar, margin
from trading.book import Book, Flow, HeldAsset, book_get, book_parse, book_part
from trading.errors import Forbidden, InvalidRequest, NotFound
from trading.models import (
    OPEN_ORDER_STATUSES,
    Account,
    ApiKey,
    Asset,
    CashEntry,
    DailyBar,
    Fill,
    Game,
    GameAnnouncement,
    GamePlayer,
    MinuteBar,
    Order,
    OrderClass,
    OrderSide,
    Position,
    UsernameSkeleton,
    Watchlist,
    WatchlistEntry,
)
from trading.prepared import JoinedPart, PreparedQuery, PreparedRows
from trading.quotes import latest_quotes, newest_per_symbol
from trading.units import (
    QTY_SCALE,
    UNITS_PER_CENT,
    divide_half_even,
    holding_value_units,
    qty_to_str,
    units_to_str,
)
from trading.usernames import username_skeleton

ORDERS_LIMIT_DEFAULT = 50
ORDERS_LIMIT_MAX = 500
ACTIVITIES_PAGE_MAX = 100
GAME_ANNOUNCEMENTS_LIMIT_DEFAULT = 100
GAME_ANNOUNCEMENTS_LIMIT_MAX = 500

# --- Prices -------------------------------------------------------------------------------------


def previous_closes(*, symbols: Iterable[str], before: dt.datetime) -> dict[str, int]:
    """The close of each symbol's newest daily bar starting before ``before``, in one query."""
    wanted = sorted(set(symbols))
    if not wanted:
        return {}
    newest = newest_per_symbol(DailyBar, symbols=wanted, order_key="start", start__lt=before)
    return dict(DailyBar.objects.filter(pk__in=newest).values_list("symbol", "close_units"))


def _latest_prices(symbols: Iterable[str]) -> dict[str, int]:
    return {symbol: quote.price for symbol, quote in latest_quotes(symbols=symbols).items()}


# --- Holdings -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PositionValue:
    asset: HeldAsset
    qty: int
    qty_available: int
    cost_basis: int
    current_price: int
    lastday_price: int
    intraday_basis: int

    @property
    def side(self) -> str:
        return "long" if self.qty > 0 else "short"

    # Computed once: the answer reads it six times (its P/L figures are made from it).
    market_value: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "market_value", holding_value_units(price_units=self.current_price, qty=self.qty)
        )

    @property
    def avg_entry_units(self) -> int:
        """The entry price per share in price units, half-even (Alpaca shows 4 decimals)."""
        return divide_half_even(abs(self.cost_basis) * QTY_SCALE, abs(self.qty))

    @property
    def unrealized_pl(self) -> int:
        return self.market_value - self.cost_basis

    @property
    def unrealized_intraday_pl(self) -> int:
        return self.market_value - self.intraday_basis

    # The ratios the answer shows (unrealized_plpc, unrealized_intraday_plpc, change_today), as
    # (numerator, denominator): written by units.ratio_to_str in integers, never as a Decimal.
    @property
    def unrealized_plpc(self) -> tuple[int, int]:
        return self.unrealized_pl, abs(self.cost_basis)

    @property
    def unrealized_intraday_plpc(self) -> tuple[int, int]:
        return self.unrealized_intraday_pl, abs(self.intraday_basis)

    @property
    def change_today(self) -> tuple[int, int]:
        return self.current_price - self.lastday_price, self.lastday_price


@dataclass(frozen=True)
class AccountSummary:
    account: Account
    as_of: dt.datetime
    long_market_value: int
    short_market_value: int
    last_equity: int
    positions: list[PositionValue] = field(default_factory=list)

    @property
    def cash(self) -> int:
        return self.account.cash_cents * UNITS_PER_CENT

    @property
    def buying_power(self) -> int:
        return self.account.buying_power_cents * UNITS_PER_CENT

    @property
    def equity(self) -> int:
        return self.cash + self.long_market_value + self.short_market_value

    @property
    def initial_margin(self) -> int:
        """Reg T's 50 % of the shorts' entry value, beyond their proceeds (trading/margin.py)."""
        entry = sum(-value.cost_basis for value in self.positions if value.qty < 0)
        return -(-entry * (margin.INITIAL_MARGIN_PERCENT - 100) // 100)

    @property
    def maintenance_margin(self) -> int:
        return margin.maintenance_requirement_units(short_market_value_units=self.short_market_value)


# The last day day_boundary found: (time zone, its start, the next day's start). Every account and
# position read asks several times, nearly always about the same day.
_day_memo: tuple[str, dt.datetime, dt.datetime] | None = None


def day_boundary(moment: dt.datetime) -> dt.datetime:
    """When the trading day containing ``moment`` began: yesterday's close is the price here."""
    global _day_memo
    last = _day_memo
    if last is not None and last[0] == settings.TRADING_TIMEZONE and last[1] <= moment < last[2]:
        return last[1]
    day = calendar.trading_day_of(moment)
    start = calendar.day_start(day)
    _day_memo = (settings.TRADING_TIMEZONE, start, calendar.day_start(day + dt.timedelta(days=1)))
    return start


def _reset_today(account: Account, now: dt.datetime) -> bool:
    """Whether returns are measured from the account's last reset rather than the day's start:
    they are measured from the later of the two, so a reset starts the day's figures afresh (and
    no share then predates it)."""
    return account.reset_at is not None and account.reset_at > day_boundary(now)


def _intraday_basis(*, qty_now: int, start_price: int, flow: Flow) -> int:
    """What today's shares cost: yesterday's shares at yesterday's close plus today's trades.

    Shares opened today add their cost; shares closed today leave at the average cost, so a
    sale's realised gain is not counted again as unrealised. Signed like the position.
    """
    sign = 1 if qty_now > 0 else -1
    qty_then = qty_now - flow.net_qty
    if qty_now > 0:
        opened_qty, opened_value, closed_qty = flow.buy_qty, flow.buy_value, flow.sell_qty
    else:
        opened_qty, opened_value, closed_qty = flow.sell_qty, flow.sell_value, flow.buy_qty
    # A position that flipped side today has no shares left from yesterday on this side.
    held = abs(qty_then) if qty_then * sign > 0 else 0
    if not closed_qty or not held + opened_qty:
        # Nothing closed today (the usual case): the exact sum rounded half-even in integers, as
        # the Decimal path below rounds it (its sum is exact at these magnitudes).
        return sign * divide_half_even(held * start_price + opened_value * QTY_SCALE, QTY_SCALE)
    basis = Decimal(held * start_price) / QTY_SCALE + opened_value
    held += opened_qty
    basis -= basis * min(closed_qty, held) / held
    return sign * int(basis.to_integral_value())


def _positions_query(account_id: uuid.UUID) -> QuerySet[Position]:
    return Position.objects.filter(account_id=account_id).exclude(qty=0).select_related("asset")


T = TypeVar("T")


@dataclass(frozen=True)
class AccountRead(Generic[T]):
    """A read of the account a request acts on, which can run in the same statement as the
    account's row (``PreparedQuery.run_joined``; docs/architecture.md, The polled reads):
    ``part(account_id)`` is its statement for that account (None: this one is not joined),
    ``joined(account, rows)`` its answer from that statement's rows, ``alone(account)`` its answer
    from an account loaded before, in statements of its own. ``uses_row``: the answer is built
    from the account's row as well (cash, reset time: the book's reads), so the row is to be read
    in one snapshot with the rest (trading/api/views_base.py, ``request_account_read``)."""

    part: Callable[[uuid.UUID | str], JoinedPart | None]
    joined: Callable[[Account, list[tuple[Any, ...]]], T]
    alone: Callable[[Account], T]
    uses_row: bool = False


def _book_part(
    account_id: uuid.UUID | str, now: dt.datetime, *, summary: bool, **one_asset: Any
) -> JoinedPart:
    return book_part(
        account_id=account_id, boundary=day_boundary(now), ledger=summary, flow_closes=summary, **one_asset
    )


def _book(account: Account, now: dt.datetime, *, summary: bool, **one_asset: Any) -> Book:
    return book_get(
        account_id=account.pk, boundary=day_boundary(now), ledger=summary, flow_closes=summary, **one_asset
    )


# A symbol not traded since the day began (shared: a Flow per lookup cost a frozen dataclass's
# construction per position).
_NO_FLOW = Flow()


def _value_positions(
    *, book: Book, reset_today: bool, all_traded: bool
) -> tuple[list[PositionValue], dict[str, int]]:
    """The book's positions priced at the latest quotes (one Redis read; the database only for
    symbols Redis lacks); also returns those prices, which last_equity reuses.

    ``all_traded`` also prices symbols traded since the day began but no longer held: last_equity
    needs them, a position listing does not.
    """
    symbols = {position.asset.symbol for position in book.positions}
    if all_traded:
        symbols |= set(book.flows)
    current = _latest_prices(symbols)
    closes = book.closes
    # After a reset today no share predates it, so the start price never applies.
    at_start = not reset_today
    flows = book.flows
    values = []
    for position in book.positions:
        symbol = position.asset.symbol
        avg_entry_units = abs(position.cost_basis_cents) * UNITS_PER_CENT * QTY_SCALE // abs(position.qty)
        price = current.get(symbol) or closes.get(symbol) or avg_entry_units
        lastday = closes.get(symbol, price)
        start_price = lastday if at_start else price
        values.append(
            PositionValue(
                asset=position.asset,
                qty=position.qty,
                # Signed like the position, as Alpaca shows it: a short's is negative.
                qty_available=position.qty - position.qty_held
                if position.qty > 0
                else position.qty + position.qty_held,
                cost_basis=position.cost_basis_cents * UNITS_PER_CENT,
                current_price=price,
                lastday_price=lastday,
                intraday_basis=_intraday_basis(
                    qty_now=position.qty, start_price=start_price, flow=flows.get(symbol, _NO_FLOW)
                ),
            )
        )
    return values, current


def _positions_valued(*, account: Account, book: Book, now: dt.datetime) -> list[PositionValue]:
    values, _ = _value_positions(book=book, reset_today=_reset_today(account, now), all_traded=False)
    return values


def portfolio_positions(*, account: Account, now: dt.datetime | None = None) -> list[PositionValue]:
    """All open positions, valued: one statement (``trading.book``) and one quote read for 1 or
    1,000 holdings.

    Portfolio selectors take the Account as the request loaded it (authentication reads it
    fresh on every request) and read cash and reset time from it rather than again.
    """
    now = now or timezone.now()
    return _positions_valued(account=account, book=_book(account, now, summary=False), now=now)


def portfolio_positions_read(*, now: dt.datetime | None = None) -> AccountRead[list[PositionValue]]:
    """``portfolio_positions`` as a read joined onto the account's row (``AccountRead``)."""
    at = now or timezone.now()
    return AccountRead(
        part=lambda account_id: _book_part(account_id, at, summary=False),
        joined=lambda account, rows: _positions_valued(account=account, book=book_parse(rows=rows), now=at),
        alone=lambda account: portfolio_positions(account=account, now=at),
        uses_row=True,
    )


def _one_asset(symbol_or_asset_id: str) -> dict[str, Any]:
    asset_id = _as_uuid(symbol_or_asset_id)
    return {"asset_id": asset_id} if asset_id is not None else {"asset_symbol": symbol_or_asset_id.upper()}


def _position_valued(*, account: Account, book: Book, now: dt.datetime) -> PositionValue:
    if not book.positions:
        raise NotFound("position does not exist")
    return _positions_valued(account=account, book=book, now=now)[0]


def portfolio_position(
    *, account: Account, symbol_or_asset_id: str, now: dt.datetime | None = None
) -> PositionValue:
    now = now or timezone.now()
    book = _book(account, now, summary=False, **_one_asset(symbol_or_asset_id))
    return _position_valued(account=account, book=book, now=now)


def portfolio_position_read(
    *, symbol_or_asset_id: str, now: dt.datetime | None = None
) -> AccountRead[PositionValue]:
    """``portfolio_position`` as a read joined onto the account's row (``AccountRead``)."""
    at = now or timezone.now()
    one_asset = _one_asset(symbol_or_asset_id)
    return AccountRead(
        part=lambda account_id: _book_part(account_id, at, summary=False, **one_asset),
        joined=lambda account, rows: _position_valued(account=account, book=book_parse(rows=rows), now=at),
        alone=lambda account: portfolio_position(
            account=account, symbol_or_asset_id=symbol_or_asset_id, now=at
        ),
        uses_row=True,
    )


def position_symbols(*, account_id: uuid.UUID) -> list[str]:
    return list(_positions_query(account_id).values_list("asset__symbol", flat=True))


def position_symbol(*, account: Account, symbol_or_asset_id: str) -> str:
    """The symbol of an open position named by symbol or asset id."""
    symbol = (
        _positions_query(account.pk)
        .filter(_asset_match("asset__", symbol_or_asset_id))
        .values_list("asset__symbol", flat=True)
        .first()
    )
    if symbol is None:
        raise NotFound("position does not exist")
    return symbol


def account_summary(*, account: Account, now: dt.datetime | None = None) -> AccountSummary:
    """Balances, market values and last_equity (equity when today's trading began, or at the last
    reset if that came later): one statement (``trading.book``) and one quote read."""
    now = now or timezone.now()
    return _account_summary_of(account=account, book=_book(account, now, summary=True), now=now)


def account_summary_read(*, now: dt.datetime | None = None) -> AccountRead[AccountSummary]:
    """``account_summary`` as a read joined onto the account's row (``AccountRead``)."""
    at = now or timezone.now()
    return AccountRead(
        part=lambda account_id: _book_part(account_id, at, summary=True),
        joined=lambda account, rows: _account_summary_of(account=account, book=book_parse(rows=rows), now=at),
        alone=lambda account: account_summary(account=account, now=at),
        uses_row=True,
    )


def _account_summary_of(*, account: Account, book: Book, now: dt.datetime) -> AccountSummary:
    reset_today = _reset_today(account, now)
    values, current = _value_positions(book=book, reset_today=reset_today, all_traded=True)
    flows, closes = book.flows, book.closes
    qty_now = {value.asset.symbol: value.qty for value in values}
    at_start = not reset_today
    holdings_then = 0
    for symbol in qty_now.keys() | flows.keys():
        qty_then = qty_now.get(symbol, 0) - flows.get(symbol, _NO_FLOW).net_qty
        if qty_then:
            price = (closes.get(symbol) if at_start else None) or current.get(symbol) or closes.get(symbol, 0)
            holdings_then += holding_value_units(price_units=price, qty=qty_then)
    return AccountSummary(
        account=account,
        as_of=now,
        long_market_value=sum(value.market_value for value in values if value.qty > 0),
        short_market_value=sum(value.market_value for value in values if value.qty < 0),
        last_equity=(account.cash_cents - book.cash_since) * UNITS_PER_CENT + holdings_then,
        positions=values,
    )


@dataclass(frozen=True)
class MarginStanding:
    """An account's equity against its shorts' maintenance requirement, in price units."""

    account_id: uuid.UUID
    equity: int
    short_market_value: int

    @property
    def below_maintenance(self) -> bool:
        return margin.below_maintenance(
            equity_units=self.equity, short_market_value_units=self.short_market_value
        )


def margin_standings_get(
    *, symbols: Iterable[str], prices: dict[str, int] | None = None
) -> list[MarginStanding]:
    """The standing of every account short in one of ``symbols``, valued at ``prices`` (the
    market's newest, by symbol) or else the latest quotes: two queries and one quote read however
    many accounts, for the market's maintenance check after each window."""
    prices = prices or {}
    account_ids = set(
        Position.objects.filter(qty__lt=0, asset__symbol__in=list(symbols)).values_list(
            "account_id", flat=True
        )
    )
    if not account_ids:
        return []
    holdings = list(
        Position.objects.filter(account_id__in=account_ids)
        .exclude(qty=0)
        .values_list("account_id", "asset__symbol", "qty", "cost_basis_cents")
    )
    missing = {symbol for _, symbol, _, _ in holdings if symbol not in prices}
    current = {**_latest_prices(missing), **prices} if missing else prices
    cash = dict(Account.objects.filter(pk__in=account_ids).values_list("pk", "cash_cents"))
    equity = {account_id: cents * UNITS_PER_CENT for account_id, cents in cash.items()}
    shorts: dict[uuid.UUID, int] = defaultdict(int)
    for account_id, symbol, qty, basis in holdings:
        # Without any price yet, a holding is worth what it was entered at.
        price = current.get(symbol) or abs(basis) * UNITS_PER_CENT * QTY_SCALE // abs(qty)
        value = holding_value_units(price_units=price, qty=qty)
        equity[account_id] += value
        if qty < 0:
            shorts[account_id] += value
    return [
        MarginStanding(
            account_id=account_id, equity=equity[account_id], short_market_value=shorts[account_id]
        )
        for account_id in sorted(account_ids)
    ]


# --- Assets -------------------------------------------------------------------------------------


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _asset_match(prefix: str, symbol_or_asset_id: str) -> Q:
    asset_id = _as_uuid(symbol_or_asset_id)
    if asset_id is not None:
        return Q(**{f"{prefix}id": asset_id})
    return Q(**{f"{prefix}symbol": symbol_or_asset_id.upper()})


def assets_list(
    *, status: str | None = None, asset_class: str | None = None, exchange: str | None = None
) -> QuerySet[Asset]:
    assets = Asset.objects.all()
    if status == "active":
        assets = assets.filter(active=True)
    elif status == "inactive":
        assets = assets.filter(active=False)
    if asset_class:
        assets = assets.filter(asset_class=asset_class)
    if exchange:
        assets = assets.filter(exchange=exchange)
    return assets.order_by("symbol")


def tradable_symbols_get() -> frozenset[str]:
    """The symbols the market lists: the assets ``run_market`` ticks (active and tradable; a
    halted one is still listed, and its status messages are streamed)."""
    return frozenset(Asset.objects.filter(active=True, tradable=True).values_list("symbol", flat=True))


def asset_get(*, symbol_or_asset_id: str) -> Asset:
    asset = Asset.objects.filter(_asset_match("", symbol_or_asset_id)).first()
    if asset is None:
        raise NotFound(f"asset not found for {symbol_or_asset_id}")
    return asset


# --- Orders -------------------------------------------------------------------------------------


def _orders(account_id: uuid.UUID) -> QuerySet[Order]:
    # replaced_by is the reverse side of a one-to-one: joined here so serialising stays one query.
    return Order.objects.filter(account_id=account_id).select_related("asset", "replaced_by")


def _orders_page(
    *,
    account_id: uuid.UUID,
    status: str,
    limit: int,
    direction: str,
    nested: bool,
    after: dt.datetime | None = None,
    until: dt.datetime | None = None,
    side: str | None = None,
    symbols: Sequence[str] | None = None,
) -> QuerySet[Order]:
    orders = _orders(account_id)
    if nested:
        orders = orders.filter(parent__isnull=True)
        open_q = Q(status__in=OPEN_ORDER_STATUSES) | Q(
            pk__in=Order.objects.filter(
                account_id=account_id, parent__isnull=False, status__in=OPEN_ORDER_STATUSES
            ).values("parent_id")
        )
    else:
        open_q = Q(status__in=OPEN_ORDER_STATUSES)
    if status == "open":
        orders = orders.filter(open_q)
    elif status == "closed":
        orders = orders.exclude(open_q)
    if after is not None:
        orders = orders.filter(submitted_at__gt=after)
    if until is not None:
        orders = orders.filter(submitted_at__lt=until)
    if side:
        orders = orders.filter(side=side)
    if symbols:
        orders = orders.filter(asset__symbol__in=[symbol.upper() for symbol in symbols])
    ordering = ("submitted_at", "id") if direction == "asc" else ("-submitted_at", "-id")
    return orders.order_by(*ordering)[:limit]


# A bot's poll (a status, a limit, a direction): compiled once per shape (trading/prepared.py).
_ORDERS_POLL = PreparedQuery(_orders_page, account_id=Account._meta.get_field("id"))
_POLLED_LIMITS = (ORDERS_LIMIT_DEFAULT, ORDERS_LIMIT_MAX)


def _orders_page_run(
    poll: PreparedQuery[Order] | PreparedRows,
    build: Callable[..., QuerySet[Any]],
    *,
    account_id: uuid.UUID,
    page: dict[str, Any],
    after: dt.datetime | None,
    until: dt.datetime | None,
    side: str | None,
    symbols: Sequence[str] | None,
) -> list[Any]:
    """A page of the account's orders (``page``: status, limit, direction, nested) through
    ``poll``, compiled once per shape, when it is a bot's poll; else through ``build``, the ORM's
    path. Prepared only for the limits a poll asks (the default, the most): any other limit takes
    the ORM's path, so a request cannot add compiled shapes at will."""
    polled = _orders_poll_shape(page=page, after=after, until=until, side=side, symbols=symbols)
    if polled is not None:
        return poll.run(shape=polled, account_id=account_id)
    page = _page_clamped(page)
    return list(build(account_id=account_id, after=after, until=until, side=side, symbols=symbols, **page))


def _page_clamped(page: dict[str, Any]) -> dict[str, Any]:
    """``page`` with its limit within 1..ORDERS_LIMIT_MAX."""
    return {**page, "limit": max(1, min(page["limit"], ORDERS_LIMIT_MAX))}


def _orders_poll_shape(
    *,
    page: dict[str, Any],
    after: dt.datetime | None,
    until: dt.datetime | None,
    side: str | None,
    symbols: Sequence[str] | None,
) -> dict[str, Any] | None:
    """``page`` (its limit clamped) when the listing is a bot's poll, compiled once per shape;
    None when it takes the ORM's path."""
    page = _page_clamped(page)
    if after is None and until is None and not side and not symbols and page["limit"] in _POLLED_LIMITS:
        return page
    return None


def orders_list(
    *,
    account_id: uuid.UUID,
    status: str = "open",
    limit: int = ORDERS_LIMIT_DEFAULT,
    after: dt.datetime | None = None,
    until: dt.datetime | None = None,
    direction: str = "desc",
    side: str | None = None,
    symbols: Sequence[str] | None = None,
    nested: bool = False,
) -> list[Order]:
    """The account's orders, newest first by default. ``nested``: legs are not listed on their
    own but inside their order (``leg_orders``), and an order whose legs are still open counts
    as open, as in Alpaca's nested listing."""
    found: list[Order] = _orders_page_run(
        _ORDERS_POLL,
        _orders_page,
        account_id=account_id,
        page={"status": status, "limit": limit, "direction": direction, "nested": nested},
        after=after,
        until=until,
        side=side,
        symbols=symbols,
    )
    if nested:
        _legs_attach(found)
    return found


class OrderRowAsset(NamedTuple):
    symbol: str
    asset_class: str


class OrderRowReplacement(NamedTuple):
    id: uuid.UUID


class OrderRow(NamedTuple):
    """An order as a list answers it, from a plain row (no model instance): the fields
    ``OrderSerializer`` reads, named as on ``Order``, its asset's and its replacement's too."""

    id: uuid.UUID
    client_order_id: str
    created_at: dt.datetime
    updated_at: dt.datetime
    submitted_at: dt.datetime
    filled_at: dt.datetime | None
    expired_at: dt.datetime | None
    expires_at: dt.datetime | None
    canceled_at: dt.datetime | None
    failed_at: dt.datetime | None
    replaced_at: dt.datetime | None
    replaces_id: uuid.UUID | None
    asset_id: uuid.UUID
    parent_id: uuid.UUID | None
    notional_cents: int | None
    qty: int
    filled_qty: int
    filled_avg_price_units: int | None
    order_class: str
    type: str
    side: str
    position_intent: str
    time_in_force: str
    limit_price_units: int | None
    stop_price_units: int | None
    trail_price_units: int | None
    trail_percent_units: int | None
    high_water_mark_units: int | None
    status: str
    extended_hours: bool
    asset: OrderRowAsset
    replaced_by: OrderRowReplacement | None


# The row's own columns, then its asset's symbol and class and its replacement's id (a reverse
# one-to-one: at most one row joins).
_ORDER_ROW_COLUMNS = (*OrderRow._fields[:-2], "asset__symbol", "asset__asset_class", "replaced_by__id")
_ORDER_ROW_OWN = len(OrderRow._fields) - 2


def _order_rows_page(**page: Any) -> QuerySet[Any]:
    return _orders_page(**page).values_list(*_ORDER_ROW_COLUMNS)


_ORDER_ROWS_POLL = PreparedRows(_order_rows_page, account_id=Account._meta.get_field("id"))


def orders_list_rows(
    *,
    account_id: uuid.UUID,
    status: str = "open",
    limit: int = ORDERS_LIMIT_DEFAULT,
    after: dt.datetime | None = None,
    until: dt.datetime | None = None,
    direction: str = "desc",
    side: str | None = None,
    symbols: Sequence[str] | None = None,
) -> list[OrderRow]:
    """``orders_list`` not nested, as plain rows: what a list answers, built without a model
    instance (docs/architecture.md, The polled reads). A poll's shape is compiled once."""
    rows = _orders_page_run(
        _ORDER_ROWS_POLL,
        _order_rows_page,
        account_id=account_id,
        page={"status": status, "limit": limit, "direction": direction, "nested": False},
        after=after,
        until=until,
        side=side,
        symbols=symbols,
    )
    return _order_rows(rows)


# The poll's ordering as ``JoinedPart.order`` gives it: submitted_at, then id (``_orders_page``).
_ORDER_ROW_SUBMITTED = _ORDER_ROW_COLUMNS.index("submitted_at")
_ORDER_ROW_ID = _ORDER_ROW_COLUMNS.index("id")


def orders_list_rows_read(
    *,
    status: str = "open",
    limit: int = ORDERS_LIMIT_DEFAULT,
    after: dt.datetime | None = None,
    until: dt.datetime | None = None,
    direction: str = "desc",
    side: str | None = None,
    symbols: Sequence[str] | None = None,
) -> AccountRead[list[OrderRow]]:
    """``orders_list_rows`` as a read joined onto the account's row (``AccountRead``) when it is
    a bot's poll (compiled once per shape); any other listing runs alone."""
    listing: dict[str, Any] = {
        "status": status,
        "limit": limit,
        "after": after,
        "until": until,
        "direction": direction,
        "side": side,
        "symbols": symbols,
    }
    polled = _orders_poll_shape(
        page={"status": status, "limit": limit, "direction": direction, "nested": False},
        after=after,
        until=until,
        side=side,
        symbols=symbols,
    )
    descending = direction != "asc"
    order = ((_ORDER_ROW_SUBMITTED, descending), (_ORDER_ROW_ID, descending))

    def part(account_id: uuid.UUID | str) -> JoinedPart | None:
        if polled is None:
            return None
        return _ORDER_ROWS_POLL.part(order=order, shape=polled, account_id=account_id)

    return AccountRead(
        part=part,
        joined=lambda account, rows: _order_rows(rows),
        alone=lambda account: orders_list_rows(account_id=account.pk, **listing),
    )


def _order_rows(rows: Iterable[Sequence[Any]]) -> list[OrderRow]:
    own = _ORDER_ROW_OWN
    return [
        OrderRow._make(
            (
                *row[:own],
                OrderRowAsset(row[own], row[own + 1]),
                None if row[own + 2] is None else OrderRowReplacement(row[own + 2]),
            )
        )
        for row in rows
    ]


def _legs_attach(orders: Sequence[Order]) -> None:
    """Give the advanced orders among ``orders`` their legs (``leg_orders``), in one query."""
    parents = {order.pk: order for order in orders if order.order_class != OrderClass.SIMPLE}
    if not parents:
        return
    for order in parents.values():
        order.leg_orders = []
    legs = (
        Order.objects.filter(parent_id__in=list(parents))
        .select_related("asset", "replaced_by")
        .order_by("submitted_at", "id")
    )
    for leg in legs:
        assert leg.parent_id is not None
        legs_of = parents[leg.parent_id].leg_orders
        assert legs_of is not None
        legs_of.append(leg)


def order_get(*, account_id: uuid.UUID, order_id: uuid.UUID | str) -> Order:
    """One of the account's orders; another account's order is simply not found."""
    parsed = _as_uuid(str(order_id))
    order = _orders(account_id).filter(pk=parsed).first() if parsed else None
    if order is None:
        raise NotFound("order not found")
    return order


def orders_by_ids(*, account_id: uuid.UUID, order_ids: Sequence[uuid.UUID]) -> list[Order]:
    """Several of the account's orders in one query, in the order asked for."""
    found = {order.pk: order for order in _orders(account_id).filter(pk__in=order_ids)}
    return [found[order_id] for order_id in order_ids if order_id in found]


def order_get_by_client_id(*, account_id: uuid.UUID, client_order_id: str) -> Order:
    order = _orders(account_id).filter(client_order_id=client_order_id).first()
    if order is None:
        raise NotFound("order not found")
    return order


# --- Account activities -----------------------------------------------------------------------

FILL_ACTIVITY = "FILL"
# The ledger's own kinds as Alpaca activity types; buys and sells appear as their FILLs instead.
CASH_ACTIVITY_KINDS: dict[str, tuple[str, ...]] = {
    "CSD": (CashEntry.Kind.DEPOSIT,),
    "JNLC": (CashEntry.Kind.GRANT, CashEntry.Kind.RESET),
    "FEE": (CashEntry.Kind.COMMISSION,),
}
ACTIVITY_TYPES = (FILL_ACTIVITY, *CASH_ACTIVITY_KINDS)
# Every activity type Alpaca's Trading API defines (its account-activities reference and
# alpaca-py's ActivityType). A filter may name any of them; those the simulator never produces
# (dividends, transfers, corporate actions...) match nothing.
ALPACA_ACTIVITY_TYPES = (
    *ACTIVITY_TYPES,
    *("TRANS", "MISC", "ACATC", "ACATS", "CFEE", "CIL", "CSW"),
    *("DIV", "DIVCGL", "DIVCGS", "DIVFEE", "DIVFT", "DIVNRA", "DIVROC", "DIVTW", "DIVTXEX", "DIVWH"),
    *("EXTRD", "FXTRD", "INT", "INTNRA", "INTPNL", "INTTW", "JNL", "JNLS", "MA", "MEM", "NC", "OCT"),
    *("OPASN", "OPCSH", "OPEXC", "OPEXP", "OPTRD", "OPXRC", "PTC", "PTR", "REORG", "SC", "SPIN"),
    *("SPLIT", "SSO", "SSP", "SWP", "VOF", "WH"),
)
# Alpaca's group filters: TRANS is cash transactions (CSD and CSW), MISC every type outside
# TRANS, the dividends and FILL.
_ACTIVITY_GROUPS: dict[str, tuple[str, ...]] = {
    "TRANS": ("CSD", "CSW"),
    "MISC": tuple(
        kind
        for kind in ALPACA_ACTIVITY_TYPES
        if kind not in ("TRANS", "MISC", "CSD", "CSW", FILL_ACTIVITY) and not kind.startswith("DIV")
    ),
}


def activity_types_produced(activity_types: Sequence[str]) -> set[str]:
    """The types the simulator records among ``activity_types`` (groups expanded); InvalidRequest
    (422) for a name Alpaca does not define."""
    unknown = set(activity_types) - set(ALPACA_ACTIVITY_TYPES)
    if unknown:
        raise InvalidRequest(f"unsupported activity_type: {', '.join(sorted(unknown))}")
    wanted = {kind for name in activity_types for kind in _ACTIVITY_GROUPS.get(name, (name,))}
    return wanted & set(ACTIVITY_TYPES)


_ACTIVITY_ID = re.compile(r"[0-9]{17}::([0-9a-fA-F-]{32,36})", re.ASCII)


@dataclass(frozen=True)
class Activity:
    id: str
    activity_type: str
    at: dt.datetime
    fill: Fill | None = None
    entry: CashEntry | None = None

    @property
    def key(self) -> tuple[dt.datetime, uuid.UUID]:
        row = self.fill or self.entry
        assert row is not None
        return self.at, row.pk


def activity_id(at: dt.datetime, row_id: uuid.UUID) -> str:
    """Alpaca's form, ``YYYYMMDDHHMMSSmmm::<uuid>``: sortable text whose uuid names the row."""
    stamp = at.astimezone(dt.UTC)
    return f"{stamp:%Y%m%d%H%M%S}{stamp.microsecond // 1000:03d}::{row_id}"


def _cash_activity_type(kind: str) -> str:
    for activity_type, kinds in CASH_ACTIVITY_KINDS.items():
        if kind in kinds:
            return activity_type
    raise ValueError(kind)


def _keyset(page_token: str, account_id: uuid.UUID) -> tuple[dt.datetime, uuid.UUID]:
    """The exact (time, id) of the activity a page token names; the token keeps milliseconds only."""
    match = _ACTIVITY_ID.fullmatch(page_token)
    row_id = _as_uuid(match.group(1)) if match else None
    if row_id is None:
        raise InvalidRequest("invalid page_token")
    found = list(
        Fill.objects.filter(pk=row_id, account_id=account_id)
        .order_by()
        .values_list("filled_at")
        .union(
            CashEntry.objects.filter(pk=row_id, account_id=account_id).order_by().values_list("created_at")
        )[:1]
    )
    if not found:
        raise InvalidRequest("invalid page_token")
    return found[0][0], row_id


def _after_key(time_field: str, key: tuple[dt.datetime, uuid.UUID] | None, direction: str) -> Q:
    if key is None:
        return Q()
    at, row_id = key
    op = "gt" if direction == "asc" else "lt"
    return Q(**{f"{time_field}__{op}": at}) | Q(**{time_field: at, f"id__{op}": row_id})


def account_activities(
    *,
    account_id: uuid.UUID,
    activity_types: Sequence[str] | None = None,
    after: dt.datetime | None = None,
    until: dt.datetime | None = None,
    direction: str = "desc",
    page_size: int = ACTIVITIES_PAGE_MAX,
    page_token: str | None = None,
) -> list[Activity]:
    """One keyset page of fills and cash movements, merged by (time, id): two queries whatever
    the page depth (plus one to resolve a page token), never OFFSET."""
    wanted = activity_types_produced(activity_types) if activity_types is not None else set(ACTIVITY_TYPES)
    if not wanted:
        return []
    page_size = max(1, min(page_size, ACTIVITIES_PAGE_MAX))
    key = _keyset(page_token, account_id) if page_token else None
    descending = direction != "asc"
    found: list[Activity] = []
    if FILL_ACTIVITY in wanted:
        fills = Fill.objects.filter(account_id=account_id).filter(_after_key("filled_at", key, direction))
        if after is not None:
            fills = fills.filter(filled_at__gt=after)
        if until is not None:
            fills = fills.filter(filled_at__lt=until)
        ordering = ("-filled_at", "-id") if descending else ("filled_at", "id")
        # What the order had filled once this execution was done, so a partial fill shows as one
        # (its cum_qty and leaves_qty then), not as the order is now.
        executed = (
            Fill.objects.filter(order_id=OuterRef("order_id"))
            .filter(
                Q(filled_at__lt=OuterRef("filled_at"))
                | Q(filled_at=OuterRef("filled_at"), id__lte=OuterRef("id"))
            )
            .order_by()
            .values("order_id")
            .annotate(total=Sum("qty"))
            .values("total")
        )
        fills = fills.annotate(cum_qty=Subquery(executed, output_field=BigIntegerField()))
        for fill in fills.select_related("asset", "order").order_by(*ordering)[:page_size]:
            found.append(
                Activity(activity_id(fill.filled_at, fill.pk), FILL_ACTIVITY, fill.filled_at, fill=fill)
            )
    kinds = [
        kind for activity_type in wanted - {FILL_ACTIVITY} for kind in CASH_ACTIVITY_KINDS[activity_type]
    ]
    if kinds:
        entries = CashEntry.objects.filter(account_id=account_id, kind__in=kinds).filter(
            _after_key("created_at", key, direction)
        )
        if after is not None:
            entries = entries.filter(created_at__gt=after)
        if until is not None:
            entries = entries.filter(created_at__lt=until)
        ordering = ("-created_at", "-id") if descending else ("created_at", "id")
        for entry in entries.select_related("fill__asset").order_by(*ordering)[:page_size]:
            found.append(
                Activity(
                    activity_id(entry.created_at, entry.pk),
                    _cash_activity_type(entry.kind),
                    entry.created_at,
                    entry=entry,
                )
            )
    found.sort(key=lambda activity: activity.key, reverse=descending)
    return found[:page_size]


# --- Portfolio history --------------------------------------------------------------------------

INTRADAY_MINUTES = {"1Min": 1, "5Min": 5, "15Min": 15, "1H": 60}
TIMEFRAMES = (*INTRADAY_MINUTES, "1D")
HISTORY_POINTS_MAX = 20_000
INTRADAY_SPAN_MAX = dt.timedelta(days=30)
MICROS_PER_MINUTE = 60_000_000
_MICROSECOND = dt.timedelta(microseconds=1)
_PERIOD = re.compile(r"([0-9]{1,4})([DWMA])", re.ASCII)
# The longest periods, a century as period=all covers: longer ones reach back past what dates can
# represent (9999A).
PERIOD_COUNT_MAX = {"D": 36500, "W": 5200, "M": 1200, "A": 100}
EXTERNAL_CASH_KINDS = (CashEntry.Kind.DEPOSIT, CashEntry.Kind.GRANT, CashEntry.Kind.RESET)


@dataclass(frozen=True)
class PortfolioHistory:
    timestamp: list[int]
    equity: list[float]
    profit_loss: list[float]
    profit_loss_pct: list[float | None]
    base_value: float
    base_value_asof: dt.date
    timeframe: str


def _period(period: str) -> tuple[int, str]:
    match = _PERIOD.fullmatch(period)
    if not match or int(match.group(1)) == 0:
        raise InvalidRequest("period must be a number and a unit D, W, M or A (such as 1M), or 'all'")
    count, unit = int(match.group(1)), match.group(2)
    if count > PERIOD_COUNT_MAX[unit]:
        raise InvalidRequest(f"period may cover at most 100 years ({PERIOD_COUNT_MAX[unit]}{unit})")
    return count, unit


def _last_day(end: dt.datetime) -> dt.date:
    """The last trading day a window ending (exclusively) at ``end`` touches: an ``end`` at a
    midnight, as ``date_end`` gives, ends the day before it, not the day it starts."""
    return calendar.trading_day_of(end - _MICROSECOND)


def _period_start(period: str, end: dt.datetime) -> dt.datetime:
    """The first day a period like 1D, 2W, 3M or 1A covers, ending with the last day of ``end``."""
    count, unit = _period(period)
    last_day = _last_day(end)
    if unit in ("D", "W"):
        first_day = last_day - dt.timedelta(days=count * (7 if unit == "W" else 1) - 1)
    else:
        months = count * (12 if unit == "A" else 1)
        year, month = divmod(last_day.year * 12 + last_day.month - 1 - months, 12)
        month += 1
        # 31 March minus one month is the last day of February, then the day after it.
        day = min(last_day.day, _days_in_month(year, month))
        first_day = dt.date(year, month, day) + dt.timedelta(days=1)
    return calendar.day_start(first_day)


def _days_in_month(year: int, month: int) -> int:
    following = dt.date(year + month // 12, month % 12 + 1, 1)
    return (following - dt.timedelta(days=1)).day


def _nominal_span(period: str) -> dt.timedelta:
    """A period's length as Alpaca names it (a month counts 30 days, a year 365), whatever the
    calendar: the default timeframe must not change with the month's length or the hour."""
    count, unit = _period(period)
    return dt.timedelta(days=count * {"D": 1, "W": 7, "M": 30, "A": 365}[unit])


def _default_timeframe(span: dt.timedelta) -> str:
    # Alpaca's rule: 1Min under 7 days, 15Min under 30 days, otherwise 1D.
    if span < dt.timedelta(days=7):
        return "1Min"
    if span < dt.timedelta(days=30):
        return "15Min"
    return "1D"


def _buckets(start: dt.datetime, end: dt.datetime, timeframe: str) -> list[tuple[dt.datetime, dt.datetime]]:
    """Left-labelled windows covering [start, end]: (label, the instant its equity is taken)."""
    if timeframe == "1D":
        days = calendar.sessions_between(calendar.trading_day_of(start), _last_day(end))
        return [
            (calendar.day_start(day.date), min(calendar.day_start(day.date + dt.timedelta(days=1)), end))
            for day in days
        ]
    step = dt.timedelta(minutes=INTRADAY_MINUTES[timeframe])
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    label = epoch + ((start - epoch) // step) * step
    buckets = []
    while label < end:
        buckets.append((label, min(label + step, end)))
        label += step
    return buckets


def _price_tape(
    *, symbols: Sequence[str], start: dt.datetime, end: dt.datetime, timeframe: str
) -> tuple[dict[str, int], dict[str, list[tuple[dt.datetime, int]]]]:
    """Prices at ``start`` and, per symbol, (instant a close is known, close) after it, oldest
    first, at the window's resolution: two queries."""
    tape: dict[str, list[tuple[dt.datetime, int]]] = defaultdict(list)
    if not symbols:
        return {}, tape
    if timeframe == "1D":
        opening = previous_closes(symbols=symbols, before=day_boundary(start))
        rows = (
            DailyBar.objects.filter(symbol__in=symbols, start__gte=day_boundary(start), start__lt=end)
            .order_by("start")
            .values_list("symbol", "start", "close_units")
        )
        for symbol, bar_start, close in rows:
            # A daily bar's close is the price when its trading day ends.
            closes_at = calendar.day_start(calendar.trading_day_of(bar_start) + dt.timedelta(days=1))
            tape[symbol].append((closes_at, close))
        return opening, tape
    minute = dt.timedelta(minutes=1)
    newest_before = (
        MinuteBar.objects.filter(symbol=OuterRef("symbol"), start__lte=start - minute)
        .order_by("-start")
        .values("start")[:1]
    )
    opening = dict(
        MinuteBar.objects.filter(symbol__in=symbols, start=Subquery(newest_before)).values_list(
            "symbol", "close_units"
        )
    )
    # A minute bar's close is the price when its minute ends.
    bars = MinuteBar.objects.filter(symbol__in=symbols, start__gt=start - minute, start__lt=end)
    step = INTRADAY_MINUTES[timeframe]
    if step > 1:
        # Only a window's last minute decides its equity; the others would be read and dropped.
        # Minute bars' start is integer microseconds (trading/fields.py); every step divides an
        # hour, so the minute since the epoch modulo the step is the window's slot.
        minutes = CombinedExpression(
            F("start"), "/", Value(MICROS_PER_MINUTE), output_field=BigIntegerField()
        )
        bars = bars.annotate(slot=Mod(minutes, step)).filter(slot=step - 1)
    for symbol, bar_start, close in bars.order_by("start").values_list("symbol", "start", "close_units"):
        tape[symbol].append((bar_start + minute, close))
    return opening, tape


def portfolio_history(
    *,
    account: Account,
    period: str | None = None,
    timeframe: str | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> PortfolioHistory:
    """Equity over time rebuilt from the ledger, the fills and bar closes in a fixed number of
    queries: positions, fills and ledger entries since the start, opening prices, bar closes and
    the latest quotes for the live point. Profit and loss exclude deposits and grants."""
    now = now or timezone.now()
    end = min(end or now, now)
    # An explicit window is answered as asked or refused; a default one shrinks to fit.
    explicit = start is not None or (period is not None and period != "all")
    if start is None:
        start = end - dt.timedelta(days=36500) if period == "all" else _period_start(period or "1M", end)
        span = end - start if period == "all" else _nominal_span(period or "1M")
    else:
        span = end - start
    if timeframe is None:
        timeframe = _default_timeframe(span)
    if timeframe not in TIMEFRAMES:
        raise InvalidRequest(f"timeframe must be one of {', '.join(TIMEFRAMES)}")
    # Nothing before the account's last reset counts: returns are measured from there.
    start = max(start, account.reset_at or account.created_at)
    if timeframe != "1D":
        # Intraday points are priced from minute bars: a window reaching past their retention
        # would price its first days at a later close.
        widest = min(
            INTRADAY_SPAN_MAX,
            dt.timedelta(days=settings.MINUTE_BAR_RETENTION_DAYS),
            dt.timedelta(minutes=INTRADAY_MINUTES[timeframe]) * HISTORY_POINTS_MAX,
        )
        if end - start > widest:
            if explicit:
                raise InvalidRequest(
                    f"timeframe {timeframe} covers at most {widest.days or 1} days here; "
                    "choose a shorter period or a larger timeframe"
                )
            start = end - widest
    if end <= start:
        return PortfolioHistory([], [], [], [], 0.0, calendar.trading_day_of(end), timeframe)
    buckets = _buckets(start, end, timeframe)

    held_now = dict(_positions_query(account.pk).values_list("asset__symbol", "qty"))
    fills = list(
        Fill.objects.filter(account_id=account.pk, filled_at__gt=start)
        .order_by("filled_at", "id")
        .values_list("filled_at", "asset__symbol", "side", "qty")
    )
    entries = list(
        CashEntry.objects.filter(account_id=account.pk, created_at__gt=start)
        .order_by("created_at", "id")
        .values_list("created_at", "amount_cents", "kind")
    )
    qty: dict[str, int] = defaultdict(int, held_now)
    for _, symbol, side, shares in fills:
        qty[symbol] -= shares if side == OrderSide.BUY else -shares
    symbols = sorted(set(qty) | set(held_now))
    opening, tape = _price_tape(symbols=symbols, start=start, end=end, timeframe=timeframe)
    live = _latest_prices(symbols) if end >= now else {}
    price: dict[str, int] = {}
    for symbol in symbols:
        first_close = tape[symbol][0][1] if tape.get(symbol) else None
        price[symbol] = opening.get(symbol) or first_close or live.get(symbol) or 0

    cash = account.cash_cents - sum(amount for _, amount, _ in entries)
    # Price units x quantity units until each point is taken (exact integers, never overflowing).
    holdings = sum(qty[symbol] * price[symbol] for symbol in symbols)
    base = cash * UNITS_PER_CENT + divide_half_even(holdings, QTY_SCALE)
    flows = 0
    fill_at = entry_at = 0
    cursor = dict.fromkeys(symbols, 0)
    result = PortfolioHistory([], [], [], [], base / 10_000, calendar.trading_day_of(start), timeframe)
    for label, taken_at in buckets:
        while entry_at < len(entries) and entries[entry_at][0] <= taken_at:
            _, amount, kind = entries[entry_at]
            cash += amount
            if kind in EXTERNAL_CASH_KINDS:
                flows += amount * UNITS_PER_CENT
            entry_at += 1
        while fill_at < len(fills) and fills[fill_at][0] <= taken_at:
            _, symbol, side, shares = fills[fill_at]
            delta = shares if side == OrderSide.BUY else -shares
            qty[symbol] += delta
            holdings += delta * price[symbol]
            fill_at += 1
        for symbol in symbols:
            points, index = tape.get(symbol, []), cursor[symbol]
            while index < len(points) and points[index][0] <= taken_at:
                holdings += qty[symbol] * (points[index][1] - price[symbol])
                price[symbol] = points[index][1]
                index += 1
            cursor[symbol] = index
            if taken_at >= now and symbol in live:
                holdings += qty[symbol] * (live[symbol] - price[symbol])
                price[symbol] = live[symbol]
        equity = cash * UNITS_PER_CENT + divide_half_even(holdings, QTY_SCALE)
        profit = equity - base - flows
        result.timestamp.append(int(label.timestamp()))
        result.equity.append(round(equity / 10_000, 4))
        result.profit_loss.append(round(profit / 10_000, 4))
        result.profit_loss_pct.append(round(profit / base, 6) if base else None)
    return result


# --- Watchlists -------------------------------------------------------------------------------


def _watchlists(account_id: uuid.UUID) -> QuerySet[Watchlist]:
    entries = WatchlistEntry.objects.select_related("asset").order_by("position", "id")
    return Watchlist.objects.filter(account_id=account_id).prefetch_related(
        Prefetch("entries", queryset=entries)
    )


def watchlists_list(*, account_id: uuid.UUID) -> list[Watchlist]:
    return list(_watchlists(account_id).order_by("created_at", "id"))


def watchlist_get(*, account_id: uuid.UUID, watchlist_id: uuid.UUID | str) -> Watchlist:
    parsed = _as_uuid(str(watchlist_id))
    watchlist = _watchlists(account_id).filter(pk=parsed).first() if parsed else None
    if watchlist is None:
        raise NotFound("watchlist not found")
    return watchlist


def watchlist_get_by_name(*, account_id: uuid.UUID, name: str) -> Watchlist:
    watchlist = _watchlists(account_id).filter(name=name).first()
    if watchlist is None:
        raise NotFound("watchlist not found")
    return watchlist


# --- Users ----------------------------------------------------------------------------------------

# Where a browser session keeps the id of the account it acts on (``session_account_select``).
SESSION_ACCOUNT_KEY = "trading_account_id"


def account_for_session_get(*, user_id: int, session: Mapping[str, Any]) -> Account | None:
    """The account a browser session acts on: the one it selected while that is still an active
    user's, otherwise the user's default account; None when the user has none (an operator's own
    login). One query, whichever it is."""
    selected = _as_uuid(str(session.get(SESSION_ACCOUNT_KEY) or ""))
    wanted = Q(is_default=True) if selected is None else Q(is_default=True) | Q(pk=selected)
    rows = list(
        Account.objects.filter(wanted, user_id=user_id, user__is_active=True).select_related(
            "game_player__game"
        )
    )
    chosen = next((row for row in rows if row.pk == selected), None)
    return chosen or next((row for row in rows if row.is_default), None)


def accounts_list(*, user_id: int) -> list[Account]:
    """The user's accounts, the default one first, then the others oldest first; a game account
    comes with its player row and game (the switcher names the game), in the same query."""
    return list(
        Account.objects.filter(user_id=user_id)
        .select_related("game_player__game")
        .order_by("-is_default", "created_at", "pk")
    )


def username_lookalike_exists(*, username: str, exclude_user_id: int | None = None) -> bool:
    """Whether another user holds a name that looks like ``username`` (the same skeleton)."""
    holders = UsernameSkeleton.objects.filter(skeleton=username_skeleton(username))
    if exclude_user_id is not None:
        holders = holders.exclude(user_id=exclude_user_id)
    return holders.exists()


# --- API keys -----------------------------------------------------------------------------------


def api_keys_list(*, account_id: uuid.UUID) -> list[ApiKey]:
    """The account's keys: active ones newest first, then revoked ones, most recently revoked first."""
    return list(
        ApiKey.objects.filter(account_id=account_id).order_by(
            F("revoked_at").desc(nulls_first=True), "-created_at", "key_id"
        )
    )


# --- Games ----------------------------------------------------------------------------------------


def game_list_public(*, now: dt.datetime | None = None) -> list[Game]:
    """Public games not over yet, soonest start first."""
    now = now or timezone.now()
    games = Game.objects.filter(visibility=Game.Visibility.PUBLIC, ends_at__gt=now).filter(
        Q(ended_at__isnull=True) | Q(ended_at__gt=now)
    )
    return list(
        games.select_related("organiser").annotate(player_count=Count("players")).order_by("starts_at", "id")
    )


def game_get(*, game_id: uuid.UUID | str, user_id: int | None = None) -> Game:
    """A game by id. An invite-only one is found only by its organiser and its players: to anyone
    else it does not exist (they join with its code)."""
    game_uuid = _as_uuid(str(game_id))
    game = (
        Game.objects.filter(pk=game_uuid).annotate(player_count=Count("players")).first()
        if game_uuid is not None
        else None
    )
    if game is None:
        raise NotFound("game not found")
    if game.visibility == Game.Visibility.INVITE_ONLY and not (
        user_id is not None
        and (game.organiser_id == user_id or GamePlayer.objects.filter(game=game, user_id=user_id).exists())
    ):
        raise NotFound("game not found")
    return game


def game_get_for_organiser(*, game_id: uuid.UUID | str, user_id: int) -> Game:
    """A game its organiser asks for: found as ``game_get`` finds it, refused (403) to anyone else."""
    game = game_get(game_id=game_id, user_id=user_id)
    if game.organiser_id != user_id:
        raise Forbidden("only the game's organiser may do this")
    return game


GAME_TRADES_CSV_HEADER = ["filled_at", "username", "symbol", "side", "qty", "price", "notional", "commission"]


def game_trades_csv_rows(*, game: Game) -> Iterator[list[str | int | Decimal | dt.datetime | None]]:
    """Every fill of every player of the game (removed ones too: they traded in it), oldest first,
    header first, for its organiser's export. Usernames, never account numbers or ids. Text cells
    are ``str``, figures numbers (trading/api/csv_export.py neutralises formulas in the text)."""
    yield list(GAME_TRADES_CSV_HEADER)
    fills = (
        Fill.objects.filter(account__game_player__game=game)
        .order_by("filled_at", "id")
        .values_list(
            "filled_at",
            "account__game_player__user__username",
            "asset__symbol",
            "side",
            "qty",
            "price_units",
            "value_cents",
            "commission_cents",
        )
    )
    for filled_at, username, symbol, side, qty, price, value, commission in fills.iterator(chunk_size=2000):
        yield [
            filled_at,
            username,
            symbol,
            side,
            Decimal(qty_to_str(qty) or "0"),
            Decimal(units_to_str(price) or "0"),
            Decimal(value).scaleb(-2),
            Decimal(commission).scaleb(-2),
        ]


def game_announcements_list(
    *, game_id: uuid.UUID | str, user_id: int, limit: int = GAME_ANNOUNCEMENTS_LIMIT_DEFAULT
) -> list[GameAnnouncement]:
    """The game's announcements, newest first, for its organiser and its players (a removed player
    no longer reads them); anyone else is refused (403), and an invite-only game stays hidden."""
    if not 1 <= limit <= GAME_ANNOUNCEMENTS_LIMIT_MAX:
        raise InvalidRequest(f"limit must be between 1 and {GAME_ANNOUNCEMENTS_LIMIT_MAX}")
    game = game_get(game_id=game_id, user_id=user_id)
    if (
        game.organiser_id != user_id
        and not GamePlayer.objects.filter(game=game, user_id=user_id, removed_at__isnull=True).exists()
    ):
        raise Forbidden("only the game's organiser and players may read its announcements")
    announcements = GameAnnouncement.objects.filter(game=game).select_related("author")
    return list(announcements.order_by("-created_at", "-id")[:limit])


def game_players_list(*, game_id: uuid.UUID) -> list[GamePlayer]:
    return list(GamePlayer.objects.filter(game_id=game_id).select_related("user"))


def game_rules_for_account(*, account_id: uuid.UUID) -> Game | None:
    """The game an account plays in, with its rules; None for an account outside any game."""
    player = GamePlayer.objects.filter(account_id=account_id).select_related("game").first()
    return player.game if player is not None else None


def game_get_by_invite_code(*, invite_code: str) -> Game:
    """The game an invite link names (``/games/join/<code>``); the code is the game's secret, so
    holding it is what lets a user see an invite-only game before joining."""
    game = (
        Game.objects.filter(invite_code=invite_code).annotate(player_count=Count("players")).first()
        if invite_code
        else None
    )
    if game is None:
        raise NotFound("game not found")
    return game


def games_of_user_list(*, user_id: int) -> list[Game]:
    """The games a user organises or plays in, newest start first, with their player counts."""
    mine = Q(organiser_id=user_id) | Q(pk__in=GamePlayer.objects.filter(user_id=user_id).values("game_id"))
    return list(
        Game.objects.filter(mine)
        .select_related("organiser")
        .annotate(player_count=Count("players"))
        .order_by("-starts_at", "-id")
    )


def game_ids_joined(*, user_id: int) -> list[uuid.UUID]:
    return list(GamePlayer.objects.filter(user_id=user_id).values_list("game_id", flat=True))


def game_player_get(*, game_id: uuid.UUID, user_id: int) -> GamePlayer | None:
    """A user's place in a game, with its account; None when the user never joined."""
    return GamePlayer.objects.filter(game_id=game_id, user_id=user_id).select_related("account").first()


@dataclass(frozen=True)
class GamePosition:
    username: str
    symbol: str
    qty: str  # shares, as Alpaca writes quantities
    side: str


def game_positions_list(*, game_id: uuid.UUID) -> list[GamePosition]:
    """Every open position of a game's players, by username then symbol, in one query: what the
    game page shows of other players once the game is over (usernames, never account numbers)."""
    rows = (
        Position.objects.filter(account__game_player__game_id=game_id)
        .exclude(qty=0)
        .order_by("account__game_player__user__username", "asset__symbol")
        .values_list("account__game_player__user__username", "asset__symbol", "qty")
    )
    return [
        GamePosition(
            username=username,
            symbol=symbol,
            qty=qty_to_str(abs(qty)) or "0",
            side="long" if qty > 0 else "short",
        )
        for username, symbol, qty in rows
    ]
