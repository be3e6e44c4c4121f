"""Time in tests: instants named by New York wall-clock time, the boundary instants that
time-dependent tests are pinned to, and a clock that moves only when told.

Plain functions and constants any test imports; the fixture built on them (``l1_clock``) stays in
tests/conftest.py.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from _pytest.mark import ParameterSet

NEW_YORK = ZoneInfo("America/New_York")


def new_york(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, *, fold: int = 0
) -> dt.datetime:
    """An instant named by New York wall-clock time (``fold=1``: the second 01:xx of the night
    the clocks go back), in UTC: arithmetic on a datetime in a zone with DST is wall-clock
    arithmetic (03:05 EDT minus an hour is 02:05, which does not exist), so tests add and
    subtract on UTC datetimes."""
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=NEW_YORK, fold=fold).astimezone(dt.UTC)


# Instants that tests of time-dependent behaviour are pinned to (with time-machine, e.g.
# ``@pytest.mark.time_machine(instant, tick=False)``, or an explicit ``now``), so they pass at any
# hour: either side of a New York midnight (the trading-day boundary), the last evening of a
# month (already the next month in UTC), and the days the clocks change in New York (2026-03-08
# has 23 hours, 2026-11-01 has 25).
BOUNDARY_INSTANTS: dict[str, dt.datetime] = {
    "before-midnight": new_york(2026, 3, 4, 23, 59, 59),
    "after-midnight": new_york(2026, 3, 5, 0, 0, 1),
    "month-end-evening": new_york(2026, 4, 30, 21, 15),
    "new-month": new_york(2026, 5, 1, 0, 0, 30),
    "spring-forward": new_york(2026, 3, 8, 3, 5),  # five minutes after 02:00 EST became 03:00 EDT
    "fall-back": new_york(2026, 11, 1, 1, 30, fold=1),  # the second 01:30, EST
}


def boundary_instants(*names: str) -> pytest.MarkDecorator:
    """Parametrize ``now`` over the named BOUNDARY_INSTANTS (all of them when none are named),
    with the wall clock stopped there for the whole test, its fixtures included."""
    chosen = names or tuple(BOUNDARY_INSTANTS)
    return pytest.mark.parametrize("now", [frozen_at(BOUNDARY_INSTANTS[name], name=name) for name in chosen])


def frozen_at(now: dt.datetime, *values: object, name: str | None = None) -> ParameterSet:
    """Parameters (``now`` first) whose test runs with the wall clock stopped at ``now``
    (time-machine's marker starts before any fixture, so rows the fixtures create are dated then
    too)."""
    return pytest.param(
        now, *values, id=name or now.isoformat(), marks=pytest.mark.time_machine(now, tick=False)
    )


class ManualClock:
    """A clock that moves only when told, for code that takes one (``clock=``, e.g. the L1
    cache's monotonic clock)."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
