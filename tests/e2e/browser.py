"""The dashboard's browser tests run against everything real: a live stack and Debian's chromium.

``live_stack`` starts the processes production runs, pointed at the test database and Redis:
gunicorn (pages, REST and static files through WhiteNoise), daphne (the WebSockets; its port is
handed to the HTTP side as ``WS_PORT`` and ``STREAM_PUBLIC_URL``, so the bootstrap advertises it)
and ``manage.py run_market`` ticking the first symbols of the seeded universe. Its Redis keys and
channels are the stack's own (a ``REDIS_KEY_PREFIX`` of its own), so a concurrent test run or a
forgotten ``make run`` on the same Redis can neither feed it ticks nor eat its quotes. daphne can be stopped and started
again on the same port, which is how the reconnect test restarts "the server".

Chromium is Debian's (``apt-get install chromium``; ``.ci/run`` installs it), launched by
Playwright's Python package; Playwright's own browser download is never used. Screenshots go to
``SCREENSHOT_DIR`` under VAR_DIR (``var/test-artifacts/screenshots`` by default) and are kept.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.core.management import call_command
from django.db import connections
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Request,
    ViewportSize,
    sync_playwright,
)

from benchmarks.dashboard import CHROMIUM_ARGS
from benchmarks.processes import process_stop, redis_keys_delete
from tests.processes import ROOT, VENV_BIN, ServerProcess, free_port, gunicorn_server, process_env
from trading import services
from trading.models import Account, Asset

DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
SCREENSHOT_DIR = Path(settings.VAR_DIR) / "test-artifacts" / "screenshots"
# The page's third-party modules, served from node_modules; `npm ci` (make test) installs them.
NODE_PACKAGES = ("lightweight-charts", "fancy-canvas")
PASSWORD = "correct-horse-battery-7"
ASYNC_UNSAFE = "DJANGO_ALLOW_ASYNC_UNSAFE"


# --- Preconditions ------------------------------------------------------------------------------


def node_modules_problem() -> str | None:
    """Why the page's third-party modules cannot be served, or None when they can."""
    missing = [name for name in NODE_PACKAGES if not (ROOT / "node_modules" / name / "package.json").exists()]
    if missing:
        return (
            f"node_modules lacks {', '.join(missing)}: run `npm ci` in {ROOT} (`make test` does) so "
            "the dashboard's browser libraries can be collected and served"
        )
    return None


# --- Data ---------------------------------------------------------------------------------------


def collect_static() -> None:
    """Copy static files (ours and node_modules') into STATIC_ROOT, as ``make run`` does.

    With DEBUG off WhiteNoise serves only what STATIC_ROOT held when the process started (no
    finders, no autorefresh), so the files must be collected before gunicorn starts; serving
    the collected copy is also the deployed path.
    """
    call_command("collectstatic", interactive=False, verbosity=0)


def seed_market(*, symbols: int, workdir: Path) -> list[str]:
    """The first ``symbols`` of the universe with a little history, by ``seed_demo``; their symbols."""
    with open(workdir / "seed_demo.log", "w") as log:
        call_command(
            "seed_demo",
            symbols=symbols,
            days=2,
            minutes=30,
            users=0,
            seed=7,
            credentials_file=str(workdir / "demo_credentials.txt"),
            stdout=log,
        )
    return list(Asset.objects.order_by("symbol").values_list("symbol", flat=True))


@cache
def _password_hash() -> str:
    # The servers verify with the production hasher, whatever the test process hashes with
    # (tests/conftest.py swaps in MD5); one hash computed once keeps user creation instant.
    return PBKDF2PasswordHasher().encode(PASSWORD, "browser-tests")


def user_create(username: str) -> Account:
    """A user signed up through the service the sign-up page uses, who logs in with PASSWORD."""
    user = services.user_signup(username=username, password=PASSWORD)
    get_user_model().objects.filter(pk=user.pk).update(password=_password_hash())
    return Account.objects.get(user=user)


def unique_username(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


# --- Processes ----------------------------------------------------------------------------------


@dataclass
class LiveStack:
    workdir: Path
    env: dict[str, str]
    http: ServerProcess
    ws_port: int
    symbols: list[str]
    ticking: int
    market: subprocess.Popen[bytes]
    daphne: subprocess.Popen[bytes] | None = None
    daphne_starts: int = field(default=0)

    @property
    def base_url(self) -> str:
        return self.http.base_url

    @property
    def ticking_symbols(self) -> list[str]:
        """What the market ticks: run_market simulates the first N tradable symbols by symbol."""
        return self.symbols[: self.ticking]

    def start_daphne(self) -> None:
        """daphne on the stack's WebSocket port (the same port again after ``stop_daphne``)."""
        assert self.daphne is None or self.daphne.poll() is not None, "daphne is already running"
        self.daphne_starts += 1
        self.daphne, log_path = _spawn_daphne(self.workdir, self.ws_port, self.env, self.daphne_starts)
        _wait_until_listening(self.daphne, self.ws_port, log_path, timeout=30)

    def stop_daphne(self) -> None:
        if self.daphne is not None:
            process_stop(self.daphne)

    def assert_running(self) -> None:
        for name, process in (("gunicorn", self.http.process), ("market", self.market)):
            if process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode}:\n{self.logs()}")

    def logs(self, tail: int = 3000) -> str:
        """The end of every process log, for failure messages."""
        return "\n".join(
            f"--- {path.name} ---\n{path.read_text(errors='replace')[-tail:]}"
            for path in sorted(self.workdir.glob("*.log"))
        )


def _spawn_daphne(
    workdir: Path, port: int, env: dict[str, str], start: int
) -> tuple[subprocess.Popen[bytes], Path]:
    log_path = workdir / f"daphne-{start}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(VENV_BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return process, log_path


def _wait_until_listening(
    process: subprocess.Popen[bytes], port: int, log_path: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = log_path.read_text(errors="replace")
            raise RuntimeError(f"daphne exited with {process.returncode}:\n{log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(
        f"daphne did not listen on {port} within {timeout}s:\n{log_path.read_text(errors='replace')}"
    )


def stack_prefix(run: str) -> str:
    """The Redis key prefix of one stack's processes, under the test run's."""
    return f"{settings.REDIS_KEY_PREFIX}:browser:{run}"


def stack_env(ws_port: int, run: str, http_port: int) -> dict[str, str]:
    """Environment of every process of one stack: the test database, and Redis keys and channels
    of its own (``stack_prefix``)."""
    env = process_env(
        DEBUG="false",
        WS_PORT=str(ws_port),
        # The pages' origin: daphne lets the dashboard's page open its sockets.
        HTTP_PORT=str(http_port),
        STREAM_PUBLIC_URL=f"ws://127.0.0.1:{ws_port}",
        REDIS_KEY_PREFIX=stack_prefix(run),
        LOG_LEVEL="WARNING",
    )
    # Set in the test process while Playwright's loop runs; the servers keep Django's check.
    env.pop(ASYNC_UNSAFE, None)
    return env


@contextmanager
def live_stack(
    workdir: Path, *, symbols: list[str], ticking: int = 200, tick_interval_s: float = 1.0
) -> Iterator[LiveStack]:
    """gunicorn, daphne and the market over already seeded ``symbols``; all stopped on exit."""
    problem = node_modules_problem()
    if problem:
        raise RuntimeError(problem)
    ws_port, http_port = free_port(), free_port()
    run = uuid.uuid4().hex[:10]
    env = stack_env(ws_port, run, http_port)
    with ExitStack() as cleanup:
        # Last out: the quotes hash, limiter and cache keys the stack left in Redis.
        cleanup.callback(redis_keys_delete, f"{stack_prefix(run)}:*")
        market_log = cleanup.enter_context(open(workdir / "market.log", "wb"))
        market = subprocess.Popen(
            [str(VENV_BIN / "python"), "manage.py", "run_market", "--symbols", str(ticking),
             "--tick-interval", str(tick_interval_s), "--window-ms", "100", "--seed", "7"],
            cwd=ROOT, env=env, stdout=market_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        cleanup.callback(process_stop, market)
        # daphne starts while gunicorn does: two cold Django start-ups in parallel.
        daphne, daphne_log = _spawn_daphne(workdir, ws_port, env, 1)
        cleanup.callback(process_stop, daphne)
        http = cleanup.enter_context(gunicorn_server(workdir, extra_env=env, port=http_port))
        _wait_until_listening(daphne, ws_port, daphne_log, timeout=30)
        stack = LiveStack(
            workdir=workdir, env=env, http=http, ws_port=ws_port, symbols=symbols, ticking=ticking,
            market=market, daphne=daphne, daphne_starts=1,
        )  # fmt: skip
        cleanup.callback(stack.stop_daphne)
        stack.assert_running()
        yield stack


@dataclass
class OpenedPage:
    page: Page
    watch: PageWatch
    name: str


@dataclass
class Pages:
    """Browser contexts of one test (each its own cookies), screenshotted when the test ends."""

    browser: Browser
    stack: LiveStack
    test_name: str
    opened: list[OpenedPage] = field(default_factory=list)
    contexts: list[BrowserContext] = field(default_factory=list)

    def open(self, *, viewport: ViewportSize | None = None, name: str = "", **options: Any) -> OpenedPage:
        context = self.browser.new_context(
            base_url=self.stack.base_url, viewport=viewport or DESKTOP, **options
        )
        self.contexts.append(context)
        page = context.new_page()
        watch = PageWatch()
        watch.attach(page)
        opened = OpenedPage(page=page, watch=watch, name=name or f"page{len(self.opened) + 1}")
        self.opened.append(opened)
        return opened

    def screenshot(self, page: Page, label: str, *, full_page: bool = False) -> None:
        """A screenshot at a moment the test chooses, named after the test and ``label``."""
        save_screenshot(page, f"{self.test_name}-{label}", full_page=full_page)

    def close(self, *, failed: bool) -> None:
        for opened in self.opened:
            suffix = "-FAILED" if failed else ""
            label = "" if len(self.opened) == 1 else f"-{opened.name}"
            try:
                save_screenshot(opened.page, f"{self.test_name}{label}{suffix}")
            except Exception as error:  # a crashed page must not hide the test's own failure
                print(f"screenshot of {opened.name} failed: {error}")
        for context in self.contexts:
            context.close()


# --- The browser --------------------------------------------------------------------------------


@contextmanager
def chromium_browser(executable: str) -> Iterator[Browser]:
    """Debian's chromium under Playwright, for one test module.

    Playwright's sync API keeps an asyncio loop registered as running on this thread while it is
    open. Django's async-safety check mistakes that for async code calling the ORM; the tests'
    ORM calls are plain synchronous code, so the check is switched off until the browser closes
    (which must be at the module's end, or later tests that start loops of their own break).
    The loop also makes Django keep database connections per context instead of per thread, so
    the ORM opens a second connection meanwhile: it is closed here, or PostgreSQL could not drop
    the test database while this process still held a session on it.
    """
    previous = os.environ.get(ASYNC_UNSAFE)
    os.environ[ASYNC_UNSAFE] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=list(CHROMIUM_ARGS))
            try:
                yield browser
            finally:
                connections.close_all()
                browser.close()
    finally:
        if previous is None:
            os.environ.pop(ASYNC_UNSAFE, None)
        else:
            os.environ[ASYNC_UNSAFE] = previous


# Reports each Content-Security-Policy violation of every document the page loads to the test.
_REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.__reportCspViolation({
    page: location.pathname,
    directive: event.effectiveDirective,
    blocked: event.blockedURI,
    source: event.sourceFile,
    sample: event.sample,
  });
});
"""


@dataclass
class PageWatch:
    """What a page did: its uncaught errors, console errors, Content-Security-Policy violations
    (the ``securitypolicyviolation`` events of every document it loaded), its API calls and the
    scripts it fetched."""

    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    csp_violations: list[dict[str, str]] = field(default_factory=list)
    api_calls: list[str] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.on("console", self._console)
        page.on("request", self._request)
        page.expose_function("__reportCspViolation", self._csp_violation)
        page.add_init_script(_REPORT_CSP_VIOLATIONS)

    def _csp_violation(self, violation: dict[str, str]) -> None:
        self.csp_violations.append(violation)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(f"{message.text} ({message.location.get('url', '')})")

    def _request(self, request: Request) -> None:
        # Property 19 counts the page's own fetch/XHR calls to /v2/, not documents, static files
        # or WebSocket handshakes.
        if request.resource_type in ("fetch", "xhr") and "/v2/" in request.url:
            self.api_calls.append(f"{request.method} {request.url}")
        elif request.resource_type == "script":
            self.scripts.append(request.url)


def screenshot_path(name: str) -> Path:
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    return SCREENSHOT_DIR / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"


def save_screenshot(page: Page, name: str, *, full_page: bool = False) -> Path:
    path = screenshot_path(name)
    page.screenshot(path=str(path), full_page=full_page)
    return path
