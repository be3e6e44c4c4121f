"""``manage.py benchmark <name> [options]``: run one benchmark from ``benchmarks/``.

Each prints a table (scenario, optimised, baseline, ratio, goal, met?); ``--strict`` makes a
missed goal exit non-zero. Before measuring, each waits for a quiet machine (benchmarks/_load.py)
and prints the load before and after; a run that started loaded prints "noisy" for the goals it
met. ``manage.py benchmark --help`` lists the benchmarks available.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from benchmarks import available
from benchmarks._load import machine_quiet_wait
from benchmarks._report import Report


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
            sub.add_argument(
                "--quiet-wait",
                type=float,
                default=None,
                help="seconds to wait for the load average to fall below one per core before "
                "measuring (default settings.BENCHMARK_QUIET_WAIT_S); a run that starts above it is noisy",
            )

    def handle(self, *args: Any, **options: Any) -> None:
        benchmarks = available()
        name = options["benchmark"]
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
