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
from pathlib import Path

from runners.paths import backend_dir, data_dir

SDIST_NAME = "stable-diffusion-cpp-python"
SDIST_VERSION = "0.4.7"
SDIST_SHA256 = "998d1957260dd5ae4e18a8acc0c14b0a8757aaa9f96515197b6d5bbf46df9282"
SDIST_FILE = f"stable_diffusion_cpp_python-{SDIST_VERSION}.tar.gz"
VENDORED_SOURCE = "vendor/stable-diffusion.cpp"
TARGETS = ("sd-cli", "sd-server", "sdcpp-worker")
WORKER_PROJECT = Path(__file__).resolve().parent / "worker"  # our CMake project: add_subdirectory()s the source

# Backend name -> extra CMake options. A new backend is one row here.
BACKEND_CMAKE_FLAGS: dict[str, tuple[str, ...]] = {
    "cpu": (),
    "cuda": ("-DSD_CUDA=ON",),
    "vulkan": ("-DSD_VULKAN=ON",),
    "rocm": ("-DSD_HIPBLAS=ON",),
    "metal": ("-DSD_METAL=ON",),
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


def wanted_manifest(backend: str) -> dict[str, object]:
    return {
        "package": SDIST_NAME,
        "version": SDIST_VERSION,
        "sdist_sha256": SDIST_SHA256,
        "backend": backend,
        "cmake_flags": [*COMMON_CMAKE_FLAGS, *BACKEND_CMAKE_FLAGS[backend]],
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


def build(backend: str, jobs: int, force: bool) -> Path:
    install = backend_dir(backend)
    wanted = wanted_manifest(backend)
    if not force and installed_is_current(install, wanted):
        say(f"backend '{backend}' is already built ({SDIST_NAME} {SDIST_VERSION}); reusing it")
        return install
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            raise SystemExit(f"'{tool}' is not on PATH: install CMake and a C++ compiler first")

    started = time.monotonic()
    sdist = fetch_sdist(data_dir() / "cache")
    work = data_dir() / "build" / backend
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
    flags = [*COMMON_CMAKE_FLAGS, *BACKEND_CMAKE_FLAGS[backend], f"-DSD_SOURCE={source}"]
    say(f"configuring: cmake {' '.join(flags)}")
    subprocess.run(["cmake", "-S", str(WORKER_PROJECT), "-B", str(build_dir), *flags], check=True)
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
    parser.add_argument("backend", nargs="?", default="cpu", choices=sorted(BACKEND_CMAKE_FLAGS))
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--force", action="store_true", help="rebuild even if a matching build exists")
    args = parser.parse_args(argv)
    install = build(args.backend, args.jobs, args.force)
    print(install, flush=True)
    return 0
