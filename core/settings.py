"""Service settings: one msgspec struct, layered defaults < TOML file < environment < command line.

Each field carries its description (`Meta(description=...)`); the scalars marked `OnCommandLine` are also read
from SDCPP_RESTAPI_<NAME> and from `sdcpp-restapi serve --<name>`, whose flags and help are generated from
`COMMAND_LINE` (litestar_app/cli.py). A unit test checks README.md's table of variables and flags against it.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, get_type_hints

import msgspec
from msgspec import Meta

from core.jobs.queue import Retention
from core.limits import Limits
from core.models.downloads import DownloadSettings
from core.models.schemas import LoadModelRequest
from core.models.types import MODEL_TYPES
from core.prompt_help.schemas import LlmSettings
from core.webhooks.schemas import WebhookSettings
from runners.devices import NoDeviceSelection, device_environment
from runners.paths import backend_dir, data_dir

ENV_PREFIX = "SDCPP_RESTAPI_"


class Backend(msgspec.Struct, forbid_unknown_fields=True):
    """A `[backends.NAME]` table: a build's folder (its sd-cli, sd-server and sdcpp-worker, as bin/build-backend
    installs them), or the binaries one by one; a binary named here wins over the folder's."""

    sd_cli: str = ""
    sd_server: str = ""
    sd_worker: str = ""  # our resident worker; "" (without a folder) or a missing file: none; "none": never
    folder: str = ""

    def binaries(self) -> Backend:
        """The table with the folder's binaries filled in where none is named."""
        if not self.folder:
            return self
        folder = Path(self.folder).expanduser()
        return Backend(
            sd_cli=self.sd_cli or str(folder / "sd-cli"),
            sd_server=self.sd_server or str(folder / "sd-server"),
            sd_worker=self.sd_worker or str(folder / "sdcpp-worker"),
            folder=self.folder,
        )


class WorkerSettings(msgspec.Struct, forbid_unknown_fields=True):
    """One `[[workers]]` entry: a resident process of its own, on its backend and device, taking jobs from the
    shared queue. The model of `POST /models/load` is loaded on every worker."""

    name: Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]  # in /health, events
    backend: str = ""  # a [backends.NAME] table or a bin/build-backend build; "": the server's backend
    device: str = ""  # handed to the backend's device variable (runners/devices.py); "": the backend's default
    threads: Annotated[int, Meta(ge=0)] = 0  # sd.cpp --threads (0: sd.cpp's default, the physical cores)
    memory_mib: Annotated[int, Meta(ge=0)] = 0  # budget for resident models on this worker (0: not set)


class Auth(msgspec.Struct, forbid_unknown_fields=True):
    """API keys ([auth] api_keys, or SDCPP_RESTAPI_API_KEYS as a comma-separated list). Empty: no key needed,
    which the server allows only on a loopback address unless started with --no-auth."""

    api_keys: list[str] = []


class Cors(msgspec.Struct, forbid_unknown_fields=True):
    """Web origins (scheme://host[:port]) other than the server's own that may call the API from a browser."""

    allow_origins: list[str] = []


class StoreSettings(msgspec.Struct, forbid_unknown_fields=True):
    """Where the service keeps its jobs and state: "" is the embedded SQLite file in the output folder (one host);
    a `postgresql://` URL is a PostgreSQL database that several hosts share (the store and the queue between hosts).
    Also SDCPP_RESTAPI_STORE_URL (an environment variable only: the URL may hold a password)."""

    url: Annotated[str, Meta(pattern=r"^$|^postgres(ql)?://")] = ""


class OnCommandLine(msgspec.Struct, frozen=True):
    """Marks a scalar setting that SDCPP_RESTAPI_<NAME> and `serve --<name>` also set."""

    choices: tuple[str, ...] | None = None  # the values the flag accepts (checked on the command line only)
    flag: bool = True  # False for a secret: a command line is visible to other users, the environment is not


LOG_LEVELS = ("debug", "info", "warning", "error")


class Settings(msgspec.Struct, forbid_unknown_fields=True):
    """Everything configurable. [ollama] and [assistant] are the starting values of those features'
    settings; changes made with PUT /ollama/settings or /assistant/settings persist and win."""

    host: Annotated[str, Meta(description="address to listen on"), OnCommandLine()] = "127.0.0.1"
    port: Annotated[int, Meta(description="HTTP port (the API, the web UI, /ws)"), OnCommandLine()] = 8080
    ws_port: Annotated[int, Meta(description="port of the standalone WebSocket server (0: none)"), OnCommandLine()] = (
        8081
    )
    models_dir: Annotated[
        str,
        Meta(description="models root, one sub-folder per model type (default: models/ in the data folder)"),
        OnCommandLine(),
    ] = ""
    output_dir: Annotated[
        str, Meta(description="where jobs write their files (default: output/ in the data folder)"), OnCommandLine()
    ] = ""
    paths: Annotated[
        dict[str, str],
        Meta(description="per-type folder overrides, keyed by the model types' folders (checkpoints, loras, ...)"),
    ] = {}
    backend: Annotated[
        str, Meta(description="backend name: a [backends.NAME] table, or a bin/build-backend build"), OnCommandLine()
    ] = "cpu"
    backends: Annotated[dict[str, Backend], Meta(description="binaries by backend name")] = {}
    sd_cli: Annotated[
        str, Meta(description="path of the sd-cli binary to use (default: the backend's)"), OnCommandLine()
    ] = ""
    sd_server: Annotated[
        str, Meta(description="path of the sd-server binary to use (default: the backend's)"), OnCommandLine()
    ] = ""
    sd_worker: Annotated[
        str,
        Meta(
            description="path of our resident worker (default: the backend's sdcpp-worker), or 'none' to use sd-server "
            "and sd-cli only, as with a plain sd.cpp release"
        ),
        OnCommandLine(),
    ] = ""
    workers: Annotated[
        list[WorkerSettings],
        Meta(
            description="[[workers]]: resident processes sharing the queue, each on its backend and device (default: "
            "one worker on the server's backend)"
        ),
    ] = []
    worker_stall_timeout_s: Annotated[
        float,
        Meta(
            description="how long the worker may print nothing while a job runs before it is stopped and the job failed"
        ),
    ] = 300.0
    limits: Annotated[Limits, Meta(description="bounds on what a client may ask for")] = msgspec.field(
        default_factory=Limits
    )
    downloads: Annotated[DownloadSettings, Meta(description="model downloads")] = msgspec.field(
        default_factory=DownloadSettings
    )
    ollama: Annotated[LlmSettings, Meta(description="prompt enhancement's starting settings")] = msgspec.field(
        default_factory=LlmSettings
    )
    assistant: Annotated[LlmSettings, Meta(description="the assistant's starting settings")] = msgspec.field(
        default_factory=lambda: LlmSettings(timeout_seconds=120.0, max_history=50)
    )
    log_level: Annotated[
        str, Meta(description=f"log level: {', '.join(LOG_LEVELS)}"), OnCommandLine(choices=LOG_LEVELS)
    ] = "info"
    load_timeout_s: Annotated[
        float,
        Meta(
            description="how long a model load (until the resident process answers) may take; big models on slow "
            "disks need minutes"
        ),
    ] = 600.0
    retention: Annotated[
        Retention, Meta(description="how much finished job history the store keeps (off by default: all of it)")
    ] = msgspec.field(default_factory=Retention)
    status_interval_s: Annotated[float, Meta(description="period of the server_status heartbeat event")] = 5.0
    head_timeout_s: Annotated[
        float,
        Meta(gt=0, description="how long a client may take to send a whole request head (then a 408, slowloris)"),
    ] = 30.0
    body_idle_timeout_s: Annotated[
        float, Meta(gt=0, description="how long a client may pause while sending a request body (then a 408)")
    ] = 60.0
    idempotency_window_s: Annotated[
        float,
        Meta(
            ge=0,
            description="how long a submission's Idempotency-Key is remembered (a retry within it gets the same job)",
        ),
    ] = 86400.0
    models: Annotated[
        dict[str, LoadModelRequest],
        Meta(
            description='load profiles by model name ([models."flux.safetensors"] llm = "...", vae = "..."): how a model '
            "chosen by name (AUTOMATIC1111 / OpenAI clients, MCP) is loaded when it has never been loaded "
            "through /models/load"
        ),
    ] = {}
    webhooks: Annotated[
        WebhookSettings,
        Meta(description="URLs told of every finished job, the signing secret and the retry delays"),
    ] = msgspec.field(default_factory=WebhookSettings)
    store: Annotated[
        StoreSettings,
        Meta(description='the store: the embedded SQLite file (default), or url = "postgresql://..." shared by hosts'),
    ] = msgspec.field(default_factory=StoreSettings)
    auth: Annotated[Auth, Meta(description="API keys")] = msgspec.field(default_factory=Auth)
    cors: Annotated[Cors, Meta(description="web origins that may call the API from a browser")] = msgspec.field(
        default_factory=Cors
    )
    allowed_hosts: Annotated[
        list[str],
        Meta(
            description="host names (besides loopback ones) that requests may name while the server is bound to "
            "loopback: a guard against DNS rebinding"
        ),
    ] = []
    no_auth: Annotated[
        bool,
        Meta(description="serve on a non-loopback address without API keys (anyone who reaches it may use it)"),
        OnCommandLine(),
    ] = False
    host_name: Annotated[
        str,
        Meta(description="this host's name among the hosts sharing a PostgreSQL store (default: the machine's name)"),
        OnCommandLine(),
    ] = ""
    heartbeat_s: Annotated[
        float,
        Meta(
            gt=0,
            description="with a PostgreSQL store: a worker host silent this long is lost; its running job is re-queued "
            "once on another host",
        ),
        OnCommandLine(),
    ] = 10.0
    no_workers: Annotated[
        bool,
        Meta(description="with a PostgreSQL store: serve the API only (no worker host for this host's [[workers]])"),
        OnCommandLine(),
    ] = False
    state_dir: Annotated[
        str,
        Meta(
            description="where a worker host keeps its own state (load profiles, its child processes; default: "
            "hosts/<host name> in the data folder)"
        ),
        OnCommandLine(),
    ] = ""
    metrics_token: Annotated[
        str,
        Meta(
            description="a token that reads /metrics (and nothing else) while API keys are set: what a Prometheus "
            "scraper sends as its bearer token"
        ),
        OnCommandLine(flag=False),
    ] = ""

    @property
    def on_loopback(self) -> bool:
        return is_loopback(self.host)

    def models_root(self) -> Path:
        return Path(self.models_dir) if self.models_dir else data_dir() / "models"

    def output_root(self) -> Path:
        return Path(self.output_dir) if self.output_dir else data_dir() / "output"

    def this_host(self) -> str:
        return self.host_name or socket.gethostname()

    def host_state_dir(self) -> Path:
        return Path(self.state_dir) if self.state_dir else data_dir() / "hosts" / self.this_host()

    def model_folder(self, folder: str) -> Path:
        override = self.paths.get(folder)
        return Path(override) if override else self.models_root() / folder

    def model_folders(self) -> dict[str, Path]:
        return {t.folder: self.model_folder(t.folder) for t in MODEL_TYPES}

    def worker_list(self) -> list[WorkerSettings]:
        """The configured workers with their backends filled in; one worker on the server's backend by default."""
        workers = self.workers or [WorkerSettings(name=f"{self.backend}0")]
        return [msgspec.structs.replace(w, backend=w.backend or self.backend) for w in workers]

    def _backend(self, name: str) -> Backend:
        table = self.backends.get(name)
        return table.binaries() if table is not None else default_backend(name)

    def selected_backend(self, name: str | None = None) -> Backend:
        """The binaries of the server's backend, or of another one a worker names (the server-wide --sd-cli,
        --sd-server and --sd-worker apply to the server's backend only)."""
        if name is not None and name != self.backend:
            other = self._backend(name)
            return msgspec.structs.replace(other, sd_worker="" if other.sd_worker == "none" else other.sd_worker)
        configured = self._backend(self.backend)
        worker = self.sd_worker or configured.sd_worker
        return Backend(
            sd_cli=self.sd_cli or configured.sd_cli,
            sd_server=self.sd_server or configured.sd_server,
            sd_worker="" if worker == "none" else worker,
        )


def is_loopback(host: str) -> bool:
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def default_backend(name: str) -> Backend:
    """Where `bin/build-backend NAME` installs its binaries."""
    return Backend(folder=str(backend_dir(name))).binaries()


class CommandLineSetting(msgspec.Struct, frozen=True):
    """Something set from outside the TOML file: an environment variable and, unless `flag` is None, a flag of
    `sdcpp-restapi serve`."""

    name: str  # the Settings field (the flag's dest)
    kind: type  # str, int, float or bool (a bool is a switch)
    description: str
    default: Any
    choices: tuple[str, ...] | None = None
    has_flag: bool = True

    @property
    def variable(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str | None:
        return "--" + self.name.replace("_", "-") if self.has_flag else None


def _command_line_settings() -> tuple[CommandLineSetting, ...]:
    """The Settings fields marked OnCommandLine, in declaration order, read from their annotations."""
    found: list[CommandLineSetting] = []
    defaults = Settings()
    for name, hint in get_type_hints(Settings, include_extras=True).items():
        extras = getattr(hint, "__metadata__", ())
        marker = next((extra for extra in extras if isinstance(extra, OnCommandLine)), None)
        if marker is None:
            continue
        meta = next(extra for extra in extras if isinstance(extra, Meta))
        found.append(
            CommandLineSetting(
                name, hint.__origin__, meta.description or "", getattr(defaults, name), marker.choices, marker.flag
            )
        )
    return tuple(found)


# The scalar settings that may come from SDCPP_RESTAPI_<NAME> and, unless secret, from a --<name> flag.
COMMAND_LINE: tuple[CommandLineSetting, ...] = _command_line_settings()
# Where the settings are read from (not a setting itself).
CONFIG_FILE = CommandLineSetting("config", str, "TOML config file", None)
# Variables without a flag: the keys (a command line is visible to other users) and the data folder (read by
# runners.paths.data_dir, below any setting).
API_KEYS = CommandLineSetting(
    "api_keys", str, "API keys, comma-separated; added to [auth] api_keys", None, has_flag=False
)
DATA_DIR = CommandLineSetting(
    "data_dir", str, "moves the whole data folder (backends, default models and outputs)", None, has_flag=False
)
STORE_URL = CommandLineSetting(
    "store_url", str, "the store's PostgreSQL URL; sets [store] url (may hold a password)", None, has_flag=False
)
ENVIRONMENT_ONLY: tuple[CommandLineSetting, ...] = (API_KEYS, DATA_DIR, STORE_URL)


class SettingsError(ValueError):
    """A config file, variable or flag that cannot be used; the message says which and why."""


def _merge(base: dict[str, Any], layer: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in layer.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Layer the sources; `overrides` are command-line values (None means not given)."""
    env = os.environ if environ is None else environ
    layered: dict[str, Any] = msgspec.to_builtins(Settings())
    config_path = config_file or env.get(CONFIG_FILE.variable)
    if config_path:
        try:
            layered = _merge(layered, tomllib.loads(Path(config_path).read_text()))
        except OSError as exc:
            raise SettingsError(f"cannot read config file {config_path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {config_path} is not valid TOML: {exc}") from None
    env_layer = {setting.name: env[setting.variable] for setting in COMMAND_LINE if setting.variable in env}
    cli_layer = {name: value for name, value in (overrides or {}).items() if value is not None}
    layered = _merge(_merge(layered, env_layer), cli_layer)
    if keys := [key.strip() for key in env.get(API_KEYS.variable, "").split(",") if key.strip()]:
        layered["auth"] = {**layered.get("auth", {}), "api_keys": [*layered.get("auth", {}).get("api_keys", []), *keys]}
    if store_url := env.get(STORE_URL.variable, "").strip():
        layered["store"] = {**layered.get("store", {}), "url": store_url}
    try:
        # strict=False: environment values are strings ("8080" -> 8080).
        settings = msgspec.convert(layered, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"invalid setting: {exc}") from None
    check_backends(settings.backends)
    check_workers(settings.worker_list())
    return settings


def check_backends(backends: dict[str, Backend]) -> None:
    """Each [backends.NAME] table says where its binaries are: a folder, or sd-cli and sd-server both."""
    for name, table in backends.items():
        if not table.folder and not (table.sd_cli and table.sd_server):
            raise SettingsError(
                f"invalid setting: backends.{name}: give `folder` (a build's folder, with sd-cli, sd-server and "
                "sdcpp-worker) or both `sd_cli` and `sd_server`"
            )


def check_workers(workers: list[WorkerSettings]) -> None:
    """Names are unique, and a device is named only where the backend can choose one."""
    names = [worker.name for worker in workers]
    if duplicates := sorted({name for name in names if names.count(name) > 1}):
        raise SettingsError(f"invalid setting: workers: the name {duplicates[0]!r} is used twice")
    for index, worker in enumerate(workers):
        try:
            device_environment(worker.backend, worker.device)
        except NoDeviceSelection as exc:
            raise SettingsError(f"invalid setting: workers[{index}].device: {exc}") from None
