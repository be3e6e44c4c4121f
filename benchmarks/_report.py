"""The table every benchmark prints: scenario, optimised, baseline, ratio, goal, met?"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import connection

# The metrics' cost: CPU per cached request (benchmark api) and per delivered update (benchmark
# stream) with METRICS_ENABLED on, at most this multiple of the same with it off.
METRICS_COST_GOAL = 1.05


@dataclass(frozen=True)
class Row:
    scenario: str
    optimised: str
    baseline: str
    ratio: str
    goal: str
    met: bool | None  # None: reported for context, no goal attached
    # A size or a count, not a speed: the machine's load cannot change it, so a noisy run's
    # verdict stands.
    load_free: bool = False

    @property
    def verdict(self) -> str:
        return "-" if self.met is None else ("yes" if self.met else "NO")


@dataclass
class Report:
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Started on a loaded machine (benchmarks/_load.py): goals met print "noisy", not "yes".
    noisy: bool = False

    def add(self, row: Row) -> None:
        self.rows.append(row)

    @property
    def missed(self) -> list[Row]:
        return [row for row in self.rows if row.met is False]

    def _verdict(self, row: Row) -> str:
        return "noisy" if self.noisy and row.met and not row.load_free else row.verdict

    def render(self) -> str:
        header = ("scenario", "optimised", "baseline", "ratio", "goal", "met?")
        cells = [
            header,
            *((r.scenario, r.optimised, r.baseline, r.ratio, r.goal, self._verdict(r)) for r in self.rows),
        ]
        widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

        def line(values: tuple[str, ...]) -> str:
            return "  ".join(value.ljust(width) for value, width in zip(values, widths, strict=True)).rstrip()

        rule = "  ".join("-" * width for width in widths)
        lines = [self.title, line(header), rule, *(line(values) for values in cells[1:])]
        lines += self.notes
        return "\n".join(lines)


def median_seconds(action: Callable[[], Any], *, repeat: int, warmup: int = 2) -> float:
    """Median wall time of ``action`` over ``repeat`` runs after ``warmup`` untimed ones."""
    for _ in range(warmup):
        action()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def median_database_seconds(action: Callable[[], Any], *, repeat: int, warmup: int = 2) -> float:
    """Median time ``action`` spends inside the database's execute calls.

    SQLite runs a statement to its first row (skipping any OFFSET) inside execute, and
    PostgreSQL's client-side cursors receive the whole result there, so this is the database's
    share of the work without the per-row conversion Python does afterwards.
    """
    spent = 0.0

    def timed(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        nonlocal spent
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            spent += time.perf_counter() - started

    for _ in range(warmup):
        action()
    samples = []
    with connection.execute_wrapper(timed):
        for _ in range(repeat):
            spent = 0.0
            action()
            samples.append(spent)
    return statistics.median(samples)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


def times(value: float) -> str:
    return f"{value:.2f}x" if value < 10 else f"{value:.1f}x" if value < 100 else f"{value:,.0f}x"


def speedup(baseline: float, optimised: float) -> str:
    """How much faster the optimised side is, said the other way round when it is slower."""
    if optimised <= 0 or baseline <= 0:
        return "-"
    ratio = baseline / optimised
    return f"{times(ratio)} faster" if ratio >= 1 else f"{times(1 / ratio)} slower"
