"""Every benchmark waits for a quiet machine (the load average under one per core, the cores under
a quarter busy now) and marks a run that started loaded as noisy."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from benchmarks._load import (
    BUSY_LIMIT,
    POLL_S,
    PROC_STAT,
    SAMPLE_S,
    MachineLoad,
    busy_share,
    cpu_ticks_read,
    machine_quiet_wait,
)
from benchmarks._report import Report, Row


class FakeMachine:
    """A load average and a busy share of the cores that follow scripts, on a clock that sleeping
    advances; its CPU counters tick at 100 Hz per core, busy for each window's share of them."""

    def __init__(self, loads: list[float], busy: list[float] | None = None, *, cores: int = 2) -> None:
        self.loads = loads
        self.busy = busy
        self.cores = cores
        self.now = 0.0
        self.slept: list[float] = []
        self.ticks = (0, 0)
        self.read_at = 0.0

    def load(self) -> float:
        return self.loads.pop(0) if len(self.loads) > 1 else self.loads[0]

    def cpu_ticks(self) -> tuple[int, int] | None:
        if self.busy is None:
            return None  # no /proc/stat
        elapsed = round((self.now - self.read_at) * 100 * self.cores)
        if elapsed:
            share = self.busy.pop(0) if len(self.busy) > 1 else self.busy[0]
            self.ticks = (self.ticks[0] + round(share * elapsed), self.ticks[1] + elapsed)
        self.read_at = self.now
        return self.ticks

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def measure(machine: FakeMachine, *, max_wait_s: float = 60) -> tuple[MachineLoad, list[str]]:
    lines: list[str] = []
    load = machine_quiet_wait(
        max_wait_s=max_wait_s,
        log=lines.append,
        load=machine.load,
        cpu_ticks=machine.cpu_ticks,
        cores=machine.cores,
        sleep=machine.sleep,
        clock=lambda: machine.now,
    )
    return load, lines


def wait(machine: FakeMachine, *, max_wait_s: float = 60) -> tuple[float, bool, float]:
    load, _ = measure(machine, max_wait_s=max_wait_s)
    return load.before, load.noisy, load.waited_s


def test_a_quiet_machine_is_measured_after_one_cpu_sample() -> None:
    machine = FakeMachine([1.2], busy=[0.05])
    load, lines = measure(machine)
    assert (load.before, load.noisy, load.waited_s, load.busy) == (1.2, False, 0.0, 0.05)
    assert machine.slept == [SAMPLE_S] and lines == []
    assert load.describe(after=1.5) == (
        "load average (1 min) 1.20 before, 1.50 after, on 2 cores, CPU 5% busy just before: "
        "quiet start, after waiting 0 s"
    )


def test_it_waits_until_the_load_falls_below_one_per_core() -> None:
    machine = FakeMachine([5.0, 3.0, 2.0, 1.9], busy=[0.1])
    assert wait(machine) == (1.9, False, 6.0)


def test_a_machine_still_loaded_after_the_wait_gives_a_noisy_run() -> None:
    machine = FakeMachine([4.0], busy=[0.1])
    before, noisy, waited = wait(machine, max_wait_s=7)
    assert (before, noisy, waited) == (4.0, True, 7.0)
    assert wait(FakeMachine([4.0], busy=[0.1]), max_wait_s=0) == (4.0, True, 0.0)


def test_a_load_average_under_one_per_core_with_busy_cores_is_waited_out() -> None:
    """Right after another run the 1-minute average still reads under one per core (1.38 on 2)
    while the cores are busy now: it waits for the busy share, each sample over the poll before."""
    machine = FakeMachine([1.38, 1.3, 1.2], busy=[0.9, 0.6, 0.1])
    load, lines = measure(machine)
    assert (load.before, load.noisy, load.waited_s, load.busy) == (1.2, False, 2 * POLL_S, 0.1)
    assert machine.slept == [SAMPLE_S, POLL_S, POLL_S]
    assert lines == [
        "load average 1.38 on 2 cores, CPU 90% busy just before: waiting up to 60 s for a quiet machine"
    ]


def test_busy_cores_after_the_wait_give_a_noisy_run_whatever_the_load_average() -> None:
    machine = FakeMachine([0.5], busy=[0.3, 0.8, 0.4])
    load, _ = measure(machine, max_wait_s=3)
    assert (load.before, load.noisy, load.waited_s, load.busy) == (0.5, True, 3.0, 0.4)
    assert machine.slept == [SAMPLE_S, POLL_S, 1.0]  # the last poll cut to the bound
    assert load.describe(after=0.7).endswith(
        "on 2 cores, CPU 40% busy just before: NOISY run (started loaded: CPU busy >= 25%), after waiting 3 s"
    )
    both = MachineLoad(before=2.5, cores=2, waited_s=0.0, busy=BUSY_LIMIT)
    assert "NOISY run (started loaded: load average, CPU busy >= 25%)" in both.describe(after=2.0)


def test_without_proc_stat_the_load_average_alone_decides() -> None:
    """macOS has no /proc/stat: no sample is taken and the wait is the load average's alone."""
    machine = FakeMachine([1.2])
    load, _ = measure(machine)
    assert (load.before, load.noisy, load.waited_s, load.busy) == (1.2, False, 0.0, None)
    assert machine.slept == []
    assert "on 2 cores, CPU busy not sampled (no /proc/stat): quiet start" in load.describe(after=1.0)
    assert wait(FakeMachine([3.0, 2.5, 1.0]), max_wait_s=60) == (1.0, False, 2 * POLL_S)


def test_the_cpu_ticks_are_read_from_proc_stat_s_aggregate_line(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice: guest is inside user.
    stat.write_text("cpu  100 5 40 800 50 1 2 2 30 0\ncpu0 50 2 20 400 25 0 1 1 15 0\n")
    assert cpu_ticks_read(str(stat)) == (150, 1000)
    assert cpu_ticks_read(str(tmp_path / "missing")) is None
    stat.write_text("intr 1 2 3\n")
    assert cpu_ticks_read(str(stat)) is None
    stat.write_text("")
    assert cpu_ticks_read(str(stat)) is None
    assert busy_share((150, 1000), (200, 1200)) == 0.25
    assert busy_share(None, (200, 1200)) is None and busy_share((150, 1000), (150, 1000)) is None
    if Path(PROC_STAT).exists():  # the machine's own, where there is one
        ticks = cpu_ticks_read()
        assert ticks is not None and 0 <= ticks[0] <= ticks[1]


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
    assert "% busy just before: " in text or "CPU busy not sampled" in text, text
    assert ("NOISY run" in text) != ("quiet start" in text), text
