"""Building blocks of the request structs: the request base and constrained scalar types.

Static rules (types, ranges, enums) live in the structs as msgspec metadata, so decoding a body already checks
them, the error names the field, and the OpenAPI document shows them. Rules that depend on configuration
(size limits, the binary's sampler list, model folders) are checked by the feature that owns them.
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec
from msgspec import Meta

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
