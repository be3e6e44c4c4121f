"""Content negotiation for an API that answers JSON whatever the client accepts, as Alpaca's does.

DRF's default negotiation parses the Accept header and ``?format=`` on every request to choose
among a view's renderers, and answers 406 when none matches. The API views here have one renderer
(JSON), and the schema and docs views list theirs in order of preference, so choosing cost a tenth
of a cached read's time for an answer known in advance: the view's first renderer. Parsers are
still chosen by Content-Type, so a body that is not JSON is still refused with 415.
"""

from __future__ import annotations

from collections.abc import Iterable

from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request


class FirstRendererNegotiation(DefaultContentNegotiation):
    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type
