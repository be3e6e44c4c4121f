"""The trading day and session calendar (docs/architecture.md, The trading day): always open by
default, XNYS optionally."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, strategies as st
from pytest_django.fixtures import Settings

from trading import calendar

UTC = dt.UTC
NEW_YORK = ZoneInfo("America/New_York")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def ny(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=NEW_YORK)


# --- always open (the default) ----------------------------------------------------------------


def test_default_market_is_always_open() -> None:
    assert calendar.always_open()
    assert calendar.trading_zone() == NEW_YORK


@pytest.mark.parametrize(
    ("moment", "boundary"),
    [
        # Summer (EDT, UTC-4): midnight New York is 04:00 UTC.
        (utc(2025, 6, 2, 15, 0), utc(2025, 6, 3, 4, 0)),
        # Late evening New York is already the next UTC day; the boundary is New York's.
        (utc(2025, 6, 3, 3, 59, 59), utc(2025, 6, 3, 4, 0)),
        # Exactly at midnight a new trading day has begun: the next boundary is a day later.
        (utc(2025, 6, 3, 4, 0), utc(2025, 6, 4, 4, 0)),
        # Winter (EST, UTC-5): midnight is 05:00 UTC.
        (utc(2025, 1, 15, 12, 0), utc(2025, 1, 16, 5, 0)),
        # 2025-03-09: clocks go forward at 02:00; that day has 23 hours.
        (utc(2025, 3, 8, 17, 0), utc(2025, 3, 9, 5, 0)),  # Saturday noon EST
        (ny(2025, 3, 9, 0, 30), utc(2025, 3, 10, 4, 0)),  # before the jump, EST
        (ny(2025, 3, 9, 12, 0), utc(2025, 3, 10, 4, 0)),  # after the jump, EDT
        # 2025-11-02: clocks go back at 02:00; that day has 25 hours and 01:30 happens twice.
        (utc(2025, 11, 1, 16, 0), utc(2025, 11, 2, 4, 0)),  # Saturday noon EDT
        (utc(2025, 11, 2, 5, 30), utc(2025, 11, 3, 5, 0)),  # first 01:30 (EDT)
        (utc(2025, 11, 2, 6, 30), utc(2025, 11, 3, 5, 0)),  # second 01:30 (EST)
        (ny(2025, 11, 2, 23, 59), utc(2025, 11, 3, 5, 0)),
    ],
)
def test_clock_opens_and_closes_at_the_next_new_york_midnight(
    moment: dt.datetime, boundary: dt.datetime
) -> None:
    clock = calendar.clock_at(moment)
    assert clock.is_open
    assert clock.timestamp == moment
    assert clock.next_close == boundary
    assert clock.next_open == clock.next_close
    local = clock.next_close.astimezone(NEW_YORK)
    assert (local.hour, local.minute, local.second) == (0, 0, 0)
    assert calendar.next_day_boundary(moment) == boundary


def test_day_lengths_across_dst_changes() -> None:
    def length(day: dt.date) -> dt.timedelta:
        # In UTC: subtracting two datetimes sharing one tzinfo would give wall-clock time.
        start = calendar.day_start(day).astimezone(UTC)
        return calendar.next_day_boundary(start).astimezone(UTC) - start

    spring, autumn, ordinary = (
        length(dt.date(2025, 3, 9)),
        length(dt.date(2025, 11, 2)),
        length(dt.date(2025, 6, 2)),
    )
    assert spring == dt.timedelta(hours=23)
    assert autumn == dt.timedelta(hours=25)
    assert ordinary == dt.timedelta(hours=24)


def test_trading_day_of_uses_new_york_dates() -> None:
    assert calendar.trading_day_of(utc(2025, 6, 3, 3, 59)) == dt.date(2025, 6, 2)
    assert calendar.trading_day_of(utc(2025, 6, 3, 4, 0)) == dt.date(2025, 6, 3)
    assert calendar.trading_day_of(utc(2025, 11, 2, 6, 30)) == dt.date(2025, 11, 2)


@given(
    st.datetimes(
        min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2040, 12, 31), timezones=st.just(UTC)
    )
)
def test_next_boundary_is_the_first_new_york_midnight_after_the_moment(moment: dt.datetime) -> None:
    clock = calendar.clock_at(moment)
    boundary = clock.next_close
    assert clock.is_open and clock.next_open == boundary
    assert moment < boundary <= moment + dt.timedelta(hours=25)
    local = boundary.astimezone(NEW_YORK)
    assert local.time() == dt.time(0, 0)
    assert local.date() == moment.astimezone(NEW_YORK).date() + dt.timedelta(days=1)
    # No New York midnight lies strictly between the moment and the boundary.
    assert calendar.trading_day_of(boundary - dt.timedelta(microseconds=1)) == calendar.trading_day_of(moment)


def test_sessions_between_always_open_days_run_midnight_to_2359() -> None:
    sessions = calendar.sessions_between(dt.date(2025, 12, 24), dt.date(2025, 12, 28))
    assert [s.date for s in sessions] == [dt.date(2025, 12, d) for d in range(24, 29)]
    # Weekends and holidays included: the simulated market never closes.
    assert all((s.open, s.close) == (dt.time(0, 0), dt.time(23, 59)) for s in sessions)
    assert calendar.sessions_between(dt.date(2025, 3, 9), dt.date(2025, 3, 9))[0].close == dt.time(23, 59)
    assert calendar.sessions_between(dt.date(2025, 1, 2), dt.date(2025, 1, 1)) == []


@given(start=st.dates(dt.date(2000, 1, 1), dt.date(2040, 1, 1)), days=st.integers(0, 400))
def test_sessions_between_always_open_covers_every_day(start: dt.date, days: int) -> None:
    end = start + dt.timedelta(days=days)
    sessions = calendar.sessions_between(start, end)
    assert len(sessions) == days + 1
    assert [s.date for s in sessions] == [start + dt.timedelta(days=i) for i in range(days + 1)]


# --- real NYSE hours (MARKET_HOURS=xnys) ---------------------------------------------------------


@pytest.fixture
def xnys(settings: Settings) -> None:
    settings.MARKET_HOURS = "xnys"


# exchange-calendars still reads pandas' tz-naive ``.values``; nothing here to act on.
xnys_warnings = pytest.mark.filterwarnings("ignore:.*values returning an ndarray that drops timezone")


@pytest.mark.usefixtures("xnys")
@xnys_warnings
def test_xnys_holidays_are_absent_and_early_closes_are_right() -> None:
    assert not calendar.always_open()
    sessions = {s.date: s for s in calendar.sessions_between(dt.date(2025, 11, 24), dt.date(2025, 12, 31))}
    assert dt.date(2025, 11, 27) not in sessions  # Thanksgiving
    assert dt.date(2025, 12, 25) not in sessions  # Christmas
    assert dt.date(2025, 11, 29) not in sessions  # Saturday
    assert (sessions[dt.date(2025, 11, 28)].open, sessions[dt.date(2025, 11, 28)].close) == (
        dt.time(9, 30),
        dt.time(13, 0),
    )
    assert sessions[dt.date(2025, 12, 24)].close == dt.time(13, 0)
    assert (sessions[dt.date(2025, 12, 26)].open, sessions[dt.date(2025, 12, 26)].close) == (
        dt.time(9, 30),
        dt.time(16, 0),
    )


@pytest.mark.usefixtures("xnys")
@xnys_warnings
def test_xnys_session_times_are_new_york_local_across_dst() -> None:
    # 09:30-16:00 New York whether the offset is -5 (before 2025-03-09) or -4 (after).
    sessions = calendar.sessions_between(dt.date(2025, 3, 7), dt.date(2025, 3, 10))
    assert [s.date for s in sessions] == [dt.date(2025, 3, 7), dt.date(2025, 3, 10)]
    assert all((s.open, s.close) == (dt.time(9, 30), dt.time(16, 0)) for s in sessions)


@pytest.mark.usefixtures("xnys")
@xnys_warnings
def test_xnys_clock_on_an_early_close_day() -> None:
    clock = calendar.clock_at(ny(2025, 11, 28, 12, 0))
    assert clock.is_open
    assert clock.next_close == ny(2025, 11, 28, 13, 0)
    assert clock.next_open == ny(2025, 12, 1, 9, 30)  # Monday
    # Day orders placed then expire at the early close, not at midnight.
    assert calendar.next_day_boundary(ny(2025, 11, 28, 12, 0)) == ny(2025, 11, 28, 13, 0)

    after = calendar.clock_at(ny(2025, 11, 28, 13, 30))
    assert not after.is_open
    assert after.next_open == ny(2025, 12, 1, 9, 30)


@pytest.mark.usefixtures("xnys")
@xnys_warnings
def test_xnys_clock_on_a_holiday() -> None:
    clock = calendar.clock_at(ny(2025, 12, 25, 11, 0))
    assert not clock.is_open
    assert clock.next_open == ny(2025, 12, 26, 9, 30)
    assert clock.next_close == ny(2025, 12, 26, 16, 0)


@pytest.mark.usefixtures("xnys")
@xnys_warnings
def test_xnys_clock_before_the_open_on_a_normal_day() -> None:
    clock = calendar.clock_at(ny(2025, 6, 2, 9, 0))
    assert not clock.is_open
    assert clock.next_open == ny(2025, 6, 2, 9, 30)
    assert clock.next_close == ny(2025, 6, 2, 16, 0)
    assert calendar.clock_at(ny(2025, 6, 2, 9, 30)).is_open
