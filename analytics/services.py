"""Precomputation: leaderboards, per-account analytics and per-symbol stats for ALL accounts at once.

Each refresh loads what it needs with a fixed number of batch queries whatever the number of
accounts (accounts, positions, today's fills and cash, trade cash since each reset, latest quotes,
previous closes), computes in Python, writes with bulk statements and invalidates the cached
answers after commit. Each is a one-line Celery task (see jobs/) and also what a read runs
synchronously when it finds the leaderboard older than its staleness bound.

Returns exclude cash added from outside (deposits, grants, resets): overall return is equity
against the capital since the last reset (cash now minus what trading moved since then); daily
return is equity against the equity when the trading day began (or at a reset today) plus cash
added since.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import itertools
import math
import statistics
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from django.conf import settings
from django.db import connection, transaction
from django.db.models import (
    BigIntegerField,
    BooleanField,
    Case,
    Count,
    DateTimeField,
    F,
    Max,
    Min,
    Model,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Greatest, TruncDate
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from analytics.events import LeaderboardChanged, leaderboard_changed_publish_on_commit
from analytics.metrics import frontend_report_count
from analytics.models import (
    FRONTEND_PAGE_MAX_LENGTH,
    FRONTEND_RENDERER_MAX_LENGTH,
    USER_AGENT_MAX_LENGTH,
    AccountAnalytics,
    AccountEquityDay,
    FrontendSample,
    GameBoard,
    LeaderboardEntry,
    LeaderboardPeriod,
    LeaderboardSnapshot,
    SymbolStats,
)
from config.cache import cache_manager
from config.gc_pause import gc_paused
from config.read_snapshot import read_snapshot
from trading import calendar
from trading.errors import InvalidRequest, NotFound
from trading.models import (
    Account,
    Asset,
    CashEntry,
    DailyBar,
    Fill,
    Game,
    GamePlayer,
    MinuteBar,
    OrderSide,
    Position,
)
from trading.quotes import latest_quotes, newest_per_symbol, prices_at
from trading.selectors import day_boundary, previous_closes
from trading.units import QTY_SCALE, UNITS_PER_CENT, holding_value_units

EXTERNAL_CASH_KINDS = (CashEntry.Kind.DEPOSIT, CashEntry.Kind.GRANT, CashEntry.Kind.RESET)
TRADE_CASH_KINDS = (CashEntry.Kind.BUY, CashEntry.Kind.SELL, CashEntry.Kind.COMMISSION)
# Snapshots kept per period: the newest and the one before it, which a reader may still be paging.
SNAPSHOTS_KEPT = 2
TRADING_DAYS_PER_YEAR = 252
SERIES_DAYS = 90
_M = TypeVar("_M", bound=Model)


def leaderboard_cache_key(period: str) -> str:
    return f"leaderboard:{period}"


def game_board_cache_key(game_id: uuid.UUID | str) -> str:
    return f"game_board:{game_id}"


def game_standings_cache_key(game_id: uuid.UUID | str) -> str:
    return f"game_standings:{game_id}"


def game_closing_cache_key(game_id: uuid.UUID | str) -> str:
    return f"game_closing:{game_id}"


def account_analytics_cache_key(account_id: uuid.UUID | str) -> str:
    return f"analytics:account:{account_id}"


# Symbol statistics hold quantities: the version names their unit (1/10^9 share since trading's
# migration 0003), so no process reads an entry cached in whole shares before the rescale.
SYMBOL_STATS_CACHE_VERSION = "q9"


def symbol_stats_cache_key(symbol: str) -> str:
    return f"symbol_stats:{SYMBOL_STATS_CACHE_VERSION}:{symbol.upper()}"


# --- Loading every account's state in a fixed number of queries --------------------------------


@dataclass
class AccountState:
    account_id: uuid.UUID
    account_number: str
    username: str
    cash_cents: int
    # Whether the account's last reset came after today's trading day began (then today's figures
    # start from it): compared by the database, which reads ``reset_at`` itself, instead of
    # decoding 20,000 timestamps a run (Django's timestamptz loader is Python: about a quarter of
    # the leaderboard job's CPU at 10,000 players, docs/architecture.md).
    reset_today: bool
    # The global boards rank default accounts only: a user's further accounts are not a second entry.
    is_default: bool = True
    holdings_units: int = 0
    long_by_sector_units: dict[str, int] = field(default_factory=dict)
    # Sum of buys, sells and commissions since the last reset: capital = cash - this.
    trade_cash_since_reset_cents: int = 0
    # Equity when today's trading began (or at a reset today), and cash added from outside since.
    day_start_equity_cents: int = 0
    flows_today_cents: int = 0
    # The account's part of a ranking's fingerprint line (_ranking_fingerprint), made once for
    # both periods' boards.
    fingerprint_key: str = ""
    # Cash plus holdings, set by book_load once the holdings are final (read per sort key and per
    # board: a plain attribute, not a property computed on each read).
    equity_cents: int = 0

    @property
    def capital_cents(self) -> int:
        return self.cash_cents - self.trade_cash_since_reset_cents

    @property
    def daily_baseline_cents(self) -> int:
        return self.day_start_equity_cents + self.flows_today_cents


def _ratio(gain: int, base: int) -> float:
    return gain / base if base > 0 else 0.0


@dataclass
class Book:
    now: dt.datetime
    trading_day: dt.date
    accounts: list[AccountState]

    def ranked(self, period: str) -> list[tuple[AccountState, int, float]]:
        """(state, baseline, return) of the default accounts, best first; ties by equity, then
        account number."""
        rows = []
        for state in self.accounts:
            if not state.is_default:
                continue
            baseline = (
                state.capital_cents if period == LeaderboardPeriod.OVERALL else state.daily_baseline_cents
            )
            rows.append((state, baseline, _ratio(state.equity_cents - baseline, baseline)))
        rows.sort(key=lambda row: (-row[2], -row[0].equity_cents, row[0].account_number))
        return rows


def book_load(
    *, now: dt.datetime | None = None, account_ids: Sequence[uuid.UUID] | QuerySet[Any] | None = None
) -> Book:
    """Every account's equity, capital and start-of-day equity: seven queries for any number,
    reading one snapshot (config/read_snapshot.py: a reset or a fill committed between two of them
    would otherwise pair one account's cash from before it with its positions from after it).
    ``account_ids`` narrows it, as ids or as a subquery of them (a game's players: the database
    reads them itself rather than receiving 10,000 ids in each statement)."""
    with read_snapshot():
        return _book_read(now=now or timezone.now(), account_ids=account_ids)


def _book_read(*, now: dt.datetime, account_ids: Sequence[uuid.UUID] | QuerySet[Any] | None) -> Book:
    boundary = day_boundary(now)
    accounts = Account.objects.all()
    if account_ids is not None:
        accounts = accounts.filter(pk__in=account_ids)
    # Rows as tuples (values_list, not dicts) of columns that decode cheaply: the reset as a flag
    # rather than a timestamp (AccountState).
    reset_today = Case(
        When(reset_at__gt=boundary, then=Value(True)), default=Value(False), output_field=BooleanField()
    )
    states = {
        account_id: AccountState(
            account_id=account_id,
            account_number=number,
            username=username,
            cash_cents=cash,
            reset_today=reset_after_boundary,
            is_default=is_default,
        )
        for account_id, number, username, cash, is_default, reset_after_boundary in accounts.annotate(
            reset_today=reset_today
        ).values_list("id", "account_number", "user__username", "cash_cents", "is_default", "reset_today")
    }
    wanted = list(states)

    def scoped(queryset: QuerySet[_M]) -> QuerySet[_M]:
        if account_ids is None:
            return queryset
        return queryset.filter(account_id__in=account_ids if isinstance(account_ids, QuerySet) else wanted)

    positions = list(
        scoped(Position.objects.exclude(qty=0)).values_list(
            "account_id", "asset__symbol", "asset__sector", "qty", "cost_basis_cents"
        )
    )
    # Each account's "day start" is the later of the trading day's start and its last reset.
    since = Greatest(
        Coalesce(F("account__reset_at"), Value(boundary, output_field=DateTimeField())),
        Value(boundary, output_field=DateTimeField()),
    )
    big = BigIntegerField()
    zero = Value(0, output_field=big)
    signed_qty = Case(When(side=OrderSide.BUY, then=F("qty")), default=-F("qty"), output_field=big)
    fills_today = (
        scoped(Fill.objects.filter(filled_at__gt=boundary))
        .alias(since=since)
        .filter(filled_at__gt=F("since"))
        .values("account_id", "asset__symbol")
        .order_by()
        .annotate(net=Sum(signed_qty))
    )
    net_today: dict[uuid.UUID, dict[str, int]] = defaultdict(dict)
    for row in fills_today:
        net_today[row["account_id"]][row["asset__symbol"]] = int(row["net"])
    cash_today = (
        scoped(CashEntry.objects.filter(created_at__gt=boundary))
        .alias(since=since)
        .filter(created_at__gt=F("since"))
        .values("account_id")
        .order_by()
        .annotate(
            total=Sum("amount_cents"),
            external=Coalesce(
                Sum(Case(When(kind__in=EXTERNAL_CASH_KINDS, then=F("amount_cents")), default=zero)), zero
            ),
        )
    )
    cash_since = {row["account_id"]: (int(row["total"]), int(row["external"])) for row in cash_today}
    trade_cash = (
        scoped(CashEntry.objects.filter(kind__in=TRADE_CASH_KINDS))
        .filter(Q(account__reset_at__isnull=True) | Q(created_at__gt=F("account__reset_at")))
        .values("account_id")
        .order_by()
        .annotate(total=Sum("amount_cents"))
    )
    for cash_row in trade_cash:
        if cash_row["account_id"] in states:
            states[cash_row["account_id"]].trade_cash_since_reset_cents = int(cash_row["total"])

    symbols = {row[1] for row in positions} | {symbol for by in net_today.values() for symbol in by}
    current = {symbol: quote.price for symbol, quote in latest_quotes(symbols=symbols).items()}
    closes = previous_closes(symbols=symbols, before=boundary)

    held: dict[uuid.UUID, dict[str, int]] = defaultdict(dict)
    for account_id, symbol, sector, qty, cost_basis in positions:
        state = states.get(account_id)
        if state is None:
            continue
        fallback = abs(cost_basis) * UNITS_PER_CENT * QTY_SCALE // abs(qty)
        price = current.get(symbol) or closes.get(symbol) or fallback
        value = holding_value_units(price_units=price, qty=qty)
        state.holdings_units += value
        if qty > 0:
            state.long_by_sector_units[sector] = state.long_by_sector_units.get(sector, 0) + value
        held[account_id][symbol] = qty

    nothing: dict[str, int] = {}
    for account_id, state in states.items():
        total, external = cash_since.get(account_id, (0, 0))
        at_start = not state.reset_today
        then_units = 0
        qty_now, traded = held.get(account_id, nothing), net_today.get(account_id, nothing)
        # Most accounts hold nothing and traded nothing today: no set to build for them.
        for symbol in qty_now.keys() | traded.keys() if qty_now or traded else ():
            qty_then = qty_now.get(symbol, 0) - traded.get(symbol, 0)
            if qty_then:
                price = (
                    (closes.get(symbol) if at_start else None) or current.get(symbol) or closes.get(symbol, 0)
                )
                then_units += holding_value_units(price_units=price, qty=qty_then)
        state.day_start_equity_cents = state.cash_cents - total + round(then_units / UNITS_PER_CENT)
        state.flows_today_cents = external
        state.equity_cents = state.cash_cents + round(state.holdings_units / UNITS_PER_CENT)
    ordered = sorted(states.values(), key=lambda state: state.account_number)
    return Book(now=now, trading_day=calendar.trading_day_of(now), accounts=ordered)


# --- Leaderboard --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeaderboardRefreshResult:
    as_of: dt.datetime
    accounts: int
    snapshot_ids: dict[str, int]
    # Whether the top of the overall board (ranks and equities) differs from the previous one.
    changed: bool = False


def _ranking_fingerprint(ranked: list[tuple[AccountState, int, float]]) -> str:
    """A digest of a ranking: accounts, names, equities and baselines by rank (the returns follow)."""
    lines = []
    for state, baseline, _ in ranked:
        key = state.fingerprint_key
        if not key:
            key = state.fingerprint_key = f"{state.account_id}|{state.username}|{state.equity_cents}|"
        lines.append(f"{key}{baseline}\n")
    # One update of the whole text digests what one update per line would.
    return hashlib.blake2b("".join(lines).encode(), digest_size=32).hexdigest()


def _newest_snapshot_top(period: str) -> tuple[LeaderboardSnapshot | None, list[tuple[uuid.UUID, int]]]:
    """The newest stored board of ``period`` and its (account, equity) by rank at the top: two
    queries, reads only, whether there is a board or not."""
    newest = LeaderboardSnapshot.objects.filter(period=period).order_by("-as_of", "-id")
    top = list(
        LeaderboardEntry.objects.filter(
            snapshot_id=Subquery(newest.values("pk")[:1]), rank__lte=settings.DASHBOARD_LEADERBOARD_LIMIT
        )
        .order_by("rank")
        .values_list("account_id", "equity_cents")
    )
    # Read after the entries: a snapshot stored in between is newer than they are, and differs.
    return newest.first(), top


def leaderboard_refresh(
    *, now: dt.datetime | None = None, book: Book | None = None
) -> LeaderboardRefreshResult:
    """New overall and daily snapshots for every account, today's equity point per account, and the
    cached boards invalidated after commit. Older snapshots beyond SNAPSHOTS_KEPT are deleted.
    When the top of the overall board changed, dashboards are told after commit (analytics/events.py).

    Writes only what moved: a period whose ranking (accounts, names, equities, baselines by rank)
    has the newest stored one's fingerprint keeps that snapshot with its ``as_of`` moved to now (one
    update instead of 10,000 inserted entries for an idle book), and only the equity points that
    changed since the last run are upserted: reading the stored ones costs far less than rewriting
    them."""
    book = book or book_load(now=now)
    snapshot_ids: dict[str, int] = {}
    changed = False
    today_points = {
        account_id: (equity, flows)
        for account_id, equity, flows in AccountEquityDay.objects.filter(day=book.trading_day).values_list(
            "account_id", "equity_cents", "flows_cents"
        )
    }
    moved = [
        state
        for state in book.accounts
        if today_points.get(state.account_id) != (state.equity_cents, state.flows_today_cents)
    ]
    with transaction.atomic():
        for period in LeaderboardPeriod.values:
            ranked = book.ranked(period)
            stored, stored_top = _newest_snapshot_top(period)
            if period == LeaderboardPeriod.OVERALL:
                top = ranked[: settings.DASHBOARD_LEADERBOARD_LIMIT]
                changed = stored_top != [(state.account_id, state.equity_cents) for state, _, _ in top]
            fingerprint = _ranking_fingerprint(ranked)
            same = (
                stored is not None
                and stored.trading_day == book.trading_day
                and stored.fingerprint == fingerprint
            )
            if same:
                assert stored is not None
                # Never backwards: a reader's refresh may have moved it past this run's instant.
                LeaderboardSnapshot.objects.filter(pk=stored.pk, as_of__lt=book.now).update(as_of=book.now)
                snapshot_ids[period] = stored.pk
                continue
            snapshot = LeaderboardSnapshot.objects.create(
                period=period,
                as_of=book.now,
                trading_day=book.trading_day,
                account_count=len(ranked),
                fingerprint=fingerprint,
            )
            LeaderboardEntry.objects.bulk_create(
                (
                    LeaderboardEntry(
                        snapshot=snapshot,
                        account_id=state.account_id,
                        rank=rank,
                        account_number=state.account_number,
                        username=state.username,
                        equity_cents=state.equity_cents,
                        baseline_cents=baseline,
                        return_pct=gain,
                    )
                    for rank, (state, baseline, gain) in enumerate(ranked, start=1)
                ),
                batch_size=1000,
            )
            snapshot_ids[period] = snapshot.pk
            kept = LeaderboardSnapshot.objects.filter(period=period).order_by("-as_of", "-id")[
                :SNAPSHOTS_KEPT
            ]
            LeaderboardSnapshot.objects.filter(period=period).exclude(
                pk__in=list(kept.values_list("pk", flat=True))
            ).delete()
        if moved:
            AccountEquityDay.objects.bulk_create(
                (
                    AccountEquityDay(
                        account_id=state.account_id,
                        day=book.trading_day,
                        equity_cents=state.equity_cents,
                        flows_cents=state.flows_today_cents,
                    )
                    for state in moved
                ),
                update_conflicts=True,
                unique_fields=["account", "day"],
                update_fields=["equity_cents", "flows_cents"],
                batch_size=1000,
            )
        cache_manager().invalidate_on_commit(*(leaderboard_cache_key(p) for p in LeaderboardPeriod.values))
        if changed:
            # Registered after the invalidation, so a reader prompted by it finds the new board.
            leaderboard_changed_publish_on_commit(
                LeaderboardChanged(
                    period=LeaderboardPeriod.OVERALL,
                    snapshot_id=snapshot_ids[LeaderboardPeriod.OVERALL],
                    as_of=book.now,
                )
            )
    return LeaderboardRefreshResult(
        as_of=book.now,
        accounts=sum(state.is_default for state in book.accounts),
        snapshot_ids=snapshot_ids,
        changed=changed,
    )


# --- Per-account analytics ----------------------------------------------------------------------


@dataclass(frozen=True)
class RiskFigures:
    return_1w: float | None
    return_1m: float | None
    volatility: float | None
    max_drawdown: float | None
    sharpe: float | None


def risk_figures(
    *,
    points: Sequence[tuple[dt.date, int, int]],
    today: dt.date,
    risk_free_rate: float = 0.0,
    period_returns: bool = True,
) -> RiskFigures:
    """Figures from (day, equity, cash added that day) points in day order, the last being today.

    Daily returns exclude the day's added cash; period returns compound them (None without
    ``period_returns``: a game board, computed for every player every run, shows none); volatility
    and Sharpe are annualised over TRADING_DAYS_PER_YEAR; drawdown is the deepest fall of the
    compounded index from its running peak (a fraction, 0 when it never fell).
    """
    returns: list[tuple[dt.date, float]] = []
    for (_, before, _), (day, equity, flows) in itertools.pairwise(points):
        if before > 0:
            returns.append((day, (equity - flows - before) / before))

    def compounded(since: dt.date) -> float | None:
        window = [value for day, value in returns if day > since]
        if not window:
            return None
        return math.prod(1 + value for value in window) - 1

    values = [value for _, value in returns]
    volatility = sharpe = None
    if len(values) >= 2:
        deviation = statistics.stdev(values)
        volatility = deviation * math.sqrt(TRADING_DAYS_PER_YEAR)
        if deviation > 0:
            excess = statistics.fmean(values) - risk_free_rate / TRADING_DAYS_PER_YEAR
            sharpe = excess / deviation * math.sqrt(TRADING_DAYS_PER_YEAR)
    drawdown = None
    if values:
        index = peak = 1.0
        drawdown = 0.0
        for value in values:
            index *= 1 + value
            peak = max(peak, index)
            drawdown = max(drawdown, (peak - index) / peak)
    return RiskFigures(
        return_1w=compounded(today - dt.timedelta(days=7)) if period_returns else None,
        return_1m=compounded(today - dt.timedelta(days=30)) if period_returns else None,
        volatility=volatility,
        max_drawdown=drawdown,
        sharpe=sharpe,
    )


def account_analytics_refresh(
    *,
    now: dt.datetime | None = None,
    account_ids: Sequence[uuid.UUID] | None = None,
    book: Book | None = None,
) -> int:
    """Analytics rows for every account (or the ones named): the book, the equity series and the
    closing-fill tallies, two batch reads on top of the book's and in its snapshot when it loads
    the book itself (``analytics_refresh_all`` reads them in one with its book); one upsert."""
    if book is not None:
        return _account_analytics_store(_account_analytics_rows(book=book, narrowed=account_ids is not None))
    with read_snapshot():
        book = book_load(now=now, account_ids=account_ids)
        rows = _account_analytics_rows(book=book, narrowed=account_ids is not None)
    return _account_analytics_store(rows)


def _account_analytics_rows(*, book: Book, narrowed: bool) -> list[AccountAnalytics]:
    """The analytics of the book's accounts (``narrowed``: only theirs are read, not every one's)."""
    ids = [state.account_id for state in book.accounts]
    first_day = book.trading_day - dt.timedelta(days=SERIES_DAYS)
    series: dict[uuid.UUID, list[tuple[dt.date, int, int]]] = defaultdict(list)
    # From the trading day of each account's last reset on (the database reads ``reset_at``: see
    # AccountState.reset_today).
    equity_days = AccountEquityDay.objects.filter(day__gte=first_day, day__lt=book.trading_day).filter(
        Q(account__reset_at__isnull=True)
        | Q(day__gte=TruncDate("account__reset_at", tzinfo=calendar.trading_zone()))
    )
    if narrowed:
        equity_days = equity_days.filter(account_id__in=ids)
    for account_id, day, equity, flows in equity_days.order_by("account_id", "day").values_list(
        "account_id", "day", "equity_cents", "flows_cents"
    ):
        series[account_id].append((day, equity, flows))
    fills = Fill.objects.filter(Q(account__reset_at__isnull=True) | Q(filled_at__gt=F("account__reset_at")))
    if narrowed:
        fills = fills.filter(account_id__in=ids)
    tallies = {
        row["account_id"]: (row["wins"], row["losses"])
        for row in fills.values("account_id")
        .order_by()
        .annotate(
            wins=Count("id", filter=Q(realized_pl_cents__gt=0)),
            losses=Count("id", filter=Q(realized_pl_cents__lt=0)),
        )
    }
    ranks = {
        state.account_id: rank for rank, (state, _, _) in enumerate(book.ranked(LeaderboardPeriod.OVERALL), 1)
    }
    rows = []
    for state in book.accounts:
        points = [
            *series.get(state.account_id, ()),
            (book.trading_day, state.equity_cents, state.flows_today_cents),
        ]
        figures = risk_figures(
            points=points, today=book.trading_day, risk_free_rate=settings.ANALYTICS_RISK_FREE_RATE
        )
        long_total = sum(state.long_by_sector_units.values())
        wins, losses = tallies.get(state.account_id, (0, 0))
        rows.append(
            AccountAnalytics(
                account_id=state.account_id,
                as_of=book.now,
                equity_cents=state.equity_cents,
                return_1d=_ratio(state.equity_cents - state.daily_baseline_cents, state.daily_baseline_cents),
                return_1w=figures.return_1w,
                return_1m=figures.return_1m,
                return_since_reset=_ratio(state.equity_cents - state.capital_cents, state.capital_cents),
                volatility=figures.volatility,
                max_drawdown=figures.max_drawdown,
                sharpe=figures.sharpe,
                sector_allocation={
                    sector: round(value / long_total, 6)
                    for sector, value in sorted(state.long_by_sector_units.items())
                    if long_total > 0
                },
                win_rate=wins / (wins + losses) if wins + losses else None,
                closed_trades=wins + losses,
                rank=ranks.get(state.account_id),
            )
        )
    return rows


def _account_analytics_store(rows: list[AccountAnalytics]) -> int:
    fields = [f.name for f in AccountAnalytics._meta.concrete_fields if not f.primary_key]
    with transaction.atomic():
        AccountAnalytics.objects.bulk_create(
            rows, update_conflicts=True, unique_fields=["account"], update_fields=fields, batch_size=500
        )
        cache_manager().invalidate_on_commit(*(account_analytics_cache_key(row.account_id) for row in rows))
    return len(rows)


# --- Per-symbol stats ---------------------------------------------------------------------------


def symbol_stats_refresh(*, now: dt.datetime | None = None, symbols: Iterable[str] | None = None) -> int:
    """Stats for every active asset (or the ones named) in six batch reads and one upsert."""
    now = now or timezone.now()
    boundary = day_boundary(now)
    assets = Asset.objects.filter(active=True)
    if symbols is not None:
        assets = assets.filter(symbol__in=[symbol.upper() for symbol in symbols])
    wanted = list(assets.values_list("symbol", flat=True))
    if not wanted:
        return 0
    current = latest_quotes(symbols=wanted)
    closes = previous_closes(symbols=wanted, before=boundary)
    bars: dict[str, dict[str, Any]] = {
        row["symbol"]: dict(row)
        for row in MinuteBar.objects.filter(symbol__in=wanted, start__gte=boundary)
        .values("symbol")
        .order_by()
        .annotate(high=Max("high_units"), low=Min("low_units"), volume=Sum("volume"))
    }
    holdings = {
        row["asset__symbol"]: (row["holders"], int(row["net"]))
        for row in Position.objects.filter(asset__symbol__in=wanted)
        .exclude(qty=0)
        .values("asset__symbol")
        .order_by()
        .annotate(holders=Count("id"), net=Sum("qty"))
    }
    fills = dict(
        Fill.objects.filter(asset__symbol__in=wanted, filled_at__gte=boundary)
        .values("asset__symbol")
        .order_by()
        .annotate(count=Count("id"))
        .values_list("asset__symbol", "count")
    )
    rows = []
    for symbol in wanted:
        quote = current.get(symbol)
        last = quote.price if quote else None
        close = closes.get(symbol)
        bar = bars.get(symbol, {})
        highs = [value for value in (bar.get("high"), last) if value is not None]
        lows = [value for value in (bar.get("low"), last) if value is not None]
        holders, net = holdings.get(symbol, (0, 0))
        rows.append(
            SymbolStats(
                symbol=symbol,
                as_of=now,
                last_price_units=last,
                previous_close_units=close,
                change_today=(last - close) / close if last is not None and close else None,
                day_high_units=max(highs) if highs else None,
                day_low_units=min(lows) if lows else None,
                day_volume=int(bar.get("volume") or 0),
                holders=holders,
                net_shares_held=net,
                fills_today=fills.get(symbol, 0),
            )
        )
    fields = [f.name for f in SymbolStats._meta.concrete_fields if not f.primary_key]
    with transaction.atomic():
        SymbolStats.objects.bulk_create(
            rows, update_conflicts=True, unique_fields=["symbol"], update_fields=fields, batch_size=500
        )
        cache_manager().invalidate_on_commit(*(symbol_stats_cache_key(symbol) for symbol in wanted))
    return len(rows)


def analytics_refresh_all(*, now: dt.datetime | None = None) -> LeaderboardRefreshResult:
    """Leaderboards and account analytics from one load of the book (the periodic job's body),
    with the cyclic garbage collector paused (config/gc_pause.py)."""
    with gc_paused():
        # The analytics' own reads in the book's snapshot: a reset between them would pair the
        # book's equity with the series and tallies of the account started over.
        with read_snapshot():
            book = book_load(now=now)
            analytics = _account_analytics_rows(book=book, narrowed=False)
        result = leaderboard_refresh(book=book)
        _account_analytics_store(analytics)
    return result


def leaderboards_refresh_all(*, now: dt.datetime | None = None) -> LeaderboardRefreshResult:
    """The leaderboard job's body: the global boards and every running game's live board from one
    load of the book, then the final standings of games that ended since the last run. The cyclic
    garbage collector is paused meanwhile (config/gc_pause.py: its full collections over the book
    were about 40 % of the run's CPU time at 10,000 players)."""
    with gc_paused():
        book = book_load(now=now)
        result = leaderboard_refresh(book=book)
        game_boards_refresh(book=book)
        game_standings_freeze_due(now=book.now)
    return result


# --- Game leaderboards (docs/architecture.md, Game leaderboards) --------------------------------


@dataclass(frozen=True)
class GameStanding:
    account_id: uuid.UUID
    username: str
    equity_cents: int
    return_pct: float
    sharpe: float | None
    max_drawdown: float | None


def game_over_q(now: dt.datetime) -> Q:
    """Games whose end (planned, or early) has come."""
    return Q(ends_at__lte=now) | Q(ended_at__lte=now)


def game_freeze_grace() -> dt.timedelta:
    """How long after a game's end its standings are frozen (GAME_FREEZE_GRACE_S): the market
    writer commits ticks a moment after their instant, so a freeze at the end itself could price
    a symbol at a tick before the last one at or before the end (docs/architecture.md, Game
    leaderboards)."""
    return dt.timedelta(seconds=float(settings.GAME_FREEZE_GRACE_S))


def _game_ranked(standings: Iterable[GameStanding]) -> list[GameStanding]:
    # Ties by equity, then by name, so equal players keep one order from run to run.
    return sorted(standings, key=lambda row: (-row.return_pct, -row.equity_cents, row.username))


def _game_points(
    *, account_ids: Iterable[uuid.UUID] | QuerySet[Any], since: dt.date, before: dt.date
) -> dict[uuid.UUID, list[tuple[dt.date, int, int]]]:
    """Each account's stored daily equity from ``since`` to the day before ``before``: one query
    (none on a game's first day, when there is nothing before it)."""
    points: dict[uuid.UUID, list[tuple[dt.date, int, int]]] = defaultdict(list)
    if since >= before:
        return points
    wanted = account_ids if isinstance(account_ids, QuerySet) else list(account_ids)
    rows = AccountEquityDay.objects.filter(account_id__in=wanted, day__gte=since, day__lt=before).order_by(
        "account_id", "day"
    )
    for account_id, day, equity, flows in rows.values_list(
        "account_id", "day", "equity_cents", "flows_cents"
    ):
        points[account_id].append((day, equity, flows))
    return points


def _game_series(
    points: list[tuple[dt.date, int, int]],
    *,
    start_day: dt.date,
    baseline_cents: int,
    today: tuple[dt.date, int, int],
) -> list[tuple[dt.date, int, int]]:
    """A player's daily equity for the risk figures: the starting cash on the eve of the start,
    so the first day's move counts, then the stored days since the start, then ``today``."""
    eve = (start_day - dt.timedelta(days=1), baseline_cents, 0)
    stored = [point for point in points if start_day <= point[0] < today[0]]
    return [eve, *stored, today]


def _game_standing(
    *,
    account_id: uuid.UUID,
    username: str,
    equity_cents: int,
    baseline_cents: int,
    points: list[tuple[dt.date, int, int]],
    today: dt.date,
    figures_memo: dict[tuple[Any, ...], RiskFigures] | None = None,
) -> GameStanding:
    # The figures are a function of the series alone: players with the same series (every one who
    # has not traded yet, in a large game most of them) share one computation when given a memo.
    key = (today, *points)
    figures = figures_memo.get(key) if figures_memo is not None else None
    if figures is None:
        figures = risk_figures(
            points=points, today=today, risk_free_rate=settings.ANALYTICS_RISK_FREE_RATE, period_returns=False
        )
        if figures_memo is not None:
            figures_memo[key] = figures
    return GameStanding(
        account_id=account_id,
        username=username,
        equity_cents=equity_cents,
        return_pct=_ratio(equity_cents - baseline_cents, baseline_cents),
        sharpe=figures.sharpe,
        max_drawdown=figures.max_drawdown,
    )


def _game_standings_rows(ranked: list[GameStanding]) -> list[list[Any]]:
    """A board's ``standings``: usernames only (no account key), best first."""
    return [[row.username, row.equity_cents, row.return_pct, row.sharpe, row.max_drawdown] for row in ranked]


def game_boards_refresh(
    *, now: dt.datetime | None = None, book: Book | None = None, game_ids: Sequence[uuid.UUID] | None = None
) -> int:
    """Live boards of every running game (or of the games named that are not over yet), ranked by
    return since the start: equity against the game's starting cash. The players (not removed),
    their daily equity and, unless given, the book of their accounts are loaded once for all the
    games; the boards (one row each, the standings in it) are written with one bulk insert, the
    newest SNAPSHOTS_KEPT live boards of each game kept. Returns the number of boards written."""
    now = book.now if book is not None else now or timezone.now()
    games = Game.objects.exclude(game_over_q(now))
    games = games.filter(starts_at__lte=now) if game_ids is None else games.filter(pk__in=list(game_ids))
    found = {row[0]: row for row in games.values_list("id", "starts_at", "starting_cash_cents")}
    if not found:
        return 0
    players: dict[uuid.UUID, list[tuple[uuid.UUID, str]]] = defaultdict(list)
    roster = GamePlayer.objects.filter(game_id__in=list(found), removed_at__isnull=True)
    for game_id, account_id, username in roster.values_list("game_id", "account_id", "user__username"):
        players[game_id].append((account_id, username))
    account_ids = roster.values("account_id")
    if book is None:
        book = book_load(now=now, account_ids=account_ids)
    states = {state.account_id: state for state in book.accounts}
    first_day = min(calendar.trading_day_of(starts_at) for _, starts_at, _ in found.values())
    points = _game_points(account_ids=account_ids, since=first_day, before=book.trading_day)
    boards: list[GameBoard] = []
    figures_memo: dict[tuple[Any, ...], RiskFigures] = {}
    for game_id, (_, starts_at, baseline) in found.items():
        start_day = calendar.trading_day_of(starts_at)
        standings = []
        for account_id, username in players[game_id]:
            state = states.get(account_id)
            if state is None:  # joined after the book was loaded: on the next board
                continue
            series = _game_series(
                points.get(account_id, []),
                start_day=start_day,
                baseline_cents=baseline,
                today=(book.trading_day, state.equity_cents, state.flows_today_cents),
            )
            standings.append(
                _game_standing(
                    account_id=account_id,
                    username=username,
                    equity_cents=state.equity_cents,
                    baseline_cents=baseline,
                    points=series,
                    today=book.trading_day,
                    figures_memo=figures_memo,
                )
            )
        ranked = _game_ranked(standings)
        boards.append(
            GameBoard(
                game_id=game_id,
                as_of=book.now,
                player_count=len(ranked),  # players joined after the book was read rank next run
                baseline_cents=baseline,
                standings=_game_standings_rows(ranked),
            )
        )
    with transaction.atomic():
        GameBoard.objects.bulk_create(boards)
        # Each game keeps its newest SNAPSHOTS_KEPT live boards, as the global boards do.
        live = (
            GameBoard.objects.filter(game_id__in=list(found), final=False)
            .order_by("game_id", "-as_of", "-id")
            .values_list("game_id", "pk")
        )
        stale = [
            pk
            for _, rows in itertools.groupby(live, key=lambda row: row[0])
            for _, pk in itertools.islice(rows, SNAPSHOTS_KEPT, None)
        ]
        if stale:
            GameBoard.objects.filter(pk__in=stale).delete()
        cache_manager().invalidate_on_commit(*(game_board_cache_key(game_id) for game_id in found))
    return len(boards)


def _prices_known_at(*, symbols: set[str], at: dt.datetime) -> dict[str, int]:
    """Each symbol's last price known at ``at``, never one from after it: its last tick at or
    before ``at``; else, of the close of its last minute bar that ended by then and the close of
    its last trading day that ended by then (the end day's own daily bar goes on moving after
    ``at``), the one that ended later: a minute bar from weeks ago does not beat yesterday's
    close, and a minute bar after that day's close beats it. A query per source still needed; a
    symbol none of them prices is absent."""
    prices = prices_at(symbols=symbols, at=at)
    missing = symbols - prices.keys()
    if not missing:
        return prices
    ended = newest_per_symbol(
        MinuteBar, symbols=missing, order_key="start", start__lte=at - dt.timedelta(minutes=1)
    )
    minute = {
        symbol: (calendar.trading_day_of(start), close)
        for symbol, start, close in MinuteBar.objects.filter(pk__in=ended).values_list(
            "symbol", "start", "close_units"
        )
    }
    days = newest_per_symbol(DailyBar, symbols=missing, order_key="start", start__lt=day_boundary(at))
    daily = {
        symbol: (calendar.trading_day_of(start), close)
        for symbol, start, close in DailyBar.objects.filter(pk__in=days).values_list(
            "symbol", "start", "close_units"
        )
    }
    for symbol in missing:
        bar, day = minute.get(symbol), daily.get(symbol)
        # A day's close ends that day: only a minute bar of a later trading day is later.
        if bar is not None and (day is None or bar[0] > day[0]):
            prices[symbol] = bar[1]
        elif day is not None:
            prices[symbol] = day[1]
    return prices


def _game_standings_at(*, game: Game, at: dt.datetime) -> list[GameStanding]:
    """The players' standings at ``at``: cash and holdings as they were then (what moved after is
    taken back out of today's), priced at each symbol's last price known at ``at``
    (``_prices_known_at``). The same queries for any number of players."""
    roster = list(
        GamePlayer.objects.filter(game=game, removed_at__isnull=True).values_list(
            "account_id", "user__username"
        )
    )
    ids = [account_id for account_id, _ in roster]
    cash = dict(Account.objects.filter(pk__in=ids).values_list("pk", "cash_cents"))
    for row in (
        CashEntry.objects.filter(account_id__in=ids, created_at__gt=at)
        .values("account_id")
        .order_by()
        .annotate(total=Sum("amount_cents"))
    ):
        cash[row["account_id"]] -= int(row["total"])
    held: dict[uuid.UUID, dict[str, int]] = defaultdict(dict)
    cost: dict[tuple[uuid.UUID, str], tuple[int, int]] = {}
    for account_id, symbol, qty, cost_basis in Position.objects.filter(account_id__in=ids).values_list(
        "account_id", "asset__symbol", "qty", "cost_basis_cents"
    ):
        held[account_id][symbol] = qty
        cost[(account_id, symbol)] = (qty, cost_basis)
    big = BigIntegerField()
    signed_qty = Case(When(side=OrderSide.BUY, then=F("qty")), default=-F("qty"), output_field=big)
    for fill_row in (
        Fill.objects.filter(account_id__in=ids, filled_at__gt=at)
        .values("account_id", "asset__symbol")
        .order_by()
        .annotate(net=Sum(signed_qty))
    ):
        by = held[fill_row["account_id"]]
        by[fill_row["asset__symbol"]] = by.get(fill_row["asset__symbol"], 0) - int(fill_row["net"])
    symbols = {symbol for by in held.values() for symbol, qty in by.items() if qty}
    prices = _prices_known_at(symbols=symbols, at=at)
    end_day = calendar.trading_day_of(at)
    points = _game_points(account_ids=ids, since=calendar.trading_day_of(game.starts_at), before=end_day)
    standings = []
    for account_id, username in roster:
        holdings = 0
        for symbol, qty in held.get(account_id, {}).items():
            if not qty:
                continue
            price = prices.get(symbol)
            if price is None:
                # No price of the symbol at all before the end: the shares at what they cost.
                cost_qty, basis = cost.get((account_id, symbol), (0, 0))
                price = abs(basis) * UNITS_PER_CENT * QTY_SCALE // abs(cost_qty) if cost_qty else 0
            holdings += holding_value_units(price_units=price, qty=qty)
        equity = cash[account_id] + round(holdings / UNITS_PER_CENT)
        series = _game_series(
            points.get(account_id, []),
            start_day=calendar.trading_day_of(game.starts_at),
            baseline_cents=game.starting_cash_cents,
            today=(end_day, equity, 0),
        )
        standings.append(
            _game_standing(
                account_id=account_id,
                username=username,
                equity_cents=equity,
                baseline_cents=game.starting_cash_cents,
                points=series,
                today=end_day,
            )
        )
    return _game_ranked(standings)


SNAPSHOT_NESTED = (
    "_one_snapshot opens its own transaction and must not run inside a caller's: there it would "
    "read at the caller's isolation (READ COMMITTED on PostgreSQL, a moment per statement)"
)


@contextlib.contextmanager
def _one_snapshot() -> Iterator[None]:
    """A read-only transaction whose reads all see the database at one moment: REPEATABLE READ,
    READ ONLY on PostgreSQL, whose default (READ COMMITTED) gives each statement a moment of its
    own, so cash read before a fill committed and positions read after it would both count its
    money. On SQLite a DEFERRED transaction (``_sqlite_begin_deferred``): under WAL its reads see
    the moment of its first, and it takes no lock, where the project's BEGIN IMMEDIATE would take
    the database's write lock and hold the market's tick writer and every order behind a page.

    Its own transaction or none (a durable block): inside a caller's, whose isolation its first
    statement set already, it raises ``TransactionManagementError`` instead of reading at READ
    COMMITTED unseen. Only a test case's transaction (Django's, which durable blocks allow) is
    read in as it is."""
    outermost = not connection.in_atomic_block
    with contextlib.ExitStack() as stack:
        try:
            with _sqlite_begin_deferred(outermost=outermost):
                stack.enter_context(transaction.atomic(durable=True))
        except RuntimeError as nested:  # "A durable atomic block cannot be nested ..."
            raise TransactionManagementError(SNAPSHOT_NESTED) from nested
        if outermost and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


@contextlib.contextmanager
def _sqlite_begin_deferred(*, outermost: bool) -> Iterator[None]:
    """On SQLite, the transaction an outermost atomic block opens meanwhile begins DEFERRED, not
    with the connection's IMMEDIATE (config/settings.py, for writers): for a transaction that only
    reads. Django reads the mode at each BEGIN; connecting sets it from the settings, so the
    connection is opened first."""
    if not outermost or connection.vendor != "sqlite":
        yield
        return
    connection.ensure_connection()
    sqlite: Any = connection  # django.db.backends.sqlite3's wrapper, which has the mode
    mode = sqlite.transaction_mode
    sqlite.transaction_mode = "DEFERRED"
    try:
        yield
    finally:
        sqlite.transaction_mode = mode


def game_board_at_end_get(*, game: Game) -> GameBoard:
    """The standings at ``game``'s end as the freeze computes them (``_game_standings_at``), in
    a board that is not stored: what the board shows between the end and the freeze when the game
    ended before its first live board was computed (``analytics.selectors``). Writes nothing.

    Its queries (roster, cash, positions, fills and entries since the end) read one snapshot
    (``_one_snapshot``): a fill of the last moment committing meanwhile counts wholly or not at
    all, never as cash still held and shares already bought."""
    with _one_snapshot():
        ranked = _game_standings_at(game=game, at=game.closes_at())
    return GameBoard(
        game=game,
        as_of=game.closes_at(),
        final=False,
        player_count=len(ranked),
        baseline_cents=game.starting_cash_cents,
        standings=_game_standings_rows(ranked),
    )


def _game_accounts_lock(game: Game) -> None:
    """Take the row lock of each account in ``game`` (not removed) in one statement, in key order,
    after the game's: the lock every write to an account's money, orders or positions takes first
    (``trading.services._lock_account``, NO KEY UPDATE), so until this transaction ends none of
    them commits and each read of PostgreSQL's READ COMMITTED sees the same money. The order is
    ``game_end``'s (the game's row, then its accounts sorted), so the two never wait in a ring.
    Nothing on SQLite: its IMMEDIATE transactions are serialised already, from BEGIN."""
    if not connection.features.has_select_for_update:
        return
    players = GamePlayer.objects.filter(game=game, removed_at__isnull=True).values("account_id")
    list(
        Account.objects.select_for_update(no_key=True)
        .filter(pk__in=players)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def game_standings_freeze(*, game_id: uuid.UUID, now: dt.datetime | None = None) -> GameBoard:
    """The final standings of a game that is over, stored the first time and returned as stored
    ever after: priced at the last tick at or before the game's end, with cash and holdings as they
    were then, so nothing that happens after the end moves them. Under the game's row lock (and a
    unique final board per game), so two freezes store one.

    Its reads of the players' money are of one moment: it holds the row lock of every account it
    prices (``_game_accounts_lock``) before reading any, so a fill of the last moment that commits
    meanwhile counts wholly or not at all, never as cash still held and shares already bought. Not
    one REPEATABLE READ snapshot as the closing board (``_one_snapshot``): the game's lock is this
    transaction's first statement, which would fix the snapshot before waiting for another freeze
    (whose board it would then not see), and the locks hold inside a caller's transaction too."""
    now = now or timezone.now()
    with transaction.atomic():
        game = Game.objects.select_for_update().filter(pk=game_id).first()
        if game is None:
            raise NotFound("game not found")
        existing = GameBoard.objects.filter(game=game, final=True).first()
        if existing is not None:
            return existing
        end = game.closes_at()
        if now < end + game_freeze_grace():
            raise InvalidRequest(
                "the game is not over yet" if now < end else "the game's final standings are due shortly"
            )
        _game_accounts_lock(game)
        ranked = _game_standings_at(game=game, at=end)
        board = GameBoard.objects.create(
            game=game,
            as_of=end,
            final=True,
            player_count=len(ranked),
            baseline_cents=game.starting_cash_cents,
            standings=_game_standings_rows(ranked),
        )
        # The live boards are history now: the final one answers from here on.
        GameBoard.objects.filter(game=game, final=False).delete()
        cache_manager().invalidate_on_commit(game_board_cache_key(game.pk), game_standings_cache_key(game.pk))
    return board


def game_standings_freeze_due(*, now: dt.datetime | None = None) -> int:
    """Freeze the standings of every game over for longer than the freeze grace that has none yet
    (one query when none is due); returns how many were frozen."""
    now = now or timezone.now()
    due = list(
        Game.objects.filter(game_over_q(now - game_freeze_grace()))
        .exclude(pk__in=GameBoard.objects.filter(final=True).values("game_id"))
        .values_list("pk", flat=True)
    )
    for game_id in due:
        game_standings_freeze(game_id=game_id, now=now)
    return len(due)


# --- Frontend performance reports -------------------------------------------------------------


@dataclass(frozen=True)
class FrontendFigures:
    """What a dashboard page measured over one report interval (docs/dashboard.md)."""

    interval_s: float
    renders: int
    updates: int
    render_ms_p50: float
    render_ms_p95: float
    render_ms_max: float
    long_tasks: int
    long_task_ms: float
    frames: int
    dropped_frames: int
    dom_nodes: int
    # None where the browser does not expose its heap (only Chromium does).
    js_heap_bytes: int | None = None


def frontend_sample_record(
    *,
    user_id: int | None,
    page: str,
    figures: FrontendFigures,
    renderer: str = "",
    user_agent: str = "",
    now: dt.datetime | None = None,
) -> FrontendSample:
    """Store one page's performance report and add it to the browser series (analytics/metrics.py);
    a negative or non-finite figure is refused."""
    if not 1 <= len(page) <= FRONTEND_PAGE_MAX_LENGTH:
        raise InvalidRequest(f"page must be 1 to {FRONTEND_PAGE_MAX_LENGTH} characters")
    values = asdict(figures)
    for name, value in values.items():
        if value is None and name == "js_heap_bytes":
            continue
        if value is None or not math.isfinite(value) or value < 0:
            raise InvalidRequest(f"{name} must be a non-negative number")
    if len(renderer) > FRONTEND_RENDERER_MAX_LENGTH:
        raise InvalidRequest(f"renderer must be at most {FRONTEND_RENDERER_MAX_LENGTH} characters")
    sample = FrontendSample.objects.create(
        user_id=user_id,
        page=page,
        renderer=renderer,
        received_at=now or timezone.now(),
        user_agent=user_agent[:USER_AGENT_MAX_LENGTH],
        **values,
    )
    frontend_report_count(page=page, renderer=renderer, figures=figures)
    return sample
