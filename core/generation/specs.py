"""Job specs of the generation types: the request as understood (seed resolved, input images moved to files in
the job folder) is what runs, after a restart too."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

import msgspec

from core.generation.requests import GenerationRequest, Img2ImgRequest, Txt2ImgRequest, Txt2VidRequest, UpscaleRequest
from core.jobs.schemas import JobParams, JobResult, JobSpecBase
from core.request_types import Request

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

    @classmethod
    def of(cls, saved: dict[str, Any]) -> InputFiles:
        """From {InputFiles attribute: image or images} (what decoding the request's images produced)."""
        return msgspec.convert(saved, cls, from_attributes=True)


_IMAGE_FIELDS = {image_input.field: image_input for image_input in IMAGE_INPUTS}


def params_struct(request: type[Request], name: str, default_sources: bool = True) -> type[JobParams]:
    """The params of a job made from `request`: the request's fields in their order, each image field holding its
    saved file ({path, width, height}) instead of base64, then `default_sources` (where each value the client
    omitted came from). Derived from the request struct so that a new request field shows up without a second
    declaration."""
    fields: list[tuple[str, Any, Any]] = []
    for field in msgspec.structs.fields(request):
        image = _IMAGE_FIELDS.get(field.name)
        if image is not None and image.many:
            fields.append((field.name, list[InputImage], msgspec.field(default_factory=list)))
        elif image is not None:
            required = field.default is msgspec.NODEFAULT and field.default_factory is msgspec.NODEFAULT
            fields.append(
                (field.name, InputImage, msgspec.NODEFAULT) if required else (field.name, InputImage | None, None)
            )
        elif field.default_factory is not msgspec.NODEFAULT:
            fields.append((field.name, field.type, msgspec.field(default_factory=field.default_factory)))
        else:
            fields.append((field.name, field.type, field.default))
    if default_sources:
        fields.append(("default_sources", dict[str, str], msgspec.field(default_factory=dict)))
    made = msgspec.defstruct(name, fields, bases=(JobParams,), module=__name__, forbid_unknown_fields=True)
    assert issubclass(made, JobParams)
    return made


Txt2ImgParams = params_struct(Txt2ImgRequest, "Txt2ImgParams")
Img2ImgParams = params_struct(Img2ImgRequest, "Img2ImgParams")
Txt2VidParams = params_struct(Txt2VidRequest, "Txt2VidParams")
UpscaleParams = params_struct(UpscaleRequest, "UpscaleParams", default_sources=False)
# How versions before typed params wrote a saved input image into params ("<64x48 image: inputs/init_image.png>";
# list items had no size: "<image: inputs/ref_images/0000.png>").
_OLD_IMAGE = re.compile(r"^<(?:(\d+)x(\d+) )?image: (.+)>$")


def _params(spec: GenerationJob | UpscaleJob, **extra: object) -> JobParams:
    """The request's fields with each image field replaced by its saved file."""
    fields = msgspec.structs.asdict(spec.request)
    for image_input in IMAGE_INPUTS:
        if image_input.field in fields:
            saved = getattr(spec.inputs, image_input.target)
            fields[image_input.field] = list(saved) if image_input.many else saved
    return spec.params_type(**fields, **extra)


def _old_image(value: object) -> InputImage | None:
    match = _OLD_IMAGE.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    return InputImage(match[3], int(match[1] or 0), int(match[2] or 0))


def read_old_image_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Params of a version before typed params with their image strings read back as InputImage fields."""
    read = dict(fields)
    for name in _IMAGE_FIELDS.keys() & fields.keys():
        value = fields[name]
        images = [_old_image(item) for item in (value if isinstance(value, list) else [value])]
        read[name] = [image for image in images if image] if isinstance(value, list) else images[0]
    return read


class GenerationJob(JobSpecBase):
    request: GenerationRequest  # omitted architecture-following fields already filled (core.generation.defaults)
    inputs: InputFiles = msgspec.field(default_factory=InputFiles)
    default_sources: dict[str, str] = {}  # field the client omitted -> where its value came from

    def params(self) -> JobParams:
        return _params(self, default_sources=dict(self.default_sources))

    @classmethod
    def read_old_params(cls, fields: dict[str, Any]) -> tuple[JobParams, JobResult | None]:
        return super().read_old_params(read_old_image_fields(fields))

    @property
    def total_images(self) -> int:
        return self.request.batch_count

    @property
    def wanted_model(self) -> str | None:
        return self.request.model

    @property
    def prompt(self) -> str:
        return self.request.prompt


class Txt2ImgJob(GenerationJob, tag="txt2img"):
    params_type: ClassVar[type[JobParams]] = Txt2ImgParams
    request: Txt2ImgRequest


class Img2ImgJob(GenerationJob, tag="img2img"):
    params_type: ClassVar[type[JobParams]] = Img2ImgParams
    request: Img2ImgRequest


class Txt2VidJob(GenerationJob, tag="txt2vid"):
    params_type: ClassVar[type[JobParams]] = Txt2VidParams
    request: Txt2VidRequest


class UpscaleJob(JobSpecBase, tag="upscale"):
    params_type: ClassVar[type[JobParams]] = UpscaleParams
    request: UpscaleRequest
    passes: int  # ESRGAN passes that reach upscale_factor
    inputs: InputFiles = msgspec.field(default_factory=InputFiles)

    def params(self) -> JobParams:
        return _params(self)

    @classmethod
    def read_old_params(cls, fields: dict[str, Any]) -> tuple[JobParams, JobResult | None]:
        return super().read_old_params(read_old_image_fields(fields))


class JobConfig(msgspec.Struct, omit_defaults=True):
    """config.json in the job folder: every effective parameter and what ran it."""

    job_id: str
    type: str
    params: JobParams
    engine: str
    model: str | None = None
    model_type: str | None = None
    model_architecture: str | None = None
    components: dict[str, str | None] | None = None
    upscaler: str | None = None
    scale_per_pass: int | None = None
    passes: int | None = None
    worker: str | None = None  # the [[workers]] name that ran it


GENERATION_JOBS: dict[str, type[GenerationJob]] = {"txt2img": Txt2ImgJob, "img2img": Img2ImgJob, "txt2vid": Txt2VidJob}
