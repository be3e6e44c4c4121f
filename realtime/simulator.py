"""The price model: pure, seeded and reproducible, no database, no clock, no Redis.

Each symbol's log price moves as geometric Brownian motion made of three parts: the market
factor (scaled by the symbol's beta), its sector's factor, and its own noise, plus rare jumps.
The factors are cumulative random walks advanced once per window for everyone, while a symbol
only draws its own noise when it trades, scaled by the time since its last trade: correlated
moves at a cost proportional to the ticks produced, not to the symbols times the windows.

Each symbol trades with probability ``window / tick interval`` per window, so on average once
per interval. A tick carries the trade and the prevailing quote (bid/ask a few basis points
apart, at least a cent each side, on whole cents) with sizes; its seq is the symbol's previous
seq plus one, continuing from the state given at construction (the newest stored tick after a
restart). Same seed, same starting state and same sequence of calls give the same ticks.

Symbols come and go while it runs (new listings, delistings): a new one starts from the current
factor levels, so its first move is its own, not everything the market did before it existed; a
removed one is parked with its state, so a re-listing continues its seq and price.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass

from realtime.wire import WireTick
from trading.units import UNITS_PER_CENT
from trading.universe import stable_seed

# Volatility per square root of a second. About 4 % a day in the always-open market: faster than
# a real stock so that every symbol visibly moves on the dashboard within a few ticks.
MARKET_SIGMA = 0.00008
SECTOR_SIGMA = 0.00005
IDIO_SIGMA_RANGE = (0.00006, 0.00014)
BETA_RANGE = (0.7, 1.3)
# A jump on about one trade in 2,000, a few percent either way.
JUMP_PROBABILITY = 0.0005
JUMP_SIGMA = 0.03
HALF_SPREAD_BPS_RANGE = (0.5, 2.0)


@dataclass(frozen=True, slots=True)
class SymbolStart:
    """Where a symbol resumes: its newest stored tick (seq 0 and the seed price when none)."""

    symbol: str
    sector: str
    price_units: int
    seq: int = 0
    halted: bool = False


@dataclass(slots=True)
class _Symbol:
    symbol: str
    sector: str
    beta: float
    idio_sigma: float
    log_price: float
    seq: int
    halted: bool
    # Factor levels and time at this symbol's last trade: its next move spans everything since.
    market_at_last: float
    sector_at_last: float
    elapsed_s: float
    # A symbol's own draws come from its own generator, so halting one symbol (or adding one)
    # leaves every other symbol's path unchanged.
    rng: random.Random


class MarketSimulator:
    def __init__(
        self,
        *,
        symbols: Iterable[SymbolStart],
        seed: int,
        window_s: float,
        tick_interval_s: float,
    ) -> None:
        if window_s <= 0 or tick_interval_s <= 0:
            raise ValueError("window_s and tick_interval_s must be positive")
        self.seed = seed
        self.window_s = window_s
        self.tick_probability = min(1.0, window_s / tick_interval_s)
        starts = sorted(symbols, key=lambda s: s.symbol)
        # The resumed seqs are part of the seed, so a restart does not replay the innovations the
        # first run started with; the same seed and the same starting state still repeat exactly.
        self._rng = random.Random(stable_seed(seed, "market-simulator", sum(s.seq for s in starts)))
        self._market = 0.0
        self._sectors: dict[str, float] = {}
        self._symbols: list[_Symbol] = []
        for start in starts:
            self._sectors.setdefault(start.sector, 0.0)
            self._symbols.append(self._new_state(start))
        self._by_symbol = {s.symbol: s for s in self._symbols}
        self._sector_names = sorted(self._sectors)
        self._parked: dict[str, _Symbol] = {}

    def _new_state(self, start: SymbolStart) -> _Symbol:
        if start.price_units <= 0:
            raise ValueError(f"{start.symbol}: starting price must be positive")
        # Per-symbol traits come from the symbol's own seed, so they do not depend on which
        # other symbols are simulated.
        traits = random.Random(stable_seed(self.seed, "symbol", start.symbol))
        return _Symbol(
            symbol=start.symbol,
            sector=start.sector,
            beta=traits.uniform(*BETA_RANGE),
            idio_sigma=traits.uniform(*IDIO_SIGMA_RANGE),
            log_price=math.log(start.price_units),
            seq=start.seq,
            halted=start.halted,
            market_at_last=0.0,
            sector_at_last=0.0,
            elapsed_s=0.0,
            rng=random.Random(stable_seed(self.seed, "ticks", start.symbol, start.seq)),
        )

    @property
    def symbols(self) -> list[str]:
        return [s.symbol for s in self._symbols]

    def seq_of(self, symbol: str) -> int:
        return self._by_symbol[symbol].seq

    def halted(self, symbol: str) -> bool:
        return self._by_symbol[symbol].halted

    def set_halted(self, symbol: str, halted: bool) -> bool:
        """Freeze or release a symbol; True when that changed anything."""
        state = self._by_symbol.get(symbol)
        if state is None or state.halted == halted:
            return False
        state.halted = halted
        return True

    def add_symbol(self, start: SymbolStart) -> bool:
        """Start simulating a symbol; True when it was not simulated already.

        A symbol removed earlier resumes its own state and ignores ``start``: ticks it produced
        may still be on their way to the database, so only this state knows its last seq.
        """
        if start.symbol in self._by_symbol:
            return False
        state = self._parked.pop(start.symbol, None)
        if state is None:
            state = self._new_state(start)
            if start.sector not in self._sectors:
                self._sectors[start.sector] = 0.0
                bisect.insort(self._sector_names, start.sector)
        # Its next move spans only the time it is simulated again.
        self._rebase(state)
        bisect.insort(self._symbols, state, key=lambda s: s.symbol)
        self._by_symbol[state.symbol] = state
        return True

    def remove_symbol(self, symbol: str) -> bool:
        """Stop simulating a symbol (delisted, no longer tradable); True when it was simulated."""
        state = self._by_symbol.pop(symbol, None)
        if state is None:
            return False
        self._symbols.remove(state)
        self._parked[symbol] = state
        return True

    def step(self, *, at_ns: int) -> list[WireTick]:
        """Advance one window and return its ticks, ordered by symbol."""
        rng = self._rng
        root_dt = math.sqrt(self.window_s)
        self._market += rng.gauss(0.0, MARKET_SIGMA * root_dt)
        for name in self._sector_names:
            self._sectors[name] += rng.gauss(0.0, SECTOR_SIGMA * root_dt)
        ticks: list[WireTick] = []
        for state in self._symbols:
            state.elapsed_s += self.window_s
            # Drawn for halted symbols too, so a halt does not shift every other symbol's path.
            trades = rng.random() < self.tick_probability
            if not trades or state.halted:
                if state.halted:
                    # A halted symbol resumes from its frozen price, not from where it would be.
                    self._rebase(state)
                continue
            ticks.append(self._trade(state, at_ns))
        return ticks

    def _rebase(self, state: _Symbol) -> None:
        state.market_at_last = self._market
        state.sector_at_last = self._sectors[state.sector]
        state.elapsed_s = 0.0

    def _trade(self, state: _Symbol, at_ns: int) -> WireTick:
        rng = state.rng
        sector_now = self._sectors[state.sector]
        move = (
            state.beta * (self._market - state.market_at_last)
            + (sector_now - state.sector_at_last)
            + rng.gauss(0.0, state.idio_sigma * math.sqrt(state.elapsed_s))
        )
        if rng.random() < JUMP_PROBABILITY:
            move += rng.gauss(0.0, JUMP_SIGMA)
        # The log price is a float of any size, so exp() of it is always positive; the quote is
        # floored at a cent so no price rounds to zero either.
        state.log_price += move
        self._rebase(state)
        state.seq += 1
        mid = max(UNITS_PER_CENT, _to_cent(math.exp(state.log_price)))
        half_bps = rng.uniform(*HALF_SPREAD_BPS_RANGE)
        half = max(1, math.ceil(mid * half_bps / 10_000 / UNITS_PER_CENT)) * UNITS_PER_CENT
        bid = max(UNITS_PER_CENT, mid - half)
        ask = mid + half
        # Trades print at the bid or the ask (the bid-ask bounce of real tapes).
        price = ask if rng.random() < 0.5 else bid
        # Mostly round lots, some odd lots.
        size = rng.randint(1, 99) if rng.random() < 0.2 else 100 * rng.randint(1, 5)
        return WireTick(
            symbol=state.symbol,
            seq=state.seq,
            price=price,
            size=size,
            bid=bid,
            bid_size=100 * rng.randint(1, 10),
            ask=ask,
            ask_size=100 * rng.randint(1, 10),
            at_ns=at_ns,
        )


def _to_cent(units: float) -> int:
    return round(units / UNITS_PER_CENT) * UNITS_PER_CENT
