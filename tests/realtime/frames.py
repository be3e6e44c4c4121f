"""Stream frames as a client reads them."""

from __future__ import annotations

import json
from typing import Any

import msgpack


def decode(frame: str | bytes) -> Any:
    """A text frame's JSON, or a binary frame's msgpack with timestamps as ``msgpack.Timestamp``."""
    return msgpack.unpackb(frame, timestamp=3) if isinstance(frame, bytes) else json.loads(frame)
