"""Every field of every compatibility face, with the value a client sends and what it must become in our request (or
the behaviour it has), as the API the face imitates defines it. A guard per struct asserts that the table names
every field (msgspec.structs.fields), so a field added without a meaning fails here; a field a face accepts and
ignores is listed with the reason.

Faces: AUTOMATIC1111 (/sdapi/v1 txt2img, img2img, options), OpenAI (images.generate JSON, images.edit multipart),
MCP (the generate tool's arguments), sd-server (`<sd_cpp_extra_args>` in prompts and the structured `lora` list).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import msgspec
import pytest
from PIL import Image

from core.compat import a1111, openai
from core.compat.a1111 import A1111Img2Img, A1111Options, A1111Txt2Img
from core.compat.openai import ImageGeneration
from core.compat.sd_server import LoraItem, extract_extra_args
from core.errors import BadRequest
from core.generation.requests import GenerationRequest, Img2ImgRequest, Txt2ImgRequest, Txt2VidRequest
from core.jobs.schemas import JobAccepted
from core.request_types import convert_request
from core.upscale.schemas import UpscaleRequest
from litestar_app.mcp_tools import GENERATE_SCHEMA, REQUEST_TYPES, AgentTools, GenerateControl
from runners.options import SERVER_FIELDS

SAMPLERS = ("euler", "euler_a", "heun", "dpm2", "dpm++2s_a", "dpm++2m", "dpm++2mv2", "ipndm", "lcm", "ddim_trailing")
SCHEDULERS = ("discrete", "karras", "exponential", "ays", "gits", "sgm_uniform", "simple", "kl_optimal", "lcm")
LIMITS = (10_000_000, 10_000_000)
DEFAULTS_TXT = Txt2ImgRequest(prompt="")


def png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def pixels(b64: str | None, mode: str = "L") -> list[int]:
    assert b64 is not None
    return list(Image.open(io.BytesIO(base64.b64decode(b64))).convert(mode).tobytes())


def grey_row(*levels: int) -> Image.Image:
    image = Image.new("L", (len(levels), 1))
    image.putdata(list(levels))
    return image


def rgba_row(*pixels_: tuple[int, int, int, int]) -> Image.Image:
    image = Image.new("RGBA", (len(pixels_), 1))
    image.putdata(list(pixels_))
    return image


IMAGE = png(Image.new("RGB", (4, 1), (9, 9, 9)))
IMAGE2 = png(Image.new("RGB", (4, 1), (200, 9, 9)))
GREY_MASK = png(grey_row(255, 0, 200, 10))  # A1111: grey levels, white = repaint
ALPHA_MASK = png(rgba_row((0, 0, 0, 255), (255, 255, 255, 0), (0, 0, 0, 200), (255, 255, 255, 100)))


@dataclass(frozen=True)
class Row:
    """One case of one field: `value` sent (with `also` sent alongside), then `check` on what the face made of it
    (our request, and the face's parsed body), or `ignored` (the reason) when the face accepts it and does nothing."""

    value: object
    check: Callable[[Any, Any], bool] | None = None
    ignored: str = ""
    also: dict[str, object] = field(default_factory=dict)


def ids(table: list[tuple[str, Row]]) -> list[str]:
    return [f"{name}={row.value!r}"[:60] for name, row in table]


# ------------------------------------------------------------------------------------------ AUTOMATIC1111
# r: our GenerationRequest, b: the parsed A1111 body
A1111_COMMON: list[tuple[str, Row]] = [
    ("prompt", Row("a cat", lambda r, b: r.prompt == "a cat")),
    (
        "prompt",
        Row(
            'a cat <sd_cpp_extra_args>{"sample_params": {"sample_steps": 3}}</sd_cpp_extra_args>',
            lambda r, b: r.prompt == "a cat" and r.steps == 3,
        ),
    ),
    ("negative_prompt", Row("blurry", lambda r, b: r.negative_prompt == "blurry")),
    ("width", Row(320, lambda r, b: r.width == 320)),
    ("height", Row(192, lambda r, b: r.height == 192)),
    ("steps", Row(7, lambda r, b: r.steps == 7)),
    ("cfg_scale", Row(4.5, lambda r, b: r.cfg_scale == 4.5)),
    ("seed", Row(42, lambda r, b: r.seed == 42)),
    ("seed", Row(-1, lambda r, b: r.seed == -1)),  # random, resolved at submit; info reports the one used
    ("sampler_name", Row("Euler a", lambda r, b: r.sampler == "euler_a" and r.scheduler is None)),
    ("sampler_name", Row("DPM++ 2M Karras", lambda r, b: (r.sampler, r.scheduler) == ("dpm++2m", "karras"))),
    (
        "sampler_name",
        Row("DPM++ 2M", lambda r, b: (r.sampler, r.scheduler) == ("dpm++2m", "karras"), also={"scheduler": "Karras"}),
    ),
    ("sampler_name", Row("k_euler", lambda r, b: r.sampler == "euler")),
    ("sampler_name", Row("dpm++2mv2", lambda r, b: r.sampler == "dpm++2mv2")),  # sd.cpp's own names pass
    ("sampler_index", Row("Euler", lambda r, b: r.sampler == "euler")),  # A1111 < 1.6
    ("sampler_index", Row("Euler", lambda r, b: r.sampler == "heun", also={"sampler_name": "Heun"})),
    ("scheduler", Row("Karras", lambda r, b: r.scheduler == "karras")),
    ("scheduler", Row("sgm_uniform", lambda r, b: r.scheduler == "sgm_uniform")),
    ("scheduler", Row("SGMUniform", lambda r, b: r.scheduler == "sgm_uniform")),
    ("scheduler", Row("Align Your Steps", lambda r, b: r.scheduler == "ays")),
    ("scheduler", Row("align_your_steps_GITS", lambda r, b: r.scheduler == "gits")),
    ("scheduler", Row("Automatic", lambda r, b: r.scheduler is None)),  # the model's default
    ("scheduler", Row("Polyexponential", lambda r, b: r.scheduler is None)),  # A1111 lists it, sd.cpp has none
    ("batch_size", Row(2, lambda r, b: r.batch_count == 2)),
    ("n_iter", Row(3, lambda r, b: r.batch_count == 3)),
    ("n_iter", Row(3, lambda r, b: r.batch_count == 6, also={"batch_size": 2})),  # batch_size x n_iter images
    ("clip_skip", Row(1, lambda r, b: r.clip_skip == DEFAULTS_TXT.clip_skip)),  # A1111's 1 is no skip
    ("clip_skip", Row(2, lambda r, b: r.clip_skip == 2)),
    ("eta", Row(0.4, lambda r, b: r.eta == 0.4)),
    ("override_settings", Row({"CLIP_stop_at_last_layers": 2}, lambda r, b: r.clip_skip == 2)),
    ("override_settings", Row({"CLIP_stop_at_last_layers": 3.0}, lambda r, b: r.clip_skip == 3)),
    ("override_settings", Row({"CLIP_stop_at_last_layers": 1}, lambda r, b: r.clip_skip == DEFAULTS_TXT.clip_skip)),
    ("override_settings", Row({"sd_model_checkpoint": "m [abc]"}, lambda r, b: a1111.model_choice(b) == "m [abc]")),
    (
        "override_settings",
        Row({"sd_model_checkpoint": "a"}, lambda r, b: a1111.model_choice(b) == "a", also={"model": "b"}),
    ),
    ("model", Row("b.gguf", lambda r, b: a1111.model_choice(b) == "b.gguf")),  # SillyTavern's sd.cpp source
    (
        "lora",
        Row(
            [{"path": "styles/ink.safetensors", "multiplier": 0.5}],
            lambda r, b: r.prompt.endswith("<lora:styles/ink:0.5>"),
        ),
    ),
    ("send_images", Row(False, lambda r, b: not b.send_images)),  # the response's `images` is [] (route)
]
A1111_TXT2IMG = [
    *A1111_COMMON,
    ("denoising_strength", Row(0.3, ignored="A1111 uses it on txt2img only for the hires fix, which sd.cpp lacks")),
]
A1111_IMG2IMG: list[tuple[str, Row]] = [
    *[(name, row) for name, row in A1111_COMMON],
    ("init_images", Row([IMAGE], lambda r, b: r.init_image_base64 == IMAGE)),
    ("init_images", Row([IMAGE, IMAGE2], lambda r, b: r.init_image_base64 == IMAGE)),  # one init image per job
    ("mask", Row(GREY_MASK, lambda r, b: pixels(r.mask_image_base64) == [255, 0, 200, 10])),
    # an RGBA mask with transparency: A1111 reads its alpha (create_binary_mask: alpha > 128 = repaint)
    ("mask", Row(ALPHA_MASK, lambda r, b: pixels(r.mask_image_base64) == [255, 0, 255, 0])),
    (
        "inpainting_mask_invert",
        Row(1, lambda r, b: pixels(r.mask_image_base64) == [0, 255, 55, 245], also={"mask": GREY_MASK}),
    ),
    (
        "inpainting_mask_invert",
        Row(True, lambda r, b: pixels(r.mask_image_base64) == [0, 255, 0, 255], also={"mask": ALPHA_MASK}),
    ),
    (
        "inpainting_mask_invert",
        Row(0, lambda r, b: pixels(r.mask_image_base64) == [255, 0, 200, 10], also={"mask": GREY_MASK}),
    ),
    ("denoising_strength", Row(0.3, lambda r, b: r.strength == 0.3)),
    ("image_cfg_scale", Row(1.5, lambda r, b: r.img_cfg_scale == 1.5)),
    ("denoising_strength", Row(1.5, lambda r, b: r.strength == 1.0)),  # clamped as A1111 clamps
    ("denoising_strength", Row(-0.2, lambda r, b: r.strength == 0.0)),
]
A1111_OPTIONS: list[tuple[str, Row]] = [
    ("sd_model_checkpoint", Row("m [abc]", lambda r, b: b.sd_model_checkpoint == "m [abc]")),  # loads it (route)
]
# Fields of A1111's own request models that we do not declare: A1111's models (pydantic create_model without an
# `extra` setting) ignore unknown fields, and so do ours; these standard ones are accepted and change nothing.
A1111_STANDARD_IGNORED: dict[str, tuple[object, str]] = {
    "enable_hr": (True, "hires fix: sd.cpp has no second pass"),
    "hr_scale": (2.0, "hires fix"),
    "hr_upscaler": ("Latent", "hires fix"),
    "hr_second_pass_steps": (10, "hires fix"),
    "restore_faces": (True, "no face restorer in sd.cpp"),
    "tiling": (True, "seamless tiling: sd.cpp has --circular, our requests have no field for it yet"),
    "subseed": (7, "variation seeds: sd.cpp has none"),
    "subseed_strength": (0.5, "variation seeds"),
    "seed_resize_from_h": (64, "variation seeds"),
    "styles": (["cinematic"], "A1111's styles.csv templates: this server has none (A1111 skips unknown styles)"),
    "s_churn": (0.1, "k-diffusion sampler settings: sd.cpp's samplers have none"),
    "alwayson_scripts": ({"controlnet": {"args": []}}, "A1111 extensions"),
    "script_name": ("x/y/z plot", "A1111 scripts (GET /scripts lists none)"),
    "script_args": ([1], "A1111 scripts"),
    "save_images": (True, "every job is saved in the output folder anyway"),
    "do_not_save_samples": (True, "every job is saved in the output folder anyway"),
    "override_settings_restore_afterwards": (True, "the chosen model stays loaded (a queue, not a UI session)"),
    "refiner_checkpoint": ("r.safetensors", "no refiner pass in sd.cpp"),
    "mask_blur": (4, "img2img: sd.cpp applies the mask as sent"),
    "inpainting_fill": (1, "img2img: sd.cpp fills masked areas its own way"),
    "inpaint_full_res": (True, "img2img: sd.cpp inpaints the whole image"),
    "resize_mode": (1, "img2img: sd.cpp resizes the init image to width x height"),
    "include_init_images": (True, "A1111's response option; images are never echoed"),
}


def a1111_request(type_: type[A1111Txt2Img] | type[A1111Img2Img], body: dict[str, object]) -> GenerationRequest:
    parsed = msgspec.json.decode(msgspec.json.encode(body), type=type_)
    return a1111.to_request(parsed, SAMPLERS, SCHEDULERS, LIMITS)


@pytest.mark.parametrize(
    ("type_", "table"), [(A1111Txt2Img, A1111_TXT2IMG), (A1111Img2Img, A1111_IMG2IMG), (A1111Options, A1111_OPTIONS)]
)
def test_a1111_tables_cover_every_field(type_: type[msgspec.Struct], table: list[tuple[str, Row]]) -> None:
    assert {name for name, _ in table} == {f.name for f in msgspec.structs.fields(type_)}


def _run_a1111(type_: type[A1111Txt2Img] | type[A1111Img2Img], name: str, row: Row) -> None:
    base: dict[str, object] = {"init_images": [IMAGE]} if type_ is A1111Img2Img else {}
    body = {**base, **row.also, name: row.value}
    result = a1111_request(type_, body)
    if row.ignored:
        assert result == a1111_request(type_, {**base, **row.also}), row.ignored
    else:
        assert row.check is not None
        assert row.check(result, msgspec.json.decode(msgspec.json.encode(body), type=type_)), result


@pytest.mark.parametrize(("name", "row"), A1111_TXT2IMG, ids=ids(A1111_TXT2IMG))
def test_a1111_txt2img_field(name: str, row: Row) -> None:
    _run_a1111(A1111Txt2Img, name, row)


@pytest.mark.parametrize(("name", "row"), A1111_IMG2IMG, ids=ids(A1111_IMG2IMG))
def test_a1111_img2img_field(name: str, row: Row) -> None:
    _run_a1111(A1111Img2Img, name, row)


@pytest.mark.parametrize(("name", "row"), A1111_OPTIONS, ids=ids(A1111_OPTIONS))
def test_a1111_options_field(name: str, row: Row) -> None:
    assert row.check is not None
    assert row.check(None, msgspec.json.decode(msgspec.json.encode({name: row.value}), type=A1111Options))


@pytest.mark.parametrize("name", sorted(A1111_STANDARD_IGNORED))
def test_a1111_standard_fields_we_do_not_map_are_accepted_and_change_nothing(name: str) -> None:
    value, _reason = A1111_STANDARD_IGNORED[name]
    for type_ in (A1111Txt2Img, A1111Img2Img):
        base: dict[str, object] = {"prompt": "p", "init_images": [IMAGE]} if type_ is A1111Img2Img else {"prompt": "p"}
        assert a1111_request(type_, {**base, name: value}) == a1111_request(type_, base)


@pytest.mark.parametrize(
    ("field_", "value", "rule"),
    [("sampler_name", "DPM fast", "unknown sampler"), ("scheduler", "nonsense", "unknown scheduler")],
)
def test_a1111_names_sd_cpp_lacks_are_refused_naming_the_field(field_: str, value: str, rule: str) -> None:
    with pytest.raises(BadRequest, match=f"^{field_}: {rule}"):
        a1111_request(A1111Txt2Img, {field_: value})


# ------------------------------------------------------------------------------------------ OpenAI
# r: our GenerationRequest, b: the parsed ImageGeneration
def openai_generation(body: dict[str, object]) -> tuple[GenerationRequest, ImageGeneration]:
    """What POST /v1/images/generations makes of a JSON body (litestar_app/routes/openai.py `generations`)."""
    parsed = msgspec.json.decode(msgspec.json.encode({"prompt": "p", **body}), type=ImageGeneration)
    size = openai.parse_size(parsed.size, None)
    return openai.to_request(parsed.prompt, parsed.n, size, parsed.partial_images if parsed.stream else 0), parsed


def openai_edit(form: dict[str, object]) -> tuple[GenerationRequest, ImageGeneration]:
    """What POST /v1/images/edits makes of a multipart form (`edits`): text fields as strings, files as base64."""
    images = [*form.get("image[]", []), *form.get("image", [])]  # type: ignore[misc]
    sent = {"prompt": "p", **form}  # a form carries text: what a client's multipart encoder writes
    fields = {key: str(value) for key, value in sent.items() if key not in EDIT_FILES and value is not None}
    options = convert_request(fields, ImageGeneration, strict=False)
    mask = openai.edit_mask(images[0], form.get("mask"), *LIMITS)  # type: ignore[arg-type]
    size = openai.parse_size(options.size, None)
    partials = options.partial_images if options.stream else 0
    return openai.to_request(options.prompt, options.n, size, partials, images[0], mask, images[1:]), options


def jpeg(options: ImageGeneration) -> bytes:
    return openai.encode(base64.b64decode(IMAGE), options.output_format, options.output_compression)


DEFAULT_SIZE = openai.parse_size("auto", None)
OPENAI_GENERATION: list[tuple[str, Row]] = [
    ("prompt", Row("a cat", lambda r, b: r.prompt == "a cat")),
    (
        "prompt",
        Row('a <sd_cpp_extra_args>{"seed": 5}</sd_cpp_extra_args>', lambda r, b: (r.prompt, r.seed) == ("a", 5)),
    ),
    ("model", Row("dall-e-3", lambda r, b: b.wants_url)),  # OpenAI's default response_format for dall-e: url
    ("model", Row("gpt-image-1", lambda r, b: not b.wants_url)),  # gpt-image models answer base64
    ("model", Row("tiny.safetensors", lambda r, b: not b.wants_url)),  # ours; also selects that model (route)
    ("n", Row(3, lambda r, b: r.batch_count == 3)),
    ("size", Row("320x192", lambda r, b: (r.width, r.height) == (320, 192))),
    ("size", Row("auto", lambda r, b: (r.width, r.height) == DEFAULT_SIZE)),
    ("response_format", Row("url", lambda r, b: b.wants_url)),
    ("response_format", Row("b64_json", lambda r, b: not b.wants_url, also={"model": "dall-e-2"})),
    ("response_format", Row(None, lambda r, b: b.wants_url)),  # no model: dall-e-2, whose default is url
    ("output_format", Row("jpeg", lambda r, b: jpeg(b)[:2] == b"\xff\xd8" and not b.wants_url)),
    ("output_format", Row("webp", lambda r, b: jpeg(b)[8:12] == b"WEBP")),
    (
        "output_compression",
        Row(
            10,
            lambda r, b: len(jpeg(b)) < len(jpeg(msgspec.structs.replace(b, output_compression=100))),
            also={"output_format": "jpeg"},
        ),
    ),
    ("stream", Row(True, lambda r, b: r.preview is None and b.stream)),  # no partial images asked: no previews
    ("partial_images", Row(2, lambda r, b: (r.preview, r.preview_count) == (True, 2), also={"stream": True})),
    ("partial_images", Row(2, lambda r, b: r.preview is None and r.preview_count is None)),  # only when streaming
    ("quality", Row("high", ignored="sd.cpp's quality is steps and cfg_scale; echoed in the response")),
    ("background", Row("transparent", ignored="sd.cpp paints opaque images; the response says 'opaque'")),
    ("style", Row("vivid", ignored="dall-e-3's style has no sd.cpp counterpart")),
    ("moderation", Row("low", ignored="no moderation here")),
    ("user", Row("u-1", ignored="an end-user id for OpenAI's abuse monitoring")),
]
EDIT_FILES = ("image", "image[]", "mask")
OPENAI_EDIT: list[tuple[str, Row]] = [
    *[(name, row) for name, row in OPENAI_GENERATION if name not in ("n", "size", "stream", "partial_images")],
    ("n", Row("2", lambda r, b: r.batch_count == 2)),  # form fields are text
    ("size", Row("128x64", lambda r, b: (r.width, r.height) == (128, 64))),
    ("stream", Row("true", lambda r, b: b.stream and r.preview is None)),
    ("partial_images", Row("1", lambda r, b: (r.preview, r.preview_count) == (True, 1), also={"stream": "true"})),
    ("image", Row([IMAGE], lambda r, b: r.init_image_base64 == IMAGE and r.mask_image_base64 is None)),
    ("image[]", Row([IMAGE, IMAGE2], lambda r, b: r.init_image_base64 == IMAGE and r.ref_images == [IMAGE2])),
    # OpenAI: the mask's fully transparent pixels (alpha 0) are the area to edit
    ("mask", Row(ALPHA_MASK, lambda r, b: pixels(r.mask_image_base64) == [0, 255, 0, 0])),
]


@pytest.mark.parametrize(
    ("table", "extra"), [(OPENAI_GENERATION, ()), (OPENAI_EDIT, EDIT_FILES)], ids=["generations", "edits"]
)
def test_openai_tables_cover_every_field(table: list[tuple[str, Row]], extra: tuple[str, ...]) -> None:
    assert {name for name, _ in table} == {f.name for f in msgspec.structs.fields(ImageGeneration)} | set(extra)


@pytest.mark.parametrize(("name", "row"), OPENAI_GENERATION, ids=ids(OPENAI_GENERATION))
def test_openai_generation_field(name: str, row: Row) -> None:
    result, parsed = openai_generation({**row.also, name: row.value})
    if row.ignored:
        assert result == openai_generation(row.also)[0], row.ignored
    else:
        assert row.check is not None
        assert row.check(result, parsed), result


@pytest.mark.parametrize(("name", "row"), OPENAI_EDIT, ids=ids(OPENAI_EDIT))
def test_openai_edit_field(name: str, row: Row) -> None:
    base: dict[str, object] = {} if name in ("image", "image[]") else {"image": [IMAGE]}
    result, parsed = openai_edit({**base, **row.also, name: row.value})
    if row.ignored:
        assert result == openai_edit({**base, **row.also})[0], row.ignored
    else:
        assert row.check is not None
        assert row.check(result, parsed), result


# ------------------------------------------------------------------------------------------ sd-server extra args
def sample(type_: Any, default: object) -> object:
    """A valid value of `type_` that differs from `default` (msgspec.inspect types)."""
    info = msgspec.inspect
    if isinstance(type_, info.Metadata):
        return sample(type_.type, default)
    if isinstance(type_, info.UnionType):
        options = [t for t in type_.types if not isinstance(t, info.NoneType)]
        return sample(options[0], None)
    if isinstance(type_, info.BoolType):
        return default is not True
    if isinstance(type_, info.IntType):
        low = type_.ge if type_.ge is not None else (type_.gt + 1 if type_.gt is not None else 0)
        value = (default if isinstance(default, int) else low) + 1
        return min(value, type_.le) if type_.le is not None else value
    if isinstance(type_, info.FloatType):
        high = type_.le if type_.le is not None else 100.0
        number = 0.5 if default != 0.5 else 0.25
        return min(number * high, high) if high <= 1.0 else number + 2
    if isinstance(type_, info.StrType):
        return "x"
    if isinstance(type_, info.ListType):
        return [sample(type_.item_type, None)]
    if isinstance(type_, info.LiteralType):
        return next(v for v in type_.values if v != default)
    raise AssertionError(f"no sample for {type_}")


def field_sample(struct: type[msgspec.Struct], name: str) -> object:
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    found = next(f for f in info.fields if f.name == name)
    default = found.default if found.default is not msgspec.NODEFAULT else None
    if found.default_factory is not msgspec.NODEFAULT:
        default = found.default_factory()
    return sample(found.type, default)


# Native names that our requests spell otherwise, and fields sd-server's body carries that we read from elsewhere.
SD_SERVER_SPECIAL: dict[str, Row] = {
    "prompt": Row("from extra", lambda r, b: r.prompt == "from extra"),
    "init_image": Row(IMAGE, lambda r, b: r.init_image_base64 == IMAGE),
    "mask_image": Row(IMAGE, lambda r, b: r.mask_image_base64 == IMAGE),
    "control_image": Row(IMAGE, lambda r, b: r.control_image_base64 == IMAGE),
    "end_image": Row(IMAGE, lambda r, b: r.end_image_base64 == IMAGE),
    "lora": Row([{"path": "ink.safetensors", "multiplier": 0.7}], lambda r, b: r.prompt.endswith("<lora:ink:0.7>")),
    "cache_mode": Row("easycache", lambda r, b: r.easycache),
    "cache_option": Row(
        "threshold=0.3,start=0.2,end=0.9",
        lambda r, b: (r.easycache_threshold, r.easycache_start, r.easycache_end) == (0.3, 0.2, 0.9),
    ),
}


def nest(path: tuple[str, ...], value: object) -> dict[str, object]:
    for key in reversed(path):
        value = {key: value}
    assert isinstance(value, dict)
    return value


def via_extra_args(native: dict[str, object], type_: type[GenerationRequest]) -> GenerationRequest:
    prompt, fields = extract_extra_args(
        f"a cat <sd_cpp_extra_args>{msgspec.json.encode(native).decode()}</sd_cpp_extra_args>"
    )
    return convert_request({"prompt": prompt, **fields}, type_)


@pytest.mark.parametrize("spec", SERVER_FIELDS, ids=[spec.field for spec in SERVER_FIELDS])
def test_sd_server_extra_arg(spec: Any) -> None:
    """Every native field sd-server reads from `<sd_cpp_extra_args>` lands in the request field of that meaning."""
    type_ = next(
        t
        for t in (Img2ImgRequest, Txt2VidRequest)
        if spec.field in t.__struct_fields__ or spec.field in SD_SERVER_SPECIAL
    )
    if spec.field in SD_SERVER_SPECIAL:
        row = SD_SERVER_SPECIAL[spec.field]
        type_ = Txt2VidRequest if spec.field == "end_image" else Img2ImgRequest
        result = via_extra_args(nest(spec.path, row.value), type_)
        assert row.check is not None
        assert row.check(result, None), result
        return
    value = field_sample(type_, spec.field)
    result = via_extra_args(nest(spec.path, value), type_)
    assert getattr(result, spec.field) == value


def test_sd_server_tables_cover_every_native_field() -> None:
    """A native field neither ours by name nor in SD_SERVER_SPECIAL would be dropped silently."""
    ours = set(Img2ImgRequest.__struct_fields__) | set(Txt2VidRequest.__struct_fields__)
    assert {spec.field for spec in SERVER_FIELDS} - ours <= set(SD_SERVER_SPECIAL)
    assert set(SD_SERVER_SPECIAL) - {"prompt"} <= {spec.field for spec in SERVER_FIELDS} - ours


@pytest.mark.parametrize(
    ("native", "rule"),
    [
        ({"lora": "ink"}, "prompt: sd_cpp_extra_args lora: "),
        ({"lora": [{"multiplier": 1}]}, "prompt: sd_cpp_extra_args lora: "),
        ({"cache_mode": "ucache"}, "prompt: sd_cpp_extra_args cache_mode: only 'easycache'"),
        ({"cache_option": "speed=2"}, "prompt: sd_cpp_extra_args cache_option: unknown key 'speed'"),
        ({"cache_option": "threshold=fast"}, "prompt: sd_cpp_extra_args cache_option: threshold must be a number"),
        ({"cache_option": "threshold=inf"}, "easycache_threshold: must be a finite number"),
        ({"cache_option": "start=2"}, "easycache_start: "),
    ],
)
def test_sd_server_extra_args_refused_naming_the_field(native: dict[str, object], rule: str) -> None:
    with pytest.raises(BadRequest) as refused:
        via_extra_args(native, Img2ImgRequest)
    assert refused.value.message.startswith(rule), refused.value.message


LORA_ITEM: list[tuple[str, Row]] = [
    ("path", Row("sub/ink.safetensors", lambda r, b: r.prompt.endswith("<lora:sub/ink:1>"))),
    ("multiplier", Row(0.25, lambda r, b: r.prompt.endswith("<lora:ink:0.25>"), also={"path": "ink"})),
    ("is_high_noise", Row(True, lambda r, b: r.prompt.endswith("<lora:|high_noise|ink:1>"), also={"path": "ink"})),
]


def test_lora_item_table_covers_every_field() -> None:
    assert {name for name, _ in LORA_ITEM} == {f.name for f in msgspec.structs.fields(LoraItem)}


@pytest.mark.parametrize(("name", "row"), LORA_ITEM, ids=ids(LORA_ITEM))
def test_sd_server_lora_item_field(name: str, row: Row) -> None:
    result = a1111_request(A1111Txt2Img, {"prompt": "a cat", "lora": [{**row.also, name: row.value}]})
    assert row.check is not None
    assert row.check(result, None), result.prompt


# ------------------------------------------------------------------------------------------ MCP generate
class FakeService:
    """What AgentTools.generate uses of the service: the submission and the idempotency wrapper."""

    def __init__(self) -> None:
        self.submitted: list[tuple[str, msgspec.Struct]] = []
        self.generation = self.upscale = self.idempotency = self

    async def submit(self, *args: Any) -> JobAccepted:
        if len(args) == 5:  # idempotency.submit(key, route, request, submit, type)
            self.keys = args[:2]
            return await args[3]()
        job_type, request = args if len(args) == 2 else ("upscale", args[0])
        self.submitted.append((job_type, request))
        return JobAccepted(job_id="j1", status="pending", position=0)


def mcp_generate(arguments: dict[str, object]) -> tuple[FakeService, Any]:
    service = FakeService()
    tools = AgentTools(service, lambda base, path: f"{base}/output/{path}")  # type: ignore[arg-type]

    async def call() -> Any:
        async def progress(*_: object) -> None:
            return None

        return await tools.generate(arguments, progress, "http://h")

    return service, anyio.run(call)


MCP_CONTROL: list[tuple[str, Row]] = [
    (
        "type",
        Row("img2img", lambda s, res: s.submitted[0][0] == "img2img" and isinstance(s.submitted[0][1], Img2ImgRequest)),
    ),
    (
        "type",
        Row("upscale", lambda s, res: isinstance(s.submitted[0][1], UpscaleRequest), also={"image_base64": IMAGE}),
    ),
    (
        "wait",
        Row(False, lambda s, res: res.status == "pending" and res.outputs == []),
    ),  # true: tests/integration/test_mcp.py
    ("timeout_seconds", Row(5.0, lambda s, res: res.job_id == "j1")),  # used only with wait (test_mcp.py)
    ("idempotency_key", Row("k-1", lambda s, res: s.keys == ("k-1", "mcp:generate:txt2img"))),
]


def test_mcp_generate_schema_covers_the_control_and_every_request_field() -> None:
    assert {name for name, _ in MCP_CONTROL} == set(GenerateControl.__struct_fields__)
    request_fields = set().union(*(t.__struct_fields__ for t in REQUEST_TYPES.values()))
    assert set(GENERATE_SCHEMA["properties"]) == set(GenerateControl.__struct_fields__) | request_fields  # type: ignore[call-overload]


@pytest.mark.parametrize(("name", "row"), MCP_CONTROL, ids=ids(MCP_CONTROL))
def test_mcp_generate_control_field(name: str, row: Row) -> None:
    arguments = {"type": "txt2img", "prompt": "p", **row.also, name: row.value}
    service, result = mcp_generate(arguments)
    assert row.check is not None
    assert row.check(service, result), (service.submitted, result)


MCP_REQUEST_FIELDS = sorted(
    (kind, name) for kind, type_ in REQUEST_TYPES.items() for name in type_.__struct_fields__ if name != "prompt"
)


@pytest.mark.parametrize(("kind", "name"), MCP_REQUEST_FIELDS, ids=[f"{k}.{n}" for k, n in MCP_REQUEST_FIELDS])
def test_mcp_generate_request_field(kind: str, name: str) -> None:
    """The tool takes the REST request's fields as they are: each lands unchanged in the submitted request."""
    type_ = REQUEST_TYPES[kind]
    value = field_sample(type_, name)
    base: dict[str, object] = {"image_base64": IMAGE} if kind == "upscale" else {"prompt": "p"}
    service, _ = mcp_generate({"type": kind, **base, name: value})
    assert getattr(service.submitted[0][1], name) == value
