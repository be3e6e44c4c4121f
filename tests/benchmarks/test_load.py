"""Every benchmark waits for a quiet machine and marks a run that started loaded as noisy."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from benchmarks._load import machine_quiet_wait
from benchmarks._report import Report, Row


class FakeMachine:
    """A load average that follows a script, on a clock that sleeping advances."""

    def __init__(self, loads: list[float]) -> None:
        self.loads = loads
        self.now = 0.0
        self.slept: list[float] = []

    def load(self) -> float:
        return self.loads.pop(0) if len(self.loads) > 1 else self.loads[0]

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def wait(machine: FakeMachine, *, max_wait_s: float = 60) -> tuple[float, bool, float]:
    lines: list[str] = []
    load = machine_quiet_wait(
        max_wait_s=max_wait_s,
        log=lines.append,
        load=machine.load,
        cores=2,
        sleep=machine.sleep,
        clock=lambda: machine.now,
    )
    return load.before, load.noisy, load.waited_s


def test_a_quiet_machine_is_measured_at_once() -> None:
    machine = FakeMachine([1.2])
    assert wait(machine) == (1.2, False, 0.0)
    assert machine.slept == []


def test_it_waits_until_the_load_falls_below_one_per_core() -> None:
    machine = FakeMachine([5.0, 3.0, 2.0, 1.9])
    assert wait(machine) == (1.9, False, 6.0)


def test_a_machine_still_loaded_after_the_wait_gives_a_noisy_run() -> None:
    machine = FakeMachine([4.0])
    before, noisy, waited = wait(machine, max_wait_s=7)
    assert (before, noisy, waited) == (4.0, True, 7.0)
    assert wait(FakeMachine([4.0]), max_wait_s=0) == (4.0, True, 0.0)


def test_a_noisy_report_calls_no_goal_met_but_still_shows_a_missed_one() -> None:
    report = Report(title="t", noisy=True)
    report.add(Row("met", "1", "2", "2x", ">= 1x", True))
    report.add(Row("missed", "1", "2", "0.5x", ">= 1x", False))
    report.add(Row("context", "1", "2", "-", "-", None))
    report.add(Row("size", "1 B", "2 B", "0.5x", "<= 1 B", True, load_free=True))
    verdicts = [line.split()[-1] for line in report.render().splitlines()[3:]]
    assert verdicts == ["noisy", "NO", "-", "yes"]
    assert [row.scenario for row in report.missed] == ["missed"]


@pytest.mark.django_db(transaction=True)
# The load lines are the command's, whatever the database: CI runs it once (test_ticks.py runs
# the same benchmark on each backend).
@pytest.mark.backend_neutral
@pytest.mark.usefixtures("benchmark_template")  # tests/benchmarks/conftest.py
def test_every_benchmark_prints_the_load_before_and_after(tmp_path: Path) -> None:
    throwaway = str(tmp_path / "load.sqlite3") if connection.vendor == "sqlite" else None
    out = io.StringIO()
    call_command(
        "benchmark", "ticks", rows=200, window_ticks=100, symbols=5, rounds=1, storage_rows=0,
        db_name=throwaway, quiet_wait=0, stdout=out,
    )  # fmt: skip
    text = out.getvalue()
    assert "load average (1 min) " in text and " before, " in text and " after, on " in text, text
    assert ("NOISY run" in text) != ("quiet start" in text), text
