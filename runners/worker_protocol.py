"""The line protocol of our resident worker (`sdcpp-worker`, the C++ in runners/worker/): one JSON job per line on
its stdin (or a cancel of the running job, or a load or unload of a resident model), JSON answers per line on its
stdout. These structs are the protocol's one definition: the header comment of worker.cpp is made from them
(`python -m runners.worker_protocol`), and tests/unit/test_worker_protocol.py fails when the two differ or when the
worker accepts other fields or modes.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Annotated, Literal, get_args

import msgspec
from msgspec import Meta

NotEmpty = Annotated[str, Meta(min_length=1)]


class PreviewRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Write the running job's preview to `path` every `interval` sampling steps and at the last one (written whole,
    then renamed into place); the steps between are not decoded at all."""

    mode: Literal["proj", "tae", "vae"]
    path: NotEmpty
    noisy: Annotated[bool, Meta(description="preview the noisy latent instead of the denoised one")] = False
    interval: Annotated[int, Meta(ge=1, le=10000, description="sampling steps between two previews")] = 1


class JobRequest(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    """One generation. A line that is not one (not JSON, not an object, a field missing, of the wrong type or
    unknown) is refused with an `error` answer: nothing is filled in with a default."""

    job_id: NotEmpty
    mode: Literal["img_gen", "vid_gen"]
    args: Annotated[list[str], Meta(description="generation flags as sd-cli spells them")]
    output: Annotated[str, Meta(min_length=1, description='"<folder>/image_%d.png" or "<folder>/video.webm"')]
    preview: PreviewRequest | None = None
    model: Annotated[
        str,
        Meta(
            description="the resident model to run on, by the name it was loaded under (empty: the most recently used)"
        ),
    ] = ""


class LoadRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Load a model beside the resident ones, under the name `load` (in place of a resident model of that name);
    run in order with the job lines. Answered `models`, or `load_failed` (the other models stay loaded)."""

    load: Annotated[str, Meta(min_length=1, description="the name the model is resident under")]
    args: Annotated[list[str], Meta(description="context flags as sd-cli spells them")]


class UnloadRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Free the resident model named `unload` (nothing if none is); run in order with the job lines. Answered
    `models`."""

    unload: Annotated[str, Meta(min_length=1, description="the name the model is resident under")]


class CancelRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Stop the job `cancel` names: read at once, also while a job runs. The running job stops at its next sampling
    step (or, past its last one, once that image is decoded) and answers `cancelled`, listing the images of its batch
    already saved, which stay; the model stays loaded. A job line
    still waiting is dropped with the same answer; a cancel naming no running or waiting job is ignored (that job
    has had its answer). A malformed cancel line is refused with an `error` answer."""

    cancel: Annotated[str, Meta(min_length=1, description="the job_id of the job to stop")]


class Ready(msgspec.Struct, tag="ready", tag_field="type"):
    """The model is loaded; job lines are read from now on."""


class Fatal(msgspec.Struct, tag="fatal", tag_field="type"):
    """The model could not be loaded; the worker exits (code 1, or 2 for invalid model arguments)."""

    error: str


class ResidentModel(msgspec.Struct):
    """A model the worker holds."""

    name: str
    mib: Annotated[int, Meta(description="its model files' sizes in MiB: the estimate of what it takes")]


class Models(msgspec.Struct, tag="models", tag_field="type"):
    """The resident models, least recently used first: after `ready` and after each load or unload line."""

    models: list[ResidentModel]
    loads: Annotated[int, Meta(description="sd contexts made since the worker started (the first model's included)")]


class LoadFailed(msgspec.Struct, tag="load_failed", tag_field="type"):
    """A load line's model could not be loaded; the other resident models stay loaded."""

    model: str
    error: str


class Progress(msgspec.Struct, tag="progress", tag_field="type"):
    """A sampling step of the job finished."""

    job_id: str
    step: int
    steps: int
    time: Annotated[float, Meta(description="seconds the step took")]


class Preview(msgspec.Struct, tag="preview", tag_field="type"):
    """A preview of the job was written to `path`."""

    job_id: str
    step: int
    frames: int
    path: str
    is_noisy: bool


class Done(msgspec.Struct, tag="done", tag_field="type"):
    """The job finished; `outputs` are the files written."""

    job_id: str
    outputs: list[str]


class Failed(msgspec.Struct, tag="failed", tag_field="type"):
    """The job failed (bad arguments, an input that cannot be read, an exception); the model stays loaded."""

    job_id: str
    error: str


class Saved(msgspec.Struct, tag="saved", tag_field="type"):
    """An image of the job was written to `path` (each image of a batch as soon as it is decoded, before `done`)."""

    job_id: str
    path: str


class Cancelled(msgspec.Struct, tag="cancelled", tag_field="type", omit_defaults=True):
    """The job was stopped by a cancel line; the model stays loaded. The images of a batch finished before the
    cancel are kept."""

    job_id: str
    outputs: Annotated[list[str], Meta(description="the images saved before the cancel")] = []


class LineError(msgspec.Struct, tag="error", tag_field="type", omit_defaults=True):
    """A line was refused (see JobRequest); the worker reads the next one."""

    error: Annotated[str, Meta(description="the field and the rule it broke")]
    job_id: Annotated[str | None, Meta(description="when the line had a string job_id")] = None


Message = Ready | Fatal | Models | LoadFailed | Progress | Preview | Saved | Done | Failed | Cancelled | LineError
JobEvent = Progress | Preview | Saved

WORKER_SOURCE = Path(__file__).resolve().parent / "worker" / "worker.cpp"
PROTOCOL_BEGIN = "// BEGIN PROTOCOL"
PROTOCOL_END = "// END PROTOCOL"


def _type_text(info: msgspec.inspect.Type) -> str:
    if isinstance(info, msgspec.inspect.Metadata):
        return _type_text(info.type)
    if isinstance(info, msgspec.inspect.StrType):
        return "string (not empty)" if info.min_length else "string"
    if isinstance(info, msgspec.inspect.BoolType):
        return "true | false"
    if isinstance(info, msgspec.inspect.IntType):
        return "integer"
    if isinstance(info, msgspec.inspect.FloatType):
        return "number"
    if isinstance(info, msgspec.inspect.NoneType):
        return "null"
    if isinstance(info, msgspec.inspect.LiteralType):
        return " | ".join(json.dumps(value) for value in info.values)
    if isinstance(info, msgspec.inspect.ListType):
        return f"[{_type_text(info.item_type)}, ...]"
    if isinstance(info, msgspec.inspect.StructType):
        return info.cls.__name__
    if isinstance(info, msgspec.inspect.UnionType):
        return " | ".join(_type_text(member) for member in info.types)
    raise TypeError(f"the protocol text has no words for {info!r}")


def _struct_text(struct: type[msgspec.Struct]) -> list[str]:
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    fields = [f'"{info.tag_field}": {json.dumps(info.tag)}'] if info.tag_field else []
    notes = []
    for field in info.fields:
        value = field.default if field.default_factory is msgspec.NODEFAULT else field.default_factory()
        default = "" if field.required else f" (default {json.dumps(msgspec.to_builtins(value))})"
        fields.append(f'"{field.encode_name}"{"" if field.required else "?"}: {_type_text(field.type)}{default}')
        if isinstance(field.type, msgspec.inspect.Metadata) and field.type.extra_json_schema:
            notes.append(f"{field.encode_name}: {field.type.extra_json_schema['description']}")
    head = f"{struct.__name__} {{{', '.join(fields)}}}"
    about = " ".join((struct.__doc__ or "").split())
    text = [head, *(f"  {line}" for line in textwrap.wrap(about, 112)), *(f"  - {note}" for note in notes)]
    return [wrapped for line in text for wrapped in textwrap.wrap(line, 117, subsequent_indent="      ")]


def protocol_comment() -> str:
    """The protocol block of worker.cpp's header comment, made from the structs above."""
    lines = [
        "BEGIN PROTOCOL (made from runners/worker_protocol.py by `python -m runners.worker_protocol`; a unit test checks it)",
        "A job is one JSON object on one line of stdin (`?` marks a field that may be left out):",
        *_struct_text(JobRequest),
        *_struct_text(PreviewRequest),
        "A cancel, a load and an unload are one JSON object on one line of stdin too:",
        *_struct_text(CancelRequest),
        *_struct_text(LoadRequest),
        *_struct_text(UnloadRequest),
        *_struct_text(ResidentModel),
        "Answers are JSON objects, one per line on stdout, told apart by their type:",
        *(line for message in get_args(Message) for line in _struct_text(message)),
        "END PROTOCOL",
    ]
    return "\n".join(f"// {line}" for line in lines)


def committed_protocol_comment(source: str) -> str:
    start, end = source.index(PROTOCOL_BEGIN), source.index(PROTOCOL_END)
    return source[start : source.index("\n", end) if "\n" in source[end:] else len(source)]


if __name__ == "__main__":
    cpp = WORKER_SOURCE.read_text()
    WORKER_SOURCE.write_text(cpp.replace(committed_protocol_comment(cpp), protocol_comment()))
