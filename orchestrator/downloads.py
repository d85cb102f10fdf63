"""Model downloads from a URL, CivitAI or HuggingFace, through the downloads lane of the queue.

Each download is two jobs: the download (streamed to a hidden `.part` file, renamed into the model folder
when complete) and a hash job (SHA-256 off the event loop, cached for /models, checked against the
source's published hash; a mismatching file is deleted). CivitAI and HuggingFace are reached through
configurable base URLs, so tests and mirrors can stand in for them. Tokens are sent at download time and
never stored in the queue state.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import anyio
import httpx
import msgspec

from orchestrator.errors import BadRequest, NotFound, ServiceError
from orchestrator.hashing import HashCache
from orchestrator.library import ModelLibrary
from orchestrator.model_types import MODEL_EXTENSIONS
from orchestrator.queue import JobFailed, JobQueue, JobRecord, ProgressReport
from orchestrator.safe_paths import check_relative, resolve_inside
from runners.progress import SamplingStep

Source = Literal["url", "civitai", "huggingface"]
MIB = 1024 * 1024
# CivitAI's model types -> ours
CIVITAI_TYPES = {"Checkpoint": "checkpoint", "LORA": "lora", "LoCon": "lora", "DoRA": "lora",
                 "TextualInversion": "embedding", "VAE": "vae", "Controlnet": "controlnet", "Upscaler": "esrgan"}


class DownloadSettings(msgspec.Struct, forbid_unknown_fields=True):
    huggingface_url: str = "https://huggingface.co"
    civitai_url: str = "https://civitai.com"
    huggingface_token: str = ""
    civitai_token: str = ""


class DownloadRequest(msgspec.Struct):
    model_type: str
    source: Source | None = None
    model_id: str | None = None
    url: str | None = None
    repo_id: str | None = None
    filename: str | None = None
    subfolder: str | None = None
    revision: str = "main"


class UpstreamError(ServiceError):
    status = 502


class DownloadService:
    def __init__(self, queue: JobQueue, library: ModelLibrary, hashes: HashCache, settings: DownloadSettings) -> None:
        self.queue, self.library, self.hashes, self.settings = queue, library, hashes, settings

    # ------------------------------------------------------------------------------------ upstreams

    def _auth(self, source: str) -> dict[str, str]:
        token = {"huggingface": self.settings.huggingface_token, "civitai": self.settings.civitai_token}.get(source)
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def _get_json(self, source: str, url: str) -> Any:
        try:
            async with httpx.AsyncClient(timeout=30, follow_redirects=True) as http:
                response = await http.get(url, headers=self._auth(source))
        except httpx.HTTPError as exc:
            raise UpstreamError(f"{source} is not reachable: {exc}") from None
        if response.status_code == 404:
            raise NotFound(f"Not found on {source}: {url}")
        if response.status_code >= 400:
            raise UpstreamError(f"{source} answered {response.status_code} for {url}")
        try:
            return response.json()
        except ValueError:
            raise UpstreamError(f"{source} answered with something that is not JSON") from None

    async def civitai_info(self, reference: str) -> dict[str, Any]:
        """`123456` (latest version) or `123456:789012` (that version)."""
        model_id, _, version_id = reference.partition(":")
        if not model_id.isdigit() or (version_id and not version_id.isdigit()):
            raise BadRequest("id must be a CivitAI model id, optionally with a version: 123456 or 123456:789012")
        base = self.settings.civitai_url.rstrip("/")
        model = await self._get_json("civitai", f"{base}/api/v1/models/{model_id}")
        versions = model.get("modelVersions") or []
        version = next((v for v in versions if str(v.get("id")) == version_id), None) if version_id else (
            versions[0] if versions else None)
        if version is None:
            raise NotFound(f"CivitAI model {model_id} has no version {version_id or '(none published)'}")
        files = version.get("files") or []
        chosen = next((f for f in files if f.get("primary")), files[0] if files else None)
        if chosen is None:
            raise NotFound(f"CivitAI model version {version.get('id')} has no files")
        return {"success": True, "model_id": str(model.get("id", model_id)), "version_id": str(version.get("id")),
                "name": model.get("name"), "version_name": version.get("name"),
                "type": CIVITAI_TYPES.get(str(model.get("type")), str(model.get("type", "")).lower()),
                "base_model": version.get("baseModel"), "filename": chosen.get("name"),
                "file_size": int(float(chosen.get("sizeKB") or 0) * 1024),
                "sha256": str((chosen.get("hashes") or {}).get("SHA256", "")).lower() or None,
                "download_url": chosen.get("downloadUrl") or version.get("downloadUrl")}

    async def huggingface_info(self, repo_id: str, filename: str, revision: str = "main") -> dict[str, Any]:
        check_relative(repo_id, "repo_id")
        check_relative(filename, "filename")
        url = f"{self.settings.huggingface_url.rstrip('/')}/{repo_id}/resolve/{revision}/{filename}"
        try:
            async with httpx.AsyncClient(timeout=30, follow_redirects=False) as http:
                response = await http.head(url, headers=self._auth("huggingface"))
        except httpx.HTTPError as exc:
            raise UpstreamError(f"huggingface is not reachable: {exc}") from None
        if response.status_code in (401, 403, 404):
            raise NotFound(f"Not found on HuggingFace (or gated): {repo_id}/{filename}@{revision}")
        if response.status_code >= 400:
            raise UpstreamError(f"huggingface answered {response.status_code} for {url}")
        headers = response.headers
        size = headers.get("x-linked-size") or headers.get("content-length") or "0"
        etag = (headers.get("x-linked-etag") or headers.get("etag") or "").strip('"').removeprefix("W/").strip('"')
        return {"success": True, "repo_id": repo_id, "filename": filename, "revision": revision,
                "file_size": int(size), "sha256": etag.lower() if len(etag) == 64 else None, "download_url": url}

    # ----------------------------------------------------------------------------------- submission

    def _target(self, model_type: str, subfolder: str | None, filename: str) -> tuple[Path, str]:
        folder = self.library.folder_of(model_type)
        name = PurePosixPath(filename).name
        if PurePosixPath(name).suffix.lower() not in MODEL_EXTENSIONS:
            raise BadRequest(f"filename '{name}' is not a model file ({', '.join(sorted(MODEL_EXTENSIONS))})")
        relative = f"{subfolder.strip('/')}/{name}" if subfolder else name
        target = resolve_inside(folder, relative, "subfolder" if subfolder else "filename")
        if target.exists():
            raise BadRequest(f"{model_type} model already exists: {relative}")
        return target, relative

    async def submit(self, request: DownloadRequest) -> dict[str, Any]:
        self.library.model_type(request.model_type)
        source: Source = request.source or ("civitai" if request.model_id else "huggingface" if request.repo_id else "url")
        expected: str | None = None
        if source == "civitai":
            if not request.model_id:
                raise BadRequest("model_id is required for a CivitAI download")
            info = await self.civitai_info(request.model_id)
            url, filename, expected = info["download_url"], request.filename or info["filename"], info["sha256"]
        elif source == "huggingface":
            if not request.repo_id or not request.filename:
                raise BadRequest("repo_id and filename are required for a HuggingFace download")
            info = await self.huggingface_info(request.repo_id, request.filename, request.revision)
            url, filename, expected = info["download_url"], request.filename, info["sha256"]
        else:
            if not request.url or urlsplit(request.url).scheme not in ("http", "https"):
                raise BadRequest("url is required for a URL download and must be http(s)")
            url = request.url
            filename = request.filename or unquote(PurePosixPath(urlsplit(url).path).name)
        if not url:
            raise UpstreamError(f"{source} gave no download URL")
        target, relative = await anyio.to_thread.run_sync(self._target, request.model_type, request.subfolder, filename)
        params = {**msgspec.to_builtins(request), "source": source, "path": relative}
        download = await self.queue.submit("download", params=params,
                                           spec={"source": source, "url": url, "target": str(target)})
        hashing = await self.queue.submit("hash", params={"model_type": request.model_type, "path": relative,
                                                          "expected_sha256": expected},
                                          spec={"target": str(target), "expected_sha256": expected,
                                                "download_job_id": download.job_id})
        return {"success": True, "download_job_id": download.job_id, "hash_job_id": hashing.job_id,
                "source": source, "model_type": request.model_type, "position": download.position}

    # ------------------------------------------------------------------------------------ execution

    async def execute(self, record: JobRecord, report: ProgressReport) -> list[str]:
        if record.job.type == "hash":
            return await self._hash(record)
        return await self._download(record, report)

    async def _download(self, record: JobRecord, report: ProgressReport) -> list[str]:
        target = Path(record.spec["target"])
        if target.exists():
            raise JobFailed(f"{target.name} appeared meanwhile; not overwritten")
        partial = target.with_name(f".{target.name}.part")
        await anyio.Path(target.parent).mkdir(parents=True, exist_ok=True)
        try:
            async with httpx.AsyncClient(timeout=httpx.Timeout(60, read=300), follow_redirects=True) as http:
                async with http.stream("GET", record.spec["url"], headers=self._auth(record.spec["source"])) as response:
                    if response.status_code >= 400:
                        raise JobFailed(f"download failed: HTTP {response.status_code} from {record.spec['source']}")
                    total = int(response.headers.get("content-length") or 0)
                    done = 0
                    async with await anyio.open_file(partial, "wb") as handle:
                        async for chunk in response.aiter_bytes(MIB):
                            await handle.write(chunk)
                            done += len(chunk)
                            report(SamplingStep(0, done // MIB, max(total // MIB, done // MIB, 1)))
            if total and done != total:
                raise JobFailed(f"download incomplete: {done} of {total} bytes")
            await anyio.to_thread.run_sync(os.replace, partial, target)
        except httpx.HTTPError as exc:
            raise JobFailed(f"download failed: {exc}") from None
        finally:
            await anyio.Path(partial).unlink(missing_ok=True)
        return []

    async def _hash(self, record: JobRecord) -> list[str]:
        download = self.queue.records.get(record.spec["download_job_id"])
        if download is not None and download.job.status != "completed":
            raise JobFailed(f"the download did not complete ({download.job.status})")
        target = Path(record.spec["target"])
        if not target.is_file():
            raise JobFailed(f"{target.name} is not there to hash")
        digest = await self.hashes.hash_of(target)
        record.job.params["sha256"] = digest
        expected = record.spec.get("expected_sha256")
        if expected and digest != expected:
            await anyio.Path(target).unlink(missing_ok=True)
            raise JobFailed(f"sha256 mismatch: the source publishes {expected}, the file has {digest}; "
                            "the file was deleted")
        return []
