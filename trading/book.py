"""An account's book in one statement: what the portfolio reads price (``selectors.account_summary``,
``portfolio_positions``, ``portfolio_position``).

The account and position reads are what a bot polls most. Built with the ORM they took four
statements besides the account's own row (positions, today's fills, yesterday's closes, the ledger
since the day began), and building those queries cost more Python time than running them. Here
they are one ``UNION ALL`` of fixed SQL, written once per shape, whose rows say what they are:

- ``p``: an open position, with its asset's fields and its symbol's previous close;
- ``f``: one symbol's fills since an instant, summed per side, with its previous close;
- ``c``: the ledger's sum since that instant (only when asked for).

Every value comes from the committed rows at the statement's snapshot, so the book is exact after
every write, as the ORM reads were; nothing is cached. The previous close is each symbol's newest
daily bar starting before the day's boundary, one seek down (symbol, start) per symbol.
Quantities and sums are integers on both backends (PostgreSQL's SUM of bigint is numeric: int()).
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connection
from django.db.models import Model

from trading.models import Account, Asset, CashEntry, DailyBar, Fill, OrderSide, Position
from trading.prepared import JoinedPart, bound, named_placeholders
from trading.units import UNITS_PER_CENT


@dataclass(frozen=True)
class HeldAsset:
    """The asset fields a position's answer shows."""

    id: uuid.UUID
    symbol: str
    exchange: str
    asset_class: str
    marginable: bool


@dataclass(frozen=True)
class HeldPosition:
    asset: HeldAsset
    qty: int
    qty_held: int
    cost_basis_cents: int


@dataclass(frozen=True)
class Flow:
    """One symbol's fills since an instant, summed per side (quantities in quantity units, values
    in price units as the ledger moved them)."""

    buy_qty: int = 0
    buy_value: int = 0
    sell_qty: int = 0
    sell_value: int = 0

    @property
    def net_qty(self) -> int:
        return self.buy_qty - self.sell_qty


@dataclass
class Book:
    positions: list[HeldPosition] = field(default_factory=list)  # by symbol, as the database sorts
    flows: dict[str, Flow] = field(default_factory=dict)
    closes: dict[str, int] = field(default_factory=dict)
    cash_since: int = 0  # cents; 0 unless asked for


def _table(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


@functools.cache
def _sql(*, ledger: bool, flow_closes: bool, one_asset: str | None) -> str:
    """The statement for one shape, with ``%s`` placeholders (cached per shape: the text never
    changes).

    Parameters in the order they appear: boundary, account, [asset] (positions); [boundary],
    the buy side four times, boundary twice and account (since), account, [asset] (fills);
    [boundary twice and account (since), account] (ledger). A NULL's type in a branch follows the
    other branches' column (PostgreSQL's UNION type resolution).
    """
    position, asset, fill = _table(Position), _table(Asset), _table(Fill)
    daily, cash, account = _table(DailyBar), _table(CashEntry), _table(Account)
    close = (
        f"(SELECT d.close_units FROM {daily} d WHERE d.symbol = {{symbol}} AND d.start < %s "
        "ORDER BY d.start DESC LIMIT 1)"
    )
    # The later of the day's boundary and the account's last reset, read in this statement: the
    # book needs no value of the account's row beforehand, so it can be read with that row
    # (``PreparedQuery.run_joined``). One seek by primary key.
    since = f"(SELECT CASE WHEN x.reset_at > %s THEN x.reset_at ELSE %s END FROM {account} x WHERE x.id = %s)"
    asset_filter = {None: "", "symbol": " AND a.symbol = %s", "id": " AND a.id = %s"}[one_asset]
    branches = [
        "SELECT 'p' AS kind, a.symbol AS symbol, a.id AS asset_id, a.exchange AS exchange, "
        "a.asset_class AS asset_class, a.marginable AS marginable, p.qty AS n1, p.qty_held AS n2, "
        f"p.cost_basis_cents AS n3, NULL AS n4, {close.format(symbol='a.symbol')} AS close_units "
        f"FROM {position} p INNER JOIN {asset} a ON a.id = p.asset_id "
        f"WHERE p.account_id = %s AND p.qty <> 0{asset_filter}",
        f"SELECT 'f', g.symbol, NULL, NULL, NULL, NULL, g.buy_qty, g.buy_value, "
        f"g.sell_qty, g.sell_value, {close.format(symbol='g.symbol') if flow_closes else 'NULL'} FROM ("
        "SELECT a.symbol AS symbol, "
        "SUM(CASE WHEN f.side = %s THEN f.qty ELSE 0 END) AS buy_qty, "
        "SUM(CASE WHEN f.side = %s THEN f.value_cents ELSE 0 END) AS buy_value, "
        "SUM(CASE WHEN f.side = %s THEN 0 ELSE f.qty END) AS sell_qty, "
        "SUM(CASE WHEN f.side = %s THEN 0 ELSE f.value_cents END) AS sell_value "
        f"FROM {fill} f INNER JOIN {asset} a ON a.id = f.asset_id "
        f"WHERE f.filled_at > {since} AND f.account_id = %s{asset_filter} GROUP BY a.symbol) g",
    ]
    if ledger:
        branches.append(
            f"SELECT 'c', NULL, NULL, NULL, NULL, NULL, "
            "COALESCE(SUM(e.amount_cents), 0), NULL, NULL, NULL, NULL "
            f"FROM {cash} e WHERE e.created_at > {since} AND e.account_id = %s"
        )
    # Positions in symbol order as the database collates it, as the ORM's listing was.
    return " UNION ALL ".join(branches) + " ORDER BY 1, 2"


# The statement's columns, and its ordering (kind, symbol) as ``JoinedPart.order`` gives it.
BOOK_WIDTH = 11
BOOK_ORDER = ((0, False), (1, False))


@functools.cache
def _named_sql(*, vendor: str, **shape: Any) -> tuple[str, tuple[str, ...] | None]:
    # On SQLite its parameters go by name: Django's cursor then skips a regular expression over
    # the text.
    return named_placeholders(_sql(**shape), vendor=vendor, count=None)


def _asset_id(value: uuid.UUID | str) -> uuid.UUID:
    # SQLite keeps UUIDs as 32 hex digits; PostgreSQL answers uuid.UUID.
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)


def _one_asset(*, asset_symbol: str | None, asset_id: uuid.UUID | None) -> str | None:
    """The statement's shape for one asset: named by its symbol, its id, or neither (all)."""
    return "symbol" if asset_symbol is not None else "id" if asset_id is not None else None


def book_part(
    *,
    account_id: uuid.UUID | str,
    boundary: dt.datetime,
    ledger: bool,
    flow_closes: bool,
    asset_symbol: str | None = None,
    asset_id: uuid.UUID | None = None,
) -> JoinedPart:
    """The book's statement (``book_get``) for ``account_id``, to be run alone or joined onto the
    account's row (``PreparedQuery.run_joined``); ``book_parse`` reads its rows."""
    one_asset = _one_asset(asset_symbol=asset_symbol, asset_id=asset_id)
    ops = connection.ops
    account = Account._meta.pk.get_db_prep_value(account_id, connection)
    boundary_value = ops.adapt_datetimefield_value(boundary)
    since = [boundary_value, boundary_value, account]
    asset: list[Any] = []
    if asset_symbol is not None:
        asset = [asset_symbol]
    elif asset_id is not None:
        asset = [Asset._meta.pk.get_db_prep_value(asset_id, connection)]
    params: list[Any] = [boundary_value, account, *asset]
    if flow_closes:
        params.append(boundary_value)
    params += [OrderSide.BUY.value] * 4 + [*since, account, *asset]
    if ledger:
        params += [*since, account]
    shape = {"ledger": ledger, "flow_closes": flow_closes, "one_asset": one_asset}
    return JoinedPart(
        key=("book", tuple(shape.items())),
        sql=_sql(**shape),
        params=params,
        width=BOOK_WIDTH,
        order=BOOK_ORDER,
        converters={},
    )


def book_get(
    *,
    account_id: uuid.UUID,
    boundary: dt.datetime,
    ledger: bool,
    flow_closes: bool,
    asset_symbol: str | None = None,
    asset_id: uuid.UUID | None = None,
) -> Book:
    """An account's open positions, its fills since the later of ``boundary`` and its last
    reset per symbol, each symbol's close before ``boundary`` and (``ledger``) its cash movements
    since that instant: one statement.

    ``flow_closes`` also prices symbols traded since but no longer held; ``asset_symbol`` or
    ``asset_id`` narrows positions and fills to one asset.
    """
    part = book_part(
        account_id=account_id,
        boundary=boundary,
        ledger=ledger,
        flow_closes=flow_closes,
        asset_symbol=asset_symbol,
        asset_id=asset_id,
    )
    one_asset = _one_asset(asset_symbol=asset_symbol, asset_id=asset_id)
    sql, names = _named_sql(
        vendor=connection.vendor, ledger=ledger, flow_closes=flow_closes, one_asset=one_asset
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, bound(names, part.params))
        rows = cursor.fetchall()
    return book_parse(rows=rows)


def book_parse(*, rows: Iterable[Sequence[Any]]) -> Book:
    """The book from its statement's rows (``book_part``), in its order."""
    book = Book()
    for kind, symbol, held_asset_id, exchange, asset_class, marginable, n1, n2, n3, n4, close in rows:
        if close is not None:
            book.closes[symbol] = int(close)
        if kind == "p":
            book.positions.append(
                HeldPosition(
                    asset=HeldAsset(
                        id=_asset_id(held_asset_id),
                        symbol=symbol,
                        exchange=exchange,
                        asset_class=asset_class,
                        marginable=bool(marginable),
                    ),
                    qty=int(n1),
                    qty_held=int(n2),
                    cost_basis_cents=int(n3),
                )
            )
        elif kind == "f":
            book.flows[symbol] = Flow(
                buy_qty=int(n1),
                buy_value=int(n2) * UNITS_PER_CENT,
                sell_qty=int(n3),
                sell_value=int(n4) * UNITS_PER_CENT,
            )
        else:
            book.cash_since = int(n1)
    return book
