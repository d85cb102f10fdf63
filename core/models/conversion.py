"""Model conversion jobs (`POST /convert`): sd-cli -M convert through the same queue.

Paths name files inside the model folders as "<folder>/<name>" ("diffusion_models/flux.safetensors"), so a
client can neither read nor write outside them. The result is written under a hidden name and renamed into
place on success, so a half-written model is never listed or loaded.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import anyio

from core.errors import BadRequest, NotFound
from core.jobs.queue import JobFailed, JobQueue
from core.models.library import ModelLibrary
from core.models.schemas import ConvertAccepted, ConvertRequest
from core.models.specs import ConvertJob
from core.safe_paths import MAX_NAME_BYTES, check_relative, resolve_inside
from runners.capabilities import Capabilities
from runners.process import run_binary
from runners.sdcli import convert_argv

OUTPUT_EXTENSIONS = (".gguf", ".safetensors")


class ConversionService:
    def __init__(self, queue: JobQueue, library: ModelLibrary, sd_cli: Path, capabilities: Capabilities) -> None:
        self.queue, self.library, self.sd_cli, self.capabilities = queue, library, sd_cli, capabilities

    def _locate(self, reference: str, field: str) -> tuple[str, Path]:
        """(folder key, resolved path) for "<folder>/<name>"."""
        relative = check_relative(reference, field)
        folder_key = relative.parts[0] if len(relative.parts) > 1 else ""
        root = self.library.folders.get(folder_key)
        if root is None:
            raise BadRequest(
                f"{field} must be '<model folder>/<file>' with a folder among "
                f"{', '.join(sorted(self.library.folders))}; got '{reference}'"
            )
        return folder_key, resolve_inside(root, str(PurePosixPath(*relative.parts[1:])), field)

    def prepare(self, request: ConvertRequest) -> ConvertJob:
        """Validated spec; blocking (file checks): run off the event loop."""
        weight_type = request.output_type.lower()
        if weight_type not in self.capabilities.weight_types:
            raise BadRequest(
                f"output_type '{request.output_type}' is not supported by this sd.cpp build; use one of: "
                f"{', '.join(self.capabilities.weight_types)}"
            )
        _, source = self._locate(request.input_path, "input_path")
        if not source.is_file():
            raise NotFound(f"Model not found: {request.input_path}")
        if request.output_path:
            _, target = self._locate(request.output_path, "output_path")
        else:
            target = source.with_name(f"{source.stem}.{weight_type}.gguf")
        if target.suffix.lower() not in OUTPUT_EXTENSIONS:
            raise BadRequest("output_path must end in .gguf or .safetensors")
        if len(hidden_name(target).encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:  # else ENAMETOOLONG later
            raise BadRequest(
                f"output_path: the file name (with the '.converting' name it is written under) would be longer than "
                f"{MAX_NAME_BYTES} bytes; give a shorter output_path"
            )
        if target.exists():
            raise BadRequest(f"output_path already exists: {self._reference(target)}")
        if not target.parent.is_dir():
            raise BadRequest("output_path's folder does not exist")
        vae = None
        if request.vae_path:
            _, vae = self._locate(request.vae_path, "vae_path")
            if not vae.is_file():
                raise NotFound(f"Model not found: {request.vae_path}")
        return ConvertJob(
            request=request,
            source=str(source),
            target=str(target),
            weight_type=weight_type,
            vae=str(vae) if vae else None,
            output_reference=self._reference(target),
        )

    def _reference(self, path: Path) -> str:
        for key, root in self.library.folders.items():
            if path.is_relative_to(root.resolve()):
                return f"{key}/{path.relative_to(root.resolve()).as_posix()}"
        return path.name

    async def submit(self, request: ConvertRequest) -> ConvertAccepted:
        spec = await anyio.to_thread.run_sync(self.prepare, request)
        accepted = await self.queue.submit(spec)
        return ConvertAccepted(accepted.job_id, accepted.status, accepted.position, spec.output_reference)

    async def execute(self, spec: ConvertJob) -> list[str]:
        target = Path(spec.target)
        if target.exists():
            raise JobFailed(f"output_path appeared meanwhile, not overwritten: {target.name}")
        hidden = target.with_name(hidden_name(target))
        argv = convert_argv(
            self.sd_cli,
            Path(spec.source),
            hidden,
            spec.weight_type,
            Path(spec.vae) if spec.vae else None,
            spec.request.tensor_type_rules,
        )
        try:
            result = await run_binary(argv, cwd=target.parent)
            if not result.ok or not hidden.is_file():
                raise JobFailed(result.failure_reason("sd-cli convert"))
            await anyio.to_thread.run_sync(os.replace, hidden, target)
        finally:
            await anyio.Path(hidden).unlink(missing_ok=True)
        return []


def hidden_name(target: Path) -> str:
    """The name a conversion writes under until it is complete."""
    return f".{target.stem}.converting{target.suffix}"
