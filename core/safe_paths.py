"""Resolve client-supplied names strictly inside a folder: no `..`, no absolute paths, no symlink escapes."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from core.errors import BadRequest

MAX_NAME_BYTES = 255  # NAME_MAX of Linux and macOS file systems: one file or folder name
MAX_PATH_BYTES = 1024  # well inside PATH_MAX (4096) once joined to a models or output root


def check_relative(name: str, field: str) -> PurePosixPath:
    """The name as a clean relative path, or BadRequest naming the field and the rule it broke."""
    if not name:
        raise BadRequest(f"{field} must not be empty")
    if "\x00" in name:
        raise BadRequest(f"{field} must not contain NUL characters")
    if "\\" in name:
        raise BadRequest(f"{field} must use '/' as separator, not '\\'")
    if name.startswith("/") or PureWindowsPath(name).drive:
        raise BadRequest(f"{field} must be a path relative to its folder, not an absolute path")
    relative = PurePosixPath(name)
    if ".." in relative.parts:
        raise BadRequest(f"{field} must not contain '..'")
    # Longer names make the file system raise (ENAMETOOLONG) on any lookup: refuse them as input instead.
    if len(name.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise BadRequest(f"{field} must be at most {MAX_PATH_BYTES} bytes long")
    if any(len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for part in relative.parts):
        raise BadRequest(f"{field}: each part of the path must be at most {MAX_NAME_BYTES} bytes long")
    return relative


def stat_inside(path: Path, real_root: Path) -> os.stat_result | None:
    """The file's stat if it resolves inside `real_root` (an already resolved folder); None for a symlink
    that leaves it, or anything unreadable. Listings use it so they never offer an escaping entry."""
    try:
        if not path.resolve().is_relative_to(real_root):
            return None
        return path.stat()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop, as Python before 3.13 reports it
        return None


def resolve_inside(root: Path, name: str, field: str) -> Path:
    """`root/name` with symlinks resolved, refused (400) if it would leave `root`."""
    relative = check_relative(name, field)
    try:
        resolved = (root / relative).resolve()
        real_root = root.resolve()
    except (OSError, RuntimeError):  # a symlink loop, or a name the file system refuses (ENAMETOOLONG)
        raise BadRequest(f"{field} cannot be resolved in {root.name}/ (a symlink loop or a name too long)") from None
    if not resolved.is_relative_to(real_root):
        raise BadRequest(f"{field} resolves outside its folder (symlink leaving {root.name}/)")
    return resolved
