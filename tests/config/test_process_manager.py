"""``make run``'s process manager: a crashed process is restarted with capped backoff while the
others keep serving, and Ctrl-C stops them all.

The restart schedule is checked with an injected clock; the behaviour with real processes, first
with two small ones, then with the real stack started as ``make run`` starts it, each role
killed with SIGKILL in turn.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
from celery import Celery
from websockets.exceptions import WebSocketException
from websockets.sync.client import connect

from config.process_manager import (
    RESTART_BASE_S,
    RESTART_CAP_S,
    RESTART_STABLE_S,
    STOP_GRACE_S,
    RestartPolicy,
    dotenv_parse,
    procfile_parse,
)
from tests.processes import ROOT, ProcfileStack, procfile_stack

ROLES = ("web", "ws", "worker", "beat", "market", "monitor")
# After a kill -9 the stack serves again within this long (the restart delay is RESTART_BASE_S).
RECOVERY_S = 10.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def test_restarts_back_off_doubling_up_to_the_cap_and_start_over_after_a_long_run() -> None:
    clock = FakeClock()
    policy = RestartPolicy(clock=clock)
    delays = []
    for _ in range(8):  # a process that dies 2 s after each start
        policy.started()
        clock.now += 2.0
        delays.append(policy.exited())
        clock.now += delays[-1]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert (RESTART_BASE_S, RESTART_CAP_S) == (1.0, 30.0)
    # A run just short of RESTART_STABLE_S is still part of the crash loop...
    policy.started()
    clock.now += RESTART_STABLE_S - 0.5
    assert policy.exited() == 30.0
    # ...a run that lasted it was healthy: its exit is a first crash again.
    policy.started()
    clock.now += RESTART_STABLE_S
    assert policy.exited() == 1.0
    policy.started()
    clock.now += 1.0
    assert policy.exited() == 2.0


def test_the_procfile_is_the_one_list_of_processes() -> None:
    entries = procfile_parse((ROOT / "Procfile").read_text())
    assert [entry.name for entry in entries] == list(ROLES)
    commands = {entry.name: entry.command for entry in entries}
    assert commands["market"] == ".venv/bin/python manage.py run_market"
    assert commands["monitor"] == ".venv/bin/python manage.py run_monitor"
    with pytest.raises(ValueError, match="twice"):
        procfile_parse("a: x\na: y\n")


def test_dotenv_lines_are_read_as_honcho_reads_them() -> None:
    text = "# comment\nA=1\nexport_not=\nB = 'two words'\nC=\"x\\ny\"\n1BAD=3\nNOEQUALS\n"
    assert dotenv_parse(text) == {"A": "1", "B": "two words", "C": "x\ny"}


def until(condition: Callable[[], bool], deadline: float, interval: float = 0.2) -> bool:
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.live
def test_a_crashing_process_is_restarted_with_backoff_while_the_other_keeps_running(tmp_path: Path) -> None:
    procfile = tmp_path / "Procfile"
    procfile.write_text(
        "steady: python3 -c 'import time; print(\"up\", flush=True); time.sleep(600)'\n"
        "crashy: python3 -c 'print(\"crash\", flush=True); raise SystemExit(3)'\n"
    )
    log_path = tmp_path / "manager.log"
    with open(log_path, "wb") as log:
        manager = subprocess.Popen(
            [sys.executable, "-m", "config.process_manager", str(procfile), "--env-file", str(tmp_path / ".env")],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        # Exits at about 0, 1, 3 and 7 s: four starts within 10 s (not dozens), one steady.
        assert until(lambda: log_path.read_text().count("crashy started") >= 4, time.monotonic() + 20)
        manager.send_signal(signal.SIGINT)
        assert manager.wait(timeout=STOP_GRACE_S + 5) == 0
    finally:
        if manager.poll() is None:
            manager.kill()
            manager.wait()
    output = log_path.read_text()
    print(output)
    delays = [
        int(d)
        for d in re.findall(
            r"crashy \(pid \d+\) exited after [\d.]+ s: exit code 3; restarting in (\d+) s", output
        )
    ]
    assert delays[:3] == [1, 2, 4]
    assert output.count("steady started") == 1 and "steady exited" not in output
    assert re.search(r"^\d\d:\d\d:\d\d steady +\| up$", output, re.MULTILINE)
    assert re.search(r"^\d\d:\d\d:\d\d crashy +\| crash$", output, re.MULTILINE)
    assert "SIGINT received: stopping every process" in output
    assert re.search(r"steady stopped \(killed by SIGTERM\)", output)
    steady_pid = int(re.findall(r"steady started with pid (\d+)", output)[0])
    assert not group_alive(steady_pid)


# --- The real stack -------------------------------------------------------------------------------


def http_ok(stack: ProcfileStack) -> bool:
    try:
        with urllib.request.urlopen(stack.base_url + "/healthz", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def ws_ok(stack: ProcfileStack) -> bool:
    try:
        with connect(stack.ws_url + "/v2/iex", open_timeout=2, close_timeout=1) as socket:
            return "connected" in str(socket.recv(timeout=2))
    except (OSError, TimeoutError, WebSocketException):
        return False


def count(stack: ProcfileStack, sql: str) -> int:
    try:
        return int(stack.query(sql) or 0)
    except sqlite3.Error:
        return -1  # locked for a moment by a writer; the caller asks again


def ticks(stack: ProcfileStack) -> int:
    return count(stack, "SELECT count(*) FROM trading_stockpricehistory")


def jobs_done(stack: ProcfileStack) -> int:
    """Leaderboard refreshes run by the worker (beat asks for one every 4 s)."""
    return count(stack, "SELECT coalesce(max(id), 0) FROM analytics_leaderboardsnapshot")


def grows(measure: Callable[[], int]) -> Callable[[], bool]:
    start = measure()
    return lambda: measure() > start


def latest_pid(stack: ProcfileStack, role: str) -> int:
    return stack.pids()[role][-1]


def restarted(stack: ProcfileStack, role: str, killed: int) -> bool:
    return latest_pid(stack, role) != killed


def serves_again(stack: ProcfileStack, role: str, deadline: float, celery: Celery) -> bool:
    """The restarted ``role`` does its job again before ``deadline``."""
    if role == "web":
        return until(lambda: http_ok(stack), deadline)
    if role == "ws":
        return until(lambda: ws_ok(stack), deadline)
    if role == "market":
        return until(grows(lambda: ticks(stack)), deadline)
    if role == "monitor":
        # The new monitor takes the dead one's lock at once (its holder is gone) and evaluates.
        since_start = f"monitor started with pid {latest_pid(stack, 'monitor')}"
        evaluating = re.compile(r"monitor\s+\| monitor: evaluating")
        return until(lambda: bool(evaluating.search(stack.log().split(since_start)[-1])), deadline)
    # A leaderboard refresh the worker ran: an unchanged board keeps its snapshot, so the worker's
    # own log says it, not a new snapshot row.
    ran = re.compile(r"worker\s+\| .*Task jobs\.leaderboard_refresh\[[^\]]+\] succeeded")
    if role == "worker":
        # A job for the new worker: the task beat sends every 4 s, sent now.
        since_start = f"worker started with pid {latest_pid(stack, 'worker')}"
        celery.send_task("jobs.leaderboard_refresh")
        return until(lambda: bool(ran.search(stack.log().split(since_start)[-1])), deadline)
    # beat: the new process sends its due tasks, and the worker runs them.
    since_start = f"beat started with pid {latest_pid(stack, 'beat')}"
    sent = re.compile(r"beat\s+\| .*Sending due task leaderboard-refresh")
    return until(
        lambda: bool(sent.search(after := stack.log().split(since_start)[-1])) and bool(ran.search(after)),
        deadline,
    )


@pytest.mark.live
@pytest.mark.xdist_group("stacks")  # make test runs chromium and whole-stack runs one at a time
@pytest.mark.slow
def test_make_run_serves_again_within_seconds_after_any_process_is_killed() -> None:
    with procfile_stack() as stack:
        ready = time.monotonic() + 120
        assert until(lambda: set(stack.pids()) == set(ROLES), ready), stack.log()
        assert until(lambda: http_ok(stack) and ws_ok(stack), ready), stack.log()
        assert until(grows(lambda: ticks(stack)), ready) and until(lambda: jobs_done(stack) > 0, ready)
        # Not the process's current app: the tests after this one in the same process send their
        # tasks through the current app, and this one's broker dies with the stack.
        celery = Celery(broker=stack.broker_url, set_as_current=False)

        for role in ROLES:
            before = {name: pids[-1] for name, pids in stack.pids().items()}
            killed = before[role]
            os.kill(killed, signal.SIGKILL)
            deadline = time.monotonic() + RECOVERY_S
            assert until(partial(restarted, stack, role, killed), deadline), role
            served = serves_again(stack, role, deadline, celery)
            assert served, f"{role} did not serve again within {RECOVERY_S} s:\n{stack.log()}"
            assert re.search(
                rf"{role} \(pid {killed}\) exited after [\d.]+ s: killed by SIGKILL", stack.log()
            )
            # Every other process kept running, and the stack kept serving meanwhile.
            others = {name: pids[-1] for name, pids in stack.pids().items() if name != role}
            assert others == {name: pid for name, pid in before.items() if name != role}
            assert http_ok(stack) and ws_ok(stack)

        # Ctrl-C: every process stops, on SIGTERM, and the manager exits cleanly.
        last = {name: pids[-1] for name, pids in stack.pids().items()}
        stack.manager.send_signal(signal.SIGINT)
        assert stack.manager.wait(timeout=STOP_GRACE_S + 10) == 0, stack.log()
        log = stack.log()
        for role in ROLES:
            assert re.search(rf"{role} stopped \(", log), role
            assert not group_alive(last[role]), role
        assert "did not stop in time" not in log
