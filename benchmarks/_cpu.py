"""Where the cores go during a benchmark's load (``benchmark games``' CPU rows): CPU seconds per
second of the load for each process the benchmark started, the load client (this process), the
PostgreSQL server and the Redis server, and the machine as a whole.

Each figure is a difference of cumulative counters read before and after the load, so a busy
machine cannot skew it the way sampling would: a process tree's user plus system time (its own,
its reaped children's, its live descendants'; psutil), Redis's ``INFO cpu`` (the server's own
count, embedded or not), and for the processes the benchmark started, the time they were runnable
but waiting for a core (``/proc/<pid>/task/*/schedstat``, the kernel's run-queue wait). A web
worker's time is then CPU + run-queue wait + the rest, the rest being time blocked: on PostgreSQL,
Redis, or an empty accept queue. PostgreSQL is read only when it runs on this machine, twice: the
whole server (every database, a backend that closed included, since the postmaster reaps it) and
the backends of the benchmark's own database live at the end (one that closed during the load,
``CONN_MAX_AGE``, is missed), which other work on a shared server cannot inflate.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from django.db import connection

from config.redis_pools import redis_client


@dataclass(frozen=True)
class CpuSeconds:
    """Seconds by what spent them: CPU and run-queue wait by name, the machine's busy time, and the
    CPU of each PostgreSQL backend of the benchmark's database by pid. ``read`` gives them
    cumulative at one moment (``seconds``: that moment, monotonic); ``usage`` gives them per second of
    the load between two readings (``seconds``: the load's length), i.e. cores in use on average."""

    seconds: float
    cpu: dict[str, float]
    wait: dict[str, float]
    machine_busy: float
    backends: dict[int, float]

    def describe(self) -> str:
        parts = [f"{name} {value:.2f}" for name, value in self.cpu.items()]
        ours = sum(value for name, value in self.cpu.items() if "whole server" not in name)
        return (
            f"CPU during the load, cores in use (CPU seconds per second of the {self.seconds:.0f} s): "
            + ", ".join(parts)
            + f"; the run's own (whole servers left out) {ours:.2f}, the machine {self.machine_busy:.2f}"
            f" of {psutil.cpu_count() or 1}"
        )


def _tree(pid: int) -> list[psutil.Process]:
    try:
        process = psutil.Process(pid)
        return [process, *process.children(recursive=True)]
    except psutil.Error:
        return []


def _cpu_seconds(process: psutil.Process, *, children: bool) -> float:
    with contextlib.suppress(psutil.Error):
        times = process.cpu_times()
        total = times.user + times.system
        # Reaped children (a worker gunicorn replaced, a backend that closed): their time
        # is added to the parent's when it waits for them.
        return total + (times.children_user + times.children_system if children else 0.0)
    return 0.0


def _wait_seconds(process: psutil.Process) -> float:
    """Run-queue wait of every thread of ``process`` (field 2 of schedstat, in nanoseconds)."""
    total = 0
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{process.pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


def postgres_server_pid() -> int | None:
    """The postmaster's pid when PostgreSQL runs on this machine (this connection's backend's
    parent), else None."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        row = cursor.fetchone()
    if row is None:
        return None
    backend = int(row[0])
    with contextlib.suppress(psutil.Error):
        parent = psutil.Process(backend).parent()
        if parent is not None and "postgres" in parent.name():
            return parent.pid
    return None  # another host or another PID namespace


def _backends_seconds() -> dict[int, float]:
    """CPU so far of each PostgreSQL backend connected to this connection's database, by pid."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        pids = [int(row[0]) for row in cursor.fetchall()]
    seconds = {}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            seconds[pid] = _cpu_seconds(psutil.Process(pid), children=False)
    return seconds


def _redis_cpu_seconds() -> float | None:
    with contextlib.suppress(Exception):
        info = redis_client().info("cpu")
        return float(
            sum(
                float(info.get(key, 0.0))
                for key in (
                    "used_cpu_user",
                    "used_cpu_sys",
                    "used_cpu_user_children",
                    "used_cpu_sys_children",
                )
            )
        )
    return None


def _machine_busy_seconds() -> float:
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def read(*, started: dict[str, int], postgres_pid: int | None) -> CpuSeconds:
    """``started``: name -> pid of the processes the benchmark started (each counted with its
    descendants); plus "load client" (this process, its threads), PostgreSQL and Redis."""
    cpu: dict[str, float] = {}
    wait: dict[str, float] = {}
    for name, pid in started.items():
        tree = _tree(pid)
        cpu[name] = sum(_cpu_seconds(process, children=True) for process in tree[:1]) + sum(
            _cpu_seconds(process, children=False) for process in tree[1:]
        )
        wait[name] = sum(_wait_seconds(process) for process in tree)
    cpu["load client"] = _cpu_seconds(psutil.Process(), children=False)
    if postgres_pid is not None:
        tree = _tree(postgres_pid)
        cpu["PostgreSQL (whole server)"] = sum(
            _cpu_seconds(process, children=index == 0) for index, process in enumerate(tree)
        )
    redis = _redis_cpu_seconds()
    if redis is not None:
        cpu["Redis (whole server)"] = redis
    return CpuSeconds(
        seconds=time.monotonic(),
        cpu=cpu,
        wait=wait,
        machine_busy=_machine_busy_seconds(),
        backends=_backends_seconds() if postgres_pid is not None else {},
    )


def usage(before: CpuSeconds, after: CpuSeconds) -> CpuSeconds:
    seconds = max(after.seconds - before.seconds, 1e-9)

    def per_second(names: dict[str, float], earlier: dict[str, float]) -> dict[str, float]:
        return {name: (value - earlier[name]) / seconds for name, value in names.items() if name in earlier}

    # A backend that started during the load counts whole; one that ended is missed.
    backends = {
        pid: (value - before.backends.get(pid, 0.0)) / seconds for pid, value in after.backends.items()
    }
    cpu = per_second(after.cpu, before.cpu)
    if backends:
        cpu["PostgreSQL backends of the database"] = sum(backends.values())
    return CpuSeconds(
        seconds=seconds,
        cpu=cpu,
        wait=per_second(after.wait, before.wait),
        machine_busy=(after.machine_busy - before.machine_busy) / seconds,
        backends=backends,
    )
