"""The rule for optional system tools (tests/tools.py): missing means skipped with the reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tools import OPTIONAL_TOOLS, require_tool


@pytest.mark.parametrize("name", sorted(OPTIONAL_TOOLS))
def test_a_missing_optional_tool_skips_with_how_to_install_it(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.skip.Exception, match=f"{name} is not installed") as skipped:
        require_tool(name)
    assert OPTIONAL_TOOLS[name] in str(skipped.value)


def test_a_present_optional_tool_gives_its_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "wrk"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}/nonexistent")
    assert require_tool("wrk") == str(fake)


def test_an_unlisted_tool_is_a_mistake_not_a_skip() -> None:
    # A required tool must never silently skip: only listed (optional) tools may.
    with pytest.raises(ValueError, match="not a known optional tool"):
        require_tool("gunicorn")
