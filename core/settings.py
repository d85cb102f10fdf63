"""Service settings: one msgspec struct, layered defaults < TOML file < environment < command line."""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Any, Mapping

import msgspec

from core.generation.limits import Limits
from core.jobs.queue import Retention
from core.models.downloads import DownloadSettings
from core.models.schemas import LoadModelRequest
from core.models.types import MODEL_TYPES
from core.prompt_help.schemas import LlmSettings
from runners.paths import backend_dir, data_dir

ENV_PREFIX = "SDCPP_RESTAPI_"


class Backend(msgspec.Struct, forbid_unknown_fields=True):
    sd_cli: str
    sd_server: str
    sd_worker: str = ""  # our resident worker; "" or a missing file: none


class Auth(msgspec.Struct, forbid_unknown_fields=True):
    """API keys ([auth] api_keys, or SDCPP_RESTAPI_API_KEYS as a comma-separated list). Empty: no key needed,
    which the server allows only on a loopback address unless started with --no-auth."""

    api_keys: list[str] = []


class Cors(msgspec.Struct, forbid_unknown_fields=True):
    """Web origins (scheme://host[:port]) other than the server's own that may call the API from a browser."""

    allow_origins: list[str] = []


class Settings(msgspec.Struct, forbid_unknown_fields=True):
    """Everything configurable. [ollama] and [assistant] are the starting values of those features'
    settings; changes made with PUT /ollama/settings or /assistant/settings persist and win."""

    host: str = "127.0.0.1"
    port: int = 8080
    ws_port: int = 8081
    models_dir: str = ""
    output_dir: str = ""
    # Per-type folder overrides, keyed like the spec's directories (checkpoints, loras, taesd, ...).
    paths: dict[str, str] = {}
    backend: str = "cpu"
    backends: dict[str, Backend] = {}
    # Overrides of the selected backend's binaries (--sd-cli / --sd-server / --sd-worker; "none" turns the
    # worker off, so that sd-server and sd-cli do the work as with a plain sd.cpp release).
    sd_cli: str = ""
    sd_server: str = ""
    sd_worker: str = ""
    # How long the worker may print nothing while a job runs before it is stopped and the job failed.
    worker_stall_timeout_s: float = 300.0
    limits: Limits = msgspec.field(default_factory=Limits)
    downloads: DownloadSettings = msgspec.field(default_factory=DownloadSettings)
    ollama: LlmSettings = msgspec.field(default_factory=LlmSettings)
    assistant: LlmSettings = msgspec.field(default_factory=lambda: LlmSettings(timeout_seconds=120.0, max_history=50))
    log_level: str = "info"
    # How long a model load (sd-server start until it answers) may take; big models on slow disks need minutes.
    load_timeout_s: float = 600.0
    # How much finished job history the store keeps ([retention]; off by default: all of it).
    retention: Retention = msgspec.field(default_factory=Retention)
    # Period of the `server_status` heartbeat event.
    status_interval_s: float = 5.0
    # Load profiles by model name ([models."flux.safetensors"] llm = "...", vae = "..."): how a model chosen by
    # name (AUTOMATIC1111 / OpenAI clients, MCP) is loaded when it has never been loaded through /models/load.
    models: dict[str, LoadModelRequest] = {}
    auth: Auth = msgspec.field(default_factory=Auth)
    cors: Cors = msgspec.field(default_factory=Cors)
    # Host names (besides loopback ones) that requests may name while the server is bound to loopback: a
    # guard against DNS rebinding.
    allowed_hosts: list[str] = []
    # Serve on a non-loopback address without API keys (--no-auth): anyone who reaches the port may use it.
    no_auth: bool = False

    @property
    def on_loopback(self) -> bool:
        return is_loopback(self.host)

    def models_root(self) -> Path:
        return Path(self.models_dir) if self.models_dir else data_dir() / "models"

    def output_root(self) -> Path:
        return Path(self.output_dir) if self.output_dir else data_dir() / "output"

    def model_folder(self, folder: str) -> Path:
        override = self.paths.get(folder)
        return Path(override) if override else self.models_root() / folder

    def model_folders(self) -> dict[str, Path]:
        return {t.folder: self.model_folder(t.folder) for t in MODEL_TYPES}

    def selected_backend(self) -> Backend:
        configured = self.backends.get(self.backend) or default_backend(self.backend)
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
    folder = backend_dir(name)
    return Backend(sd_cli=str(folder / "sd-cli"), sd_server=str(folder / "sd-server"),
                   sd_worker=str(folder / "sdcpp-worker"))


# Scalar settings that may come from SDCPP_RESTAPI_<NAME> and from a --<name> flag.
OVERRIDABLE = ("host", "port", "ws_port", "models_dir", "output_dir", "backend", "sd_cli", "sd_server", "sd_worker",
               "log_level", "no_auth")
API_KEYS_VARIABLE = ENV_PREFIX + "API_KEYS"  # comma-separated; adds to [auth] api_keys


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
    config_path = config_file or env.get(ENV_PREFIX + "CONFIG")
    if config_path:
        try:
            layered = _merge(layered, tomllib.loads(Path(config_path).read_text()))
        except OSError as exc:
            raise SettingsError(f"cannot read config file {config_path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {config_path} is not valid TOML: {exc}") from None
    env_layer = {name: env[ENV_PREFIX + name.upper()] for name in OVERRIDABLE if ENV_PREFIX + name.upper() in env}
    cli_layer = {name: value for name, value in (overrides or {}).items() if value is not None}
    layered = _merge(_merge(layered, env_layer), cli_layer)
    if keys := [key.strip() for key in env.get(API_KEYS_VARIABLE, "").split(",") if key.strip()]:
        layered["auth"] = {**layered.get("auth", {}), "api_keys": [*layered.get("auth", {}).get("api_keys", []), *keys]}
    try:
        # strict=False: environment values are strings ("8080" -> 8080).
        return msgspec.convert(layered, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"invalid setting: {exc}") from None
