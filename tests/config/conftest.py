"""Fixtures for the tests of config's modules: a clean cache (both layers) for every test."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _clean_cache(clean_cache: None) -> None:
    """The cache layers' tests share the process's manager and the Redis keys under its prefix."""
