"""realtime/transport.py, the one module that reaches into daphne, autobahn and Twisted."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from realtime import transport

# --- Outside daphne -----------------------------------------------------------------------------------


def test_a_lean_queue_keeps_asyncio_queue_order_wakeups_and_cancellation() -> None:
    async def body() -> None:
        queue: asyncio.Queue[int] = asyncio.Queue()
        queue.put_nowait(1)
        assert transport.lean_queue(queue)
        queue.put_nowait(2)
        assert [await queue.get(), await queue.get()] == [1, 2]

        # A waiting get is woken by a put, as daphne's put_nowait wakes the consumer's receive.
        waiting = asyncio.ensure_future(queue.get())
        await asyncio.sleep(0)
        queue.put_nowait(3)
        assert await asyncio.wait_for(waiting, 1) == 3

        # A cancelled get (a consumer torn down while idle) leaves no waiter behind: the next
        # item goes to the next get, not to the cancelled one.
        abandoned = asyncio.ensure_future(queue.get())
        await asyncio.sleep(0)
        abandoned.cancel()
        await asyncio.gather(abandoned, return_exceptions=True)
        queue.put_nowait(4)
        queue.put_nowait(5)
        assert [await queue.get(), await queue.get()] == [4, 5]
        assert queue.empty()

    asyncio.run(body())


def test_only_unbounded_asyncio_queues_and_daphne_sockets_are_touched() -> None:
    async def not_daphne(message: dict[str, Any]) -> None:
        pass

    assert not transport.lean_queue(asyncio.Queue(maxsize=1))
    assert not transport.lean_queue(None)
    # Any other server's send (or Channels' test communicator's): no socket, nothing to release.
    for send in (not_daphne, functools.partial(not_daphne), functools.partial(not_daphne, {"type": "x"})):
        assert transport.daphne_socket(send) is None
        assert not transport.release_handshake(send)
        assert not transport.deny_handshake(send, 404, "Not Found")
