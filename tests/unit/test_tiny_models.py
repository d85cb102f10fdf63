from __future__ import annotations

import json
import struct
from pathlib import Path

from fixtures.tiny_models import load_manifest, write_mismatched_dit, write_tiny_models


def header(path: Path) -> dict:
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + length])


def test_tiny_set_has_the_manifest_tensors_and_is_deterministic(tmp_path: Path) -> None:
    first = write_tiny_models(tmp_path / "a")
    second = write_tiny_models(tmp_path / "b")
    manifest = load_manifest()
    for name, path in first.items():
        tensors = {k: v["shape"] for k, v in header(path).items() if k != "__metadata__"}
        assert tensors == manifest[name]
        assert path.read_bytes() == second[name].read_bytes()
    assert first["flux2_tiny_dit.safetensors"] == tmp_path / "a" / "diffusion_models" / "flux2_tiny_dit.safetensors"


def test_weights_are_finite_and_scaled(tmp_path: Path) -> None:
    path = write_tiny_models(tmp_path)["flux2_tiny_dit.safetensors"]
    meta = header(path)["img_in.weight"]
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    start, end = meta["data_offsets"]
    values = struct.unpack(f"<{(end - start) // 2}e", raw[8 + length + start : 8 + length + end])
    assert all(abs(v) < 1.0 for v in values)  # std 1/sqrt(128) ~ 0.088, no inf/nan
    mean_square = sum(v * v for v in values) / len(values)
    assert 0.5 / 128 < mean_square < 2.0 / 128


def test_mismatched_dit_changes_only_the_text_input_width(tmp_path: Path) -> None:
    tensors = header(write_mismatched_dit(tmp_path / "bad.safetensors"))
    assert tensors["txt_in.weight"]["shape"] == [128, 64]
