"""The parts of doctor's table that need no server: every check is named once and documented, and the device probe
reads what the vendor's tool prints (a stand-in `nvidia-smi` on PATH)."""

from __future__ import annotations

import stat
from pathlib import Path

import psycopg
import pytest

from core.doctor import CHECKS
from core.job_types import JOB_CODEC
from core.settings import load_settings
from core.store.postgres import SCHEMA_VERSION, PostgresStore
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


def store_check(url: str) -> tuple[Verdict, str]:
    settings = load_settings(environ={"SDCPP_RESTAPI_STORE_URL": url})
    found = next(check for check in CHECKS if check.name == "store").run(settings)
    return found.verdict, found.summary


def test_the_store_check_reads_a_postgres_store_without_changing_it(postgres_url: str) -> None:
    """Read-only: a fresh database stays without our schema; a store's version and its running server are named."""
    assert store_check(postgres_url) == (
        Verdict.OK,
        f"PostgreSQL store {postgres_url} reachable; no schema of ours yet: the first start creates it",
    )
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'sdcpp_restapi'").fetchone() == (0,)
    store = PostgresStore(postgres_url, JOB_CODEC)
    verdict, summary = store_check(postgres_url)
    assert verdict is Verdict.NOTE and f"a server is running on the PostgreSQL store {postgres_url}" in summary
    store.close()
    assert store_check(postgres_url) == (Verdict.OK, f"PostgreSQL store {postgres_url} opens (schema {SCHEMA_VERSION})")


def test_an_unreachable_postgres_store_is_a_problem_without_its_password() -> None:
    verdict, summary = store_check("postgresql://me:secret@127.0.0.1:1/db")
    assert verdict is Verdict.PROBLEM
    assert "cannot reach the PostgreSQL store postgresql://me:***@127.0.0.1:1/db" in summary and "secret" not in summary
