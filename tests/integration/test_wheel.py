"""Installed, not only cloned: a wheel built from the repository carries its license the PEP 639 way (no
deprecation warning from the build), the web UI and the resident worker's sources, and in a fresh venv, run from
another folder, its `sdcpp-restapi` answers `--help`, `build-backend --help` and `doctor --help` without the
repository on sys.path.

The fresh-venv install takes about a minute on two cores (every dependency from the configured local index), so
that test runs only with SDCPP_SLOW=1; building and reading the wheel (about 10 s) always runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import msgspec
import pytest

from tests.support import REPO

pytestmark = pytest.mark.integration
# What a build of a checkout never needs: environments, caches, earlier builds.
NOT_SOURCES = (".git", ".venv", ".ci", "build", "*.egg-info", "__pycache__", ".*_cache", "test-artifacts")


class BuiltWheel(msgspec.Struct):
    path: Path
    log: str


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> BuiltWheel:
    """Built from a copy of the checkout, so the build's own folders never land in the repository."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_SOURCES))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", str(source), "-w", str(work / "dist")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (path,) = (work / "dist").glob("sdcpp_restapi-*.whl")
    return BuiltWheel(path, built.stdout + built.stderr)


def test_the_wheel_declares_its_license_the_pep_639_way(wheel: BuiltWheel) -> None:
    with zipfile.ZipFile(wheel.path) as archive:
        names = set(archive.namelist())
        metadata_name = next(name for name in names if name.endswith(".dist-info/METADATA"))
        metadata = archive.read(metadata_name).decode()
    assert "License-Expression: MIT" in metadata.splitlines()
    assert "License-File: LICENSE" in metadata.splitlines()
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert "deprecat" not in wheel.log.lower(), [line for line in wheel.log.splitlines() if "eprecat" in line]
    # What an installed copy needs beyond Python modules: the web UI, and the worker that build-backend compiles.
    assert {"litestar_app/ui/index.html", "runners/worker/worker.cpp", "runners/worker/CMakeLists.txt"} <= names


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("SDCPP_SLOW") != "1", reason="installs every dependency into a fresh venv (~1 min)")
def test_the_wheel_runs_in_a_fresh_venv_without_the_repository(wheel: BuiltWheel, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel.path)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for command, expected in (
        ([], "{serve,doctor,build-backend}"),
        (["build-backend"], "usage: sdcpp-restapi build-backend"),
        (["doctor"], "usage: sdcpp-restapi doctor"),
        (["serve"], "--models-dir"),
    ):
        ran = subprocess.run(
            [str(venv / "bin" / "sdcpp-restapi"), *command, "--help"],
            cwd=elsewhere,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert expected in ran.stdout
    where = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import core, runners.backend_build as b; print(core.__file__, b.WORKER_PROJECT)",
        ],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    assert str(REPO) not in where and str(venv) in where
    assert (venv / "lib").exists() and "site-packages" in where
