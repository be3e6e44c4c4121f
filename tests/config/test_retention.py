"""The registry of retention rules: each app registers its own tables when it is ready, and any
app may add one (the cleanup itself is tested in tests/jobs/test_retention.py)."""

from __future__ import annotations

import pytest
from django.apps import apps

from config import retention


def test_each_app_registers_its_own_tables_when_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention, "RETENTION_RULES", {})
    for label in ("trading", "analytics", "jobs"):
        apps.get_app_config(label).ready()
    assert {label: rule.model for label, rule in retention.RETENTION_RULES.items()} == {
        "ticks": "trading.StockPriceHistory",
        "minute bars": "trading.MinuteBar",
        "daily bars": "trading.DailyBar",
        "frontend samples": "analytics.FrontendSample",
        "equity days": "analytics.AccountEquityDay",
        "monitor samples (10 s)": "analytics.MonitorSample",
        "monitor samples (60 s)": "analytics.MonitorSample",
        "monitor samples (600 s)": "analytics.MonitorSample",
        "job runs": "jobs.JobRun",
    }


def test_the_registry_is_open_for_other_apps() -> None:
    assert {"ticks", "minute bars", "daily bars", "job runs", "equity days"} <= set(retention.RETENTION_RULES)
    retention.retention_register(
        label="test samples", model="trading.Account", time_field="created_at", retention=lambda: None
    )
    try:
        assert retention.RETENTION_RULES["test samples"].model_class() is apps.get_model("trading", "Account")
    finally:
        del retention.RETENTION_RULES["test samples"]
