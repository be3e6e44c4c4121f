"""What the snapshot tests share (tests/analytics/test_book_snapshot.py,
tests/trading/test_session_snapshot.py): an account reset committed by another connection, on its
own thread, at a chosen point of this connection's reads."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection, connections

from trading import services
from trading.models import Account


@contextmanager
def reset_after_account_selects(account: Account, *, count: int = 1) -> Iterator[None]:
    """``account`` reset by another connection right after this one's ``count``-th SELECT naming
    the account table; the reset is committed before that SELECT's caller goes on."""
    seen: list[bool] = []

    def reset() -> None:
        try:
            services.account_reset(account_id=account.pk)
        finally:
            connections.close_all()

    def wrapper(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        if sql.lstrip().upper().startswith("SELECT") and '"trading_account"' in sql:
            seen.append(True)
            if len(seen) == count:
                writer = threading.Thread(target=reset)
                writer.start()
                writer.join(timeout=30)
                assert not writer.is_alive()
        return result

    with connection.execute_wrapper(wrapper):
        yield
    assert len(seen) >= count, f"the read selected the account {len(seen)} times"
