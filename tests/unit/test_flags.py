from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from core.errors import BadRequest
from core.generation.lora_tags import parse_lora_tags
from core.models.library import ModelLibrary
from core.models.schemas import LoadOptions
from core.models.types import BY_NAME
from runners.flags import Flag, build_argv
from runners.options import CONTEXT_FLAGS, ContextOptions, GenerationOptions, UpscaleOptions, build_server_body
from runners.sdcli import generation_argv, upscale_argv


def test_each_flag_kind() -> None:
    table = (
        Flag("a", "--a"),
        Flag("b", "--b", "switch"),
        Flag("c", "--c", "inverse_switch"),
        Flag("d", "-d", "repeat"),
        Flag("e", "--e", omit_when=lambda v: v == 0),
        Flag("f", "--f"),
    )

    class Source(msgspec.Struct):
        a: float | None = None
        b: bool | None = None
        c: bool | None = None
        d: list[str] = []
        e: int = 0
        f: str | None = None  # None: left out

    assert build_argv(table, Source(a=1.5, b=True, c=False, d=["x", "y"])) == [
        "--a",
        "1.5",
        "--b",
        "--c",
        "-d",
        "x",
        "-d",
        "y",
    ]
    assert build_argv(table, Source(b=False, c=True)) == []


def test_generation_argv_translates_spec_fields() -> None:
    context = ContextOptions(
        diffusion="/m/dit.safetensors",
        llm="/m/llm.safetensors",
        n_threads=-1,
        keep_clip_on_cpu=True,
        chroma_use_dit_mask=True,
        prediction="",
        rng_type="cuda",
    )
    generation = msgspec.convert(
        {
            "prompt": "cat",
            "negative_prompt": "",
            "width": 64,
            "height": 32,
            "seed": 5,
            "eta": 0.0,
            "skip_layers": [7, 8, 9],
            "easycache": True,
            "easycache_threshold": 0.3,
            "easycache_start": 0.1,
            "easycache_end": 0.9,
            "vae_tiling": True,
            "vae_tile_size_x": 16,
            "vae_tile_size_y": 24,
            "auto_resize_ref_image": False,
            "custom_sigmas": [],
            "flow_shift": None,
        },
        GenerationOptions,
    )
    argv = generation_argv("/bin/sd-cli", "img_gen", context, generation, Path("/o/image_%d.png"))
    assert argv[:3] == ["/bin/sd-cli", "--mode", "img_gen"]
    assert argv[argv.index("--diffusion-model") + 1] == "/m/dit.safetensors"
    assert "--clip-on-cpu" in argv and "--chroma-disable-dit-mask" not in argv
    assert "--threads" not in argv and "--prediction" not in argv  # auto values are left to the binary
    assert "--eta" not in argv and "--negative-prompt" not in argv and "--sigmas" not in argv
    assert argv[argv.index("--skip-layers") + 1] == "[7,8,9]"
    assert argv[argv.index("--cache-mode") + 1] == "easycache"
    assert argv[argv.index("--cache-option") + 1] == "threshold=0.3,start=0.1,end=0.9"
    assert argv[argv.index("--vae-tile-size") + 1] == "16x24"
    assert "--disable-auto-resize-ref-image" in argv
    assert argv[-2:] == ["--output", "/o/image_%d.png"]


def test_upscale_argv_disables_misleading_metadata() -> None:
    options = UpscaleOptions("m.safetensors", "in.png", "out.png", upscale_repeats=2, upscale_tile_size=64)
    argv = upscale_argv("sd-cli", options)
    assert argv == [
        "sd-cli",
        "--mode",
        "upscale",
        "--upscale-model",
        "m.safetensors",
        "--init-img",
        "in.png",
        "--output",
        "out.png",
        "--upscale-repeats",
        "2",
        "--upscale-tile-size",
        "64",
        "--disable-image-metadata",
    ]
    threaded = upscale_argv("sd-cli", msgspec.structs.replace(options, n_threads=3))
    assert threaded[threaded.index("--threads") + 1] == "3"


def test_load_level_tiling_and_flow_shift_become_job_defaults() -> None:
    from core.generation.engine import with_load_defaults

    load = LoadOptions(vae_tiling=True, vae_tile_size_x=32, vae_tile_size_y=16, vae_tile_overlap=0.25, flow_shift=3.0)
    merged = with_load_defaults(GenerationOptions(prompt="x", vae_tiling=False, vae_tile_size_x=0), load)
    argv = generation_argv("sd-cli", "img_gen", ContextOptions(), merged, Path("o.png"))
    assert "--vae-tiling" in argv and argv[argv.index("--vae-tile-size") + 1] == "32x16"
    assert argv[argv.index("--vae-tile-overlap") + 1] == "0.25"
    assert argv[argv.index("--flow-shift") + 1] == "3.0"
    own = with_load_defaults(
        GenerationOptions(prompt="x", flow_shift=5.0, vae_tiling=True, vae_tile_size_x=8, vae_tile_size_y=8), load
    )
    assert own.flow_shift == 5.0 and own.vae_tile_size_x == 8  # the request's own values win


@pytest.mark.parametrize("shift", [0.0, -1.0, 0, float("inf"), None])
def test_a_flow_shift_of_zero_or_less_means_auto(shift: float | None) -> None:
    """A shift of 0 would make every sigma 0 in sd.cpp (no denoising, a blank image): it is left to sd.cpp."""
    options = GenerationOptions(prompt="x", flow_shift=shift)
    argv = generation_argv("sd-cli", "img_gen", ContextOptions(), options, Path("o.png"))
    assert "--flow-shift" not in argv
    assert "flow_shift" not in str(build_server_body(options))
    kept_options = GenerationOptions(prompt="x", flow_shift=3.0)
    kept = generation_argv("sd-cli", "img_gen", ContextOptions(), kept_options, Path("o.png"))
    assert kept[kept.index("--flow-shift") + 1] == "3.0"


def test_flash_attention_is_for_the_diffusion_model_only() -> None:
    argv = build_argv(CONTEXT_FLAGS, ContextOptions(flash_attn=True))
    assert argv == ["--diffusion-fa"]  # --fa would also apply it to the text encoders and VAE


def test_lora_files_sd_server_cannot_index_are_neither_listed_nor_accepted(tmp_path: Path) -> None:
    loras = tmp_path / "loras"
    loras.mkdir()
    for name in ("good.safetensors", "also.gguf", "old.ckpt", "weird.sft", "blob.bin"):
        (loras / name).write_bytes(b"x")
    library = ModelLibrary({"loras": loras})
    assert [model.name for model in library.scan(BY_NAME["lora"])] == ["also.gguf", "good.safetensors"]
    assert [tag.path for tag in parse_lora_tags("a <lora:good:0.5> <lora:also:1>", loras)] == [
        "good.safetensors",
        "also.gguf",
    ]
    for tag in ("<lora:old:1>", "<lora:old.ckpt:1>", "<lora:weird:1>", "<lora:blob.bin:1>"):
        with pytest.raises(BadRequest, match="unknown LoRA"):
            parse_lora_tags(f"a {tag}", loras)
