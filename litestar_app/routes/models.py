from __future__ import annotations

from typing import Any

import anyio
import msgspec
from litestar import Request, get, post

from litestar_app.body import decode_body
from orchestrator.downloads import DownloadRequest
from orchestrator.model_types import MODEL_TYPES
from orchestrator.schemas import LoadModelRequest, LoadModelResponse, ModelEntry, SuccessMessage
from orchestrator.service import Service


@get("/models")
async def list_models(
    service: Service, type: str | None = None, extension: str | None = None,
    search: str | None = None, name: str | None = None,
) -> dict[str, Any]:
    wanted_type = service.library.model_type(type, "type").name if type else None
    wanted_ext = ("." + extension.lower().lstrip(".")) if extension else None
    needle = (search if search is not None else name or "").lower()
    scanned = await anyio.to_thread.run_sync(service.library.scan_all)
    loaded = service.models.loaded
    loaded_key = (loaded.request.model_type, loaded.name) if loaded else None
    body: dict[str, Any] = {}
    for kind in MODEL_TYPES:
        entries = []
        if wanted_type in (None, kind.name):
            for model in scanned[kind.name]:
                extension_of = model.path.suffix.lower()
                if (wanted_ext and extension_of != wanted_ext) or (needle and needle not in model.name.lower()):
                    continue
                entries.append(ModelEntry(
                    name=model.name, type=kind.name, file_extension=extension_of, size_bytes=model.size_bytes,
                    hash=service.hashes.known(model.path, model.size_bytes, model.mtime_ns), is_loaded=((kind.name, model.name) == loaded_key) if kind.loadable else None,
                ))
        body[kind.list_key] = msgspec.to_builtins(entries)
        for entry in body[kind.list_key]:
            entry.setdefault("hash", None)
    body["loaded_model"] = loaded.name if loaded else None
    body["loaded_model_type"] = loaded.request.model_type if loaded else None
    filters = {"type": type, "extension": extension, "search": search if search is not None else name}
    if any(value for value in filters.values()):
        body["applied_filters"] = {key: value for key, value in filters.items() if value}
    return body


@post("/models/load", status_code=200)
async def load_model(request: Request, service: Service) -> LoadModelResponse:
    load = await decode_body(request, LoadModelRequest)
    loaded = await service.models.load(load)
    await service.queue.persist()
    return LoadModelResponse(True, "Model loaded successfully", loaded.name, load.model_type, loaded.components())


@post("/models/unload", status_code=200)
async def unload_model(service: Service) -> SuccessMessage:
    await service.models.unload()
    await service.queue.persist()
    return SuccessMessage(True, "Model unloaded")


@get("/models/hash/{model_type:str}/{model_name:path}")
async def model_hash(service: Service, model_type: str, model_name: str) -> dict[str, str]:
    name = model_name.lstrip("/")
    kind = service.library.model_type(model_type)
    path = await anyio.to_thread.run_sync(service.library.resolve, kind.name, name, "model_name")
    return {"model_name": name, "model_type": kind.name, "hash": await service.hashes.hash_of(path)}


@get("/models/paths", sync_to_thread=False)
def model_paths(service: Service) -> dict[str, str]:
    # Keys as in the spec's example (singular "lora" and "controlnet", "t5" for the T5 folder).
    keys = {"checkpoints": "checkpoints", "diffusion_models": "diffusion_models", "vae": "vae", "loras": "lora",
            "clip": "clip", "t5": "t5", "embeddings": "embeddings", "controlnet": "controlnet", "llm": "llm",
            "esrgan": "esrgan", "taesd": "taesd"}
    return {keys[folder]: str(path) for folder, path in service.library.folders.items()}


@post("/models/download", status_code=202)
async def download_model(request: Request, service: Service) -> dict[str, Any]:
    return await service.downloads.submit(await decode_body(request, DownloadRequest))


@get("/models/civitai/{reference:str}")
async def civitai_info(service: Service, reference: str) -> dict[str, Any]:
    return await service.downloads.civitai_info(reference)


@get("/models/huggingface")
async def huggingface_info(service: Service, repo_id: str, filename: str, revision: str = "main") -> dict[str, Any]:
    return await service.downloads.huggingface_info(repo_id, filename, revision)


ROUTES = [list_models, load_model, unload_model, model_hash, model_paths, download_model, civitai_info,
          huggingface_info]
