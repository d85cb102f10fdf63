"""Each of the contract's usage examples (API.md, "cURL Examples by Model Type") against the command line that
sd.cpp's own docs give for that model family (`docs/*.md` of the vendored source, quoted below).

The load request and the generation request of each example go through what the server really does (model
folders, `resolve_context`, architecture defaults, the flag tables); every flag of the docs' line must appear in
our sd-cli argv with the same value (files: the same role; prompts are not compared), and every generation value
must reach sd-server's body too. Where the docs' line asks for something the example does not (offloading, another
size), that flag is left out of the quote and the comment says so.
"""

from __future__ import annotations

import base64
import io
import shlex
from pathlib import Path
from typing import Any, Literal, NamedTuple

import anyio
import msgspec
import pytest
from PIL import Image

from core.generation.defaults import resolve_defaults
from core.generation.engine import generation_options
from core.generation.requests import GenerationRequest, Img2ImgRequest, Txt2ImgRequest, Txt2VidRequest
from core.generation.specs import GENERATION_JOBS
from core.jobs.inputs import with_saved_inputs
from core.limits import Limits
from core.models.architecture import Architecture
from core.models.components import COMPONENTS
from core.models.library import ModelLibrary
from core.models.manager import ModelManager
from core.models.schemas import LoadModelRequest
from core.models.types import MODEL_TYPES
from runners.flags import build_argv
from runners.options import CONTEXT_FLAGS, GENERATION_FLAGS, build_server_body, fields_from_server_body
from runners.sdcli import generation_argv

SHORT_FLAGS = {
    "-m": "--model",
    "-H": "--height",
    "-W": "--width",
    "-M": "--mode",
    "-p": "--prompt",
    "-n": "--negative-prompt",
    "-i": "--init-img",
    "-o": "--output",
}
FILE_FLAGS = {
    "--model",
    "--diffusion-model",
    "--vae",
    "--clip_l",
    "--clip_g",
    "--t5xxl",
    "--llm",
    "--control-net",
    "--lora-model-dir",
    "--init-img",
    "--control-image",
    "--output",
}
NOT_COMPARED = {"-v", "--prompt", "--negative-prompt"}
FIELD_OF_FLAG = {flag.flag: flag.field for flag in GENERATION_FLAGS}
REQUEST_TYPES: dict[str, type[GenerationRequest]] = {
    "txt2img": Txt2ImgRequest,
    "img2img": Img2ImgRequest,
    "txt2vid": Txt2VidRequest,
}


class UsageExample(NamedTuple):
    load: dict[str, Any]
    job_type: str
    generate: dict[str, Any]
    architecture: Architecture
    docs: str  # the docs' command line for the family


SD1 = Architecture("SD1.x", "SD1")
SD15 = {"model_name": "v1-5-pruned-emaonly.safetensors", "model_type": "checkpoint"}
FLUX_FILES = {"vae": "ae.safetensors", "clip_l": "clip_l.safetensors", "t5xxl": "t5xxl_fp16.safetensors"}
WAN_FILES = {"vae": "wan_2.1_vae.safetensors", "t5xxl": "umt5-xxl-encoder-Q8_0.gguf"}
FLUX_DEV_DOCS = (
    "sd-cli --diffusion-model ../models/flux1-dev-q8_0.gguf --vae ../models/ae.sft --clip_l "
    '../models/clip_l.safetensors --t5xxl ../models/t5xxl_fp16.safetensors -p "a lovely cat holding a sign '
    "says 'flux.cpp'\" --cfg-scale 1.0 --sampling-method euler -v --clip-on-cpu"
)  # docs/flux.md


def png(size: tuple[int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, (90, 90, 90)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


EXAMPLES: dict[str, UsageExample] = {
    # docs/sd.md; the rest of the line is sd.cpp's defaults for SD1, which the example spells out
    "sd15": UsageExample(
        SD15,
        "txt2img",
        {"prompt": "a lovely cat", "width": 512, "height": 512, "steps": 20, "cfg_scale": 7.0},
        SD1,
        'sd-cli -m ../models/v1-5-pruned-emaonly.safetensors -p "a lovely cat" -W 512 -H 512 '
        "--steps 20 --cfg-scale 7.0 --sampling-method euler_a",
    ),
    "sdxl": UsageExample(
        {
            "model_name": "sd_xl_base_1.0.safetensors",
            "model_type": "checkpoint",
            "vae": "sdxl_vae-fp16-fix.safetensors",
        },
        "txt2img",
        {
            "prompt": "a lovely cat, masterpiece, best quality",
            "negative_prompt": "low quality",
            "width": 1024,
            "height": 1024,
            "steps": 20,
            "cfg_scale": 7.0,
        },
        Architecture("SDXL", "SDXL"),
        "sd-cli -m ../models/sd_xl_base_1.0.safetensors --vae ../models/sdxl_vae-fp16-fix.safetensors "
        '-H 1024 -W 1024 -p "a lovely cat" -v',
    ),  # docs/sd.md
    "sd3.5": UsageExample(
        {
            "model_name": "sd3.5_large.safetensors",
            "model_type": "checkpoint",
            "clip_l": "clip_l.safetensors",
            "clip_g": "clip_g.safetensors",
            "t5xxl": "t5xxl_fp16.safetensors",
            "options": {"keep_clip_on_cpu": True},
        },
        "txt2img",
        {"prompt": "a lovely cat", "width": 1024, "height": 1024, "steps": 20, "cfg_scale": 4.5, "sampler": "euler"},
        Architecture("SD3", "SD3"),
        "sd-cli -m ..\\models\\sd3.5_large.safetensors --clip_l ..\\models\\clip_l.safetensors "
        "--clip_g ..\\models\\clip_g.safetensors --t5xxl ..\\models\\t5xxl_fp16.safetensors -H 1024 "
        "-W 1024 -p 'a lovely cat' --cfg-scale 4.5 --sampling-method euler -v --clip-on-cpu",
    ),  # docs/sd3.md
    "flux-dev": UsageExample(
        {
            "model_name": "flux1-dev-Q4_K_S.gguf",
            "model_type": "diffusion",
            **FLUX_FILES,
            "options": {"keep_clip_on_cpu": True, "flash_attn": True},
        },
        "txt2img",
        {"prompt": "a lovely cat", "width": 1024, "height": 1024, "steps": 20, "cfg_scale": 1.0, "sampler": "euler"},
        Architecture("Flux", "Flux"),
        FLUX_DEV_DOCS,
    ),
    "flux-schnell": UsageExample(
        {
            "model_name": "flux1-schnell-Q8_0.gguf",
            "model_type": "diffusion",
            **FLUX_FILES,
            "options": {"keep_clip_on_cpu": True},
        },
        "txt2img",
        {"prompt": "a lovely cat", "width": 1024, "height": 1024, "steps": 4, "cfg_scale": 1.0, "sampler": "euler"},
        Architecture("Flux", "Flux"),
        FLUX_DEV_DOCS + " --steps 4",
    ),  # docs/flux.md, schnell
    "qwen-image": UsageExample(
        {
            "model_name": "qwen-image-Q8_0.gguf",
            "model_type": "diffusion",
            "vae": "qwen_image_vae.safetensors",
            "llm": "Qwen2.5-VL-7B-Instruct-Q8_0.gguf",
            "options": {"offload_to_cpu": True, "flash_attn": True, "flow_shift": 3.0},
        },
        "txt2img",
        {"prompt": "a woman", "width": 1024, "height": 1024, "steps": 20, "cfg_scale": 2.5, "sampler": "euler"},
        Architecture("Qwen-Image", "Qwen-Image"),
        "sd-cli --diffusion-model qwen-image-Q8_0.gguf --vae qwen_image_vae.safetensors --llm "
        "Qwen2.5-VL-7B-Instruct-Q8_0.gguf -p 'a woman' --cfg-scale 2.5 --sampling-method euler "
        "-v --offload-to-cpu -H 1024 -W 1024 --diffusion-fa --flow-shift 3",
    ),  # docs/qwen_image.md
    # docs/z_image.md, less its --offload-to-cpu and its -H 1024 -W 512 (the example asks for neither)
    "z-image": UsageExample(
        {
            "model_name": "z_image_turbo-Q8_0.gguf",
            "model_type": "diffusion",
            "vae": "ae_q8_0.gguf",
            "llm": "qwen_3_4b.Q8_0.gguf",
            "options": {"flash_attn": True, "vae_conv_direct": True, "weight_type": "q5_0"},
        },
        "txt2img",
        {
            "prompt": "a woman",
            "negative_prompt": "tattoos",
            "width": 1024,
            "height": 688,
            "steps": 8,
            "cfg_scale": 1.0,
            "sampler": "euler",
            "scheduler": "smoothstep",
            "seed": 42,
            "batch_count": 4,
            "easycache": True,
        },
        Architecture("Z-Image", "Z-Image"),
        "sd-cli --diffusion-model z_image_turbo-Q3_K.gguf --vae ae.sft --llm qwen_3_4b.safetensors "
        "-p 'a city' --cfg-scale 1.0 -v --diffusion-fa",
    ),
    "z-image-lora": UsageExample(
        {
            "model_name": "z_image_turbo-Q8_0.gguf",
            "model_type": "diffusion",
            "vae": "ae_q8_0.gguf",
            "llm": "qwen_3_4b.Q8_0.gguf",
        },
        "txt2img",
        {
            "prompt": "<lora:zimage_amberrayne_v1:0.6>a city",
            "width": 1024,
            "height": 512,
            "steps": 8,
            "cfg_scale": 1.0,
            "sampler": "euler",
            "scheduler": "smoothstep",
        },
        Architecture("Z-Image", "Z-Image"),
        "sd-cli --diffusion-model z_image_turbo.gguf --vae ae.sft --llm qwen_3_4b.safetensors "
        "-p 'a city<lora:zimage_amberrayne_v1:0.6>' --cfg-scale 1.0 -H 512 -W 1024 "
        "--lora-model-dir ../models",
    ),  # docs/z_image.md + docs/lora.md
    "wan2.1-1.3b": UsageExample(
        {
            "model_name": "wan2.1_t2v_1.3B_fp16.safetensors",
            "model_type": "diffusion",
            **WAN_FILES,
            "options": {"flash_attn": True, "flow_shift": 3.0},
        },
        "txt2vid",
        {
            "prompt": "a lovely cat walking in a garden",
            "negative_prompt": "static",
            "width": 832,
            "height": 480,
            "video_frames": 33,
            "steps": 30,
            "cfg_scale": 6.0,
            "sampler": "euler",
            "flow_shift": 3.0,
        },
        Architecture("Wan", "Wan"),
        "sd-cli -M vid_gen --diffusion-model wan2.1_t2v_1.3B_fp16.safetensors --vae "
        'wan_2.1_vae.safetensors --t5xxl umt5-xxl-encoder-Q8_0.gguf -p "a lovely cat" '
        '--cfg-scale 6.0 --sampling-method euler -v -n "static" -W 832 -H 480 --diffusion-fa '
        "--video-frames 33 --flow-shift 3.0",
    ),  # docs/wan.md
    # The 14B example loads with flow_shift 3.0 and a generation that leaves it out: the load's shift is used.
    "wan2.1-14b": UsageExample(
        {
            "model_name": "wan2.1-t2v-14b-Q8_0.gguf",
            "model_type": "diffusion",
            **WAN_FILES,
            "options": {"flash_attn": True, "offload_to_cpu": True, "flow_shift": 3.0},
        },
        "txt2vid",
        {
            "prompt": "a lovely cat",
            "width": 832,
            "height": 480,
            "video_frames": 33,
            "cfg_scale": 6.0,
            "sampler": "euler",
        },
        Architecture("Wan", "Wan"),
        "sd-cli -M vid_gen --diffusion-model wan2.1-t2v-14b-Q8_0.gguf --vae wan_2.1_vae.safetensors "
        '--t5xxl umt5-xxl-encoder-Q8_0.gguf -p "a lovely cat" --cfg-scale 6.0 --sampling-method '
        "euler -v -W 832 -H 480 --diffusion-fa --offload-to-cpu --video-frames 33 "
        "--flow-shift 3.0",
    ),  # docs/wan.md
    "lora-flux": UsageExample(
        {"model_name": "flux1-dev-Q4_K_S.gguf", "model_type": "diffusion", **FLUX_FILES},
        "txt2img",
        {
            "prompt": "a lovely cat <lora:realism_lora:1.0>",
            "width": 1024,
            "height": 1024,
            "steps": 20,
            "cfg_scale": 1.0,
            "sampler": "euler",
        },
        Architecture("Flux", "Flux"),
        FLUX_DEV_DOCS + " --lora-model-dir ../models",
    ),
    "lora-sd15": UsageExample(
        SD15,
        "txt2img",
        {
            "prompt": "a landscape <lora:add_detail:0.8> <lora:colors:0.5>",
            "width": 512,
            "height": 512,
            "steps": 20,
            "cfg_scale": 7.0,
        },
        SD1,
        'sd-cli -m ../models/v1-5-pruned-emaonly.safetensors -p "a lovely cat<lora:marblesh:1>" '
        "--lora-model-dir ../models",
    ),  # docs/lora.md
    # No docs page shows ControlNet; the flags are examples/cli/README.md's
    "controlnet": UsageExample(
        {**SD15, "controlnet": "control_v11p_sd15_canny.safetensors"},
        "txt2img",
        {
            "prompt": "a beautiful house",
            "control_image_base64": png((512, 512)),
            "control_strength": 0.9,
            "width": 512,
            "height": 512,
            "steps": 20,
            "cfg_scale": 7.0,
        },
        SD1,
        'sd-cli -m ../models/v1-5-pruned-emaonly.safetensors -p "a house" --control-net '
        "control.safetensors --control-image canny.png --control-strength 0.9",
    ),
    "img2img": UsageExample(
        SD15,
        "img2img",
        {
            "prompt": "cat with blue eyes",
            "init_image_base64": png((512, 512)),
            "strength": 0.4,
            "width": 512,
            "height": 512,
            "steps": 20,
            "cfg_scale": 7.0,
        },
        SD1,
        'sd-cli -m ../models/sd-v1-4.ckpt -p "cat with blue eyes" -i ./output.png '
        "-o ./img2img_output.png --strength 0.4",
    ),  # docs/sd.md
}


def docs_flags(command: str) -> dict[str, str | None]:
    """The docs' line as flag -> value (None for a switch), short flags spelled long."""
    words = shlex.split(command.replace("\\", "/"))[1:]
    flags: dict[str, str | None] = {}
    for index, word in enumerate(words):
        if word.startswith("-") and not word[1:2].isdigit():
            following = words[index + 1] if index + 1 < len(words) else None
            is_value = following is not None and (not following.startswith("-") or following[1:2].isdigit())
            flags[SHORT_FLAGS.get(word, word)] = following if is_value else None
    return flags


def argv_flags(arguments: list[str]) -> dict[str, str | None]:
    return docs_flags(shlex.join(["program", *arguments]))


def same(expected: str | None, got: str | None) -> bool:
    try:
        return float(expected) == float(got)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return expected == got


def model_folders(root: Path, load: LoadModelRequest) -> ModelLibrary:
    """Empty files named as in the example, each in its type's folder (only the names are read)."""
    library = ModelLibrary({kind.folder: root / kind.folder for kind in MODEL_TYPES})
    wanted: list[tuple[str, str]] = [(load.model_type, load.model_name or "")]
    wanted += [
        (component.model_type, getattr(load, component.field))
        for component in COMPONENTS
        if getattr(load, component.field)
    ]
    for model_type, name in wanted:
        path = library.folder_of(model_type) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    return library


def built(example: UsageExample, root: Path) -> tuple[list[str], list[str], dict[str, object]]:
    """(sd-cli argv, sd-server's start argv, sd-server's generation body) as the server builds them."""
    load = msgspec.convert(example.load, LoadModelRequest)
    manager = ModelManager(model_folders(root, load), None, None, Path("sd-server"))  # type: ignore[arg-type]
    context, _ = manager.resolve_context(load)
    request = msgspec.convert(example.generate, REQUEST_TYPES[example.job_type])
    request, sources = resolve_defaults(request, example.architecture, load.options.flow_shift)
    limits = Limits()
    stored, inputs = anyio.run(
        with_saved_inputs, request, root / "job", limits.max_image_bytes, limits.max_image_pixels
    )
    job = GENERATION_JOBS[example.job_type](request=stored, inputs=inputs, default_sources=sources)
    options = generation_options(job, root / "job", load.options)
    mode: Literal["img_gen", "vid_gen"] = "vid_gen" if example.job_type == "txt2vid" else "img_gen"
    argv = generation_argv("sd-cli", mode, context, options, root / "out.png")
    return argv, build_argv(CONTEXT_FLAGS, context), build_server_body(options)


@pytest.mark.parametrize("name", EXAMPLES)
def test_usage_example_builds_the_docs_command_line(name: str, tmp_path: Path) -> None:
    example = EXAMPLES[name]
    argv, server_argv, body = built(example, tmp_path)
    ours, server_context, server_fields = argv_flags(argv[1:]), argv_flags(server_argv), fields_from_server_body(body)
    for flag, value in docs_flags(example.docs).items():
        if flag in NOT_COMPARED:
            continue
        assert flag in ours, f"{name}: {flag} missing from {shlex.join(argv)}"
        if flag not in FILE_FLAGS:
            assert same(value, ours[flag]), f"{name}: {flag} is {ours[flag]}, the docs say {value}"
        if flag in FIELD_OF_FLAG and flag not in FILE_FLAGS:  # a generation value: sd-server's body has it too
            assert same(value, str(server_fields.get(FIELD_OF_FLAG[flag]))), f"{name}: {flag} not in {body}"
        elif flag not in FIELD_OF_FLAG and flag not in ("--mode", "--output"):  # a model flag: sd-server starts with it
            assert flag in server_context, f"{name}: sd-server starts without {flag}"
    assert "--fa" not in argv  # flash attention is for the diffusion model only (issue 14, defect 3)


def test_the_examples_cover_every_family_of_the_contract() -> None:
    assert {example.architecture.family for example in EXAMPLES.values()} >= {
        "SD1",
        "SDXL",
        "SD3",
        "Flux",
        "Qwen-Image",
        "Z-Image",
        "Wan",
    }


def test_a_load_flow_shift_reaches_a_video_job_that_omits_it(tmp_path: Path) -> None:
    """Issue 14, defect 4: txt2vid's own default (3.0) used to win over the load option."""
    example = EXAMPLES["wan2.1-14b"]
    load = {**example.load, "options": {**example.load["options"], "flow_shift": 5.0}}
    argv, _, body = built(example._replace(load=load), tmp_path)
    assert argv[argv.index("--flow-shift") + 1] == "5.0"
    assert fields_from_server_body(body)["flow_shift"] == 5.0
