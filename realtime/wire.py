"""The one message per batch window that the market process publishes to every web process.

Published on Redis pub/sub channel ``settings.MARKET_WINDOWS_CHANNEL`` after the window's ticks
and bars are committed (persist, then publish). Window numbers increase by one per published
window, so a web process that sees a jump knows it missed windows (Redis drops lagging pub/sub
subscribers) and must resync instead of skipping silently. Encoded with msgpack: compact, and
the fan-out decodes one message per window, not one per tick.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import msgpack

UTC = dt.UTC


@dataclass(frozen=True, slots=True)
class WireTick:
    symbol: str
    seq: int
    price: int  # 1/10,000 $
    size: int
    bid: int
    bid_size: int
    ask: int
    ask_size: int
    at_ns: int  # nanoseconds since the epoch, UTC

    @property
    def at(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.at_ns / 1e9, tz=UTC)


@dataclass(frozen=True, slots=True)
class WireBar:
    kind: str  # "b" closed minute bar, "d" daily bar ("u", a corrected closed bar, is never made)
    symbol: str
    start_ns: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    trade_count: int
    vwap: int


@dataclass(frozen=True, slots=True)
class Window:
    number: int
    ticks: list[WireTick] = field(default_factory=list)
    bars: list[WireBar] = field(default_factory=list)
    # Symbols whose trading status changed this window: symbol -> "H" halted / "T" trading.
    statuses: dict[str, str] = field(default_factory=dict)
    # When the market published it (ns since the epoch; 0: not said): the fan-out's lag series.
    published_ns: int = 0

    def encode(self) -> bytes:
        return msgpack.packb(
            {
                "w": self.number,
                "t": [
                    [t.symbol, t.seq, t.price, t.size, t.bid, t.bid_size, t.ask, t.ask_size, t.at_ns]
                    for t in self.ticks
                ],
                "b": [
                    [
                        b.kind,
                        b.symbol,
                        b.start_ns,
                        b.open,
                        b.high,
                        b.low,
                        b.close,
                        b.volume,
                        b.trade_count,
                        b.vwap,
                    ]
                    for b in self.bars
                ],
                "s": self.statuses,
                "p": self.published_ns,
            },
            use_bin_type=True,
        )

    @classmethod
    def decode(cls, payload: bytes) -> Window:
        data = msgpack.unpackb(payload, raw=False)
        return cls(
            number=data["w"],
            ticks=[WireTick(*row) for row in data["t"]],
            bars=[WireBar(*row) for row in data["b"]],
            statuses=dict(data.get("s") or {}),
            published_ns=int(data.get("p") or 0),
        )

    def symbols(self) -> set[str]:
        return {t.symbol for t in self.ticks} | {b.symbol for b in self.bars} | set(self.statuses)
