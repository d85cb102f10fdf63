"""txt2vid on a full-size random Wan2.1 1.3B model (the smallest video model sd.cpp has): the slower tier.

The model (2.84 GB f16, quantized once to an 816 MB q4_0 GGUF by the real sd-cli) is cached per machine
under the user data folder, like the backend build, so only the first run pays for making it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from core.settings import load_settings
from fixtures.tiny_wan import TAEW_FILE, WAN_FILE, write_wan
from tests import browser
from tests.integration.test_ui import by_id, click, open_view, screenshot, type_into
from tests.support import ServerProcess, cached_models, server_fixture, wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]
WAN_Q4 = WAN_FILE.replace(".safetensors", ".q4_0.gguf")
WAN_LOAD = {"model_name": WAN_Q4, "model_type": "diffusion", "taesd": TAEW_FILE}


def write_quantized_wan(folder: Path) -> None:
    """The Wan model as q4_0 (converted by the real sd-cli; the 2.84 GB f16 file is not kept) and taew2.1."""
    f16, _ = write_wan(folder)
    sd_cli = load_settings().selected_backend().sd_cli
    subprocess.run(
        [sd_cli, "-M", "convert", "-m", str(f16), "--type", "q4_0", "-o", str(f16.with_name(WAN_Q4))],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    f16.unlink()


@pytest.fixture(scope="module")
def wan_models_dir() -> Path:
    return cached_models("wan-models", write_quantized_wan)


server = server_fixture("wan_models_dir")


def test_txt2vid_writes_a_webm_video(client: httpx.Client) -> None:
    assert client.post("/models/load", json=WAN_LOAD, timeout=300).status_code == 200
    assert client.get("/health").json()["model_architecture"] == "Wan"
    accepted = client.post(
        "/txt2vid",
        json={
            "prompt": "a cat walking",
            "width": 64,
            "height": 64,
            "video_frames": 5,
            "steps": 2,
            "seed": 7,
            "preview": False,
        },
    )
    assert accepted.status_code == 202, accepted.text
    job = wait_for_job(client, accepted.json()["job_id"], timeout=300)
    assert job["status"] == "completed", job.get("error")
    assert job["outputs"] == [f"{job['job_id']}/video.webm"]
    assert job["progress"]["step"] == job["progress"]["total_steps"] == 2
    assert (job["params"]["flow_shift"], job["params"]["default_sources"]["flow_shift"]) == (3.0, "architecture Wan")
    video = client.get(f"/output/{job['outputs'][0]}")
    assert video.headers["content-type"] == "video/webm"
    assert video.content[:4] == b"\x1a\x45\xdf\xa3"  # EBML header: a real WebM container
    assert client.get(f"/output/{job['outputs'][0]}", headers={"Range": "bytes=0-3"}).status_code == 206
    assert client.post("/txt2img", json={"prompt": "x", "width": 64, "height": 64, "steps": 1}).status_code == 202


@pytest.mark.skipif(
    not browser.available() and not os.environ.get("CI"), reason="chromium / chromedriver not installed"
)
def test_the_web_ui_offers_text_to_video_and_shows_the_video(client: httpx.Client, server: ServerProcess) -> None:
    """With Wan loaded (by the test above) the Generate view offers text to video with Wan's preset, and the
    finished WebM appears in the page."""
    with browser.chrome() as driver:
        wait = WebDriverWait(driver, 300)
        open_view(driver, server, "generate")
        wait.until(
            lambda d: by_id(d, "mode-txt2vid").is_displayed() and by_id(d, "width").get_property("value") == "832"
        )
        assert by_id(driver, "video_frames").get_property("value") == "33"  # Wan's preset
        click(driver, driver.find_element(By.CSS_SELECTOR, 'input[name="mode"][value="txt2vid"]'))
        for field, value in (
            ("prompt", "a cat walking"),
            ("width", "64"),
            ("height", "64"),
            ("steps", "2"),
            ("video_frames", "5"),
        ):
            type_into(driver, field, value)
        click(driver, by_id(driver, "generate-button"))
        video = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, "#results video")))
        assert video.get_attribute("src").endswith("/video.webm")
        job = client.get("/queue", params={"limit": 1, "type": "txt2vid"}).json()["items"][0]
        assert job["status"] == "completed" and job["params"]["video_frames"] == 5
        screenshot(driver, "generate-video")
        assert not [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
