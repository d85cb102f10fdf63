"""Build sd.cpp's `sd-cli` / `sd-server` and our resident worker (`runners/worker/`) from the source that PyPI's
stable-diffusion-cpp-python vendors.

The build is keyed by a manifest (sdist version, sdist sha256, CMake flags, the worker's source hash): an install
whose manifest matches is reused, so the expensive compile happens once per machine and backend. The build folder
is kept (`<data>/build/<backend>`), so a change to the worker alone recompiles in seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from runners.build_preflight import (
    Check,
    Host,
    Verdict,
    check_cublas,
    check_cuda_arch,
    check_glslc,
    check_hipcc,
    check_macos,
    check_nvcc,
    check_vulkan_headers,
    check_vulkan_loader,
    fetch_missing,
    run_checks,
)
from runners.paths import backend_dir, data_dir

SDIST_NAME = "stable-diffusion-cpp-python"
SDIST_VERSION = "0.4.7"
SDIST_SHA256 = "998d1957260dd5ae4e18a8acc0c14b0a8757aaa9f96515197b6d5bbf46df9282"
SDIST_FILE = f"stable_diffusion_cpp_python-{SDIST_VERSION}.tar.gz"
VENDORED_SOURCE = "vendor/stable-diffusion.cpp"
TARGETS = ("sd-cli", "sd-server", "sdcpp-worker")
WORKER_PROJECT = Path(__file__).resolve().parent / "worker"  # our CMake project: add_subdirectory()s the source


@dataclass(frozen=True)
class BackendRecipe:
    """One backend: its fixed CMake options and the preflight checks whose verdicts add the host-specific ones."""

    cmake_flags: tuple[str, ...]
    checks: tuple[Check, ...] = ()


# Backend name -> how to build it. A new backend is one row here.
BACKENDS: dict[str, BackendRecipe] = {
    "cpu": BackendRecipe(()),
    # GGML_CUDA_NO_VMM: no driver-API calls, so it links without libcuda (the runtime loads the driver at the first
    # CUDA call); GGML_NATIVE=OFF: no -march=native CPU code (a binary that moves to another CPU does not SIGILL).
    "cuda": BackendRecipe(
        ("-DSD_CUDA=ON", "-DGGML_CUDA_NO_VMM=ON", "-DGGML_NATIVE=OFF"), (check_nvcc, check_cuda_arch, check_cublas)
    ),
    "vulkan": BackendRecipe(("-DSD_VULKAN=ON",), (check_vulkan_headers, check_glslc, check_vulkan_loader)),
    "rocm": BackendRecipe(("-DSD_HIPBLAS=ON",), (check_hipcc,)),
    "metal": BackendRecipe(("-DSD_METAL=ON",), (check_macos,)),
}
COMMON_CMAKE_FLAGS = ("-DCMAKE_BUILD_TYPE=Release", "-DSD_BUILD_EXAMPLES=ON")


def say(message: str) -> None:
    print(f"[build-backend] {message}", flush=True)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cmake_flags(backend: str, verdicts: list[Verdict]) -> list[str]:
    """The backend's CMake options: the common ones, its recipe's, then what its checks found (nvcc, headers...)."""
    found = [flag for verdict in verdicts for flag in verdict.flags]
    return [*COMMON_CMAKE_FLAGS, *BACKENDS[backend].cmake_flags, *found]


def wanted_manifest(backend: str, flags: list[str]) -> dict[str, object]:
    return {
        "package": SDIST_NAME,
        "version": SDIST_VERSION,
        "sdist_sha256": SDIST_SHA256,
        "backend": backend,
        "cmake_flags": flags,
        "worker_sha256": worker_source_hash(),
    }


def worker_source_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted(WORKER_PROJECT.iterdir()):
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def installed_is_current(install: Path, wanted: dict[str, object]) -> bool:
    manifest_path = install / "manifest.json"
    if not manifest_path.is_file():
        return False
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return False
    same_build = all(manifest.get(key) == value for key, value in wanted.items())
    return same_build and all((install / target).is_file() for target in TARGETS)


def fetch_sdist(cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / SDIST_FILE
    if sdist.is_file() and sha256_of(sdist) == SDIST_SHA256:
        say(f"sdist cached: {sdist}")
        return sdist
    say(f"downloading {SDIST_NAME}=={SDIST_VERSION} sdist from the package index")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary=:all:",
            f"{SDIST_NAME}=={SDIST_VERSION}",
            "-d",
            str(cache),
        ],
        check=True,
    )
    actual = sha256_of(sdist)
    if actual != SDIST_SHA256:
        sdist.unlink(missing_ok=True)
        raise SystemExit(f"sha256 mismatch for {SDIST_FILE}: got {actual}, pinned {SDIST_SHA256}")
    return sdist


def sources_are_current(install: Path, backend: str) -> bool:
    """The install was built from this version's pinned sources and worker (its CMake flags, which depend on the
    host's toolkits, are not compared): what `doctor` can tell without running the preflight."""
    wanted = wanted_manifest(backend, [])
    del wanted["cmake_flags"]
    return installed_is_current(install, wanted)


def checked_flags(backend: str, host: Host, fetch: bool) -> list[str]:
    """Run the backend's preflight (fetching what it can); exit non-zero, saying why, if the build cannot work."""
    checks = BACKENDS[backend].checks
    verdicts = run_checks(checks, host)
    for verdict in verdicts:
        say(verdict.line())
    errors: list[str] = []
    hopeless = any(not verdict.ok and verdict.fetch is None for verdict in verdicts)  # then fetch nothing (~420 MB)
    if fetch and not hopeless and any(not verdict.ok for verdict in verdicts):
        errors = fetch_missing(verdicts)
        fetched = [verdict.requirement for verdict in verdicts if not verdict.ok]
        verdicts = run_checks(checks, host)
        for verdict in verdicts:
            if verdict.requirement in fetched:
                say(verdict.line())
    # Without fetching (--check), what the build would fetch by itself does not stop it.
    missing = [verdict for verdict in verdicts if not verdict.ok and (fetch or verdict.fetch is None)]
    if missing:
        lines = [f"  - {verdict.requirement}: {verdict.detail}" for verdict in missing]
        lines += [f"  - fetching {error}" for error in errors]
        raise SystemExit(f"[build-backend] the {backend} backend cannot be built here:\n" + "\n".join(lines))
    return cmake_flags(backend, verdicts)


def adopt_build_dir(build_dir: Path) -> None:
    """Point a build folder configured from another copy of our worker project (another checkout or venv sharing
    the data folder) at this one. CMake refuses a cache made for another source folder; the compiled sd.cpp objects
    in it depend only on SD_SOURCE, so only the worker itself recompiles."""
    cache = build_dir / "CMakeCache.txt"
    if not cache.is_file():
        return
    key = "CMAKE_HOME_DIRECTORY:INTERNAL="
    lines = cache.read_text().splitlines(keepends=True)
    wanted = f"{key}{WORKER_PROJECT}\n"
    adopted = [wanted if line.startswith(key) else line for line in lines]
    if adopted != lines:
        say(f"build folder {build_dir} was configured from another checkout; adopting it")
        cache.write_text("".join(adopted))


def build(backend: str, jobs: int, force: bool, cuda_arch: str | None = None) -> Path:
    install = backend_dir(backend)
    work = data_dir() / "build" / backend
    flags = checked_flags(backend, Host.current(work, cuda_arch), fetch=True)
    wanted = wanted_manifest(backend, flags)
    if not force and installed_is_current(install, wanted):
        say(f"backend '{backend}' is already built ({SDIST_NAME} {SDIST_VERSION}); reusing it")
        return install

    started = time.monotonic()
    sdist = fetch_sdist(data_dir() / "cache")
    unpacked = work / f"sources-{SDIST_SHA256[:12]}"
    if not unpacked.is_dir():  # a new pin unpacks next to (not over) the old sources
        say("unpacking sources")
        partial = unpacked.with_name(unpacked.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        with tarfile.open(sdist) as archive:
            archive.extractall(partial, filter="data")
        partial.rename(unpacked)
    source = unpacked / f"stable_diffusion_cpp_python-{SDIST_VERSION}" / VENDORED_SOURCE
    build_dir = work / f"cmake-{SDIST_SHA256[:12]}"
    configure = [*flags, f"-DSD_SOURCE={source}"]
    say(f"configuring: cmake {' '.join(configure)}")
    adopt_build_dir(build_dir)
    subprocess.run(["cmake", "-S", str(WORKER_PROJECT), "-B", str(build_dir), *configure], check=True)
    say(f"compiling {', '.join(TARGETS)} with {jobs} jobs (a few minutes on 2 cores the first time)")
    subprocess.run(["cmake", "--build", str(build_dir), "-j", str(jobs), "--target", *TARGETS], check=True)
    staging = install.with_name(install.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    binaries: dict[str, str] = {}
    for target in TARGETS:
        built = next(path for path in build_dir.rglob(target) if path.is_file())
        shutil.copy2(built, staging / target)
        binaries[target] = sha256_of(staging / target)
    manifest = {
        **wanted,
        "binaries": binaries,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(time.monotonic() - started, 1),
    }
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    shutil.rmtree(install, ignore_errors=True)
    staging.rename(install)
    say(f"built backend '{backend}' in {time.monotonic() - started:.0f}s")
    return install


def main(argv: list[str] | None = None, prog: str = "build-backend") -> int:
    """The command line of `sdcpp-restapi build-backend` and of bin/build-backend (one implementation)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("backend", nargs="?", default="cpu", choices=sorted(BACKENDS))
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--force", action="store_true", help="rebuild even if a matching build exists")
    parser.add_argument(
        "--cuda-arch",
        help="CUDA architectures to compile for, e.g. 90 or '86;90' (default: SDCPP_RESTAPI_CUDA_ARCH, else the "
        "compute capabilities nvidia-smi reports; each one adds the whole CUDA compile time again)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="run only the preflight checks (fetching nothing) and exit 0 if it can build",
    )
    args = parser.parse_args(argv)
    if args.check:
        checked_flags(args.backend, Host.current(data_dir() / "build" / args.backend, args.cuda_arch), fetch=False)
        say(f"the {args.backend} backend can be built here")
        return 0
    install = build(args.backend, args.jobs, args.force, args.cuda_arch)
    print(install, flush=True)
    return 0
