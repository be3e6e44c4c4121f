"""``manage.py benchmark dashboard`` runs end to end (servers, market, chromium) and prints its table.

Speeds are not asserted (the goals are the benchmark's business): the rows, that both renderers
received market data and drew frames, the first load's API calls, and the clean-up are.

Backend-neutral: it measures chromium rendering the dashboard from market messages (scripting,
layout, frames), like the browser tests of tests/e2e; the database only serves the first load and
takes the market's ticks, which the API's and the market's own tests run on each backend. So CI
runs this benchmark once, on SQLite, inside ``benchmark all`` (tests/benchmarks/test_all.py checks
the same table with ``dashboard_table_check``); this test runs it alone against PostgreSQL
(``make test`` with DATABASE_URL set), and the DB_TESTS_ONLY pass deselects it.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.conf import global_settings
from django.core.management import call_command
from pytest_django.fixtures import Settings

from tests.tools import require_tool
from trading.models import Account


@pytest.mark.live
@pytest.mark.xdist_group("load")  # make test runs the load generators (benchmarks, fuzzer) one at a time
@pytest.mark.slow
@pytest.mark.db_backend("postgresql")
@pytest.mark.backend_neutral  # see the module's docstring: CI runs it in `benchmark all`, on SQLite
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("benchmark_template")  # tests/benchmarks/conftest.py
def test_benchmark_dashboard_prints_its_table(tmp_path: Path, settings: Settings) -> None:
    require_tool("chromium")
    # The benchmark's user logs in to gunicorn, which verifies with the production hasher; the
    # quick test hasher of tests/conftest.py would make that password unverifiable there.
    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS
    out = io.StringIO()
    call_command(
        "benchmark",
        "dashboard",
        symbols=60,
        rate=2,
        seconds=2,
        settle=1,
        screenshots=str(tmp_path / "shots"),
        stdout=out,
    )
    dashboard_table_check(out.getvalue())
    for renderer in ("optimised", "naive"):
        assert (tmp_path / "shots" / f"benchmark-dashboard-{renderer}.png").stat().st_size > 0
    assert not Account.objects.exists()  # the real (test) database was not touched


def dashboard_table_check(text: str) -> None:
    """What ``benchmark dashboard`` printed (alone, or among ``benchmark all``'s reports)."""
    lines = text.splitlines()

    def row(scenario: str) -> list[str]:
        found = [line for line in lines if line.startswith(scenario)]
        assert len(found) == 1, text
        return found[0][len(scenario) :].split()

    for scenario in (
        "P40 scripting time per market message",
        "  scripting time per second",
        "  renderer task time (CDP TaskDuration) per second",
        "  layout + style recalculation per second",
    ):
        cells = row(scenario)
        assert cells[1] != "-" and cells[3] != "-", (scenario, text)  # both renderers measured
    received = row("  market messages received per second")
    assert float(received[0].replace(",", "")) > 0 and float(received[1].replace(",", "")) > 0, text
    frames = row("frames dropped (of frames drawn)")  # "<dropped> of <frames> <dropped> of <frames> - - -"
    assert int(frames[2]) > 0 and int(frames[5]) > 0, text
    first_load = row("P19 API requests on first load")
    assert int(first_load[0]) >= 1 and first_load[-1] in ("yes", "noisy", "NO"), text
    assert "/v2/dashboard/bootstrap" in text  # the notes list the first load's calls
    assert "page errors" not in text, text
