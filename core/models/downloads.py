"""Model downloads from a URL, CivitAI or HuggingFace, through the downloads lane of the queue.

Each download is two jobs: the download (streamed to a hidden `.part` file, renamed into the model folder
when complete) and a hash job (SHA-256 off the event loop, cached for /models, checked against the
source's published hash; a mismatching file is deleted). CivitAI and HuggingFace are reached through
configurable base URLs, so tests and mirrors can stand in for them. Tokens are sent at download time and
never stored in the queue state.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from pathlib import Path, PurePosixPath
from typing import TypeVar
from urllib.parse import quote, unquote, urlsplit

import anyio
import httpx
import msgspec

from core.errors import BadRequest, NotFound, ServiceError
from core.jobs.queue import JobFailed, JobQueue, ProgressReport, Transfer
from core.models.hashing import HashCache
from core.models.library import ModelLibrary
from core.models.schemas import CivitaiInfo, DownloadAccepted, DownloadRequest, DownloadSource, HuggingfaceInfo
from core.models.specs import DownloadJob, HashJob, HashResult
from core.models.types import MODEL_EXTENSIONS
from core.request_types import check_http_url
from core.safe_paths import MAX_NAME_BYTES, check_relative, resolve_inside

T = TypeVar("T")
MIB = 1024 * 1024
HF_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+", re.ASCII)
HF_REVISION = re.compile(r"[\w][\w./-]*", re.ASCII)
# CivitAI's model types -> ours
CIVITAI_TYPES = {
    "Checkpoint": "checkpoint",
    "LORA": "lora",
    "LoCon": "lora",
    "DoRA": "lora",
    "TextualInversion": "embedding",
    "VAE": "vae",
    "Controlnet": "controlnet",
    "Upscaler": "esrgan",
}


class DownloadSettings(msgspec.Struct, forbid_unknown_fields=True):
    huggingface_url: str = "https://huggingface.co"
    civitai_url: str = "https://civitai.com"
    huggingface_token: str = ""
    civitai_token: str = ""
    # Where downloads may go besides the two hubs above (which are trusted as configured): by default any public
    # host; loopback, private, link-local and other non-public addresses only with allow_private_addresses, so a
    # client cannot make the server fetch from itself or its network. Non-empty allowed_hosts: only those names.
    allow_private_addresses: bool = False
    allowed_hosts: list[str] = []


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        port = None
    return parts.scheme, (parts.hostname or "").lower(), port


class Destinations:
    """Which URLs a download may fetch, checked for the URL a client gives and again for every redirect hop.
    Webhooks use the same rules, with loopback addresses allowed while the server itself listens on loopback
    (`allow_loopback`)."""

    def __init__(self, settings: DownloadSettings, allow_loopback: bool = False) -> None:
        self.hubs = {_origin(settings.huggingface_url), _origin(settings.civitai_url)}
        self.allowed_hosts = frozenset(host.lower() for host in settings.allowed_hosts)
        self.allow_private = settings.allow_private_addresses
        self.allow_loopback = allow_loopback

    async def check(self, url: str, field: str = "url") -> None:
        origin = _origin(url)
        if origin in self.hubs:
            return
        _, host, port = origin
        if self.allowed_hosts and host not in self.allowed_hosts:
            raise BadRequest(f"{field}: host '{host}' is not in [downloads] allowed_hosts")
        if self.allow_private:
            return
        try:
            found = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise BadRequest(f"{field}: host '{host}' does not resolve") from None
        for *_, address in found:
            ip = ipaddress.ip_address(str(address[0]).split("%", 1)[0])
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            if not ip.is_global and not (self.allow_loopback and ip.is_loopback):
                raise BadRequest(
                    f"{field}: {host} is {ip}, a loopback, private, link-local or otherwise non-public address; "
                    "downloads reach public hosts only unless [downloads] allow_private_addresses = true"
                )


# CivitAI's API (GET /api/v1/models/{id}), the fields we read.
class _CivitaiFile(msgspec.Struct):
    name: str | None = None
    primary: bool = False
    sizeKB: float | None = None
    hashes: dict[str, str] = {}
    downloadUrl: str | None = None


class _CivitaiVersion(msgspec.Struct):
    id: int | str | None = None
    name: str | None = None
    baseModel: str | None = None
    downloadUrl: str | None = None
    files: list[_CivitaiFile] = []


class _CivitaiModel(msgspec.Struct):
    id: int | str | None = None
    name: str | None = None
    type: str | None = None
    modelVersions: list[_CivitaiVersion] = []


class UpstreamError(ServiceError):
    status = 502


class DownloadService:
    def __init__(self, queue: JobQueue, library: ModelLibrary, hashes: HashCache, settings: DownloadSettings) -> None:
        self.queue, self.library, self.hashes, self.settings = queue, library, hashes, settings
        self.destinations = Destinations(settings)

    # ------------------------------------------------------------------------------------ upstreams

    def _auth(self, source: str) -> dict[str, str]:
        token = {"huggingface": self.settings.huggingface_token, "civitai": self.settings.civitai_token}.get(source)
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def _get_json(self, source: str, url: str, answer: type[T]) -> T:
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
            return msgspec.json.decode(response.content, type=answer)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            raise UpstreamError(f"{source} answered with something that is not the JSON it documents: {exc}") from None

    async def civitai_info(self, reference: str) -> CivitaiInfo:
        """`123456` (latest version) or `123456:789012` (that version)."""
        model_id, _, version_id = reference.partition(":")
        if not model_id.isdigit() or (version_id and not version_id.isdigit()):
            raise BadRequest("id must be a CivitAI model id, optionally with a version: 123456 or 123456:789012")
        base = self.settings.civitai_url.rstrip("/")
        model = await self._get_json("civitai", f"{base}/api/v1/models/{model_id}", _CivitaiModel)
        versions = model.modelVersions
        version = (
            next((v for v in versions if str(v.id) == version_id), None)
            if version_id
            else (versions[0] if versions else None)
        )
        if version is None:
            raise NotFound(f"CivitAI model {model_id} has no version {version_id or '(none published)'}")
        chosen = next((f for f in version.files if f.primary), version.files[0] if version.files else None)
        if chosen is None:
            raise NotFound(f"CivitAI model version {version.id} has no files")
        model_type = model.type or ""
        return CivitaiInfo(
            success=True,
            model_id=str(model.id if model.id is not None else model_id),
            version_id=str(version.id),
            name=model.name,
            version_name=version.name,
            type=CIVITAI_TYPES.get(model_type, model_type.lower()),
            base_model=version.baseModel,
            filename=chosen.name,
            file_size=int(min(max(chosen.sizeKB or 0, 0), 2**40) * 1024),  # an upstream 1e308 is no 500
            sha256=chosen.hashes.get("SHA256", "").lower() or None,
            download_url=chosen.downloadUrl or version.downloadUrl,
        )

    async def huggingface_info(self, repo_id: str, filename: str, revision: str = "main") -> HuggingfaceInfo:
        if not HF_REPO_ID.fullmatch(repo_id):
            raise BadRequest("repo_id must be '<owner>/<name>' of letters, digits, '-', '_' and '.'")
        if not HF_REVISION.fullmatch(revision) or ".." in revision:
            raise BadRequest("revision must be a branch, tag or commit name (letters, digits, '-', '_', '.', '/')")
        check_relative(filename, "filename")
        if not filename.isprintable():
            raise BadRequest("filename must not contain control characters")
        url = f"{self.settings.huggingface_url.rstrip('/')}/{repo_id}/resolve/{revision}/{quote(filename)}"
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
        size = _upstream_int(headers.get("x-linked-size") or headers.get("content-length") or "0", "file size")
        etag = (headers.get("x-linked-etag") or headers.get("etag") or "").strip('"').removeprefix("W/").strip('"')
        return HuggingfaceInfo(True, repo_id, filename, revision, size, etag.lower() if len(etag) == 64 else None, url)

    # ----------------------------------------------------------------------------------- submission

    def _target(self, model_type: str, subfolder: str | None, filename: str) -> tuple[Path, str]:
        folder = self.library.folder_of(model_type)
        name = PurePosixPath(filename).name
        if PurePosixPath(name).suffix.lower() not in MODEL_EXTENSIONS:
            raise BadRequest(f"filename '{name}' is not a model file ({', '.join(sorted(MODEL_EXTENSIONS))})")
        relative = f"{subfolder.strip('/')}/{name}" if subfolder else name
        target = resolve_inside(folder, relative, "subfolder" if subfolder else "filename")
        if len(partial_name(name).encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:  # else ENAMETOOLONG later
            raise BadRequest(
                f"filename: at most {MAX_NAME_BYTES - len(partial_name(''))} bytes long (the download is written as "
                f"'{partial_name('NAME')}' until complete)"
            )
        if target.exists():
            raise BadRequest(f"{model_type} model already exists: {relative}")
        return target, relative

    async def submit(self, request: DownloadRequest) -> DownloadAccepted:
        self.library.model_type(request.model_type)
        source: DownloadSource = request.source or (
            "civitai" if request.model_id else "huggingface" if request.repo_id else "url"
        )
        expected: str | None = None
        if source == "civitai":
            if not request.model_id:
                raise BadRequest("model_id is required for a CivitAI download")
            civitai = await self.civitai_info(request.model_id)
            url, filename, expected = civitai.download_url, request.filename or civitai.filename, civitai.sha256
        elif source == "huggingface":
            if not request.repo_id or not request.filename:
                raise BadRequest("repo_id and filename are required for a HuggingFace download")
            hub = await self.huggingface_info(request.repo_id, request.filename, request.revision)
            url, filename, expected = hub.download_url, request.filename, hub.sha256
        else:
            if not request.url:
                raise BadRequest("url is required for a URL download and must be http(s)")
            parts = check_http_url(request.url, "url")
            try:
                httpx.URL(request.url)
            except httpx.InvalidURL as exc:
                raise BadRequest(f"url is not a valid URL: {exc}") from None
            url = request.url
            filename = request.filename or unquote(PurePosixPath(parts.path).name)
        if not url or not filename:
            raise UpstreamError(f"{source} gave no download URL or file name")
        target, relative = await anyio.to_thread.run_sync(self._target, request.model_type, request.subfolder, filename)
        await self.destinations.check(url, "url" if source == "url" else f"{source} download URL")
        download = await self.queue.submit(
            DownloadJob(request=request, source=source, url=url, target=str(target), path=relative)
        )
        hashing = await self.queue.submit(
            HashJob(
                model_type=request.model_type,
                path=relative,
                target=str(target),
                expected_sha256=expected,
                download_job_id=download.job_id,
            )
        )
        return DownloadAccepted(True, download.job_id, hashing.job_id, source, request.model_type, download.position)

    # ------------------------------------------------------------------------------------ execution

    async def download(self, job: DownloadJob, report: ProgressReport) -> list[str]:
        target = Path(job.target)
        if target.exists():
            raise JobFailed(f"{target.name} appeared meanwhile; not overwritten")
        partial = target.with_name(partial_name(target.name))
        await anyio.Path(target.parent).mkdir(parents=True, exist_ok=True)

        async def each_hop(request: httpx.Request) -> None:  # the first request and every redirect
            await self.destinations.check(str(request.url), "download redirect" if request.url != job.url else "url")

        try:
            async with (
                httpx.AsyncClient(
                    timeout=httpx.Timeout(60, read=300), follow_redirects=True, event_hooks={"request": [each_hop]}
                ) as http,
                http.stream("GET", job.url, headers=self._auth(job.source)) as response,
            ):
                if response.status_code >= 400:
                    raise JobFailed(f"download failed: HTTP {response.status_code} from {job.source}")
                try:
                    total = _upstream_int(response.headers.get("content-length") or "0", "Content-Length", job.source)
                except UpstreamError as exc:
                    raise JobFailed(f"download failed: {exc.message}") from None
                done = 0
                async with await anyio.open_file(partial, "wb") as handle:
                    async for chunk in response.aiter_bytes(MIB):
                        await handle.write(chunk)
                        done += len(chunk)
                        report(Transfer(done, total))
            if total and done != total:
                raise JobFailed(f"download incomplete: {done} of {total} bytes")
            await anyio.to_thread.run_sync(os.replace, partial, target)
        except httpx.HTTPError as exc:
            raise JobFailed(f"download failed: {exc}") from None
        except BadRequest as refused:
            raise JobFailed(f"download refused: {refused.message}") from None
        finally:
            await anyio.Path(partial).unlink(missing_ok=True)
        return []

    async def check_hash(self, job: HashJob) -> HashResult:
        """Hash the downloaded file and check it against the source's published digest."""
        download = await self.queue.record(job.download_job_id)
        if download is not None and download.job.status != "completed":
            raise JobFailed(f"the download did not complete ({download.job.status})")
        target = Path(job.target)
        if not await anyio.Path(target).is_file():
            raise JobFailed(f"{target.name} is not there to hash")
        digest = await self.hashes.hash_of(target)
        expected = job.expected_sha256
        if expected and digest != expected:
            await anyio.Path(target).unlink(missing_ok=True)
            raise JobFailed(
                f"sha256 mismatch: the source publishes {expected}, the file has {digest}; the file was deleted"
            )
        return HashResult(digest)


def _upstream_int(value: str, what: str, source: str = "huggingface") -> int:
    """A number an upstream server sent in a header; anything else is its fault (502), not ours (500)."""
    value = value.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise UpstreamError(f"{source} sent a {what} that is not a number: {value[:40]!r}")
    return int(value)


def partial_name(name: str) -> str:
    """The name a download is written under until it is complete."""
    return f".{name}.part"
