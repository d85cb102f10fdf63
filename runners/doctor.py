"""The binary side of `sdcpp-restapi doctor`: does each configured binary exist and run, is the backend build the one
this version builds, are its devices there. Plain functions over paths and a backend name; each returns a `Finding`
(core.doctor declares the table of checks and adds the folders, the store, the ports, Ollama and the keys)."""

from __future__ import annotations

import os
import shutil
import subprocess
from enum import Enum
from pathlib import Path

import msgspec

from runners.backend_build import BACKENDS, sources_are_current
from runners.capabilities import parse_help
from runners.paths import backend_dir

RUN_TIMEOUT_S = 20.0  # `--help` of a binary; a GPU build may probe its devices first


class Verdict(Enum):
    OK = "ok"
    NOTE = "note"  # worth knowing, nothing to fix (a server already runs here, a check that does not apply)
    WARNING = "warning"  # an optional part will not work; the server still serves
    PROBLEM = "problem"  # `serve` would fail or misbehave: doctor exits 1

    @property
    def fails(self) -> bool:
        return self is Verdict.PROBLEM


class Finding(msgspec.Struct, frozen=True):
    verdict: Verdict
    summary: str  # what was found, naming the path / port / address
    fix: str = ""  # the command or setting that fixes it (empty when there is nothing to do)


def ok(summary: str) -> Finding:
    return Finding(Verdict.OK, summary)


def problem(summary: str, fix: str) -> Finding:
    return Finding(Verdict.PROBLEM, summary, fix)


def _set_path_fix(role: str, backend: str) -> str:
    return (
        f"build it with `sdcpp-restapi build-backend {backend}`, or point the config at an existing binary "
        f"(--{role} PATH, SDCPP_RESTAPI_{role.upper().replace('-', '_')} or [backends.{backend}] {role.replace('-', '_')})"
    )


def _run_help(path: Path) -> tuple[int, str]:
    result = subprocess.run(
        [str(path), "--help"], capture_output=True, timeout=RUN_TIMEOUT_S, check=False, stdin=subprocess.DEVNULL
    )
    return result.returncode, result.stdout.decode("utf-8", "replace")


def _present(path: Path, role: str, backend: str) -> Finding | None:
    """A problem when the file is missing or not executable; None when it may be run."""
    if not path.is_file():
        return problem(f"{role} not found at {path}", _set_path_fix(role, backend))
    if not os.access(path, os.X_OK):
        return problem(f"{role} at {path} is not executable", f"chmod +x {path}")
    return None


def check_sd_cli(path: Path, backend: str) -> Finding:
    """sd-cli exists, runs, and its --help has the sampler list the server reads its capabilities from."""
    if missing := _present(path, "sd-cli", backend):
        return missing
    try:
        code, usage = _run_help(path)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return problem(f"sd-cli at {path} does not run: {exc}", _set_path_fix("sd-cli", backend))
    samplers = parse_help(usage).samplers
    if not samplers:
        return problem(
            f"`{path} --help` exited {code} without sd-cli's sampler list: is it stable-diffusion.cpp's sd-cli?",
            _set_path_fix("sd-cli", backend),
        )
    return ok(f"{path} runs ({len(samplers)} samplers)")


def check_sd_server(path: Path, backend: str) -> Finding:
    if missing := _present(path, "sd-server", backend):
        return missing
    try:
        _run_help(path)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return problem(f"sd-server at {path} does not run: {exc}", _set_path_fix("sd-server", backend))
    return ok(f"{path} runs")


def check_worker(path: Path | None, backend: str) -> Finding:
    """Our resident worker is optional: without it sd-server and sd-cli do the work."""
    if path is None:
        return Finding(Verdict.NOTE, "no resident worker configured: sd-server and sd-cli do the work")
    if not path.is_file():
        return Finding(
            Verdict.NOTE,
            f"no resident worker at {path}: sd-server and sd-cli do the work (no live previews without sd-cli reloads)",
            f"`sdcpp-restapi build-backend {backend}` builds it",
        )
    if not os.access(path, os.X_OK):
        return problem(f"sd-worker at {path} is not executable", f"chmod +x {path}")
    return ok(f"{path} present")


def check_backend_build(backend: str, sd_cli: Path) -> Finding:
    """A build-backend install is current when its manifest matches what this version would build."""
    install = backend_dir(backend)
    if backend not in BACKENDS or sd_cli.parent != install:
        return Finding(Verdict.NOTE, f"custom binaries ({sd_cli.parent}): not a build-backend build, not compared")
    if not (install / "manifest.json").is_file():
        return problem(
            f"no build of backend '{backend}' at {install}", f"sdcpp-restapi build-backend {backend} (or just backend)"
        )
    if not sources_are_current(install, backend):
        return problem(
            f"the '{backend}' build at {install} is older than this version's pinned sources or worker",
            f"sdcpp-restapi build-backend {backend} (rebuilds only what changed)",
        )
    return ok(f"'{backend}' build at {install} matches this version")


class DeviceProbe(msgspec.Struct, frozen=True):
    tool: str  # a program the vendor's driver installs
    args: tuple[str, ...]
    fix: str


# Backend name -> how to see its devices. A backend without a row (cpu) has none to check.
DEVICE_PROBES: dict[str, DeviceProbe] = {
    "cuda": DeviceProbe("nvidia-smi", ("-L",), "install the NVIDIA driver (nvidia-smi -L must list a GPU)"),
    "rocm": DeviceProbe("rocminfo", (), "install ROCm (rocminfo must list a GPU agent)"),
    "vulkan": DeviceProbe("vulkaninfo", ("--summary",), "install the GPU's Vulkan driver (vulkaninfo --summary)"),
}


def check_devices(backend: str) -> Finding:
    probe = DEVICE_PROBES.get(backend)
    if probe is None:
        return ok(f"backend '{backend}' runs on the host CPU: no device to check")
    tool = shutil.which(probe.tool)
    if tool is None:
        return Finding(Verdict.WARNING, f"{probe.tool} is not on PATH: cannot list '{backend}' devices", probe.fix)
    try:
        result = subprocess.run([tool, *probe.args], capture_output=True, timeout=RUN_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return problem(f"{probe.tool} failed: {exc}", probe.fix)
    lines = [line.strip() for line in result.stdout.decode("utf-8", "replace").splitlines() if line.strip()]
    if result.returncode != 0 or not lines:
        return problem(f"`{probe.tool} {' '.join(probe.args)}` lists no device (exit {result.returncode})", probe.fix)
    return ok(f"{probe.tool}: {lines[0]}" + (f" (+{len(lines) - 1} more lines)" if len(lines) > 1 else ""))
