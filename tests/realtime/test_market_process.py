"""The market process for real: kill -9 mid-stream, restart, nothing seen is lost or doubled.

Property 36 through real processes: ``manage.py run_market`` against the test database and a
real Redis, a real pub/sub subscriber standing in for the web processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.db.models import Count, Max, Min

from config.redis_pools import redis_client
from realtime.wire import Window
from tests import processes
from tests.processes import ROOT, VENV_BIN
from trading.models import Asset, StockPriceHistory

SYMBOLS = ["AAA", "BBB", "CCC", "DDD"]


class WindowCollector:
    """A real Redis subscriber: what any web process would receive."""

    def __init__(self, channel: str) -> None:
        self.windows: list[Window] = []
        self._pubsub = redis_client().pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(channel)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self._pubsub.get_message(timeout=0.2)
            if message and message["type"] == "message":
                self.windows.append(Window.decode(message["data"]))

    def wait_for(self, condition: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.05)
        raise AssertionError("the market published nothing in time")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._pubsub.close()


@contextmanager
def market_process(tmp_path: Path, env: dict[str, str], name: str) -> Iterator[subprocess.Popen[bytes]]:
    log_path = tmp_path / f"{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(VENV_BIN / "python"), "manage.py", "run_market",
             "--symbols", str(len(SYMBOLS)), "--window-ms", "50", "--tick-interval", "0.2", "--seed", "7"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        print(log_path.read_text(errors="replace"))


def stored_max_seq() -> dict[str, int]:
    return dict(StockPriceHistory.objects.values("symbol").annotate(m=Max("seq")).values_list("symbol", "m"))


@pytest.mark.live
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_kill_and_restart_keep_every_seen_tick_stored_once_without_gaps(
    make_asset: Callable[..., Asset], tmp_path: Path
) -> None:
    """Property 36: every tick produced and seen is persisted exactly once across kill -9 and restart."""
    for symbol in SYMBOLS:
        make_asset(symbol, price="100.00")  # one stored tick each: seq 1
    channel = f"test:market:windows:{uuid.uuid4().hex}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": processes.test_database_url(),
        "MARKET_WINDOWS_CHANNEL": channel,
        "LATEST_QUOTES_KEY": f"test:quotes:{uuid.uuid4().hex}",
        "ORDER_EVENTS_CHANNEL": f"test:orders:{uuid.uuid4().hex}",
        "MARKET_LOG_INTERVAL_S": "1",
    }
    collector = WindowCollector(channel)
    try:
        with market_process(tmp_path, env, "first") as first:
            collector.wait_for(lambda: sum(len(w.ticks) for w in collector.windows) >= 20)
            time.sleep(0.5)
            first.send_signal(signal.SIGKILL)
            first.wait()
        time.sleep(0.3)  # anything still in flight on the pub/sub connection
        first_run = list(collector.windows)
        after_kill = stored_max_seq()

        with market_process(tmp_path, env, "second") as second:
            collector.wait_for(lambda: sum(len(w.ticks) for w in collector.windows[len(first_run) :]) >= 20)
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=30) == 0  # graceful: flushes its queue and exits
        time.sleep(0.3)
        second_run = collector.windows[len(first_run) :]
    finally:
        collector.close()

    # Window numbers are consecutive within a run; the restart begins again from 1.
    for run in (first_run, second_run):
        numbers = [w.number for w in run]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    assert second_run[0].number == 1

    seen = [t for w in first_run + second_run for t in w.ticks]
    keys = [(t.symbol, t.seq) for t in seen]
    assert len(keys) == len(set(keys)), "a seq was published twice"
    stored = {
        (row.symbol, row.seq): row for row in StockPriceHistory.objects.filter(symbol__in=SYMBOLS, seq__gt=1)
    }
    for tick in seen:
        row = stored.get((tick.symbol, tick.seq))
        assert row is not None, f"{tick.symbol}#{tick.seq} was published but not stored"
        assert (row.price_units, row.size, row.bid_units, row.ask_units) == (
            tick.price, tick.size, tick.bid, tick.ask,
        )  # fmt: skip

    # No gaps and no duplicates in the database: seqs run 1..max for every symbol.
    spans = StockPriceHistory.objects.values("symbol").annotate(n=Count("id"), lo=Min("seq"), hi=Max("seq"))
    for span in spans:
        assert (span["lo"], span["hi"]) == (1, span["n"]), span

    # The restart resumed from the highest stored seq: its first tick of each symbol is the next.
    first_after_restart: dict[str, int] = {}
    for tick in (t for w in second_run for t in w.ticks):
        first_after_restart.setdefault(tick.symbol, tick.seq)
    assert first_after_restart
    for symbol, seq in first_after_restart.items():
        assert seq == after_kill[symbol] + 1, symbol
