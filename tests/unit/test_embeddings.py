"""sd.cpp reads an f16 embedding as garbage: it gets an f32 copy in a hidden view of the embeddings folder."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from core.models.embeddings import VIEW_FOLDER, embeddings_for_sdcpp
from fixtures.tiny_models import tensor_bytes, write_safetensors

SHAPE = {"emb_params": [2, 768]}


def tensors_of(path: Path) -> dict[str, tuple[str, tuple[float, ...]]]:
    data = path.read_bytes()
    (length,) = struct.unpack_from("<Q", data)
    header = json.loads(data[8 : 8 + length])
    header.pop("__metadata__", None)
    decoded = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        raw = data[8 + length + begin : 8 + length + end]
        kind = {"F16": "e", "F32": "f"}[info["dtype"]]
        decoded[name] = (info["dtype"], struct.unpack(f"<{len(raw) // struct.calcsize(kind)}{kind}", raw))
    return decoded


def test_an_f16_embedding_is_handed_to_sdcpp_as_the_same_values_in_f32(tmp_path: Path) -> None:
    folder = tmp_path / "embeddings"
    half = write_safetensors(folder / "style.safetensors", SHAPE, {"format": "pt"})
    full = write_safetensors(folder / "other.safetensors", SHAPE, f32={"emb_params"})
    (folder / "pickled.pt").write_bytes(b"not converted")
    original = half.read_bytes()
    view = embeddings_for_sdcpp(folder)
    assert view == folder / VIEW_FOLDER
    dtype, values = tensors_of(view / "style.safetensors")["emb_params"]
    assert dtype == "F32" and values == tensors_of(half)["emb_params"][1]
    assert values == struct.unpack("<1536e", tensor_bytes("emb_params", [2, 768])[1])
    assert (view / "other.safetensors").resolve() == full.resolve()  # f32 already: a link to the original
    assert (view / "pickled.pt").read_bytes() == b"not converted"
    assert half.read_bytes() == original  # the user's file is never changed


def test_the_folder_itself_when_nothing_needs_converting_and_stale_copies_go(tmp_path: Path) -> None:
    folder = tmp_path / "embeddings"
    half = write_safetensors(folder / "style.safetensors", SHAPE)
    assert embeddings_for_sdcpp(folder) == folder / VIEW_FOLDER
    half.unlink()
    write_safetensors(folder / "other.safetensors", SHAPE, f32={"emb_params"})
    assert embeddings_for_sdcpp(folder) == folder
    assert not (folder / VIEW_FOLDER).exists()
