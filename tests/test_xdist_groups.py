"""``make test`` runs the live tests with ``--dist loadgroup``: each ``xdist_group`` ("load",
"stacks") must stay on one worker (tests/xdist_groups.py), or the CPU-bound tests compete and a
browser module starts its stack on both workers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.processes import ROOT

MODULE = """
import pytest

@pytest.mark.xdist_group("heavy")
@pytest.mark.parametrize("n", range(3))
def test_grouped(n):
    pass

@pytest.mark.parametrize("n", range(6))
def test_alone(n):
    pass
"""


def test_loadgroup_keeps_a_group_on_one_worker_across_modules(tmp_path: Path) -> None:
    for name in ("test_one.py", "test_two.py"):
        (tmp_path / name).write_text(MODULE)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",  # xdist and the plugin under test only: seconds, not more
    }
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "xdist", "-p", "tests.xdist_groups", "-p", "no:cacheprovider",
         "-n", "2", "--dist", "loadgroup", "-v", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    ran = re.findall(r"\[(gw\d)\] \[\s*\d+%\] PASSED (\S+)", run.stdout)
    assert len(ran) == 18, run.stdout
    grouped = {worker for worker, nodeid in ran if "test_grouped" in nodeid}
    assert len(grouped) == 1, run.stdout  # all six, from both modules, on one worker
    assert all(nodeid.endswith("@heavy") for _, nodeid in ran if "test_grouped" in nodeid), run.stdout
    assert not any("@" in nodeid for _, nodeid in ran if "test_alone" in nodeid), run.stdout
