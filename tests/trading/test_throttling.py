"""Rate limits (Property 12) and login throttling."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from email.message import Message
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper
from redis.commands.core import Script
from redis.typing import ScriptTextT

from analytics import selectors as analytics_selectors, services as analytics_services
from config.redis_pools import redis_client
from tests.processes import free_port, gunicorn_server
from tests.trading.api_support import key_client
from trading import services
from trading.api import throttling
from trading.api.throttling import Rate, SlidingWindowLimiter, _LocalWindows, limiter, verdict_reply_read
from trading.models import Account, Asset


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def rl_key() -> Callable[[str], str]:
    """Limiter keys of this test's own: under the run's prefix (which the shared fixtures and the
    end of the run delete) and a part no other test or earlier run has, so a rerun within a
    window (60 s) starts from empty logs."""
    unique = uuid.uuid4().hex[:12]
    return lambda name: f"{settings.RATE_LIMIT_KEY_PREFIX}:test:{unique}:{name}"


@pytest.mark.parametrize(
    ("text", "limit", "window"),
    [("200/min", 200, 60), ("5/15min", 5, 900), ("10/s", 10, 1), ("3/2h", 3, 7200), ("1/day", 1, 86400)],
)
def test_rates_parse(text: str, limit: int, window: float) -> None:
    assert Rate.parse(text) == Rate(limit, window)


@pytest.mark.parametrize("text", ["", "200", "x/min", "5/fortnight"])
def test_bad_rates_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="invalid rate"):
        Rate.parse(text)


def test_redis_sliding_window_is_exact_and_says_when_to_retry(rl_key: Callable[[str], str]) -> None:
    limiter = SlidingWindowLimiter()
    rate = Rate(3, 60)
    decisions = [limiter.hit(rl_key("exact"), rate) for _ in range(5)]
    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert 59 < decisions[-1].wait <= 60
    assert limiter.hit(rl_key("other"), rate).allowed  # another key has its own budget


def test_redis_verdicts_carry_the_remaining_budget_and_the_reset(rl_key: Callable[[str], str]) -> None:
    """Property 12's figures for the X-RateLimit headers: what the window still admits after each
    request, and when its oldest entry leaves it (the same instant for every request until then)."""
    limiter = SlidingWindowLimiter()
    decisions = [limiter.hit(rl_key("figures"), Rate(3, 60)) for _ in range(5)]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0, 0]
    assert len({d.reset_at for d in decisions}) == 1
    # The refused request is told to wait until that reset.
    assert decisions[0].reset_at - 60 < decisions[-1].reset_at - decisions[-1].wait <= decisions[0].reset_at


def test_concurrent_verdicts_each_see_their_own_remaining_budget(rl_key: Callable[[str], str]) -> None:
    """Property 12 under concurrency: the budget left is read in the same atomic step as the
    verdict, so 30 simultaneous requests against a limit of 10 see 9..0 once each, and the 20
    refused ones see 0."""
    limiter, rate, threads = SlidingWindowLimiter(), Rate(10, 60), 30
    barrier = threading.Barrier(threads)
    seen: list[tuple[bool, int]] = []
    lock = threading.Lock()

    def hit() -> None:
        barrier.wait()
        decision = limiter.hit(rl_key("concurrent-figures"), rate)
        with lock:
            seen.append((decision.allowed, decision.remaining))

    workers = [threading.Thread(target=hit) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert sorted(remaining for allowed, remaining in seen if allowed) == list(range(10))
    assert [remaining for allowed, remaining in seen if not allowed] == [0] * 20


def test_the_local_limiter_gives_the_same_figures() -> None:
    clock = FakeClock()
    windows = _LocalWindows(max_keys=10, clock=clock)
    rate = Rate(2, 60)
    first = windows.hit("k", rate, "a")
    clock.now += 10
    second, refused = windows.hit("k", rate, "b"), windows.hit("k", rate, "c")
    assert (first.remaining, second.remaining, refused.remaining) == (1, 0, 0)
    # The oldest entry leaves 50 s after the refusal; the reset is that instant in Unix time.
    assert refused.wait == pytest.approx(50.0)
    assert second.reset_at == pytest.approx(refused.reset_at, abs=0.01)


@pytest.mark.django_db
@pytest.mark.usefixtures("clean_cache")
def test_api_answers_carry_alpacas_rate_limit_headers(
    settings: SettingsWrapper, make_asset: Callable[..., Asset], make_account: Callable[..., Account]
) -> None:
    """X-RateLimit-Limit, -Remaining and -Reset on every limited answer: reads that wait for their
    verdict, cached reads that read it after the handler, market data, errors and the 429."""
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "read": "4/min", "market_data": "5/min"}
    make_asset("AAPL", price="100.00")
    client = key_client(make_account())
    answers = [
        client.get(path) for path in ("/v2/account", "/v2/leaderboard", "/v2/orders/nope", "/v2/clock")
    ]
    assert [answer.status_code for answer in answers] == [200, 200, 404, 200]
    refused = client.get("/v2/account")
    assert refused.status_code == 429
    for answer in [*answers, refused]:
        assert answer["X-RateLimit-Limit"] == "4"
    assert [answer["X-RateLimit-Remaining"] for answer in [*answers, refused]] == ["3", "2", "1", "0", "0"]
    resets = {int(answer["X-RateLimit-Reset"]) for answer in [*answers, refused]}
    assert len(resets) == 1  # the first request's entry leaves the window first
    assert int(refused["Retry-After"]) >= 1
    quotes = client.get("/v2/stocks/quotes/latest", {"symbols": "AAPL"})
    assert quotes.status_code == 200
    assert (quotes["X-RateLimit-Limit"], quotes["X-RateLimit-Remaining"]) == ("5", "4")


def test_no_burst_across_a_window_edge() -> None:
    """The local limiter is the same log; with a fake clock the edge is exact: 3 at the end of one
    minute and 3 more at the start of the next would be 6 within a minute, so the second 3 wait."""
    clock = FakeClock()
    windows = _LocalWindows(max_keys=10, clock=clock)
    rate = Rate(3, 60)
    clock.now = 159.0
    assert all(windows.hit("k", rate, str(i)).allowed for i in range(3))
    clock.now = 161.0
    refused = windows.hit("k", rate, "x")
    assert not refused.allowed and refused.wait == pytest.approx(58.0)
    clock.now = 219.0
    assert windows.hit("k", rate, "y").allowed


def test_the_limiter_survives_a_script_flush_and_a_killed_connection(rl_key: Callable[[str], str]) -> None:
    """The limiter talks on one connection of its own: after Redis forgets the script or drops
    that connection, the next requests are still counted in Redis, exactly."""
    limiter = SlidingWindowLimiter(retry_seconds=0.0)
    rate = Rate(4, 60)
    key = rl_key("recover")
    assert limiter.hit(key, rate).allowed
    admin = redis_client()
    admin.script_flush()
    assert limiter.hit(key, rate).allowed  # NOSCRIPT: run again with EVAL
    pinned = limiter._pinned
    assert pinned is not None
    pinned.send_command("CLIENT", "ID")
    assert admin.client_kill_filter(_id=pinned.read_response()) == 1
    # A write on the dropped connection fails and is retried on a fresh one; where the write still
    # went out (TCP) the read fails instead and that one request is counted in this process.
    assert limiter.hit(key, rate).allowed
    before = admin.zcard(key)
    assert limiter.hit(key, rate).allowed
    assert admin.zcard(key) == before + 1  # back in Redis
    admin.delete(key)


def test_the_verdicts_reply_is_read_off_the_socket_and_anything_else_by_redis_py() -> None:
    """The guard of the exact reply reader (docs/architecture.md, Framework bypasses): a reply of
    four integers is taken off the socket without redis-py's parser, which fails here if redis-py
    renames what the reader relies on (the reader would then always fall back); any other reply,
    an error included, is redis-py's to read, and the connection stays in step either way."""
    pool = redis_client().connection_pool
    connection = pool.get_connection()
    try:

        def reply_to(script: str, *, parser: bool) -> object:
            connection.send_command("EVAL", script, 0)
            if parser:
                return verdict_reply_read(connection)
            generic = connection.read_response
            connection.read_response = lambda *args, **kwargs: pytest.fail("redis-py's parser was used")  # type: ignore[method-assign]
            try:
                return verdict_reply_read(connection)
            finally:
                connection.read_response = generic  # type: ignore[method-assign]

        assert reply_to("return {1, 0, 199, 1765000000123456}", parser=False) == [1, 0, 199, 1765000000123456]
        assert reply_to("return {0, 59999000, -1, 2}", parser=False) == [0, 59999000, -1, 2]
        assert reply_to("return {1, 2}", parser=True) == [1, 2]
        assert reply_to("return {1, 2, 3, 4, 5}", parser=True) == [1, 2, 3, 4, 5]
        assert reply_to("return 'four'", parser=True) == b"four"
        connection.send_command("EVALSHA", "0" * 40, 0)
        with pytest.raises(redis.exceptions.NoScriptError):
            verdict_reply_read(connection)
        with pytest.raises(redis.ResponseError):
            reply_to("return redis.error_reply('refused')", parser=True)
        connection.send_command("PING")
        assert connection.read_response() in (b"PONG", "PONG")
    finally:
        pool.release(connection)


def test_without_redis_pys_socket_buffer_every_verdict_takes_its_parser(
    monkeypatch: pytest.MonkeyPatch, rl_key: Callable[[str], str]
) -> None:
    """A redis-py that renamed ``redis._parsers.socket.SocketBuffer`` (the import then leaves it
    None): the exact reader never reads the socket itself, redis-py's parser answers every
    verdict, and the limiter still decides."""
    monkeypatch.setattr(throttling, "SocketBuffer", None)
    pool = redis_client().connection_pool
    connection = pool.get_connection()
    try:
        generic = connection.read_response
        parsed: list[object] = []

        def read_response(*args: object, **kwargs: object) -> object:
            parsed.append(reply := generic(*args, **kwargs))
            return reply

        connection.read_response = read_response  # type: ignore[method-assign]
        connection.send_command("EVAL", "return {1, 0, 199, 1765000000123456}", 0)
        assert verdict_reply_read(connection) == [1, 0, 199, 1765000000123456]
        assert parsed == [[1, 0, 199, 1765000000123456]]
    finally:
        connection.read_response = generic  # type: ignore[method-assign]
        pool.release(connection)
    key = rl_key("no-socket-buffer")
    decision = SlidingWindowLimiter().hit(key, Rate(2, 60))
    assert decision.allowed and decision.remaining == 1
    redis_client().delete(key)


def test_a_busy_limiter_connection_sends_other_threads_through_the_pool(rl_key: Callable[[str], str]) -> None:
    limiter = SlidingWindowLimiter()
    rate = Rate(100, 60)
    key = rl_key("threads")
    assert limiter.hit(key, rate).allowed
    with limiter._pinned_lock:  # another thread is mid-request on the limiter's own connection
        assert limiter.hit(key, rate).allowed
    assert redis_client().zcard(key) == 2
    redis_client().delete(key)


def test_a_verdict_read_later_is_as_exact_and_holds_the_connection_meanwhile(
    rl_key: Callable[[str], str],
) -> None:
    """hit_begin sends the request and returns; until its verdict is read the limiter's own
    connection is reserved, so a hit in between goes through the pool, and every one counts."""
    limiter = SlidingWindowLimiter()
    rate = Rate(3, 60)
    key = rl_key("later")
    first = limiter.hit_begin(key, rate)
    assert first is not None
    assert limiter.hit_begin(key, rate) is None  # the connection is taken until first is read
    assert limiter.hit(key, rate).allowed  # through the pool meanwhile
    assert first.result().allowed and first.result().allowed  # read once, answered again
    third = limiter.hit_begin(key, rate)
    assert third is not None and third.result().allowed
    last = limiter.hit_begin(key, rate)
    assert last is not None
    refused = last.result()
    assert not refused.allowed and 59 < refused.wait <= 60
    assert redis_client().zcard(key) == 3
    redis_client().delete(key)


def test_a_verdict_read_later_survives_a_script_flush_and_a_killed_connection(
    rl_key: Callable[[str], str],
) -> None:
    limiter = SlidingWindowLimiter(retry_seconds=0.0)
    rate = Rate(10, 60)
    key = rl_key("later-recover")
    admin = redis_client()

    def verdict() -> bool:
        pending = limiter.hit_begin(key, rate)
        assert pending is not None
        return pending.result().allowed

    assert verdict()
    admin.script_flush()
    assert verdict()  # NOSCRIPT on the read: EVAL on the same connection
    pinned = limiter._pinned
    assert pinned is not None
    pinned.send_command("CLIENT", "ID")
    assert admin.client_kill_filter(_id=pinned.read_response()) == 1
    assert verdict()  # resent on a fresh connection, or counted locally if the send went out
    before = admin.zcard(key)
    assert verdict()
    assert admin.zcard(key) == before + 1
    assert not limiter._pinned_lock.locked()
    admin.delete(key)


def test_the_first_hits_of_a_new_process_from_several_threads_all_get_a_verdict(
    rl_key: Callable[[str], str],
) -> None:
    """gunicorn's threads take a new worker's first requests together. A thread that found the
    limiter's Redis client before its script was registered failed with AttributeError (a 500)."""
    registering, proceed = threading.Event(), threading.Event()
    pool = redis_client().connection_pool

    class SlowToRegister(redis.Redis):
        def register_script(self, script: ScriptTextT) -> Script:
            registering.set()
            proceed.wait(timeout=10)
            return super().register_script(script)

    limiter = SlidingWindowLimiter(redis_factory=lambda: SlowToRegister(connection_pool=pool))
    key, rate = rl_key("first-hits"), Rate(10, 60)
    outcomes: dict[str, object] = {}

    def hit(name: str) -> None:
        try:
            outcomes[name] = limiter.hit(key, rate).allowed
        except Exception as error:
            outcomes[name] = error

    first = threading.Thread(target=hit, args=("first",))
    first.start()
    assert registering.wait(timeout=10)  # the first thread is building the client
    second = threading.Thread(target=hit, args=("second",))
    second.start()
    second.join(timeout=0.5)  # it must wait for the client, not use half of it
    proceed.set()
    first.join(timeout=10)
    second.join(timeout=10)
    assert outcomes == {"first": True, "second": True}
    assert redis_client().zcard(key) == 2  # both counted in Redis
    redis_client().delete(key)


def test_without_redis_the_local_limiter_applies() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    limiter = SlidingWindowLimiter(
        redis_factory=lambda: redis.Redis.from_url(dead, socket_connect_timeout=0.5)
    )
    assert [limiter.hit("k", Rate(2, 60)).allowed for _ in range(3)] == [True, True, False]


def _get(url: str, key_id: str, secret: str) -> tuple[int, dict[str, object], Message]:
    request = urllib.request.Request(url, headers={"APCA-API-KEY-ID": key_id, "APCA-API-SECRET-KEY": secret})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}"), error.headers


@pytest.mark.live
@pytest.mark.db_backend
# /v2/account waits for the verdict before its handler; the leaderboard reads it afterwards.
@pytest.mark.parametrize("path", ["/v2/account", "/v2/leaderboard"])
def test_concurrent_requests_over_the_limit_through_gunicorn(
    transactional_db: None, tmp_path: Path, make_account: Callable[..., Account], path: str
) -> None:
    """Property 12: 40 concurrent requests against a limit of 7 over 4 processes: exactly 7 pass,
    each told a different remaining budget (6..0), the rest get 429 in Alpaca's shape with
    Retry-After and X-RateLimit-Remaining 0, and another user is unaffected."""
    limit, requests = 7, 40
    greedy, other = make_account(), make_account()
    greedy_key, greedy_secret = services.api_key_create(account_id=greedy.pk)
    other_key, other_secret = services.api_key_create(account_id=other.pk)
    with gunicorn_server(tmp_path, workers=4, extra_env={"RATE_LIMITS": f"read={limit}/min"}) as server:
        url = f"{server.base_url}{path}"
        barrier = threading.Barrier(requests)
        results: list[tuple[int, dict[str, object], Message]] = []
        lock = threading.Lock()

        def call() -> None:
            barrier.wait()
            outcome = _get(url, greedy_key.key_id, greedy_secret)
            with lock:
                results.append(outcome)

        threads = [threading.Thread(target=call) for _ in range(requests)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        statuses = Counter(status for status, _, _ in results)
        assert statuses == {200: limit, 429: requests - limit}, (statuses, server.log()[-12000:])
        refused = [(body, headers) for status, body, headers in results if status == 429]
        assert {body["code"] for body, _ in refused} == {42910000}
        assert all(1 <= int(headers["Retry-After"]) <= 60 for _, headers in refused)
        assert {headers["X-RateLimit-Remaining"] for _, headers in refused} == {"0"}
        admitted = [headers for status, _, headers in results if status == 200]
        assert sorted(int(headers["X-RateLimit-Remaining"]) for headers in admitted) == list(range(limit))
        assert {headers["X-RateLimit-Limit"] for _, _, headers in results} == {str(limit)}
        assert len({headers["X-RateLimit-Reset"] for _, _, headers in results}) == 1
        status, body, _ = _get(f"{server.base_url}/v2/account", other_key.key_id, other_secret)
        assert status == 200 and body["account_number"] == other.account_number
        assert _get(url, other_key.key_id, other_secret)[0] == 200


@pytest.mark.django_db
@pytest.mark.usefixtures("clean_cache")
def test_cached_reads_check_their_verdict_after_the_handler_exactly(
    settings: SettingsWrapper,
    make_asset: Callable[..., Asset],
    make_account: Callable[..., Account],
) -> None:
    """Property 12 for the views that read the limiter's verdict after their handler: errors
    count like answers, the request past the limit gets 429 with Retry-After, and the limiter's
    connection is free after each request."""
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "read": "3/min"}
    make_asset("AAPL", price="100.00")
    analytics_services.symbol_stats_refresh()
    client = key_client(make_account())
    statuses = [
        client.get(path).status_code
        for path in ("/v2/analytics/symbols/AAPL", "/v2/analytics/symbols/NOPE", "/v2/leaderboard")
    ]
    assert statuses == [200, 404, 200]
    refused = client.get("/v2/analytics/symbols/AAPL")
    assert refused.status_code == 429 and refused.json()["code"] == 42910000
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert not limiter()._pinned_lock.locked()


@pytest.mark.django_db
@pytest.mark.usefixtures("clean_cache")
def test_a_crashing_cached_read_still_reads_its_verdict(
    monkeypatch: pytest.MonkeyPatch,
    make_account: Callable[..., Account],
) -> None:
    def crash(**_: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(analytics_selectors, "symbol_stats_get_or_compute", crash)
    client = key_client(make_account())
    client.raise_request_exception = False
    assert client.get("/v2/analytics/symbols/AAPL").status_code == 500
    assert not limiter()._pinned_lock.locked()
    pinned = limiter()._pinned
    assert pinned is not None
    pinned.send_command("PING")  # nothing left unread on it
    assert pinned.read_response() in (b"PONG", "PONG")


@pytest.mark.django_db
def test_admin_login_is_throttled_per_username_and_address(settings) -> None:
    settings.LOGIN_RATE_LIMIT = "3/15min"
    get_user_model().objects.create_user(username="boss", password="right-password-1", is_staff=True)
    attacker = Client(REMOTE_ADDR="10.0.0.9")

    def login(client: Client, password: str) -> bool:
        response = client.post("/admin/login/?next=/admin/", {"username": "boss", "password": password})
        return response.status_code == 302

    assert not any(login(attacker, f"guess-{i}") for i in range(3))
    assert not login(attacker, "right-password-1")  # locked out, even with the right password
    # The owner, from another address, is not locked out; a success does not use up the budget.
    owner = Client(REMOTE_ADDR="10.0.0.1")
    for _ in range(5):
        assert login(owner, "right-password-1")
        owner.logout()
