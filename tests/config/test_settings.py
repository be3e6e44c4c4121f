"""config/settings.py: the README lists every environment variable the code reads (and only those),
every Redis key and channel name derives from REDIS_KEY_PREFIX with today's defaults, and the
test settings hand the processes a test starts the same names and the test's overrides."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from django.conf import settings
from pytest_django.fixtures import Settings

from benchmarks.processes import REDIS_NAME_SETTINGS, redis_names
from tests.processes import ROOT, VENV_BIN, process_env

# --- The README's tables against the code ---------------------------------------------------------

# Directories with no code of the project's own, and the tests (whose helpers copy the environment
# for the processes they start), and the example bots, which are clients configured as Alpaca's SDK
# is (README, An example bot), not the server; the test settings and the clock shim are read by
# the tests' processes, so they count.
SKIPPED_DIRECTORIES = {
    ".git",
    ".venv",
    "node_modules",
    "var",
    "staticfiles",
    "tests",
    "examples",
    "__pycache__",
}
COUNTED_TEST_MODULES = [ROOT / "tests" / "settings.py", ROOT / "tests" / "clock_shim" / "sitecustomize.py"]
# django-environ's readers: env.str("NAME", ...), env.int(...), env.db(...) and so on.
ENV_READERS = {"str", "bool", "int", "float", "list", "tuple", "dict", "json", "url", "db", "db_url", "path"}
NAME = re.compile(r"[A-Z][A-Z0-9_]*")


def _python_modules() -> Iterator[Path]:
    for directory, subdirectories, files in os.walk(ROOT):
        subdirectories[:] = [name for name in subdirectories if name not in SKIPPED_DIRECTORIES]
        yield from (Path(directory) / name for name in files if name.endswith(".py"))
    yield from COUNTED_TEST_MODULES


def _is_os_environ(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "environ"
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    )


def _read_name(node: ast.AST) -> ast.expr | None:
    """The expression naming the variable, if ``node`` reads one from the environment."""
    if isinstance(node, ast.Call) and node.args:
        func = node.func
        if isinstance(func, ast.Name) and func.id == "env":
            return node.args[0]
        if isinstance(func, ast.Attribute):
            if isinstance(func.value, ast.Name) and func.value.id == "env" and func.attr in ENV_READERS:
                return node.args[0]
            if _is_os_environ(func.value) and func.attr in {"get", "setdefault", "pop"}:
                return node.args[0]
            if func.attr == "getenv" and isinstance(func.value, ast.Name) and func.value.id == "os":
                return node.args[0]
    if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and _is_os_environ(node.value):
        return node.slice
    if (
        isinstance(node, ast.Compare)
        and len(node.ops) == 1
        and isinstance(node.ops[0], ast.In | ast.NotIn)
        and _is_os_environ(node.comparators[0])
    ):
        return node.left
    return None


def python_reads() -> tuple[set[str], list[str]]:
    """Every variable a module reads by a literal name, and the reads whose name is not one."""
    names: set[str] = set()
    unnamed: list[str] = []
    for path in _python_modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            name = _read_name(node)
            if name is None:
                continue
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                names.add(name.value)
            else:
                unnamed.append(f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}")
    return names, unnamed


def makefile_and_procfile_reads() -> set[str]:
    """Variables the Makefile takes from the environment (``NAME ?=``, ``$${NAME...}`` in a recipe,
    ``os.environ.get('NAME'...)`` in an inline script) and the Procfile's ``${NAME...}``."""
    makefile, procfile = (
        "\n".join(line for line in (ROOT / name).read_text().splitlines() if not line.startswith("#"))
        for name in ("Makefile", "Procfile")
    )
    return {
        *re.findall(r"^([A-Z][A-Z0-9_]*) \?=", makefile, re.MULTILINE),
        *re.findall(r"\$\$\{([A-Z][A-Z0-9_]*)", makefile),
        *re.findall(r"os\.environ\.get\('([A-Z][A-Z0-9_]*)'", makefile),
        *re.findall(r"\$\{([A-Z][A-Z0-9_]*)", procfile),
    }


def readme_rows() -> set[str]:
    """The variables named in the first cell of every table row of the README's Configuration."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            names.update(cell for cell in re.findall(r"`([^`]+)`", first_cell) if NAME.fullmatch(cell))
    return names


def test_the_readme_lists_every_environment_variable_the_code_reads_and_no_other() -> None:
    python, unnamed = python_reads()
    assert unnamed == [], "read environment variables by a literal name, so this test can see them"
    read = python | makefile_and_procfile_reads()
    documented = readme_rows()
    assert {"SECRET_KEY", "REDIS_KEY_PREFIX", "STREAM_MAX_SYMBOLS"} <= read  # the scan finds settings' reads
    assert sorted(read - documented) == [], "read by the code, missing from the README's tables"
    assert sorted(documented - read) == [], "in the README's tables, read by no code"


def test_the_scan_sees_every_way_of_reading_the_environment(tmp_path: Path) -> None:
    module = """
import os
a = env.str("A", default="")
b = env("B")
c = os.environ.get("C")
d = os.environ["D"]
e = os.getenv("E")
f = "F" in os.environ
os.environ["G"] = "written, not read"
h = os.environ.get(name)
"""
    reads = [_read_name(node) for node in ast.walk(ast.parse(module))]
    named = {n.value for n in reads if isinstance(n, ast.Constant)}
    assert named == {"A", "B", "C", "D", "E", "F"}
    assert sum(1 for n in reads if n is not None and not isinstance(n, ast.Constant)) == 1


# --- Redis names from one prefix ------------------------------------------------------------------

DUMP_SETTINGS = """
import importlib, json, sys
module = importlib.import_module(sys.argv[1])
print(json.dumps({name: repr(getattr(module, name)) for name in dir(module) if name.isupper()}))
"""
TODAYS_NAMES = {
    "LATEST_QUOTES_KEY": "sim:quotes:latest",
    "ORDER_EVENTS_CHANNEL": "sim:orders:events",
    "MARKET_WINDOWS_CHANNEL": "sim:market:windows",
    "CACHE_INVALIDATION_CHANNEL": "sim:cache:invalidate",
    "LEADERBOARD_EVENTS_CHANNEL": "sim:leaderboard:events",
    "STREAM_REVOCATIONS_CHANNEL": "sim:ws:revocations",
    "RATE_LIMIT_KEY_PREFIX": "sim:rl",
    "STREAM_REDIS_PREFIX": "sim:ws",
    "STREAM_REDIS_CLIENT_NAME": "sim-ws",
}
RETIRED = (*REDIS_NAME_SETTINGS, "CACHE_KEY_PREFIX", "CHANNELS_PREFIX")


def settings_in_a_process(
    tmp_path: Path, module: str = "config.settings", **variables: str
) -> dict[str, Any]:
    """Every setting of ``module`` loaded in a fresh process (as its repr) under an environment
    cleared of the Redis name variables, with ``variables`` on top; or the error it exits with."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"REDIS_KEY_PREFIX", "TEST_SETTINGS_OVERRIDES", *RETIRED}
    }
    env.update(VAR_DIR=str(tmp_path), **variables)
    done = subprocess.run(
        [str(VENV_BIN / "python"), "-c", DUMP_SETTINGS, module],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1]}
    return dict(json.loads(done.stdout))


def _values(dumped: dict[str, str], names: tuple[str, ...]) -> SimpleNamespace:
    return SimpleNamespace(**{name: eval(dumped[name]) for name in names})


def test_every_redis_name_derives_from_the_one_prefix_and_keeps_todays_default(tmp_path: Path) -> None:
    derived = ("REDIS_KEY_PREFIX", *REDIS_NAME_SETTINGS, "CACHES", "CHANNEL_LAYERS")
    default = settings_in_a_process(tmp_path)
    other = settings_in_a_process(tmp_path, REDIS_KEY_PREFIX="deploy2")

    assert {name: eval(default[name]) for name in TODAYS_NAMES} == TODAYS_NAMES
    assert eval(default["CACHES"])["default"]["KEY_PREFIX"] == "sim"
    assert eval(default["CHANNEL_LAYERS"])["default"]["CONFIG"]["prefix"] == "sim:ch"
    # The prefix changes exactly the names, and each as the tests' and benchmarks' helper says.
    assert {name for name in default if default[name] != other[name]} == set(derived)
    expected = redis_names("deploy2", base=_values(default, derived))
    assert {name: eval(other[name]) for name in derived} == expected
    assert all(value.startswith("deploy2") for value in (expected[name] for name in REDIS_NAME_SETTINGS))


def test_a_retired_redis_name_variable_stops_the_start_unless_it_names_the_same_key(tmp_path: Path) -> None:
    refused = settings_in_a_process(tmp_path, CACHE_KEY_PREFIX="deploy2")
    assert "ImproperlyConfigured" in refused["error"] and "CACHE_KEY_PREFIX='deploy2'" in refused["error"]
    refused = settings_in_a_process(tmp_path, REDIS_KEY_PREFIX="a", LATEST_QUOTES_KEY="b:quotes:latest")
    assert "REDIS_KEY_PREFIX" in refused["error"] and "LATEST_QUOTES_KEY" in refused["error"]

    same = settings_in_a_process(tmp_path, LATEST_QUOTES_KEY="sim:quotes:latest", CHANNELS_PREFIX="sim:ch")
    assert "error" not in same
    moved = settings_in_a_process(tmp_path, REDIS_KEY_PREFIX="b", LATEST_QUOTES_KEY="b:quotes:latest")
    assert eval(moved["LATEST_QUOTES_KEY"]) == "b:quotes:latest"


@pytest.mark.parametrize("prefix", ["", "a b", "sim*", "x[1]"])
def test_a_prefix_that_would_be_a_key_pattern_is_refused(tmp_path: Path, prefix: str) -> None:
    assert "REDIS_KEY_PREFIX" in settings_in_a_process(tmp_path, REDIS_KEY_PREFIX=prefix)["error"]


# --- The test settings ----------------------------------------------------------------------------

READ_NAMES = f"""
import json, django
django.setup()
from django.conf import settings
names = {("REDIS_KEY_PREFIX", *REDIS_NAME_SETTINGS, "CACHES", "CHANNEL_LAYERS")!r}
print(json.dumps({{name: getattr(settings, name) for name in names}}))
"""


def in_started_process(code: str, env: dict[str, str]) -> Any:
    done = subprocess.run(
        [str(VENV_BIN / "python"), "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_this_run_has_a_prefix_of_its_own_and_started_processes_share_it() -> None:
    assert settings.REDIS_KEY_PREFIX == f"test{os.getpid()}" == os.environ["REDIS_KEY_PREFIX"]
    started = in_started_process(READ_NAMES, process_env())
    assert started == json.loads(json.dumps(redis_names(settings.REDIS_KEY_PREFIX)))


def test_a_tests_own_prefix_reaches_the_processes_it_starts(stream_settings: Settings) -> None:
    assert stream_settings.REDIS_KEY_PREFIX.startswith(f"test{os.getpid()}:")
    assert f"{stream_settings.REDIS_KEY_PREFIX}:market:windows" == settings.MARKET_WINDOWS_CHANNEL
    started = in_started_process(READ_NAMES, process_env())
    assert started["MARKET_WINDOWS_CHANNEL"] == settings.MARKET_WINDOWS_CHANNEL
    assert started["CACHES"]["default"]["KEY_PREFIX"] == stream_settings.REDIS_KEY_PREFIX


def test_overrides_reach_a_started_process_and_merge_into_dicts() -> None:
    code = """
import json, django
django.setup()
from django.conf import settings
print(json.dumps([settings.STREAM_AUTH_TIMEOUT_S, settings.CELERY_BROKER_TRANSPORT_OPTIONS,
                  settings.JOB_TEST_STATEMENT_HOLD_SECONDS]))
"""
    overrides = {
        "STREAM_AUTH_TIMEOUT_S": 1,
        "CELERY_BROKER_TRANSPORT_OPTIONS": {"visibility_timeout": 3},
        "JOB_TEST_STATEMENT_HOLD_SECONDS": 0.5,
    }
    timeout, transport, hold = in_started_process(code, process_env(overrides=overrides))
    assert timeout == 1 and hold == 0.5
    assert transport == {**settings.CELERY_BROKER_TRANSPORT_OPTIONS, "visibility_timeout": 3}


def test_an_override_of_no_setting_is_refused() -> None:
    env = process_env(overrides={"STREAM_AUTH_TIMEOUT": 1})
    done = subprocess.run(
        [str(VENV_BIN / "python"), "-c", "import django; django.setup()"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert (
        done.returncode != 0
        and "TEST_SETTINGS_OVERRIDES names no setting: 'STREAM_AUTH_TIMEOUT'" in done.stderr
    )
