"""The latest ``manage.py benchmark all`` report, for the ops page: what it holds and its files.

benchmarks/_report_files.py writes each report into a directory of BENCHMARK_REPORTS_DIR and points
``latest`` at the newest; this module only reads files there (analytics sits below benchmarks, so
the directory is a setting rather than an import). Only the report's own names are served, and
only when they resolve inside BENCHMARK_REPORTS_DIR, so no request reaches another file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

LATEST = "latest"
REPORT_JSON = "report.json"
# report.md, report.json and one <benchmark>.png each: a plain name, no directory part.
_SERVED_NAME = re.compile(r"^[A-Za-z0-9_-]+\.(md|json|png)$")
CONTENT_TYPES = {
    # Markdown as plain text, so a browser shows it rather than downloading it.
    "md": "text/plain; charset=utf-8",
    "json": "application/json",
    "png": "image/png",
}


@dataclass(frozen=True)
class BenchmarkSummary:
    name: str
    status: str
    rows: int
    missed: int
    plot: str


@dataclass(frozen=True)
class BenchmarkReport:
    started_at: str
    sizes: str
    database: str
    benchmarks: list[BenchmarkSummary]


def benchmark_report_latest_get() -> BenchmarkReport | None:
    """The latest report's summary, or None when there is none (or it cannot be read)."""
    path = benchmark_report_file_get(name=REPORT_JSON)
    if path is None:
        return None
    try:
        document = json.loads(path.read_text())
        return BenchmarkReport(
            started_at=str(document["started_at"]),
            sizes=str(document.get("sizes", "")),
            database=str(document.get("database", "")),
            benchmarks=[
                BenchmarkSummary(
                    name=str(entry["name"]),
                    status=str(entry["status"]),
                    rows=len(entry["rows"]),
                    missed=sum(row["met"] is False for row in entry["rows"]),
                    plot=str(entry["plot"]),
                )
                for entry in document["benchmarks"]
            ],
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None  # half-written or foreign: the ops page shows no report rather than an error


def benchmark_report_file_get(*, name: str) -> Path | None:
    """The file ``name`` of the latest report, or None unless it is one of the report's names and
    exists inside BENCHMARK_REPORTS_DIR."""
    if not _SERVED_NAME.match(name):
        return None
    root = Path(settings.BENCHMARK_REPORTS_DIR).resolve()
    path = (root / LATEST / name).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


def benchmark_report_content_type(*, name: str) -> str:
    return CONTENT_TYPES[name.rsplit(".", 1)[-1]]
