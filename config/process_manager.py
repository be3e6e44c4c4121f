"""``make run``'s process manager: runs the Procfile's processes and restarts any that dies.

    python -m config.process_manager [Procfile]

honcho stopped every process when one exited, so one crash was an outage; supervisor restarts at
once and gives up after a few quick failures. Here a process that exits on its own is logged and
started again after a capped exponential backoff over its consecutive quick crashes (1 s, 2 s,
4 s ... 30 s), back to 1 s once it has stayed up RESTART_STABLE_S, while the others keep serving.
It never gives up: a process that cannot start keeps being tried every 30 s, and the log says why.

As with honcho: each Procfile line (``name: command``) runs through ``/bin/sh`` with the
environment plus the ``.env`` file's variables, its output and errors are printed line by line
prefixed with the time and its name (coloured on a terminal), and Ctrl-C (SIGINT) or SIGTERM stops
everything: SIGTERM to every process group, SIGKILL to what is left after STOP_GRACE_S (a second
Ctrl-C does that at once). Each line runs as ``exec <command>``, so the process the manager
watches is the program itself, not a shell around it: one command per line.

Plain Python, no Django: it starts before any settings exist.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

from config.backoff import backoff_delay
from config.metrics import (
    MULTIPROC_DIR_VARIABLE,
    OPERATOR_MULTIPROC_DIR,
    metrics_directory_clear,
    metrics_directory_for,
    metrics_process_dead,
)

RESTART_BASE_S = 1.0
RESTART_CAP_S = 30.0
# A process that ran this long was healthy: its next exit is a new first crash (restart after
# RESTART_BASE_S), not one more in a crash loop.
RESTART_STABLE_S = 30.0
# From SIGTERM to SIGKILL when stopping; the market flushes its queue and the worker finishes its
# task in this time.
STOP_GRACE_S = 10.0
POLL_S = 0.1
SYSTEM_NAME = "system"

_PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")
_COLOURS = (36, 33, 32, 35, 34, 91, 96, 93, 92, 95, 94)


@dataclass(frozen=True)
class ProcfileEntry:
    name: str
    command: str


def procfile_parse(text: str) -> list[ProcfileEntry]:
    """``name: command`` lines in order; other lines (comments, blank) are ignored, as honcho does."""
    entries: list[ProcfileEntry] = []
    for line in text.splitlines():
        match = _PROCFILE_LINE.match(line)
        if match:
            name, command = match.group(1), match.group(2).strip()
            if any(entry.name == name for entry in entries):
                raise ValueError(f"process {name!r} appears twice in the Procfile")
            entries.append(ProcfileEntry(name=name, command=command))
    if not entries:
        raise ValueError("the Procfile names no process")
    return entries


def dotenv_parse(text: str) -> dict[str, str]:
    """``KEY=value`` lines of a ``.env`` file, quoted as in a shell (honcho's reading of it)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        tokens = list(shlex.shlex(line, posix=True))
        if len(tokens) < 3 or tokens[1] != "=" or not re.fullmatch(r"[A-Za-z_][A-Za-z_0-9]*", tokens[0]):
            continue
        values[tokens[0]] = "".join(tokens[2:]).replace(r"\n", "\n").replace(r"\t", "\t")
    return values


class RestartPolicy:
    """When to start one process again after it exited: capped exponential backoff over its
    consecutive quick exits, reset once a run lasted ``stable_s``. The clock is injectable."""

    def __init__(
        self,
        *,
        base_s: float = RESTART_BASE_S,
        cap_s: float = RESTART_CAP_S,
        stable_s: float = RESTART_STABLE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.stable_s = stable_s
        self._clock = clock
        self.crashes = 0  # consecutive exits, each after a run shorter than stable_s
        self._started_at: float | None = None

    def started(self) -> None:
        self._started_at = self._clock()

    def uptime(self) -> float:
        return 0.0 if self._started_at is None else self._clock() - self._started_at

    def exited(self) -> float:
        """The process exited now: seconds to wait before starting it again."""
        if self.uptime() >= self.stable_s:
            self.crashes = 0
        self.crashes += 1
        self._started_at = None
        return backoff_delay(failures=self.crashes, base_s=self.base_s, cap_s=self.cap_s)


def _exit_description(returncode: int) -> str:
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-returncode).name}"
        return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


class Printer:
    """Lines prefixed ``HH:MM:SS name | ``, whole lines only, coloured when printing to a terminal."""

    def __init__(self, output: IO[str], names: Sequence[str]) -> None:
        self.output = output
        self.width = max(len(name) for name in [*names, SYSTEM_NAME])
        self.colour = output.isatty()
        self._colours = {name: _COLOURS[i % len(_COLOURS)] for i, name in enumerate(names)}
        self._lock = threading.Lock()

    def line(self, name: str, text: str) -> None:
        prefix = f"{dt.datetime.now():%H:%M:%S} {name.ljust(self.width)} | "
        colour = self._colours.get(name)
        if self.colour and colour:
            prefix = f"\033[0m\033[{colour}m{prefix}\033[0m"
        # A terminal that went away must not stop the relay: the processes run until stopped.
        with self._lock, contextlib.suppress(BrokenPipeError, ValueError):
            print(prefix + text, file=self.output, flush=True)

    def system(self, text: str) -> None:
        self.line(SYSTEM_NAME, text)


@dataclass
class Supervised:
    entry: ProcfileEntry
    policy: RestartPolicy
    process: subprocess.Popen[bytes] | None = None
    start_at: float | None = 0.0  # monotonic time of the next start; None while running
    reader: threading.Thread | None = None
    starts: int = 0
    history: list[int] = field(default_factory=list)  # pids, oldest first


class ProcessManager:
    def __init__(
        self,
        entries: Sequence[ProcfileEntry],
        *,
        env: Mapping[str, str],
        cwd: Path,
        output: IO[str] = sys.stdout,
        policy_factory: Callable[[], RestartPolicy] = RestartPolicy,
        stop_grace_s: float = STOP_GRACE_S,
    ) -> None:
        self.env = dict(env)
        self.cwd = cwd
        self.stop_grace_s = stop_grace_s
        self.metrics_dir = metrics_directory_for(self.env)
        self.printer = Printer(output, [entry.name for entry in entries])
        self.processes = [Supervised(entry=entry, policy=policy_factory()) for entry in entries]
        self._stop_signal: int | None = None
        self._kill_now = False

    # --- signals ---------------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stop_signal is None:
            self._stop_signal = signum
        else:
            self._kill_now = True  # a second Ctrl-C: no more waiting

    # --- running ---------------------------------------------------------------------------------
    def run(self) -> int:
        """Start everything, keep it running until SIGINT or SIGTERM, then stop it all."""
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        while self._stop_signal is None:
            now = time.monotonic()
            for supervised in self.processes:
                if supervised.process is not None and supervised.process.poll() is not None:
                    self._exited(supervised, now)
                if (
                    supervised.process is None
                    and supervised.start_at is not None
                    and now >= supervised.start_at
                ):
                    self._start(supervised)
            time.sleep(POLL_S)
        self.printer.system(f"{signal.Signals(self._stop_signal).name} received: stopping every process")
        return self.stop()

    def _start(self, supervised: Supervised) -> None:
        entry = supervised.entry
        try:
            process = subprocess.Popen(
                ["/bin/sh", "-c", f"exec {entry.command}"],
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                # Its own process group: Ctrl-C reaches only this manager, which stops the
                # processes in order; and a dead process's children can be found and ended.
                start_new_session=True,
            )
        except OSError as error:
            self.printer.system(f"{entry.name} could not be started: {error}")
            supervised.start_at = time.monotonic() + supervised.policy.exited()
            return
        supervised.process = process
        supervised.start_at = None
        supervised.starts += 1
        supervised.history.append(process.pid)
        supervised.policy.started()
        again = "" if supervised.starts == 1 else f" (start {supervised.starts})"
        self.printer.system(f"{entry.name} started with pid {process.pid}{again}")
        assert process.stdout is not None
        supervised.reader = threading.Thread(
            target=self._relay, args=(entry.name, process.stdout), name=f"relay-{entry.name}", daemon=True
        )
        supervised.reader.start()

    def _relay(self, name: str, stream: IO[bytes]) -> None:
        with stream:
            for raw in iter(stream.readline, b""):
                self.printer.line(name, raw.decode("utf-8", "replace").rstrip("\r\n"))

    def _exited(self, supervised: Supervised, now: float) -> None:
        process = supervised.process
        assert process is not None and process.returncode is not None
        # Its live gauges (open connections, queue depth) must not outlive it (config/metrics.py).
        metrics_process_dead(process.pid, self.metrics_dir)
        ran = supervised.policy.uptime()
        # Whatever it left behind (gunicorn's or celery's worker processes) goes with it, so the
        # next start finds its port and its role free.
        self._signal_group(process.pid, signal.SIGKILL)
        delay = supervised.policy.exited()
        supervised.process = None
        supervised.start_at = now + delay
        crashes = supervised.policy.crashes
        streak = f", {crashes} quick exits in a row" if crashes > 1 else ""
        self.printer.system(
            f"{supervised.entry.name} (pid {process.pid}) exited after {ran:.1f} s: "
            f"{_exit_description(process.returncode)}; restarting in {delay:.0f} s{streak}"
        )

    @staticmethod
    def _signal_group(pid: int, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signum)

    # --- stopping --------------------------------------------------------------------------------
    def stop(self) -> int:
        """SIGTERM to every running process group, SIGKILL after the grace; 0 when every process
        stopped on SIGTERM."""
        running = [s for s in self.processes if s.process is not None and s.process.poll() is None]
        for supervised in running:
            assert supervised.process is not None
            self._signal_group(supervised.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace_s
        while (
            any(s.process is not None and s.process.poll() is None for s in running)
            and time.monotonic() < deadline
            and not self._kill_now
        ):
            time.sleep(POLL_S)
        status = 0
        for supervised in running:
            process = supervised.process
            assert process is not None
            if process.poll() is None:
                self.printer.system(f"{supervised.entry.name} did not stop in time: SIGKILL")
                status = 1
            # The group too: a worker process that outlived its parent.
            self._signal_group(process.pid, signal.SIGKILL)
            process.wait()
            self.printer.system(f"{supervised.entry.name} stopped ({_exit_description(process.returncode)})")
        for supervised in self.processes:
            if supervised.reader is not None:
                supervised.reader.join(2)
        return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m config.process_manager",
        description="Run the Procfile's processes; restart one that exits, with capped backoff.",
    )
    parser.add_argument("procfile", nargs="?", default="Procfile", help="the Procfile (default: ./Procfile)")
    parser.add_argument("--env-file", default=".env", help="variables for the processes (default: ./.env)")
    args = parser.parse_args(argv)
    procfile = Path(args.procfile).resolve()
    entries = procfile_parse(procfile.read_text())
    env = dict(os.environ)
    env_file = Path(args.env_file)
    if env_file.exists():
        env.update(dotenv_parse(env_file.read_text()))
    # Python processes print as they go instead of in 8 KB blocks.
    env.setdefault("PYTHONUNBUFFERED", "1")
    # One metrics directory for every process, emptied here and only here: a process that
    # restarts must not wipe its siblings' counters (config/metrics.py).
    if OPERATOR_MULTIPROC_DIR is None:
        env.pop(MULTIPROC_DIR_VARIABLE, None)
    metrics_dir = metrics_directory_for(env)
    env[MULTIPROC_DIR_VARIABLE] = str(metrics_dir)
    metrics_directory_clear(metrics_dir)
    manager = ProcessManager(entries, env=env, cwd=procfile.parent)
    return manager.run()


if __name__ == "__main__":
    sys.exit(main())
