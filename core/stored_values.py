"""The narrow store a feature with a persisted setting or a remembered choice takes (the model and upscaler that
were loaded, the preview settings, the LLM settings). The store implementation (core/store) provides it; features
never import the store itself."""

from __future__ import annotations

from typing import Protocol, TypeVar

T = TypeVar("T")


class ValueStore(Protocol):
    async def value(self, key: str, type_: type[T]) -> T | None:
        """A persisted setting or state (None if never set)."""

    async def set_value(self, key: str, value: object | None) -> None:
        """Persist a value (None removes it)."""
