"""Benchmark fixtures: a clean cache (both layers) around every test, since a benchmark's reads
run in the test process against a throwaway database."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _clean_cache(clean_cache: None) -> None:
    """The process's cache manager must not carry the throwaway database's rows into other tests."""
