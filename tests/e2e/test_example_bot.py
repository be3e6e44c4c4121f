"""The example bot (`examples/momentum_bot.py`) against `make run`, as its README section tells a
bot author to run it: the Procfile's processes on a throwaway VAR_DIR, the demo key seed_demo
wrote, and the bot as its own process with only alpaca-py between it and the server."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request

import pytest

from tests.processes import ROOT, VENV_BIN, ProcfileStack, procfile_stack
from trading.management.commands.seed_demo import CREDENTIALS_FILENAME, read_logins

# The whole stack plus the bot: kept with the other CPU-bound tests on one xdist worker.
pytestmark = [
    pytest.mark.live,
    pytest.mark.slow,
    pytest.mark.xdist_group("stacks"),  # make test runs chromium and whole-stack runs one at a time
]

BOT = ROOT / "examples" / "momentum_bot.py"
SYMBOLS = 10
READY_S = 120.0
BOT_TIMEOUT_S = 180


def until_trading(stack: ProcfileStack) -> None:
    """The stack answers HTTP and the market has ticked every seeded symbol past the one tick
    seed_demo wrote for it, so each has a live quote to trade at."""
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        if stack.manager.poll() is not None:
            pytest.fail(f"make run exited:\n{stack.log()}")
        ticked = stack.query(
            "SELECT COUNT(*) FROM (SELECT symbol FROM trading_stockpricehistory GROUP BY symbol HAVING COUNT(*) > 1)"
        )
        if ticked == SYMBOLS and answers(f"{stack.base_url}/healthz"):
            return
        time.sleep(0.5)
    pytest.fail(f"the stack was not trading every symbol within {READY_S:.0f} s:\n{stack.log()}")


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_the_example_bot_trades_notional_bracket_and_short_then_leaves_the_account_flat() -> None:
    with procfile_stack(symbols=SYMBOLS) as stack:
        until_trading(stack)
        demo = next(login for login in read_logins(stack.var_dir / CREDENTIALS_FILENAME) if login.api_key_id)
        symbols = stack.query(
            "SELECT GROUP_CONCAT(symbol) FROM (SELECT symbol FROM trading_asset ORDER BY symbol)"
        )
        env = {
            **{name: value for name, value in os.environ.items() if not name.startswith(("APCA_", "SIM_"))},
            "APCA_API_KEY_ID": demo.api_key_id,
            "APCA_API_SECRET_KEY": demo.api_secret,
            "SIM_BASE_URL": stack.base_url,
        }
        run = subprocess.run(
            [str(VENV_BIN / "python"), str(BOT), "--once", "--symbols", symbols],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=BOT_TIMEOUT_S,
        )  # fmt: skip
        output = run.stdout + run.stderr
        assert run.returncode == 0, f"{output}\n{stack.log()}"

        assert "notional buy:" in output and "bracket:" in output and "short:" in output, output
        assert "flat: no open orders, no positions" in output, output
        # What the bot did, read back from the server's own database.
        notional = stack.query(
            "SELECT COUNT(*) FROM trading_order WHERE notional_cents IS NOT NULL AND status = 'filled'"
        )
        assert notional == 1, output
        fractional = stack.query("SELECT COUNT(*) FROM trading_fill WHERE qty % 1000000000 != 0")
        assert fractional >= 1, output  # the notional buy (and the close of its fraction)
        brackets = stack.query(
            "SELECT COUNT(*) FROM trading_order WHERE order_class = 'bracket' AND parent_id IS NULL"
        )
        legs = stack.query("SELECT COUNT(*) FROM trading_order WHERE parent_id IS NOT NULL")
        assert (brackets, legs) == (1, 2), output
        assert stack.query("SELECT COUNT(*) FROM trading_position WHERE qty != 0") == 0, output
