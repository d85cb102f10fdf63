from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fixtures.random_models import FAMILIES as RANDOM_FAMILIES
from fixtures.random_models import tables_digest, write_families
from fixtures.tiny_models import write_tiny_models
from runners.paths import data_dir
from tests.postgres import PACKAGE_HINT, PostgresServer, postgres_bindir
from tests.support import ServerProcess, cached_models, server_fixture

SD15_FAMILIES = tuple(family for family in RANDOM_FAMILIES if family.startswith("sd15"))

TINY_LOAD = {
    "model_name": "flux2_tiny_dit.safetensors",
    "model_type": "diffusion",
    "llm": "qwen3_tiny_llm.safetensors",
    "taesd": "taef2_tiny.safetensors",
}


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("models")
    write_tiny_models(models)
    return models


@pytest.fixture(scope="module")
def own_models_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh tiny set for one test module, which may add or change files in it."""
    models = tmp_path_factory.mktemp(f"models-{request.module.__name__.rsplit('.', 1)[-1]}")
    write_tiny_models(models)
    return models


server = server_fixture("tiny_models_dir")


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


@pytest.fixture(scope="session")
def sd15_models_cache() -> Path:
    """The full-size random SD1.5 set (checkpoint, ControlNet, embedding, VAE, LoRA; 3 GB of f16 safetensors,
    written in about 16 s), made once per machine. Kept as written: `sd-cli -M convert` to q8_0 saves under a
    second of loading per model load but costs 10 s, q4_0 samples slower, and sd.cpp holds a ControlNet as f32
    whatever the file. The folder is keyed by the tensor tables, so changing them builds a new set."""
    root = data_dir() / "test-cache" / "sd15-models"
    current = tables_digest(SD15_FAMILIES)
    for stale in root.glob("*") if root.is_dir() else ():
        if not stale.name.lstrip(".").startswith(current):  # older sets, not this set or its build in progress
            shutil.rmtree(stale, ignore_errors=True)
    return cached_models(f"sd15-models/{current}", lambda scratch: write_families(scratch, SD15_FAMILIES))


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A private PostgreSQL server for the session (tests/postgres.py); skipped, saying why, where it is missing."""
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip(PACKAGE_HINT)
    server = PostgresServer(bindir)
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> str:
    """A fresh, empty database of the session's PostgreSQL server."""
    return postgres.new_database()
