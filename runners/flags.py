"""Declarative mapping of fields to sd.cpp command-line flags, and the one builder that reads it.

A field is described once (`Flag`); `build_argv` turns a typed options struct (runners.options) into argv items,
reading each flag's field as an attribute (a property works too). The same table describes sd-cli's context and
generation options, which sd-server shares.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal

import msgspec

FlagKind = Literal["value", "switch", "inverse_switch", "repeat"]


class Flag(msgspec.Struct, frozen=True):
    field: str
    flag: str
    kind: FlagKind = "value"
    # Formats a value for the command line (lists, floats); str() by default.
    format: Callable[[Any], str] | None = None
    # A value for which the flag is left out so the binary applies its own default.
    omit_when: Callable[[Any], bool] | None = None


def bracketed_ints(values: Iterable[int]) -> str:
    """`--skip-layers` must be bracketed: "[7,8,9]"."""
    return "[" + ",".join(str(int(v)) for v in values) + "]"


def comma_floats(values: Iterable[float]) -> str:
    return ",".join(repr(float(v)) for v in values)


def negative(value: Any) -> bool:
    return value is not None and value < 0


def empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == ()


def build_argv(table: Iterable[Flag], source: msgspec.Struct) -> list[str]:
    """argv items for the flags of `table`, read from `source` (every field a flag names must exist: a unit test
    holds each table to its struct)."""
    argv: list[str] = []
    for spec in table:
        value = getattr(source, spec.field)
        if value is None or (spec.omit_when is not None and spec.omit_when(value)):
            continue
        render = spec.format or str
        if spec.kind == "value":
            argv += [spec.flag, render(value)]
        elif (spec.kind == "switch" and value is True) or (spec.kind == "inverse_switch" and value is False):
            argv.append(spec.flag)
        elif spec.kind == "repeat":
            for item in value:
                argv += [spec.flag, render(item)]
    return argv
