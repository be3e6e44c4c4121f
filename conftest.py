"""Repository-wide pytest policy.

- Hypothesis profiles: ``dev`` locally, ``ci`` when ``CI=true``; ``HYPOTHESIS_PROFILE`` overrides.
- With ``CI=true`` a skipped or xfailed test fails the run: a skip in CI hides a missing browser,
  server or database instead of testing the product.
- CI runs the suite twice, on SQLite + embedded Redis and on PostgreSQL + Redis. The second pass
  sets ``DB_TESTS_ONLY=1``, which deselects (never skips) every test that does not touch the
  database, so backend-neutral tests run once. ``@pytest.mark.backend_neutral`` says the same of a
  test that needs a database but not a particular one (a browser driving pages over a live stack):
  it runs in the first pass only.
- ``@pytest.mark.db_backend("postgresql")`` limits a test to the named backends (Django's
  ``connection.vendor``); on other backends it is deselected, so it needs no skip.
- ``TEST_FROZEN_NOW=<ISO 8601 instant with offset>`` (opt-in) runs the whole suite as if the wall
  clock had read that instant when the run started (it keeps ticking), in the test process and in
  every Python process the tests start: a check that no test depends on the hour or the day.
- Within pytest-django's order (rolled-back, then transactional, then database-free tests), tests
  marked ``slow`` run first, so under xdist none of them is left running alone at the end.
- A test that starts a server, a worker, the market or a browser must be marked
  ``@pytest.mark.live`` (``make test-fast`` runs ``-m "not live"``); one that is not fails at the
  start of the process.

Shared fixtures belong in ``tests/conftest.py``; this file holds only policy.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
import time
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

# xdist_group marks reach pytest-xdist's scheduler again under pytest 9.2 (see the module).
pytest_plugins = ["tests.xdist_groups"]

# --- Metrics: one multiprocess directory per pytest process ---------------------------------------
# Each pytest process (each xdist worker) and the servers its tests start write their metrics into
# a directory of their own, so a test reads only its own run's series. The settings (and so
# config/metrics.py) are loaded before this module, but prometheus-client opens a value's file in
# the directory the environment names when the value is first written, which is later.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="test-metrics-")


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


# Read by their literal names: tests/config/test_settings.py matches the README's table against them.
IN_CI = _flag(os.environ.get("CI"))
DB_TESTS_ONLY = _flag(os.environ.get("DB_TESTS_ONLY"))

# --- TEST_FROZEN_NOW: the whole run at another wall-clock time ------------------------------------
FROZEN_NOW = os.environ.get("TEST_FROZEN_NOW", "").strip()
# Read by tests/clock_shim/sitecustomize.py in each Python process the tests start.
CLOCK_OFFSET_ENV = "TEST_CLOCK_OFFSET_S"
_CLOCK_SHIM = Path(__file__).resolve().parent / "tests" / "clock_shim"


def _frozen_now(text: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise pytest.UsageError(f"TEST_FROZEN_NOW={text!r} is not an ISO 8601 instant") from None
    if moment.tzinfo is None:
        raise pytest.UsageError(f"TEST_FROZEN_NOW={text!r} needs an offset, e.g. 2026-03-08T01:59:00-05:00")
    return moment


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if not FROZEN_NOW:
        return
    import time_machine

    moment = _frozen_now(FROZEN_NOW)
    if time_machine.escape_hatch.is_travelling():
        # An xdist worker: it inherited the shim and the offset from the run that started it, so
        # its clock already reads the run's. Travelling again from here would hand its children an
        # offset measured against that shifted clock, i.e. the real time.
        return
    # Children shift by the same offset from their own start, so all processes share one clock.
    os.environ[CLOCK_OFFSET_ENV] = repr(moment.timestamp() - time.time())
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_CLOCK_SHIM), os.environ.get("PYTHONPATH")]))
    time_machine.travel(moment, tick=True).start()
    time.time()  # a ticking travel counts from its first reading: take it now, as the offset was


# --- Hypothesis ---------------------------------------------------------------------------------
# Database-backed examples vary a lot in duration, so "dev" only catches pathological ones and
# "ci" (shared, busy machines) has no deadline at all.
hypothesis_settings.register_profile("dev", deadline=dt.timedelta(seconds=1))
hypothesis_settings.register_profile(
    "ci", max_examples=250, deadline=None, derandomize=False, print_blob=True
)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if IN_CI else "dev"))


def pytest_report_header(config: pytest.Config) -> list[str]:
    profile = hypothesis_settings.get_current_profile_name()
    flags = [f"hypothesis profile: {profile}", f"CI={'true' if IN_CI else 'false'}"]
    if DB_TESTS_ONLY:
        flags.append("DB_TESTS_ONLY=1")
    if FROZEN_NOW:
        flags.append(f"TEST_FROZEN_NOW={FROZEN_NOW} (the clock ticks on from there)")
    return ["; ".join(flags)]


# --- CI: no skips, no xfails --------------------------------------------------------------------
_NO_SKIP_HINT = (
    "Make the test runnable here, or, if it can only run on one database backend, mark it "
    '@pytest.mark.db_backend("<vendor>") so it is deselected elsewhere instead of skipped.'
)


_converted: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _converted:
        terminalreporter.write_line(
            f"CI=true: {len(_converted)} skipped/xfail outcomes were turned into failures. {_NO_SKIP_HINT}",
            red=True,
        )


def _skip_reason(longrepr: object) -> str:
    # A skip's longrepr is (path, lineno, reason); the reason starts with "Skipped: ".
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        path, lineno, reason = longrepr
        return f"{str(reason).removeprefix('Skipped: ')} ({path}:{lineno})"
    return str(longrepr)


def _fail_instead_of_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    wasxfail = getattr(report, "wasxfail", None)
    if wasxfail is not None:
        outcome = "xpassed" if report.passed else "xfailed"
        detail = f"test {outcome} (xfail reason: {wasxfail or 'none given'})"
        del report.wasxfail  # otherwise the terminal still reports it as xfail/xpass
    elif report.skipped:
        detail = f"test skipped: {_skip_reason(report.longrepr)}"
    else:
        return
    report.outcome = "failed"
    report.longrepr = f"CI=true forbids skipped and xfail tests; {detail}."
    _converted.append(report.nodeid)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if IN_CI:
        _fail_instead_of_skip(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    # Module-level pytest.skip(allow_module_level=True) and pytest.importorskip land here.
    report = yield
    if IN_CI:
        _fail_instead_of_skip(report)
    return report


# --- DB_TESTS_ONLY and backend-specific tests -----------------------------------------------------
DB_FIXTURES = frozenset(
    {
        "db",
        "transactional_db",
        "django_db_reset_sequences",
        "django_db_serialized_rollback",
        "django_db_setup",
        "live_server",
    }
)
_deselected_key = pytest.StashKey[dict[str, int]]()
_vendor_key = pytest.StashKey[str]()


def _uses_database(item: pytest.Item) -> bool:
    if item.get_closest_marker("backend_neutral"):
        return False
    if item.get_closest_marker("django_db") or item.get_closest_marker("db_backend"):
        return True
    # fixturenames is the transitive closure, so fixtures built on `db` count too.
    if DB_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        return True
    cls = getattr(item, "cls", None)
    if cls is not None:
        from django.test import TransactionTestCase  # django.test.TestCase is a subclass

        return issubclass(cls, TransactionTestCase)
    return False


def _backend_vendors(item: pytest.Item) -> tuple[str, ...]:
    marker = item.get_closest_marker("db_backend")
    return tuple(str(vendor) for vendor in marker.args) if marker else ()


def _current_vendor() -> str:
    from django.db import connections

    return str(connections["default"].vendor)  # does not open a connection


@pytest.hookimpl(trylast=True)  # after pytest-django's own ordering
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    counts: dict[str, int] = {}
    deselected: list[pytest.Item] = []
    kept: list[pytest.Item] = []
    vendor = _current_vendor() if any(_backend_vendors(item) for item in items) else ""
    for item in items:
        vendors = _backend_vendors(item)
        if vendors and vendor not in vendors:
            counts["other_backend"] = counts.get("other_backend", 0) + 1
            deselected.append(item)
        elif DB_TESTS_ONLY and not _uses_database(item):
            counts["backend_neutral"] = counts.get("backend_neutral", 0) + 1
            deselected.append(item)
        else:
            kept.append(item)
    if deselected:
        items[:] = kept
        config.hook.pytest_deselected(items=deselected)

    config.stash[_deselected_key] = counts
    config.stash[_vendor_key] = vendor
    # Within each of pytest-django's groups, slow tests first (a stable sort keeps every other
    # order): xdist hands out tests in this order, so a minutes-long test (the ledger state
    # machine) starts early on one worker while the other takes the rest, instead of starting late
    # and running on alone at the end. The groups stay in pytest-django's order, so no test that
    # reads a data migration's rows runs after a transactional test has emptied the tables.
    items.sort(key=lambda item: (_django_order(item), item.get_closest_marker("slow") is None))


def _django_order(item: pytest.Item) -> int:
    """pytest-django's (and Django's) test order: tests in a rolled-back transaction, then
    transactional ones (which empty the tables, data migrations' rows included), then the rest."""
    cls = getattr(item, "cls", None)
    if cls is not None:
        from django.test import TestCase, TransactionTestCase

        if issubclass(cls, TransactionTestCase):
            return 0 if issubclass(cls, TestCase) else 1
    marker = item.get_closest_marker("django_db")
    fixtures = set(getattr(item, "fixturenames", ()))
    if (marker and (marker.kwargs.get("transaction") or marker.kwargs.get("reset_sequences"))) or (
        fixtures & {"transactional_db", "live_server"}
    ):
        return 1
    return 0 if marker or "db" in fixtures else 2


def _tests(count: int) -> str:
    return f"{count} test{'' if count == 1 else 's'}"


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> list[str]:
    counts = config.stash.get(_deselected_key, {})
    lines: list[str] = []
    if DB_TESTS_ONLY:
        lines.append(
            f"DB_TESTS_ONLY=1: deselected {_tests(counts.get('backend_neutral', 0))} that do not "
            f"depend on the database backend; {_tests(len(items))} remain."
        )
    if counts.get("other_backend"):
        vendor = config.stash.get(_vendor_key, "") or "?"
        lines.append(
            f"db_backend marker: deselected {_tests(counts['other_backend'])} meant for other "
            f"database backends (this run uses {vendor})."
        )
    return lines


# --- Live tests are marked ------------------------------------------------------------------------
# Programs that make a test live: servers (gunicorn, daphne), Celery, load generators, PostgreSQL
# of a test's own, the Playwright driver (which starts chromium), and Python processes running the
# market, the process manager or a benchmark's stream servers and clients.
_LIVE_PROGRAMS = frozenset({"gunicorn", "daphne", "celery", "wrk", "initdb", "pg_ctl"})
_LIVE_ARGUMENTS = frozenset(
    {"run_market", "config.process_manager", "benchmarks._stream_procs", "run-driver"}
)
_running: list[pytest.Item] = []


def _starts_live_process(argv: Sequence[Any]) -> str | None:
    words = [str(arg) for arg in argv]
    programs = {Path(word).name for word in words}
    if found := programs & _LIVE_PROGRAMS or _LIVE_ARGUMENTS.intersection(words):
        return sorted(found)[0]
    # A Redis server of the test's own; the embedded one (a Unix socket under VAR_DIR) is shared.
    if "redis-server" in programs and "--unixsocket" not in words:
        return "redis-server"
    return None


def _refuse_unmarked_live_processes(event: str, args: tuple[Any, ...]) -> None:
    if event != "subprocess.Popen" or not _running or _running[-1].get_closest_marker("live"):
        return
    argv = args[1] if isinstance(args[1], list | tuple) else [args[1]]
    program = _starts_live_process(argv)
    if program is not None:
        raise RuntimeError(
            f"{_running[-1].nodeid} starts {program}: mark it @pytest.mark.live, so that `make "
            "test-fast` (-m 'not live') leaves it out"
        )


sys.addaudithook(_refuse_unmarked_live_processes)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    _running.append(item)
    try:
        return (yield)
    finally:
        _running.pop()
