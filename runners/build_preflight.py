"""What a backend build needs before it compiles: one check per requirement, each a verdict on the host's files.

`bin/build-backend` runs the checks of its backend (the table is `BACKENDS` in `backend_build.py`) before it
touches the compiler, so a build that cannot work says why in seconds instead of failing twenty minutes in. A check
reads only a `Host` (the folders it searches, the platform, the asked-for CUDA architectures), so tests hand it fake
toolkits in temporary folders. A verdict carries the CMake flags its finding implies (which nvcc, which headers)
and, for what the build can get by itself (cuBLAS from PyPI, Debian 13's Vulkan headers), a `fetch` that gets it
into the build folder, after which the check runs again.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

VULKAN_HEADERS_NEEDED = (1, 3, 272)  # the first Vulkan-Headers with VK_EXT_layer_settings, which ggml-vulkan uses
DEBIAN13_VULKAN_DIR = "vulkan-headers-debian13"  # under the build folder: Debian 13's libvulkan-dev, unpacked
CUDA_ARCH_HINT = (
    "pass --cuda-arch (or set SDCPP_RESTAPI_CUDA_ARCH): 90 for H100/H200, 89 for RTX 40xx/L4, 86 for RTX 30xx/A10, "
    "80 for A100, 75 for T4, 120 for RTX 50xx; several as '86;90' (each one adds the compile time again)"
)
_CUDA_ARCH = re.compile(r"^\d{2,3}[af]?(-real|-virtual)?$")


@dataclass(frozen=True)
class Host:
    """The facts of the machine the checks read: folders to search, never the live filesystem defaults."""

    work: Path  # the backend's build folder, <data>/build/<backend>: fetched pieces go here
    search_path: tuple[Path, ...] = ()  # PATH
    platform: str = "linux"
    cuda_roots: tuple[Path, ...] = ()  # CUDA_HOME, CUDA_PATH, /usr/local/cuda
    rocm_roots: tuple[Path, ...] = ()  # ROCM_PATH, /opt/rocm
    vulkan_sdk: Path | None = None  # VULKAN_SDK (LunarG)
    include_dirs: tuple[Path, ...] = ()  # where system headers live
    library_dirs: tuple[Path, ...] = ()  # where system libraries live
    cuda_arch: str | None = None  # asked for: "90", "86;90"
    gpu_compute_caps: tuple[str, ...] = ()  # what nvidia-smi reports, "9.0"

    @classmethod
    def current(cls, work: Path, cuda_arch: str | None) -> Host:
        env = os.environ
        roots = [env.get("CUDA_HOME"), env.get("CUDA_PATH"), "/usr/local/cuda"]
        machine = os.uname().machine
        return cls(
            work=work,
            search_path=tuple(Path(part) for part in env.get("PATH", "").split(os.pathsep) if part),
            platform=sys.platform,
            cuda_roots=tuple(Path(root) for root in roots if root),
            rocm_roots=tuple(Path(root) for root in (env.get("ROCM_PATH"), "/opt/rocm") if root),
            vulkan_sdk=Path(env["VULKAN_SDK"]) if env.get("VULKAN_SDK") else None,
            include_dirs=(Path("/usr/include"), Path("/usr/local/include")),
            library_dirs=(
                Path(f"/usr/lib/{machine}-linux-gnu"),
                Path("/usr/lib64"),
                Path("/usr/lib"),
                Path("/usr/local/lib"),
            ),
            cuda_arch=cuda_arch or env.get("SDCPP_RESTAPI_CUDA_ARCH") or None,
            gpu_compute_caps=_nvidia_smi_compute_caps(),
        )

    def which(self, tool: str, *extra_dirs: Path) -> Path | None:
        for folder in (*self.search_path, *extra_dirs):
            candidate = folder / tool
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
        return None


@dataclass(frozen=True)
class Verdict:
    """One requirement's finding: `ok`, what was found or why not (and how to get it), the CMake flags it implies."""

    requirement: str
    ok: bool
    detail: str
    flags: tuple[str, ...] = ()
    fetch: Callable[[], str | None] | None = field(default=None, compare=False)  # gets it; returns an error or None

    def line(self) -> str:
        mark = "ok     " if self.ok else ("fetch  " if self.fetch else "MISSING")
        return f"{mark} {self.requirement}: {self.detail}"


Check = Callable[[Host], Verdict]


# ---- the checks -------------------------------------------------------------------------------------------------


def tool(name: str, how_to_get: str) -> Check:
    def check(host: Host) -> Verdict:
        found = host.which(name)
        if found is None:
            return Verdict(name, False, f"'{name}' is not on PATH: {how_to_get}")
        return Verdict(name, True, str(found))

    return check


def _nvcc(host: Host) -> Path | None:
    """The toolkit's own nvcc (CUDA_HOME, CUDA_PATH, /usr/local/cuda) before one on PATH, which may be a wrapper."""
    for root in host.cuda_roots:
        candidate = root / "bin" / "nvcc"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return host.which("nvcc")


def cuda_version(toolkit: Path) -> tuple[int, int] | None:
    """The toolkit's version from include/cuda.h (`#define CUDA_VERSION 13000`)."""
    header = toolkit / "include" / "cuda.h"
    try:
        match = re.search(r"#define\s+CUDA_VERSION\s+(\d+)", header.read_text(errors="replace"))
    except OSError:
        return None
    if match is None:
        return None
    number = int(match.group(1))
    return number // 1000, (number % 1000) // 10


def check_nvcc(host: Host) -> Verdict:
    nvcc = _nvcc(host)
    if nvcc is None:
        searched = ", ".join(str(root / "bin") for root in host.cuda_roots) or "nowhere else"
        return Verdict(
            "nvcc",
            False,
            f"the CUDA compiler nvcc is neither in {searched} nor on PATH: install the CUDA toolkit "
            "(https://developer.nvidia.com/cuda-downloads) or set CUDA_HOME to it",
        )
    version = cuda_version(nvcc.parent.parent)
    shown = f"CUDA {version[0]}.{version[1]}" if version else "version unknown"
    return Verdict("nvcc", True, f"{nvcc} ({shown})", (f"-DCMAKE_CUDA_COMPILER={nvcc}",))


def check_cuda_arch(host: Host) -> Verdict:
    if host.cuda_arch:
        archs = [part.strip() for part in re.split(r"[;,\s]+", host.cuda_arch) if part.strip()]
        bad = [arch for arch in archs if not _CUDA_ARCH.match(arch)]
        if bad or not archs:
            return Verdict(
                "CUDA architectures", False, f"{host.cuda_arch!r} is not a list like '90' or '86;90': {CUDA_ARCH_HINT}"
            )
        source = "asked for"
    elif host.gpu_compute_caps:
        archs = sorted({cap.replace(".", "") for cap in host.gpu_compute_caps})
        source = "the GPUs nvidia-smi reports"
    else:
        return Verdict(
            "CUDA architectures", False, f"none asked for and no GPU found to take them from: {CUDA_ARCH_HINT}"
        )
    listed = ";".join(archs)
    return Verdict("CUDA architectures", True, f"{listed} ({source})", (f"-DCMAKE_CUDA_ARCHITECTURES={listed}",))


def _cublas_in(folder: Path) -> Path | None:
    """The folder holding libcublas.so (the bare name CMake's find_library needs) under `folder`, if any."""
    for candidate in (
        folder / "lib64",
        folder / "lib",
        *sorted(folder.glob("targets/*/lib")),
        *sorted(folder.glob("nvidia/*/lib")),
    ):
        if (candidate / "libcublas.so").exists() and (candidate / "libcublasLt.so").exists():
            return candidate
    return None


def cublas_wheel_dir(host: Host, version: tuple[int, int]) -> Path:
    return host.work / f"cublas-{version[0]}.{version[1]}"


def check_cublas(host: Host) -> Verdict:
    nvcc = _nvcc(host)
    if nvcc is None:
        return Verdict("cuBLAS", False, "needs the CUDA toolkit first (see nvcc)")
    toolkit = nvcc.parent.parent
    if _cublas_in(toolkit) is not None:
        return Verdict("cuBLAS", True, f"in the toolkit at {toolkit}")
    version = cuda_version(toolkit)
    if version is None:
        return Verdict("cuBLAS", False, f"not in the toolkit at {toolkit}, whose version (include/cuda.h) is unknown")
    wheel = cublas_wheel_dir(host, version)
    lib = _cublas_in(wheel)
    if lib is not None:
        prefix = lib.parent
        return Verdict(
            "cuBLAS",
            True,
            f"PyPI's nvidia-cublas in {prefix}",
            (f"-DCMAKE_PREFIX_PATH={prefix}", f"-DCMAKE_CUDA_FLAGS=-I{prefix / 'include'}"),
        )
    requirement = f"nvidia-cublas=={version[0]}.{version[1]}.*"
    return Verdict(
        "cuBLAS",
        False,
        f"not in the toolkit at {toolkit} (no libcublas.so): the build installs PyPI's {requirement} (~420 MB) "
        f"into {wheel}; offline, install the toolkit's cuBLAS (e.g. apt-get install libcublas-dev-{version[0]}-"
        f"{version[1]}) or put the wheel where pip finds it (pip config: find-links)",
        fetch=lambda: fetch_cublas(requirement, wheel),
    )


def vulkan_headers_version(include_dir: Path) -> tuple[int, int, int] | None:
    """The Vulkan-Headers version of `<include_dir>/vulkan/vulkan_core.h`, from VK_HEADER_VERSION(_COMPLETE)."""
    try:
        text = (include_dir / "vulkan" / "vulkan_core.h").read_text(errors="replace")
    except OSError:
        return None
    patch = re.search(r"#define\s+VK_HEADER_VERSION\s+(\d+)", text)
    complete = re.search(
        r"#define\s+VK_HEADER_VERSION_COMPLETE\s+VK_MAKE_API_VERSION\(\s*\d+\s*,\s*(\d+)\s*,\s*(\d+)", text
    )
    if patch is None or complete is None:
        return None
    return int(complete.group(1)), int(complete.group(2)), int(patch.group(1))


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)


def check_vulkan_headers(host: Host) -> Verdict:
    fetched = host.work / DEBIAN13_VULKAN_DIR / "usr" / "include"
    sdk = (host.vulkan_sdk / "include",) if host.vulkan_sdk else ()
    found = [(folder, vulkan_headers_version(folder)) for folder in (*sdk, fetched, *host.include_dirs)]
    for folder, version in found:
        if version is not None and version >= VULKAN_HEADERS_NEEDED:
            return Verdict(
                "Vulkan headers", True, f"{_dotted(version)} in {folder}", (f"-DVulkan_INCLUDE_DIR={folder}",)
            )
    too_old = [f"{_dotted(version)} in {folder}" for folder, version in found if version is not None]
    what = f"only {', '.join(too_old)}" if too_old else "none found"
    return Verdict(
        "Vulkan headers",
        False,
        f"{what}; the vendored ggml needs Vulkan-Headers >= {_dotted(VULKAN_HEADERS_NEEDED)} (VK_EXT_layer_settings): "
        f"the build fetches Debian 13's libvulkan-dev into {fetched.parent.parent} (apt-get download + dpkg -x, "
        "nothing installed); offline, install the LunarG Vulkan SDK and set VULKAN_SDK",
        fetch=lambda: fetch_debian13_vulkan_headers(fetched.parent.parent),
    )


def check_glslc(host: Host) -> Verdict:
    sdk = (host.vulkan_sdk / "bin",) if host.vulkan_sdk else ()
    glslc = host.which("glslc", *sdk)
    if glslc is None:
        return Verdict(
            "glslc",
            False,
            "the shader compiler glslc is not on PATH: apt-get install glslc (Debian/Ubuntu), or the LunarG Vulkan SDK",
        )
    return Verdict("glslc", True, str(glslc), (f"-DVulkan_GLSLC_EXECUTABLE={glslc}",))


def check_vulkan_loader(host: Host) -> Verdict:
    sdk = (host.vulkan_sdk / "lib",) if host.vulkan_sdk else ()
    for folder in (*sdk, *host.library_dirs):
        for name in ("libvulkan.so", "libvulkan.so.1"):
            if (folder / name).exists():
                return Verdict("Vulkan loader", True, str(folder / name), (f"-DVulkan_LIBRARY={folder / name}",))
    return Verdict(
        "Vulkan loader",
        False,
        "libvulkan.so.1 not found: apt-get install libvulkan1 (and a driver, e.g. mesa-vulkan-drivers)",
    )


def check_hipcc(host: Host) -> Verdict:
    hipcc = host.which("hipcc", *(root / "bin" for root in host.rocm_roots))
    if hipcc is None:
        return Verdict(
            "hipcc", False, "ROCm's hipcc is neither on PATH nor in /opt/rocm/bin: install ROCm or set ROCM_PATH"
        )
    return Verdict("hipcc", True, str(hipcc))


def check_macos(host: Host) -> Verdict:
    if host.platform != "darwin":
        return Verdict("macOS", False, f"Metal builds only on macOS; this is {host.platform}")
    return Verdict("macOS", True, "darwin")


COMMON_CHECKS: tuple[Check, ...] = (
    tool("cmake", "install CMake (apt-get install cmake, or pip install cmake)"),
    tool("c++", "install a C++ compiler (apt-get install g++)"),
)


# ---- what the build can get by itself ----------------------------------------------------------------------------


def _say(message: str) -> None:
    print(f"[build-backend] {message}", flush=True)


def fetch_cublas(requirement: str, target: Path) -> str | None:
    """pip-install PyPI's cuBLAS wheel into `target` and add the bare .so names CMake's find_library looks for."""
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    _say(f"installing {requirement} into {target} (about 420 MB)")
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(partial), requirement]
    result = subprocess.run(pip, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        return f"pip could not install {requirement}: {result.stderr.strip()[-600:]}"
    for versioned in partial.glob("nvidia/*/lib/libcublas*.so.*"):
        bare = versioned.with_name(versioned.name.split(".so.")[0] + ".so")
        if not bare.exists():
            bare.symlink_to(versioned.name)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return None


DEBIAN13_SOURCES = "deb [signed-by={keyring}] http://deb.debian.org/debian trixie main\n"
DEBIAN13_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


def fetch_debian13_vulkan_headers(target: Path) -> str | None:
    """Download Debian 13's libvulkan-dev with a private apt configuration and unpack it into `target` (dpkg -x)."""
    for needed in ("apt-get", "dpkg"):
        if shutil.which(needed) is None:
            return f"'{needed}' is not here, so Debian 13's Vulkan headers cannot be fetched: install Vulkan-Headers >= 1.3.272"
    if not DEBIAN13_KEYRING.is_file():
        return f"no Debian archive keyring at {DEBIAN13_KEYRING} to verify Debian 13's packages with"
    _say(f"fetching Debian 13's libvulkan-dev into {target}")
    with tempfile.TemporaryDirectory(prefix="apt-trixie-") as scratch:
        root = Path(scratch)
        for folder in (
            "etc/apt/preferences.d",
            "var/lib/apt/lists/partial",
            "var/cache/apt/archives/partial",
            "var/lib/dpkg",
            "debs",
        ):
            (root / folder).mkdir(parents=True)
        (root / "var/lib/dpkg/status").touch()
        (root / "sources.list").write_text(DEBIAN13_SOURCES.format(keyring=DEBIAN13_KEYRING))
        options = [
            f"-oDir={root}",
            f"-oDir::Etc::SourceList={root / 'sources.list'}",
            "-oDir::Etc::SourceParts=/nonexistent",
            f"-oDir::Etc::Preferences={root / 'etc/apt/preferences'}",
            f"-oDir::Etc::PreferencesParts={root / 'etc/apt/preferences.d'}",
            f"-oDir::State::Status={root / 'var/lib/dpkg/status'}",
            "-oAcquire::Retries=1",
            "-oAcquire::http::Timeout=20",
            "-qq",
        ]
        update = subprocess.run(["apt-get", *options, "update"], capture_output=True, text=True, check=False)
        if update.returncode != 0 or "Err:" in update.stdout + update.stderr:
            return f"apt could not reach Debian 13 (trixie) at deb.debian.org (no network?): {(update.stdout + update.stderr).strip()[-600:]}"
        download = subprocess.run(
            ["apt-get", *options, "download", "libvulkan-dev"],
            cwd=root / "debs",
            capture_output=True,
            text=True,
            check=False,
        )
        debs = sorted((root / "debs").glob("libvulkan-dev_*.deb"))
        if download.returncode != 0 or not debs:
            return (
                f"apt-get download libvulkan-dev (trixie) failed: {(download.stdout + download.stderr).strip()[-600:]}"
            )
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.parent.mkdir(parents=True, exist_ok=True)
        unpack = subprocess.run(["dpkg", "-x", str(debs[0]), str(partial)], capture_output=True, text=True, check=False)
        if unpack.returncode != 0:
            return f"dpkg -x {debs[0].name} failed: {unpack.stderr.strip()[-600:]}"
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
    return None


def _nvidia_smi_compute_caps() -> tuple[str, ...]:
    if shutil.which("nvidia-smi") is None:
        return ()
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ()
    if result.returncode != 0:
        return ()
    return tuple(line.strip() for line in result.stdout.splitlines() if re.fullmatch(r"\d+\.\d+", line.strip()))


def run_checks(checks: tuple[Check, ...], host: Host) -> list[Verdict]:
    return [check(host) for check in (*COMMON_CHECKS, *checks)]


def fetch_missing(verdicts: list[Verdict]) -> list[str]:
    """Get what the build can get by itself for each failed verdict; returns the errors of fetches that failed."""
    errors: list[str] = []
    for verdict in verdicts:
        if not verdict.ok and verdict.fetch is not None:
            error = verdict.fetch()
            if error is not None:
                errors.append(f"{verdict.requirement}: {error}")
    return errors
