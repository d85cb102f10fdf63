"""Errors the service reports to clients; the HTTP layer maps `status` to the response code."""

from __future__ import annotations


class ServiceError(Exception):
    status = 500

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(ServiceError):
    status = 400


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class TooManyRequests(ServiceError):
    status = 429


class StoreUnreachable(ServiceError):
    """The store's database server does not answer (PostgreSQL down or cut off): try again shortly."""

    status = 503
