"""What ``benchmark api`` and ``benchmark trading`` share (``benchmark games`` its options too): gunicorn (with the market beside it)
on a throwaway database, the choice of load generator, wrk's result line, and the figures of one
endpoint under load."""

from __future__ import annotations

import argparse
import errno
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError

from benchmarks import _database
from benchmarks.processes import process_stop, redis_keys_delete, redis_names
from config.redis_pools import redis_client

ROOT = Path(__file__).resolve().parents[1]
# The servers' /metrics answers a bearer of this (in their environment, never a command line).
METRICS_TOKEN = secrets.token_urlsafe(24)
# Limits too high to trip, so the limiter's cost is in every figure but it refuses nothing.
READ_RATE_LIMITS = "read=100000000/min,market_data=100000000/min,anon=100000000/min"


def server_arguments_add(parser: argparse.ArgumentParser) -> None:
    """The gunicorn and throwaway-database options every benchmark served by gunicorn here takes."""
    parser.add_argument(
        "--workers",
        type=int,
        # The Procfile's web line: WEB_CONCURRENCY, else 2 (README, Settings).
        default=int(os.environ.get("WEB_CONCURRENCY") or 2),
        help="gunicorn worker processes (default WEB_CONCURRENCY, else 2, as the Procfile)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads per gunicorn worker (default 1: sync workers, as the Procfile; more: gthread)",
    )
    _database.database_arguments_add(parser)


# ``--port``: the first of the ports a benchmark's servers listen on, above the privileged ones.
PORT_MIN, PORT_MAX = 1024, 65535


def ports_check(base: int, count: int) -> None:
    """``--port base``: the ``count`` consecutive ports from ``base`` are in range and free on
    127.0.0.1 now, or a CommandError says which is not (before anything is seeded or started)."""
    last = base + count - 1
    if base < PORT_MIN or last > PORT_MAX:
        raise CommandError(
            f"--port {base}: out of range; the servers listen on {count} consecutive ports from it, "
            f"so it must be from {PORT_MIN} to {PORT_MAX - count + 1}"
        )
    for port in range(base, last + 1):
        port_free_check(port)


def port_free_check(port: int) -> None:
    """A CommandError when 127.0.0.1:``port`` cannot be listened on. Bound with SO_REUSEADDR, as
    gunicorn binds: the connections a stopped server left in TIME_WAIT do not keep the next one
    off its port, only a socket still bound there does."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            reason = "in use" if error.errno == errno.EADDRINUSE else f"not available ({error.strerror})"
            raise CommandError(
                f"--port: 127.0.0.1:{port} is {reason}; give --port the first of a free range"
            ) from None


def server_layout(options: dict[str, Any]) -> str:
    """gunicorn's workers as ``server_arguments_add``'s options set them, for a report's title."""
    threads = int(options["threads"])
    if threads == 1:
        return f"{options['workers']} sync workers"
    return f"{options['workers']} gthread workers x {threads} threads"


@dataclass
class Measurement:
    """One endpoint under load: latency percentiles in seconds, throughput, failures, and the
    mean database queries per response (from the sequential sample)."""

    p50: float
    p99: float
    rate: float
    errors: int
    queries: float = float("nan")


def percentile(latencies: list[float], fraction: float) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


@dataclass(frozen=True)
class LoadClient:
    """How load is generated: wrk (its path) or the threaded Python client (None)."""

    wrk: str | None
    note: str

    @classmethod
    def choose(cls, preference: str) -> LoadClient:
        found = shutil.which("wrk")
        if preference == "wrk" and found is None:
            raise CommandError("--client wrk: wrk is not installed (apt-get install wrk)")
        if preference != "python" and found is not None:
            return cls(wrk=found, note=f"load: wrk ({found}), latencies from wrk's own histogram")
        reason = "--client python" if preference == "python" else "wrk is not installed (apt-get install wrk)"
        return cls(
            wrk=None,
            note=(
                f"load: the Python client ({reason}). Its threads share the cores with the server and "
                "inflate every latency, the floor's included: judge the endpoints against the floor, "
                "and measure the cached reads' 10 ms p99 goal with wrk."
            ),
        )


@contextmanager
def gunicorn_started(
    database_url: str,
    *,
    cached: bool,
    workers: int,
    threads: int,
    metrics: bool | None = None,
    market_symbols: int = 0,
    rate_limits: str = READ_RATE_LIMITS,
    label: str = "api",
    log: Callable[[str], None] | None = None,
    port: int | None = None,
) -> Iterator[Any]:
    """Yields the port (``port``, checked free, else one the OS picks), or (port, arbiter pid)
    when ``metrics`` says whether to measure (the metrics' cost rounds). With ``market_symbols``,
    ``manage.py run_market`` runs beside it on the same Redis names, and the port is yielded once
    every symbol has a quote in Redis.

    gunicorn's metrics go to a directory of their own, so its ``/metrics`` (read with the run's
    own METRICS_TOKEN, passed in the environment) counts this server's requests only."""
    if port is None:
        port = _database.free_port()
    else:
        # A pinned port comes back to the next server once the one before it stopped; the
        # workers of one killed after its grace may still hold it a moment (gunicorn itself
        # retries a bind for about as long).
        deadline = time.monotonic() + 5.0
        while True:
            try:
                port_free_check(port)
                break
            except CommandError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    # Redis keys of their own, so a running instance's cache and the two runs never mix, nor the
    # metrics' cost rounds' two servers, which run side by side (their caches, rate-limit windows
    # and invalidation channels apart, as two separate hosts' would be); deleted after.
    setting = "" if metrics is None else ("m" if metrics else "n")
    redis_prefix = f"bench{os.getpid()}{'c' if cached else 'u'}{setting}"
    metrics_dir = Path(tempfile.mkdtemp(prefix=f"benchmark-{label}-metrics-", dir=settings.VAR_DIR))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url,
        "BENCHMARK_ENDPOINTS": "true",
        "CACHE_ENABLED": "true" if cached else "false",
        "REDIS_KEY_PREFIX": redis_prefix,
        "RATE_LIMITS": rate_limits,
        "LEADERBOARD_MAX_STALENESS_S": "86400",
        "LOG_LEVEL": "WARNING",
        "METRICS_TOKEN": METRICS_TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        # Quotes flow at any hour, as the market's default does (the operator's setting may not).
        "MARKET_HOURS": "always",
    }
    if metrics is not None:
        env["METRICS_ENABLED"] = "true" if metrics else "false"
    log_path = Path(settings.VAR_DIR) / f"benchmark-{label}-gunicorn-{port}.log"
    with open(log_path, "wb") as output:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "gunicorn"), "-c", "python:config.gunicorn_conf",
                "config.wsgi:application",
                "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads),
                "--no-control-socket", "--keep-alive", "30",
            ],
            cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    market: subprocess.Popen[bytes] | None = None
    market_log = Path(settings.VAR_DIR) / f"benchmark-{label}-market-{port}.log"
    market_metrics = Path(tempfile.mkdtemp(prefix=f"benchmark-{label}-market-metrics-", dir=settings.VAR_DIR))
    try:
        if market_symbols:
            with open(market_log, "wb") as output:
                market = subprocess.Popen(
                    [
                        sys.executable, "manage.py", "run_market",
                        "--symbols", str(market_symbols), "--seed", "16",
                    ],
                    cwd=ROOT,
                    # The market's own metrics apart: the hit rates are the web servers'.
                    env={**env, "PROMETHEUS_MULTIPROC_DIR": str(market_metrics)},
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )  # fmt: skip
            if log is not None:
                log(f"starting gunicorn :{port} and the market ({market_symbols} symbols)")
        quotes_key = redis_names(redis_prefix)["LATEST_QUOTES_KEY"]
        deadline = time.monotonic() + (90 if market_symbols else 30)
        answering = False
        while True:
            if process.poll() is not None:
                raise CommandError(f"gunicorn exited:\n{log_path.read_text(errors='replace')[-3000:]}")
            if market is not None and market.poll() is not None:
                raise CommandError(f"the market exited:\n{market_log.read_text(errors='replace')[-3000:]}")
            if not answering:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/_bench/ping", timeout=2):
                        answering = True
                except (OSError, urllib.error.URLError):
                    pass
            if answering and (not market_symbols or redis_client().hlen(quotes_key) >= market_symbols):
                break
            if time.monotonic() > deadline:
                raise CommandError(
                    f"gunicorn did not answer or the market quoted too few symbols within "
                    f"{90 if market_symbols else 30} s:\n{log_path.read_text(errors='replace')[-3000:]}"
                )
            time.sleep(0.1)
        yield port if metrics is None else (port, process.pid)
        if market is not None and market.poll() is not None:
            raise CommandError(
                f"the market exited during the run:\n{market_log.read_text(errors='replace')[-3000:]}"
            )
    finally:
        if market is not None:
            process_stop(market)
        process_stop(process)
        redis_keys_delete(f"{redis_prefix}:*")
        log_path.unlink(missing_ok=True)
        market_log.unlink(missing_ok=True)
        shutil.rmtree(metrics_dir, ignore_errors=True)
        shutil.rmtree(market_metrics, ignore_errors=True)


def wrk_result(command: list[str]) -> dict[str, float]:
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    for line in finished.stdout.splitlines():
        if line.startswith("WRK_RESULT "):
            return dict(json.loads(line.removeprefix("WRK_RESULT ")))
    raise CommandError(f"wrk gave no result (exit {finished.returncode}): {finished.stdout}{finished.stderr}")
