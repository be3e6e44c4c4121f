"""Which of this process's sockets hold which credentials, and closing them when one is revoked.

Revoked credentials (trading/events.py: a key revoked, a user deactivated or deleted, a password
changed, a logout) arrive on the fan-out's subscription. Each authenticated socket is held under
the credentials it showed (``hold``), and a revocation closes the sockets holding any of them at
once, after the protocol's error message (``credentials_revoked`` on each consumer).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable, Iterable
from typing import Protocol

logger = logging.getLogger(__name__)

# How long a revocation is remembered: a credential check that started before it arrived and
# finishes after it (a key read from the database just before the revoke committed) is refused.
# Far above any check's duration; entries are dropped on the next revocation after it.
REVOKED_MEMORY_S = 30.0


class CredentialHolder(Protocol):
    """An authenticated socket: told when a credential it authenticated with is revoked."""

    async def credentials_revoked(self) -> None: ...


class Revocations:
    """The sockets held under each credential (trading.events' names) and the recent revocations."""

    def __init__(self, *, clock: Callable[[], float]) -> None:
        self.clock = clock
        # Credential -> the sockets authenticated with it.
        self.holders: dict[str, dict[CredentialHolder, None]] = {}
        # Credential -> when its revocation arrived (``clock``), for REVOKED_MEMORY_S.
        self.revoked: dict[str, float] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def hold(self, credentials: Iterable[str], holder: CredentialHolder, *, checked_at: float) -> bool:
        """Register ``holder`` under its credentials; False, registering nothing, if one of them
        was revoked after ``checked_at`` (``clock`` when its check started): that check may have
        read the credential before the revocation committed."""
        credentials = tuple(credentials)
        if any(self.revoked.get(credential, -math.inf) >= checked_at for credential in credentials):
            return False
        for credential in credentials:
            self.holders.setdefault(credential, {})[holder] = None
        return True

    def release(self, credentials: Iterable[str], holder: CredentialHolder) -> None:
        for credential in credentials:
            holders = self.holders.get(credential)
            if holders is not None:
                holders.pop(holder, None)
                if not holders:
                    del self.holders[credential]

    def revoke(self, payload: bytes | str) -> int | None:
        """A revocation message (trading.events): close every socket holding a credential in it.
        The number of sockets closed; None for a malformed message, which is ignored."""
        try:
            credentials = [str(credential) for credential in json.loads(payload)["revoke"]]
        except (ValueError, KeyError, TypeError):
            logger.warning("malformed stream revocation ignored: %r", payload[:200])
            return None
        now = self.clock()
        self.revoked = {c: at for c, at in self.revoked.items() if now - at < REVOKED_MEMORY_S}
        revoked: dict[CredentialHolder, None] = {}
        for credential in credentials:
            self.revoked[credential] = now
            revoked.update(self.holders.pop(credential, {}))
        for holder in revoked:
            task = asyncio.create_task(self._close(holder))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        return len(revoked)

    async def _close(self, holder: CredentialHolder) -> None:
        try:
            await holder.credentials_revoked()
        except Exception:
            logger.exception("a socket whose credentials were revoked could not be closed cleanly")
