"""Fixtures of the browser tests (tests/e2e/browser.py): one live stack for the browser modules
(``_SharedStack``) and one chromium per module."""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, connection
from django.test.utils import setup_databases, teardown_databases
from playwright.sync_api import Browser
from pytest_django import DjangoDbBlocker
from pytest_django.fixtures import Settings

from tests.e2e.browser import (
    SCREENSHOT_DIR,
    LiveStack,
    Pages,
    chromium_browser,
    collect_static,
    live_stack,
    node_modules_problem,
    screenshot_path,
    seed_market,
)
from tests.processes import ServerProcess, gunicorn_server
from tests.realtime.servers import DaphneProcess, daphne_server
from tests.tools import require_tool

STACK_SYMBOLS = 500  # Property 18: a 500-row market table
TICKING_SYMBOLS = 200
TICK_INTERVAL_S = 1.0

# Read at collection, before any fixture can switch the connection to a test database.
_CONFIGURED_DATABASE_NAME = settings.DATABASES[DEFAULT_DB_ALIAS]["NAME"]
_phase_reports = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Kept so the page fixture knows at teardown whether the test failed (its screenshot says so).
    report = yield
    item.stash.setdefault(_phase_reports, {})[report.when] = report
    stack = getattr(item, "funcargs", {}).get("dashboard_stack")
    if report.failed and isinstance(stack, LiveStack):
        report.sections.append(("live stack logs", stack.logs()))
    return report


@pytest.fixture(scope="module")
def chromium_path() -> str:
    # Asked for before the stack starts, so a missing chromium skips without starting servers.
    return require_tool("chromium")


@pytest.fixture(scope="module")
def chromium(chromium_path: str, dashboard_stack: LiveStack) -> Iterator[Browser]:
    # After the stack and closed before it (see chromium_browser): the stack seeds and flushes
    # the database on the connection Django uses outside Playwright's event loop.
    with chromium_browser(chromium_path) as browser:
        yield browser


@contextmanager
def _test_database(django_db_blocker: DjangoDbBlocker) -> Iterator[None]:
    """The test database, created here when pytest-django did not create one.

    pytest-django creates it only when some collected test carries a ``django_db`` marker or a
    db fixture, and those wrap each test in a transaction or flush after it: both wrong for a
    stack whose processes share one seeded database for a whole module. So these tests carry
    neither; alone in a run, the module makes the database itself.
    """
    if connection.settings_dict["NAME"] != _CONFIGURED_DATABASE_NAME:
        yield  # pytest-django switched to its test database
        return
    with django_db_blocker.unblock():
        created = setup_databases(
            verbosity=0, interactive=False, aliases={DEFAULT_DB_ALIAS: False}, serialized_aliases=set()
        )
    try:
        yield
    finally:
        with django_db_blocker.unblock():
            _wait_for_other_sessions_to_end()
            teardown_databases(created, verbosity=0)


def _wait_for_other_sessions_to_end(timeout: float = 10.0) -> None:
    """PostgreSQL refuses to drop a database with sessions open, and a server's session ends a
    moment after its process does (the backend notices the closed socket)."""
    if connection.vendor != "postgresql":
        return
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            row = cursor.fetchone()
            if not row or row[0] == 0:
                return
            time.sleep(0.1)


class _SharedStack:
    """The one live stack of the browser modules (test_dashboard_browser, test_game_browser,
    test_ops_browser): they only add users, games and orders of their own (unique usernames) and
    read their own pages, so one seeded stack serves them all instead of one seeding and start-up
    per module. Started by the first test that asks for it; stopped, and the database flushed
    (real processes committed its rows, as under transactional_db), after the last test of a run
    of tests that use it: not at the session's end, so the tests after it on the same worker do
    not share the cores with a market ticking 200 symbols. ``pytest_collection_modifyitems``
    below makes those tests one run on their worker."""

    def __init__(self) -> None:
        self.stack: LiveStack | None = None
        self._cleanup = ExitStack()

    def start(
        self, *, django_db_blocker: DjangoDbBlocker, tmp_path_factory: pytest.TempPathFactory
    ) -> LiveStack:
        if self.stack is not None:
            return self.stack
        problem = node_modules_problem()
        if problem:
            pytest.fail(problem)
        workdir = tmp_path_factory.mktemp("dashboard-stack")
        with ExitStack() as cleanup:
            cleanup.enter_context(_test_database(django_db_blocker))
            cleanup.callback(_flush, django_db_blocker)
            with django_db_blocker.unblock():
                collect_static()
                symbols = seed_market(symbols=STACK_SYMBOLS, workdir=workdir)
            self.stack = cleanup.enter_context(
                live_stack(workdir, symbols=symbols, ticking=TICKING_SYMBOLS, tick_interval_s=TICK_INTERVAL_S)
            )
            self._cleanup = cleanup.pop_all()
        return self.stack

    def stop(self) -> None:
        self.stack = None
        self._cleanup.close()


def _flush(django_db_blocker: DjangoDbBlocker) -> None:
    with django_db_blocker.unblock():
        call_command("flush", interactive=False, verbosity=0)


_shared_stack = _SharedStack()


def _uses_stack(item: pytest.Item | None) -> bool:
    return item is not None and "dashboard_stack" in getattr(item, "fixturenames", ())


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> Generator[None, None, None]:
    # After every other implementation (the root conftest.py's order among them): the tests over
    # the shared stack move up to the first of them, keeping their order, so on the worker that
    # runs the "stacks" group they run one after another on one stack. They are database-free in
    # pytest-django's order (rolled-back, transactional, then database-free tests), so every test
    # they move past is too, and that order holds.
    yield
    users = [item for item in items if _uses_stack(item)]
    if users:
        first = items.index(users[0])
        rest = [item for item in items[first:] if not _uses_stack(item)]
        items[first:] = [*users, *rest]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    # After the item's own teardown, chromium's (module scope) included: the stack outlives it.
    try:
        yield
    finally:
        if _uses_stack(item) and not _uses_stack(nextitem):
            _shared_stack.stop()


@pytest.fixture(scope="module")
def dashboard_stack(
    chromium_path: str,
    django_db_setup: None,
    django_db_blocker: DjangoDbBlocker,
    tmp_path_factory: pytest.TempPathFactory,
) -> LiveStack:
    """The live stack over 500 seeded symbols, shared by the browser modules (``_SharedStack``).
    Every test here drives chromium, so without it they skip before any server starts."""
    return _shared_stack.start(django_db_blocker=django_db_blocker, tmp_path_factory=tmp_path_factory)


@pytest.fixture
def live_db(django_db_blocker: DjangoDbBlocker, dashboard_stack: LiveStack) -> Iterator[None]:
    """ORM access for a test over the live stack, without a transaction around it (the servers
    must see what the test writes, and a SQLite write transaction would lock them out)."""
    with django_db_blocker.unblock():
        yield


@pytest.fixture
def pages(chromium: Browser, dashboard_stack: LiveStack, request: pytest.FixtureRequest) -> Iterator[Pages]:
    opened = Pages(browser=chromium, stack=dashboard_stack, test_name=request.node.name)
    stem = screenshot_path(opened.test_name).stem
    for stale in [*SCREENSHOT_DIR.glob(f"{stem}.png"), *SCREENSHOT_DIR.glob(f"{stem}-*.png")]:
        stale.unlink()  # an earlier run's, e.g. a -FAILED one this run would not overwrite
    yield opened
    reports = request.node.stash.get(_phase_reports, {})
    failed = any(report.failed for report in reports.values())
    opened.close(failed=failed)


# --- alpaca-py against the API and the streams (test_alpaca_py_advanced_orders.py, _executions.py) --
@pytest.fixture
def sdk_server(stream_settings: Settings, transactional_db: None, tmp_path: Path) -> Iterator[ServerProcess]:
    """gunicorn for the SDK's REST calls, sharing the stream settings with ``sdk_stream_server``."""
    with gunicorn_server(tmp_path) as running:
        yield running


@pytest.fixture
def sdk_stream_server(
    stream_settings: Settings, transactional_db: None, tmp_path: Path
) -> Iterator[DaphneProcess]:
    """daphne for the SDK's TradingStream."""
    with daphne_server(tmp_path) as running:
        yield running
