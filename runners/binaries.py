"""Find the sd.cpp binaries a backend points at, or say clearly how to get them."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec


class Binaries(msgspec.Struct, frozen=True):
    backend: str
    sd_cli: Path
    sd_server: Path
    worker: Path | None = None  # our resident worker, when the backend folder has one (a plain sd.cpp release has not)


class BinaryNotFound(RuntimeError):
    pass


def _check(path: Path, role: str, backend: str) -> Path:
    if not path.is_file():
        raise BinaryNotFound(
            f"{role} binary not found at {path}.\n"
            f"Build the '{backend}' backend with `sdcpp-restapi build-backend {backend}` (`bin/build-backend {backend}` "
            "or `just backend` in a checkout), "
            f"or point the config at an existing binary with --{role} PATH, "
            f"SDCPP_RESTAPI_{role.upper().replace('-', '_')} or [backends.{backend}] in the TOML config."
        )
    if not os.access(path, os.X_OK):
        raise BinaryNotFound(f"{role} at {path} is not executable (chmod +x it)")
    return path


def locate_binaries(backend: str, sd_cli: str, sd_server: str, worker: str = "") -> Binaries:
    """`worker` is optional: "" or a missing file means none (sd-server and sd-cli do the work, as before)."""
    worker_path = Path(worker).expanduser() if worker else None
    return Binaries(
        backend=backend,
        sd_cli=_check(Path(sd_cli).expanduser(), "sd-cli", backend),
        sd_server=_check(Path(sd_server).expanduser(), "sd-server", backend),
        worker=_check(worker_path, "sd-worker", backend) if worker_path and worker_path.is_file() else None,
    )
