"""Times and dates from query strings: the one parser every endpoint uses, and the range it accepts.

Accepted: RFC 3339 (``2024-05-01T13:30:00Z``, a fraction of up to 9 digits, ``Z`` or an offset
``+HH:MM``/``+HHMM``; no offset means UTC; seconds may be left out) or a date ``YYYY-MM-DD``,
whose meaning (a day's start in UTC or in the trading time zone, or its end) the caller decides.
ASCII digits only: Python's own parsers also take other scripts' digits.

Every instant and date must lie in [EARLIEST, LATEST). The endpoints move a parsed time by at
most about a century (a period of ``all``, month buckets, a day's end, a time-zone offset), so
inside that range no arithmetic can leave what ``datetime`` and the databases represent; outside
it a value such as ``9999-12-31`` or ``0001-01-01T00:00:00+23:59`` would crash deep in a
computation. No market data or account activity can lie outside it either, so refusing such
values with a 422 costs a client nothing.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

from trading.errors import InvalidRequest

EARLIEST = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(3000, 1, 1, tzinfo=dt.UTC)
RANGE_TEXT = f"between {EARLIEST.date().isoformat()} and {(LATEST.date() - dt.timedelta(days=1)).isoformat()}"

_DATE_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})", re.ASCII)
_TIME_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,9}))?)?"
    r"(?:[Zz]|([+-])([0-9]{2}):?([0-9]{2}))?",
    re.ASCII,
)
# An unencoded "+" in a query string arrives as a space: "...T10:00:00 05:00".
_SPACE_OFFSET_RE = re.compile(r" ([0-9]{2}:?[0-9]{2})$", re.ASCII)


def utc_day_start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)


def utc_day_end(day: dt.date) -> dt.datetime:
    """The last microsecond of a UTC day: an inclusive ``end`` given as a date covers all of it."""
    return dt.datetime.combine(day, dt.time.max, tzinfo=dt.UTC)


def _refuse(name: str, value: str) -> InvalidRequest:
    return InvalidRequest(f"invalid {name}: expected RFC 3339 or YYYY-MM-DD, got {value!r}")


def _out_of_range(name: str) -> InvalidRequest:
    return InvalidRequest(f"invalid {name}: must be {RANGE_TEXT}")


def parse_day(value: str, *, name: str) -> dt.date:
    """A ``YYYY-MM-DD`` date in the accepted range."""
    match = _DATE_RE.fullmatch(value.strip())
    if match is None:
        raise InvalidRequest(f"invalid {name}: expected YYYY-MM-DD, got {value!r}")
    try:
        day = dt.date(*(int(part) for part in match.groups()))
    except ValueError:
        raise InvalidRequest(f"invalid {name}: {value!r} is not a date") from None
    if not EARLIEST.date() <= day < LATEST.date():
        raise _out_of_range(name)
    return day


def parse_instant(
    value: str, *, name: str, date_as: Callable[[dt.date], dt.datetime], upper: bool = False
) -> dt.datetime:
    """An aware datetime in the accepted range, from RFC 3339 or a date (through ``date_as``).

    Times are kept to the microsecond: a lower bound (``upper=False``) with nanoseconds beyond
    them begins at the next microsecond; an upper bound drops them.
    """
    text = _SPACE_OFFSET_RE.sub(r"+\1", value.strip())
    if _DATE_RE.fullmatch(text):
        moment = date_as(parse_day(text, name=name))
        if not EARLIEST <= moment < LATEST:
            raise _out_of_range(name)
        return moment
    match = _TIME_RE.fullmatch(text)
    if match is None:
        raise _refuse(name, value)
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    digits = (fraction or "").ljust(9, "0")
    try:
        zone: dt.tzinfo = dt.UTC
        if sign:
            if int(off_m) > 59:
                raise ValueError("offset minutes")
            offset = dt.timedelta(hours=int(off_h), minutes=int(off_m))
            zone = dt.timezone(-offset if sign == "-" else offset)
        local = dt.datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0), int(digits[:6]), zone
        )
    except ValueError:
        raise _refuse(name, value) from None
    try:
        moment = local.astimezone(dt.UTC)
    except OverflowError:
        raise _out_of_range(name) from None
    if not EARLIEST <= moment < LATEST:
        raise _out_of_range(name)
    if not upper and digits[6:] != "000":
        moment += dt.timedelta(microseconds=1)
    return moment
