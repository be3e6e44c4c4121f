"""The rendered-body memo of the API views that serve a cached read as it is."""

from __future__ import annotations

from trading.api.rendered_bodies import RenderedBodies


def test_a_body_is_rendered_once_per_cached_value_and_again_for_a_new_one() -> None:
    renders: list[object] = []

    def render(data: object) -> bytes:
        renders.append(data)
        return repr(data).encode()

    bodies = RenderedBodies(render=render, max_entries=2)
    board = {"entries": [1, 2, 3]}
    assert bodies.get(board) == b"{'entries': [1, 2, 3]}"
    assert bodies.get(board) == b"{'entries': [1, 2, 3]}" and len(renders) == 1
    # A variant (the leaderboard's limit) renders its own payload from the same value.
    assert (
        bodies.get(board, variant=1, payload=lambda: {"entries": board["entries"][:1]}) == b"{'entries': [1]}"
    )
    assert len(renders) == 2
    # An equal but new object (a reload after an invalidation) is rendered again.
    reloaded = {"entries": [1, 2, 3]}
    bodies.get(reloaded)
    assert len(renders) == 3
    # Bounded: the oldest entry went, so the first value renders again.
    bodies.get(board)
    assert len(renders) == 4
