"""Django's PostgreSQL backend with a health check decided locally instead of by ``SELECT 1``.

With ``CONN_HEALTH_CHECKS`` Django asks ``is_usable()`` once per request, before the request's
first query on a reused connection (``close_if_unusable_or_obsolete`` at ``request_started``
clears ``health_check_done``; ``close_if_health_check_failed`` runs before the next cursor or
autocommit change), and again at a request's end when a database error occurred. Django's
PostgreSQL answer is a ``SELECT 1``: a round trip (client CPU, the server's, two context
switches) on every request, ~10% of a polled read's CPU.

An idle backend sends nothing unsolicited except when it goes away: a terminated backend
(``pg_terminate_backend``, a server restart or shutdown) writes its FATAL ErrorResponse and
closes, which makes the client's socket readable. So a connection that psycopg holds open, whose
libpq status is OK, that is idle (no transaction, no command in flight) and whose socket has
nothing to read is usable; readable, closed or any other state is not, and Django reconnects.
A transaction open at the check (Django never leaves one open between requests, but a caller may
run the request cycle inside one) keeps Django's ``SELECT 1``: closing it would lose the
transaction. What neither check sees in time is a peer that vanished without a word (a host
down, a cable cut): ``SELECT 1`` would wait for TCP's timeout there too.

A framework bypass (docs/architecture.md, Framework bypasses): it relies on Django calling
``is_usable`` as described, which ``tests/config/test_postgresql_backend.py`` checks, with a
terminated backend replaced before the next request answers and no statement sent by the check.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base
from psycopg import pq


def _socket_readable(fd: int) -> bool:
    """Whether the socket has something to read (data, EOF or an error), without waiting."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        connection = self.connection
        if connection is None:
            return False
        try:
            if connection.closed or connection.broken or connection.pgconn.status != pq.ConnStatus.OK:
                return False
            status = connection.pgconn.transaction_status
            if status == pq.TransactionStatus.INTRANS:
                return bool(super().is_usable())
            if status != pq.TransactionStatus.IDLE:
                return False
            return not _socket_readable(connection.pgconn.socket)
        except Exception:
            # Django asks that is_usable never raise: any doubt is an unusable connection.
            return False
