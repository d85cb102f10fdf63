"""Decode a JSON body into a schema struct; every failure is a 400 that names the field and the rule."""

from __future__ import annotations

import re
from typing import TypeVar

import anyio
import msgspec
from litestar import Request

from orchestrator.errors import BadRequest

T = TypeVar("T")
MAX_BODY_BYTES = 200 * 1024 * 1024  # base64 images make bodies large; this bounds memory per request
OFF_LOOP_BYTES = 1024 * 1024
_AT_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")


def describe_validation_error(exc: msgspec.ValidationError) -> str:
    """msgspec says "Expected `int` >= 1 - at `$.steps`"; clients get "steps: expected `int` >= 1"."""
    text = str(exc)
    match = _AT_PATH.search(text)
    if not match:
        return f"invalid request body: {text}"
    rule = text[: match.start()]
    rule = rule[0].lower() + rule[1:] if rule else rule
    path = match["path"] or "body"
    return f"{path}: {rule}"


async def decode_body(request: Request, type_: type[T], required: bool = True) -> T:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest(f"request body is larger than {MAX_BODY_BYTES} bytes")
    if not body.strip():
        if required:
            raise BadRequest("request body is required (JSON object)")
        body = b"{}"
    try:
        if len(body) > OFF_LOOP_BYTES:  # big base64 images: decode without holding the event loop
            return await anyio.to_thread.run_sync(lambda: msgspec.json.decode(body, type=type_))
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        raise BadRequest(describe_validation_error(exc)) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
