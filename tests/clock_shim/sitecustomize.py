"""Imported at start-up by every Python process the tests start under ``TEST_FROZEN_NOW``.

The root conftest.py puts this directory on PYTHONPATH and the offset between the frozen and
the real clock in TEST_CLOCK_OFFSET_S; this process's wall clock moves by the same offset (and
keeps ticking), so servers, workers and the market agree with the tests on the time of day.
Monotonic clocks, Redis and the database server keep the real time; only durations cross them.
"""

from __future__ import annotations

import os

_offset = os.environ.get("TEST_CLOCK_OFFSET_S")
if _offset:
    import time

    import time_machine

    time_machine.travel(time.time() + float(_offset), tick=True).start()
    time.time()  # a ticking travel counts from its first reading: take it now
