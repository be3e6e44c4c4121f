"""The report of ``manage.py benchmark all``: ``report.md``, ``report.json`` and one PNG per
benchmark (optimised vs baseline of each row), in a timestamped directory under
BENCHMARK_REPORTS_DIR, with ``latest`` pointing at the newest. The ops page links ``latest``
(analytics/benchmark_reports.py reads it; README: Benchmarks)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from benchmarks._suite import Outcome

LATEST = "latest"
MARKDOWN = "report.md"
JSON = "report.json"
# A figure's leading number, thousands separators allowed ("1,234.5 ms", "12/s", "0.8x").
_NUMBER = re.compile(r"^\s*(-?\d[\d,]*(?:\.\d+)?)")


def report_write(
    *,
    outcomes: list[Outcome],
    reports_dir: Path,
    started_at: dt.datetime,
    finished_at: dt.datetime,
    context: dict[str, Any],
) -> Path:
    """Write the report into ``reports_dir/<started_at>/``, point ``latest`` at it, return it."""
    directory = reports_dir / started_at.strftime("%Y%m%dT%H%M%SZ")
    directory.mkdir(parents=True, exist_ok=True)
    document = _document(outcomes, started_at=started_at, finished_at=finished_at, context=context)
    for entry, outcome in zip(document["benchmarks"], outcomes, strict=True):
        _plot(outcome, directory / entry["plot"])
    (directory / JSON).write_text(json.dumps(document, indent=2) + "\n")
    (directory / MARKDOWN).write_text(_markdown(document))
    # A new link renamed over the old one: a reader sees the previous report or this one, never none.
    link = reports_dir / f".{LATEST}-{os.getpid()}"
    link.unlink(missing_ok=True)
    link.symlink_to(directory.name, target_is_directory=True)
    link.replace(reports_dir / LATEST)
    return directory


def _document(
    outcomes: list[Outcome], *, started_at: dt.datetime, finished_at: dt.datetime, context: dict[str, Any]
) -> dict[str, Any]:
    benchmarks = []
    for outcome in outcomes:
        report = outcome.report
        benchmarks.append(
            {
                "name": outcome.name,
                "status": "failed" if outcome.error is not None else "ok",
                "error": outcome.error,
                "elapsed_s": round(outcome.elapsed_s, 1),
                "title": report.title if report else "",
                # Started on a loaded machine: its goals met prove nothing either way (benchmarks/_load.py).
                "noisy": report.noisy if report else False,
                "plot": f"{outcome.name}.png",
                "rows": [
                    {
                        "scenario": row.scenario,
                        "optimised": row.optimised,
                        "baseline": row.baseline,
                        "ratio": row.ratio,
                        "goal": row.goal,
                        "met": row.met,
                        # A size or a count: a noisy run's load cannot change it (benchmarks/_report.py).
                        "load_free": row.load_free,
                    }
                    for row in (report.rows if report else [])
                ],
                "notes": list(report.notes) if report else [],
            }
        )
    return {
        "started_at": started_at.isoformat(),
        "finished_at": finished_at.isoformat(),
        **context,
        "benchmarks": benchmarks,
    }


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _markdown(document: dict[str, Any]) -> str:
    context = ", ".join(
        f"{key}: {value}"
        for key, value in document.items()
        if key not in ("benchmarks", "started_at", "finished_at")
    )
    lines = [
        f"# Benchmark report {document['started_at']}",
        "",
        f"`manage.py benchmark all`, finished {document['finished_at']}; {context}.",
        "",
        "| benchmark | status | rows | goals missed | seconds |",
        "|---|---|---|---|---|",
    ]
    for entry in document["benchmarks"]:
        missed = sum(row["met"] is False for row in entry["rows"])
        lines.append(
            f"| [{entry['name']}](#{entry['name']}) | {entry['status']} | {len(entry['rows'])} | {missed} "
            f"| {entry['elapsed_s']} |"
        )
    for entry in document["benchmarks"]:
        lines += ["", f"## {entry['name']}", ""]
        if entry["error"] is not None:
            lines += [f"**FAILED** after {entry['elapsed_s']} s: `{_cell(entry['error'])}`", ""]
        if entry["title"]:
            lines += [entry["title"], ""]
        if entry["rows"]:
            lines += [
                "| scenario | optimised | baseline | ratio | goal | met? |",
                "|---|---|---|---|---|---|",
            ]
            for row in entry["rows"]:
                met = "-" if row["met"] is None else ("yes" if row["met"] else "**NO**")
                if row["met"] and entry["noisy"] and not row["load_free"]:
                    met = "noisy"
                cells = (row["scenario"], row["optimised"], row["baseline"], row["ratio"], row["goal"])
                lines.append("| " + " | ".join(_cell(cell) for cell in cells) + f" | {met} |")
            lines.append("")
        if entry["notes"]:
            lines += ["```", *entry["notes"], "```", ""]
        lines.append(f"![{entry['name']}: optimised vs baseline]({entry['plot']})")
    return "\n".join(lines) + "\n"


def _number(text: str) -> float | None:
    match = _NUMBER.match(text)
    return float(match.group(1).replace(",", "")) if match else None


def _plot(outcome: Outcome, path: Path) -> None:
    """Optimised vs baseline of every row whose two figures are numbers. The rows mix units
    (milliseconds, requests, bytes), so each pair is drawn relative to its larger figure and
    labelled with both as printed."""
    rows = []
    for row in outcome.report.rows if outcome.report else []:
        optimised, baseline = _number(row.optimised), _number(row.baseline)
        if optimised is not None and baseline is not None and max(abs(optimised), abs(baseline)) > 0:
            rows.append((row, optimised, baseline))
    figure = Figure(figsize=(10, max(2.5, 0.55 * len(rows) + 1.5)), layout="constrained")
    axes = figure.add_subplot()
    title = f"benchmark {outcome.name}: optimised vs baseline"
    if not rows:
        axes.set_axis_off()
        reason = f"FAILED: {outcome.error}" if outcome.error else "no row with two numeric figures"
        axes.text(0.5, 0.5, reason[:200], ha="center", va="center", wrap=True)
        axes.set_title(title)
        figure.savefig(path, format="png", dpi=100)
        return
    positions = range(len(rows))
    height = 0.38
    lowest = 0.0
    for offset, side, colour in ((-height / 2, "optimised", "#2a7ab9"), (height / 2, "baseline", "#c0504d")):
        values = []
        labels = []
        for row, optimised, baseline in rows:
            scale = max(abs(optimised), abs(baseline))
            value = optimised if side == "optimised" else baseline
            values.append(value / scale)
            lowest = min(lowest, value / scale)
            labels.append(row.optimised if side == "optimised" else row.baseline)
        bars = axes.barh([p + offset for p in positions], values, height=height, label=side, color=colour)
        axes.bar_label(bars, labels=labels, padding=3, fontsize=7)
    axes.set_yticks(list(positions), [_short(row.scenario) for row, _, _ in rows], fontsize=8)
    axes.invert_yaxis()
    axes.set_xlim(lowest * 1.1, 1.45)  # room on the right for the labels
    axes.set_xlabel("relative to the larger of the pair (figures as printed)")
    axes.legend(loc="lower right", fontsize=8)
    axes.set_title(title)
    figure.savefig(path, format="png", dpi=100)


def _short(scenario: str, width: int = 60) -> str:
    text = scenario.strip()
    return text if len(text) <= width else text[: width - 1] + "…"
