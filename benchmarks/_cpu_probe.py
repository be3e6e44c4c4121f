"""``benchmark api --cpu``'s measuring process: CPU per request of each endpoint, in one process,
with no server and no load generator.

Started by ``benchmark api`` with the throwaway database's DATABASE_URL, a Redis prefix of its
own, BENCHMARK_ENDPOINTS and limits too high to trip in its environment; reads what to measure as
JSON on stdin and writes the figures as JSON on stdout. It publishes the seeded ticks to Redis as
the market does (each symbol's newest), so the quotes the reads serve come from Redis. Each request goes through the
WSGI application gunicorn serves (``settings.WSGI_APPLICATION``: the API's own middleware stack),
called with an environ as gunicorn builds one; after a warm-up, ``time.process_time`` over
``requests`` requests, the best of ``rounds`` rounds, is one endpoint's figure: the CPU a worker
spends on it, whatever else the machine runs. With ``profile`` naming an endpoint, that endpoint
runs once more under cProfile (on the CPU clock) and the profile's top functions come back too.
``posts`` (``--cpu-orders``) are measured the same way with a one-share market order as each
request's body, from each of ``traders`` in turn, alternating buy and sell per trader.
"""

from __future__ import annotations

import cProfile
import io
import itertools
import json
import os
import pstats
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

WARMUP = 50


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.servers.basehttp import get_internal_wsgi_application

    from trading.models import Asset
    from trading.quotes import latest_quotes_store, latest_ticks_from_db

    spec = json.load(sys.stdin)
    # Each symbol's newest stored tick, as the market leaves the hash after its last window.
    symbols = Asset.objects.values_list("symbol", flat=True)
    latest_quotes_store(quotes=latest_ticks_from_db(symbols=symbols).values())
    application = get_internal_wsgi_application()
    requests, rounds = int(spec["requests"]), int(spec["rounds"])
    result: dict[str, Any] = {"cpu_us": {}, "profile": ""}
    calls = [
        (name, _caller(application, path, spec["headers"] if authenticated else {}))
        for name, path, authenticated in spec["endpoints"]
    ]
    calls += [(name, _poster(application, path, spec["traders"])) for name, path in spec.get("posts", [])]
    for name, call in calls:
        for _ in range(WARMUP):
            call()
        best = min(_cpu_seconds(call, requests) for _ in range(rounds))
        result["cpu_us"][name] = best / requests * 1e6
        if name == spec.get("profile"):
            result["profile"] = _profiled(call, requests)
    json.dump(result, sys.stdout)


def _environ(path: str, headers: dict[str, str], *, method: str = "GET", body: bytes = b"") -> dict[str, Any]:
    """An environ as gunicorn builds one (CONTENT_TYPE and CONTENT_LENGTH without HTTP_)."""
    route, _, query = path.partition("?")
    content = {
        name.lower(): value
        for name, value in headers.items()
        if name.lower() in ("content-type", "content-length")
    }
    return {
        "REQUEST_METHOD": method,
        "PATH_INFO": route,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        **{
            f"HTTP_{name.upper().replace('-', '_')}": value
            for name, value in headers.items()
            if name.lower() not in content
        },
        **({"CONTENT_TYPE": content["content-type"]} if "content-type" in content else {}),
        **({"CONTENT_LENGTH": str(len(body))} if method != "GET" else {}),
    }


def _answered(application: Any, environ: dict[str, Any], what: str) -> None:
    """One request through the WSGI application, as gunicorn makes it; exits unless it answered 200."""
    statuses: list[str] = []

    def start_response(status: str, response_headers: Any, exc_info: Any = None) -> None:
        statuses.append(status)

    answer: Iterable[bytes] = application(environ, start_response)
    b"".join(answer)
    close = getattr(answer, "close", None)
    if close is not None:
        close()  # Django's request_finished: what gunicorn does after each response
    if not statuses or not statuses[0].startswith("200"):
        raise SystemExit(f"{what} answered {statuses}")


def _caller(application: Any, path: str, headers: dict[str, str]) -> Callable[[], None]:
    environ = _environ(path, headers)

    def call() -> None:
        _answered(application, {**environ, "wsgi.input": io.BytesIO()}, f"GET {path}")

    return call


def _poster(application: Any, path: str, traders: list[list[Any]]) -> Callable[[], None]:
    """POSTs of a one-share market order (benchmarks/trading.py, order_body) from each trader in
    turn, each trader alternating buy and sell, as ``benchmark trading``'s load sends them: every
    order fills whole at the published quote (its touch shows more than one share)."""
    from benchmarks.trading import order_body

    sent = itertools.count()

    def call() -> None:
        index = next(sent)
        headers, symbol = traders[index % len(traders)]
        side = "buy" if (index // len(traders)) % 2 == 0 else "sell"
        body = order_body(symbol, side)
        environ = _environ(path, headers, method="POST", body=body)
        _answered(application, {**environ, "wsgi.input": io.BytesIO(body)}, f"POST {path} ({side})")

    return call


def _cpu_seconds(call: Callable[[], None], requests: int) -> float:
    started = time.process_time()
    for _ in range(requests):
        call()
    return time.process_time() - started


def _profiled(call: Callable[[], None], requests: int) -> str:
    profile = cProfile.Profile(time.process_time)
    profile.enable()
    for _ in range(requests):
        call()
    profile.disable()
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(40)
    return text.getvalue()


if __name__ == "__main__":
    main()
