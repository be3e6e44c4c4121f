"""Requests through config.wsgi's application as gunicorn makes them: a WSGI environ, no test client."""

from __future__ import annotations

import io
import json
from typing import Any
from wsgiref.util import setup_testing_defaults

from django.core.signals import request_finished, request_started
from django.db import close_old_connections

from config.wsgi import application as default_application


class Answer:
    """A WSGI response: status code, headers (also as sent: ``header_list``) and the whole body."""

    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.status_code = int(status.split()[0])
        self.header_list = list(headers)
        self.headers = dict(headers)
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def wsgi_call(
    method: str,
    path: str,
    *,
    body: bytes = b"",
    content_type: str = "",
    headers: dict[str, str] | None = None,
    connection_signals: bool = False,
    query: str = "",
    application: Any = None,
) -> Answer:
    """``method path`` through config.wsgi's application, called as gunicorn calls it (a WSGI
    environ for host 127.0.0.1), inside the test's database transaction; with
    ``connection_signals`` (a transactional test only) the request signals also check and close
    the connection as in a worker (``close_old_connections``), health check included. ``query``
    is the query string; ``application`` another WSGI application than config.wsgi's."""
    application = application or default_application
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "HTTP_HOST": "127.0.0.1",
        "wsgi.input": io.BytesIO(body),
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": content_type,
    }
    for name, value in (headers or {}).items():
        environ[f"HTTP_{name.upper().replace('-', '_')}"] = value
    setup_testing_defaults(environ)
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        started.append((status, response_headers))

    # As Django's test client does: the test's transaction holds the connection that the
    # request signals would otherwise close.
    if not connection_signals:
        request_started.disconnect(close_old_connections)
        request_finished.disconnect(close_old_connections)
    try:
        chunks = application(environ, start_response)
        try:
            payload = b"".join(chunks)
        finally:
            getattr(chunks, "close", lambda: None)()
    finally:
        if not connection_signals:
            request_started.connect(close_old_connections)
            request_finished.connect(close_old_connections)
    return Answer(started[0][0], started[0][1], payload)
