"""The ops page links the latest ``manage.py benchmark all`` report and serves its files to staff
only, and nothing but the report's own files (the whole suite: tests/benchmarks/test_all.py)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from django.test import Client
from pytest_django.fixtures import Settings

from benchmarks._report import Report, Row
from benchmarks._report_files import report_write
from benchmarks._suite import Outcome
from tests.analytics.test_ops_page import client_for

pytestmark = pytest.mark.django_db

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _report(
    reports_dir: Path, *, started_at: dt.datetime = dt.datetime(2026, 12, 6, 20, 0, tzinfo=dt.UTC)
) -> Path:
    report = Report(title="benchmark db: a small run")
    report.add(Row("portfolio of 30: queries", "4", "31", "7.8x fewer", "<= 5", True))
    report.add(Row("history page 1,000: keyset vs OFFSET", "0.347 ms", "0.862 ms", "2.49x", ">= 10x", False))
    return report_write(
        outcomes=[
            Outcome(name="db", report=report, error=None, elapsed_s=3.8),
            Outcome(name="stream", report=None, error="RuntimeError: no daphne", elapsed_s=0.5),
        ],
        reports_dir=reports_dir,
        started_at=started_at,
        finished_at=started_at + dt.timedelta(minutes=1),
        context={"database": "sqlite", "sizes": "smallest"},
    )


def test_staff_get_the_link_and_the_files(tmp_path: Path, settings: Settings) -> None:
    settings.BENCHMARK_REPORTS_DIR = tmp_path / "benchmarks"
    staff = client_for(staff=True)
    assert "No benchmark report yet" in staff.get("/ops/").content.decode()
    assert staff.get("/ops/benchmarks/report.md").status_code == 404

    _report(tmp_path / "benchmarks")
    page = staff.get("/ops/").content.decode()
    assert 'id="ops-benchmark-report" href="/ops/benchmarks/report.md"' in page
    assert "2026-12-06T20:00:00+00:00" in page
    assert '<a href="/ops/benchmarks/db.png">db</a>: ok, 2 rows, 1 goal missed' in page
    assert '<a href="/ops/benchmarks/stream.png">stream</a>: failed, 0 rows, 0 goals missed' in page

    markdown = staff.get("/ops/benchmarks/report.md")
    assert markdown.status_code == 200 and markdown["Content-Type"] == "text/plain; charset=utf-8"
    assert "| portfolio of 30: queries | 4 | 31 |" in markdown.getvalue().decode()
    document = staff.get("/ops/benchmarks/report.json")
    assert document["Content-Type"] == "application/json"
    assert json.loads(document.getvalue())["benchmarks"][1]["error"] == "RuntimeError: no daphne"
    for name in ("db", "stream"):
        plot = staff.get(f"/ops/benchmarks/{name}.png")
        assert plot["Content-Type"] == "image/png"
        assert plot.getvalue().startswith(PNG_SIGNATURE)


def test_newer_reports_replace_latest(tmp_path: Path, settings: Settings) -> None:
    settings.BENCHMARK_REPORTS_DIR = tmp_path
    first = _report(tmp_path, started_at=dt.datetime(2026, 12, 6, 20, 0, tzinfo=dt.UTC))
    second = _report(tmp_path, started_at=dt.datetime(2026, 12, 7, 9, 30, tzinfo=dt.UTC))
    assert first.is_dir() and second.is_dir() and first != second  # earlier reports stay
    assert (tmp_path / "latest").resolve() == second.resolve()
    assert "Latest report (2026-12-07T09:30:00+00:00" in client_for(staff=True).get("/ops/").content.decode()


def test_others_get_nothing(tmp_path: Path, settings: Settings) -> None:
    settings.BENCHMARK_REPORTS_DIR = tmp_path
    _report(tmp_path)
    anonymous = Client().get("/ops/benchmarks/report.md")
    assert anonymous.status_code == 302 and "/login" in anonymous["Location"]
    trader = client_for(staff=False)
    for name in ("report.md", "report.json", "db.png"):
        assert trader.get(f"/ops/benchmarks/{name}").status_code == 403


def test_only_the_reports_own_files_are_served(tmp_path: Path, settings: Settings) -> None:
    settings.BENCHMARK_REPORTS_DIR = tmp_path / "benchmarks"
    directory = _report(tmp_path / "benchmarks")
    (tmp_path / "secret.json").write_text("{}")
    (directory / "outside.json").symlink_to(tmp_path / "secret.json")  # resolves out of the directory
    (directory / "notes.txt").write_text("not a report file")
    staff = client_for(staff=True)
    for path in (
        "/ops/benchmarks/..%2F..%2Fsecret.json",
        "/ops/benchmarks/%2e%2e%2fsecret.json",
        "/ops/benchmarks/outside.json",
        "/ops/benchmarks/notes.txt",
        "/ops/benchmarks/missing.png",
        "/ops/benchmarks/.report.json",
    ):
        assert staff.get(path).status_code == 404, path
    assert staff.get("/ops/benchmarks/../../secret.json").status_code == 404  # normalised to /secret.json
