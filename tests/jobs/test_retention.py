"""Property 29: cleanup removes exactly the rows older than their retention, keeps the rest,
and does it in bounded batches (one short transaction each)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from analytics.models import AccountEquityDay
from config.retention import RETENTION_RULES
from jobs import retention
from jobs.models import JobRun, JobStatus
from tests.builders import flat_bar
from tests.clock import NEW_YORK, new_york
from trading.models import Account, DailyBar, MinuteBar, StockPriceHistory

NOW = dt.datetime(2026, 6, 15, 12, 0, tzinfo=dt.UTC)
HOUR = 3600
TICK_FIELDS = {"price_units": 1, "size": 1, "bid_units": 1, "bid_size": 1, "ask_units": 1, "ask_size": 1}

# Ages in seconds around each boundary, including exactly at it (kept: only older goes).
ages = st.lists(st.integers(min_value=0, max_value=200 * 24 * HOUR), max_size=25)
boundary_ages = st.lists(
    st.sampled_from([24 * HOUR - 1, 24 * HOUR, 24 * HOUR + 1, 90 * 24 * HOUR, 90 * 24 * HOUR + 1]), max_size=6
)


@pytest.mark.django_db
@hypothesis_settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tick_ages=ages, bar_ages=ages, extra=boundary_ages, batch_size=st.integers(min_value=1, max_value=7))
def test_cleanup_removes_exactly_the_expired_rows(
    settings: Any, tick_ages: list[int], bar_ages: list[int], extra: list[int], batch_size: int
) -> None:
    settings.TICK_RETENTION_HOURS = 24
    settings.MINUTE_BAR_RETENTION_DAYS = 90
    StockPriceHistory.objects.all().delete()
    MinuteBar.objects.all().delete()
    DailyBar.objects.all().delete()
    tick_ages, bar_ages = tick_ages + extra, bar_ages + extra
    # Three symbols: tick retention walks them one by one (partition_field).
    StockPriceHistory.objects.bulk_create(
        StockPriceHistory(
            symbol=f"T{seq % 3}", seq=seq, recorded_at=NOW - dt.timedelta(seconds=age), **TICK_FIELDS
        )
        for seq, age in enumerate(tick_ages)
    )
    MinuteBar.objects.bulk_create(
        flat_bar(MinuteBar, f"S{index}", NOW - dt.timedelta(seconds=age))
        for index, age in enumerate(bar_ages)
    )
    DailyBar.objects.bulk_create(
        flat_bar(DailyBar, f"S{index}", NOW - dt.timedelta(seconds=age)) for index, age in enumerate(bar_ages)
    )

    deleted = retention.retention_cleanup(now=NOW, batch_size=batch_size)

    # Each symbol's newest tick stays whatever its age (its price while the market is closed).
    newest = {
        symbol: min(tick_ages[seq::3]) for seq, symbol in enumerate(("T0", "T1", "T2")) if tick_ages[seq::3]
    }
    kept_ticks = sorted(
        age for seq, age in enumerate(tick_ages) if age <= 24 * HOUR or age == newest[f"T{seq % 3}"]
    )
    kept_bars = sorted(age for age in bar_ages if age <= 90 * 24 * HOUR)
    remaining_ticks = sorted(
        int((NOW - t).total_seconds())
        for t in StockPriceHistory.objects.values_list("recorded_at", flat=True)
    )
    remaining_bars = sorted(
        int((NOW - t).total_seconds()) for t in MinuteBar.objects.values_list("start", flat=True)
    )
    assert remaining_ticks == kept_ticks
    assert remaining_bars == kept_bars
    assert DailyBar.objects.count() == len(bar_ages)  # kept for ever
    assert deleted["ticks"] == len(tick_ages) - len(kept_ticks)
    assert deleted["minute bars"] == len(bar_ages) - len(kept_bars)
    assert deleted["daily bars"] == 0


@pytest.mark.django_db
@pytest.mark.db_backend
def test_tick_retention_reads_and_deletes_along_an_index(settings: Any) -> None:
    """Ticks have no index on their time alone: every query of their cleanup seeks the (symbol,
    ...) indexes, none scans the table (read from EXPLAIN, after ANALYZE, on each backend)."""
    settings.TICK_RETENTION_HOURS = 24
    # 9,000 ticks: under the admin paginator's exact-count cap, since PostgreSQL keeps the
    # ANALYZE estimate after the test's transaction is rolled back.
    symbols = [f"R{index:02d}" for index in range(30)]
    StockPriceHistory.objects.bulk_create(
        (
            StockPriceHistory(
                symbol=symbol, seq=seq, recorded_at=NOW - dt.timedelta(hours=23, minutes=seq), **TICK_FIELDS
            )
            for symbol in symbols
            for seq in range(1, 301)
        ),
        batch_size=5000,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    with CaptureQueriesContext(connection) as queries:
        deleted = retention.retention_cleanup_rule(rule=RETENTION_RULES["ticks"], now=NOW, batch_size=100)
    # Older than 24 hours: seq 61 onwards of each symbol.
    assert deleted == len(symbols) * 240
    assert StockPriceHistory.objects.count() == len(symbols) * 60
    statements = [q["sql"] for q in queries.captured_queries if q["sql"].startswith(("SELECT", "DELETE"))]
    assert statements
    table = StockPriceHistory._meta.db_table
    for sql in statements:
        with connection.cursor() as cursor:
            cursor.execute(("EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN ") + sql)
            plan = "\n".join(" ".join(str(part) for part in row) for row in cursor.fetchall())
        if connection.vendor == "sqlite":
            # A bare SCAN reads the table; "SCAN ... USING INDEX" under the walk's LIMIT 1 reads
            # the index's first entry.
            assert not re.search(rf"\bSCAN (?:{table}|U0)\b(?! USING)", plan), (sql, plan)
        else:
            assert f"Seq Scan on {table}" not in plan, (sql, plan)


@pytest.mark.django_db
def test_job_runs_expire_unless_unfinished(settings: Any) -> None:
    settings.JOB_RUN_RETENTION_DAYS = 30
    old, recent = NOW - dt.timedelta(days=31), NOW - dt.timedelta(days=29)
    for index, (status, created) in enumerate(
        [(JobStatus.SUCCEEDED, old), (JobStatus.FAILED, old), (JobStatus.RUNNING, old), (JobStatus.QUEUED, old),
         (JobStatus.SUCCEEDED, recent)]
    ):  # fmt: skip
        run = JobRun.objects.create(name="noop", slot=str(index), status=status)
        JobRun.objects.filter(pk=run.pk).update(created_at=created)
    assert retention.retention_cleanup(now=NOW)["job runs"] == 2
    assert sorted(JobRun.objects.values_list("slot", flat=True)) == ["2", "3", "4"]


@pytest.mark.django_db
def test_each_batch_deletes_at_most_the_batch_size() -> None:
    StockPriceHistory.objects.bulk_create(
        StockPriceHistory(symbol="MSFT", seq=seq, recorded_at=NOW - dt.timedelta(days=30), **TICK_FIELDS)
        for seq in range(23)
    )
    # The symbol's newest tick, which retention keeps.
    StockPriceHistory.objects.create(symbol="MSFT", seq=23, recorded_at=NOW, **TICK_FIELDS)
    counts: list[int] = []
    with CaptureQueriesContext(connection) as queries:
        retention.retention_cleanup_rule(
            rule=RETENTION_RULES["ticks"],
            now=NOW,
            batch_size=5,
            progress=lambda label, total: counts.append(total),
        )
    assert counts == [5, 10, 15, 20, 23]
    deletes = [query["sql"] for query in queries.captured_queries if query["sql"].startswith("DELETE")]
    assert len(deletes) == 5


@pytest.mark.django_db
def test_command_reports_progress(settings: Any) -> None:
    settings.TICK_RETENTION_HOURS = 1
    StockPriceHistory.objects.create(
        symbol="IBM", seq=1, recorded_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC), **TICK_FIELDS
    )
    # IBM's newest tick: old too, but kept (its price while the market is closed).
    StockPriceHistory.objects.create(
        symbol="IBM", seq=2, recorded_at=dt.datetime(2020, 1, 2, tzinfo=dt.UTC), **TICK_FIELDS
    )
    out = StringIO()
    call_command("cleanup_retention", "--batch-size", "10", stdout=out)
    text = out.getvalue()
    assert (
        "ticks: 1 deleted" in text and "daily bars: kept for ever" in text and "done: 1 rows deleted" in text
    )
    assert list(StockPriceHistory.objects.values_list("seq", flat=True)) == [2]


@pytest.mark.django_db
def test_hourly_job_runs_once_per_hour_bucket() -> None:
    from jobs import services

    first = services.retention_hourly(now=NOW)
    assert first is not None and set(first["deleted"]) >= {"ticks", "minute bars", "job runs"}
    assert services.retention_hourly(now=NOW + dt.timedelta(minutes=30)) is None  # a second beat
    assert services.retention_hourly(now=NOW + dt.timedelta(hours=1)) is not None
    assert JobRun.objects.filter(name=services.RETENTION_JOB, status=JobStatus.SUCCEEDED).count() == 2


@pytest.mark.django_db
@hypothesis_settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ages=st.lists(
        st.one_of(st.integers(min_value=0, max_value=800), st.sampled_from([89, 90, 91, 92, 399, 400, 401])),
        max_size=20,
        unique=True,
    ),
    retention_days=st.sampled_from([30, 400, 730]),
)
def test_equity_days_kept_for_their_retention_never_under_the_analytics_series(
    settings: Any, make_account: Callable[..., Account], ages: list[int], retention_days: int
) -> None:
    """Property 29 for account equity days: rows older than EQUITY_DAY_RETENTION_DAYS go; a
    setting shorter than the 90 days the analytics read back keeps those 90 days (plus today)."""
    from analytics.services import SERIES_DAYS

    settings.EQUITY_DAY_RETENTION_DAYS = retention_days
    AccountEquityDay.objects.all().delete()
    account = Account.objects.first() or make_account()
    today = NOW.date()
    AccountEquityDay.objects.bulk_create(
        AccountEquityDay(account=account, day=today - dt.timedelta(days=age), equity_cents=age)
        for age in ages
    )

    deleted = retention.retention_cleanup(now=NOW, batch_size=3)["equity days"]

    kept_for = max(retention_days, SERIES_DAYS + 1)
    assert sorted(AccountEquityDay.objects.values_list("equity_cents", flat=True)) == sorted(
        age for age in ages if age <= kept_for
    )
    assert deleted == sum(1 for age in ages if age > kept_for)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "now",
    [
        new_york(2026, 6, 15, 12),
        new_york(2026, 6, 15, 22, 30),  # still the 15th in New York, already the 16th in UTC
        new_york(2026, 6, 15, 23, 59, 59),
        new_york(2026, 6, 16, 0, 0, 1),
    ],
    ids=lambda now: now.astimezone(NEW_YORK).strftime("%H:%M:%S-new-york"),
)
def test_equity_days_age_in_new_york_trading_days(
    now: dt.datetime, settings: Any, make_account: Callable[..., Account]
) -> None:
    """An equity day is a New York trading day, so its age counts from New York's date: on a
    New York evening the UTC date is a day ahead, which aged every row by a day more."""
    settings.EQUITY_DAY_RETENTION_DAYS = 400
    account = make_account()
    today = now.astimezone(NEW_YORK).date()
    AccountEquityDay.objects.bulk_create(
        AccountEquityDay(account=account, day=today - dt.timedelta(days=age), equity_cents=age)
        for age in (0, 399, 400, 401)
    )

    assert retention.retention_cleanup(now=now)["equity days"] == 1

    assert sorted(AccountEquityDay.objects.values_list("equity_cents", flat=True)) == [0, 399, 400]


def test_equity_days_default_to_more_than_a_year() -> None:
    from django.conf import settings

    assert settings.EQUITY_DAY_RETENTION_DAYS > 366
