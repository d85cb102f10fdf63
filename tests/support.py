"""Helpers shared by the tests: a real server in a subprocess, free ports, job polling."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runners.paths import data_dir

REPO = Path(__file__).resolve().parent.parent
FAKES = REPO / "tests" / "fakes"
TERMINAL = {"completed", "failed", "cancelled"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`sdcpp-restapi serve` on free ports with its own models and output folders."""

    def __init__(
        self, models_dir: Path, output_dir: Path, log_path: Path, *extra: str, env: dict[str, str] | None = None
    ) -> None:
        self.models_dir, self.output_dir, self.log_path = models_dir, output_dir, log_path
        self.env = {**os.environ, **(env or {})}
        self.port, self.ws_port = free_port(), free_port()
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "litestar_app",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--ws-port",
            str(self.ws_port),
            "--models-dir",
            str(self.models_dir),
            "--output-dir",
            str(self.output_dir),
            *self.extra,
        ]

    def start(self, timeout: float = 60.0) -> ServerProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv(), cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=self.env
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log_path.read_text()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError(f"server did not answer within {timeout}s:\n{self.log_path.read_text()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)


def running_server_with(
    models_dir: Path, work: Path, *extra: str, env: dict[str, str] | None = None
) -> Iterator[ServerProcess]:
    process = ServerProcess(models_dir, work / "output", work / "server.log", *extra, env=env).start()
    try:
        yield process
    finally:
        process.stop()


def running_server_with_config(
    models_dir: Path, work: Path, toml: str, env: dict[str, str] | None = None
) -> Iterator[ServerProcess]:
    """A server started with `--config` pointing at a TOML file holding `toml` (and `env` added to its environment,
    e.g. SDCPP_RESTAPI_API_KEYS)."""
    config = work / "config.toml"
    config.write_text(toml)
    yield from running_server_with(models_dir, work, "--config", str(config), env=env)


def server_fixture(models_fixture: str = "tiny_models_dir", *extra: str):  # type: ignore[no-untyped-def]
    """A module-scoped `server` fixture serving the models of the fixture named `models_fixture`; `extra` are more
    `serve` flags (e.g. "--sd-worker", "none" for the sd-server and sd-cli engines alone)."""

    @pytest.fixture(scope="module")
    def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
        models = request.getfixturevalue(models_fixture)
        work = tmp_path_factory.mktemp(f"server-{request.module.__name__.rsplit('.', 1)[-1]}")
        yield from running_server_with(models, work, *extra)

    return server


def wait_for_job(client: httpx.Client, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/queue/{job_id}").json()
        if job["status"] in TERMINAL:
            return job
        time.sleep(0.05)
    raise TimeoutError(f"job {job_id} did not finish within {timeout}s")


def process_exe(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def sd_processes(server: ServerProcess, name: str = "sd-server") -> list[int]:
    """Live descendants of the test server (in any session) whose binary is `name`."""
    assert server.process is not None
    return [
        pid
        for pid in all_pids()
        if (exe := process_exe(pid)) and Path(exe).name == name and _is_descendant(pid, server.process.pid)
    ]


def all_pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _is_descendant(pid: int, ancestor: int) -> bool:
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        if pid == ancestor:
            return True
    return False


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval)
    raise TimeoutError("condition not reached")


def cached_models(name: str, build: Callable[[Path], object]) -> Path:
    """A models folder made once per machine under data_dir()/test-cache/NAME, like the backend build: `build`
    writes into a scratch folder that is then renamed into place whole, so an interrupted build leaves no
    half-written cache (a concurrent builder that loses the race throws its copy away)."""
    cache = data_dir() / "test-cache" / name
    if not cache.is_dir():
        scratch = cache.with_name(f".{cache.name}.scratch-{os.getpid()}")
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.parent.mkdir(parents=True, exist_ok=True)
        build(scratch)
        try:
            scratch.rename(cache)
        except OSError:
            shutil.rmtree(scratch, ignore_errors=True)
    return cache


def linked_models_dir(source: Path, target: Path) -> Path:
    """`target` holding every file of `source` as a hard link (a copy across file systems): a models folder a
    test module may change (add, hide files) without touching the shared cache or copying gigabytes."""
    for path in sorted(source.rglob("*")):
        if path.is_file():
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, destination)
            except OSError:
                shutil.copy2(path, destination)
    return target
