"""Monthly statements, a report of the read side: the figures of a finished month and the
statements an owner may see. The PDF is rendered from the figures by ``analytics.statement_pdf``;
the statement job (jobs) produces each statement once and stores it as a ``Statement`` row.

A statement covers a finished month, whose fills and ledger entries no longer change, so its
figures can be read in a few queries without a snapshot transaction.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db.models import OuterRef, QuerySet, Subquery, Sum
from django.utils import timezone

from analytics.models import Statement
from trading import calendar
from trading.errors import InvalidRequest, NotFound
from trading.models import Account, Asset, CashEntry, DailyBar, Fill, OrderSide, StockPriceHistory
from trading.selectors import EXTERNAL_CASH_KINDS
from trading.units import trade_value_cents

_PERIOD = re.compile(r"([0-9]{4})-([0-9]{2})", re.ASCII)
TRADE_CASH_KINDS = (CashEntry.Kind.BUY, CashEntry.Kind.SELL)


# --- Periods ----------------------------------------------------------------------------------------


def statement_period_bounds(*, period: str, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a calendar month in the trading time zone; only months that have ended.

    A statement is produced once and kept, so one for a month still running would be wrong
    for ever; such periods are refused like malformed ones.
    """
    match = _PERIOD.fullmatch(period) if isinstance(period, str) else None
    if not match or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 1970:
        raise InvalidRequest("period must be a month as YYYY-MM, e.g. 2026-09")
    year, month = int(match.group(1)), int(match.group(2))
    start = calendar.day_start(dt.date(year, month, 1))
    end = calendar.day_start(dt.date(year + month // 12, month % 12 + 1, 1))
    if end > now:
        raise InvalidRequest(f"period {period} has not ended yet; statements cover finished months")
    return start, end


def statement_last_period(*, now: dt.datetime) -> str:
    """The month before the current trading day's month."""
    today = calendar.trading_day_of(now)
    last = today.replace(day=1) - dt.timedelta(days=1)
    return f"{last.year:04d}-{last.month:02d}"


# --- Statement figures ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TradeLine:
    filled_at: dt.datetime
    symbol: str
    side: str
    qty: int  # quantity units (1/10^9 share)
    price_units: int
    value_cents: int
    commission_cents: int
    realized_pl_cents: int


@dataclass(frozen=True)
class CashLine:
    created_at: dt.datetime
    kind: str
    memo: str
    amount_cents: int


@dataclass(frozen=True)
class PositionLine:
    symbol: str
    qty: int  # quantity units (1/10^9 share)
    price_units: int
    value_cents: int


@dataclass(frozen=True)
class StatementData:
    account_id: uuid.UUID
    account_number: str
    owner: str
    period: str
    start: dt.datetime
    end: dt.datetime
    opening_cash_cents: int
    closing_cash_cents: int
    # Deposits, grants and resets: money that came from outside, not from trading.
    external_flows_cents: int
    trade_cash_cents: int
    commissions_cents: int
    realized_pl_cents: int
    opening_positions: list[PositionLine]
    closing_positions: list[PositionLine]
    trades: list[TradeLine] = field(default_factory=list)
    cash_movements: list[CashLine] = field(default_factory=list)
    generated_at: dt.datetime = field(default_factory=timezone.now)

    @property
    def opening_equity_cents(self) -> int:
        return self.opening_cash_cents + sum(line.value_cents for line in self.opening_positions)

    @property
    def closing_equity_cents(self) -> int:
        return self.closing_cash_cents + sum(line.value_cents for line in self.closing_positions)

    @property
    def profit_loss_cents(self) -> int:
        """Change in equity that trading made: deposits, grants and resets taken out."""
        return self.closing_equity_cents - self.opening_equity_cents - self.external_flows_cents


def _cash_before(account_id: uuid.UUID, moment: dt.datetime) -> int:
    total = CashEntry.objects.filter(account_id=account_id, created_at__lt=moment).aggregate(
        total=Sum("amount_cents")
    )["total"]
    return int(total or 0)


def _holdings_at(account_id: uuid.UUID, moment: dt.datetime) -> dict[str, int]:
    """Shares held just before ``moment``: the fills since the last reset before it (a reset
    clears positions without fills)."""
    last_reset = (
        CashEntry.objects.filter(account_id=account_id, kind=CashEntry.Kind.RESET, created_at__lt=moment)
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    fills = Fill.objects.filter(account_id=account_id, filled_at__lt=moment)
    if last_reset is not None:
        fills = fills.filter(filled_at__gte=last_reset)
    held: dict[str, int] = defaultdict(int)
    for symbol, side, qty in fills.values_list("asset__symbol", "side", "qty"):
        held[symbol] += qty if side == OrderSide.BUY else -qty
    return {symbol: qty for symbol, qty in held.items() if qty}


def prices_at(*, symbols: Iterable[str], moment: dt.datetime) -> dict[str, int]:
    """Each symbol's price just before ``moment``: the newest daily close, else the newest stored
    tick, else the asset's seed price. Three queries whatever the number of symbols."""
    wanted = sorted(set(symbols))
    if not wanted:
        return {}
    newest_bar = (
        DailyBar.objects.filter(symbol=OuterRef("symbol"), start__lt=moment)
        .order_by("-start")
        .values("start")[:1]
    )
    prices = dict(
        DailyBar.objects.filter(symbol__in=wanted, start=Subquery(newest_bar)).values_list(
            "symbol", "close_units"
        )
    )
    missing = [symbol for symbol in wanted if symbol not in prices]
    if missing:
        newest_tick = (
            StockPriceHistory.objects.filter(symbol=OuterRef("symbol"), recorded_at__lt=moment)
            .order_by("-seq")
            .values("seq")[:1]
        )
        prices.update(
            StockPriceHistory.objects.filter(symbol__in=missing, seq=Subquery(newest_tick)).values_list(
                "symbol", "price_units"
            )
        )
    missing = [symbol for symbol in wanted if symbol not in prices]
    if missing:
        prices.update(Asset.objects.filter(symbol__in=missing).values_list("symbol", "initial_price_units"))
    return prices


def _position_lines(holdings: dict[str, int], prices: dict[str, int]) -> list[PositionLine]:
    return [
        PositionLine(
            symbol=symbol,
            qty=qty,
            price_units=prices.get(symbol, 0),
            value_cents=trade_value_cents(price_units=prices.get(symbol, 0), qty=qty),
        )
        for symbol, qty in sorted(holdings.items())
    ]


def statement_data(
    *, account_id: uuid.UUID | str, period: str, now: dt.datetime | None = None
) -> StatementData:
    """Everything a monthly statement shows, in a fixed number of queries."""
    start, end = statement_period_bounds(period=period, now=now or timezone.now())
    account = Account.objects.select_related("user").filter(pk=account_id).first()
    if account is None:
        raise NotFound("account not found")
    opening_cash = _cash_before(account.pk, start)
    entries = list(
        CashEntry.objects.filter(account_id=account.pk, created_at__gte=start, created_at__lt=end)
        .order_by("created_at", "id")
        .values_list("created_at", "kind", "memo", "amount_cents")
    )
    fills = list(
        Fill.objects.filter(account_id=account.pk, filled_at__gte=start, filled_at__lt=end)
        .order_by("filled_at", "id")
        .values_list(
            "filled_at",
            "asset__symbol",
            "side",
            "qty",
            "price_units",
            "value_cents",
            "commission_cents",
            "realized_pl_cents",
        )
    )
    opening_held, closing_held = _holdings_at(account.pk, start), _holdings_at(account.pk, end)
    opening_prices = prices_at(symbols=opening_held, moment=start)
    closing_prices = prices_at(symbols=closing_held, moment=end)
    return StatementData(
        account_id=account.pk,
        account_number=account.account_number,
        owner=account.user.get_full_name() or account.user.get_username(),
        period=period,
        start=start,
        end=end,
        opening_cash_cents=opening_cash,
        closing_cash_cents=opening_cash + sum(entry[3] for entry in entries),
        external_flows_cents=sum(entry[3] for entry in entries if entry[1] in EXTERNAL_CASH_KINDS),
        trade_cash_cents=sum(entry[3] for entry in entries if entry[1] in TRADE_CASH_KINDS),
        commissions_cents=sum(fill[6] for fill in fills),
        realized_pl_cents=sum(fill[7] for fill in fills),
        opening_positions=_position_lines(opening_held, opening_prices),
        closing_positions=_position_lines(closing_held, closing_prices),
        trades=[
            TradeLine(
                filled_at=filled_at,
                symbol=symbol,
                side=side,
                qty=qty,
                price_units=price,
                value_cents=value,
                commission_cents=commission,
                realized_pl_cents=realized,
            )
            for filled_at, symbol, side, qty, price, value, commission, realized in fills
        ],
        cash_movements=[
            CashLine(created_at=created_at, kind=kind, memo=memo, amount_cents=amount)
            for created_at, kind, memo, amount in entries
            if kind not in TRADE_CASH_KINDS and kind != CashEntry.Kind.COMMISSION
        ],
    )


# --- Statements, as their owner sees them -------------------------------------------------------


def _as_uuid(value: uuid.UUID | str, *, what: str) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"{what} not found") from None


def statements_list(*, account_id: uuid.UUID) -> QuerySet[Statement]:
    return Statement.objects.filter(account_id=account_id).order_by("-period")


def statement_get(
    *, statement_id: uuid.UUID | str, account_id: uuid.UUID | None, staff: bool = False
) -> Statement:
    statements = Statement.objects.filter(pk=_as_uuid(statement_id, what="statement"))
    if not staff:
        statements = statements.filter(account_id=account_id) if account_id is not None else statements.none()
    statement = statements.first()
    if statement is None:
        raise NotFound("statement not found")
    return statement
