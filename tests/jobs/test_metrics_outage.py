"""During a database outage the collect-time sources that read it (the outbox's size, the job runs
by status) log their first failure with its traceback, then one line per source and collection
until they read again, which is logged once; the next outage starts over with a traceback.

The outage is real: the default connection is pointed at a database that cannot be opened (a
missing directory on SQLite, a closed port on PostgreSQL).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from django.db import connections

from config.metrics import metrics_snapshot, snapshot_value
from jobs.models import OutboxEntry
from tests.processes import free_port

pytestmark = [pytest.mark.db_backend, pytest.mark.django_db(transaction=True)]

SOURCES = ("job_outbox_size", "job_runs")


@pytest.fixture
def database_outage() -> Iterator[None]:
    metrics_snapshot()  # every source reads first (a source's failing state outlives a test)
    connection = connections["default"]
    original = dict(connection.settings_dict)
    connection.close()
    if connection.vendor == "sqlite":
        connection.settings_dict["NAME"] = "/nonexistent-directory/db.sqlite3"
    else:
        connection.settings_dict.update(HOST="127.0.0.1", PORT=str(free_port()))
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.update(original)


def _records(caplog: pytest.LogCaptureFixture, source: str) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == "config.metrics" and f"collect-time source {source} " in record.getMessage()
    ]


def test_an_outage_logs_one_traceback_then_one_line_per_collection(
    database_outage: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="config.metrics")
    caplog.clear()
    for _ in range(3):
        samples = metrics_snapshot()
        assert snapshot_value(samples, "job_outbox_size") is None  # skipped, the scrape goes on
    for source in SOURCES:
        first, *later = _records(caplog, source)
        assert first.exc_info is not None and first.getMessage().endswith("failed"), first.getMessage()
        assert len(later) == 2, [record.getMessage() for record in later]
        for record in later:
            assert record.exc_info is None and "\n" not in record.getMessage()
            assert f"collect-time source {source} still failing: OperationalError" in record.getMessage()


def test_a_source_that_reads_again_says_so_once_and_a_new_outage_logs_a_traceback_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="config.metrics")
    connection = connections["default"]
    original = dict(connection.settings_dict)

    def outage() -> None:
        connection.close()
        if connection.vendor == "sqlite":
            connection.settings_dict["NAME"] = "/nonexistent-directory/db.sqlite3"
        else:
            connection.settings_dict.update(HOST="127.0.0.1", PORT=str(free_port()))

    def recover() -> None:
        connection.close()
        connection.settings_dict.update(original)

    metrics_snapshot()  # every source reads first (a source's failing state outlives a test)
    caplog.clear()
    try:
        outage()
        metrics_snapshot()
        metrics_snapshot()
        recover()
        OutboxEntry.objects.create(task_name="jobs.job_runs_recover", args=[], kwargs={})
        assert snapshot_value(metrics_snapshot(), "job_outbox_size") == 1
        metrics_snapshot()  # still reading: nothing more is logged
        outage()
        metrics_snapshot()
    finally:
        recover()
    for source in SOURCES:
        messages = [(record.getMessage().split(f"{source} ", 1)[1], record.exc_info is not None)
                    for record in _records(caplog, source)]  # fmt: skip
        assert [(text.split(":")[0], traced) for text, traced in messages] == [
            ("failed", True),
            ("still failing", False),
            ("reads again", False),
            ("failed", True),
        ], messages
