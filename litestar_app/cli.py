"""`sdcpp-restapi serve`: settings from defaults, TOML, environment and flags (generated from the settings'
declaration), then uvicorn."""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys

import uvicorn

from core.service import build_service
from core.settings import COMMAND_LINE, CONFIG_FILE, Settings, SettingsError, load_settings
from core.store import StoreUnusable
from runners.binaries import BinaryNotFound

log = logging.getLogger("sdcpp_restapi")


def parser() -> argparse.ArgumentParser:
    """`serve`'s flags and their help, generated from the settings' declaration (core.settings.COMMAND_LINE)."""
    root = argparse.ArgumentParser(prog="sdcpp-restapi", description="REST API server for stable-diffusion.cpp")
    commands = root.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start the API server")
    for setting in (CONFIG_FILE, *COMMAND_LINE):
        if setting.flag is None:  # a secret: from the environment or the config file only
            continue
        default = f"default {setting.default}; " if setting.default not in (None, "", False) else ""
        help_text = f"{setting.description} ({default}also {setting.variable})"
        if setting.kind is bool:
            serve.add_argument(setting.flag, dest=setting.name, action="store_true", default=None, help=help_text)
        else:
            serve.add_argument(
                setting.flag, dest=setting.name, type=setting.kind, choices=setting.choices, help=help_text
            )
    return root


def describe(settings: Settings) -> None:
    backend = settings.selected_backend()
    log.info("models root: %s", settings.models_root())
    for folder, path in settings.model_folders().items():
        log.info("  %-16s %s", folder, path)
    log.info("output folder: %s", settings.output_root())
    log.info(
        "backend '%s': sd-cli %s, sd-server %s, worker %s",
        settings.backend,
        backend.sd_cli,
        backend.sd_server,
        backend.sd_worker or "none",
    )
    for worker in settings.worker_list():
        log.info(
            "worker '%s': backend %s, device %s, threads %s",
            worker.name,
            worker.backend,
            worker.device or "default",
            worker.threads or "default",
        )
    keys = len(settings.auth.api_keys)  # never the keys themselves
    log.info("API keys: %s", f"{keys} configured" if keys else "none (open to whoever reaches the address)")


def check_ports(settings: Settings) -> None:
    """A port in use is a one-line start-up error, not a traceback from deep inside the server."""
    for label, port in (("port", settings.port), ("ws-port", settings.ws_port)):
        if not port:
            continue
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((settings.host, port))
            except OSError as exc:
                raise PortInUse(f"cannot listen on {settings.host}:{port} (--{label}): {exc.strerror}") from None


class PortInUse(RuntimeError):
    pass


class Unprotected(RuntimeError):
    """Bound beyond loopback with no key: refused unless the user says --no-auth."""


def check_exposure(settings: Settings) -> None:
    if settings.on_loopback or settings.auth.api_keys or settings.no_auth:
        return
    raise Unprotected(
        f"refusing to listen on {settings.host} without an API key: anyone who can reach this address could use "
        'the server. Set a key ([auth] api_keys = ["..."] in the config, or SDCPP_RESTAPI_API_KEYS=key1,key2), '
        "or pass --no-auth if the network is trusted."
    )


async def serve(settings: Settings) -> None:
    from litestar_app.app import create_app

    service = await build_service(settings)
    config = uvicorn.Config(
        create_app(service),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        lifespan="on",
    )
    log.info("listening on http://%s:%d", settings.host, settings.port)
    await uvicorn.Server(config).serve()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    overrides = {key: value for key, value in vars(args).items() if key not in ("command", "config")}
    try:
        settings = load_settings(args.config, overrides=overrides)
    except SettingsError as exc:
        print(f"sdcpp-restapi: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    describe(settings)
    try:
        check_exposure(settings)
        check_ports(settings)
        asyncio.run(serve(settings))
    except (BinaryNotFound, PortInUse, StoreUnusable, Unprotected) as exc:
        print(f"sdcpp-restapi: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
