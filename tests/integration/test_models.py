"""Model management and server information against the real binary and the tiny models."""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from pathlib import Path

import httpx
import pytest

from tests.conftest import TINY_LOAD
from tests.support import FAKES, ServerProcess, sd_processes, server_fixture, wait_for_job, wait_until

pytestmark = pytest.mark.integration
BACKEND_SERVER = (
    Path(os.environ.get("SDCPP_RESTAPI_DATA_DIR", Path.home() / ".local/share/sdcpp-restapi"))
    / "backends/cpu/sd-server"
)


@pytest.fixture(scope="module")
def models_dir(own_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny set plus files that exercise listing and failure paths."""
    models = own_models_dir
    (models / "diffusion_models" / "garbage.safetensors").write_bytes(
        b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + os.urandom(4096)
    )
    (models / "loras" / "Styles").mkdir()
    shutil.copy(models / "loras" / "tiny_lora.safetensors", models / "loras" / "Styles" / "Detail_Lora.safetensors")
    (models / "loras" / "README.txt").write_text("not a model")
    secret = tmp_path_factory.mktemp("outside") / "escape.safetensors"
    secret.write_bytes(b"outside")
    os.symlink(secret, models / "diffusion_models" / "escape.safetensors")
    return models


# These tests check the sd-server and sd-cli engines (a plain sd.cpp release folder); test_worker.py covers the
# resident worker that runs loaded models when the backend folder has it.
NO_WORKER = ("--sd-worker", "none")
server = server_fixture("models_dir", *NO_WORKER)


def test_listing_is_recursive_filtered_and_model_files_only(client: httpx.Client) -> None:
    loras = client.get("/models", params={"type": "lora"}).json()["loras"]
    assert [m["name"] for m in loras] == ["Styles/Detail_Lora.safetensors", "tiny_lora.safetensors"]
    searched = client.get("/models", params={"search": "DETAIL"}).json()
    assert [m["name"] for m in searched["loras"]] == ["Styles/Detail_Lora.safetensors"]
    assert searched["diffusion_models"] == [] and searched["applied_filters"] == {"search": "DETAIL"}
    by_name = client.get("/models", params={"name": "tiny", "extension": ".safetensors", "type": "llm"}).json()
    assert [m["name"] for m in by_name["llm"]] == ["qwen3_tiny_llm.safetensors"]
    assert by_name["applied_filters"] == {"type": "llm", "extension": ".safetensors", "search": "tiny"}
    assert client.get("/models", params={"extension": "gguf"}).json()["llm"] == []
    names = [m["name"] for m in client.get("/models").json()["diffusion_models"]]
    assert "escape.safetensors" not in names  # a symlink out of the folder is never offered
    assert client.get("/models", params={"type": "bogus"}).status_code == 400


def test_hash_matches_hashlib_and_is_cached_in_listing(client: httpx.Client, models_dir: Path) -> None:
    expected = hashlib.sha256((models_dir / "loras/Styles/Detail_Lora.safetensors").read_bytes()).hexdigest()
    response = client.get("/models/hash/lora/Styles%2FDetail_Lora.safetensors")
    assert response.status_code == 200
    assert response.json() == {"model_name": "Styles/Detail_Lora.safetensors", "model_type": "lora", "hash": expected}
    listed = {m["name"]: m["hash"] for m in client.get("/models", params={"type": "lora"}).json()["loras"]}
    assert listed["Styles/Detail_Lora.safetensors"] == expected
    missing = client.get("/models/hash/lora/nope.safetensors")
    assert missing.status_code == 404 and missing.json() == {"error": "Model not found: nope.safetensors"}
    assert client.get("/models/hash/lora/..%2F..%2Fetc%2Fpasswd").status_code == 400
    assert client.get("/models/hash/unet/x.safetensors").status_code == 400


def test_paths_options_and_architectures(client: httpx.Client, models_dir: Path) -> None:
    paths = client.get("/models/paths").json()
    assert paths["lora"] == str(models_dir / "loras") and paths["taesd"] == str(models_dir / "taesd")
    assert set(paths) == {
        "checkpoints",
        "diffusion_models",
        "vae",
        "lora",
        "clip",
        "t5",
        "embeddings",
        "controlnet",
        "llm",
        "esrgan",
        "taesd",
    }
    options = client.get("/options").json()
    assert "euler_a" in options["samplers"] and "er_sde" in options["samplers"]  # read from this build's --help
    assert "smoothstep" in options["schedulers"]
    assert {"id": "q8_0", "name": "Q8_0 (8-bit)", "bits": 8} in options["quantization_types"]
    archs = client.get("/architectures").json()
    for family in ("SD1", "SD2", "SDXL", "SD3", "Flux", "FLUX.2", "Chroma", "Wan", "Qwen-Image", "Z-Image"):
        preset = archs["architectures"][family]
        assert {
            "display_name",
            "requiredComponents",
            "optionalComponents",
            "generationDefaults",
            "sizeMultiple",
        } <= set(preset)
    assert (
        archs["architectures"]["SDXL"]["sizeMultiple"] == 64 and archs["architectures"]["FLUX.2"]["sizeMultiple"] == 16
    )


def test_model_types_and_request_defaults_for_clients_that_keep_no_copy(client: httpx.Client, models_dir: Path) -> None:
    """The web UI reads the model types, the components and the contract's defaults from these two endpoints."""
    table = client.get("/models/types").json()
    types = {kind["name"]: kind for kind in table["model_types"]}
    assert types["lora"] == {
        "name": "lora",
        "folder": "loras",
        "list_key": "loras",
        "path_key": "lora",
        "loadable": False,
        "extensions": [".gguf", ".pt", ".pth", ".safetensors"],
    }
    assert [name for name, kind in types.items() if kind["loadable"]] == ["checkpoint", "diffusion"]
    listing = client.get("/models").json()
    paths = client.get("/models/paths").json()
    for kind in types.values():
        assert isinstance(listing[kind["list_key"]], list)
        assert paths[kind["path_key"]] == str(models_dir / kind["folder"])
    components = {component["field"]: component for component in table["components"]}
    assert components["llm_vision"] == {"field": "llm_vision", "model_type": "llm", "reported": True}
    assert components["taesd"] == {"field": "taesd", "model_type": "taesd", "reported": False}
    assert set(components) <= set(
        client.get("/schema/openapi.json").json()["components"]["schemas"]["LoadModelRequest"]["properties"]
    )
    defaults = client.get("/defaults").json()
    txt2img, img2img, txt2vid = defaults["txt2img"], defaults["img2img"], defaults["txt2vid"]
    assert (txt2img["width"], txt2img["height"], txt2img["steps"], txt2img["cfg_scale"], txt2img["sampler"]) == (
        512,
        512,
        20,
        7.0,
        "euler_a",
    )
    assert (txt2img["seed"], txt2img["batch_count"], img2img["strength"]) == (-1, 1, 0.75)
    assert (txt2vid["width"], txt2vid["height"], txt2vid["video_frames"], txt2vid["flow_shift"]) == (832, 480, 33, 3.0)


def test_load_validates_components_and_option_values(client: httpx.Client) -> None:
    missing_llm = client.post("/models/load", json={**TINY_LOAD, "llm": None})
    assert missing_llm.status_code == 400
    assert missing_llm.json()["error"].startswith("FLUX.2 klein needs llm")
    no_decoder = client.post("/models/load", json={**TINY_LOAD, "taesd": None})
    assert no_decoder.status_code == 400 and "needs vae" in no_decoder.json()["error"]
    bad_rng = client.post("/models/load", json={**TINY_LOAD, "options": {"rng_type": "dice"}})
    assert bad_rng.status_code == 400 and bad_rng.json()["error"].startswith("options.rng_type")
    for field in ("prediction", "lora_apply_mode"):
        bad = client.post("/models/load", json={**TINY_LOAD, "options": {field: "nonsense"}})
        assert bad.status_code == 400 and bad.json()["error"].startswith(f"options.{field}")
    escape = client.post("/models/load", json={**TINY_LOAD, "model_name": "escape.safetensors"})
    assert escape.status_code == 400 and "outside its folder" in escape.json()["error"]
    component = client.post("/models/load", json={**TINY_LOAD, "llm": "missing.gguf"})
    assert component.status_code == 400 and component.json()["error"].startswith("llm:")


def test_failed_load_reports_the_binary_error_and_leaves_no_process(
    client: httpx.Client, server: ServerProcess
) -> None:
    response = client.post("/models/load", json={"model_name": "garbage.safetensors", "model_type": "diffusion"})
    assert response.status_code == 500
    assert response.json()["error"].startswith("Failed to load model: garbage.safetensors")
    health = client.get("/health").json()
    assert health["model_loaded"] is False and health["model_loading"] is False
    assert "get sd version from file failed" in health["last_error"]
    assert sd_processes(server) == []


def test_resident_server_serves_jobs_without_reloading_and_unload_frees_it(
    client: httpx.Client, server: ServerProcess
) -> None:
    assert client.post("/models/load", json=TINY_LOAD).status_code == 200
    health = client.get("/health").json()
    assert health["model_loaded"] and health["last_error"] is None
    assert health["model_architecture"] == "FLUX.2 klein"
    assert client.get("/architectures").json()["current_architecture"] == "FLUX.2 klein"
    listed = client.get("/models", params={"type": "diffusion"}).json()
    assert {m["name"]: m["is_loaded"] for m in listed["diffusion_models"]}["flux2_tiny_dit.safetensors"] is True
    assert listed["loaded_model"] == "flux2_tiny_dit.safetensors" and listed["loaded_model_type"] == "diffusion"
    [resident] = sd_processes(server)
    for _ in range(2):
        job = client.post("/txt2img", json={"prompt": "cat", "width": 64, "height": 64, "steps": 2}).json()
        assert wait_for_job(client, job["job_id"])["status"] == "completed"
        assert sd_processes(server) == [resident]  # same process: the weights were not reloaded
    assert sd_processes(server, "sd-cli") == []
    unloaded = client.post("/models/unload")
    assert unloaded.json() == {"success": True, "message": "Model unloaded"}
    assert sd_processes(server) == []
    assert client.get("/health").json()["model_loaded"] is False


def test_health_shows_loading_while_the_binary_starts(models_dir: Path, tmp_path: Path) -> None:
    slow = ServerProcess(
        models_dir,
        tmp_path / "out",
        tmp_path / "log",
        *NO_WORKER,
        "--sd-server",
        str(FAKES / "slow_start"),
        env={"FAKE_REAL_BINARY": str(BACKEND_SERVER), "FAKE_SLOW_START_S": "2"},
    ).start()
    try:
        with httpx.Client(base_url=slow.url, timeout=30) as http:
            result: dict[str, int] = {}
            loader = threading.Thread(
                target=lambda: result.update(code=http.post("/models/load", json=TINY_LOAD).status_code)
            )
            loader.start()
            during = wait_until(lambda: (h := http.get("/health").json())["model_loading"] and h)
            assert during["loading_model_name"] == "flux2_tiny_dit.safetensors" and during["model_loaded"] is False
            loader.join(timeout=60)
            assert result["code"] == 200
            after = http.get("/health").json()
            assert after["model_loading"] is False and after["model_loaded"] is True
    finally:
        slow.stop()
