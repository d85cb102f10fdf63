"""The parts of doctor's table that need no server: every check is named once and documented, and the device probe
reads what the vendor's tool prints (a stand-in `nvidia-smi` on PATH)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from core.doctor import CHECKS
from runners.doctor import DEVICE_PROBES, Verdict, check_devices

ROOT = Path(__file__).resolve().parents[2]


def test_each_check_is_named_once_and_in_the_readme() -> None:
    names = [check.name for check in CHECKS]
    assert len(names) == len(set(names))
    readme = (ROOT / "README.md").read_text()
    assert [name for name in names if f"`{name}`" not in readme] == []


def fake_tool(folder: Path, name: str, script: str) -> None:
    tool = folder / name
    tool.write_text(f"#!/bin/sh\n{script}\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)


def test_a_listed_gpu_is_ok(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_tool(tmp_path, "nvidia-smi", 'echo "GPU 0: NVIDIA H200 (UUID: GPU-1)"')
    monkeypatch.setenv("PATH", str(tmp_path))
    found = check_devices("cuda")
    assert found.verdict is Verdict.OK and "GPU 0: NVIDIA H200" in found.summary


def test_a_tool_that_lists_nothing_is_a_problem_with_the_driver_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_tool(tmp_path, "nvidia-smi", "echo 'NVIDIA-SMI has failed' >&2; exit 9")
    monkeypatch.setenv("PATH", str(tmp_path))
    found = check_devices("cuda")
    assert found.verdict is Verdict.PROBLEM and "exit 9" in found.summary
    assert found.fix == DEVICE_PROBES["cuda"].fix


def test_a_missing_tool_is_a_warning_and_cpu_has_nothing_to_probe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert check_devices("vulkan").verdict is Verdict.WARNING
    assert check_devices("cpu").verdict is Verdict.OK
