"""Map every exception to a JSON `{"error": ...}` body naming the field and the rule; never a traceback."""

from __future__ import annotations

import logging

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap

from core.errors import ServiceError
from core.request_types import describe_rule

log = logging.getLogger("sdcpp_restapi")


def _field_message(item: object) -> str:
    """Litestar's {"key": "steps", "message": "Expected `int` >= 1"} -> "steps: expected `int` >= 1"."""
    if not isinstance(item, dict):
        return "invalid value"
    key = str(item.get("key") or "body")
    message = str(item.get("message") or "invalid value")
    if key == "data":  # the body as a whole
        if "`data`" in message or message == "'data'":  # no body at all
            return "request body is required (JSON object)"
        return f"invalid request body: {message}"
    return f"{key}: {describe_rule(message)}"


def service_error(_: Request, exc: ServiceError) -> Response:
    return Response({"error": exc.message}, status_code=exc.status, headers=exc.headers)


def http_message(exc: HTTPException) -> str:
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list) and exc.extra:
        return "; ".join(_field_message(item) for item in exc.extra) or exc.detail
    return exc.detail


def http_error(_: Request, exc: HTTPException) -> Response:
    return Response({"error": http_message(exc)}, status_code=exc.status_code, headers=exc.headers)


def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return Response({"error": f"Internal error: {type(exc).__name__}"}, status_code=500)


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    ServiceError: service_error,
    HTTPException: http_error,
    Exception: unexpected_error,
}
