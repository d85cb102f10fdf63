"""Building blocks of the request structs: the request base and constrained scalar types.

Static rules (types, ranges, enums) live in the structs as msgspec metadata, so decoding a body already checks
them, the error names the field, and the OpenAPI document shows them. Rules that depend on configuration
(size limits, the binary's sampler list, model folders) are checked by the feature that owns them.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, TypeVar
from urllib.parse import SplitResult, urlsplit

import msgspec
from msgspec import Meta

from core.errors import BadRequest

T = TypeVar("T")
FLOAT_MAX = 3.4028234663852886e38  # the largest C float: sd.cpp reads every number of ours as one (or as an int)
MAX_NESTING = 32  # no request of ours nests more than a few levels; JSON faces stop far deeper ones at parsing

INT_MAX = 2**31 - 1  # sd.cpp reads these as C ints
CInt = Annotated[int, Meta(ge=-INT_MAX - 1, le=INT_MAX)]
NonNegInt = Annotated[int, Meta(ge=0, le=INT_MAX)]
PosInt = Annotated[int, Meta(ge=1, le=INT_MAX)]
Unit = Annotated[float, Meta(ge=0.0, le=1.0)]
NonNegFloat = Annotated[float, Meta(ge=0.0)]
NonEmptyStr = Annotated[str, Meta(min_length=1)]
Base64Image = Annotated[str, Meta(description="base64 image, plain or as a data: URL")]
# Ours, not sd.cpp's: which pending job goes first (higher first; FIFO, shared fairly between API keys, within one).
Priority = Annotated[int, Meta(ge=-10, le=10, description="higher runs first; equal: fair between API keys, FIFO")]
# Ours: where the job's webhook goes when it ends (core/webhooks/; README "Webhooks").
CallbackUrl = Annotated[
    str,
    Meta(
        max_length=2048,
        description="http(s) URL POSTed, signed as Standard Webhooks, when the job ends (completed, failed or "
        "cancelled); the address rules of downloads apply, loopback allowed while the server listens on loopback",
    ),
]


class Request(msgspec.Struct, forbid_unknown_fields=False, omit_defaults=False):
    """Base of request bodies: unknown fields are ignored, as A1111 and ComfyUI clients expect."""


class SuccessMessage(msgspec.Struct):
    success: bool
    message: str


class ErrorBody(msgspec.Struct):
    """Every 4xx and 5xx: `{"error": "<field>: <rule>"}` or a sentence saying what went wrong."""

    error: str


_AT_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")


def describe_validation_error(exc: msgspec.ValidationError) -> str:
    """msgspec says "Expected `int` >= 1 - at `$.steps`"; clients get "steps: expected `int` >= 1"."""
    text = str(exc)
    match = _AT_PATH.search(text)
    if not match or not match["path"]:
        return f"invalid arguments: {text[: match.start()] if match else text}"
    return f"{match['path']}: {describe_rule(text[: match.start()])}"


def describe_rule(rule: str) -> str:
    """msgspec's "Expected `int | null`, got `str`" -> "expected `int`, got `str`": null is how an optional field
    says "the default", so the value the client sent had to be the other type."""
    rule = rule.replace(" | null`", "`")
    return rule[:1].lower() + rule[1:]


# ------------------------------------------------------------------------------- one validation path
# Every face (the REST and A1111 JSON bodies, query parameters, OpenAI's multipart form, MCP tool arguments,
# sd-server's embedded extra args) hands its decoded values to `check_values` and its request to `convert_request`, so what one face
# refuses every face refuses, with the same words.


def _label(path: str) -> str:
    return path or "request body"


def check_values(value: object, path: str = "") -> None:
    """Refuse what sd.cpp cannot take faithfully, wherever it sits in a decoded request: a NUL character in a
    string (sd.cpp takes C strings: it would cut a prompt or a path short), a number that is not finite (1e999,
    NaN) or beyond a C float (1e308: sd.cpp would fail or run something other than what config.json records),
    and nesting deeper than any request of ours. Walks iteratively (no RecursionError whatever the depth)."""
    stack: list[tuple[object, str, int]] = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise BadRequest(f"{_label(where)}: strings must not contain NUL characters (\\u0000)")
        elif isinstance(item, float):
            if not math.isfinite(item) or abs(item) > FLOAT_MAX:
                raise BadRequest(
                    f"{_label(where)}: must be a finite number within ±{FLOAT_MAX:.1e} (got {item}; sd.cpp reads C floats)"
                )
        elif isinstance(item, (dict, list, tuple, msgspec.Struct)):
            if depth >= MAX_NESTING:
                raise BadRequest(f"{_label(where)}: JSON nested too deeply (more than {MAX_NESTING} levels)")
            if isinstance(item, msgspec.Struct):
                item = {name: getattr(item, name) for name in item.__struct_fields__}
            if isinstance(item, dict):
                for key, child in item.items():
                    if isinstance(key, str) and "\x00" in key:
                        raise BadRequest(f"{_label(where)}: keys must not contain NUL characters (\\u0000)")
                    stack.append((child, f"{where}.{key}" if where else str(key), depth + 1))
            else:
                stack.extend((child, f"{where}[{index}]", depth + 1) for index, child in enumerate(item))


def check_json_numbers(text: str | bytes) -> None:
    """For JSON our parser refused: msgspec refuses 1e999 ("Number out of range") and NaN/Infinity (not JSON)
    without naming the field; Python's json module reads them as floats, so check_values names the field as it
    does on every other face. Returns when there is no such number (the parser's own error then stands)."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return
    check_values(value)


def convert_request(value: Any, type_: type[T], strict: bool = True) -> T:
    """`value` (decoded JSON, form fields, tool arguments) as the request struct `type_`, through the same checks
    as a JSON body: `check_values` on what was sent and on the result (a form's "inf" becomes a float only here),
    then msgspec's declared rules; a failure is a 400 naming the field and the rule."""
    check_values(value)
    try:
        result = msgspec.convert(value, type_, strict=strict)
    except msgspec.ValidationError as exc:
        raise BadRequest(describe_validation_error(exc)) from None
    check_values(result)
    return result


def check_http_url(url: str, field: str) -> SplitResult:
    """An http(s) URL with a host, parsed; anything a URL parser refuses (an unclosed IPv6 address, a port out of
    range, a space) is a 400 naming the field, never an exception from the HTTP client later."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # a port out of range raises here
    except ValueError as exc:
        raise BadRequest(f"{field} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise BadRequest(f"{field} must be an http(s) URL")
    if not parts.hostname:
        raise BadRequest(f"{field} is not a valid URL: it names no host")
    if any(char.isspace() or not char.isprintable() for char in url):
        raise BadRequest(f"{field} is not a valid URL: it contains spaces or control characters")
    return parts
