"""The API's one body parser: DRF's JSON parser with a bound on nesting.

JSON nested about a thousand deep makes Python's decoder raise RecursionError, which DRF's parser
does not catch (a 500); and a body nested less deeply still could exhaust the stack later, in a
serializer or in rendering an error that echoes it. No Alpaca request nests deeper than an
order's ``take_profit`` object, so anything deeper than MAX_JSON_DEPTH is refused as malformed
(400). The body's size is bounded before it is read, by Django's DATA_UPLOAD_MAX_MEMORY_SIZE
(413, see trading/api/errors.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_JSON_DEPTH = 32


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists and objects more than ``limit`` deep (walked without recursion)."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


class BoundedJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON nested more than {MAX_JSON_DEPTH} levels deep") from None
        if json_depth_exceeds(data, MAX_JSON_DEPTH):
            raise ParseError(f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
        return data
