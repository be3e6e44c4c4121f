"""Property 33: the ops page shows every key metric, in Debian's chromium over the live stack.

The browser modules' one stack (gunicorn, daphne, the market: tests/e2e/conftest.py) plus the
host's monitor (``manage.py run_monitor``) writing the samples the page draws. A trader's dashboard page open
meanwhile moves the API, database, cache, WebSocket and browser series; the market moves its own;
the broker and outbox gauges are read at every snapshot; every process reports its memory and
CPU. A rule the test adds (the monitor's own memory above one byte) raises an alert that the page
shows. A signed-in user who is not staff gets 403. Screenshots are saved.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Page, Request, expect

from analytics.models import AlertRule, MonitorSample
from analytics.ops import OPS_GROUPS
from benchmarks.processes import process_stop
from tests.e2e.browser import PASSWORD, LiveStack, Pages, unique_username, user_create
from tests.processes import ROOT, VENV_BIN

pytestmark = [
    pytest.mark.live,
    pytest.mark.slow,
    pytest.mark.xdist_group("stacks"),  # make test runs chromium and whole-stack runs one at a time
    pytest.mark.backend_neutral,  # the ops page over the live stack, not the SQL: CI runs it once
]

UI_TIMEOUT_MS = 20_000
ALERT_RULE = "Ops page test: monitor memory"


def wait_until(condition: Callable[[], object], *, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def log_in(page: Page, username: str) -> None:
    page.goto("/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()


@pytest.fixture(scope="module")
def monitor(dashboard_stack: LiveStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """run_monitor beside the stack, with a rule that fires at once on its own memory."""
    workdir = tmp_path_factory.mktemp("ops-monitor")
    env = {
        **dashboard_stack.env,
        "TEST_SETTINGS_OVERRIDES": json.dumps(
            {"MONITOR_INTERVAL_SECONDS": 1, "MONITOR_RULES_FILE": str(workdir / "monitor-rules.json")}
        ),
    }
    log_path = workdir / "monitor.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(VENV_BIN / "python"), "manage.py", "run_monitor"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield log_path
    finally:
        process_stop(process)


def test_p33_the_ops_page_shows_every_metric_group_and_a_raised_alert(
    dashboard_stack: LiveStack, pages: Pages, live_db: None, monitor: Path
) -> None:
    AlertRule.objects.create(
        name=ALERT_RULE,
        metric="process_resident_memory_bytes",
        labels={"role": "monitor"},
        aggregation="max",
        threshold=1,
        clear_threshold=0,
        for_seconds=0,
        severity="warning",
    )
    trader = unique_username("trader")
    user_create(trader)
    operator = unique_username("operator")
    user_create(operator)
    get_user_model().objects.filter(username=operator).update(is_staff=True)

    # A trader's live dashboard: HTTP, database, cache, WebSocket and browser-report traffic.
    dashboard = pages.open(name="trader").page
    log_in(dashboard, trader)
    expect(dashboard.locator("#dashboard[data-ready=true]")).to_be_visible(timeout=UI_TIMEOUT_MS)
    # ... who may not see the ops page.
    forbidden = dashboard.request.get("/ops/")
    assert forbidden.status == 403
    assert dashboard.locator("a[href='/ops/']").count() == 0

    # The monitor has written samples with the figures of every group, the dashboard's reports
    # (every DASHBOARD_PERF_REPORT_INTERVAL_S) among them.
    def sampled_keys() -> set[str]:
        keys: set[str] = set()
        for values in MonitorSample.objects.filter(tier_seconds=10).values_list("values", flat=True):
            keys |= set(values)
        return keys

    def groups_sampled() -> set[str]:
        keys = sampled_keys()
        return {group["id"] for group in OPS_GROUPS if any(_group_keys(group, keys))}

    wait_until(
        lambda: groups_sampled() == {group["id"] for group in OPS_GROUPS},
        what=f"samples of every group (so far {sorted(groups_sampled())}); monitor log:\n{monitor.read_text()}",
        timeout=120,
    )

    # A hit rate is the share of hits among the reads between two samples, so the chart gets a
    # point only from cached reads made after a sample: the trader reads the leaderboard (cached)
    # until a sample carries a hit rate.
    def cached_reads_sampled() -> bool:
        for _ in range(2):  # the first may miss and fill the cache; the second hits
            assert dashboard.request.get("/v2/leaderboard").status == 200
        return any(key.startswith("cache.hit_ratio.") for key in sampled_keys())

    wait_until(cached_reads_sampled, what=f"a cache hit rate sample; monitor log:\n{monitor.read_text()}")

    opened = pages.open(name="ops")
    page = opened.page
    log_in(page, operator)
    own: list[str] = []

    def count(request: Request) -> None:
        if "/static/vendor/" not in request.url:  # the charting library is node_modules', not the page's
            own.append(request.url)

    # The dashboard log_in lands on asks for its chart's bars after its first paint: let those
    # finish, or one still in flight is counted as the ops page's.
    page.wait_for_load_state("networkidle")
    page.on("request", count)
    page.click("a[href='/ops/']")  # linked from every page's header for staff
    expect(page.locator("#ops[data-ready=true]")).to_be_visible(timeout=UI_TIMEOUT_MS)
    page.wait_for_load_state("networkidle")
    first_load = list(own)
    assert len(first_load) <= 3, first_load

    for group in OPS_GROUPS:
        section = page.locator(f"section[data-group='{group['id']}']")
        expect(section).to_have_attribute("data-has-data", "true", timeout=UI_TIMEOUT_MS)
        expect(section.locator(".ops-chart-canvas canvas").first).to_be_visible()
    expect(page.locator("[data-table='slow_routes'] tr[data-route]").first).to_be_visible()
    hit_rate = page.locator(".ops-chart[data-chart='Hit rate per layer'] .ops-chart-canvas")
    expect(hit_rate).to_have_attribute("data-lines", re.compile(r"^[1-9]"), timeout=UI_TIMEOUT_MS)
    # The latest report (none in this stack's VAR_DIR, or one a run left there) is linked or said missing.
    expect(page.locator("#ops-benchmarks")).to_be_visible()
    expect(page.locator(f".ops-alert[data-state='open'][data-rule='{ALERT_RULE}']")).to_be_visible(
        timeout=UI_TIMEOUT_MS
    )
    pages.screenshot(page, "ops-1h", full_page=True)

    page.click("button[data-range='24h']")
    expect(page.locator("button[data-range='24h']")).to_have_attribute("aria-pressed", "true")
    pages.screenshot(page, "ops-24h", full_page=True)

    assert opened.watch.page_errors == []
    assert opened.watch.csp_violations == []
    assert [error for error in opened.watch.console_errors if "favicon" not in error] == []


def _group_keys(group: dict[str, object], keys: set[str]) -> list[str]:
    found = []
    for chart in group["charts"]:  # type: ignore[attr-defined]
        for series in chart["series"]:
            if series.endswith(".*"):
                found += [key for key in keys if key.startswith(series[:-1])]
            elif series in keys:
                found.append(series)
    return found
