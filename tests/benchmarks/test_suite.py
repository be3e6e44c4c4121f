"""``manage.py benchmark all``: a benchmark that fails is reported as failed, with a clear line,
and the others still run into the same report (Markdown, JSON, one PNG each).

The failing benchmark is a module built here (a benchmark is any module with ``add_arguments``
and ``run``, benchmarks/__init__.py); the one that runs is the real ``db`` benchmark at its
smallest sizes. The whole suite runs in tests/benchmarks/test_all.py (live).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

import benchmarks
from benchmarks import _suite
from benchmarks._report import Report, Row
from benchmarks._report_files import report_write
from benchmarks._suite import Outcome
from benchmarks.management.commands import benchmark as command

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _broken() -> ModuleType:
    module = ModuleType("benchmarks.broken")

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--size", type=int, default=1)

    def run(options: dict[str, Any], log: Callable[[str], None]) -> Report:
        log(f"seeding {options['size']}")
        raise RuntimeError("the load generator vanished")

    module.add_arguments = add_arguments  # type: ignore[attr-defined]
    module.run = run  # type: ignore[attr-defined]
    return module


@pytest.mark.django_db(transaction=True)
# The suite's reporting, whatever the database: CI runs it once (test_db.py runs the db benchmark,
# and test_database.py the suite's template database, on each backend).
@pytest.mark.backend_neutral
def test_a_failing_benchmark_is_reported_and_the_others_still_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = {"broken": _broken(), "db": benchmarks.available()["db"]}
    monkeypatch.setattr(command, "available", lambda: found)
    monkeypatch.setattr(_suite, "available", lambda: found)
    throwaway = str(tmp_path / "benchmark.sqlite3") if connection.vendor == "sqlite" else None
    out = io.StringIO()
    options = ["--smallest", "--reports-dir", str(tmp_path / "reports")]
    with pytest.raises(CommandError, match="benchmark\\(s\\) failed: broken"):
        call_command(
            "benchmark", "all", *options, *(["--db-name", throwaway] if throwaway else []), stdout=out
        )
    text = out.getvalue()

    assert "[1/2 broken] starting (0:00 elapsed)" in text, text
    # The benchmark's own progress, prefixed with the seconds since it started (the quiet start's
    # CPU sample among them: any number).
    assert re.search(r"^\[1/2 broken\] \+\d+s seeding 1$", text, re.MULTILINE), text
    assert "[1/2 broken] FAILED after " in text and "RuntimeError: the load generator vanished" in text, text
    assert "[2/2 db] starting" in text and "[2/2 db] done in " in text, text
    # One migration for the whole run: the db benchmark's database is a copy of the template.
    assert text.count(": migrating") == 1 and "a copy of the migrated" in text, text
    assert "portfolio of 30: queries" in text  # its smallest sizes, and its table printed

    latest = tmp_path / "reports" / "latest"
    assert latest.is_symlink() and latest.resolve().parent == (tmp_path / "reports").resolve()
    document = json.loads((latest / "report.json").read_text())
    broken, db = document["benchmarks"]
    assert broken["status"] == "failed" and broken["rows"] == []
    assert broken["error"] == "RuntimeError: the load generator vanished"
    assert db["status"] == "ok" and db["error"] is None
    scenarios = {row["scenario"]: row for row in db["rows"]}
    queries = scenarios["portfolio of 30: queries (batched vs N+1)"]
    assert queries["baseline"] == "31" and queries["met"] is True and queries["goal"] == "<= 5 (constant)"
    markdown = (latest / "report.md").read_text()
    assert "## broken" in markdown and "**FAILED**" in markdown and "## db" in markdown
    assert "| portfolio of 30: queries (batched vs N+1) | 2 | 31 |" in markdown  # the book, the ticks
    for name in ("broken", "db"):
        assert f"![{name}: optimised vs baseline]({name}.png)" in markdown
        assert (latest / f"{name}.png").read_bytes().startswith(PNG_SIGNATURE)


def test_smallest_sizes_name_only_options_the_benchmarks_have() -> None:
    for name, module in benchmarks.available().items():
        defaults = _suite.suite_options(module, smallest=False, overrides={})
        assert set(_suite.SMALLEST[name]) <= set(defaults), name
        smallest = _suite.suite_options(module, smallest=True, overrides={"db_name": "x", "nope": 1})
        assert smallest["db_name"] == "x" and "nope" not in smallest


def test_unknown_names_in_only_are_refused() -> None:
    with pytest.raises(CommandError, match="unknown benchmark\\(s\\) nope; available: api"):
        call_command("benchmark", "all", "--only", "db,nope", stdout=io.StringIO())


def test_a_noisy_run_reports_speed_goals_met_as_noisy_and_sizes_as_met(tmp_path: Path) -> None:
    report = Report(title="benchmark x", noisy=True)
    report.add(Row("p99 cached vs uncached", "3 ms", "30 ms", "10x", "<= 10 ms", True))
    report.add(Row("bytes per row", "115.7 B", "186.4 B", "0.62x", "<= 120 B", True, load_free=True))
    report.add(Row("p99 missed", "30 ms", "30 ms", "1x", "<= 10 ms", False))
    started = dt.datetime(2026, 12, 6, 20, 0, tzinfo=dt.UTC)
    directory = report_write(
        outcomes=[Outcome(name="x", report=report, error=None, elapsed_s=1.0)],
        reports_dir=tmp_path,
        started_at=started,
        finished_at=started,
        context={"database": "sqlite", "sizes": "smallest"},
    )
    markdown = (directory / "report.md").read_text()
    assert "| p99 cached vs uncached | 3 ms | 30 ms | 10x | <= 10 ms | noisy |" in markdown
    assert "| bytes per row | 115.7 B | 186.4 B | 0.62x | <= 120 B | yes |" in markdown
    assert "| p99 missed | 30 ms | 30 ms | 1x | <= 10 ms | **NO** |" in markdown
    document = json.loads((directory / "report.json").read_text())
    assert document["benchmarks"][0]["noisy"] is True
    assert [row["load_free"] for row in document["benchmarks"][0]["rows"]] == [False, True, False]
    assert (directory / "x.png").read_bytes().startswith(PNG_SIGNATURE)
