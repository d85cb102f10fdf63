"""The model types of the spec's "Model Types" table: one row per type, read everywhere.

The model folders, GET /models's lists, GET /models/paths's keys, the settings' [paths] keys and the web UI's
type and folder choices (through GET /models/types) come from `MODEL_TYPES`; the tests check the explicit
response structs (`ModelListing`, `ModelPaths`) against it.
"""

from __future__ import annotations

import msgspec


class ModelType(msgspec.Struct, frozen=True):
    name: str  # the `type` value in requests and model objects
    folder: str  # default sub-folder of the models root, its key under [paths], and "<folder>/" in POST /convert
    list_key: str  # key of its list in GET /models
    path_key: str  # key of its folder in GET /models/paths (the spec's example says "lora" for the loras folder)
    loadable: bool = False  # a main model: its entries carry `is_loaded`
    # The file types this type may have, when narrower than MODEL_EXTENSIONS.
    extensions: tuple[str, ...] | None = None

    def accepts(self, suffix: str) -> bool:
        return suffix.lower() in (self.extensions or MODEL_EXTENSIONS)


MODEL_TYPES: tuple[ModelType, ...] = (
    ModelType("checkpoint", "checkpoints", "checkpoints", "checkpoints", loadable=True),
    ModelType("diffusion", "diffusion_models", "diffusion_models", "diffusion_models", loadable=True),
    ModelType("vae", "vae", "vae", "vae"),
    # sd-server indexes only these LoRA files: a .ckpt, .sft or .bin LoRA would fail its job.
    ModelType("lora", "loras", "loras", "lora", extensions=(".gguf", ".pt", ".pth", ".safetensors")),
    ModelType("clip", "clip", "clip", "clip"),
    ModelType("t5", "t5", "t5", "t5"),
    ModelType("controlnet", "controlnet", "controlnets", "controlnet"),
    ModelType("llm", "llm", "llm", "llm"),
    ModelType("esrgan", "esrgan", "esrgan", "esrgan"),
    ModelType("taesd", "taesd", "taesd", "taesd"),
    ModelType("embedding", "embeddings", "embeddings", "embeddings"),
)
BY_NAME: dict[str, ModelType] = {t.name: t for t in MODEL_TYPES}

# Files sd.cpp can load (safetensors, GGUF, torch pickles); anything else in a model folder is not listed.
MODEL_EXTENSIONS = frozenset({".safetensors", ".gguf", ".ckpt", ".pt", ".pth", ".bin", ".sft"})
