"""Benchmarks run by ``manage.py benchmark <name>``: each proves an optimisation against its naive
baseline in one run and prints the goal and whether it was met. A row that proves one of the
numbered properties names it ("P14" is Property 14 of docs/properties.md).

A benchmark is a module in this package, its name not starting with an underscore, defining

- ``HELP``: one line for ``benchmark --help``;
- ``add_arguments(parser)``: its own options (``--strict`` is added for every benchmark);
- ``run(options, log) -> Report``: ``options`` as parsed, ``log`` prints progress lines.

Adding ``stream.py``, ``api.py`` or ``dashboard.py`` here is all it takes to add a benchmark. The
app's other public modules (``apps``, ``processes``: the process helpers benchmarks and tests
share; ``models``, ``views``, ``urls``: the benchmark-only floor endpoints) define no ``run`` and
are not benchmarks.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def available() -> dict[str, ModuleType]:
    """The benchmark modules by name, in name order."""
    found: dict[str, ModuleType] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda module: module.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if callable(getattr(module, "run", None)) and callable(getattr(module, "add_arguments", None)):
            found[info.name] = module
    return found
