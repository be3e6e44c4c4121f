"""The open-loop client of ``benchmark games``: every request has a due time, a dispatcher hands each
to a pool of threads (each with its own connection) at that time, and a request's latency runs
from its due time to its answer. A closed loop (the next request when the last answered) would
slow down with the server and hide its backlog; here a backlog shows as latency, and the client's
own lag (sent after its due time) is reported beside it."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import queue
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Due:
    at: float  # seconds after the start
    kind: str  # "order", "read" or "board" (the game's leaderboard, whose age is read)
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None = None


@dataclass
class LoadResult:
    elapsed_s: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    first_error: str = ""
    lags: list[float] = field(default_factory=list)
    behind: int = 0  # requests not sent: the client was more than max_lag_s behind
    # Seconds between the board's as_of and the moment its request was sent.
    board_ages: list[float] = field(default_factory=list)

    def rate(self, kind: str) -> float:
        return len(self.latencies[kind]) / self.elapsed_s if self.elapsed_s else 0.0


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def drive(port: int, schedule: list[Due], *, threads: int, max_lag_s: float) -> LoadResult:
    """Send ``schedule`` (sorted by ``at``) to 127.0.0.1:``port``; returns what came back. A
    request its thread reaches more than ``max_lag_s`` after its due time is not sent and counts as
    an error ("behind"): a server that cannot keep up fails the run in bounded time instead of
    working through a backlog for an hour."""
    result = LoadResult()
    lock = threading.Lock()
    work: queue.Queue[Due | None] = queue.Queue()
    started = time.monotonic()

    def failed(kind: str, message: str) -> None:
        with lock:
            result.errors[kind] += 1
            result.first_error = result.first_error or message

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while (due := work.get()) is not None:
            sent = time.monotonic()
            if sent - (started + due.at) > max_lag_s:
                failed(due.kind, f"{due.kind}: not sent, {max_lag_s:g} s behind its due time")
                with lock:
                    result.behind += 1
                continue
            headers = dict(due.headers)
            body = None
            if due.body is not None:
                body = json.dumps(due.body)
                headers["Content-Type"] = "application/json"
            try:
                conn.request(due.method, due.path, body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException) as error:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                failed(due.kind, f"{due.kind}: {type(error).__name__}: {error}")
                continue
            answered = time.monotonic()
            answered_wall = time.time()
            if not 200 <= response.status < 300:
                failed(due.kind, f"{due.kind} {due.path}: {response.status} {payload[:200]!r}")
                continue
            age = None
            if due.kind == "board":
                as_of = dt.datetime.fromisoformat(json.loads(payload)["as_of"])
                # Age as the reader holds it, on arrival: a reader that finds the board stale
                # refreshes it before answering, so measured from the send (before the server's
                # own clock) the bound would hold by construction; the latency is part of the age.
                age = answered_wall - as_of.timestamp()
            with lock:
                result.latencies[due.kind].append(answered - (started + due.at))
                result.lags.append(sent - (started + due.at))
                if age is not None:
                    result.board_ages.append(age)
        conn.close()

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for due in schedule:
        wait = started + due.at - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        work.put(due)
    for _ in pool:
        work.put(None)
    for thread in pool:
        thread.join()
    result.elapsed_s = time.monotonic() - started
    return result
