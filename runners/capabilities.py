"""What the configured sd-cli build supports, read from its own `--help` (a different build reports its
own lists): samplers, schedulers, preview modes, RNGs and weight (quantization) types."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import anyio
import msgspec

_OPTION_START = re.compile(r"^\s{2}(?:-\w, )?(?P<flag>--[\w-]+)\s+(?P<text>.*)$")
_ONE_OF = re.compile(r"one of (?:the following )?\[(?P<items>[^\]]*)\]")
_EXAMPLES = re.compile(r"examples: (?P<items>[^)]*)\)")

# Display names and bit widths of ggml weight types, for /options.
QUANT_INFO: dict[str, tuple[str, int]] = {
    "f32": ("F32 (32-bit float)", 32),
    "f16": ("F16 (16-bit float)", 16),
    "bf16": ("BF16 (Brain float 16)", 16),
    "q8_0": ("Q8_0 (8-bit)", 8),
    "q5_0": ("Q5_0 (5-bit)", 5),
    "q5_1": ("Q5_1 (5-bit)", 5),
    "q4_0": ("Q4_0 (4-bit)", 4),
    "q4_1": ("Q4_1 (4-bit)", 4),
    "q4_k": ("Q4_K (4-bit K-quant)", 4),
    "q5_k": ("Q5_K (5-bit K-quant)", 5),
    "q6_k": ("Q6_K (6-bit K-quant)", 6),
    "q8_k": ("Q8_K (8-bit K-quant)", 8),
    "q3_k": ("Q3_K (3-bit K-quant)", 3),
    "q2_k": ("Q2_K (2-bit K-quant)", 2),
}


class Capabilities(msgspec.Struct, frozen=True):
    samplers: tuple[str, ...]
    schedulers: tuple[str, ...]
    preview_modes: tuple[str, ...]
    rng_types: tuple[str, ...]
    weight_types: tuple[str, ...]


def option_texts(help_text: str) -> dict[str, str]:
    """flag -> its description, continuation lines joined."""
    texts: dict[str, str] = {}
    current: str | None = None
    for line in help_text.splitlines():
        if match := _OPTION_START.match(line):
            current = match["flag"]
            texts[current] = match["text"].strip()
        elif current and line.startswith(" " * 10) and line.strip():
            texts[current] += " " + line.strip()
        else:
            current = None
    return texts


def _items(pattern: re.Pattern[str], text: str) -> tuple[str, ...]:
    match = pattern.search(text)
    return tuple(item.strip() for item in match["items"].split(",") if item.strip()) if match else ()


def parse_help(help_text: str) -> Capabilities:
    texts = option_texts(help_text)
    weight_types = tuple(dict.fromkeys(t.lower() for t in _items(_EXAMPLES, texts.get("--type", ""))))
    return Capabilities(
        samplers=_items(_ONE_OF, texts.get("--sampling-method", "")),
        schedulers=_items(_ONE_OF, texts.get("--scheduler", "")),
        preview_modes=_items(_ONE_OF, texts.get("--preview", "")),
        rng_types=_items(_ONE_OF, texts.get("--rng", "")),
        weight_types=weight_types,
    )


async def read_capabilities(sd_cli: Path) -> Capabilities:
    # --help exits 0 and prints the usage on stdout (and a spurious [ERROR] line on stderr).
    result = await anyio.run_process([str(sd_cli), "--help"], check=False, stderr=subprocess.DEVNULL)
    capabilities = parse_help(result.stdout.decode("utf-8", "replace"))
    if not capabilities.samplers:
        raise RuntimeError(f"could not read the sampler list from `{sd_cli} --help`; is it an sd.cpp sd-cli?")
    return capabilities
