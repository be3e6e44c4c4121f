"""``--dist loadgroup`` keeps each ``xdist_group`` on one worker again under pytest 9.2.

pytest-xdist 3.8 tells its scheduler an item's group by appending ``@<group>`` to the item's node
id on the worker, by writing ``item._nodeid``. pytest 9.2 keeps node ids as a structured
``item._id`` and no longer reads ``_nodeid``, so the suffix is lost and every grouped test is
scheduled alone: the CPU-bound "load" and "stacks" tests then run beside each other, and a module
of browser tests starts its live stack once per worker (pytest-xdist issue #1386). This plugin
(loaded by the root conftest.py, so on every xdist worker) writes the suffix where pytest 9.2 reads
it; with an xdist that does so itself it finds the suffix there and changes nothing.
"""

from __future__ import annotations

import pytest
from _pytest.nodeid import NodeId


def xdist_group_suffix(item: pytest.Item) -> str:
    """``@<group>`` as pytest-xdist names an item's work unit (several groups joined by ``_``),
    or "" when the item has no ``xdist_group`` mark."""
    names = sorted(
        {
            str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
            for mark in item.iter_markers("xdist_group")
        }
    )
    return f"@{'_'.join(names)}" if names else ""


@pytest.hookimpl(trylast=True)  # after xdist's own attempt, so a working one is seen and kept
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Set by xdist on its workers only: the controller schedules the ids the workers send.
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        suffix = xdist_group_suffix(item)
        if suffix and not item.nodeid.endswith(suffix):
            item._id = NodeId.parse(f"{item.nodeid}{suffix}")
