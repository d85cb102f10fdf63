"""`<lora:name:weight>` prompt tags: parsed and checked against loras/ when a job is submitted."""

from __future__ import annotations

import math
import re
from pathlib import Path

import msgspec

from core.errors import BadRequest
from core.models.types import BY_NAME
from core.request_types import FLOAT_MAX
from core.safe_paths import check_relative, resolve_inside

# The same pattern sd-cli uses (common.cpp): name up to ':' or '>', then the weight.
LORA_TAG = re.compile(r"<lora:([^:>]+):([^>]+)>")
# sd-cli tries the name as given, then with these extensions, in this order.
LORA_EXTENSIONS = ("", ".gguf", ".safetensors", ".pt")
HIGH_NOISE_PREFIX = "|high_noise|"


class LoraTag(msgspec.Struct, frozen=True):
    name: str
    path: str  # relative to loras/, with extension
    multiplier: float
    is_high_noise: bool


def parse_lora_tags(prompt: str, lora_dir: Path, field: str = "prompt") -> list[LoraTag]:
    tags: list[LoraTag] = []
    for raw_name, raw_weight in LORA_TAG.findall(prompt):
        is_high_noise = raw_name.startswith(HIGH_NOISE_PREFIX)
        name = raw_name.removeprefix(HIGH_NOISE_PREFIX)
        try:
            weight = float(raw_weight)
            if not math.isfinite(weight) or abs(weight) > FLOAT_MAX:
                raise ValueError(raw_weight)
        except ValueError:
            raise BadRequest(
                f"{field}: LoRA tag <lora:{raw_name}:{raw_weight}> has a weight that is not a finite number"
            ) from None
        check_relative(name, f"{field} LoRA name")
        for extension in LORA_EXTENSIONS:
            # sd-cli opens loras/<name><extension>: judge that file by its final path (a symlink in loras/ to a
            # file elsewhere is refused, as every other route refuses it).
            given = lora_dir / f"{name}{extension}"
            if not _is_file(given) or not BY_NAME["lora"].accepts(given.suffix):
                continue
            resolve_inside(lora_dir, f"{name}{extension}", f"{field} LoRA name")
            tags.append(LoraTag(name, given.relative_to(lora_dir).as_posix(), weight, is_high_noise))
            break
        else:
            raise BadRequest(
                f"{field}: unknown LoRA '{name}' (no .safetensors, .gguf, .pt or .pth file of that name in loras/)"
            )
    return tags


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name the file system refuses is no file
        return False
