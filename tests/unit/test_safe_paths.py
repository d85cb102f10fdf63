from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.errors import BadRequest
from core.safe_paths import resolve_inside


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("../x", "'..'"),
        ("a/../../x", "'..'"),
        ("/etc/passwd", "absolute"),
        ("C:/x", "absolute"),
        ("a\\..\\x", "separator"),
        ("", "empty"),
        ("a\x00b", "NUL"),
        ("x" * 256, "at most 255 bytes"),
        ("é" * 128, "at most 255 bytes"),
        ("/".join(["x" * 200] * 6), "at most 1024 bytes"),
    ],
)
def test_unsafe_names_are_refused_with_the_rule(tmp_path: Path, name: str, rule: str) -> None:
    with pytest.raises(BadRequest, match=rule) as caught:
        resolve_inside(tmp_path, name, "model_name")
    assert caught.value.message.startswith("model_name")


def test_symlink_leaving_the_folder_is_refused(tmp_path: Path) -> None:
    inside, outside = tmp_path / "models", tmp_path / "secret.txt"
    inside.mkdir()
    outside.write_text("secret")
    os.symlink(outside, inside / "link.safetensors")
    with pytest.raises(BadRequest, match="outside its folder"):
        resolve_inside(inside, "link.safetensors", "vae")


def test_nested_names_resolve_inside(tmp_path: Path) -> None:
    (tmp_path / "SD1x").mkdir()
    (tmp_path / "SD1x" / "m.safetensors").write_bytes(b"x")
    assert (
        resolve_inside(tmp_path, "SD1x/m.safetensors", "model_name") == (tmp_path / "SD1x" / "m.safetensors").resolve()
    )
