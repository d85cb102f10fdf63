"""`sdcpp-restapi doctor`: one table of named checks over the settings `serve` would use. Each check returns a
`Finding` (ok, note, warning or problem, with the fix to apply); any problem makes doctor exit 1.

The binaries, the backend build and the devices are checked in runners.doctor; the folders, the ports, the store,
Ollama and the keys here. Nothing here changes anything: folders are probed with a temporary file removed at once, the store is opened
read-only, and its lock is only
tried (and let go at once) to learn whether a server runs on the output folder. A PostgreSQL store ([store] url) is
read through a read-only connection: its version and whether a server holds it, never migrated.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import anyio
import httpx
import msgspec

from core.errors import BadRequest
from core.models.downloads import Destinations
from core.models.schemas import HealthResponse
from core.prompt_help.features import Assistant, PromptEnhancer, stored_settings_key
from core.prompt_help.ollama import OllamaClient
from core.prompt_help.schemas import LlmSettings
from core.request_types import check_http_url
from core.settings import API_KEYS, Settings
from core.store import StoreUnusable
from core.store.postgres import peek, shown_url
from core.store.sqlite import STORE_FILE, _stored_version, lock_path
from core.webhooks.delivery import SECRET_KEY as WEBHOOK_SECRET_KEY
from core.webhooks.signing import BadSecret, secret_key
from runners.doctor import (
    Finding,
    Verdict,
    check_backend_build,
    check_devices,
    check_sd_cli,
    check_sd_server,
    check_worker,
    ok,
    problem,
)

PROBE_TIMEOUT_S = 3.0


class Check(msgspec.Struct, frozen=True):
    name: str
    run: Callable[[Settings], Finding]


class CheckResult(msgspec.Struct, frozen=True):
    name: str
    finding: Finding


# ------------------------------------------------------------------------------------------ binaries


def _sd_cli(settings: Settings) -> Finding:
    return check_sd_cli(Path(settings.selected_backend().sd_cli).expanduser(), settings.backend)


def _sd_server(settings: Settings) -> Finding:
    return check_sd_server(Path(settings.selected_backend().sd_server).expanduser(), settings.backend)


def _worker(settings: Settings) -> Finding:
    worker = settings.selected_backend().sd_worker
    return check_worker(Path(worker).expanduser() if worker else None, settings.backend)


def _backend_build(settings: Settings) -> Finding:
    return check_backend_build(settings.backend, Path(settings.selected_backend().sd_cli).expanduser())


def _devices(settings: Settings) -> Finding:
    return check_devices(settings.backend)


# ------------------------------------------------------------------------------------------ folders


def _try_write(folder: Path) -> str | None:
    """None when a file can be made (and is removed at once) in the folder, else why not."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-"):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


def _writable(folder: Path, what: str, flag: str, create: bool) -> Finding:
    """The folder exists and a file can be written in it; with `create`, a missing folder is fine when the server
    can make it (its nearest existing parent is a writable folder). Nothing is created but a file removed at once."""
    elsewhere = f"point {flag} at a folder this user can write"
    if not folder.exists():
        if not create:
            return problem(f"{what} {folder} does not exist", f"mkdir -p {folder}, or {elsewhere}")
        parent = next(p for p in folder.parents if p.exists())
        if not parent.is_dir():
            return problem(f"{what} {folder} cannot be created: {parent} is a file, not a folder", elsewhere)
        if why := _try_write(parent):
            return problem(
                f"{what} {folder} cannot be created in {parent}: {why}", f"mkdir -p {folder}, or {elsewhere}"
            )
        return ok(f"{folder} does not exist yet; the server will create it")
    if not folder.is_dir():
        return problem(f"{what} {folder} is not a folder", elsewhere)
    if why := _try_write(folder):
        return problem(
            f"{what} {folder} is not writable: {why}", f"chown {os.getuid()} {folder} (or chmod u+w), or {elsewhere}"
        )
    return ok(f"{folder} is writable")


def _models_folder(settings: Settings) -> Finding:
    """Every model type's folder (the server makes missing ones), and whether any model file is there yet."""
    for folder, path in settings.model_folders().items():
        flag = f"[paths] {folder}" if folder in settings.paths else "--models-dir"
        found = _writable(path, f"models folder {folder}/", flag, create=True)
        if found.verdict.fails:
            return found
    root = settings.models_root()
    files = sum(1 for path in settings.model_folders().values() if path.is_dir() for f in path.iterdir() if f.is_file())
    if not files:
        return Finding(
            Verdict.NOTE,
            f"no model files yet under {root}",
            f"put model files into its type folders ({root}/diffusion_models, {root}/checkpoints, ...)",
        )
    return ok(f"{root}: {files} model file(s), every type folder writable")


def _output_folder(settings: Settings) -> Finding:
    return _writable(settings.output_root(), "output folder", "--output-dir", create=True)


# ------------------------------------------------------------------------------------------ ports


def _our_server_answers(host: str, port: int) -> bool:
    try:
        answer = httpx.get(f"http://{host}:{port}/health", timeout=PROBE_TIMEOUT_S)
    except httpx.HTTPError:
        return False
    try:
        msgspec.json.decode(answer.content, type=HealthResponse)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False
    return answer.status_code == 200


def _port(host: str, port: int, flag: str) -> Finding:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE and _our_server_answers(host, port):
                return Finding(
                    Verdict.NOTE, f"{host}:{port} ({flag}): an sdcpp-restapi server is already running there"
                )
            return problem(
                f"cannot listen on {host}:{port} ({flag}): {exc.strerror}",
                f"stop the program on that port (ss -ltnp 'sport = :{port}'), or choose another {flag}",
            )
    return ok(f"{host}:{port} is free")


def _ports(settings: Settings) -> Finding:
    found = [_port(settings.host, settings.port, "--port")]
    if settings.ws_port:
        found.append(_port(settings.host, settings.ws_port, "--ws-port"))
    worst = max(found, key=lambda finding: list(Verdict).index(finding.verdict))
    if worst.verdict is Verdict.OK:
        return ok("; ".join(finding.summary for finding in found))
    return worst


# ------------------------------------------------------------------------------------------ store


def _server_pid(path: Path) -> str | None:
    """The pid of the server holding the store's lock, or None when none does. The lock is tried, never waited for,
    and let go at once."""
    lock = lock_path(path)
    if not lock.is_file():
        return None
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _postgres_store(url: str) -> Finding:
    """Connect read-only and read the version (never migrate): what the first start would find."""
    try:
        found = peek(url)
    except StoreUnusable as exc:
        summary = str(exc).split(". The database was left untouched")[0]
        return problem(summary, "start PostgreSQL, or fix [store] url / SDCPP_RESTAPI_STORE_URL (see the README)")
    where = f"PostgreSQL store {shown_url(url)}"
    if found.server:
        return Finding(Verdict.NOTE, f"a server is running on the {where} ({found.server}; schema {found.version})")
    if found.version == 0:
        return ok(f"{where} reachable; no schema of ours yet: the first start creates it")
    return ok(f"{where} opens (schema {found.version})")


def _store(settings: Settings) -> Finding:
    if settings.store.url:
        return _postgres_store(settings.store.url)
    path = settings.output_root() / STORE_FILE
    if not path.exists():
        return ok(f"no store yet at {path}: the first start creates it")
    if pid := _server_pid(path):
        return Finding(Verdict.NOTE, f"a server is running on this output folder (pid {pid}); its store {path} in use")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return problem(f"cannot open the store {path}: {exc}", "check its permissions, or move it away")
    try:
        version = _stored_version(db, path)
    except StoreUnusable as exc:
        return problem(
            str(exc).split(". The file was left untouched")[0],
            f"run the sdcpp-restapi version that wrote it, or move {path} away (history starts empty), "
            "or restore a backup",
        )
    finally:
        db.close()
    return ok(f"{path} opens (schema {version})")


# ------------------------------------------------------------------------------------------ Ollama, keys


async def _reachable(base_url: str, api_key: str) -> bool:
    client = OllamaClient(base_url, api_key, PROBE_TIMEOUT_S)
    try:
        return await client.reachable()
    finally:
        await client.aclose()


T = TypeVar("T")


def _stored_value(settings: Settings, key: str, type_: type[T]) -> T | None:
    """A value the server keeps in its store (SQLite or PostgreSQL), read through a read-only connection; None when
    there is none or the store cannot be read (the store check says why)."""
    try:
        if settings.store.url:
            stored = peek(settings.store.url, key).value
        else:
            path = settings.output_root() / STORE_FILE
            if not path.is_file():
                return None
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                row = db.execute("SELECT value FROM state_values WHERE key = ?", (key,)).fetchone()
            finally:
                db.close()
            stored = row[0] if row else None
        return msgspec.json.decode(stored, type=type_) if stored else None
    except (StoreUnusable, sqlite3.Error, msgspec.DecodeError, msgspec.ValidationError):
        return None


def _persisted(settings: Settings, feature: str) -> LlmSettings | None:
    """A feature's settings as changed with PUT and kept in the store (they win over the config's)."""
    return _stored_value(settings, stored_settings_key(feature), LlmSettings)


def _ollama(settings: Settings) -> Finding:
    wanted = {
        name: llm
        for name, configured in ((PromptEnhancer.name, settings.ollama), (Assistant.name, settings.assistant))
        if (llm := _persisted(settings, name) or configured).enabled
    }
    if not wanted:
        return Finding(Verdict.NOTE, "prompt help and the assistant are disabled")
    unreachable = [
        f"[{feature}] {llm.base_url}"
        for feature, llm in wanted.items()
        if not anyio.run(_reachable, llm.base_url, llm.api_key)
    ]
    if unreachable:
        return Finding(
            Verdict.WARNING,
            f"Ollama not reachable at {', '.join(unreachable)}: prompt help / the assistant will answer 503",
            "start Ollama (`ollama serve`), or set base_url or enabled = false in [ollama] / [assistant] (or with "
            "PUT /ollama/settings, /assistant/settings, which the store keeps)",
        )
    return ok("Ollama answers at " + ", ".join(sorted({llm.base_url for llm in wanted.values()})))


def _keys(settings: Settings) -> Finding:
    keys = len(settings.auth.api_keys)
    if settings.on_loopback:
        return ok(f"bound to loopback ({settings.host}); {keys or 'no'} API key(s)")
    if keys:
        return ok(f"bound to {settings.host} with {keys} API key(s)")
    fix = f'set a key: {API_KEYS.variable}=KEY in the environment, or [auth] api_keys = ["KEY"] in the config'
    if settings.no_auth:
        return Finding(Verdict.WARNING, f"bound to {settings.host} with no API key (--no-auth): open to anyone", fix)
    return problem(f"bound to {settings.host} with no API key: `serve` refuses to start", fix)


# ------------------------------------------------------------------------------------------ webhooks


async def _refused_urls(settings: Settings) -> list[str]:
    addresses = Destinations(settings.downloads, settings.on_loopback)
    refused = []
    for url in settings.webhooks.urls:
        try:
            check_http_url(url, "[webhooks] urls")
            await addresses.check(url, "[webhooks] urls")
        except BadRequest as exc:
            refused.append(f"{url}: {exc.message}")
    return refused


def _webhooks(settings: Settings) -> Finding:
    """Where the signing secret comes from, and whether each configured URL passes the address rules."""
    hooks = settings.webhooks
    if hooks.secret:
        try:
            secret_key(hooks.secret)
        except BadSecret as exc:
            return problem(f"{exc}: `serve` refuses to start", 'set secret = "whsec_<base64 of 32 random bytes>"')
        source = "secret from the config"
    elif stored := _stored_value(settings, WEBHOOK_SECRET_KEY, str):
        source = f"secret generated and kept in the store: {stored} (what receivers verify with)"
    else:
        source = "no secret yet: the first start generates one and keeps it in the store"
    if refused := anyio.run(_refused_urls, settings):
        return problem(
            "[webhooks] urls refused by the address rules: " + "; ".join(refused),
            "use a public http(s) URL, or set [downloads] allow_private_addresses = true (the rules downloads use)",
        )
    return ok(f"{source}; {len(hooks.urls)} configured URL(s) pass the address rules")


# The checks, in the order they are printed. A new check is one row.
CHECKS: tuple[Check, ...] = (
    Check("sd-cli", _sd_cli),
    Check("sd-server", _sd_server),
    Check("worker", _worker),
    Check("backend build", _backend_build),
    Check("devices", _devices),
    Check("models folder", _models_folder),
    Check("output folder", _output_folder),
    Check("ports", _ports),
    Check("store", _store),
    Check("ollama", _ollama),
    Check("keys", _keys),
    Check("webhooks", _webhooks),
)


def run_checks(settings: Settings, checks: tuple[Check, ...] = CHECKS) -> list[CheckResult]:
    return [CheckResult(check.name, check.run(settings)) for check in checks]


def all_well(results: list[CheckResult]) -> bool:
    return not any(result.finding.verdict.fails for result in results)
