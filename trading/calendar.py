"""The trading day and session calendar behind ``/v2/clock`` and ``/v2/calendar``.

In the default always-open market a trading day runs midnight to midnight in TRADING_TIMEZONE
(America/New_York); it drives day-order expiry, ``lastday_price`` and daily bars. With
MARKET_HOURS=xnys the NYSE calendar from exchange-calendars decides instead.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings


@dataclass(frozen=True)
class Clock:
    timestamp: dt.datetime
    is_open: bool
    next_open: dt.datetime
    next_close: dt.datetime


@dataclass(frozen=True)
class Session:
    open: dt.datetime
    close: dt.datetime


# Alpaca takes opg orders until 9:28 ET for that morning's opening auction and cls orders until
# 15:50 ET for that afternoon's closing auction.
OPG_CUTOFF = dt.timedelta(minutes=2)
CLS_CUTOFF = dt.timedelta(minutes=10)


@dataclass(frozen=True)
class SessionDay:
    date: dt.date
    open: dt.time
    close: dt.time


def trading_zone() -> ZoneInfo:
    return ZoneInfo(settings.TRADING_TIMEZONE)


def always_open() -> bool:
    return settings.MARKET_HOURS == "always"


@cache
def _xnys() -> Any:
    import exchange_calendars

    return exchange_calendars.get_calendar("XNYS")


def trading_day_of(moment: dt.datetime) -> dt.date:
    return moment.astimezone(trading_zone()).date()


def day_start(day: dt.date) -> dt.datetime:
    """The instant a trading day begins (midnight, trading time zone), as an aware datetime."""
    return dt.datetime.combine(day, dt.time.min, tzinfo=trading_zone())


def next_day_boundary(moment: dt.datetime) -> dt.datetime:
    """When the trading day containing ``moment`` ends: day orders expire here."""
    if always_open():
        return day_start(trading_day_of(moment) + dt.timedelta(days=1))
    return clock_at(moment).next_close


def clock_at(moment: dt.datetime) -> Clock:
    if always_open():
        boundary = day_start(trading_day_of(moment) + dt.timedelta(days=1))
        return Clock(timestamp=moment, is_open=True, next_open=boundary, next_close=boundary)
    import pandas as pd

    calendar = _xnys()
    stamp = pd.Timestamp(moment).tz_convert("UTC").floor("min")
    is_open = bool(calendar.is_open_on_minute(stamp))
    next_open = calendar.next_open(stamp).to_pydatetime()
    next_close = calendar.next_close(stamp).to_pydatetime()
    return Clock(timestamp=moment, is_open=is_open, next_open=next_open, next_close=next_close)


def sessions_between(start: dt.date, end: dt.date) -> list[SessionDay]:
    if end < start:
        return []
    if always_open():
        days = (end - start).days + 1
        return [SessionDay(start + dt.timedelta(days=i), dt.time(0, 0), dt.time(23, 59)) for i in range(days)]
    calendar = _xnys()
    first, last = max(start, calendar.first_session.date()), min(end, calendar.last_session.date())
    if last < first:
        return []
    zone = trading_zone()
    result = []
    for session in calendar.sessions_in_range(first, last):
        opened = calendar.session_open(session).to_pydatetime().astimezone(zone)
        closed = calendar.session_close(session).to_pydatetime().astimezone(zone)
        result.append(SessionDay(session.date(), opened.time(), closed.time()))
    return result


def session_at_or_after(moment: dt.datetime) -> Session:
    """The NYSE session in progress at ``moment``, or else the next one (MARKET_HOURS=xnys)."""
    import pandas as pd

    calendar = _xnys()
    stamp = pd.Timestamp(moment).tz_convert("UTC").floor("min")
    session = calendar.minute_to_session(stamp, direction="next")
    return Session(
        open=calendar.session_open(session).to_pydatetime(),
        close=calendar.session_close(session).to_pydatetime(),
    )


def auction_session(time_in_force: str, moment: dt.datetime) -> Session | None:
    """The session whose opening (``opg``) or closing (``cls``) auction an order placed at
    ``moment`` goes to, or None when it is too late for the coming one (the session is open, or
    its auction is less than the cutoff away)."""
    session = session_at_or_after(moment)
    if time_in_force == "opg":
        return session if moment < session.open - OPG_CUTOFF else None
    return session if moment < session.close - CLS_CUTOFF else None
