"""The routes of core.models: /health (the loaded model and upscaler), /models/* (files, load and unload, hashes,
inspection, folders, types, downloads), /convert and /architectures."""

from __future__ import annotations

from typing import Annotated

import anyio
from litestar import get, post
from litestar.params import Parameter

from core.models.architecture import Architectures
from core.models.components import COMPONENTS
from core.models.schemas import (
    CivitaiInfo,
    ConvertAccepted,
    ConvertRequest,
    DownloadAccepted,
    DownloadRequest,
    HealthResponse,
    HuggingfaceInfo,
    LoadModelRequest,
    LoadModelResponse,
    MainModelType,
    ModelHash,
    ModelInspection,
    ModelListing,
    ModelPaths,
    ModelTypeTable,
)
from core.models.types import MODEL_TYPES
from core.request_types import SuccessMessage
from core.service import Service
from core.workers.schemas import WorkerInfo


@get("/health", sync_to_thread=False, summary="Server, model and upscaler state")
def health(service: Service) -> HealthResponse:
    return service.health()


@get("/workers", sync_to_thread=False, summary="The workers sharing the queue: state, job, resident models, memory")
def workers(service: Service) -> list[WorkerInfo]:
    return service.workers()


@get("/models", summary="Model files per type, with filters")
async def list_models(
    service: Service,
    type: Annotated[str | None, Parameter(description="one model type (checkpoint, diffusion, lora, ...)")] = None,
    extension: Annotated[str | None, Parameter(description="file extension, with or without the dot")] = None,
    search: Annotated[str | None, Parameter(description="name contains this text (case-insensitive)")] = None,
    name: Annotated[str | None, Parameter(description="alias of search")] = None,
) -> ModelListing:
    return await service.library.listing(
        service.hashes, service.models.loaded, type, extension, search if search is not None else name
    )


@post("/models/load", status_code=200, summary="Load a model (starts its resident process)")
async def load_model(data: LoadModelRequest, service: Service) -> LoadModelResponse:
    loaded = await service.models.load(data)
    return LoadModelResponse(True, "Model loaded successfully", loaded.name, data.model_type, loaded.components())


@post("/models/unload", status_code=200, summary="Unload the model (stops its resident process)")
async def unload_model(service: Service) -> SuccessMessage:
    await service.models.unload()
    return SuccessMessage(True, "Model unloaded")


@get("/models/hash/{model_type:str}/{model_name:path}", summary="SHA-256 of a model file (cached)")
async def model_hash(service: Service, model_type: str, model_name: str) -> ModelHash:
    name = model_name.lstrip("/")
    kind = service.library.model_type(model_type)
    path = await anyio.to_thread.run_sync(service.library.resolve, kind.name, name, "model_name")
    return ModelHash(name, kind.name, await service.hashes.hash_of(path))


@get("/models/inspect", summary="A main model's architecture, its preset and its remembered load profile")
async def inspect_model(
    service: Service,
    model_name: Annotated[str, Parameter(description="name as listed by GET /models")],
    model_type: Annotated[MainModelType, Parameter(description="checkpoint or diffusion")] = "checkpoint",
) -> ModelInspection:
    return await service.models.inspect(model_type, model_name)


@get("/models/paths", sync_to_thread=False, summary="The model folders")
def model_paths(service: Service) -> ModelPaths:
    return service.library.paths()


@get("/models/types", sync_to_thread=False, summary="The model types (folders, keys) and the components a load takes")
def model_types() -> ModelTypeTable:
    return ModelTypeTable(list(MODEL_TYPES), list(COMPONENTS))


@post("/models/download", status_code=202, summary="Download a model (URL, CivitAI or HuggingFace)")
async def download_model(data: DownloadRequest, service: Service) -> DownloadAccepted:
    return await service.downloads.submit(data)


@get("/models/civitai/{reference:str}", summary="CivitAI model metadata: 123456 or 123456:789012")
async def civitai_info(service: Service, reference: str) -> CivitaiInfo:
    return await service.downloads.civitai_info(reference)


@get("/models/huggingface", summary="HuggingFace file metadata")
async def huggingface_info(service: Service, repo_id: str, filename: str, revision: str = "main") -> HuggingfaceInfo:
    return await service.downloads.huggingface_info(repo_id, filename, revision)


@post("/convert", status_code=202, summary="Queue a model conversion (sd-cli -M convert)")
async def convert(data: ConvertRequest, service: Service) -> ConvertAccepted:
    return await service.conversion.submit(data)


@get("/architectures", sync_to_thread=False, summary="Architecture presets and the loaded model's")
def architectures(service: Service) -> Architectures:
    return service.architectures()


ROUTES = [
    health,
    workers,
    list_models,
    load_model,
    unload_model,
    model_hash,
    inspect_model,
    model_paths,
    model_types,
    download_model,
    civitai_info,
    huggingface_info,
    convert,
    architectures,
]
