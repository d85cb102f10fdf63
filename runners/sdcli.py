"""argv for sd-cli's modes, built from the flag tables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from runners.flags import build_argv
from runners.options import (
    CLI_ONLY_CONTEXT_FLAGS,
    CONTEXT_FLAGS,
    GENERATION_FLAGS,
    PREVIEW_FLAGS,
    UPSCALE_FLAGS,
    ContextOptions,
    GenerationOptions,
    PreviewOptions,
    UpscaleOptions,
)

CliMode = Literal["img_gen", "vid_gen"]


def generation_argv(
    sd_cli: str | Path,
    mode: CliMode,
    context: ContextOptions,
    generation: GenerationOptions,
    output: Path,
    preview: PreviewOptions | None = None,
) -> list[str]:
    """A full sd-cli command line; `output` may hold a `%d` pattern for numbered results."""
    return [
        str(sd_cli),
        "--mode",
        mode,
        *build_argv(CONTEXT_FLAGS + CLI_ONLY_CONTEXT_FLAGS, context),
        *build_argv(GENERATION_FLAGS, generation),
        *(build_argv(PREVIEW_FLAGS, preview) if preview is not None else []),
        "--output",
        str(output),
    ]


def generation_args(generation: GenerationOptions) -> list[str]:
    """The generation flags alone (what the resident worker takes per job; it has the model flags already)."""
    return build_argv(GENERATION_FLAGS, generation)


def upscale_argv(sd_cli: str | Path, options: UpscaleOptions) -> list[str]:
    # Metadata is off: upscale mode would otherwise embed a misleading "img_gen" parameters chunk.
    return [str(sd_cli), "--mode", "upscale", *build_argv(UPSCALE_FLAGS, options), "--disable-image-metadata"]


def convert_argv(
    sd_cli: str | Path,
    source: Path,
    output: Path,
    weight_type: str,
    vae: Path | None = None,
    tensor_type_rules: str = "",
) -> list[str]:
    # Convert mode reads only -m (--diffusion-model passes validation but is ignored there).
    argv = [str(sd_cli), "--mode", "convert", "--model", str(source), "--output", str(output), "--type", weight_type]
    if vae is not None:
        argv += ["--vae", str(vae)]
    return argv + (["--tensor-type-rules", tensor_type_rules] if tensor_type_rules else [])
