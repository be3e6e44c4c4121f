"""The price model: reproducible, gap-free seqs, positive prices, halts, the configured tick rate."""

from __future__ import annotations

from hypothesis import given, settings as hsettings, strategies as st

from realtime.simulator import MarketSimulator, SymbolStart
from realtime.wire import WireTick

SECTORS = ["Technology", "Energy", "Health Care"]


def starts(count: int, *, price: int = 1_000_000, seq: int = 0) -> list[SymbolStart]:
    return [
        SymbolStart(symbol=f"S{i:03d}", sector=SECTORS[i % len(SECTORS)], price_units=price, seq=seq)
        for i in range(count)
    ]


def run(sim: MarketSimulator, windows: int) -> list[WireTick]:
    ticks: list[WireTick] = []
    for n in range(windows):
        ticks += sim.step(at_ns=1_700_000_000_000_000_000 + n * 100_000_000)
    return ticks


@given(seed=st.integers(0, 2**32))
@hsettings(max_examples=20)
def test_same_seed_same_ticks(seed: int) -> None:
    def make() -> MarketSimulator:
        return MarketSimulator(symbols=starts(8), seed=seed, window_s=0.1, tick_interval_s=0.5)

    first, second = run(make(), 60), run(make(), 60)
    assert first == second
    assert first  # something happened


def test_different_seeds_differ() -> None:
    a = MarketSimulator(symbols=starts(8), seed=1, window_s=0.1, tick_interval_s=0.5)
    b = MarketSimulator(symbols=starts(8), seed=2, window_s=0.1, tick_interval_s=0.5)
    assert run(a, 60) != run(b, 60)


@given(
    prices=st.lists(st.integers(100, 50_000_000), min_size=1, max_size=6),
    first_seq=st.integers(0, 10**9),
    seed=st.integers(0, 1000),
)
@hsettings(max_examples=30)
def test_seqs_contiguous_and_prices_positive(prices: list[int], first_seq: int, seed: int) -> None:
    symbols = [
        SymbolStart(symbol=f"P{i}", sector="Energy", price_units=price, seq=first_seq)
        for i, price in enumerate(prices)
    ]
    sim = MarketSimulator(symbols=symbols, seed=seed, window_s=0.1, tick_interval_s=0.15)
    ticks = run(sim, 200)
    by_symbol: dict[str, list[int]] = {}
    for tick in ticks:
        by_symbol.setdefault(tick.symbol, []).append(tick.seq)
        assert 0 < tick.bid < tick.ask
        assert tick.price in (tick.bid, tick.ask)
        assert tick.size > 0 and tick.bid_size > 0 and tick.ask_size > 0
        assert tick.price % 100 == 0  # whole cents
    for symbol, seqs in by_symbol.items():
        assert seqs == list(range(first_seq + 1, first_seq + 1 + len(seqs))), symbol
        assert sim.seq_of(symbol) == seqs[-1]


def test_one_cent_stock_never_reaches_zero() -> None:
    sim = MarketSimulator(
        symbols=[SymbolStart(symbol="PENNY", sector="Energy", price_units=100)],
        seed=3,
        window_s=1.0,
        tick_interval_s=1.0,
    )
    ticks = run(sim, 2_000)
    assert len(ticks) == 2_000
    assert min(t.bid for t in ticks) >= 100


def test_halted_symbols_are_silent_and_resume_their_seq() -> None:
    symbols = starts(4, seq=10)
    symbols[1] = SymbolStart(symbol="S001", sector="Energy", price_units=500_000, seq=10, halted=True)
    sim = MarketSimulator(symbols=symbols, seed=5, window_s=0.1, tick_interval_s=0.1)
    ticks = run(sim, 50)
    assert "S001" not in {t.symbol for t in ticks}
    assert sim.set_halted("S001", False)
    assert not sim.set_halted("S001", False)
    sim.set_halted("S000", True)
    later = run(sim, 20)
    assert "S000" not in {t.symbol for t in later}
    resumed = [t for t in later if t.symbol == "S001"]
    assert [t.seq for t in resumed] == list(range(11, 11 + len(resumed)))
    # It resumes from its frozen price, not from wherever the market drifted meanwhile.
    assert abs(resumed[0].price - 500_000) <= 500_000 * 0.01


def test_halting_one_symbol_does_not_change_the_others() -> None:
    plain = MarketSimulator(symbols=starts(5), seed=9, window_s=0.1, tick_interval_s=0.3)
    halted = MarketSimulator(symbols=starts(5), seed=9, window_s=0.1, tick_interval_s=0.3)
    halted.set_halted("S002", True)
    expected = [t for t in run(plain, 100) if t.symbol != "S002"]
    assert run(halted, 100) == expected


def test_tick_rate_matches_the_configured_interval_on_average() -> None:
    # 50 symbols, one tick each per 2 s, 200 s of 100 ms windows: 5,000 ticks expected.
    sim = MarketSimulator(symbols=starts(50), seed=11, window_s=0.1, tick_interval_s=2.0)
    ticks = run(sim, 2_000)
    assert 4_500 <= len(ticks) <= 5_500
    per_symbol = {t.symbol for t in ticks}
    assert len(per_symbol) == 50


def test_prices_move_together_within_a_sector() -> None:
    """The market and sector factors correlate moves: same-sector returns agree in sign more often."""
    symbols = [SymbolStart(symbol=f"T{i}", sector="Technology", price_units=1_000_000) for i in range(2)]
    sim = MarketSimulator(symbols=symbols, seed=13, window_s=60.0, tick_interval_s=60.0)
    agree = total = 0
    last = {s.symbol: s.price_units for s in symbols}
    for n in range(400):
        ticks = {t.symbol: t for t in sim.step(at_ns=n)}
        moves = [(ticks[s].bid + ticks[s].ask) - 2 * last[s] for s in ("T0", "T1")]
        last = {s: (ticks[s].bid + ticks[s].ask) // 2 for s in ("T0", "T1")}
        if moves[0] and moves[1]:
            total += 1
            agree += (moves[0] > 0) == (moves[1] > 0)
    assert agree / total > 0.6


def test_symbols_listed_and_delisted_while_running() -> None:
    sim = MarketSimulator(symbols=starts(3), seed=4, window_s=0.1, tick_interval_s=0.1)
    run(sim, 30)  # the market factors have moved meanwhile
    listing = SymbolStart(symbol="NEW", sector="Utilities", price_units=2_000_000, seq=7)
    assert sim.add_symbol(listing)
    assert not sim.add_symbol(listing)
    window = sim.step(at_ns=0)
    assert [t.symbol for t in window] == ["NEW", "S000", "S001", "S002"]  # still ordered by symbol
    new = [t for t in window + run(sim, 20) if t.symbol == "NEW"]
    assert [t.seq for t in new] == list(range(8, 8 + 21))
    # It starts from its own price, not from everything the market did before it was listed.
    assert abs(new[0].price - 2_000_000) <= 2_000_000 * 0.01

    before = [t for t in run(sim, 5) if t.symbol == "S001"][-1]
    assert sim.remove_symbol("S001") and not sim.remove_symbol("S001")
    assert "S001" not in {t.symbol for t in run(sim, 20)}
    # Listed again: it continues its own seq and price; the start given is for new symbols only.
    assert sim.add_symbol(SymbolStart(symbol="S001", sector="Energy", price_units=1, seq=0))
    resumed = [t for t in run(sim, 20) if t.symbol == "S001"]
    assert [t.seq for t in resumed] == list(range(before.seq + 1, before.seq + 21))
    assert abs(resumed[0].price - before.price) <= before.price * 0.01
    assert sim.symbols == ["NEW", "S000", "S001", "S002"]
