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
"""

from __future__ import annotations

import cProfile
import io
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
    for name, path, authenticated in spec["endpoints"]:
        call = _caller(application, path, spec["headers"] if authenticated else {})
        for _ in range(WARMUP):
            call()
        best = min(_cpu_seconds(call, requests) for _ in range(rounds))
        result["cpu_us"][name] = best / requests * 1e6
        if name == spec.get("profile"):
            result["profile"] = _profiled(call, requests)
    json.dump(result, sys.stdout)


def _caller(application: Any, path: str, headers: dict[str, str]) -> Callable[[], None]:
    route, _, query = path.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
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
        **{f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()},
    }
    statuses: list[str] = []

    def start_response(status: str, response_headers: Any, exc_info: Any = None) -> None:
        statuses.append(status)

    def call() -> None:
        statuses.clear()
        answer: Iterable[bytes] = application({**environ, "wsgi.input": io.BytesIO()}, start_response)
        b"".join(answer)
        close = getattr(answer, "close", None)
        if close is not None:
            close()  # Django's request_finished: what gunicorn does after each response
        if not statuses or not statuses[0].startswith("200"):
            raise SystemExit(f"GET {path} answered {statuses}")

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
