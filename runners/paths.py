"""Where the project keeps its per-user data (backends, default models and outputs)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "sdcpp-restapi"


def data_dir() -> Path:
    """The platformdirs user data folder; SDCPP_RESTAPI_DATA_DIR overrides it (tests, containers)."""
    override = os.environ.get("SDCPP_RESTAPI_DATA_DIR")
    return Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def backend_dir(name: str) -> Path:
    return data_dir() / "backends" / name
