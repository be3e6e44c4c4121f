"""The root conftest's policy: a test that starts a server must be marked live, so that
`make test-fast` (-m "not live") never starts one."""

from __future__ import annotations

import subprocess

import pytest

from tests.processes import VENV_BIN


@pytest.mark.parametrize(
    "argv",
    [
        [str(VENV_BIN / "gunicorn"), "--version"],
        [str(VENV_BIN / "daphne"), "--help"],
        [str(VENV_BIN / "python"), "manage.py", "run_market", "--help"],
        ["redis-server", "--port", "0", "--bind", "127.0.0.1"],
    ],
)
def test_an_unmarked_test_cannot_start_a_server(argv: list[str]) -> None:
    with pytest.raises(RuntimeError, match=r"mark it @pytest\.mark\.live"):
        subprocess.run(argv, capture_output=True, timeout=60)


def test_an_unmarked_test_may_run_a_plain_process() -> None:
    done = subprocess.run([str(VENV_BIN / "python"), "-c", "print('ok')"], capture_output=True, timeout=60)
    assert done.stdout.strip() == b"ok"
