"""config/gc_pause.py: the cyclic garbage collector paused around a batch job's run and back
after it, nested or not, whatever the run raised, and left off if it was off before; the
leaderboard job runs with it paused (docs/architecture.md, Game leaderboards)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from analytics import services
from config.gc_pause import gc_paused


@pytest.fixture(autouse=True)
def _collector_on() -> Iterator[None]:
    gc.enable()
    yield
    gc.enable()


def test_the_collector_is_off_inside_and_back_after() -> None:
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_nested_pauses_end_with_the_outermost() -> None:
    with gc_paused():
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_an_error_inside_still_brings_it_back() -> None:
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("the job failed")
    assert gc.isenabled()


def test_a_collector_off_before_stays_off() -> None:
    gc.disable()
    with gc_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


@pytest.mark.django_db
def test_the_leaderboard_job_runs_with_the_collector_paused(
    account: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each step of the run (the real ones, watched as they are called) finds the collector off;
    it is on again after."""
    seen: dict[str, bool] = {}
    for name in ("book_load", "leaderboard_refresh", "game_boards_refresh", "game_standings_freeze_due"):
        step = getattr(services, name)

        def watched(*args: Any, _step: Any = step, _name: str = name, **kwargs: Any) -> Any:
            seen[_name] = gc.isenabled()
            return _step(*args, **kwargs)

        monkeypatch.setattr(services, name, watched)
    services.leaderboards_refresh_all()
    assert seen == dict.fromkeys(
        ("book_load", "leaderboard_refresh", "game_boards_refresh", "game_standings_freeze_due"), False
    )
    assert gc.isenabled()
