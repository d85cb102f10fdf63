"""`sdcpp-restapi serve`: settings from defaults, TOML, environment and flags (generated from the settings'
declaration), then uvicorn. `doctor` checks the set-up `serve` would use (same flags); `build-backend` builds a
backend (runners.backend_build, the same builder as bin/build-backend); `import-store` copies an SQLite store into
PostgreSQL (core.store.transfer)."""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import logging
import signal
import socket
import subprocess
import sys
from pathlib import Path

import uvicorn

from core.doctor import CheckResult, all_well, run_checks
from core.service import build_service, build_worker_host
from core.settings import COMMAND_LINE, CONFIG_FILE, Settings, SettingsError, load_settings
from core.store import StoreUnusable
from core.store.postgres import shown_url
from core.store.sqlite import STORE_FILE
from core.store.transfer import ImportRefused, import_sqlite_store
from core.webhooks.signing import BadSecret
from litestar_app.slow_clients import slow_client_protocol
from runners import backend_build
from runners.binaries import BinaryNotFound
from runners.doctor import Verdict

log = logging.getLogger("sdcpp_restapi")


def add_settings_flags(command: argparse.ArgumentParser) -> None:
    """The settings' flags and their help, generated from the settings' declaration (core.settings.COMMAND_LINE)."""
    for setting in (CONFIG_FILE, *COMMAND_LINE):
        if setting.flag is None:  # a secret: from the environment or the config file only
            continue
        default = f"default {setting.default}; " if setting.default not in (None, "", False) else ""
        help_text = f"{setting.description} ({default}also {setting.variable})"
        if setting.kind is bool:
            command.add_argument(setting.flag, dest=setting.name, action="store_true", default=None, help=help_text)
        else:
            command.add_argument(
                setting.flag, dest=setting.name, type=setting.kind, choices=setting.choices, help=help_text
            )


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="sdcpp-restapi", description="REST API server for stable-diffusion.cpp")
    commands = root.add_subparsers(dest="command", required=True)
    add_settings_flags(commands.add_parser("serve", help="start the API server"))
    add_settings_flags(
        commands.add_parser(
            "doctor",
            help="check the set-up serve would use (binaries, backend build, devices, folders, ports, store, "
            "Ollama, keys); exit 1 when something must be fixed",
            description="Check what `serve` with the same flags would use and print each problem with its fix. "
            "Exit status 0: all is well (notes and warnings do not count); 1: a problem to fix.",
        )
    )
    importer = commands.add_parser(
        "import-store",
        help="copy an SQLite store into the PostgreSQL store of [store] url (SDCPP_RESTAPI_STORE_URL)",
        description="Copy the jobs, state values, model hashes, histories and idempotent answers of an SQLite "
        "store (default: the one in the output folder) into the PostgreSQL store of [store] url, in one "
        "transaction, and print what moved. No server may run on either store meanwhile.",
    )
    importer.add_argument("--from", dest="source", help="the SQLite store file (default: the output folder's)")
    importer.add_argument(
        "--merge", action="store_true", help="add to a PostgreSQL store that already holds jobs (its own are kept)"
    )
    add_settings_flags(importer)
    add_settings_flags(
        commands.add_parser(
            "worker",
            help="a worker host: run this host's [[workers]] on the jobs of the shared queue ([store] url: PostgreSQL)",
            description="Take generation jobs from the queue shared through the PostgreSQL database of [store] url "
            "(SDCPP_RESTAPI_STORE_URL), on this host's [[workers]], for the models in its models folder. Outputs go "
            "to the output folder, which the API hosts must share.",
        )
    )
    # Listed here for --help; its arguments are the builder's own (runners.backend_build.main), see main().
    commands.add_parser("build-backend", help="build and install a backend's sd-cli, sd-server and resident worker")
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
        http=slow_client_protocol(settings.head_timeout_s, settings.body_idle_timeout_s),
    )
    log.info("listening on http://%s:%d", settings.host, settings.port)
    await uvicorn.Server(config).serve()


def import_store(settings: Settings, source: Path | None, merge: bool) -> int:
    if not settings.store.url:
        print("sdcpp-restapi: import-store needs the PostgreSQL store: set SDCPP_RESTAPI_STORE_URL", file=sys.stderr)
        return 2
    source = source or settings.output_root() / STORE_FILE
    try:
        report = import_sqlite_store(source, settings.store.url, merge)
    except (ImportRefused, StoreUnusable) as exc:
        print(f"sdcpp-restapi: {exc}", file=sys.stderr)
        return 2
    print(f"imported {source} into {shown_url(settings.store.url)}:")
    for line in report.lines():
        print(f"  {line}")
    return 0


async def work(settings: Settings) -> None:
    service, host = await build_worker_host(settings)
    async with service.running():
        await host.run()


def worker_child(given: list[str]) -> subprocess.Popen[bytes]:
    """`serve` with a PostgreSQL store and workers: this host's worker host, a child process with the same flags
    (its own event loop and resident processes); it dies with the server (PR_SET_PDEATHSIG)."""
    argv = [sys.executable, "-m", "litestar_app", "worker", *given[1:]]

    def die_with_parent() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return subprocess.Popen(argv, preexec_fn=die_with_parent)


VERDICT_LABELS = {Verdict.OK: "ok", Verdict.NOTE: "note", Verdict.WARNING: "WARNING", Verdict.PROBLEM: "PROBLEM"}


def print_report(results: list[CheckResult]) -> None:
    width = max(len(result.name) for result in results)
    for result in results:
        finding = result.finding
        print(f"{VERDICT_LABELS[finding.verdict]:<8} {result.name:<{width}}  {finding.summary}")
        if finding.fix and finding.verdict is not Verdict.OK:
            print(f"{'':<8} {'':<{width}}  fix: {finding.fix}")
    problems = sum(result.finding.verdict.fails for result in results)
    warnings = sum(result.finding.verdict is Verdict.WARNING for result in results)
    print(f"{problems} problem(s), {warnings} warning(s): " + ("all is well" if not problems else "fix the above"))


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    if given[:1] == ["build-backend"]:  # the builder parses its own arguments: one command line, one implementation
        return backend_build.main(given[1:], prog="sdcpp-restapi build-backend")
    args = parser().parse_args(given)
    own = ("command", "config", "source", "merge")  # the subcommands' own arguments, not settings
    overrides = {key: value for key, value in vars(args).items() if key not in own}
    try:
        settings = load_settings(args.config, overrides=overrides)
    except SettingsError as exc:
        print(f"sdcpp-restapi: {exc}", file=sys.stderr)
        return 2
    if args.command == "doctor":
        results = run_checks(settings)
        print_report(results)
        return 0 if all_well(results) else 1
    if args.command == "import-store":
        return import_store(settings, Path(args.source) if args.source else None, args.merge)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("procrastinate").setLevel(logging.WARNING)  # it logs each job's arguments at INFO
    describe(settings)
    if args.command == "worker" and not settings.store.url:
        print(
            "sdcpp-restapi: worker needs the shared database: set [store] url or SDCPP_RESTAPI_STORE_URL",
            file=sys.stderr,
        )
        return 2
    child = None
    try:
        if args.command == "worker":
            asyncio.run(work(settings))
            return 0
        check_exposure(settings)
        check_ports(settings)
        if settings.store.url and not settings.no_workers:
            child = worker_child(given)
        asyncio.run(serve(settings))
    except (BinaryNotFound, PortInUse, StoreUnusable, Unprotected, BadSecret) as exc:
        print(f"sdcpp-restapi: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    finally:
        if child is not None:
            child.terminate()
            child.wait(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
