"""``benchmark dashboard``: the dashboard page in headless chromium with the market ticking.

A throwaway database is seeded with ``--symbols`` symbols (seed_demo: a little history, one tick
each) and one user. The real processes run against it on loopback, with Redis channels and key
prefixes of the run's own: gunicorn (pages, REST, static files collected first, as ``make run``
does), daphne (the streams) and ``manage.py run_market`` ticking every symbol once per
``MARKET_TICK_INTERVAL_S / --rate`` seconds on average (``--rate 1``: the market's own pace,
250 ticks/s for 500 symbols; each tick is a trade and a quote message).

Debian's chromium (Playwright's Python package drives it; Playwright's own browser download is
never used) logs in through the form and opens the page twice, one renderer at a time, at
1280x800:

- optimised: ``/``, the page's own store and selective, virtually scrolled renderer;
- naive: ``/?renderer=naive``, the same page rebuilding the whole table's HTML on every message.

For each, after ``--settle`` seconds it measures for ``--seconds``:

- scripting time: the renderer's main-thread script time from the DevTools protocol
  (``Performance.getMetrics`` ScriptDuration deltas), per second and per market-data message
  (messages counted on the socket by Playwright, outside the page, so counting costs the page
  nothing and both renderers are divided by what they were sent) - Property 40 (docs/properties.md);
- frames and dropped frames: an animation-frame counter added before the page's scripts (a frame
  over 1.5 frame periods drops round(delta / period) - 1 frames, as static/js/perf.js counts);
- the page's fetch/XHR requests to ``/v2/`` from navigation until the table is live and two
  seconds have passed without one: Property 19's first load, at most 3.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from benchmarks import _database
from benchmarks._report import Report, Row
from benchmarks.processes import processes_alive_check, processes_start, redis_keys_delete
from trading import services

if TYPE_CHECKING:
    # Playwright is a development dependency: imported when the benchmark runs, not when
    # `manage.py benchmark --help` lists the benchmarks.
    from playwright.sync_api import BrowserContext, CDPSession, Page, ViewportSize

HELP = "The dashboard in headless chromium: selective renderer vs naive full rebuild (P40), API calls on load (P19)"

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# Flags for a headless chromium in containers and CI (the browser tests use them too): no sandbox
# (root, no user namespaces), no GPU, and none of the background traffic (updates, sync,
# safe-browsing lists) a profile starts with.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
FIRST_LOAD_API_GOAL = 3
FIRST_LOAD_QUIET_S = 2.0
NODE_PACKAGES = ("lightweight-charts", "fancy-canvas")

# An animation-frame counter of the benchmark's own, installed before any page script.
FRAME_COUNTER = """
(() => {
  const period = 1000 / 60;
  const counter = { frames: 0, dropped: 0 };
  let last = null;
  const loop = (now) => {
    if (last !== null) {
      const delta = now - last;
      if (delta < 1000) {
        counter.frames += 1;
        if (delta > period * 1.5) counter.dropped += Math.round(delta / period) - 1;
      }
    }
    last = now;
    requestAnimationFrame(loop);
  };
  requestAnimationFrame(loop);
  Object.defineProperty(window, "__benchmarkFrames", { value: counter });
})();
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--symbols", type=int, default=500, help="symbols in the table, all ticking (default 500)"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=1.0,
        help="tick rate as a multiple of the market's (default 1: each symbol every "
        "MARKET_TICK_INTERVAL_S on average; 4 is four times faster)",
    )
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="measured seconds per renderer (default 10)"
    )
    parser.add_argument("--settle", type=float, default=3.0, help="unmeasured seconds after the first load")
    parser.add_argument(
        "--db-name", default=None, help="throwaway database (file on SQLite, name on PostgreSQL)"
    )
    parser.add_argument(
        "--screenshots",
        default="",
        help="save a screenshot of each renderer into this directory (default: none)",
    )


@dataclass
class Measurement:
    renderer: str
    api_calls: list[str]
    seconds: float = 0.0
    script_s: float = 0.0
    task_s: float = 0.0
    layout_s: float = 0.0
    style_s: float = 0.0
    messages: int = 0
    frames: int = 0
    dropped: int = 0
    page_errors: list[str] = field(default_factory=list)

    @property
    def script_ms_per_s(self) -> float:
        return self.script_s * 1000 / self.seconds if self.seconds else 0.0

    @property
    def script_us_per_message(self) -> float | None:
        return self.script_s * 1e6 / self.messages if self.messages else None

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


def run(options: dict[str, Any], log: Callable[[str], None]) -> Report:
    symbols, rate = int(options["symbols"]), float(options["rate"])
    seconds, settle = float(options["seconds"]), float(options["settle"])
    if symbols < 1 or rate <= 0 or seconds <= 0 or settle < 0:
        raise CommandError("--symbols, --rate and --seconds must be positive, --settle not negative")
    executable = shutil.which("chromium")
    if executable is None:
        raise CommandError(
            "Debian's chromium is not installed (no `chromium` on PATH): apt-get install chromium"
        )
    missing = [name for name in NODE_PACKAGES if not (ROOT / "node_modules" / name / "package.json").exists()]
    if missing:
        raise CommandError(f"node_modules lacks {', '.join(missing)}: run `npm ci` first (make does)")
    tick_interval_s = float(settings.MARKET_TICK_INTERVAL_S) / rate
    screenshots = Path(options["screenshots"]) if options.get("screenshots") else None

    with (
        _database.throwaway_database(name=options.get("db_name"), log=log) as name,
        tempfile.TemporaryDirectory(prefix="bench-dashboard-", dir=settings.VAR_DIR) as workdir,
    ):
        log(f"seeding {symbols} symbols and a user")
        username, password, seeded = _seed(symbols, Path(workdir))
        call_command("collectstatic", interactive=False, verbosity=0)
        with _stack(Path(workdir), _database.database_url(), seeded, tick_interval_s, log) as base_url:
            measurements = _browse(
                executable, base_url, username, password, seconds=seconds, settle=settle,
                screenshots=screenshots, log=log,
            )  # fmt: skip
        report = Report(
            title=(
                f"benchmark dashboard: {seeded} symbols ticking every {tick_interval_s:g} s on average, "
                f"{seconds:g} s per renderer, headless chromium {VIEWPORT['width']}x{VIEWPORT['height']}, "
                f"{connection.vendor} ({name}), {os.cpu_count()} cores"
            )
        )
        _rows(report, measurements["optimised"], measurements["naive"])
    return report


def _seed(symbols: int, workdir: Path) -> tuple[str, str, int]:
    with open(workdir / "seed_demo.log", "w") as out:
        call_command(
            "seed_demo", symbols=symbols, days=2, minutes=30, users=0, seed=40,
            credentials_file=str(workdir / "credentials.txt"), stdout=out,
        )  # fmt: skip
    username, password = "bench-dashboard", secrets.token_urlsafe(16)
    services.user_signup(username=username, password=password)
    from trading.models import Asset

    return username, password, Asset.objects.filter(active=True).count()


# --- Processes ---------------------------------------------------------------------------------------


def _free_port() -> int:
    return _database.free_port()


def _wait(process: subprocess.Popen[bytes], log_path: Path, ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not ready():
        if process.poll() is not None:
            raise CommandError(f"{what} exited:\n{log_path.read_text(errors='replace')[-3000:]}")
        if time.monotonic() > deadline:
            raise CommandError(
                f"{what} did not start within 60 s:\n{log_path.read_text(errors='replace')[-3000:]}"
            )
        time.sleep(0.1)


def _listening(port: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    return check


@contextmanager
def _stack(
    workdir: Path, database_url: str, symbols: int, tick_interval_s: float, log: Callable[[str], None]
) -> Iterator[str]:
    http_port, ws_port = _free_port(), _free_port()
    run_id = f"bench-dashboard-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url,
        "DEBUG": "false",
        "WS_PORT": str(ws_port),
        "HTTP_PORT": str(http_port),  # the page's origin, which daphne lets open its sockets
        "STREAM_PUBLIC_URL": f"ws://127.0.0.1:{ws_port}",
        # Every Redis key and channel of the stack's own.
        "REDIS_KEY_PREFIX": run_id,
        "LOG_LEVEL": "WARNING",
    }
    commands = {
        "market": [
            str(BIN / "python"), "manage.py", "run_market", "--symbols", str(symbols),
            "--tick-interval", str(tick_interval_s), "--seed", "40",
        ],
        "daphne": [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(ws_port), "config.asgi:application"],
        "gunicorn": [
            str(BIN / "gunicorn"), "config.wsgi:application", "--bind", f"127.0.0.1:{http_port}",
            "--workers", "2", "--threads", "4", "--timeout", "60", "--no-control-socket",
        ],
    }  # fmt: skip
    with ExitStack() as cleanup:
        # Last out: the quotes hash, limiter and cache keys the run left in Redis.
        cleanup.callback(redis_keys_delete, f"{run_id}*")
        started = processes_start(commands=commands, cwd=ROOT, env=env, workdir=workdir, cleanup=cleanup)
        log(f"starting gunicorn :{http_port}, daphne :{ws_port} and the market")
        _wait(*started["gunicorn"], _listening(http_port), "gunicorn")
        _wait(*started["daphne"], _listening(ws_port), "daphne")
        yield f"http://127.0.0.1:{http_port}"
        processes_alive_check(started)


# --- The browser ---------------------------------------------------------------------------------------


def _browse(
    executable: str,
    base_url: str,
    username: str,
    password: str,
    *,
    seconds: float,
    settle: float,
    screenshots: Path | None,
    log: Callable[[str], None],
) -> dict[str, Measurement]:
    from playwright.sync_api import sync_playwright

    results: dict[str, Measurement] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=list(CHROMIUM_ARGS))
        try:
            context = browser.new_context(base_url=base_url, viewport=VIEWPORT)
            context.add_init_script(FRAME_COUNTER)
            login = context.new_page()
            login.goto("/login")
            login.fill("input[name=username]", username)
            login.fill("input[name=password]", password)
            with login.expect_navigation():
                login.click("button[type=submit]")
            if "/login" in login.url:
                raise CommandError("the benchmark user could not log in")
            login.close()
            for renderer, path in (("optimised", "/"), ("naive", "/?renderer=naive")):
                log(f"{renderer}: loading {path}")
                results[renderer] = _measure(context, renderer, path, seconds, settle, screenshots, log)
            context.close()
        finally:
            browser.close()
    return results


def _market_messages(payload: str | bytes) -> int:
    try:
        frame = json.loads(payload)
    except (TypeError, ValueError):
        return 0
    if not isinstance(frame, list):
        return 0
    return sum(
        1 for message in frame if isinstance(message, dict) and message.get("T") in ("t", "q", "b", "u")
    )


def _measure(
    context: BrowserContext,
    renderer: str,
    path: str,
    seconds: float,
    settle: float,
    screenshots: Path | None,
    log: Callable[[str], None],
) -> Measurement:
    measurement = Measurement(renderer=renderer, api_calls=[])
    page = context.new_page()
    opened_at = time.monotonic()
    last_api_call = [opened_at]
    received = [0]

    def on_request(request: Any) -> None:
        if request.resource_type in ("fetch", "xhr") and "/v2/" in request.url:
            measurement.api_calls.append(
                f"{request.method} {request.url} @{time.monotonic() - opened_at:.1f}s"
            )
            last_api_call[0] = time.monotonic()

    def on_websocket(ws: Any) -> None:
        if "/v2/" in ws.url:
            ws.on(
                "framereceived",
                lambda payload: received.__setitem__(0, received[0] + _market_messages(payload)),
            )

    page.on("request", on_request)
    page.on("websocket", on_websocket)
    page.on("pageerror", lambda error: measurement.page_errors.append(str(error)))
    try:
        page.goto(path)
        deadline = time.monotonic() + 30
        while received[0] == 0 or time.monotonic() - last_api_call[0] < FIRST_LOAD_QUIET_S:
            if time.monotonic() > deadline:
                raise CommandError(
                    f"{renderer}: no market data within 30 s (page errors: {measurement.page_errors})"
                )
            page.wait_for_timeout(100)
        first_load = list(measurement.api_calls)
        log(f"{renderer}: first load done after {time.monotonic() - opened_at:.1f} s, {received[0]} messages")
        page.wait_for_timeout(settle * 1000)
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable")
        before, frames_before, messages_before = _metrics(cdp), _frames(page), received[0]
        started = time.monotonic()
        page.wait_for_timeout(seconds * 1000)
        after, frames_after, messages_after = _metrics(cdp), _frames(page), received[0]
        measurement.seconds = time.monotonic() - started
        measurement.api_calls = first_load
        measurement.script_s = after["ScriptDuration"] - before["ScriptDuration"]
        measurement.task_s = after["TaskDuration"] - before["TaskDuration"]
        measurement.layout_s = after["LayoutDuration"] - before["LayoutDuration"]
        measurement.style_s = after["RecalcStyleDuration"] - before["RecalcStyleDuration"]
        measurement.messages = messages_after - messages_before
        measurement.frames = frames_after["frames"] - frames_before["frames"]
        measurement.dropped = frames_after["dropped"] - frames_before["dropped"]
        if screenshots is not None:
            screenshots.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshots / f"benchmark-dashboard-{renderer}.png"))
        log(
            f"{renderer}: {measurement.messages_per_s:,.0f} market messages/s, scripting "
            f"{measurement.script_ms_per_s:.0f} ms/s, {measurement.frames} frames, {measurement.dropped} dropped, "
            f"{len(first_load)} API calls on first load"
        )
    finally:
        page.close()
    return measurement


def _metrics(cdp: CDPSession) -> dict[str, float]:
    return {item["name"]: float(item["value"]) for item in cdp.send("Performance.getMetrics")["metrics"]}


def _frames(page: Page) -> dict[str, int]:
    counted: dict[str, int] = page.evaluate(
        "({frames: window.__benchmarkFrames.frames, dropped: window.__benchmarkFrames.dropped})"
    )
    return counted


# --- The table -----------------------------------------------------------------------------------------


def _times_less(optimised: float, baseline: float) -> str:
    if optimised <= 0 or baseline <= 0:
        return "-"
    ratio = baseline / optimised
    return f"{ratio:.1f}x less" if ratio >= 1 else f"{1 / ratio:.1f}x more"


def _rows(report: Report, optimised: Measurement, naive: Measurement) -> None:
    per_message = (optimised.script_us_per_message, naive.script_us_per_message)
    report.add(
        Row(
            "P40 scripting time per market message",
            "-" if per_message[0] is None else f"{per_message[0]:,.1f} us",
            "-" if per_message[1] is None else f"{per_message[1]:,.1f} us",
            "-" if None in per_message else _times_less(per_message[0] or 0.0, per_message[1] or 0.0),
            "optimised < naive",
            None not in per_message and (per_message[0] or 0.0) < (per_message[1] or 0.0),
        )
    )
    report.add(
        Row(
            "  scripting time per second",
            f"{optimised.script_ms_per_s:,.0f} ms/s",
            f"{naive.script_ms_per_s:,.0f} ms/s",
            _times_less(optimised.script_ms_per_s, naive.script_ms_per_s),
            "-",
            None,
        )
    )
    report.add(
        Row(
            "  renderer task time (CDP TaskDuration) per second",
            f"{optimised.task_s * 1000 / optimised.seconds:,.0f} ms/s",
            f"{naive.task_s * 1000 / naive.seconds:,.0f} ms/s",
            _times_less(optimised.task_s, naive.task_s),
            "-",
            None,
        )
    )
    report.add(
        Row(
            "  layout + style recalculation per second",
            f"{(optimised.layout_s + optimised.style_s) * 1000 / optimised.seconds:,.0f} ms/s",
            f"{(naive.layout_s + naive.style_s) * 1000 / naive.seconds:,.0f} ms/s",
            _times_less(optimised.layout_s + optimised.style_s, naive.layout_s + naive.style_s),
            "-",
            None,
        )
    )
    report.add(
        Row(
            "  market messages received per second",
            f"{optimised.messages_per_s:,.0f}",
            f"{naive.messages_per_s:,.0f}",
            "-",
            "-",
            None,
        )
    )
    report.add(
        Row(
            "frames dropped (of frames drawn)",
            f"{optimised.dropped} of {optimised.frames}",
            f"{naive.dropped} of {naive.frames}",
            "-",
            "-",
            None,
        )
    )
    report.add(
        Row(
            "P19 API requests on first load",
            str(len(optimised.api_calls)),
            str(len(naive.api_calls)),
            "-",
            f"<= {FIRST_LOAD_API_GOAL}",
            len(optimised.api_calls) <= FIRST_LOAD_API_GOAL,
            load_free=True,
        )
    )
    for measurement in (optimised, naive):
        report.notes.append(
            f"{measurement.renderer} first load: {', '.join(measurement.api_calls) or 'no API calls'}"
        )
        if measurement.page_errors:
            report.notes.append(
                f"{measurement.renderer} page errors: {'; '.join(measurement.page_errors[:3])}"
            )
