"""The pure parts of the streams: Properties 5, 6 and 23 over generated subscriptions and windows.

Routing (MessageBatcher), encoding (EncodedWindow), frame splitting and the outbox
(BackpressureManager) are exercised exactly as the fan-out uses them, minus the sockets.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from typing import Any

import msgpack
import pytest
from django.test import override_settings
from hypothesis import given, settings, strategies as st

from config.metrics import metrics_snapshot, snapshot_value
from realtime import outbox
from realtime.fanout import SubscriptionManager
from realtime.outbox import BackpressureManager, StreamConnection
from realtime.streams import (
    CHANNELS,
    EncodedWindow,
    Encoding,
    StreamError,
    Subscriptions,
    decode_inbound,
    json_frames,
    msgpack_frames,
    parse_subscription,
    rfc3339_ns,
    trade_update_message,
    websocket_frame,
)
from realtime.wire import Window, WireBar, WireTick

SYMBOLS = ["AAPL", "MSFT", "NVDA", "AMZN", "GOOG", "META", "TSLA", "JPM"]
AT_NS = 1_764_000_000_123_456_789


def _window(number: int, ticks: list[tuple[str, int]], bars: list[tuple[str, str]] | None = None) -> Window:
    return Window(
        number=number,
        ticks=[
            WireTick(symbol, seq, 1_000_000 + seq, 100, 999_900 + seq, 300, 1_000_100 + seq, 400, AT_NS + seq)
            for symbol, seq in ticks
        ],
        bars=[WireBar(kind, symbol, AT_NS, 1, 2, 0, 1, 10, 3, 1) for kind, symbol in bars or ()],
    )


def _decode(frame: str | bytes) -> list[dict[str, Any]]:
    if isinstance(frame, bytes):
        return msgpack.unpackb(frame, timestamp=3)
    return json.loads(frame)


class FakeConnection(StreamConnection):
    """A connection whose socket is a list; writability is a switch the test flips."""

    __slots__ = ("frames", "is_writable", "slow")

    def __init__(self, encoding: Encoding, *, frame_limit: int | None = 64 * 1024) -> None:
        self.frames: list[str | bytes] = []
        self.is_writable = True
        self.slow = False

        async def send(message: dict[str, Any]) -> None:
            self.frames.append(message.get("text") or message["bytes"])

        async def on_slow() -> None:
            self.slow = True

        super().__init__(send=send, encoding=encoding, on_slow=on_slow)
        if frame_limit is not None:  # None: the settings' own
            self.frame_limit = frame_limit

    def writable(self) -> bool:
        return self.is_writable


def _subscribe(connection: StreamConnection, subscriptions: Subscriptions) -> None:
    connection.masks, connection.wildcard_mask = subscriptions.masks()


def _route(windows: list[Window], connections: list[FakeConnection]) -> None:
    """The windows through the fan-out's own delivery (SubscriptionManager.deliver), no Redis."""
    manager = SubscriptionManager()
    for connection in connections:
        masks, wildcard = connection.masks, connection.wildcard_mask
        connection.masks = {}
        manager.update(connection, masks, wildcard)

    async def run() -> None:
        for window in windows:
            await manager.deliver(EncodedWindow(window))

    asyncio.run(run())


subscription_sets = st.dictionaries(
    st.sampled_from(["trades", "quotes", "bars"]),
    st.frozensets(st.sampled_from([*SYMBOLS, "*"]), max_size=4),
    max_size=3,
).map(Subscriptions)
tick_windows = st.lists(
    st.lists(st.sampled_from(SYMBOLS), max_size=30),  # symbols ticking in window order
    min_size=1,
    max_size=6,
)


def _windows_from(symbol_lists: list[list[str]]) -> list[Window]:
    seqs: dict[str, int] = defaultdict(int)
    windows = []
    for number, symbols in enumerate(symbol_lists, start=1):
        ticks = []
        for symbol in symbols:
            seqs[symbol] += 1
            ticks.append((symbol, seqs[symbol]))
        windows.append(_window(number, ticks, bars=[("b", s) for s in sorted(set(symbols))[:2]]))
    return windows


def _expected(window: Window, subscriptions: Subscriptions) -> list[tuple[str, str, int]]:
    """(T, S, seq-or-0) of every event the subscriptions select, per symbol in window order."""
    masks, wildcard = subscriptions.masks()
    out = []
    for tick in window.ticks:
        mask = masks.get(tick.symbol, 0) | wildcard
        if mask & CHANNELS["trades"]:
            out.append(("t", tick.symbol, tick.seq))
        if mask & CHANNELS["quotes"]:
            out.append(("q", tick.symbol, tick.seq))
    for bar in window.bars:
        if (masks.get(bar.symbol, 0) | wildcard) & CHANNELS["bars"]:
            out.append(("b", bar.symbol, 0))
    return out


def _key(event: dict[str, Any]) -> tuple[str, str, int]:
    seq = event.get("i", event.get("bp", 0))
    if event["T"] == "q":
        seq = round(event["bp"] * 10_000) - 999_900
    return (event["T"], event["S"], seq if event["T"] != "b" else 0)


def _per_symbol(events: list[tuple[str, str, int]]) -> dict[tuple[str, str], list[int]]:
    grouped: dict[tuple[str, str], list[int]] = defaultdict(list)
    for kind, symbol, seq in events:
        grouped[(kind, symbol)].append(seq)
    return grouped


@settings(max_examples=150)
@given(
    subs=st.lists(subscription_sets, min_size=1, max_size=4),
    symbol_lists=tick_windows,
    msgpack_=st.booleans(),
)
def test_property_5_and_6_exact_symbols_one_frame_per_window_order_kept(
    subs: list[Subscriptions], symbol_lists: list[list[str]], msgpack_: bool
) -> None:
    """Property 5: only subscribed symbols. Property 6: a fast client gets one frame per window
    (when it has anything in it), and per symbol nothing is lost, duplicated or reordered."""
    encoding = Encoding.MSGPACK if msgpack_ else Encoding.JSON
    windows = _windows_from(symbol_lists)
    connections = [FakeConnection(encoding) for _ in subs]
    for connection, subscriptions in zip(connections, subs, strict=True):
        _subscribe(connection, subscriptions)
    _route(windows, connections)
    for connection, subscriptions in zip(connections, subs, strict=True):
        expected_windows = [_expected(window, subscriptions) for window in windows]
        non_empty = [events for events in expected_windows if events]
        assert len(connection.frames) == len(non_empty)  # one frame per window, none when empty
        received = [[_key(event) for event in _decode(frame)] for frame in connection.frames]
        for got, want in zip(received, non_empty, strict=True):
            assert _per_symbol(got) == _per_symbol(want)  # same events, same order per symbol
            assert sorted(got) == sorted(want)  # nothing extra: only subscribed symbols


@settings(max_examples=200)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=300), max_size=200),
    slack=st.integers(min_value=0, max_value=5000),
)
def test_property_23_frames_stay_under_the_limit_and_split_never_truncates(
    sizes: list[int], slack: int
) -> None:
    json_parts = [json.dumps({"p": "x" * size, "n": i}) for i, size in enumerate(sizes)]
    packed = [msgpack.packb({"p": "x" * size, "n": i}) for i, size in enumerate(sizes)]
    # Any limit that fits the largest single event plus the array's own bytes.
    limit = max((len(part) for part in [*json_parts, *packed]), default=0) + 5 + slack
    frames = json_frames(json_parts, limit)
    assert all(len(frame.encode()) <= limit for frame in frames)
    assert [json.dumps(part) for frame in frames for part in json.loads(frame)] == json_parts

    packed_frames = msgpack_frames(packed, limit)
    assert all(len(frame) <= limit for frame in packed_frames)
    unpacked = [item for frame in packed_frames for item in msgpack.unpackb(frame)]
    assert unpacked == [{"p": "x" * size, "n": i} for i, size in enumerate(sizes)]


def test_a_large_window_is_split_into_several_frames_not_truncated() -> None:
    window = _window(1, [(SYMBOLS[i % len(SYMBOLS)], i) for i in range(1, 400)])
    connection = FakeConnection(Encoding.MSGPACK, frame_limit=4096)
    _subscribe(connection, Subscriptions({"trades": frozenset({"*"})}))
    _route([window], [connection])
    assert len(connection.frames) > 1
    assert all(len(frame) <= 4096 for frame in connection.frames)
    assert sum(len(_decode(frame)) for frame in connection.frames) == 399


def test_unbatched_variant_sends_each_event_in_a_frame_of_its_own() -> None:
    """STREAM_BATCH_EVENTS=false, the variant benchmark stream measures batching against (Property
    39): the same events in the same order, one frame each; batched, one frame for the window."""
    with override_settings(STREAM_BATCH_EVENTS=False):
        unbatched = [
            FakeConnection(encoding, frame_limit=None) for encoding in (Encoding.JSON, Encoding.MSGPACK)
        ]
    batched = FakeConnection(Encoding.JSON, frame_limit=None)
    for connection in [*unbatched, batched]:
        _subscribe(
            connection, Subscriptions({"trades": frozenset({"AAPL", "MSFT"}), "quotes": frozenset({"AAPL"})})
        )
    _route([_window(1, [("AAPL", 1), ("MSFT", 1), ("NVDA", 1), ("AAPL", 2)])], [*unbatched, batched])
    assert len(batched.frames) == 1
    events = [_key(event) for event in _decode(batched.frames[0])]
    assert len(events) == 5  # AAPL's two trades and two quotes, MSFT's trade
    for connection in unbatched:
        assert [len(_decode(frame)) for frame in connection.frames] == [1] * len(events)
        assert [_key(event) for frame in connection.frames for event in _decode(frame)] == events


def test_msgpack_events_carry_timestamp_extensions_and_json_rfc3339() -> None:
    encoded = EncodedWindow(_window(1, [("AAPL", 7)], bars=[("u", "AAPL")]))
    (trade, quote, bar) = [msgpack.unpackb(part) for _, part in encoded.msgpack_parts("AAPL")]
    assert isinstance(trade["t"], msgpack.Timestamp) and trade["t"].to_unix_nano() == AT_NS + 7
    assert trade == {
        **trade,
        "T": "t",
        "S": "AAPL",
        "i": 7,
        "x": "V",
        "p": 100.0007,
        "s": 100,
        "c": ["@"],
        "z": "C",
    }
    assert quote["T"] == "q" and quote["bp"] == 99.9907 and quote["ap"] == 100.0107 and quote["as"] == 400
    assert bar["T"] == "u" and set(bar) == {"T", "S", "o", "h", "l", "c", "v", "t", "n", "vw"}
    json_trade = json.loads(encoded.json_parts("AAPL")[0][1])
    assert json_trade["t"] == rfc3339_ns(AT_NS + 7) == "2025-11-24T16:00:00.123456796Z"


def test_outbox_conflates_a_stalled_client_then_gives_up() -> None:
    outbox = BackpressureManager(high_water=2, max_behind=5)
    key_a, key_b = (1, "AAPL"), (1, "MSFT")
    assert outbox.offer([(key_a, "a1")], writable=True) == [[(key_a, "a1")]]
    for n in range(2, 6):
        assert outbox.offer([(key_a, f"a{n}"), (key_b, f"b{n}")], writable=False) == []
    # Past the high-water mark only the newest event per (channel, symbol) is kept.
    assert outbox.size() == 2
    assert outbox.offer([], writable=True) == [[(key_a, "a5"), (key_b, "b5")]]
    for n in range(5):
        assert outbox.offer([(key_a, f"x{n}")], writable=False) == []
    assert outbox.offer([(key_a, "late")], writable=False) is None  # sixth window behind: 407
    assert outbox.size() <= 2


def test_outbox_conflates_a_throttled_client_that_reads_without_giving_up() -> None:
    outbox = BackpressureManager(high_water=2, max_behind=5)
    key_a, key_b = (1, "AAPL"), (1, "MSFT")
    for n in range(50):  # far past max_behind: over its budget is not behind
        assert outbox.offer([(key_a, f"a{n}"), (key_b, f"b{n}")], writable=True, throttled=True) == []
        assert outbox.size() == 2
    assert outbox.offer([(key_a, "a50")], writable=True) == [[(key_b, "b49"), (key_a, "a50")]]
    assert not outbox.backlogged


def test_slow_connection_gets_on_slow_once_and_memory_stays_bounded() -> None:
    connection = FakeConnection(Encoding.JSON)
    _subscribe(connection, Subscriptions({"trades": frozenset({"*"}), "quotes": frozenset({"*"})}))
    connection.is_writable = False
    connection.outbox.max_behind = 50
    windows = _windows_from([SYMBOLS * 5 for _ in range(40)])
    _route(windows, [connection])
    assert connection.frames == []
    assert connection.outbox.size() <= connection.outbox.high_water * 80 + 2 * len(SYMBOLS)
    connection.is_writable = True
    _route(_windows_from([["AAPL"]]), [connection])
    events = [event for frame in connection.frames for event in _decode(frame)]
    assert {(e["T"], e["S"]) for e in events} >= {("t", s) for s in SYMBOLS}
    assert not connection.slow


def test_connections_with_the_same_selection_share_its_frames() -> None:
    """A window's frame is built once per distinct selection, not once per connection."""
    same = [FakeConnection(Encoding.JSON) for _ in range(3)]
    other = FakeConnection(Encoding.JSON)
    packed = FakeConnection(Encoding.MSGPACK)
    for connection in [*same, packed]:
        _subscribe(connection, Subscriptions({"trades": frozenset({"AAPL", "MSFT"})}))
    _subscribe(other, Subscriptions({"trades": frozenset({"AAPL"})}))
    _route([_window(1, [("AAPL", 1), ("MSFT", 1), ("NVDA", 1)])], [*same, other, packed])
    assert all(len(connection.frames) == 1 for connection in [*same, other, packed])
    assert same[0].frames[0] is same[1].frames[0] is same[2].frames[0]
    assert [e["S"] for e in _decode(same[0].frames[0])] == ["AAPL", "MSFT"]
    assert [e["S"] for e in _decode(other.frames[0])] == ["AAPL"]
    assert [e["S"] for e in _decode(packed.frames[0])] == ["AAPL", "MSFT"]


# --- The byte budget per connection (OUTBOUND_BYTES_PER_S), on an injected clock --------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TimedConnection(FakeConnection):
    """A FakeConnection that notes the fan-out clock's time and size of every frame sent."""

    __slots__ = ("sent",)

    def __init__(self, encoding: Encoding, clock: Clock) -> None:
        super().__init__(encoding)
        self.sent: list[tuple[float, int]] = []
        record = self.send

        async def send(message: dict[str, Any]) -> None:
            await record(message)
            self.sent.append((clock.now, len(self.frames[-1])))

        self.send = send


def _deliver_timed(
    manager: SubscriptionManager, clock: Clock, windows: list[Window], *, period: float
) -> None:
    async def run() -> None:
        for window in windows:
            await manager.deliver(EncodedWindow(window))
            clock.now += period

    asyncio.run(run())


def _market_windows(
    count: int, *, symbols: list[str], ticks_per_window: int, first_number: int = 1
) -> list[Window]:
    """Windows of ticks spread over ``symbols`` in turn, at realistic prices (~$50-$500)."""
    windows = []
    for number in range(first_number, first_number + count):
        ticks = []
        for i in range(ticks_per_window):
            index = (number * ticks_per_window + i) % len(symbols)
            price = 500_000 + index * 9_137 + number
            ticks.append(
                WireTick(
                    symbols[index], number, price, 100, price - 100, 300, price + 100, 400, AT_NS + number
                )
            )
        windows.append(Window(number=number, ticks=ticks))
    return windows


def test_a_connection_over_its_byte_budget_is_conflated_not_closed() -> None:
    """A client reading everything is sent at most the budget per second (plus the bucket's depth
    and one batch), gets the newest value of every symbol once it drains, and stays open."""
    clock = Clock()
    start = clock.now
    series = ("stream_throttled_windows_total", "stream_conflated_windows_total", "stream_frames_sent_total")
    before = {name: snapshot_value(metrics_snapshot(), name) or 0.0 for name in series}
    manager = SubscriptionManager(clock=clock)
    connection = TimedConnection(Encoding.JSON, clock)
    manager.update(connection, {}, CHANNELS["trades"] | CHANNELS["quotes"])
    symbols = [f"SY{i:03d}" for i in range(400)]
    # ~1.2 MB/s offered for 5 s: 20 windows a second of 200 ticks (a trade and a quote each).
    windows = _market_windows(100, symbols=symbols, ticks_per_window=200)
    _deliver_timed(manager, clock, windows, period=0.05)

    assert not connection.slow and not connection.closed
    assert manager.stats.throttled > 0
    assert manager.stats.conflated > 0
    # Property 31: what the fan-out counted reaches its series (metrics_snapshot flushes).
    after = {name: snapshot_value(metrics_snapshot(), name) or 0.0 for name in series}
    assert (
        after["stream_throttled_windows_total"] - before["stream_throttled_windows_total"]
        >= manager.stats.throttled
    )
    assert (
        after["stream_conflated_windows_total"] - before["stream_conflated_windows_total"]
        >= manager.stats.conflated
    )
    assert after["stream_frames_sent_total"] - before["stream_frames_sent_total"] >= manager.stats.frames > 0
    largest = max(size for _, size in connection.sent)
    for second in range(5):
        sent = sum(size for at, size in connection.sent if start + second <= at < start + second + 1)
        assert sent <= outbox.OUTBOUND_BURST_BYTES + outbox.OUTBOUND_BYTES_PER_S + largest, second
    total = sum(size for _, size in connection.sent)
    assert total <= outbox.OUTBOUND_BURST_BYTES + 5 * outbox.OUTBOUND_BYTES_PER_S + largest

    # A quiet second refills the budget: the next window drains the conflated backlog, one event
    # per (channel, symbol), each the newest.
    clock.now += 1.0
    connection.frames.clear()
    last = _market_windows(1, symbols=symbols, ticks_per_window=1, first_number=101)
    _deliver_timed(manager, clock, last, period=0.05)
    received: dict[tuple[str, str], float] = {}
    for frame in connection.frames:
        for event in _decode(frame):
            received[(event["T"], event["S"])] = event["p"] if event["T"] == "t" else event["bp"]
    newest: dict[tuple[str, str], float] = {}
    for window in [*windows, *last]:
        for tick in window.ticks:
            newest[("t", tick.symbol)] = tick.price / 10_000
            newest[("q", tick.symbol)] = tick.bid / 10_000
    assert received == newest
    assert not connection.slow and not connection.closed


def test_a_dashboard_wildcard_at_4x_the_market_rate_is_never_conflated() -> None:
    """The budget sits above the dashboard's need: trades, quotes and bars of every symbol at 4x
    the default rate (500 symbols, 1,000 ticks a second, a minute's 500 bars in one window)."""
    clock = Clock()
    manager = SubscriptionManager(clock=clock)
    dashboard = TimedConnection(Encoding.JSON, clock)
    manager.update(dashboard, {}, CHANNELS["trades"] | CHANNELS["quotes"] | CHANNELS["bars"])
    # Real tickers are 1-5 letters; 4 is generous for the S&P 500.
    symbols = [f"{chr(65 + i // 26 % 26)}{chr(65 + i % 26)}Z{i // 676}" for i in range(500)]
    windows = _market_windows(100, symbols=symbols, ticks_per_window=100)  # 10 s at 100 ms
    windows[0] = Window(
        number=windows[0].number,
        ticks=windows[0].ticks,
        bars=[
            WireBar("b", s, AT_NS, 500_000, 510_000, 490_000, 505_000, 12_345, 67, 501_234) for s in symbols
        ],
    )
    _deliver_timed(manager, clock, windows, period=0.1)
    assert manager.stats.throttled == 0
    delivered = sum(len(_decode(frame)) for frame in dashboard.frames)
    assert delivered == sum(2 * len(w.ticks) + len(w.bars) for w in windows)


@given(subs=subscription_sets)
def test_subscriptions_are_recovered_from_their_routing_masks(subs: Subscriptions) -> None:
    """Property 5 (its state): a connection keeps only its routing masks, and the subscription
    state rebuilt from them, which answers the next subscribe, is the state it asked for."""
    wanted = Subscriptions({name: symbols for name, symbols in subs.channels.items() if symbols})
    assert Subscriptions.from_masks(*subs.masks()) == wanted


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65_535, 65_536, 70_000])
@pytest.mark.parametrize("binary", [False, True])
def test_websocket_frames_are_what_a_websocket_client_parses(size: int, binary: bool) -> None:
    """Frames written straight to daphne's sockets, parsed by the websockets library's own parser."""
    from websockets.frames import Frame, Opcode
    from websockets.streams import StreamReader

    payload = bytes(range(256)) * (size // 256) + bytes(size % 256) if binary else b"x" * size
    reader = StreamReader()
    reader.feed_data(websocket_frame(payload, binary=binary) + b"next")
    parser = Frame.parse(reader.read_exact, mask=False)
    with pytest.raises(StopIteration) as parsed:
        next(parser)
    frame = parsed.value.value
    assert frame.fin and frame.opcode is (Opcode.BINARY if binary else Opcode.TEXT)
    assert frame.data == payload
    assert reader.buffer == b"next"  # the header said exactly how long the payload is


def test_subscriptions_apply_wildcard_and_reply_shape() -> None:
    subs = Subscriptions().apply(
        "subscribe", parse_subscription({"action": "subscribe", "trades": ["AAPL", "*"], "quotes": ["MSFT"]})
    )
    assert subs.symbol_count() == 2
    reply = subs.message()
    assert reply["T"] == "subscription" and reply["trades"] == ["*", "AAPL"] and reply["quotes"] == ["MSFT"]
    assert all(reply[name] == [] for name in ("bars", "updatedBars", "dailyBars", "statuses"))
    subs = subs.apply("unsubscribe", {"trades": ["*"], "quotes": ["MSFT"]})
    assert subs.message()["trades"] == ["AAPL"] and subs.message()["quotes"] == []


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({"action": "subscribe", "trades": "AAPL"}, 400),
        ({"action": "subscribe", "trades": [1]}, 400),
        ({"action": "subscribe", "trades": [""]}, 400),
        ({"action": "subscribe", "orderbooks": ["AAPL"]}, 410),
        ({"action": "subscribe", "news": ["*"]}, 410),
    ],
)
def test_malformed_subscriptions(message: dict[str, Any], code: int) -> None:
    with pytest.raises(StreamError) as raised:
        parse_subscription(message)
    assert raised.value.code == code


def test_ignored_channels_and_decoding() -> None:
    assert parse_subscription({"action": "subscribe", "lulds": ["AAPL"], "trades": ["A"]}) == {
        "trades": ["A"]
    }
    assert decode_inbound(None, msgpack.packb({"action": "auth"})) == {"action": "auth"}
    assert decode_inbound(None, b'{"action": "auth"}') == {"action": "auth"}
    for text in ("not json", "[1, 2]", '"auth"', "{" * 100_000):
        with pytest.raises(StreamError):
            decode_inbound(text, None)
    with pytest.raises(StreamError):
        decode_inbound(None, b"\xc1\xff\x00")


def test_trade_update_message_shape() -> None:
    event = {
        "event": "fill", "account_id": "a", "order_id": "o", "symbol": "AAPL",
        "at": "2026-01-02T03:04:05.123456+00:00", "price_units": 1_900_100, "qty": 3_000_000_000, "position_qty": 5_500_000_000,
    }  # fmt: skip
    message = trade_update_message(event, {"id": "o"})
    assert message == {
        "stream": "trade_updates",
        "data": {
            "event": "fill", "order": {"id": "o"}, "timestamp": "2026-01-02T03:04:05.123456Z",
            "price": "190.01", "qty": "3", "position_qty": "5.5",
        },
    }  # fmt: skip
