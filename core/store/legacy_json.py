"""Upgrade without loss: the JSON state files of versions before the SQLite store are imported on the first
start, then renamed `<name>.imported`. A file that does not decode stops the server (StoreUnusable) and stays
as it is."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Callable, TypeVar

import msgspec

from core.generation.previews import SETTINGS_KEY as PREVIEW_SETTINGS_KEY, PreviewSettings
from core.generation.defaults import resolve_defaults
from core.generation.requests import GenerationRequest, Img2ImgRequest, Txt2ImgRequest, Txt2VidRequest, UpscaleRequest
from core.generation.specs import IMAGE_INPUTS, Img2ImgJob, InputFiles, InputImage, Txt2ImgJob, Txt2VidJob, UpscaleJob
from core.jobs.schemas import Job
from core.jobs.specs import JobRecord, JobSpec
from core.models.manager import LOADED_MODEL_KEY
from core.models.schemas import ConvertRequest, DownloadRequest, LoadModelRequest, UpscalerLoadRequest
from core.models.specs import ConvertJob, DownloadJob, HashJob
from core.models.upscaler import LOADED_UPSCALER_KEY
from core.prompt_help.schemas import ChatMessage, Enhancement, LlmSettings
from core.store import CachedHash, StoreUnusable
from core.store.sqlite import SqliteStore

log = logging.getLogger("sdcpp_restapi")
T = TypeVar("T")
E = TypeVar("E", Enhancement, ChatMessage)
_SIZE = re.compile(r"^<(\d+)x(\d+) image: ")


class _OldRecord(msgspec.Struct):
    job: Job
    spec: dict[str, object] = {}


class _OldQueue(msgspec.Struct):
    jobs: list[_OldRecord] = []
    loaded_model: LoadModelRequest | None = None
    loaded_upscaler: UpscalerLoadRequest | None = None


class _OldLlmState(msgspec.Struct):
    settings: LlmSettings
    history: list[msgspec.Raw] = []


def _inputs(job: Job, old: dict[str, object]) -> InputFiles:
    files: dict[str, object] = {}
    for image_input in IMAGE_INPUTS:
        if image_input.many:
            paths = old.get(f"{image_input.field}_files")
            if isinstance(paths, list):
                files[image_input.target] = [InputImage(str(path), 0, 0) for path in paths]
        elif isinstance(path := old.get(image_input.target), str):
            size = _SIZE.match(str(job.params.get(image_input.field, "")))
            files[image_input.target] = InputImage(path, int(size[1]) if size else 0, int(size[2]) if size else 0)
    return InputFiles(**files)  # type: ignore[arg-type]


def _request_fields(spec: dict[str, object]) -> dict[str, object]:
    fields = {key: value for key, value in spec.items() if key not in ("inputs", "passes")}
    fields.update({i.field: [] if i.many else "" for i in IMAGE_INPUTS})  # images now live in `inputs`
    return fields


def _generation(spec_type: type, request_type: type) -> Callable[[Job, dict[str, object]], JobSpec]:
    def convert(job: Job, spec: dict[str, object]) -> JobSpec:
        inputs = spec.get("inputs") if isinstance(spec.get("inputs"), dict) else {}
        # Old specs stored every field; anything missing takes the contract's default, as it did then.
        request: GenerationRequest = msgspec.convert(_request_fields(spec), request_type)
        request, _ = resolve_defaults(request, None)
        return spec_type(request=request, inputs=_inputs(job, inputs))  # type: ignore[no-any-return, arg-type]
    return convert


def _upscale(job: Job, spec: dict[str, object]) -> JobSpec:
    inputs = spec.get("inputs") if isinstance(spec.get("inputs"), dict) else {}
    return UpscaleJob(request=msgspec.convert(_request_fields(spec), UpscaleRequest), passes=int(str(spec["passes"])),
                      inputs=_inputs(job, inputs))  # type: ignore[arg-type]


def _convert(job: Job, spec: dict[str, object]) -> JobSpec:
    params = job.params
    return ConvertJob(request=msgspec.convert(params, ConvertRequest), source=str(spec["input_path"]),
                      target=str(spec["output_path"]), weight_type=str(spec["output_type"]),
                      vae=str(spec["vae_path"]) if spec.get("vae_path") else None,
                      output_reference=str(params["output_path"]))


def _download(job: Job, spec: dict[str, object]) -> JobSpec:
    return DownloadJob(request=msgspec.convert(job.params, DownloadRequest), source=spec["source"],  # type: ignore[arg-type]
                       url=str(spec["url"]), target=str(spec["target"]), path=str(job.params["path"]))


def _hash(job: Job, spec: dict[str, object]) -> JobSpec:
    expected, digest = spec.get("expected_sha256"), job.params.get("sha256")
    return HashJob(model_type=str(job.params["model_type"]), path=str(job.params["path"]), target=str(spec["target"]),
                   expected_sha256=str(expected) if expected else None, download_job_id=str(spec["download_job_id"]),
                   sha256=str(digest) if digest else None)


# Old job type -> how its free-form spec becomes the typed one.
SPEC_CONVERTERS: dict[str, Callable[[Job, dict[str, object]], JobSpec]] = {
    "txt2img": _generation(Txt2ImgJob, Txt2ImgRequest),
    "img2img": _generation(Img2ImgJob, Img2ImgRequest),
    "txt2vid": _generation(Txt2VidJob, Txt2VidRequest),
    "upscale": _upscale,
    "convert": _convert,
    "download": _download,
    "hash": _hash,
}


def _record(old: _OldRecord) -> JobRecord:
    job = old.job
    try:
        return JobRecord(job, SPEC_CONVERTERS[job.type](job, old.spec))
    except (KeyError, ValueError, TypeError, msgspec.ValidationError) as exc:
        if job.status == "pending":  # it cannot run: say so rather than drop it
            job.status, job.completed_at = "failed", job.created_at
            job.error = f"could not be imported from the previous version's queue_state.json: {exc}"
        return JobRecord(job, None)


def _read(path: Path, type_: type[T]) -> T:
    try:
        return msgspec.json.decode(path.read_bytes(), type=type_)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise StoreUnusable(f"cannot import the previous version's state file {path}: {exc}. It was left "
                            "untouched: repair or move it away, then start again.") from None


def _queue(store: SqliteStore, path: Path) -> None:
    state = _read(path, _OldQueue)
    store.insert_jobs_blocking([_record(old) for old in state.jobs])
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
