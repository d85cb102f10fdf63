"""The embeddings folder as sd.cpp can read it.

sd.cpp (this vendored version, conditioner.hpp) copies a textual-inversion embedding's data, in the file's own
type, into a buffer that the text encoder reads as f32: an f16 or bf16 embedding (most of those shared online)
is read as garbage and every image with it comes out one flat colour. So sd.cpp is given a view of the folder
(`--embd-dir`) where such safetensors files are f32 copies and every other embedding is a link to the original.
The view is a hidden sub-folder of the embeddings folder: inside the model folders, and never listed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
from pathlib import Path

from core.files import atomic_write_bytes

log = logging.getLogger("sdcpp_restapi")

VIEW_FOLDER = ".sdcpp-f32"
EMBEDDING_SUFFIXES = (".safetensors", ".gguf", ".pt")  # what sd.cpp's build_embedding_map takes
HALF_TYPES = frozenset({"F16", "BF16"})
MAX_EMBEDDING_BYTES = 64 * 1024 * 1024  # textual inversions are kilobytes; anything bigger is left alone


def _has_half(header: object) -> bool:
    """A safetensors header (tensor name -> info) with an f16 / bf16 tensor."""
    return isinstance(header, dict) and any(
        isinstance(info, dict) and info.get("dtype") in HALF_TYPES for info in header.values()
    )


def _header(data: bytes) -> tuple[dict[str, dict], dict[str, str] | None, int]:
    """(tensors, metadata, data start) of a safetensors file's bytes."""
    (length,) = struct.unpack_from("<Q", data)
    header = json.loads(data[8 : 8 + length])
    metadata = header.pop("__metadata__", None)
    return header, metadata, 8 + length


def _to_f32(dtype: str, raw: bytes) -> bytes:
    if dtype == "F16":
        count = len(raw) // 2
        return struct.pack(f"<{count}f", *struct.unpack(f"<{count}e", raw))
    widened = bytearray(2 * len(raw))  # bf16 is the high half of an f32
    widened[2::4], widened[3::4] = raw[0::2], raw[1::2]
    return bytes(widened)


def f32_copy(data: bytes) -> bytes | None:
    """The safetensors file with every f16 / bf16 tensor as f32; None when it has none (or is not safetensors)."""
    try:
        tensors, metadata, start = _header(data)
    except (struct.error, ValueError):
        return None
    if not _has_half(tensors):
        return None
    header: dict[str, object] = {}
    chunks: list[bytes] = []
    offset = 0
    for name, info in tensors.items():
        begin, end = info["data_offsets"]
        raw = data[start + begin : start + end]
        dtype = info["dtype"]
        if dtype in HALF_TYPES:
            raw, dtype = _to_f32(dtype, raw), "F32"
        header[name] = {"dtype": dtype, "shape": info["shape"], "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    if metadata is not None:
        header["__metadata__"] = metadata
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    return struct.pack("<Q", len(encoded)) + encoded + b"".join(chunks)


def _is_half(path: Path) -> bool:
    """A safetensors embedding with an f16 / bf16 tensor (reads the header only)."""
    if path.suffix != ".safetensors" or path.stat().st_size > MAX_EMBEDDING_BYTES:
        return False
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            return False
        (length,) = struct.unpack("<Q", head)
        if length > MAX_EMBEDDING_BYTES:
            return False
        try:
            return _has_half(json.loads(handle.read(length)))
        except ValueError:
            return False


def _link(source: Path, target: Path) -> None:
    if target.is_symlink() or target.exists():
        target.unlink()
    os.symlink(source.resolve(), target)


def embeddings_for_sdcpp(folder: Path) -> Path:
    """The folder to pass as --embd-dir: `folder` itself when no embedding needs converting, else the view.
    Blocking (reads and writes files): run off the event loop."""
    view = folder / VIEW_FOLDER
    try:
        embeddings = sorted(
            path
            for path in folder.iterdir()
            if path.suffix in EMBEDDING_SUFFIXES and not path.name.startswith(".") and path.is_file()
        )
        half = {path for path in embeddings if _is_half(path)}
        if not half:
            if view.is_dir():
                shutil.rmtree(view)  # our own folder, from a time an f16 embedding was there
            return folder
        view.mkdir(exist_ok=True)
        for source in embeddings:
            target = view / source.name
            fresh = target.is_file() and not target.is_symlink() and target.stat().st_mtime >= source.stat().st_mtime
            if source not in half:
                _link(source, target)
            elif not fresh:
                copy = f32_copy(source.read_bytes())
                if copy is None:
                    _link(source, target)
                else:
                    atomic_write_bytes(target, copy)
        names = {path.name for path in embeddings}
        for stale in view.iterdir():
            if stale.name not in names:
                stale.unlink()
        return view
    except (OSError, KeyError, TypeError, ValueError) as exc:  # a read-only folder, a malformed header
        log.warning("embeddings passed to sd.cpp unconverted (%s): f16 ones will give flat images", exc)
        return folder
