"""The root conftest's TEST_FROZEN_NOW: the run, and every Python process it starts, reads the
wall clock from the given instant on, in ``make test``'s one process and under ``make
test-fast``'s xdist workers alike."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

import pytest

from tests.processes import ROOT, VENV_BIN

FROZEN = dt.datetime(2031, 5, 6, 12, 0, tzinfo=dt.UTC)

INNER_TEST = f"""
import subprocess, sys, time

FROZEN = {FROZEN.timestamp()!r}


def test_this_process_and_the_one_it_starts_read_the_frozen_clock():
    mine = time.time()
    started = float(subprocess.run(
        [sys.executable, "-c", "import time; print(time.time())"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout)
    # Ticking from the frozen instant since the run started, a minute at most on a busy machine.
    assert 0 <= mine - FROZEN < 60, mine - FROZEN
    assert 0 <= started - FROZEN < 60, started - FROZEN
"""


@pytest.mark.slow
@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_a_frozen_run_and_the_processes_its_tests_start_share_the_frozen_clock(
    tmp_path: Path, workers: list[str]
) -> None:
    test_file = tmp_path / "test_frozen_clock.py"
    test_file.write_text(INNER_TEST)
    # A run of its own: none of this run's clock (should it be frozen itself) reaches it.
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"TEST_FROZEN_NOW", "TEST_CLOCK_OFFSET_S", "PYTHONPATH"}
    }
    env["TEST_FROZEN_NOW"] = FROZEN.isoformat()
    done = subprocess.run(
        [
            str(VENV_BIN / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
            # This repository's pytest configuration and root conftest.py, for a test outside it.
            "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT), "-p", "conftest",
            *workers, str(test_file),
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
