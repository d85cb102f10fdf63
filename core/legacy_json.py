"""Upgrade without loss: the JSON state files of versions before the SQLite store are imported on the first
start, then renamed `<name>.imported`. A file that does not decode stops the server (StoreUnusable) and stays
as it is."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from core.generation.defaults import resolve_defaults
from core.generation.previews import SETTINGS_KEY as PREVIEW_SETTINGS_KEY
from core.generation.previews import PreviewSettings
from core.generation.requests import GenerationRequest, Img2ImgRequest, Txt2ImgRequest, Txt2VidRequest
from core.generation.specs import GenerationJob, Img2ImgJob, Txt2ImgJob, Txt2VidJob
from core.job_types import JOB_CODEC
from core.jobs.inputs import IMAGE_INPUTS, InputFiles, InputImage, read_old_image_fields
from core.jobs.records import JobRecord
from core.jobs.schemas import Job, JobSpecBase
from core.models.hashing import CachedHash
from core.models.manager import LOADED_MODEL_KEY
from core.models.schemas import ConvertRequest, DownloadRequest, DownloadSource, LoadModelRequest
from core.models.specs import ConvertJob, DownloadJob, HashJob
from core.prompt_help.schemas import ChatMessage, Enhancement, LlmSettings
from core.store import StoreUnusable
from core.store.sqlite import SqliteStore
from core.upscale.schemas import UpscaleRequest, UpscalerLoadRequest
from core.upscale.specs import UpscaleJob
from core.upscale.upscaler import LOADED_UPSCALER_KEY

log = logging.getLogger("sdcpp_restapi")
T = TypeVar("T")
E = TypeVar("E", Enhancement, ChatMessage)


class _OldRecord(msgspec.Struct):
    job: msgspec.Raw  # a Job whose params are the old free-form dict (_OldParams)
    spec: dict[str, Any] = {}


class _OldParams(msgspec.Struct):
    params: dict[str, Any] = {}


class _OldQueue(msgspec.Struct):
    jobs: list[_OldRecord] = []
    loaded_model: LoadModelRequest | None = None
    loaded_upscaler: UpscalerLoadRequest | None = None


class _OldLlmState(msgspec.Struct):
    settings: LlmSettings
    history: list[msgspec.Raw] = []


def _inputs(params: dict[str, Any], old: dict[str, Any]) -> InputFiles:
    """The saved input files an old spec names; single images take their size from the old params' description."""
    described = read_old_image_fields(params)
    files: dict[str, InputImage | list[InputImage]] = {}
    for image_input in IMAGE_INPUTS:
        if image_input.many:
            paths = old.get(f"{image_input.field}_files")
            if isinstance(paths, list):
                files[image_input.target] = [InputImage(str(path), 0, 0) for path in paths]
        elif isinstance(path := old.get(image_input.target), str):
            image = described.get(image_input.field)
            size = (image.width, image.height) if isinstance(image, InputImage) else (0, 0)
            files[image_input.target] = InputImage(path, *size)
    return InputFiles.of(files)


def _request_fields(spec: dict[str, Any]) -> dict[str, Any]:
    fields = {key: value for key, value in spec.items() if key not in ("inputs", "passes")}
    fields.update({i.field: [] if i.many else "" for i in IMAGE_INPUTS})  # images now live in `inputs`
    return fields


def _old_inputs(spec: dict[str, Any]) -> dict[str, Any]:
    inputs = spec.get("inputs")
    return inputs if isinstance(inputs, dict) else {}


Converter = Callable[[dict[str, Any], dict[str, Any]], JobSpecBase]


def _generation(spec_type: type[GenerationJob], request_type: type[GenerationRequest]) -> Converter:
    def convert(params: dict[str, Any], spec: dict[str, Any]) -> JobSpecBase:
        # Old specs stored every field; anything missing takes the contract's default, as it did then.
        request, _ = resolve_defaults(msgspec.convert(_request_fields(spec), request_type), None)
        return spec_type(request=request, inputs=_inputs(params, _old_inputs(spec)))

    return convert


def _upscale(params: dict[str, Any], spec: dict[str, Any]) -> JobSpecBase:
    return UpscaleJob(
        request=msgspec.convert(_request_fields(spec), UpscaleRequest),
        passes=int(str(spec["passes"])),
        inputs=_inputs(params, _old_inputs(spec)),
    )


def _convert(params: dict[str, Any], spec: dict[str, Any]) -> JobSpecBase:
    return ConvertJob(
        request=msgspec.convert(params, ConvertRequest),
        source=str(spec["input_path"]),
        target=str(spec["output_path"]),
        weight_type=str(spec["output_type"]),
        vae=str(spec["vae_path"]) if spec.get("vae_path") else None,
        output_reference=str(params["output_path"]),
    )


def _download(params: dict[str, Any], spec: dict[str, Any]) -> JobSpecBase:
    source: DownloadSource = msgspec.convert(spec["source"], DownloadSource)
    return DownloadJob(
        request=msgspec.convert(params, DownloadRequest),
        source=source,
        url=str(spec["url"]),
        target=str(spec["target"]),
        path=str(params["path"]),
    )


def _hash(params: dict[str, Any], spec: dict[str, Any]) -> JobSpecBase:
    expected = spec.get("expected_sha256")  # the digest the old job found is its result (HashJob.read_old_params)
    return HashJob(
        model_type=str(params["model_type"]),
        path=str(params["path"]),
        target=str(spec["target"]),
        expected_sha256=str(expected) if expected else None,
        download_job_id=str(spec["download_job_id"]),
    )


# Old job type -> how its free-form spec becomes the typed one.
SPEC_CONVERTERS: dict[str, Converter] = {
    "txt2img": _generation(Txt2ImgJob, Txt2ImgRequest),
    "img2img": _generation(Img2ImgJob, Img2ImgRequest),
    "txt2vid": _generation(Txt2VidJob, Txt2VidRequest),
    "upscale": _upscale,
    "convert": _convert,
    "download": _download,
    "hash": _hash,
}


def _record(old: _OldRecord, path: Path) -> JobRecord:
    try:
        job = msgspec.json.decode(old.job, type=Job)
        params = msgspec.json.decode(old.job, type=_OldParams).params
    except msgspec.ValidationError as exc:
        raise _unusable(path, exc) from None
    job_type = JOB_CODEC.specs.get(job.type)
    if job_type is not None:  # the params as clients saw them, typed (images as {path, width, height})
        with contextlib.suppress(ValueError, TypeError, msgspec.ValidationError):  # else the job lists without them
            job.params, job.result = job_type.read_old_params(params)
    try:
        return JobRecord(job, SPEC_CONVERTERS[job.type](params, old.spec))
    except (KeyError, ValueError, TypeError, msgspec.ValidationError) as exc:
        if job.status == "pending":  # it cannot run: say so rather than drop it
            job.status, job.completed_at = "failed", job.created_at
            job.error = f"could not be imported from the previous version's queue_state.json: {exc}"
        return JobRecord(job, None)


def _read(path: Path, type_: type[T]) -> T:
    try:
        return msgspec.json.decode(path.read_bytes(), type=type_)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise _unusable(path, exc) from None


def _unusable(path: Path, exc: Exception) -> StoreUnusable:
    return StoreUnusable(
        f"cannot import the previous version's state file {path}: {exc}. It was left "
        "untouched: repair or move it away, then start again."
    )


def _queue(store: SqliteStore, path: Path) -> None:
    state = _read(path, _OldQueue)
    store.insert_jobs_blocking([_record(old, path) for old in state.jobs])
    store.set_value_blocking(LOADED_MODEL_KEY, state.loaded_model)
    store.set_value_blocking(LOADED_UPSCALER_KEY, state.loaded_upscaler)


def _hashes(store: SqliteStore, path: Path) -> None:
    store.set_hashes_blocking(_read(path, dict[str, CachedHash]))


def _preview(store: SqliteStore, path: Path) -> None:
    store.set_value_blocking(PREVIEW_SETTINGS_KEY, _read(path, PreviewSettings))


def _llm(feature: str, entry: type[E], entry_id: Callable[[E], str | None]) -> Callable[[SqliteStore, Path], None]:
    def import_state(store: SqliteStore, path: Path) -> None:
        state = _read(path, _OldLlmState)
        entries: list[E] = [msgspec.json.decode(raw, type=entry) for raw in state.history]
        store.set_value_blocking(f"{feature}_settings", state.settings)
        store.history_add_blocking(feature, [(entry_id(e), e) for e in entries], max(len(entries), 1))

    return import_state


def _children(store: SqliteStore, path: Path) -> None:
    for pid, exe in _read(path, dict[int, str]).items():
        store.record_child(pid, exe)


# Old file -> its importer, in this order.
LEGACY_FILES: tuple[tuple[str, Callable[[SqliteStore, Path], None]], ...] = (
    ("queue_state.json", _queue),
    (".hash_cache.json", _hashes),
    (".preview_settings.json", _preview),
    (".ollama_state.json", _llm("ollama", Enhancement, lambda e: e.id)),
    (".assistant_state.json", _llm("assistant", ChatMessage, lambda e: None)),
    (".children.json", _children),
)


def import_legacy_files(store: SqliteStore, output_root: Path) -> None:
    """Import each old state file found in the output folder, then rename it `<name>.imported`. Blocking."""
    for name, importer in LEGACY_FILES:
        path = output_root / name
        if not path.is_file():
            continue
        importer(store, path)
        os.replace(path, path.with_name(name + ".imported"))
        log.warning("imported %s into the state store %s (renamed it %s.imported)", path, store.path, name)
