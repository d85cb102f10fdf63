"""Dependency wiring: handlers receive the Service instead of reaching into app state."""

from __future__ import annotations

from litestar.datastructures import State

from core.service import Service


def provide_service(state: State) -> Service:
    return state.service
