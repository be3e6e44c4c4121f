"""``manage.py benchmark <name> [options]``: run one benchmark from ``benchmarks/``.

Each prints a table (scenario, optimised, baseline, ratio, goal, met?); ``--strict`` makes a
missed goal exit non-zero. Before measuring, each waits for a quiet machine (benchmarks/_load.py)
and prints the load before and after; a run that started loaded prints "noisy" for the goals it
met. ``manage.py benchmark --help`` lists the benchmarks available. ``manage.py benchmark all``
runs every one (benchmarks/_suite.py) and writes one report (benchmarks/_report_files.py) under
BENCHMARK_REPORTS_DIR.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from benchmarks import available
from benchmarks._database import template_database
from benchmarks._load import machine_quiet_wait
from benchmarks._report import Report
from benchmarks._report_files import report_write
from benchmarks._suite import suite_run

ALL = "all"
QUIET_WAIT_HELP = (
    "seconds to wait for the load average to fall below one per core and the cores to be under a "
    "quarter busy (/proc/stat, over the last second) before measuring "
    "(default settings.BENCHMARK_QUIET_WAIT_S); a run that starts above either is noisy"
)


class Command(BaseCommand):
    help = "Run a benchmark that measures an optimisation against its naive baseline."

    def add_arguments(self, parser: CommandParser) -> None:
        benchmarks = available()
        names = ", ".join(benchmarks) or "none"
        subparsers = parser.add_subparsers(
            dest="benchmark",
            metavar="name",
            title="benchmarks",
            description=f"available: {names}",
            required=True,
            parser_class=CommandParser,  # argparse errors become CommandError under call_command
        )
        for name, module in benchmarks.items():
            sub = subparsers.add_parser(name, help=getattr(module, "HELP", ""), description=module.__doc__)
            sub.formatter_class = argparse.RawDescriptionHelpFormatter
            module.add_arguments(sub)
            sub.add_argument("--strict", action="store_true", help="exit non-zero when a goal is missed")
            sub.add_argument("--quiet-wait", type=float, default=None, help=QUIET_WAIT_HELP)
        every = subparsers.add_parser(
            ALL,
            help="run every benchmark and write one report (Markdown, JSON, PNG plots)",
            description=(
                f"Runs {names} in turn, each with its defaults, and writes report.md, report.json "
                "and a PNG per benchmark into a timestamped directory under BENCHMARK_REPORTS_DIR "
                "(VAR_DIR/benchmarks), with `latest` pointing at the newest. A benchmark that fails "
                "is reported as failed and the others still run; the command then exits non-zero."
            ),
        )
        every.add_argument(
            "--smallest",
            action="store_true",
            help="each benchmark at its smallest sizes (minutes, not the figures to read; "
            "benchmarks/_suite.py SMALLEST)",
        )
        every.add_argument("--only", default="", help="comma-separated benchmarks to run (default: all)")
        every.add_argument("--skip", default="", help="comma-separated benchmarks to leave out")
        every.add_argument(
            "--db-name",
            default=None,
            help="throwaway database every benchmark uses in turn (file on SQLite, name on PostgreSQL)",
        )
        every.add_argument(
            "--reports-dir", default=None, help="where to write the report (default BENCHMARK_REPORTS_DIR)"
        )
        every.add_argument("--strict", action="store_true", help="exit non-zero when a goal is missed")
        every.add_argument(
            "--quiet-wait", type=float, default=None, help=QUIET_WAIT_HELP + " (before each benchmark)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        benchmarks = available()
        name = options["benchmark"]
        if name == ALL:
            self._all(options, list(benchmarks))
            return
        if name not in benchmarks:
            raise CommandError(f"unknown benchmark {name!r}; available: {', '.join(benchmarks)}")

        def log(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        wait = options.get("quiet_wait")
        load = machine_quiet_wait(
            max_wait_s=settings.BENCHMARK_QUIET_WAIT_S if wait is None else float(wait), log=log
        )
        report: Report = benchmarks[name].run(options, log)
        report.noisy = load.noisy
        report.notes.append(load.describe(after=os.getloadavg()[0]))
        self.stdout.write("")
        self.stdout.write(report.render())
        if report.missed:
            missed = "; ".join(row.scenario for row in report.missed)
            message = f"goal missed: {missed}"
            if options.get("strict"):
                raise CommandError(message)
            self.stdout.write(self.style.WARNING(message))

    def _all(self, options: dict[str, Any], names: list[str]) -> None:
        def listed(value: str) -> list[str]:
            chosen = [item.strip() for item in value.split(",") if item.strip()]
            unknown = [item for item in chosen if item not in names]
            if unknown:
                raise CommandError(
                    f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(names)}"
                )
            return chosen

        only, skip = listed(options["only"]), listed(options["skip"])
        chosen = [name for name in names if (not only or name in only) and name not in skip]
        if not chosen:
            raise CommandError("--only and --skip leave no benchmark to run")
        if connection.in_atomic_block:
            raise CommandError("benchmarks switch databases, so they cannot run inside a transaction")
        reports_dir = Path(options["reports_dir"] or settings.BENCHMARK_REPORTS_DIR)
        wait = options.get("quiet_wait")

        def log(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        started_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
        sizes = "smallest" if options["smallest"] else "defaults"
        log(f"benchmark all: {', '.join(chosen)} at their {sizes} on {connection.vendor}")
        overrides = {"db_name": options["db_name"]} if options["db_name"] else {}
        # Each benchmark starts on a fresh database, copied from one migrated once here.
        with template_database(name=options["db_name"], log=log):
            outcomes = suite_run(
                names=chosen,
                smallest=options["smallest"],
                overrides=overrides,
                quiet_wait_s=settings.BENCHMARK_QUIET_WAIT_S if wait is None else float(wait),
                log=log,
            )
        directory = report_write(
            outcomes=outcomes,
            reports_dir=reports_dir,
            started_at=started_at,
            finished_at=dt.datetime.now(dt.UTC).replace(microsecond=0),
            context={"database": connection.vendor, "sizes": sizes},
        )
        for outcome in outcomes:
            if outcome.report is not None:
                log("")
                log(outcome.report.render())
        log("")
        log(f"report: {directory / 'report.md'} (and report.json, one PNG per benchmark)")
        log(f"latest: {reports_dir / 'latest'}")
        failed = [outcome.name for outcome in outcomes if outcome.error is not None]
        missed = [
            f"{outcome.name}: {row.scenario}"
            for outcome in outcomes
            if outcome.report
            for row in outcome.report.missed
        ]
        if missed:
            message = f"goal missed: {'; '.join(missed)}"
            if options["strict"] and not failed:
                raise CommandError(message)
            self.stdout.write(self.style.WARNING(message))
        if failed:
            raise CommandError(
                f"benchmark(s) failed: {', '.join(failed)} (the report has the others' results)"
            )
