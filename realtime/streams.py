"""Alpaca's stream protocols as pure functions: parsing, the subscription state, message building
and frame splitting. No I/O here, so all of it is unit- and property-tested without sockets.

Market data (``/v2/iex``, ``/v2/sip``, ``/v2/test``) follows Alpaca's real-time stock data
protocol (README, Streams): every frame is an array, JSON text or msgpack binary by the
handshake's ``Content-Type``; in msgpack ``t`` is a Timestamp extension because alpaca-py calls
``msg["t"].to_datetime()`` on it.

A window's events are encoded once per encoding and shared by every connection (EncodedWindow):
a frame is the concatenation of pre-encoded parts, so building 1,000 clients' frames costs string
joins, not 1,000 serialisations.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import msgpack

from realtime.wire import Window
from trading.units import qty_to_str, units_to_str

UTC = dt.UTC
PRICE_SCALE = 10_000
EXCHANGE = "V"  # IEX: a real venue code, so SDK-side lookups of exchange names still work
TAPE = "C"

# Channel bits: a connection's interest in one symbol is an int mask over these.
TRADES, QUOTES, BARS, UPDATED_BARS, DAILY_BARS, STATUSES = (1 << i for i in range(6))
CHANNEL_BITS = 6
CHANNEL_MASK = (1 << CHANNEL_BITS) - 1
CHANNELS: dict[str, int] = {
    "trades": TRADES,
    "quotes": QUOTES,
    "bars": BARS,
    "updatedBars": UPDATED_BARS,
    "dailyBars": DAILY_BARS,
    "statuses": STATUSES,
}
BAR_KIND_CHANNEL = {"b": BARS, "u": UPDATED_BARS, "d": DAILY_BARS}
# Alpaca channels with nothing to carry here (no LULD bands, corrections or cancels are
# simulated): accepted and ignored, so an SDK that registers such handlers still works.
IGNORED_CHANNELS = frozenset({"lulds", "corrections", "cancelErrors"})
WILDCARD = "*"
MAX_SYMBOL_LENGTH = 32

ERROR_MESSAGES: dict[int, str] = {
    400: "invalid syntax",
    401: "not authenticated",
    402: "auth failed",
    403: "already authenticated",
    404: "auth timeout",
    405: "symbol limit exceeded",
    406: "connection limit exceeded",
    407: "slow client",
    409: "insufficient subscription",
    410: "invalid subscribe action",
    500: "internal error",
}

CONNECTED: dict[str, Any] = {"T": "success", "msg": "connected"}
AUTHENTICATED: dict[str, Any] = {"T": "success", "msg": "authenticated"}


class Encoding(Enum):
    JSON = "json"
    MSGPACK = "msgpack"

    @classmethod
    def from_headers(cls, headers: Iterable[tuple[bytes, bytes]]) -> Encoding:
        for name, value in headers:
            if (
                name.lower() == b"content-type"
                and value.split(b";")[0].strip().lower() == b"application/msgpack"
            ):
                return cls.MSGPACK
        return cls.JSON


class StreamError(Exception):
    """A protocol error answered with Alpaca's error message for ``code``."""

    def __init__(self, code: int, detail: str = "") -> None:
        super().__init__(detail or ERROR_MESSAGES[code])
        self.code = code


def error_message(code: int) -> dict[str, Any]:
    return {"T": "error", "code": code, "msg": ERROR_MESSAGES[code]}


def encode_control(messages: list[dict[str, Any]], encoding: Encoding) -> str | bytes:
    """A control frame (connected, auth, subscription, error): always alone in its frame."""
    if encoding is Encoding.MSGPACK:
        packed: bytes = msgpack.packb(messages, datetime=True)
        return packed
    return json.dumps(messages, separators=(",", ":"))


def decode_inbound(text: str | None, data: bytes | None) -> dict[str, Any]:
    """A client message as a dict: JSON text, or a binary frame holding msgpack (alpaca-py) or JSON."""
    try:
        if text is not None:
            message = json.loads(text)
        elif data is not None:
            try:
                message = msgpack.unpackb(data, raw=False, strict_map_key=True)
            except (ValueError, msgpack.UnpackException, TypeError):
                # JSON sent in a binary frame (some clients do): its first byte is valid msgpack,
                # so unpackb fails with ExtraData rather than a type error.
                message = json.loads(data)
        else:
            raise StreamError(400)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise StreamError(400) from None
    if not isinstance(message, dict):
        raise StreamError(400)
    return message


# --- Subscriptions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subscriptions:
    """What one connection asked for: channel name -> symbols, "*" meaning every symbol."""

    channels: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def get(self, channel: str) -> frozenset[str]:
        return self.channels.get(channel, frozenset())

    def symbol_count(self) -> int:
        """Distinct symbols across channels; the wildcard is not counted against the limit."""
        named: set[str] = set()
        for symbols in self.channels.values():
            named.update(symbols)
        named.discard(WILDCARD)
        return len(named)

    def masks(self) -> tuple[dict[str, int], int]:
        """(symbol -> channel bits, wildcard channel bits): the routing form of this state."""
        by_symbol: dict[str, int] = {}
        wildcard = 0
        for channel, symbols in self.channels.items():
            bit = CHANNELS[channel]
            for symbol in symbols:
                if symbol == WILDCARD:
                    wildcard |= bit
                else:
                    by_symbol[symbol] = by_symbol.get(symbol, 0) | bit
        return by_symbol, wildcard

    @classmethod
    def from_masks(cls, by_symbol: Mapping[str, int], wildcard: int) -> Subscriptions:
        """The state whose ``masks()`` these are (the inverse of ``masks``)."""
        channels: dict[str, set[str]] = {}
        for symbol, bits in by_symbol.items():
            for name, bit in CHANNELS.items():
                if bits & bit:
                    channels.setdefault(name, set()).add(symbol)
        for name, bit in CHANNELS.items():
            if wildcard & bit:
                channels.setdefault(name, set()).add(WILDCARD)
        return cls({name: frozenset(symbols) for name, symbols in channels.items()})

    def apply(self, action: str, request: Mapping[str, Sequence[str]]) -> Subscriptions:
        channels = {name: set(self.get(name)) for name in CHANNELS}
        for channel, symbols in request.items():
            if action == "subscribe":
                channels[channel].update(symbols)
            else:
                channels[channel].difference_update(symbols)
        return Subscriptions({name: frozenset(symbols) for name, symbols in channels.items() if symbols})

    def message(self) -> dict[str, Any]:
        """Alpaca's ``subscription`` reply: the full current set of every channel."""
        reply: dict[str, Any] = {"T": "subscription"}
        for name in CHANNELS:
            reply[name] = sorted(self.get(name))
        # Alpaca subscribes corrections and cancel errors along with trades.
        reply["corrections"] = reply["trades"]
        reply["cancelErrors"] = reply["trades"]
        return reply


def parse_subscription(message: Mapping[str, Any]) -> dict[str, list[str]]:
    """The channels and symbols of a subscribe/unsubscribe message; StreamError when malformed."""
    request: dict[str, list[str]] = {}
    for key, value in message.items():
        if key == "action":
            continue
        if key in IGNORED_CHANNELS:
            continue
        if key not in CHANNELS:
            # Alpaca's answer to a channel this stream does not carry (orderbooks, news, ...).
            raise StreamError(410)
        if not isinstance(value, list):
            raise StreamError(400)
        symbols: list[str] = []
        for symbol in value:
            if not isinstance(symbol, str):
                raise StreamError(400)
            symbol = symbol.strip()
            if not symbol or len(symbol) > MAX_SYMBOL_LENGTH:
                raise StreamError(400)
            # One string per symbol in the process, not one per subscribing connection (each
            # decoded message brings its own copies; 1,000 clients x 20 symbols is ~1 KB each).
            symbols.append(sys.intern(symbol))
        request[key] = symbols
    return request


# --- Data messages --------------------------------------------------------------------------------


def rfc3339_ns(at_ns: int) -> str:
    seconds, nanos = divmod(at_ns, 1_000_000_000)
    return dt.datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


def _price(units: int) -> float:
    return units / PRICE_SCALE


def window_events(window: Window, *, status_at_ns: int) -> dict[str, list[tuple[int, dict[str, Any]]]]:
    """Per symbol, in window order: (channel bit, Alpaca message) with ``t`` in nanoseconds.

    ``t`` stays an int here; the encoders turn it into a string (JSON) or a Timestamp (msgpack).
    Each tick yields its trade, then the quote it left behind.
    """
    events: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for tick in window.ticks:
        per_symbol = events.setdefault(tick.symbol, [])
        per_symbol.append(
            (
                TRADES,
                {
                    "T": "t",
                    "S": tick.symbol,
                    "i": tick.seq,
                    "x": EXCHANGE,
                    "p": _price(tick.price),
                    "s": tick.size,
                    "c": ["@"],
                    "z": TAPE,
                    "t": tick.at_ns,
                },
            )
        )
        per_symbol.append(
            (
                QUOTES,
                {
                    "T": "q",
                    "S": tick.symbol,
                    "bx": EXCHANGE,
                    "bp": _price(tick.bid),
                    "bs": tick.bid_size,
                    "ax": EXCHANGE,
                    "ap": _price(tick.ask),
                    "as": tick.ask_size,
                    "c": ["R"],
                    "z": TAPE,
                    "t": tick.at_ns,
                },
            )
        )
    for bar in window.bars:
        channel = BAR_KIND_CHANNEL.get(bar.kind)
        if channel is None:
            continue
        events.setdefault(bar.symbol, []).append(
            (
                channel,
                {
                    "T": bar.kind,
                    "S": bar.symbol,
                    "o": _price(bar.open),
                    "h": _price(bar.high),
                    "l": _price(bar.low),
                    "c": _price(bar.close),
                    "v": bar.volume,
                    "t": bar.start_ns,
                    "n": bar.trade_count,
                    "vw": _price(bar.vwap),
                },
            )
        )
    for symbol, status in window.statuses.items():
        halted = status == "H"
        events.setdefault(symbol, []).append(
            (
                STATUSES,
                {
                    "T": "s",
                    "S": symbol,
                    "sc": "H" if halted else "T",
                    "sm": "Trading Halt" if halted else "Trading Resumption",
                    "rc": "T12" if halted else "",
                    "rm": "Trading Halted; additional information requested" if halted else "",
                    "t": status_at_ns,
                    "z": TAPE,
                },
            )
        )
    return events


def encode_event_json(event: dict[str, Any]) -> str:
    return json.dumps({**event, "t": rfc3339_ns(event["t"])}, separators=(",", ":"))


def encode_event_msgpack(event: dict[str, Any]) -> bytes:
    packed: bytes = msgpack.packb({**event, "t": msgpack.Timestamp.from_unix_nano(event["t"])})
    return packed


# A part of a frame: (conflation key, encoded event). The key is (channel bit, symbol): a slow
# client's outbox keeps only the newest part per key.
PartKey = tuple[int, str]
JsonPart = tuple[PartKey, str]
MsgpackPart = tuple[PartKey, bytes]
Part = tuple[PartKey, str | bytes]


class EncodedWindow:
    """One window's events, each encoded at most once per encoding, shared by all connections.

    What a connection takes from a window is a selection: an int holding, for the window's i-th
    symbol (window order), that connection's channel bits at bit ``CHANNEL_BITS * i``. An int is
    cheap to build up symbol by symbol, hashes for grouping connections that take the same
    thing, and is not a container the cyclic garbage collector has to track.
    """

    __slots__ = ("_events", "_json", "_msgpack", "number", "present", "symbols")

    def __init__(self, window: Window, *, now_ns: int | None = None) -> None:
        self.number = window.number
        if now_ns is None:
            now_ns = max((t.at_ns for t in window.ticks), default=0) or int(
                dt.datetime.now(UTC).timestamp() * 1e9
            )
        self._events = window_events(window, status_at_ns=now_ns)
        self.symbols: list[str] = list(self._events)  # window order of first appearance
        # Channels each symbol has events on this window.
        self.present: dict[str, int] = {}
        for symbol, events in self._events.items():
            mask = 0
            for channel, _ in events:
                mask |= channel
            self.present[symbol] = mask
        # Per symbol: (channel bit, part), each part built once and shared by every selection.
        self._json: dict[str, list[tuple[int, Part]]] = {}
        self._msgpack: dict[str, list[tuple[int, Part]]] = {}

    def channels_of(self, symbol: str) -> int:
        return self.present.get(symbol, 0)

    def _parts(self, encoding: Encoding, symbol: str) -> list[tuple[int, Part]]:
        cache = self._msgpack if encoding is Encoding.MSGPACK else self._json
        parts = cache.get(symbol)
        if parts is None:
            encode = encode_event_msgpack if encoding is Encoding.MSGPACK else encode_event_json
            parts = cache[symbol] = [
                (channel, ((channel, symbol), encode(event)))
                for channel, event in self._events.get(symbol, ())
            ]
        return parts

    def json_parts(self, symbol: str) -> list[tuple[int, str]]:
        return [
            (channel, text)
            for channel, (_, text) in self._parts(Encoding.JSON, symbol)
            if isinstance(text, str)
        ]

    def msgpack_parts(self, symbol: str) -> list[tuple[int, bytes]]:
        return [
            (channel, packed)
            for channel, (_, packed) in self._parts(Encoding.MSGPACK, symbol)
            if isinstance(packed, bytes)
        ]

    def parts_for(self, encoding: Encoding, wanted: Iterable[tuple[str, int]]) -> list[Part]:
        """The parts one connection gets: for each (symbol, channel mask), in window order per symbol."""
        out: list[Part] = []
        for symbol, mask in wanted:
            for channel, part in self._parts(encoding, symbol):
                if channel & mask:
                    out.append(part)
        return out

    def selected_parts(self, encoding: Encoding, selection: int) -> list[Part]:
        """The parts of a selection (see the class), in window order."""
        out: list[Part] = []
        symbols = self.symbols
        while selection:
            # The lowest selected symbol, found without walking the symbols nobody selected.
            index = ((selection & -selection).bit_length() - 1) // CHANNEL_BITS
            shift = index * CHANNEL_BITS
            mask = (selection >> shift) & CHANNEL_MASK
            selection ^= mask << shift
            for channel, part in self._parts(encoding, symbols[index]):
                if channel & mask:
                    out.append(part)
        return out


# --- Frames ---------------------------------------------------------------------------------------


def _msgpack_array_header(count: int) -> bytes:
    if count <= 15:
        return bytes([0x90 | count])
    if count <= 0xFFFF:
        return b"\xdc" + count.to_bytes(2, "big")
    return b"\xdd" + count.to_bytes(4, "big")


def _header_size(count: int) -> int:
    return 1 if count <= 15 else 3 if count <= 0xFFFF else 5


def json_frames(parts: Sequence[str], limit: int) -> list[str]:
    """JSON arrays of whole parts, each at most ``limit`` bytes (parts are ASCII JSON).

    A part is never cut: one larger than the limit by itself travels alone.
    """
    frames: list[str] = []
    batch: list[str] = []
    size = 2  # the brackets
    for part in parts:
        added = len(part) + (1 if batch else 0)
        if batch and size + added > limit:
            frames.append("[" + ",".join(batch) + "]")
            batch, size, added = [], 2, len(part)
        batch.append(part)
        size += added
    if batch:
        frames.append("[" + ",".join(batch) + "]")
    return frames


def msgpack_frames(parts: Sequence[bytes], limit: int) -> list[bytes]:
    """msgpack arrays of whole pre-packed parts, each at most ``limit`` bytes."""
    frames: list[bytes] = []
    batch: list[bytes] = []
    body = 0
    for part in parts:
        if batch and _header_size(len(batch) + 1) + body + len(part) > limit:
            frames.append(_msgpack_array_header(len(batch)) + b"".join(batch))
            batch, body = [], 0
        batch.append(part)
        body += len(part)
    if batch:
        frames.append(_msgpack_array_header(len(batch)) + b"".join(batch))
    return frames


def frames_for(encoding: Encoding, payloads: Sequence[str | bytes], limit: int) -> list[str] | list[bytes]:
    if encoding is Encoding.MSGPACK:
        return msgpack_frames([p for p in payloads if isinstance(p, bytes)], limit)
    return json_frames([p for p in payloads if isinstance(p, str)], limit)


def websocket_frame(payload: bytes, *, binary: bool) -> bytes:
    """One whole server-to-client WebSocket frame (RFC 6455 5.2): FIN set, unmasked, unfragmented."""
    first = 0x82 if binary else 0x81
    size = len(payload)
    if size < 126:
        return bytes((first, size)) + payload
    if size < 0x10000:
        return bytes((first, 126)) + size.to_bytes(2, "big") + payload
    return bytes((first, 127)) + size.to_bytes(8, "big") + payload


class EncodedSelection:
    """What one group of connections takes from a window (the same symbols and channels, one
    encoding and frame limit): its parts, for an outbox that may have to conflate them, and its
    frames, split and given their WebSocket headers once however many connections share them.

    With 1,000 clients a window holds a few hundred distinct selections at most, so frames are
    built per selection, not per connection.
    """

    __slots__ = ("_frames", "_size", "_wire", "encoding", "limit", "parts")

    def __init__(self, encoding: Encoding, parts: list[Part], limit: int) -> None:
        self.encoding = encoding
        self.parts = parts
        self.limit = limit
        self._frames: list[str] | list[bytes] | None = None
        self._wire: list[bytes] | None = None
        self._size = 0

    def frames(self) -> list[str] | list[bytes]:
        """The payloads of the frames (each a JSON or msgpack array), for an ASGI send."""
        if self._frames is None:
            self._frames = frames_for(self.encoding, [payload for _, payload in self.parts], self.limit)
            self._size = sum(len(frame) for frame in self._frames)
        return self._frames

    def payload_bytes(self) -> int:
        """Bytes of the frames' payloads (JSON parts are ASCII: characters are bytes)."""
        self.frames()
        return self._size

    def wire(self) -> list[bytes]:
        """The same frames with their WebSocket headers, to be written to a socket as they are."""
        if self._wire is None:
            binary = self.encoding is Encoding.MSGPACK
            self._wire = [
                websocket_frame(frame if isinstance(frame, bytes) else frame.encode(), binary=binary)
                for frame in self.frames()
            ]
        return self._wire


# --- trade_updates ---------------------------------------------------------------------------------


def authorization_message(*, authorized: bool, action: str = "authenticate") -> dict[str, Any]:
    return {
        "stream": "authorization",
        "data": {"status": "authorized" if authorized else "unauthorized", "action": action},
    }


def listening_message(streams: Sequence[str]) -> dict[str, Any]:
    return {"stream": "listening", "data": {"streams": list(streams)}}


def trading_error_message(message: str) -> dict[str, Any]:
    return {"stream": "listening", "data": {"error": message}}


def trade_update_message(event: Mapping[str, Any], order: Mapping[str, Any]) -> dict[str, Any]:
    """Alpaca's trade update from an order event (trading/events.py) and the order's REST shape.

    Fill figures travel as decimal strings, as Alpaca sends them; ``timestamp`` is always there.
    """
    data: dict[str, Any] = {"event": event["event"], "order": order, "timestamp": _rfc3339(event["at"])}
    if event.get("execution_id"):
        data["execution_id"] = event["execution_id"]
    if event.get("price_units") is not None:
        data["price"] = _units_str(int(event["price_units"]))
    if event.get("qty") is not None:
        data["qty"] = qty_to_str(int(event["qty"]))
    if event.get("position_qty") is not None:
        data["position_qty"] = qty_to_str(int(event["position_qty"]))
    return {"stream": "trade_updates", "data": data}


def _rfc3339(value: str) -> str:
    moment = dt.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _units_str(units: int) -> str:
    text = units_to_str(units)
    assert text is not None
    return text
