"""``manage.py benchmark all --smallest`` runs every benchmark (real servers, chromium, wrk) and
writes one report: Markdown naming each benchmark and its rows, JSON with each row's optimised,
baseline, ratio, goal and met, a real PNG per benchmark; the ops page links it for staff only.

Too long for the fast suite (minutes): live, on SQLite only. Here the live benchmarks' table checks
(``api_table_check``, ``dashboard_table_check``, ``games_table_check``, ``stream_table_check``,
``trading_table_check``) read this run's output. The api, games and trading benchmarks' own tests
run on PostgreSQL, so CI runs each of those once per backend; stream and dashboard are
backend-neutral (their modules say why), so CI runs them only here.
Figures are not asserted; that every benchmark ran and reported what its own test expects is.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.conf import global_settings
from django.core.management import call_command
from django.test import Client
from pytest_django.fixtures import Settings

import benchmarks
from tests.analytics.test_ops_page import client_for
from tests.benchmarks.test_api import api_table_check
from tests.benchmarks.test_dashboard import dashboard_table_check
from tests.benchmarks.test_games import games_table_check
from tests.benchmarks.test_stream import stream_table_check
from tests.benchmarks.test_trading import trading_table_check
from tests.tools import require_tool
from trading.models import Account

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.live
@pytest.mark.xdist_group("load")  # make test runs the load generators (benchmarks, fuzzer) one at a time
@pytest.mark.slow
@pytest.mark.db_backend("sqlite")
@pytest.mark.django_db(transaction=True)
def test_benchmark_all_writes_one_report_the_ops_page_links(tmp_path: Path, settings: Settings) -> None:
    require_tool("chromium")
    require_tool("wrk")
    # The dashboard benchmark's user logs in to gunicorn, which verifies with the production hasher.
    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS
    settings.BENCHMARK_REPORTS_DIR = tmp_path / "reports"
    names = list(benchmarks.available())
    assert {"api", "dashboard", "db", "games", "stream", "ticks", "trading"} <= set(names)
    out = io.StringIO()
    call_command("benchmark", "all", "--smallest", "--db-name", str(tmp_path / "bench.sqlite3"), stdout=out)
    text = out.getvalue()
    assert not Account.objects.exists()  # the real (test) database was not touched
    for position, name in enumerate(names, start=1):
        assert f"[{position}/{len(names)} {name}] starting (" in text, text
        assert f"[{position}/{len(names)} {name}] done in " in text, text
    assert "FAILED" not in text, text
    assert f"all {len(names)} benchmarks run in " in text and "; 0 failed" in text, text
    # Migrated once: every benchmark's database is a fresh copy of the suite's template.
    assert text.count(": migrating") == 1, text
    assert text.count("a copy of the migrated") == len(names), text
    api_table_check(text, client="wrk")
    dashboard_table_check(text)
    games_table_check(text)
    stream_table_check(text)
    trading_table_check(text)

    latest = tmp_path / "reports" / "latest"
    document = json.loads((latest / "report.json").read_text())
    assert document["sizes"] == "smallest" and document["database"] == "sqlite"
    assert [entry["name"] for entry in document["benchmarks"]] == names
    markdown = (latest / "report.md").read_text()
    for entry in document["benchmarks"]:
        assert entry["status"] == "ok" and entry["error"] is None, entry
        assert entry["rows"], entry["name"]
        for row in entry["rows"]:
            assert set(row) == {"scenario", "optimised", "baseline", "ratio", "goal", "met", "load_free"}, row
            assert row["met"] in (True, False, None), row
        assert any(row["met"] is not None for row in entry["rows"]), entry["name"]  # a goal each
        assert f"## {entry['name']}" in markdown
        assert entry["rows"][0]["scenario"].strip() in markdown
        assert (latest / entry["plot"]).read_bytes().startswith(PNG_SIGNATURE)

    staff = client_for(staff=True)
    assert 'href="/ops/benchmarks/report.md"' in staff.get("/ops/").content.decode()
    served = staff.get("/ops/benchmarks/report.json")
    assert served.status_code == 200
    assert json.loads(served.getvalue()) == document
    assert staff.get("/ops/benchmarks/stream.png").getvalue().startswith(PNG_SIGNATURE)
    assert client_for(staff=False).get("/ops/benchmarks/report.json").status_code == 403
    assert Client().get("/ops/benchmarks/report.json").status_code == 302
