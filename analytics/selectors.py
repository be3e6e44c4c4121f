"""Reads of the precomputed rows, cache-through (config.cache), in a fixed number of queries.

A read that may write says so in its name: ``*_get_or_refresh`` recomputes and stores a board
found too old first, ``*_get_or_compute`` computes and stores rows that do not exist yet; each
fills the cache, as every cache-through read does.

The leaderboard is never served older than ``LEADERBOARD_MAX_STALENESS_S`` (Property 11,
docs/properties.md): a board found older when read is recomputed synchronously, by one process under
the stampede lock while the others wait for its result, and only then served. Payloads are
JSON-shaped dicts, exactly what the endpoints answer, so a cache hit costs no serialisation work and
no queries.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone

from analytics import services
from analytics.models import (
    AccountAnalytics,
    GameBoard,
    LeaderboardEntry,
    LeaderboardPeriod,
    LeaderboardSnapshot,
    SymbolStats,
)
from config.cache import cache_manager
from trading.api.serializers import rfc3339
from trading.errors import InvalidRequest, NotFound, TradingError
from trading.models import Account, Asset, Game
from trading.units import cents_to_str, qty_to_str, units_to_str


def _snapshot_payload(snapshot: LeaderboardSnapshot, *, limit: int | None = None) -> dict[str, Any]:
    # Usernames only: every signed-in user reads the board, and an account number is what a
    # support request or a statement identifies an account by (the staff CSV keeps it).
    entries = (
        LeaderboardEntry.objects.filter(snapshot=snapshot)
        .order_by("rank")
        .values_list("rank", "username", "equity_cents", "baseline_cents", "return_pct")[
            : limit or settings.LEADERBOARD_LIMIT_MAX
        ]
    )
    return {
        "period": snapshot.period,
        "as_of": snapshot.as_of.isoformat(),
        "trading_day": snapshot.trading_day.isoformat(),
        "account_count": snapshot.account_count,
        "entries": [
            {
                "rank": rank,
                "username": username,
                "equity": cents_to_str(equity),
                "baseline": cents_to_str(baseline),
                "return_pct": round(gain * 100, 4),
            }
            for rank, username, equity, baseline, gain in entries
        ],
    }


def _latest_snapshot(period: str) -> LeaderboardSnapshot | None:
    return LeaderboardSnapshot.objects.filter(period=period).order_by("-as_of", "-id").first()


def _stored_board(period: str) -> dict[str, Any] | None:
    snapshot = _latest_snapshot(period)
    return _snapshot_payload(snapshot) if snapshot else None


def leaderboard_snapshot_get(*, period: str, snapshot_id: int, limit: int) -> dict[str, Any] | None:
    """A stored board as ``GET /v2/leaderboard?period=<period>&limit=<limit>`` answers it, read from
    the database (not the cache, which another process may not have invalidated yet). Falls back to
    the newest board of the period once the snapshot has been pruned; None when there is none."""
    snapshot = LeaderboardSnapshot.objects.filter(pk=snapshot_id, period=period).first()
    if snapshot is None:
        snapshot = _latest_snapshot(period)
    return _snapshot_payload(snapshot, limit=limit) if snapshot else None


def _age(payload: dict[str, Any] | None, now: dt.datetime) -> float:
    if payload is None:
        return float("inf")
    return (now - dt.datetime.fromisoformat(payload["as_of"])).total_seconds()


def leaderboard_whole_get_or_refresh(
    *, period: str, limit: int | None = None, now: dt.datetime | None = None
) -> tuple[dict[str, Any], int]:
    """The newest board of ``period``, whole, as the cache holds it (shared: never modify it), and
    the checked ``limit``; ``leaderboard_first`` cuts the board to it. A board older than the
    staleness bound is recomputed and stored first (``services.leaderboard_refresh``)."""
    if period not in LeaderboardPeriod.values:
        raise InvalidRequest(f"period must be one of {', '.join(LeaderboardPeriod.values)}")
    limit = settings.LEADERBOARD_LIMIT_DEFAULT if limit is None else limit
    if not 1 <= limit <= settings.LEADERBOARD_LIMIT_MAX:
        raise InvalidRequest(f"limit must be between 1 and {settings.LEADERBOARD_LIMIT_MAX}")
    now = now or timezone.now()
    bound = float(settings.LEADERBOARD_MAX_STALENESS_S)
    manager = cache_manager()
    key = services.leaderboard_cache_key(period)
    board: dict[str, Any] | None = manager.cached(key, "leaderboard", lambda: _stored_board(period))
    if _age(board, now) > bound:
        board = _board_refreshed(period=period, now=now, bound=bound)
    assert board is not None
    return board, limit


# The periods once: ``LeaderboardPeriod.values`` builds its list on every call (~25 us).
_PERIODS = frozenset(LeaderboardPeriod.values)


def leaderboard_whole_held(*, period: str, limit: int, now: dt.datetime) -> dict[str, Any] | None:
    """``leaderboard_whole_get_or_refresh``'s board when this process's L1 holds it within the
    staleness bound, for a ``period`` and ``limit`` it accepts; else None, having done nothing
    (the cached reads' fast path, analytics/fast_reads.py, then hands the request to the view)."""
    if period not in _PERIODS or not 1 <= limit <= settings.LEADERBOARD_LIMIT_MAX:
        return None
    board: dict[str, Any] | None = cache_manager().local_get(services.leaderboard_cache_key(period))
    if board is None or _age(board, now) > float(settings.LEADERBOARD_MAX_STALENESS_S):
        return None
    return board


def leaderboard_first(board: dict[str, Any], limit: int) -> dict[str, Any]:
    return {**board, "entries": board["entries"][:limit]}


def leaderboard_get_or_refresh(
    *, period: str, limit: int | None = None, now: dt.datetime | None = None
) -> dict[str, Any]:
    """The newest board of ``period``, its first ``limit`` entries, never older than the bound
    (recomputed and stored first when it was)."""
    board, limit = leaderboard_whole_get_or_refresh(period=period, limit=limit, now=now)
    return leaderboard_first(board, limit)


def _board_refreshed(*, period: str, now: dt.datetime, bound: float) -> dict[str, Any]:
    board = _refreshed_once(
        lock=f"leaderboard-refresh:{period}",
        stored=lambda: _stored_board(period),
        refresh=lambda: services.leaderboard_refresh(now=now),
        now=now,
        bound=bound,
    )
    assert board is not None
    return board


def _refreshed_once(
    *,
    lock: str,
    stored: Callable[[], dict[str, Any] | None],
    refresh: Callable[[], object],
    now: dt.datetime,
    bound: float,
) -> dict[str, Any] | None:
    """A stale board's fresh successor, for bounded work in the web processes: the reader holding
    ``lock`` (one per board across processes) refreshes it, the others wait for that and read what
    it stored. A reader whose wait ends with the lock still held waits again rather than computing
    the same board beside the holder (which, under load, is how a stale board became a recompute
    in every worker). A holder that dies or overruns loses the lock after CACHE_LOCK_SECONDS and a
    waiter takes over; a waiter that has waited that long with the lock still held answers 503
    (``BoardUnavailable``), never a board older than the bound."""
    manager = cache_manager()
    # The lock's lifetime plus one more wait: a reader that came just after the holder took the
    # lock is still waiting when a dead holder's lock expires, and takes over instead of a 503.
    deadline = time.monotonic() + manager.config.lock_seconds + manager.config.lock_wait_seconds
    while True:
        with manager.single_flight(lock) as holder:
            # Another process may have refreshed while this one waited for the lock.
            board = stored()
            if _age(board, now) > bound and holder:
                refresh()
                board = stored()
        if _age(board, now) <= bound or holder:
            return board
        if time.monotonic() >= deadline:
            raise BoardUnavailable("the leaderboard is being recomputed; retry in a moment")


def leaderboard_csv_rows(*, period: str) -> Iterator[list[str | int | Decimal | None]]:
    """Every entry of the newest board for a staff export (uncached: rare and complete). Text
    cells are ``str``, figures numbers, so the CSV writer neutralises formulas in the text only
    (trading/api/csv_export.py)."""
    if period not in LeaderboardPeriod.values:
        raise InvalidRequest(f"period must be one of {', '.join(LeaderboardPeriod.values)}")
    snapshot = _latest_snapshot(period)
    yield ["rank", "account_number", "username", "equity", "baseline", "return_pct", "as_of"]
    if snapshot is None:
        return
    as_of = snapshot.as_of.isoformat()
    entries = (
        LeaderboardEntry.objects.filter(snapshot=snapshot)
        .order_by("rank")
        .values_list("rank", "account_number", "username", "equity_cents", "baseline_cents", "return_pct")
    )
    for rank, number, username, equity, baseline, gain in entries.iterator(chunk_size=2000):
        yield [
            rank,
            number,
            username,
            Decimal(equity).scaleb(-2),
            Decimal(baseline).scaleb(-2),
            Decimal(f"{gain * 100:.4f}"),
            as_of,
        ]


# --- Game leaderboards (docs/architecture.md, Game leaderboards) ---------------------------------


class BoardUnavailable(TradingError):
    """A stale board another process has been recomputing for longer than the lock lives: answered
    503 (retry shortly) rather than served stale or recomputed beside it."""

    status = 503


def _game_board_payload(board: GameBoard) -> dict[str, Any]:
    # The whole stored board as the cache holds it: the standings compact (one list per player,
    # usernames only, as on the global board), expanded into entries a page at a time.
    return {
        "game_id": str(board.game_id),
        "status": "final" if board.final else "live",
        # RFC 3339 with microseconds, as the API writes its times (trading/api/serializers.py).
        "as_of": rfc3339(board.as_of),
        "starting_cash": cents_to_str(board.baseline_cents),
        "player_count": board.player_count,
        "standings": board.standings,
    }


def _game_entry(rank: int, row: list[Any]) -> dict[str, Any]:
    username, equity, gain, sharpe, drawdown = row
    return {
        "rank": rank,
        "username": username,
        "equity": cents_to_str(equity),
        "return_pct": round(gain * 100, 4),
        "sharpe": _float(sharpe, 4),
        "max_drawdown": _float(drawdown),
    }


def _game_board_stored(game: Game, *, final: bool) -> dict[str, Any] | None:
    board = GameBoard.objects.filter(game=game, final=final).order_by("-as_of", "-id").first()
    return _game_board_payload(board) if board else None


def _game_final_get_or_freeze(game: Game, now: dt.datetime) -> dict[str, Any]:
    def load() -> dict[str, Any]:
        board = _game_board_stored(game, final=True)
        if board is None:
            # The job has not frozen it yet: the first reader does (once: under the game's lock).
            services.game_standings_freeze(game_id=game.pk, now=now)
            board = _game_board_stored(game, final=True)
        assert board is not None
        return board

    final: dict[str, Any] = cache_manager().cached(
        services.game_standings_cache_key(game.pk), "leaderboard", load
    )
    return final


def _game_live_cached(game: Game) -> dict[str, Any] | None:
    board: dict[str, Any] | None = cache_manager().cached(
        services.game_board_cache_key(game.pk), "leaderboard", lambda: _game_board_stored(game, final=False)
    )
    return board


def _game_closing(game: Game) -> dict[str, Any]:
    """Between the end and the freeze (GAME_FREEZE_GRACE_S): the last live board, marked closing
    (nothing can trade any more; the final standings follow). A game that ended before its first
    live board was computed has none: its standings at the end, computed as the freeze computes
    them (``services.game_board_at_end_get``) but not stored, once per game across processes (the
    cache's loader), so every player shows with the real count instead of an empty board. Kept
    only briefly (CACHE_TTLS["game_closing"], config/settings.py): a fill of the game's last
    moment may still commit in the grace, and the board shows it a moment later, not a whole
    leaderboard TTL later."""
    board = _game_live_cached(game)
    if board is None:
        board = cache_manager().cached(
            services.game_closing_cache_key(game.pk),
            "game_closing",
            lambda: _game_board_payload(services.game_board_at_end_get(game=game)),
        )
    return {**board, "status": "closing"}


def _game_live_get_or_refresh(game: Game, now: dt.datetime) -> dict[str, Any]:
    bound = float(settings.LEADERBOARD_MAX_STALENESS_S)
    board = _game_live_cached(game)
    if _age(board, now) <= bound:
        assert board is not None
        return board
    board = _refreshed_once(
        lock=f"game-board-refresh:{game.pk}",
        stored=lambda: _game_board_stored(game, final=False),
        refresh=lambda: services.game_boards_refresh(now=now, game_ids=[game.pk]),
        now=now,
        bound=bound,
    )
    if board is None:
        # The game ended after the caller read it (the refresh skips games that are over).
        game.refresh_from_db()
        if now < game.closes_at():
            raise RuntimeError(f"game {game.pk} is running but its board was not written")
        return game_leaderboard_whole_get_or_refresh(game=game, now=now)
    return board


def game_leaderboard_whole_get_or_refresh(*, game: Game, now: dt.datetime | None = None) -> dict[str, Any]:
    """A game's whole stored board as the cache holds it (shared: never modify it): ``status``,
    ``as_of``, ``starting_cash``, ``player_count`` and ``standings``, every player best first as
    [username, equity_cents, return (a fraction), sharpe, max_drawdown]. Once the game is over and
    GAME_FREEZE_GRACE_S has passed: its final standings (``status`` "final", ``as_of`` the end),
    frozen by this read if the job has not yet; within the grace, the last live board marked
    "closing". Before: the live board (``status`` "live"), never older than
    LEADERBOARD_MAX_STALENESS_S, recomputed first when it was (once per game across processes:
    the others wait for it). The caller has checked the reader may see ``game``
    (``trading.selectors.game_get``)."""
    now = now or timezone.now()
    end = game.closes_at()
    if now >= end + services.game_freeze_grace():
        return _game_final_get_or_freeze(game, now)
    if now >= end:
        return _game_closing(game)
    return _game_live_get_or_refresh(game, now)


def game_leaderboard_page(
    board: dict[str, Any], *, limit: int | None = None, offset: int = 0, username: str | None = None
) -> dict[str, Any]:
    """One page of a whole board (``game_leaderboard_whole_get_or_refresh``): ``limit`` entries
    (1 to LEADERBOARD_LIMIT_MAX, that many when None) from rank ``offset + 1``, and ``me``, the
    entry of ``username`` wherever it ranks (None when not given or not a player)."""
    if limit is None:
        limit = settings.LEADERBOARD_LIMIT_MAX
    if not 1 <= limit <= settings.LEADERBOARD_LIMIT_MAX:
        raise InvalidRequest(f"limit must be between 1 and {settings.LEADERBOARD_LIMIT_MAX}")
    if offset < 0:
        raise InvalidRequest("offset must be 0 or more")
    standings = board["standings"]
    me = None
    if username is not None:
        # A scan of the usernames: well under a millisecond for 10,000 players.
        index = next((i for i, row in enumerate(standings) if row[0] == username), None)
        me = None if index is None else _game_entry(index + 1, standings[index])
    return {
        "game_id": board["game_id"],
        "status": board["status"],
        "as_of": board["as_of"],
        "starting_cash": board["starting_cash"],
        "player_count": board["player_count"],
        "offset": offset,
        "entries": [
            _game_entry(rank, row)
            for rank, row in enumerate(standings[offset : offset + limit], start=offset + 1)
        ],
        "me": me,
    }


def game_leaderboard_get_or_refresh(
    *,
    game: Game,
    limit: int | None = None,
    offset: int = 0,
    username: str | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """What ``GET /v2/games/{id}/leaderboard`` answers: ``game_leaderboard_whole_get_or_refresh``
    cut to one page (``game_leaderboard_page``), the caller's own entry in ``me``."""
    if limit is not None and not 1 <= limit <= settings.LEADERBOARD_LIMIT_MAX:
        raise InvalidRequest(f"limit must be between 1 and {settings.LEADERBOARD_LIMIT_MAX}")
    board = game_leaderboard_whole_get_or_refresh(game=game, now=now)
    return game_leaderboard_page(board, limit=limit, offset=offset, username=username)


GAME_STANDINGS_CSV_HEADER = [
    "rank",
    "username",
    "equity",
    "starting_cash",
    "return_pct",
    "sharpe",
    "max_drawdown",
    "status",
    "as_of",
]


def game_standings_csv_rows_get_or_refresh(
    *, game: Game, now: dt.datetime | None = None
) -> Iterator[list[str | Decimal | int | None]]:
    """Every entry of the game's board (final once it is over, else live and fresh, refreshed or
    frozen first as ``game_leaderboard_whole_get_or_refresh`` does), header first, for its
    organiser's export: usernames, never account numbers. Text cells are ``str``, figures numbers,
    so the CSV writer neutralises formulas in the text only (trading/api/csv_export.py)."""
    board = game_leaderboard_whole_get_or_refresh(game=game, now=now)
    yield list(GAME_STANDINGS_CSV_HEADER)
    baseline = Decimal(board["starting_cash"])
    for rank, (username, equity, gain, sharpe, drawdown) in enumerate(board["standings"], start=1):
        yield [
            rank,
            username,
            Decimal(equity).scaleb(-2),
            baseline,
            Decimal(f"{gain * 100:.4f}"),
            None if sharpe is None else Decimal(f"{sharpe:.4f}"),
            None if drawdown is None else Decimal(f"{drawdown:.6f}"),
            board["status"],
            board["as_of"],
        ]


def _float(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def _analytics_payload(row: AccountAnalytics) -> dict[str, Any]:
    return {
        "as_of": row.as_of.isoformat(),
        "equity": cents_to_str(row.equity_cents),
        "returns": {
            "1D": _float(row.return_1d),
            "1W": _float(row.return_1w),
            "1M": _float(row.return_1m),
            "since_reset": _float(row.return_since_reset),
        },
        "volatility": _float(row.volatility),
        "max_drawdown": _float(row.max_drawdown),
        "sharpe": _float(row.sharpe, 4),
        "sector_allocation": row.sector_allocation,
        "win_rate": _float(row.win_rate, 4),
        "closed_trades": row.closed_trades,
        "rank": row.rank,
    }


def account_analytics_get_or_compute(*, account: Account) -> dict[str, Any]:
    """The account's precomputed analytics; computed and stored now (for it alone) if none exist yet."""
    return account_analytics_get_or_compute_by_id(account_id=account.pk)


def account_analytics_get_or_compute_by_id(*, account_id: uuid.UUID | str) -> dict[str, Any]:
    """``account_analytics_get_or_compute`` for a caller who knows only the account's id (an API
    key does): a cached answer then needs no query at all."""

    def load() -> dict[str, Any]:
        rows = AccountAnalytics.objects.select_related("account")
        row = rows.filter(account_id=account_id).first()
        if row is None:
            services.account_analytics_refresh(account_ids=[uuid.UUID(str(account_id))])
            row = rows.get(account_id=account_id)
        return {"account_number": row.account.account_number, **_analytics_payload(row)}

    return cache_manager().cached(services.account_analytics_cache_key(account_id), "analytics", load)


def account_analytics_held_by_id(*, account_id: str) -> dict[str, Any] | None:
    """``account_analytics_get_or_compute_by_id``'s answer when this process's L1 holds it, else
    None (the fast path's read, as ``leaderboard_whole_held``)."""
    held: dict[str, Any] | None = cache_manager().local_get(services.account_analytics_cache_key(account_id))
    return held


def _stats_payload(row: SymbolStats) -> dict[str, Any]:
    return {
        "symbol": row.symbol,
        "as_of": row.as_of.isoformat(),
        "last_price": units_to_str(row.last_price_units),
        "previous_close": units_to_str(row.previous_close_units),
        "change_today": _float(row.change_today),
        "day_high": units_to_str(row.day_high_units),
        "day_low": units_to_str(row.day_low_units),
        "day_volume": row.day_volume,
        "holders": row.holders,
        "net_shares_held": qty_to_str(row.net_shares_held),
        "fills_today": row.fills_today,
    }


def symbol_stats_get_or_compute(*, symbol: str) -> dict[str, Any]:
    """A symbol's precomputed stats; computed and stored now (for it alone) if none exist yet."""
    symbol = symbol.upper()

    def load() -> dict[str, Any]:
        row = SymbolStats.objects.filter(symbol=symbol).first()
        if row is None:
            if not Asset.objects.filter(symbol=symbol).exists():
                raise NotFound(f"asset not found for {symbol}")
            services.symbol_stats_refresh(symbols=[symbol])
            row = SymbolStats.objects.filter(symbol=symbol).first()
            if row is None:
                raise NotFound(f"no stats for inactive asset {symbol}")
        return _stats_payload(row)

    return cache_manager().cached(services.symbol_stats_cache_key(symbol), "symbol_stats", load)


def symbol_stats_held(*, symbol: str) -> dict[str, Any] | None:
    """``symbol_stats_get_or_compute``'s answer when this process's L1 holds it, else None (the
    fast path's read, as ``leaderboard_whole_held``)."""
    held: dict[str, Any] | None = cache_manager().local_get(services.symbol_stats_cache_key(symbol))
    return held
