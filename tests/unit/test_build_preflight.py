"""The build's preflight verdicts on fake toolkits: a build that cannot work says why, before compiling.

Each test lays out a fake machine in a temporary folder (executables, headers, libraries: the inputs of the
checks) and asks `bin/build-backend`'s own code what it concludes. Nothing here compiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from runners import backend_build, build_preflight
from runners.build_preflight import (
    DEBIAN13_VULKAN_DIR,
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
    run_checks,
)


def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def cuda_toolkit(root: Path, version: int = 13000, cublas: bool = False) -> Path:
    executable(root / "bin" / "nvcc")
    (root / "include").mkdir(parents=True)
    (root / "include" / "cuda.h").write_text(f"#pragma once\n#define CUDA_VERSION {version}\n")
    if cublas:
        (root / "lib64").mkdir()
        (root / "lib64" / "libcublas.so").touch()
        (root / "lib64" / "libcublasLt.so").touch()
    return root


def vulkan_headers(include: Path, minor: int, patch: int) -> Path:
    (include / "vulkan").mkdir(parents=True)
    (include / "vulkan" / "vulkan_core.h").write_text(
        f"#define VK_HEADER_VERSION {patch}\n"
        f"#define VK_HEADER_VERSION_COMPLETE VK_MAKE_API_VERSION(0, 1, {minor}, VK_HEADER_VERSION)\n"
    )
    return include


def host(tmp_path: Path, **facts: object) -> Host:
    base: dict[str, object] = {"work": tmp_path / "work", "search_path": (tmp_path / "bin",)}
    return Host(**{**base, **facts})  # type: ignore[arg-type]


def flags_of(verdict: Verdict) -> dict[str, str]:
    return dict(flag.removeprefix("-D").split("=", 1) for flag in verdict.flags)


# ---- CUDA --------------------------------------------------------------------------------------------------------


def test_no_nvcc_says_where_it_looked_and_how_to_get_it(tmp_path: Path) -> None:
    verdict = check_nvcc(host(tmp_path, cuda_roots=(tmp_path / "cuda",)))
    assert not verdict.ok
    assert str(tmp_path / "cuda" / "bin") in verdict.detail
    assert "install the CUDA toolkit" in verdict.detail
    assert verdict.fetch is None


def test_nvcc_of_the_toolkit_wins_over_a_wrapper_on_path(tmp_path: Path) -> None:
    executable(tmp_path / "bin" / "nvcc")
    toolkit = cuda_toolkit(tmp_path / "cuda")
    verdict = check_nvcc(host(tmp_path, cuda_roots=(toolkit,)))
    assert verdict.ok
    assert "CUDA 13.0" in verdict.detail
    assert flags_of(verdict) == {"CMAKE_CUDA_COMPILER": str(toolkit / "bin" / "nvcc")}


def test_cublas_in_the_toolkit_needs_no_flags(tmp_path: Path) -> None:
    toolkit = cuda_toolkit(tmp_path / "cuda", cublas=True)
    verdict = check_cublas(host(tmp_path, cuda_roots=(toolkit,)))
    assert verdict.ok
    assert verdict.flags == ()


def test_missing_cublas_names_the_matching_wheel_and_fetches_it_into_the_build_folder(tmp_path: Path) -> None:
    toolkit = cuda_toolkit(tmp_path / "cuda", version=12080)
    verdict = check_cublas(host(tmp_path, cuda_roots=(toolkit,)))
    assert not verdict.ok
    assert "nvidia-cublas==12.8.*" in verdict.detail
    assert str(tmp_path / "work" / "cublas-12.8") in verdict.detail
    assert "apt-get install libcublas-dev-12-8" in verdict.detail
    assert verdict.fetch is not None
    assert verdict.line().startswith("fetch ")


def test_cublas_from_the_wheel_in_the_build_folder_gives_prefix_and_include(tmp_path: Path) -> None:
    toolkit = cuda_toolkit(tmp_path / "cuda")
    lib = tmp_path / "work" / "cublas-13.0" / "nvidia" / "cu13" / "lib"
    lib.mkdir(parents=True)
    for name in ("libcublas.so", "libcublasLt.so"):
        (lib / f"{name}.13").touch()
        (lib / name).symlink_to(f"{name}.13")
    verdict = check_cublas(host(tmp_path, cuda_roots=(toolkit,)))
    assert verdict.ok
    prefix = lib.parent
    assert flags_of(verdict) == {"CMAKE_PREFIX_PATH": str(prefix), "CMAKE_CUDA_FLAGS": f"-I{prefix / 'include'}"}


def test_a_wheel_without_the_bare_so_names_is_not_enough(tmp_path: Path) -> None:
    toolkit = cuda_toolkit(tmp_path / "cuda")
    lib = tmp_path / "work" / "cublas-13.0" / "nvidia" / "cu13" / "lib"
    lib.mkdir(parents=True)
    (lib / "libcublas.so.13").touch()
    (lib / "libcublasLt.so.13").touch()
    assert not check_cublas(host(tmp_path, cuda_roots=(toolkit,))).ok


def test_cublas_without_nvcc_points_at_nvcc(tmp_path: Path) -> None:
    verdict = check_cublas(host(tmp_path))
    assert not verdict.ok
    assert "nvcc" in verdict.detail


@pytest.mark.parametrize(
    ("asked", "caps", "expected"),
    [("90", (), "90"), ("86;90", (), "86;90"), ("86, 90a", (), "86;90a"), (None, ("9.0", "9.0", "8.6"), "86;90")],
)
def test_cuda_architectures_come_from_the_option_or_the_gpus(
    tmp_path: Path, asked: str | None, caps: tuple[str, ...], expected: str
) -> None:
    verdict = check_cuda_arch(host(tmp_path, cuda_arch=asked, gpu_compute_caps=caps))
    assert verdict.ok
    assert flags_of(verdict) == {"CMAKE_CUDA_ARCHITECTURES": expected}


@pytest.mark.parametrize("asked", [None, "sm_90", "native", "9.0"])
def test_no_usable_cuda_architecture_says_what_to_pass(tmp_path: Path, asked: str | None) -> None:
    verdict = check_cuda_arch(host(tmp_path, cuda_arch=asked))
    assert not verdict.ok
    assert "--cuda-arch" in verdict.detail
    assert "90 for H100/H200" in verdict.detail


# ---- Vulkan ------------------------------------------------------------------------------------------------------


def test_vulkan_headers_older_than_1_3_272_name_the_version_found(tmp_path: Path) -> None:
    system = vulkan_headers(tmp_path / "usr" / "include", 3, 239)
    verdict = check_vulkan_headers(host(tmp_path, include_dirs=(system,)))
    assert not verdict.ok
    assert f"1.3.239 in {system}" in verdict.detail
    assert ">= 1.3.272" in verdict.detail
    assert verdict.fetch is not None  # Debian 13's headers, into the build folder


def test_no_vulkan_headers_at_all(tmp_path: Path) -> None:
    verdict = check_vulkan_headers(host(tmp_path, include_dirs=(tmp_path / "usr" / "include",)))
    assert not verdict.ok
    assert "none found" in verdict.detail


def test_fetched_debian13_headers_beat_old_system_ones(tmp_path: Path) -> None:
    system = vulkan_headers(tmp_path / "usr" / "include", 3, 239)
    fetched = vulkan_headers(tmp_path / "work" / DEBIAN13_VULKAN_DIR / "usr" / "include", 4, 309)
    verdict = check_vulkan_headers(host(tmp_path, include_dirs=(system,)))
    assert verdict.ok
    assert "1.4.309" in verdict.detail
    assert flags_of(verdict) == {"Vulkan_INCLUDE_DIR": str(fetched)}


def test_new_enough_system_headers_are_used_as_they_are(tmp_path: Path) -> None:
    system = vulkan_headers(tmp_path / "usr" / "include", 3, 272)
    verdict = check_vulkan_headers(host(tmp_path, include_dirs=(system,)))
    assert verdict.ok
    assert flags_of(verdict) == {"Vulkan_INCLUDE_DIR": str(system)}


def test_missing_glslc_says_how_to_get_it(tmp_path: Path) -> None:
    verdict = check_glslc(host(tmp_path))
    assert not verdict.ok
    assert "apt-get install glslc" in verdict.detail
    executable(tmp_path / "bin" / "glslc")
    found = check_glslc(host(tmp_path))
    assert found.ok
    assert flags_of(found) == {"Vulkan_GLSLC_EXECUTABLE": str(tmp_path / "bin" / "glslc")}


def test_vulkan_loader_is_found_by_its_soname(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    assert not check_vulkan_loader(host(tmp_path, library_dirs=(lib,))).ok
    (lib / "libvulkan.so.1").touch()
    verdict = check_vulkan_loader(host(tmp_path, library_dirs=(lib,)))
    assert verdict.ok
    assert flags_of(verdict) == {"Vulkan_LIBRARY": str(lib / "libvulkan.so.1")}


# ---- ROCm, Metal, the common tools -------------------------------------------------------------------------------


def test_rocm_needs_hipcc(tmp_path: Path) -> None:
    assert "hipcc" in check_hipcc(host(tmp_path)).detail
    executable(tmp_path / "rocm" / "bin" / "hipcc")
    assert check_hipcc(host(tmp_path, rocm_roots=(tmp_path / "rocm",))).ok


def test_metal_only_on_macos(tmp_path: Path) -> None:
    verdict = check_macos(host(tmp_path, platform="linux"))
    assert not verdict.ok
    assert "only on macOS" in verdict.detail
    assert check_macos(host(tmp_path, platform="darwin")).ok


def test_every_backend_checks_cmake_and_a_compiler(tmp_path: Path) -> None:
    for recipe in backend_build.BACKENDS.values():
        verdicts = run_checks(recipe.checks, host(tmp_path, platform="darwin"))
        assert {"cmake", "c++"} <= {verdict.requirement for verdict in verdicts if not verdict.ok}


# ---- what bin/build-backend does with the verdicts -----------------------------------------------------------------


def test_a_build_that_cannot_work_exits_before_compiling_and_lists_every_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_compiling(*args: object, **kwargs: object) -> None:
        raise AssertionError("compiled although the preflight failed")

    monkeypatch.setattr(backend_build.subprocess, "run", no_compiling)
    fake = host(tmp_path, cuda_roots=(tmp_path / "cuda",))
    with pytest.raises(SystemExit) as stop:
        backend_build.checked_flags("cuda", fake, fetch=True)
    message = str(stop.value)
    assert "the cuda backend cannot be built here" in message
    for requirement in ("cmake", "c++", "nvcc", "CUDA architectures", "cuBLAS"):
        assert f"- {requirement}:" in message


def test_cuda_flags_are_the_recipe_plus_what_the_checks_found(tmp_path: Path) -> None:
    for name in ("cmake", "c++"):
        executable(tmp_path / "bin" / name)
    toolkit = cuda_toolkit(tmp_path / "cuda", cublas=True)
    flags = backend_build.checked_flags("cuda", host(tmp_path, cuda_roots=(toolkit,), cuda_arch="90"), fetch=False)
    assert flags == [
        "-DCMAKE_BUILD_TYPE=Release",
        "-DSD_BUILD_EXAMPLES=ON",
        "-DSD_CUDA=ON",
        "-DGGML_CUDA_NO_VMM=ON",
        "-DGGML_NATIVE=OFF",
        f"-DCMAKE_CUDA_COMPILER={toolkit / 'bin' / 'nvcc'}",
        "-DCMAKE_CUDA_ARCHITECTURES=90",
    ]


def test_the_cpu_build_keeps_its_flags_so_existing_builds_stay_current(tmp_path: Path) -> None:
    for name in ("cmake", "c++"):
        executable(tmp_path / "bin" / name)
    assert backend_build.checked_flags("cpu", host(tmp_path), fetch=True) == [
        "-DCMAKE_BUILD_TYPE=Release",
        "-DSD_BUILD_EXAMPLES=ON",
    ]


def test_nothing_is_fetched_when_something_else_cannot_be_had(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fetching(requirement: str, target: Path) -> str | None:
        raise AssertionError("fetched 420 MB for a build that cannot work anyway")

    monkeypatch.setattr(build_preflight, "fetch_cublas", no_fetching)
    for name in ("cmake", "c++"):
        executable(tmp_path / "bin" / name)
    toolkit = cuda_toolkit(tmp_path / "cuda")  # no cuBLAS (fetchable), and no architecture (not)
    with pytest.raises(SystemExit) as stop:
        backend_build.checked_flags("cuda", host(tmp_path, cuda_roots=(toolkit,)), fetch=True)
    assert "- CUDA architectures:" in str(stop.value)


def test_a_fetched_cublas_is_checked_again_and_its_flags_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fetched: list[tuple[str, Path]] = []

    def fake_wheel(requirement: str, target: Path) -> str | None:
        fetched.append((requirement, target))
        lib = target / "nvidia" / "cu13" / "lib"
        lib.mkdir(parents=True)
        (lib / "libcublas.so").touch()
        (lib / "libcublasLt.so").touch()
        return None

    monkeypatch.setattr(build_preflight, "fetch_cublas", fake_wheel)
    for name in ("cmake", "c++"):
        executable(tmp_path / "bin" / name)
    toolkit = cuda_toolkit(tmp_path / "cuda")
    flags = backend_build.checked_flags("cuda", host(tmp_path, cuda_roots=(toolkit,), cuda_arch="90"), fetch=True)
    wheel = tmp_path / "work" / "cublas-13.0"
    assert fetched == [("nvidia-cublas==13.0.*", wheel)]
    assert flags[-2:] == [
        f"-DCMAKE_PREFIX_PATH={wheel}/nvidia/cu13",
        f"-DCMAKE_CUDA_FLAGS=-I{wheel}/nvidia/cu13/include",
    ]


def test_a_failed_fetch_is_reported_with_its_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build_preflight, "fetch_cublas", lambda requirement, target: "pip could not reach the index")
    for name in ("cmake", "c++"):
        executable(tmp_path / "bin" / name)
    toolkit = cuda_toolkit(tmp_path / "cuda")
    with pytest.raises(SystemExit) as stop:
        backend_build.checked_flags("cuda", host(tmp_path, cuda_roots=(toolkit,), cuda_arch="90"), fetch=True)
    assert "- fetching cuBLAS: pip could not reach the index" in str(stop.value)


def test_a_build_folder_configured_from_another_checkout_is_adopted(tmp_path: Path) -> None:
    # CMake refuses a cache made for another source folder ("does not match the source ... used to generate cache");
    # a data folder shared by two checkouts (or venvs) reuses its compiled sd.cpp instead of failing.
    cache = tmp_path / "CMakeCache.txt"
    cache.write_text("SD_SOURCE:PATH=/data/src\nCMAKE_HOME_DIRECTORY:INTERNAL=/elsewhere/runners/worker\nX:BOOL=ON\n")
    backend_build.adopt_build_dir(tmp_path)
    assert cache.read_text() == (
        f"SD_SOURCE:PATH=/data/src\nCMAKE_HOME_DIRECTORY:INTERNAL={backend_build.WORKER_PROJECT}\nX:BOOL=ON\n"
    )
    backend_build.adopt_build_dir(tmp_path / "not-configured-yet")  # nothing to adopt: no error
