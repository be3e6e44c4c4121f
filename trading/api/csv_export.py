"""CSV answers: the csv module's quoting, a header row, streamed, and text cells a spreadsheet will
not run as formulas.

A spreadsheet reads a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula (CSV or
formula injection, OWASP): a username such as ``-cmd|...`` or ``@SUM(...)`` would run on the
organiser's machine. Such a text cell gets a leading ``'``, which spreadsheets show as text. The
rows' numbers are written as numbers (a negative return stays ``-1.25``, not ``'-1.25``): they are
ours, not a user's, so only ``str`` cells, which carry what users typed, are neutralised.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal

from django.http import StreamingHttpResponse

CsvCell = str | int | Decimal | dt.datetime | None
FORMULA_PREFIXES = ("=", "+", "-", "@")


def csv_text_cell(value: str) -> str:
    """``value`` as a spreadsheet shows it as text: a leading ``'`` before a formula's first sign.
    Tab and carriage return start formulas in some spreadsheets too, so they count as well."""
    if value.startswith((*FORMULA_PREFIXES, "\t", "\r")):
        return f"'{value}"
    return value


def csv_cell(value: CsvCell) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return csv_text_cell(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


class _Echo:
    """A file whose write returns the line, so csv.writer yields lines instead of storing them."""

    def write(self, value: str) -> str:
        return value


def csv_lines(rows: Iterable[Iterable[CsvCell]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    for row in rows:
        yield writer.writerow([csv_cell(cell) for cell in row])


def csv_response(rows: Iterator[Sequence[CsvCell]], *, filename: str) -> StreamingHttpResponse:
    """The rows, header first, streamed as a CSV attachment. The header is taken before the answer
    starts, so a refusal or a bad request raised by the rows' first step is still an error answer."""
    header = next(rows)
    response = StreamingHttpResponse(csv_lines(_chain(header, rows)), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _chain(first: Sequence[CsvCell], rest: Iterator[Sequence[CsvCell]]) -> Iterator[Sequence[CsvCell]]:
    yield first
    yield from rest
