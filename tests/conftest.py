from __future__ import annotations

from pathlib import Path
from typing import Iterator

import httpx
import pytest

from fixtures.tiny_models import write_tiny_models
from tests.support import ServerProcess, server_fixture

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
