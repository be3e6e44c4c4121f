"""Domain errors; the API turns each into Alpaca's ``{"code", "message"}`` shape with its status."""

from __future__ import annotations


class TradingError(Exception):
    status = 422

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(TradingError):
    status = 422


class Forbidden(TradingError):
    """Insufficient buying power or shares, shorting not allowed: Alpaca answers 403."""

    status = 403


class NotFound(TradingError):
    status = 404


class NotCancelable(TradingError):
    status = 422
