from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from fixtures.random_models import (
    CLIP_PREFIX,
    LORA_MODULES,
    LORA_RANK,
    UNET_PREFIX,
    VAE_PREFIX,
    checkpoint_tensors,
    controlnet_tensors,
    lora_tensors,
    sdxl_checkpoint_tensors,
    unet_tensors,
    vae_tensors,
    write_family,
)


def parameters(tensors: dict[str, list[int]], prefix: str = "") -> int:
    return sum(math.prod(shape) for name, shape in tensors.items() if name.startswith(prefix))


def test_tables_have_the_parameter_counts_of_the_released_sd15_files() -> None:
    # v1-5-pruned-emaonly.safetensors: UNet 859,520,964; CLIP ViT-L/14 text 123,060,480; KL-f8 VAE 83,653,863.
    checkpoint = checkpoint_tensors()
    assert parameters(checkpoint, UNET_PREFIX) == 859_520_964
    assert parameters(checkpoint, CLIP_PREFIX) == 123_060_480
    assert parameters(checkpoint, VAE_PREFIX) == parameters(vae_tensors()) == 83_653_863
    # sd.cpp's SD1 ControlNet (src/control.hpp): it loads this table with no tensor missing or unknown.
    assert parameters(controlnet_tensors()) == 361_279_120
    assert checkpoint[UNET_PREFIX + "output_blocks.8.2.conv.weight"] == [640, 640, 3, 3]


def test_lora_adapts_modules_of_the_unet_with_their_shapes() -> None:
    unet, lora = unet_tensors(), lora_tensors()
    for module in LORA_MODULES:
        name = "lora_unet_" + module.replace(".", "_")
        down, up = lora[f"{name}.lora_down.weight"], lora[f"{name}.lora_up.weight"]
        assert [up[0], down[1]] == unet[f"{module}.weight"] and down[0] == up[1] == LORA_RANK
    assert len(lora) == 3 * len(LORA_MODULES) == 48


def test_embedding_is_written_as_f32(tmp_path: Path) -> None:
    raw = write_family(tmp_path, "sd15-embedding").read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    assert json.loads(raw[8 : 8 + length])["emb_params"]["dtype"] == "F32"
    values = struct.unpack("<3072f", raw[8 + length :])
    assert all(abs(value) < 1.0 for value in values) and len(set(values)) > 1000


def test_sdxl_table_has_the_parameter_counts_of_sd_xl_base() -> None:
    # sd_xl_base_1.0.safetensors: UNet 2,567,463,684; OpenCLIP bigG text 694,659,840; CLIP-L and VAE as SD1.5.
    checkpoint = sdxl_checkpoint_tensors()
    assert parameters(checkpoint, UNET_PREFIX) == 2_567_463_684
    assert parameters(checkpoint, "conditioner.embedders.1.model.") == 694_659_840
    assert parameters(checkpoint, "conditioner.embedders.0.transformer.text_model.") == 123_060_480
