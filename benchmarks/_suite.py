"""``manage.py benchmark all``: every benchmark in turn, each with its own defaults (or its smallest
sizes), one failing without losing the others' results. benchmarks/_report_files.py writes the
outcomes as one report."""

from __future__ import annotations

import argparse
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from benchmarks import available
from benchmarks._load import machine_quiet_wait
from benchmarks._report import Report

# The smallest sizes at which each benchmark still measures every row it prints (the sizes its own
# test in tests/benchmarks/ runs): a whole run in a few minutes, to check the suite and the report,
# not to read the figures.
SMALLEST: dict[str, dict[str, Any]] = {
    "api": {
        "duration": 1,
        "warmup_seconds": 0,
        "requests": 30,
        "warmup": 5,
        "query_sample": 5,
        "concurrency": 4,
        "accounts": 20,
        "symbols": 5,
        "metrics_rounds": 1,
    },
    "dashboard": {"symbols": 60, "rate": 2, "seconds": 2, "settle": 1},
    "db": {"ticks": 20_000, "symbols": 40, "holdings": 30, "repeat": 2},
    "games": {"players": 200, "bots": 20, "seconds": 5, "symbols": 10, "query_sample": 4},
    "stream": {
        "clients": 20,
        "symbols_per_client": 10,
        "universe": 50,
        "seconds": 2,
        "settle": 1,
        "rate_multipliers": "1,2",
        "attack_rounds": 1,
        "metrics_rounds": 1,
        "bandwidth_clients": 5,
    },
    "trading": {
        "duration": 1,
        "warmup_seconds": 0,
        "concurrency": 4,
        "accounts": 20,
        "symbols": 5,
        "query_sample": 4,
    },
    "ticks": {"rows": 3_000, "window_ticks": 250, "symbols": 20, "rounds": 2, "storage_rows": 4_000},
}


@dataclass(frozen=True)
class Outcome:
    """One benchmark's run: its report, or the error that stopped it."""

    name: str
    report: Report | None
    error: str | None
    elapsed_s: float


def suite_options(module: ModuleType, *, smallest: bool, overrides: dict[str, Any]) -> dict[str, Any]:
    """The options ``module`` would get from ``benchmark <name>`` with no arguments, shrunk to its
    smallest sizes when asked, then ``overrides`` (the suite's own options that every benchmark
    shares, such as ``db_name``) where the benchmark has that option."""
    parser = argparse.ArgumentParser(add_help=False)
    module.add_arguments(parser)
    options = vars(parser.parse_args([]))
    if smallest:
        options.update(SMALLEST.get(module.__name__.rsplit(".", 1)[-1], {}))
    options.update({key: value for key, value in overrides.items() if key in options})
    return options


def suite_run(
    *,
    names: list[str],
    smallest: bool,
    overrides: dict[str, Any],
    quiet_wait_s: float,
    log: Callable[[str], None],
    clock: Callable[[], float] = time.monotonic,
) -> list[Outcome]:
    """Run the benchmarks ``names`` in order, with progress lines saying which one, how far and
    the time elapsed; an exception ends only the benchmark that raised it. Each waits up to
    ``quiet_wait_s`` for a quiet machine first, as ``benchmark <name>`` does (benchmarks/_load.py):
    the previous one's servers may still be winding down."""
    benchmarks = available()
    unknown = [name for name in names if name not in benchmarks]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(benchmarks)}")
    started = clock()
    outcomes: list[Outcome] = []
    for position, name in enumerate(names, start=1):
        stage = f"[{position}/{len(names)} {name}]"
        began = clock()

        def progress(line: str, stage: str = stage, began: float = began) -> None:
            log(f"{stage} +{clock() - began:.0f}s {line}")

        log(f"{stage} starting ({_elapsed(clock() - started)} elapsed)")
        try:
            load = machine_quiet_wait(max_wait_s=quiet_wait_s, log=progress)
            module = benchmarks[name]
            report: Report = module.run(
                suite_options(module, smallest=smallest, overrides=overrides), progress
            )
        except Exception as error:  # one benchmark's failure must not lose the others
            elapsed = clock() - began
            message = f"{type(error).__name__}: {error}".strip()
            log(f"{stage} FAILED after {elapsed:.1f}s: {message}")
            log("".join(traceback.format_exception(error)).rstrip())
            outcomes.append(Outcome(name=name, report=None, error=message, elapsed_s=elapsed))
            continue
        report.noisy = load.noisy
        report.notes.append(load.describe(after=os.getloadavg()[0]))
        elapsed = clock() - began
        missed = len(report.missed)
        verdict = f"{missed} goal(s) missed" if missed else "every goal met"
        log(f"{stage} done in {elapsed:.1f}s: {len(report.rows)} rows, {verdict}")
        outcomes.append(Outcome(name=name, report=report, error=None, elapsed_s=elapsed))
    failed = sum(outcome.error is not None for outcome in outcomes)
    log(f"all {len(names)} benchmarks run in {_elapsed(clock() - started)}; {failed} failed")
    return outcomes


def _elapsed(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}:{rest:02d}"
