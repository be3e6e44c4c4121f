"""Test hooks, installed by tests/settings.py only: wrappers around app code that a test switches
on through a test setting, in its own process or (through TEST_SETTINGS_OVERRIDES) in a process it
starts. Production code carries none of them."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from django.apps import AppConfig
from django.conf import settings


class TestHooksConfig(AppConfig):
    name = "tests"
    label = "test_hooks"

    def ready(self) -> None:
        from jobs import services

        handler = services.JOB_HANDLERS[services.STATEMENT_JOB]
        prepare = handler.prepare

        def held_prepare(job: Any) -> Any:
            # After the claim, before any work: the run is RUNNING and unfinished while this sleeps.
            # A test setting: mypy reads the production settings, which do not define it.
            hold: float = settings.JOB_TEST_STATEMENT_HOLD_SECONDS  # type: ignore[misc]
            if hold:
                time.sleep(hold)
            return prepare(job)

        services.JOB_HANDLERS[services.STATEMENT_JOB] = dataclasses.replace(handler, prepare=held_prepare)
