"""The model folders on disk: listing with filters, and resolving a (type, name) to a file safely."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from core.errors import BadRequest, NotFound
from core.models.schemas import ModelEntry, ModelListing, ModelPaths
from core.models.types import BY_NAME, MODEL_TYPES, ModelType
from core.safe_paths import resolve_inside, stat_inside

if TYPE_CHECKING:
    from core.models.hashing import HashCache
    from core.models.manager import LoadedModel

A1111_TITLE_HASH = re.compile(r"\s*\[[0-9a-fA-F]{6,64}\]$")  # "model.safetensors [6ce0161689]"


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
                if not kind.accepts(path.suffix) or file_name.startswith("."):
                    continue
                stat = stat_inside(path, real_root)
                if stat is None:
                    continue
                found.append(
                    ModelFile(kind.name, path.relative_to(root).as_posix(), path, stat.st_size, stat.st_mtime_ns)
                )
        return sorted(found, key=lambda f: f.name.lower())

    def find_main_model(self, name: str, field: str = "model") -> ModelFile:
        """A checkpoint or diffusion model by the name a client gives: its file name relative to the folder, with
        or without extension, or an AUTOMATIC1111 title ("name.safetensors [hash]"). Blocking: run off-loop."""
        wanted = A1111_TITLE_HASH.sub("", name).strip()
        candidates = [model for kind in MODEL_TYPES if kind.loadable for model in self.scan(kind)]
        for matches in (
            lambda m: m.name == wanted,
            lambda m: Path(m.name).with_suffix("").as_posix() == wanted,
            lambda m: Path(m.name).name == wanted or Path(m.name).stem == wanted,
        ):
            found = [model for model in candidates if matches(model)]
            if found:
                return found[0]
        raise BadRequest(f"{field}: no checkpoint or diffusion model named '{name}' (see GET /models)")

    def scan_all(self) -> dict[str, list[ModelFile]]:
        return {kind.name: self.scan(kind) for kind in MODEL_TYPES}

    def paths(self) -> ModelPaths:
        return ModelPaths(**{kind.path_key: str(self.folders[kind.folder]) for kind in MODEL_TYPES})

    async def listing(
        self,
        hashes: HashCache,
        loaded: LoadedModel | None,
        type_filter: str | None,
        extension: str | None,
        search: str | None,
    ) -> ModelListing:
        """GET /models: every type's list (filtered), with known hashes and which model is loaded."""
        wanted_type = self.model_type(type_filter, "type").name if type_filter else None
        wanted_ext = ("." + extension.lower().lstrip(".")) if extension else None
        needle = (search or "").lower()
        scanned = await anyio.to_thread.run_sync(self.scan_all)
        loaded_key = (loaded.request.model_type, loaded.name) if loaded else None
        lists: dict[str, Any] = {}  # list_key -> entries: ModelListing's fields (a unit test checks them)
        for kind in MODEL_TYPES:
            lists[kind.list_key] = [
                ModelEntry(
                    name=model.name,
                    type=kind.name,
                    file_extension=model.path.suffix.lower(),
                    size_bytes=model.size_bytes,
                    hash=hashes.known(model.path, model.size_bytes, model.mtime_ns),
                    is_loaded=((kind.name, model.name) == loaded_key) if kind.loadable else None,
                )
                for model in scanned[kind.name]
                if wanted_type in (None, kind.name)
                and not (wanted_ext and model.path.suffix.lower() != wanted_ext)
                and not (needle and needle not in model.name.lower())
            ]
        filters = {"type": type_filter, "extension": extension, "search": search}
        applied = {key: value for key, value in filters.items() if value}
        return ModelListing(
            **lists,
            loaded_model=loaded.name if loaded else None,
            loaded_model_type=loaded.request.model_type if loaded else None,
            applied_filters=applied or None,
        )
