from __future__ import annotations

from pathlib import Path
from typing import Iterator

import httpx
import pytest

from fixtures.tiny_models import write_tiny_models
from tests.support import ServerProcess

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
def server(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    work = tmp_path_factory.mktemp("server")
    process = ServerProcess(tiny_models_dir, work / "output", work / "server.log").start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http
