"""Input images of any job: which request fields carry base64 images, where their decoded files go in the job
folder (`inputs/`), and how a job's params show them ({path, width, height} instead of base64).

The table is shared by the features that take images (generation, upscale) so that saving, params and the store's
import of older params read one declaration.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import anyio
import msgspec

from core.jobs.input_images import save_input
from core.jobs.schemas import JobParams
from core.request_types import Request

S = TypeVar("S", bound=msgspec.Struct)


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
    def of(cls, saved: Mapping[str, InputImage | list[InputImage]]) -> InputFiles:
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


# How versions before typed params wrote a saved input image into params ("<64x48 image: inputs/init_image.png>";
# list items had no size: "<image: inputs/ref_images/0000.png>").
_OLD_IMAGE = re.compile(r"^<(?:(\d+)x(\d+) )?image: (.+)>$")


def request_params(
    request: msgspec.Struct, inputs: InputFiles, params_type: type[JobParams], **extra: object
) -> JobParams:
    """A job's params: the request's fields with each image field replaced by its saved file."""
    fields = msgspec.structs.asdict(request)
    for image_input in IMAGE_INPUTS:
        if image_input.field in fields:
            saved = getattr(inputs, image_input.target)
            fields[image_input.field] = list(saved) if image_input.many else saved
    return params_type(**fields, **extra)


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


def save_inputs(request: msgspec.Struct, job_dir: Path, max_bytes: int, max_pixels: int) -> InputFiles:
    """Decode every input image of the request into job_dir/inputs. Blocking (decoding): run off the event loop."""
    saved: dict[str, InputImage | list[InputImage]] = {}
    for image_input in IMAGE_INPUTS:
        data = getattr(request, image_input.field, None)
        if data is None or (image_input.many and not data):
            continue  # not sent ("" is sent, and refused as an empty image; img2img's submit requires its image)
        if image_input.many:
            files = []
            for index, item in enumerate(data):
                relative = f"inputs/{image_input.field}/{index:04d}.png"
                label = f"{image_input.field}[{index}]"
                size = save_input(item, label, job_dir / relative, max_bytes, max_pixels, image_input.mode)
                files.append(InputImage(relative, *size))
            saved[image_input.target] = files
        else:
            relative = f"inputs/{image_input.target}.png"
            size = save_input(data, image_input.field, job_dir / relative, max_bytes, max_pixels, image_input.mode)
            saved[image_input.target] = InputImage(relative, *size)
    return InputFiles.of(saved)


async def with_saved_inputs(request: S, job_dir: Path, max_bytes: int, max_pixels: int) -> tuple[S, InputFiles]:
    """The request with its images moved to files (the spec stores paths, not base64); nothing is left behind
    when an image is refused."""
    try:
        inputs = await anyio.to_thread.run_sync(save_inputs, request, job_dir, max_bytes, max_pixels)
    except BaseException:
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(job_dir, ignore_errors=True))
        raise
    cleared = {i.field: [] if i.many else "" for i in IMAGE_INPUTS if hasattr(request, i.field)}
    return msgspec.structs.replace(request, **cleared), inputs
