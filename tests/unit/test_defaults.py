"""Fields a client omits follow the loaded architecture (issue 14, defects 2 and 4)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from core.generation.defaults import resolve_defaults
from core.generation.engine import generation_options
from core.generation.requests import Img2ImgRequest, Txt2ImgRequest, Txt2VidRequest
from core.generation.specs import Txt2ImgJob
from core.models.architecture import PRESETS, Architecture
from core.models.schemas import LoadOptions
from runners.sdcli import generation_args

FLUX = Architecture("Flux", "Flux")
Z_IMAGE = Architecture("Z-Image", "Z-Image")
WAN = Architecture("Wan", "Wan")


def test_omitted_fields_take_the_architecture_preset() -> None:
    request, sources = resolve_defaults(Txt2ImgRequest(prompt="p"), FLUX)
    preset = PRESETS["Flux"].defaults
    assert (request.sampler, request.cfg_scale, request.distilled_guidance) == ("euler", 1.0, 3.5)
    assert (request.width, request.height, request.steps) == (preset.width, preset.height, preset.steps)
    assert request.scheduler == "discrete"  # the preset has none: the contract's
    assert sources["sampler"] == sources["cfg_scale"] == "architecture Flux"
    assert sources["scheduler"] == "contract"


def test_flux_no_longer_gets_the_sd_sampling_defaults() -> None:
    """Before: euler_a and cfg 7.0 on FLUX, which burns the image."""
    request, _ = resolve_defaults(Txt2ImgRequest(prompt="p", width=64, height=64, steps=2), FLUX)
    argv = generation_args(generation_options(Txt2ImgJob(request=request), Path("/job"), LoadOptions()))
    assert argv[argv.index("--sampling-method") + 1] == "euler"
    assert argv[argv.index("--cfg-scale") + 1] == "1.0"


def test_z_image_gets_its_scheduler() -> None:
    request, sources = resolve_defaults(Img2ImgRequest(prompt="p"), Z_IMAGE)
    assert (request.scheduler, request.steps, sources["scheduler"]) == ("smoothstep", 8, "architecture Z-Image")


def test_unknown_architecture_gets_the_contract_defaults() -> None:
    request, sources = resolve_defaults(Txt2ImgRequest(prompt="p"), None)
    assert (request.width, request.height, request.steps, request.cfg_scale) == (512, 512, 20, 7.0)
    assert (request.sampler, request.scheduler) == ("euler_a", "discrete")
    assert set(sources.values()) == {"contract"}


def test_what_the_client_sends_wins_and_is_not_listed() -> None:
    request, sources = resolve_defaults(Txt2ImgRequest(prompt="p", sampler="dpm++2m", cfg_scale=3.0, width=64), FLUX)
    assert (request.sampler, request.cfg_scale, request.width) == ("dpm++2m", 3.0, 64)
    assert not {"sampler", "cfg_scale", "width"} & sources.keys()


@pytest.mark.parametrize(
    ("load_shift", "expected", "source"),
    [
        (5.0, 5.0, "load options"),  # defect 4: the load-time shift reaches video jobs
        (0.0, 3.0, "architecture Wan"),  # 0 means auto: the preset's
        (None, 3.0, "architecture Wan"),
    ],
)
def test_video_flow_shift_follows_the_load_options(load_shift: float | None, expected: float, source: str) -> None:
    request, sources = resolve_defaults(Txt2VidRequest(prompt="p"), WAN, load_shift)
    assert (request.flow_shift, sources["flow_shift"]) == (expected, source)
    assert (request.video_frames, request.width, request.height) == (33, 832, 480)


def test_a_flow_shift_in_the_request_beats_the_load_options() -> None:
    request, sources = resolve_defaults(Txt2VidRequest(prompt="p", flow_shift=2.0), WAN, 5.0)
    assert request.flow_shift == 2.0 and "flow_shift" not in sources


def test_params_say_where_defaults_came_from() -> None:
    request, sources = resolve_defaults(Txt2ImgRequest(prompt="p", steps=2), FLUX)
    params = msgspec.to_builtins(Txt2ImgJob(request=request, default_sources=sources).params())
    assert params["sampler"] == "euler" and params["steps"] == 2
    assert params["default_sources"] == sources and "steps" not in sources
