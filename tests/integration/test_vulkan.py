"""The Vulkan build for real, on Mesa's lavapipe (a Vulkan device on the CPU; `apt-get install mesa-vulkan-drivers`).

Opt-in: skipped unless SDCPP_SLOW=1 and a Vulkan build exists (`just check-vulkan`, or `bin/build-backend vulkan`;
SDCPP_VULKAN_BACKEND_DIR points at another build folder). Each first use of a shader pipeline compiles it on the
CPU, so a tiny job takes most of a minute here, against a fraction of a second on the CPU backend.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from runners.device_facts import parse_device_log
from runners.paths import backend_dir
from tests.conftest import TINY_LOAD
from tests.support import ServerProcess, running_server_with, wait_for_job

VULKAN = Path(os.environ.get("SDCPP_VULKAN_BACKEND_DIR") or backend_dir("vulkan"))
TINY_FILES = (
    ("--diffusion-model", "diffusion_models", "model_name"),
    ("--llm", "llm", "llm"),
    ("--taesd", "taesd", "taesd"),
)
LAVAPIPE = {"GGML_VK_VISIBLE_DEVICES": "0"}  # ggml skips CPU-type Vulkan devices unless named

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("SDCPP_SLOW") != "1" or not (VULKAN / "sd-cli").is_file(),
        reason=f"opt-in: SDCPP_SLOW=1 and a Vulkan build in {VULKAN}",
    ),
]


def test_sd_cli_draws_on_lavapipe_and_says_so(tiny_models_dir: Path, tmp_path: Path) -> None:
    image = tmp_path / "cat.png"
    argv = [str(VULKAN / "sd-cli")]
    for flag, folder, key in TINY_FILES:
        argv += [flag, str(tiny_models_dir / folder / TINY_LOAD[key])]
    argv += ["-p", "a lovely cat", "-W", "64", "-H", "64", "--steps", "2", "-s", "7", "-o", str(image), "-v"]
    run = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **LAVAPIPE}, timeout=900, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    facts = parse_device_log([*run.stderr.splitlines(), *run.stdout.splitlines()])
    assert [(device.backend, device.driver) for device in facts.devices] == [("Vulkan", "llvmpipe")]
    assert facts.params_vram_mib is not None and facts.params_vram_mib > 0  # the weights went to the device
    with Image.open(image) as decoded:
        assert decoded.size == (64, 64)


@pytest.fixture(scope="module")
def vulkan_server(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    work = tmp_path_factory.mktemp("vulkan")
    binaries = ("--sd-cli", str(VULKAN / "sd-cli"), "--sd-server", str(VULKAN / "sd-server"))
    yield from running_server_with(
        tiny_models_dir, work, *binaries, "--sd-worker", str(VULKAN / "sdcpp-worker"), env=LAVAPIPE
    )


def test_the_api_runs_a_job_on_the_vulkan_build(vulkan_server: ServerProcess) -> None:
    with httpx.Client(base_url=vulkan_server.url, timeout=900) as http:
        http.post("/models/load", json=TINY_LOAD).raise_for_status()
        job_id = http.post("/txt2img", json={"prompt": "a lovely cat", "width": 64, "height": 64, "steps": 2}).json()[
            "job_id"
        ]
        job = wait_for_job(http, job_id, timeout=900)
        assert job["status"] == "completed", job.get("error")
        picture = http.get(f"/output/{job_id}/image_0.png")
        assert picture.status_code == 200
        out = vulkan_server.output_dir / job_id / "image_0.png"
        with Image.open(out) as decoded:
            assert decoded.size == (64, 64)
