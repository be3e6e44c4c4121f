"""The market process for real: kill -9 mid-stream, restart, nothing seen is lost or doubled;
listings, delistings and halts followed while it runs; the write limit held and the simulator
slowed by it, nothing dropped.

Properties 7, 9 and 36 through real processes: ``manage.py run_market`` against the test
database and a real Redis, a real pub/sub subscriber standing in for the web processes.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.conf import settings
from django.db.models import Count, Max, Min
from pytest_django.fixtures import Settings

from realtime.wire import WireTick
from tests.realtime.servers import WindowCollector, market_env, market_process
from trading.models import Asset, StockPriceHistory

SYMBOLS = ["AAA", "BBB", "CCC", "DDD"]


def stored_max_seq() -> dict[str, int]:
    return dict(StockPriceHistory.objects.values("symbol").annotate(m=Max("seq")).values_list("symbol", "m"))


@pytest.mark.live
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_kill_and_restart_keep_every_seen_tick_stored_once_without_gaps(
    stream_settings: Settings, make_asset: Callable[..., Asset], tmp_path: Path
) -> None:
    """Property 36: every tick produced and seen is persisted exactly once across kill -9 and restart."""
    for symbol in SYMBOLS:
        make_asset(symbol, price="100.00")  # one stored tick each: seq 1
    env = market_env()
    collector = WindowCollector(stream_settings.MARKET_WINDOWS_CHANNEL)
    try:
        with market_process(tmp_path, env, "first", symbols=len(SYMBOLS)) as first:
            collector.wait_for(lambda: sum(len(w.ticks) for w in collector.windows) >= 20)
            time.sleep(0.5)
            first.send_signal(signal.SIGKILL)
            first.wait()
        time.sleep(0.3)  # anything still in flight on the pub/sub connection
        first_run = list(collector.windows)
        after_kill = stored_max_seq()

        with market_process(tmp_path, env, "second", symbols=len(SYMBOLS)) as second:
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
    spans = StockPriceHistory.objects.values("symbol").annotate(n=Count("seq"), lo=Min("seq"), hi=Max("seq"))
    for span in spans:
        assert (span["lo"], span["hi"]) == (1, span["n"]), span

    # The restart resumed from the highest stored seq: its first tick of each symbol is the next.
    first_after_restart: dict[str, int] = {}
    for tick in (t for w in second_run for t in w.ticks):
        first_after_restart.setdefault(tick.symbol, tick.seq)
    assert first_after_restart
    for symbol, seq in first_after_restart.items():
        assert seq == after_kill[symbol] + 1, symbol


def seq_spans() -> dict[str, tuple[int, int, int]]:
    """(lowest seq, highest seq, rows) per symbol: no gaps and no duplicates means (1, n, n)."""
    spans = StockPriceHistory.objects.values("symbol").annotate(n=Count("seq"), lo=Min("seq"), hi=Max("seq"))
    return {row["symbol"]: (row["lo"], row["hi"], row["n"]) for row in spans}


@pytest.mark.live
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_listings_delistings_and_halts_are_followed_without_a_restart(
    stream_settings: Settings, make_asset: Callable[..., Asset], tmp_path: Path
) -> None:
    for symbol in ("AAA", "BBB"):
        make_asset(symbol, price="100.00")
    collector = WindowCollector(settings.MARKET_WINDOWS_CHANNEL)

    def ticks_of(symbol: str, since: int) -> list[WireTick]:
        return [t for w in collector.windows[since:] for t in w.ticks if t.symbol == symbol]

    def quiet(symbol: str, since: int, windows: int = 20) -> Callable[[], bool]:
        """The last ``windows`` windows after ``since`` hold no tick of ``symbol``: with every symbol
        trading in half the windows, a symbol still trading is quiet that long once in a million."""

        def check() -> bool:
            recent = collector.windows[max(since, len(collector.windows) - windows) :]
            return len(collector.windows) - since >= windows and all(
                t.symbol != symbol for w in recent for t in w.ticks
            )

        return check

    def status_window(symbol: str, status: str, since: int) -> int:
        collector.wait_for(
            lambda: any(w.statuses.get(symbol) == status for w in collector.windows[since:]),
            what=f"status {status} for {symbol}",
        )
        return next(
            i for i, w in enumerate(collector.windows) if i >= since and w.statuses.get(symbol) == status
        )

    env = market_env(overrides={"MARKET_HALT_POLL_S": 0.2})
    try:
        with market_process(tmp_path, env, "assets", symbols=0, tick_interval_s=0.1) as market:
            collector.wait_for(lambda: bool(ticks_of("AAA", 0) and ticks_of("BBB", 0)))

            # A new listing trades within a poll, from its stored tick.
            mark = len(collector.windows)
            make_asset("CCC", price="50.00")
            collector.wait_for(lambda: bool(ticks_of("CCC", mark)), what="the new listing trades")
            first = ticks_of("CCC", mark)[0]
            assert first.seq == 2 and abs(first.price - 500_000) <= 5_000

            # Delisted (no longer tradable): it stops.
            mark = len(collector.windows)
            Asset.objects.filter(symbol="BBB").update(tradable=False)
            collector.wait_for(quiet("BBB", mark), what="the delisted symbol stops")
            last_bbb = [t for w in collector.windows for t in w.ticks if t.symbol == "BBB"][-1]

            # Halted: a status "H", then silence; resumed: "T", then ticks continuing its seq.
            mark = len(collector.windows)
            Asset.objects.filter(symbol="AAA").update(halted=True)
            halted_at = status_window("AAA", "H", mark)
            last_aaa = [t for w in collector.windows[:halted_at] for t in w.ticks if t.symbol == "AAA"][-1]
            collector.wait_for(quiet("AAA", halted_at), what="the halted symbol is silent")
            assert not ticks_of("AAA", halted_at)
            Asset.objects.filter(symbol="AAA").update(halted=False)
            resumed_at = status_window("AAA", "T", halted_at)
            collector.wait_for(lambda: bool(ticks_of("AAA", resumed_at)), what="the halt is lifted")
            assert ticks_of("AAA", resumed_at)[0].seq == last_aaa.seq + 1

            # Listed again: it continues where it stopped.
            mark = len(collector.windows)
            Asset.objects.filter(symbol="BBB").update(tradable=True)
            collector.wait_for(lambda: bool(ticks_of("BBB", mark)), what="the re-listed symbol trades")
            assert ticks_of("BBB", mark)[0].seq == last_bbb.seq + 1

            market.send_signal(signal.SIGTERM)
            assert market.wait(timeout=30) == 0
        time.sleep(0.3)
    finally:
        collector.close()
    published = {(t.symbol, t.seq) for w in collector.windows for t in w.ticks}
    stored = set(StockPriceHistory.objects.filter(seq__gt=1).values_list("symbol", "seq"))
    assert published == stored
    assert all(lo == 1 and hi == n for lo, hi, n in seq_spans().values()), seq_spans()


@pytest.mark.live
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_throttled_writes_hold_the_rate_and_slow_the_simulator_without_dropping(
    stream_settings: Settings, make_asset: Callable[..., Asset], tmp_path: Path
) -> None:
    """Property 7: the market process never commits more rows or transactions than configured in
    any one-second interval. Property 9: a database slower than the simulator (here the write
    limit) slows the simulator; every produced tick is stored, with no seq gaps.

    Commits are timed by their window messages, which the market publishes right after each commit;
    a window's rows are its ticks and bars (one row per bar upsert). Arrival times add a varying few
    milliseconds to the commit times, so intervals of 0.8 s are checked: a burst at start or twice
    the rate would still show, the jitter cannot fake one.
    """
    symbols = [f"T{i}" for i in range(6)]
    for symbol in symbols:
        make_asset(symbol, price="100.00")
    max_rows, max_txns, queue = 40, 4, 4
    env = market_env(
        overrides={"MARKET_QUEUE_MAX_WINDOWS": queue},
        MARKET_WRITE_MAX_ROWS_PER_S=str(max_rows), MARKET_WRITE_MAX_TXN_PER_S=str(max_txns),
    )  # fmt: skip
    collector = WindowCollector(settings.MARKET_WINDOWS_CHANNEL)
    try:
        # 50 ms windows with every symbol trading in half of them: ~20 windows and ~180 rows a
        # second offered, against 4 transactions and 40 rows a second allowed.
        with market_process(tmp_path, env, "throttled", symbols=len(symbols), tick_interval_s=0.1) as market:
            collector.wait_for(lambda: sum(1 for w in collector.windows if w.ticks) >= 10)
            market.send_signal(signal.SIGTERM)
            assert market.wait(timeout=30) == 0  # flushes its queue, still under the limit
        time.sleep(0.3)
    finally:
        collector.close()
    log = (tmp_path / "throttled.log").read_text()

    commits = [
        (at, len(w.ticks) + len(w.bars))
        for at, w in zip(collector.arrivals, collector.windows, strict=True)
        if w.ticks or w.bars
    ]
    span = 0.8
    for i, (start, _) in enumerate(commits):
        inside = [rows for at, rows in commits[i:] if at < start + span]
        assert len(inside) <= max_txns, (start, inside)
        assert sum(inside) <= max_rows, (start, inside)

    # Property 9: the producer waited instead of dropping: far fewer windows than its clock offers.
    elapsed = collector.arrivals[-1] - collector.arrivals[0]
    windows = [w.number for w in collector.windows]
    assert windows == list(range(1, len(windows) + 1))  # all published, none skipped
    assert len(windows) < 0.5 * 20 * elapsed, (len(windows), elapsed)
    blocked = [float(m) for m in re.findall(r"producer blocked ([\d.]+) s", log)]
    assert blocked and blocked[-1] > 0
    produced = int(re.findall(r"(\d+) ticks in total", log)[-1])
    published = [(t.symbol, t.seq) for w in collector.windows for t in w.ticks]
    stored = list(StockPriceHistory.objects.filter(seq__gt=1).values_list("symbol", "seq"))
    assert produced == len(published) == len(stored)
    assert set(published) == set(stored)
    assert seq_spans() == {s: (1, hi, hi) for s, (_, hi, _) in seq_spans().items()}
    assert set(seq_spans()) == set(symbols)
