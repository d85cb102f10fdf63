"""The model types of the spec's "Model Types" table: one row per type, read everywhere."""

from __future__ import annotations

import msgspec


class ModelType(msgspec.Struct, frozen=True):
    name: str  # the `type` value in requests and model objects
    folder: str  # default sub-folder of the models root, and its key under [paths] and /models/paths
    list_key: str  # key of its list in GET /models
    loadable: bool = False  # a main model: its entries carry `is_loaded`
    # The file types this type may have, when narrower than MODEL_EXTENSIONS.
    extensions: frozenset[str] | None = None

    def accepts(self, suffix: str) -> bool:
        return suffix.lower() in (self.extensions or MODEL_EXTENSIONS)


MODEL_TYPES: tuple[ModelType, ...] = (
    ModelType("checkpoint", "checkpoints", "checkpoints", loadable=True),
    ModelType("diffusion", "diffusion_models", "diffusion_models", loadable=True),
    ModelType("vae", "vae", "vae"),
    # sd-server indexes only these LoRA files: a .ckpt, .sft or .bin LoRA would fail its job.
    ModelType("lora", "loras", "loras", extensions=frozenset({".gguf", ".pt", ".pth", ".safetensors"})),
    ModelType("clip", "clip", "clip"),
    ModelType("t5", "t5", "t5"),
    ModelType("controlnet", "controlnet", "controlnets"),
    ModelType("llm", "llm", "llm"),
    ModelType("esrgan", "esrgan", "esrgan"),
    ModelType("taesd", "taesd", "taesd"),
    ModelType("embedding", "embeddings", "embeddings"),
)
BY_NAME: dict[str, ModelType] = {t.name: t for t in MODEL_TYPES}

# Files sd.cpp can load (safetensors, GGUF, torch pickles); anything else in a model folder is not listed.
MODEL_EXTENSIONS = frozenset({".safetensors", ".gguf", ".ckpt", ".pt", ".pth", ".bin", ".sft"})
