"""Job specs of the generation types: the request as understood (seed resolved, input images moved to files in
the job folder) is what runs, after a restart too."""

from __future__ import annotations

from typing import Literal

import msgspec

from core.generation.requests import GenerationRequest, Img2ImgRequest, Txt2ImgRequest, Txt2VidRequest, UpscaleRequest
from core.jobs.schemas import JobSpecBase

PillowMode = Literal["RGB", "L"]


class ImageInput(msgspec.Struct, frozen=True):
    """A request field carrying base64 image(s), where the decoded files go, and what sd.cpp reads them as."""

    field: str  # request field
    target: str  # InputFiles attribute
    mode: PillowMode = "RGB"
    many: bool = False  # a list of images
    folder_flag: str | None = None  # sd-cli reads this list as a folder (flag source key), not as files


IMAGE_INPUTS: tuple[ImageInput, ...] = (
    ImageInput("init_image_base64", "init_image"),
    ImageInput("mask_image_base64", "mask_image", mode="L"),
    ImageInput("control_image_base64", "control_image"),
    ImageInput("end_image_base64", "end_image"),
    ImageInput("image_base64", "image"),
    ImageInput("ref_images", "ref_images", many=True),
    ImageInput("control_frames", "control_frames", many=True, folder_flag="control_video"),
    ImageInput("pm_id_images", "pm_id_images", many=True, folder_flag="pm_id_images_dir"),
)


class InputImage(msgspec.Struct, frozen=True):
    path: str  # relative to the job folder
    width: int
    height: int


class InputFiles(msgspec.Struct, omit_defaults=True):
    init_image: InputImage | None = None
    mask_image: InputImage | None = None
    control_image: InputImage | None = None
    end_image: InputImage | None = None
    image: InputImage | None = None
    ref_images: list[InputImage] = []
    control_frames: list[InputImage] = []
    pm_id_images: list[InputImage] = []


def _params_with_inputs(request: msgspec.Struct, inputs: InputFiles) -> dict[str, object]:
    """The request's fields, with each image field replaced by a description of its saved file."""
    params = msgspec.to_builtins(request)
    for spec in IMAGE_INPUTS:
        params.pop(spec.field, None)
        saved = getattr(inputs, spec.target)
        if spec.many and saved:
            params[spec.field] = [f"<image: {image.path}>" for image in saved]
        elif not spec.many and saved is not None:
            params[spec.field] = f"<{saved.width}x{saved.height} image: {saved.path}>"
    return params


class GenerationJob(JobSpecBase):
    request: GenerationRequest  # omitted architecture-following fields already filled (core.generation.defaults)
    inputs: InputFiles = msgspec.field(default_factory=InputFiles)
    default_sources: dict[str, str] = {}  # field the client omitted -> where its value came from

    def params(self) -> dict[str, object]:
        params = _params_with_inputs(self.request, self.inputs)
        if self.default_sources:
            params["default_sources"] = dict(self.default_sources)
        return params

    @property
    def total_images(self) -> int:
        return self.request.batch_count

    @property
    def prompt(self) -> str:
        return self.request.prompt


class Txt2ImgJob(GenerationJob, tag="txt2img"):
    request: Txt2ImgRequest


class Img2ImgJob(GenerationJob, tag="img2img"):
    request: Img2ImgRequest


class Txt2VidJob(GenerationJob, tag="txt2vid"):
    request: Txt2VidRequest


class UpscaleJob(JobSpecBase, tag="upscale"):
    request: UpscaleRequest
    passes: int  # ESRGAN passes that reach upscale_factor
    inputs: InputFiles = msgspec.field(default_factory=InputFiles)

    def params(self) -> dict[str, object]:
        return _params_with_inputs(self.request, self.inputs)


class JobConfig(msgspec.Struct, omit_defaults=True):
    """config.json in the job folder: every effective parameter and what ran it."""

    job_id: str
    type: str
    params: dict[str, object]
    engine: str
    model: str | None = None
    model_type: str | None = None
    model_architecture: str | None = None
    components: dict[str, str | None] | None = None
    upscaler: str | None = None
    scale_per_pass: int | None = None
    passes: int | None = None


GENERATION_JOBS: dict[str, type[GenerationJob]] = {"txt2img": Txt2ImgJob, "img2img": Img2ImgJob, "txt2vid": Txt2VidJob}
