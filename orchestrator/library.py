"""The model folders on disk: listing with filters, and resolving a (type, name) to a file safely."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from orchestrator.errors import BadRequest, NotFound
from orchestrator.model_types import BY_NAME, MODEL_EXTENSIONS, MODEL_TYPES, ModelType
from orchestrator.safe_paths import resolve_inside, stat_inside


class ModelFile(msgspec.Struct, frozen=True):
    type: str
    name: str  # path relative to the type's folder, with '/' separators
    path: Path
    size_bytes: int
    mtime_ns: int


class ModelLibrary:
    def __init__(self, folders: dict[str, Path]) -> None:
        self.folders = folders  # keyed by ModelType.folder

    def folder_of(self, model_type: str, field: str = "model_type") -> Path:
        kind = self.model_type(model_type, field)
        return self.folders[kind.folder]

    @staticmethod
    def model_type(name: str, field: str = "model_type") -> ModelType:
        kind = BY_NAME.get(name)
        if kind is None:
            raise BadRequest(f"{field} must be one of {', '.join(BY_NAME)}; got '{name}'")
        return kind

    def resolve(self, model_type: str, name: str, field: str) -> Path:
        """The file for `name` inside the type's folder: 400 for unsafe names, 404 if missing."""
        root = self.folder_of(model_type)
        path = resolve_inside(root, name, field)
        if not path.is_file():
            raise NotFound(f"Model not found: {name}")
        return path

    def scan(self, kind: ModelType) -> list[ModelFile]:
        """All model files under the type's folder, recursively, sorted by name. Blocking: run off-loop."""
        root = self.folders[kind.folder]
        if not root.is_dir():
            return []
        real_root = root.resolve()
        found: list[ModelFile] = []
        for directory, subdirs, files in os.walk(root, followlinks=False):
            subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
            for file_name in files:
                path = Path(directory) / file_name
                if path.suffix.lower() not in MODEL_EXTENSIONS or file_name.startswith("."):
                    continue
                stat = stat_inside(path, real_root)
                if stat is None:
                    continue
                found.append(ModelFile(kind.name, path.relative_to(root).as_posix(), path, stat.st_size, stat.st_mtime_ns))
        return sorted(found, key=lambda f: f.name.lower())

    def scan_all(self) -> dict[str, list[ModelFile]]:
        return {kind.name: self.scan(kind) for kind in MODEL_TYPES}
