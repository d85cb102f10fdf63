"""Map every exception to a JSON `{"error": ...}` body; never a traceback to the client."""

from __future__ import annotations

import logging

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from orchestrator.errors import ServiceError

log = logging.getLogger("sdcpp_restapi")


def service_error(_: Request, exc: ServiceError) -> Response:
    return Response({"error": exc.message}, status_code=exc.status)


def http_error(_: Request, exc: HTTPException) -> Response:
    message = exc.detail
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list) and exc.extra:
        # Query and path parameters: "sort: Invalid enum value 'bogus'"
        message = "; ".join(f"{item.get('key', 'parameter')}: {item.get('message', 'invalid value')}"
                            for item in exc.extra if isinstance(item, dict)) or message
    return Response({"error": message}, status_code=exc.status_code, headers=exc.headers)


def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return Response({"error": f"Internal error: {type(exc).__name__}"}, status_code=500)


EXCEPTION_HANDLERS = {ServiceError: service_error, HTTPException: http_error, Exception: unexpected_error}
