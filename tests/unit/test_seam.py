"""The seam between requests and the binaries: every field of a generation request reaches sd.cpp (its sd-cli
argv, the worker's flags or sd-server's body) or is listed in `NOT_FOR_SDCPP` with why, and the flag tables only
name what the binaries take."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from core.generation.engine import NOT_FOR_SDCPP, generation_options
from core.generation.requests import GenerationRequest, Img2ImgRequest, Txt2ImgRequest, Txt2VidRequest
from core.generation.specs import GENERATION_JOBS
from core.jobs.inputs import IMAGE_INPUTS
from core.models.components import COMPONENTS
from core.models.manager import LOAD_OPTIONS_NOT_AT_LOAD
from core.models.schemas import LoadOptions
from runners.options import (
    CLI_ONLY_CONTEXT_FLAGS,
    CONTEXT_FLAGS,
    GENERATION_FLAGS,
    PREVIEW_FLAGS,
    SERVER_FIELDS,
    UPSCALE_FLAGS,
    ContextOptions,
    GenerationOptions,
    LoraOption,
    PreviewOptions,
    UpscaleOptions,
    build_server_body,
)
from runners.sdcli import generation_args, generation_argv

REQUESTS: dict[str, type[GenerationRequest]] = {
    "txt2img": Txt2ImgRequest,
    "img2img": Img2ImgRequest,
    "txt2vid": Txt2VidRequest,
}
# Switches the fields that only count together with them (the cache and tiling options) on in the base request.
BASE = {"prompt": "a cat", "easycache": True, "vae_tiling": True, "vae_tile_size_x": 32, "vae_tile_size_y": 32}
IMAGE_FIELDS = {image_input.field for image_input in IMAGE_INPUTS}


def probe(info: msgspec.inspect.Type, current: object) -> object:
    """A value other than `current` of the field's type (the first non-None member of a union)."""
    if isinstance(info, msgspec.inspect.UnionType):
        info = next(t for t in info.types if not isinstance(t, msgspec.inspect.NoneType))
    if isinstance(info, msgspec.inspect.Metadata):
        info = info.type
    if isinstance(info, msgspec.inspect.BoolType):
        return not current
    if isinstance(info, msgspec.inspect.IntType):
        return (current if isinstance(current, int) else 40) + 3
    if isinstance(info, msgspec.inspect.FloatType):
        return abs(current if isinstance(current, float) else 2.0) + 0.125
    if isinstance(info, msgspec.inspect.StrType):
        return f"{current or ''}x"
    if isinstance(info, msgspec.inspect.ListType):
        return [5, 6]
    raise AssertionError(f"no probe value for {info}")


def what_sdcpp_gets(job_type: str, request: GenerationRequest) -> tuple[list[str], dict[str, object]]:
    options = generation_options(GENERATION_JOBS[job_type](request=request), Path("/job"), LoadOptions())
    return generation_args(options), build_server_body(options)


@pytest.mark.parametrize("job_type", REQUESTS)
def test_every_request_field_reaches_sdcpp_or_is_listed_as_ours(job_type: str) -> None:
    request_type = REQUESTS[job_type]
    base = msgspec.convert(BASE, request_type)
    before = what_sdcpp_gets(job_type, base)
    fields: Any = msgspec.inspect.type_info(request_type)
    unmapped = []
    for field in fields.fields:
        if field.name in IMAGE_FIELDS:
            continue  # saved as files first: test_image_inputs_reach_a_flag
        changed = msgspec.structs.replace(base, **{field.name: probe(field.type, getattr(base, field.name))})
        reaches = what_sdcpp_gets(job_type, changed) != before
        if field.name in NOT_FOR_SDCPP:
            assert not reaches, f"{field.name} is listed as ours but changes what sd.cpp gets"
        elif not reaches:
            unmapped.append(field.name)
    assert unmapped == [], "request fields neither passed to sd.cpp nor listed in NOT_FOR_SDCPP"


def test_not_for_sdcpp_names_only_request_fields() -> None:
    known = {field.name for request_type in REQUESTS.values() for field in msgspec.structs.fields(request_type)}
    assert set(NOT_FOR_SDCPP) <= known


def test_our_upscale_repeats_never_reaches_sd_cli() -> None:
    """sd-cli has its own --upscale-repeats: the request field of that name is our chaining, not sd-cli's."""
    request = msgspec.convert({**BASE, "upscale": True, "upscale_repeats": 3}, Txt2ImgRequest)
    options = generation_options(GENERATION_JOBS["txt2img"](request=request), Path("/job"), LoadOptions())
    argv = generation_argv(
        "sd-cli", "img_gen", ContextOptions(diffusion="/m/dit.safetensors"), options, Path("/job/out.png")
    )
    assert not any(flag.startswith("--upscale") for flag in argv)
    assert not any(flag.startswith("--upscale") for flag in generation_args(options))


def test_image_inputs_reach_a_flag() -> None:
    """Each saved input image (or its folder) is a flag sd-cli reads or a field of sd-server's body."""
    flag_fields = {flag.field for flag in GENERATION_FLAGS} | {field.field for field in SERVER_FIELDS}
    for image_input in IMAGE_INPUTS:
        if image_input.target == "image":
            continue  # /upscale's input: sd-cli's upscale mode, below
        assert (image_input.folder_flag or image_input.target) in flag_fields, image_input.field
    assert "init_image" in {flag.field for flag in UPSCALE_FLAGS}


def test_upscale_options_are_exactly_the_upscale_table() -> None:
    assert [flag.field for flag in UPSCALE_FLAGS] == list(UpscaleOptions.__struct_fields__)


def test_each_component_has_one_context_flag() -> None:
    context_fields = [flag.field for flag in CONTEXT_FLAGS]
    for component in COMPONENTS:
        assert context_fields.count(component.field) == 1, component.field


def test_context_options_are_exactly_the_context_tables() -> None:
    """Each field of ContextOptions has one flag, and each context flag reads a field of ContextOptions."""
    flagged = [flag.field for flag in CONTEXT_FLAGS + CLI_ONLY_CONTEXT_FLAGS]
    assert sorted(flagged) == sorted(ContextOptions.__struct_fields__)


def test_every_load_option_is_a_context_option_or_listed() -> None:
    """A load option reaches sd.cpp at load (a field of ContextOptions) or is listed with why it does not."""
    load_options = set(LoadOptions.__struct_fields__)
    at_load = load_options & set(ContextOptions.__struct_fields__)
    assert at_load.isdisjoint(LOAD_OPTIONS_NOT_AT_LOAD)
    assert load_options - at_load == set(LOAD_OPTIONS_NOT_AT_LOAD)


def test_the_generation_tables_read_only_generation_options() -> None:
    """Every flag and sd-server field reads a field or property of GenerationOptions (or of PreviewOptions)."""
    for name in [flag.field for flag in GENERATION_FLAGS] + [field.field for field in SERVER_FIELDS]:
        assert hasattr(GenerationOptions, name), name
    assert [flag.field for flag in PREVIEW_FLAGS] == list(PreviewOptions.__struct_fields__)


def test_every_generation_option_reaches_sdcpp() -> None:
    """No option is dead: changing any one changes sd-cli's argv or sd-server's body."""
    base = GenerationOptions(prompt="a cat", easycache=True, vae_tiling=True, vae_tile_size_x=8, vae_tile_size_y=8)
    before = generation_args(base), build_server_body(base)
    info: Any = msgspec.inspect.type_info(GenerationOptions)
    for field in info.fields:
        if field.name == "lora":
            changed = msgspec.structs.replace(base, lora=[LoraOption("a.safetensors", 0.5)])
        else:
            changed = msgspec.structs.replace(base, **{field.name: probe(field.type, getattr(base, field.name))})
        assert (generation_args(changed), build_server_body(changed)) != before, field.name


def test_a_request_field_unknown_to_the_options_is_refused() -> None:
    """A new request field that is neither mapped nor listed in NOT_FOR_SDCPP fails at the seam, not silently."""
    with pytest.raises(msgspec.ValidationError, match="unknown field `new_field`"):
        msgspec.convert({"prompt": "x", "new_field": 1}, GenerationOptions)
