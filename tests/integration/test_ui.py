"""The web UI at /ui in headless Chromium against the real server and binary with the tiny models: load from the
Models view, generate with progress / preview / final image, cancel, img2img with a painted mask, the queue
updating live, the gallery lightbox and "send to img2img", a phone-sized window. One server and one browser for
the module; the tests run in file order (the model loaded by the first is used by the others). Screenshots of
each view go to test-artifacts/ui/; the browser console must show no error."""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver import ActionChains, Chrome, Keys
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests import browser
from tests.fake_hubs import FakeHubs
from tests.fake_ollama import FakeOllama
from tests.support import (
    REPO,
    ServerProcess,
    running_server_with,
    running_server_with_config,
    wait_for_job,
    wait_until,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not browser.available() and not os.environ.get("CI"),
        reason="chromium / chromedriver not installed (.ci/run installs them)",
    ),
]
ARTIFACTS = REPO / "test-artifacts" / "ui"
TIMEOUT = 60
UI_KEY = "ui-test-key-0123456789"
HUB_PAYLOAD = b"tiny model bytes" * 256


@pytest.fixture(scope="module")
def hubs() -> Iterator[FakeHubs]:
    """A local server speaking HuggingFace's and CivitAI's protocols, which the UI's server downloads from."""
    with FakeHubs(HUB_PAYLOAD) as fake:
        yield fake


@pytest.fixture(scope="module")
def server(own_models_dir: Path, tmp_path_factory: pytest.TempPathFactory, hubs: FakeHubs) -> Iterator[ServerProcess]:
    """Its own copy of the tiny models (the download and conversion tests add files to it)."""
    yield from running_server_with_config(own_models_dir, tmp_path_factory.mktemp("server-ui"), hubs.server_config())


@pytest.fixture(scope="module")
def driver() -> Iterator[Chrome]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with browser.chrome() as chrome:
        yield chrome


@pytest.fixture(autouse=True)
def console_has_no_error(driver: Chrome) -> Iterator[None]:
    """Every test leaves the browser console free of errors (failed requests and uncaught exceptions included)."""
    yield
    severe = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert not severe, severe


@pytest.fixture(scope="module")
def wait(driver: Chrome) -> WebDriverWait:
    return WebDriverWait(driver, TIMEOUT)


def open_view(driver: Chrome, server: ServerProcess, view: str) -> None:
    if not driver.current_url.startswith(f"{server.url}/ui/"):
        driver.get(server.url + "/")  # / redirects to /ui/
        WebDriverWait(driver, TIMEOUT).until(
            lambda d: (
                d.find_element(By.ID, "socket-state").text == "live"
                and d.find_element(By.TAG_NAME, "body").get_attribute("data-ready")
            )
        )
    driver.execute_script(
        """
        const same = location.hash === '#' + arguments[0];  // then no hashchange fires: show it again by hand
        document.body.removeAttribute('data-ready');
        location.hash = arguments[0];
        if (same) window.dispatchEvent(new HashChangeEvent('hashchange'));""",
        view,
    )
    WebDriverWait(driver, TIMEOUT).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == view
    )


def by_id(driver: Chrome, element_id: str) -> WebElement:
    return driver.find_element(By.ID, element_id)


def click(driver: Chrome, element: WebElement) -> None:
    """Clicks an element scrolled to the middle of the window, clear of the sticky header."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def click_located(driver: Chrome, by: str, selector: str) -> None:
    """Clicks what the locator finds, finding it again if a live update re-rendered it in between."""

    def clicked(d: Chrome) -> bool:
        element = d.find_element(by, selector)
        if not element.is_displayed() or not element.is_enabled():
            return False
        click(d, element)
        return True

    WebDriverWait(driver, TIMEOUT, ignored_exceptions=[StaleElementReferenceException]).until(clicked)


def type_into(driver: Chrome, element_id: str, text: str) -> None:
    field = by_id(driver, element_id)
    field.clear()
    field.send_keys(text)


def record_progress_labels(driver: Chrome) -> None:
    """Keeps every text the progress label shows, since a 2-step job passes through them faster than a poll."""
    driver.execute_script("""
        window.progressTexts = [];
        const label = document.getElementById('progress-label');
        new MutationObserver(() => window.progressTexts.push(label.textContent))
            .observe(label, {childList: true, characterData: true, subtree: true});""")


def screenshot(driver: Chrome, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def newest_job(client: httpx.Client, **filters: Any) -> dict[str, Any]:
    items = client.get("/queue", params={"limit": 1, **filters}).json()["items"]
    assert items, filters
    return items[0]


def test_root_redirects_and_ui_is_served_with_a_csp(client: httpx.Client) -> None:
    root = client.get("/")
    assert root.status_code in (302, 303, 307) and root.headers["location"] == "/ui/"
    page = client.get("/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/ui/main.js").headers["content-type"].startswith("text/javascript")
    assert "/ui/" not in "".join(client.get("/schema/openapi.json").json()["paths"])


def test_load_the_tiny_model_from_the_models_view(
    driver: Chrome, wait: WebDriverWait, server: ServerProcess, client: httpx.Client
) -> None:
    open_view(driver, server, "models")
    click_located(driver, By.CSS_SELECTOR, 'button[data-model="flux2_tiny_dit.safetensors"]')
    wait.until(EC.visibility_of_element_located((By.ID, "load-dialog")))
    # The FLUX.2 preset needs an LLM and a VAE: the only LLM is chosen, and the TAESD stands in for the VAE.
    wait.until(EC.text_to_be_present_in_element((By.ID, "load-architecture"), "FLUX.2 klein"))
    assert by_id(driver, "component-llm").get_property("value") == "qwen3_tiny_llm.safetensors"
    assert by_id(driver, "component-taesd").get_property("value") == "taef2_tiny.safetensors"
    assert "(required)" in driver.find_element(By.CSS_SELECTOR, 'label[for="component-llm"]').text
    screenshot(driver, "models-load-dialog")
    click(driver, by_id(driver, "load-submit"))
    wait.until(EC.text_to_be_present_in_element((By.ID, "loaded-model"), "Loaded: flux2_tiny_dit.safetensors"))
    assert client.get("/health").json()["model_name"] == "flux2_tiny_dit.safetensors"
    assert by_id(driver, "unload-model").is_enabled()
    wait.until(EC.text_to_be_present_in_element((By.ID, "model-state"), "flux2_tiny_dit"))
    screenshot(driver, "models")


def test_inspect_gives_the_architecture_preset_and_the_remembered_profile(client: httpx.Client) -> None:
    inspected = client.get(
        "/models/inspect", params={"model_name": "flux2_tiny_dit.safetensors", "model_type": "diffusion"}
    ).json()
    assert (inspected["architecture"], inspected["variant"]) == ("FLUX.2", "FLUX.2 klein")
    assert inspected["preset"]["requiredComponents"] == ["llm", "vae"] and inspected["preset"]["sizeMultiple"] == 16
    # Loaded by the test before: its components and options are remembered for the next load form.
    assert inspected["profile"]["llm"] == "qwen3_tiny_llm.safetensors"
    assert inspected["profile"]["taesd"] == "taef2_tiny.safetensors"
    assert inspected["profile"]["options"]["flash_attn"] is True
    missing = client.get("/models/inspect", params={"model_name": "nope.safetensors", "model_type": "diffusion"})
    assert missing.status_code == 404 and "nope.safetensors" in missing.json()["error"]
    assert client.get("/models/inspect", params={"model_name": "../x", "model_type": "diffusion"}).status_code == 400
    assert "/models/inspect" in client.get("/schema/openapi.json").json()["paths"]


def test_generate_shows_progress_preview_and_the_image(
    driver: Chrome, wait: WebDriverWait, server: ServerProcess, client: httpx.Client
) -> None:
    open_view(driver, server, "generate")
    # Defaults come from the FLUX.2 preset; a size it would round is refused before anything is sent.
    wait.until(lambda d: by_id(d, "width").get_property("value") == "1024")
    assert by_id(driver, "sampler").get_property("value") == "euler"
    jobs_before = client.get("/queue").json()["total_count"]
    type_into(driver, "prompt", "a lovely cat")
    click(driver, by_id(driver, "lora-insert"))
    assert by_id(driver, "prompt").get_property("value") == "a lovely cat <lora:tiny_lora:1>"
    for field, value in (("width", "70"), ("height", "64"), ("steps", "2")):
        type_into(driver, field, value)
    click(driver, by_id(driver, "generate-button"))
    wait.until(EC.text_to_be_present_in_element((By.ID, "size-hint"), "would make it 80"))
    assert client.get("/queue").json()["total_count"] == jobs_before
    type_into(driver, "width", "64")
    record_progress_labels(driver)
    by_id(driver, "prompt").send_keys(Keys.CONTROL, Keys.ENTER)  # Ctrl+Enter generates
    result = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, "#results img")))
    wait.until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", result) == 64)
    texts = driver.execute_script("return window.progressTexts")
    assert any(text.startswith("Image 1 of 1 · step") and "%" in text for text in texts), texts
    assert by_id(driver, "progress-label").text.startswith("Done")
    # Issue 22, defect 6: the 320 px preview stayed above the smaller final image. It was shown, and went.
    preview = by_id(driver, "live-preview")
    assert preview.get_attribute("src").startswith("data:image/jpeg;base64,") and not preview.is_displayed()
    job = newest_job(client)
    assert job["status"] == "completed" and job["params"]["prompt"] == "a lovely cat <lora:tiny_lora:1>"
    assert (job["params"]["width"], job["params"]["steps"]) == (64, 2)
    screenshot(driver, "generate")


def test_cancel_the_running_job(
    driver: Chrome, wait: WebDriverWait, server: ServerProcess, client: httpx.Client
) -> None:
    open_view(driver, server, "generate")
    type_into(driver, "steps", "60")
    click(driver, by_id(driver, "generate-button"))
    wait.until(EC.text_to_be_present_in_element((By.ID, "progress-label"), "step"))
    click(driver, by_id(driver, "cancel-button"))
    wait.until(EC.text_to_be_present_in_element((By.ID, "progress-label"), "Cancelled"))
    assert newest_job(client)["status"] == "cancelled"
    assert not by_id(driver, "cancel-button").is_enabled()
    type_into(driver, "steps", "2")


def test_img2img_with_a_painted_mask(
    driver: Chrome, wait: WebDriverWait, server: ServerProcess, client: httpx.Client, tmp_path: Path
) -> None:
    source = tmp_path / "input.png"
    Image.new("RGB", (64, 64), (200, 40, 40)).save(source)
    open_view(driver, server, "generate")
    click(driver, driver.find_element(By.CSS_SELECTOR, 'input[name="mode"][value="img2img"]'))
    by_id(driver, "init-image").send_keys(str(source))
    canvas = wait.until(EC.visibility_of_element_located((By.ID, "mask-canvas")))
    wait.until(lambda d: d.execute_script("return arguments[0].width", canvas) == 64)
    # Paint a stroke across the middle, erase nothing, then check the exported mask has white and black.
    # (In the middle of the window: at its bottom edge the sticky action bar would take the strokes.)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)
    ActionChains(driver).move_to_element_with_offset(canvas, -40, 0).click_and_hold().move_by_offset(
        40, 0
    ).move_by_offset(40, 0).release().perform()
    painted, total = driver.execute_script(
        """
        const data = arguments[0].getContext('2d').getImageData(0, 0, 64, 64).data;
        let painted = 0; for (let i = 3; i < data.length; i += 4) if (data[i] > 127) painted++;
        return [painted, data.length / 4];""",
        canvas,
    )
    assert 0 < painted < total
    screenshot(driver, "generate-img2img-mask")
    click(driver, by_id(driver, "generate-button"))
    wait.until(EC.text_to_be_present_in_element((By.ID, "progress-label"), "Done"))
    job = newest_job(client)
    assert job["type"] == "img2img" and job["status"] == "completed", job
    assert job["params"]["init_image_base64"] == {"path": "inputs/init_image.png", "width": 64, "height": 64}
    assert job["params"]["mask_image_base64"] == {"path": "inputs/mask_image.png", "width": 64, "height": 64}
    mask_path = job["params"]["mask_image_base64"]["path"]
    colours = Image.open(server.output_dir / job["job_id"] / mask_path).convert("L").getcolors()
    assert {value for _, value in colours} == {0, 255}  # white = repaint, black = keep
    # Invert turns the mask around.
    click(driver, by_id(driver, "mask-invert"))
    inverted = driver.execute_script(
        """
        const data = arguments[0].getContext('2d').getImageData(0, 0, 64, 64).data;
        let painted = 0; for (let i = 3; i < data.length; i += 4) if (data[i] > 127) painted++; return painted;""",
        canvas,
    )
    assert inverted == total - painted
    click(driver, driver.find_element(By.CSS_SELECTOR, 'input[name="mode"][value="txt2img"]'))


def test_queue_updates_live_from_a_job_submitted_over_the_api(
    driver: Chrome, wait: WebDriverWait, server: ServerProcess, client: httpx.Client
) -> None:
    open_view(driver, server, "queue")
    driver.execute_script("window.notReloaded = true")
    accepted = client.post("/txt2img", json={"prompt": "a queue cat", "width": 64, "height": 64, "steps": 2}).json()
    item = f'#queue-list li[data-job-id="{accepted["job_id"]}"]'
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, item)))
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, f"{item} .badge"), "completed"))
    assert "a queue cat" in driver.find_element(By.CSS_SELECTOR, item).text
    assert driver.execute_script("return window.notReloaded") is True
    wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, f"{item} .job-outputs img")))
    # The status filter narrows the list; "Run again" queues the same parameters.
    Select(by_id(driver, "queue-status")).select_by_visible_text("cancelled")
    wait.until(EC.invisibility_of_element_located((By.CSS_SELECTOR, item)))
    Select(by_id(driver, "queue-status")).select_by_visible_text("all")
    click_located(driver, By.XPATH, f'//li[@data-job-id="{accepted["job_id"]}"]//button[text()="Run again"]')
    wait.until(lambda d: newest_job(client)["job_id"] != accepted["job_id"])
    rerun = wait_for_job(client, newest_job(client)["job_id"])
    assert (
        rerun["params"]["prompt"] == "a queue cat"
        and rerun["params"]["seed"] == wait_for_job(client, accepted["job_id"])["params"]["seed"]
    )
    screenshot(driver, "queue")


def test_a_queue_thumbnail_opens_the_lightbox_and_back_closes_it(
    driver: Chrome, wait: WebDriverWait, server: ServerProcess, client: httpx.Client
) -> None:
    """Issue 22, defect 1: the lightbox opened from the Queue view was modal inside the hidden Gallery section,
    invisible, swallowing every click; the browser's Back with it open did the same."""
    accepted = client.post("/txt2img", json={"prompt": "a lightbox cat", "width": 64, "height": 64, "steps": 2})
    job_id = accepted.json()["job_id"]
    assert wait_for_job(client, job_id)["status"] == "completed"
    open_view(driver, server, "queue")
    thumb = f'#queue-list li[data-job-id="{job_id}"] .thumb-button'
    lightbox = by_id(driver, "lightbox")
    for close in ("button", "back"):
        click_located(driver, By.CSS_SELECTOR, thumb)
        wait.until(EC.visibility_of(lightbox))
        assert "a lightbox cat" in by_id(driver, "lightbox-params").text
        wait.until(
            lambda d: d.execute_script("return document.querySelector('#lightbox-media img')?.naturalWidth") == 64
        )
        if close == "button":
            screenshot(driver, "queue-lightbox")
            click(driver, by_id(driver, "lightbox-close"))
        else:
            driver.back()
        wait.until(EC.invisibility_of_element_located((By.ID, "lightbox")))
        # Still the Queue view, and it takes clicks again: the filter works.
        assert driver.execute_script("return location.hash") == "#queue" and by_id(driver, "view-queue").is_displayed()
        Select(by_id(driver, "queue-status")).select_by_visible_text("cancelled")
        wait.until(EC.invisibility_of_element_located((By.CSS_SELECTOR, thumb)))
        Select(by_id(driver, "queue-status")).select_by_visible_text("all")
        wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, thumb)))
    # The lightbox's history entry went with it: Back now leaves the Queue view for the one before.
    assert driver.execute_script("return history.state") is None


def test_gallery_lightbox_use_settings_and_send_to_img2img(
    driver: Chrome, wait: WebDriverWait, server: ServerProcess, client: httpx.Client
) -> None:
    open_view(driver, server, "gallery")
    newest = newest_job(client, status="completed")
    first_item = "#gallery-grid .gallery-item"
    assert newest["outputs"][0] in (driver.find_element(By.CSS_SELECTOR, first_item).get_attribute("aria-label") or "")
    click_located(driver, By.CSS_SELECTOR, first_item)
    lightbox = wait.until(EC.visibility_of_element_located((By.ID, "lightbox")))
    assert newest["params"]["prompt"] in by_id(driver, "lightbox-params").text
    wait.until(
        lambda d: (
            d.execute_script(
                "const i = document.querySelector('#lightbox-media img');return i && i.complete && i.naturalWidth"
            )
            == 64
        )
    )
    screenshot(driver, "gallery-lightbox")
    click(driver, by_id(driver, "lightbox-use"))
    wait.until(EC.visibility_of_element_located((By.ID, "view-generate")))
    assert by_id(driver, "prompt").get_property("value") == newest["params"]["prompt"]
    assert by_id(driver, "seed").get_property("value") == str(newest["params"]["seed"])
    open_view(driver, server, "gallery")
    click_located(driver, By.CSS_SELECTOR, "#gallery-grid .gallery-item")
    wait.until(EC.visibility_of(lightbox))
    click(driver, by_id(driver, "lightbox-img2img"))
    wait.until(EC.visibility_of_element_located((By.ID, "mask-stage")))
    assert driver.find_element(By.CSS_SELECTOR, 'input[name="mode"][value="img2img"]').is_selected()
    assert driver.execute_script("return document.getElementById('init-preview').naturalWidth") == 64
    open_view(driver, server, "gallery")
    screenshot(driver, "gallery")


def test_upscaler_load_and_upscale_from_the_lightbox(
    driver: Chrome, wait: WebDriverWait, server: ServerProcess, client: httpx.Client
) -> None:
    open_view(driver, server, "models")
    wait.until(EC.text_to_be_present_in_element_value((By.ID, "upscaler-model"), "esrgan_tiny_x4.safetensors"))
    click(driver, by_id(driver, "upscaler-load"))
    wait.until(EC.text_to_be_present_in_element((By.ID, "upscaler-state"), "Loaded: esrgan_tiny_x4.safetensors"))
    open_view(driver, server, "generate")
    assert by_id(driver, "upscale").is_enabled()  # generate-then-upscale is offered now
    open_view(driver, server, "gallery")
    click_located(driver, By.CSS_SELECTOR, "#gallery-grid .gallery-item")
    upscale = wait.until(EC.element_to_be_clickable((By.ID, "lightbox-upscale")))
    click(driver, upscale)
    wait.until(lambda d: newest_job(client)["type"] == "upscale")
    job = wait_for_job(client, newest_job(client)["job_id"])
    assert job["status"] == "completed", job
    assert Image.open(server.output_dir / job["outputs"][0]).size == (256, 256)
    click(driver, by_id(driver, "lightbox-close"))


def test_download_and_convert_from_the_models_view(
    driver: Chrome,
    wait: WebDriverWait,
    server: ServerProcess,
    own_models_dir: Path,
    hubs: FakeHubs,
    client: httpx.Client,
) -> None:
    open_view(driver, server, "models")
    # The type choices are the server's model types (GET /models/types), not a copy in the page.
    names = [kind["name"] for kind in client.get("/models/types").json()["model_types"]]
    assert [option.text for option in Select(by_id(driver, "model-type-filter")).options] == ["all", *names]
    assert [option.text for option in Select(by_id(driver, "download-type")).options] == names
    Select(by_id(driver, "download-type")).select_by_visible_text("lora")
    sources = (
        ("url", {"download-url": f"{hubs.url}/plain/model.gguf"}),
        ("huggingface", {"download-repo": "tiny-org/tiny-repo", "download-filename": "loras/tiny.safetensors"}),
        ("civitai", {"download-civitai": "4242"}),
    )

    def download_badges(d: Chrome) -> list[str]:
        return [badge.text for badge in d.find_elements(By.CSS_SELECTOR, "#download-jobs .badge")]

    for done, (source, fields) in enumerate(sources, start=1):
        Select(by_id(driver, "download-source")).select_by_value(source)
        for field, value in fields.items():
            type_into(driver, field, value)
        click(driver, driver.find_element(By.CSS_SELECTOR, "#download-form button[type=submit]"))
        expected = ["completed", "completed"] * done  # each download, then its hash check

        def settled(d: Chrome, expected: list[str] = expected) -> bool:
            return download_badges(d) == expected

        wait.until(settled)
    for name in ("model.gguf", "tiny.safetensors", "tiny_detail_v2.safetensors"):
        assert (own_models_dir / "loras" / name).read_bytes() == HUB_PAYLOAD, name
    # A file is named by its folder as POST /convert takes it: "loras/", not the /models/paths key "lora".
    wait.until(
        lambda d: (
            "loras/tiny.safetensors"
            in [option.get_attribute("value") for option in Select(by_id(d, "convert-input")).options]
        )
    )
    Select(by_id(driver, "convert-input")).select_by_value("diffusion_models/flux2_tiny_dit.safetensors")
    Select(by_id(driver, "convert-type")).select_by_value("q8_0")
    click(driver, driver.find_element(By.CSS_SELECTOR, "#convert-form button[type=submit]"))
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#convert-jobs .badge"), "completed"))
    wait.until(EC.text_to_be_present_in_element((By.ID, "model-rows"), "flux2_tiny_dit.q8_0.gguf"))
    assert "model.gguf" in by_id(driver, "model-rows").text
    screenshot(driver, "models-downloads")


def test_settings_and_assistant_views(
    driver: Chrome, wait: WebDriverWait, server: ServerProcess, client: httpx.Client
) -> None:
    open_view(driver, server, "settings")
    wait.until(lambda d: by_id(d, "preview-interval").get_property("value") == "1")
    type_into(driver, "preview-max_size", "128")
    driver.find_element(By.CSS_SELECTOR, "#preview-form button[type=submit]").click()
    wait.until(lambda d: client.get("/preview/settings").json()["max_size"] == 128)
    screenshot(driver, "settings")
    open_view(driver, server, "assistant")
    wait.until(lambda d: by_id(d, "assistant-state").text != "")
    screenshot(driver, "assistant")


def test_prompt_enhancement_and_assistant_actions_run_only_when_confirmed(
    driver: Chrome, wait: WebDriverWait, server: ServerProcess, client: httpx.Client
) -> None:
    with FakeOllama() as ollama:
        ollama.assistant_reply = json.dumps(
            {
                "message": "Previews every 3 steps.",
                "actions": [{"type": "set_preview_settings", "parameters": {"interval": 3}}],
            }
        )
        open_view(driver, server, "settings")
        for form in ("ollama", "assistant"):
            type_into(driver, f"{form}-base_url", ollama.url)
            click(driver, driver.find_element(By.CSS_SELECTOR, f"#{form}-form button[type=submit]"))
            wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, f"#{form}-form [data-status]"), "Connected"))
        open_view(driver, server, "generate")
        type_into(driver, "prompt", "a cat")
        click(driver, wait.until(EC.element_to_be_clickable((By.ID, "enhance"))))
        wait.until(EC.text_to_be_present_in_element_value((By.ID, "prompt"), "an enhanced"))
        open_view(driver, server, "assistant")
        type_into(driver, "chat-message", "preview less often")
        click(driver, driver.find_element(By.CSS_SELECTOR, "#chat-form button[type=submit]"))
        action = wait.until(
            EC.element_to_be_clickable((By.CSS_SELECTOR, '#chat-log button[aria-label*="set_preview_settings"]'))
        )
        assert "Previews every 3 steps." in by_id(driver, "chat-log").text
        click(driver, action)
        wait.until(EC.visibility_of_element_located((By.ID, "confirm-dialog")))
        assert '"interval": 3' in by_id(driver, "confirm-text").text
        screenshot(driver, "assistant-confirm")
        click(driver, driver.find_element(By.CSS_SELECTOR, '#confirm-dialog button[value="no"]'))
        wait.until(EC.invisibility_of_element_located((By.ID, "confirm-dialog")))
        assert client.get("/preview/settings").json()["interval"] == 1  # declined: nothing ran
        click(driver, action)
        click(driver, wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, '#confirm-dialog button[value="yes"]'))))
        wait.until(lambda d: client.get("/preview/settings").json()["interval"] == 3)
    client.put("/preview/settings", json={"interval": 1})


def test_a_phone_sized_window(driver: Chrome, wait: WebDriverWait, server: ServerProcess) -> None:
    driver.set_window_size(390, 844)
    try:
        for view in ("generate", "queue", "models", "gallery", "settings", "assistant"):
            open_view(driver, server, view)
            wait.until(lambda d: d.execute_script("return document.readyState") == "complete")
            overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, (view, overflow)
            screenshot(driver, f"phone-{view}")
        # The form is one column: the output panel sits below the controls.
        open_view(driver, server, "generate")
        controls, output = (
            driver.find_element(By.CSS_SELECTOR, selector).rect for selector in (".controls", ".output-panel")
        )
        assert output["y"] >= controls["y"] + controls["height"] - 1
    finally:
        driver.set_window_size(1200, 900)


def test_the_form_and_the_running_job_survive_a_reload(
    driver: Chrome, wait: WebDriverWait, server: ServerProcess, client: httpx.Client
) -> None:
    """Issue 22, defect 3: a reload lost the Generate view ("Idle", Cancel disabled, the result never shown, every
    field back to the model's defaults). The form comes back from localStorage and the page follows the job this
    browser queued last: its progress while it runs, then its images."""
    open_view(driver, server, "generate")
    type_into(driver, "prompt", "a reloaded cat")
    type_into(driver, "negative_prompt", "dogs")
    for field, value in {"width": "64", "height": "64", "steps": "6", "batch_count": "2", "seed": "77"}.items():
        type_into(driver, field, value)
    Select(by_id(driver, "sampler")).select_by_visible_text("euler_a")
    click(driver, by_id(driver, "generate-button"))
    wait.until(lambda d: newest_job(client)["params"].get("prompt") == "a reloaded cat")
    job_id = newest_job(client)["job_id"]
    driver.refresh()
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "generate")
    wait.until(lambda d: by_id(d, "prompt").get_property("value") == "a reloaded cat")
    values = {
        field: by_id(driver, field).get_property("value")
        for field in ("negative_prompt", "width", "height", "steps", "batch_count", "seed", "sampler")
    }
    assert values == {
        "negative_prompt": "dogs",
        "width": "64",
        "height": "64",
        "steps": "6",
        "batch_count": "2",
        "seed": "77",
        "sampler": "euler_a",
    }
    # Still running after the reload: Cancel works again and the progress moves; then both images appear.
    if client.get(f"/queue/{job_id}").json()["status"] in ("pending", "processing"):
        assert by_id(driver, "cancel-button").is_enabled()
    wait.until(EC.text_to_be_present_in_element((By.ID, "progress-label"), "Done: 2 file(s)"))
    assert len(driver.find_elements(By.CSS_SELECTOR, "#results img")) == 2
    assert not by_id(driver, "cancel-button").is_enabled()
    # A second reload shows the finished job's images again, and "Reuse last" knows its seed.
    driver.refresh()
    wait.until(EC.text_to_be_present_in_element((By.ID, "progress-label"), "Done: 2 file(s)"))
    type_into(driver, "seed", "-1")
    click(driver, by_id(driver, "seed-reuse"))
    assert by_id(driver, "seed").get_property("value") == "77"
    screenshot(driver, "generate-after-reload")
    # The tests after this one start from a plain form again.
    driver.execute_script("localStorage.clear()")
    for field, value in {"negative_prompt": "", "steps": "2", "batch_count": "1", "seed": "-1"}.items():
        type_into(driver, field, value)
    Select(by_id(driver, "sampler")).select_by_visible_text("euler")


IN_VIEW = """
    const rect = arguments[0].getBoundingClientRect();
    const x = rect.left + rect.width / 2, y = rect.top + rect.height / 2;
    const hit = document.elementFromPoint(x, y);
    return rect.top >= 0 && rect.bottom <= window.innerHeight && rect.right <= window.innerWidth
        && (hit === arguments[0] || arguments[0].contains(hit));"""


@pytest.mark.parametrize("size", [(1440, 900), (390, 844)], ids=["desktop", "phone"])
def test_the_action_bar_stays_in_view(driver: Chrome, server: ServerProcess, size: tuple[int, int]) -> None:
    """Issue 22, defect 5: Generate was below the fold (y 870 of 900 in txt2img, 1370 in img2img, 1155 on a
    phone). Generate, Cancel and the progress stay in view, not covered, at the top and the bottom of the form."""
    driver.set_window_size(*size)
    try:
        open_view(driver, server, "generate")
        for mode in ("txt2img", "img2img"):
            driver.execute_script(f"document.querySelector('input[name=mode][value={mode}]').click()")
            for scroll in ("0", "document.documentElement.scrollHeight"):
                driver.execute_script(f"window.scrollTo(0, {scroll})")
                for control in ("generate-button", "cancel-button", "progress-label"):
                    assert driver.execute_script(IN_VIEW, by_id(driver, control)), (mode, scroll, control)
            screenshot(driver, f"action-bar-{mode}-{size[0]}")
        driver.execute_script("document.querySelector('input[name=mode][value=txt2img]').click()")
    finally:
        driver.set_window_size(1200, 900)


def test_the_header_shows_each_workers_state_and_model(
    driver: Chrome, wait: WebDriverWait, server: ServerProcess, client: httpx.Client
) -> None:
    """The workers' state in the header (from GET /workers, refreshed on the live events): name, state, model."""
    open_view(driver, server, "generate")
    workers = client.get("/workers").json()
    assert workers
    for worker in workers:
        item = f'#worker-states [data-worker="{worker["name"]}"]'
        wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, item), "idle"))
        text = driver.find_element(By.CSS_SELECTOR, item).text
        assert worker["name"] in text and "flux2_tiny_dit" in text, text
    driver.execute_script("""
        window.workerTexts = [];
        const list = document.getElementById('worker-states');
        new MutationObserver(() => window.workerTexts.push(list.textContent))
            .observe(list, {childList: true, characterData: true, subtree: true});""")
    job = client.post("/txt2img", json={"prompt": "a busy cat", "width": 64, "height": 64, "steps": 8}).json()
    assert wait_for_job(client, job["job_id"])["status"] == "completed"
    wait.until(lambda d: "busy" in " ".join(d.execute_script("return window.workerTexts")))
    wait.until(EC.text_to_be_present_in_element((By.ID, "worker-states"), "idle"))
    screenshot(driver, "header-workers")


def test_the_theme_follows_the_system(driver: Chrome, server: ServerProcess) -> None:
    background = "return getComputedStyle(document.body).backgroundColor"
    open_view(driver, server, "generate")
    assert driver.execute_script(background) == "rgb(248, 250, 252)"
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]}
    )
    try:
        assert driver.execute_script(background) == "rgb(11, 17, 32)"
        screenshot(driver, "generate-dark")
    finally:
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})


def test_every_control_has_a_label(driver: Chrome, server: ServerProcess) -> None:
    open_view(driver, server, "generate")
    unlabelled = driver.execute_script("""
        return Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea, button'))
            .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                          && !el.textContent.trim() && !el.getAttribute('aria-labelledby'))
            .map(el => el.outerHTML.slice(0, 120));""")
    assert unlabelled == []


def dispatch_file(driver: Chrome, target: str, data: bytes, name: str, kind: str, event: str = "drop") -> bool:
    """Drops (or pastes) a file on the element `target` (a CSS selector) as a browser would; True when the page
    took the event (defaultPrevented: then the browser does not open the file in place of the page)."""
    return bool(
        driver.execute_script(
            """
            const [selector, b64, name, kind, type] = arguments;
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: kind }));
            const target = document.querySelector(selector);
            if (type === 'paste') {
                target.focus();
                const paste = new ClipboardEvent('paste', { clipboardData: transfer, bubbles: true, cancelable: true });
                target.dispatchEvent(paste);
                return paste.defaultPrevented;
            }
            const over = new DragEvent('dragover', { dataTransfer: transfer, bubbles: true, cancelable: true });
            target.dispatchEvent(over);
            const drop = new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true });
            target.dispatchEvent(drop);
            return over.defaultPrevented && drop.defaultPrevented;""",
            target,
            base64.b64encode(data).decode(),
            name,
            kind,
            event,
        )
    )


def png_bytes(size: tuple[int, int] = (64, 64), **texts: str) -> bytes:
    info = PngInfo()
    for key, value in texts.items():
        info.add_text(key, value)
    out = io.BytesIO()
    Image.new("RGB", size, (30, 120, 200)).save(out, "PNG", pnginfo=info)
    return out.getvalue()


def session_items(driver: Chrome, status: str = "") -> list[WebElement]:
    return driver.find_elements(By.CSS_SELECTOR, f"#session-jobs li.session-job{'.' + status if status else ''}")


def test_a_cancelled_batch_shows_the_images_it_kept(
    driver: Chrome, wait: WebDriverWait, server: ServerProcess, client: httpx.Client
) -> None:
    """Issue 22, defect 4 in the page: a batch cancelled in its second image shows the first, kept."""
    open_view(driver, server, "generate")
    type_into(driver, "prompt", "a kept batch")
    for field, value in {"width": "64", "height": "64", "steps": "16", "batch_count": "3"}.items():
        type_into(driver, field, value)
    click(driver, by_id(driver, "generate-button"))
    WebDriverWait(driver, 3 * TIMEOUT).until(
        EC.text_to_be_present_in_element((By.ID, "progress-label"), "Image 2 of 3")
    )
    click(driver, by_id(driver, "cancel-button"))
    wait.until(EC.text_to_be_present_in_element((By.ID, "progress-label"), "Cancelled: kept"))
    job = newest_job(client)
    assert job["status"] == "cancelled" and 1 <= len(job["outputs"]) < 3, job
    shown = driver.find_elements(By.CSS_SELECTOR, "#results img")
    assert len(shown) == len(job["outputs"])
    wait.until(lambda d: d.execute_script("return arguments[0].naturalWidth", shown[0]) == 64)
    screenshot(driver, "generate-cancelled-batch")
    for field, value in {"width": "64", "height": "64", "steps": "2", "batch_count": "1"}.items():
        type_into(driver, field, value)


SLOW_JOB = {"prompt": "a slow cat", "width": 256, "height": 256, "steps": 50, "preview": False}


def test_the_size_hint_the_queue_position_and_every_queued_job_are_followed(
    driver: Chrome, wait: WebDriverWait, server: ServerProcess, client: httpx.Client
) -> None:
    """Issue 22, defect 6: the size hint stayed after the size was fixed; "Queued (position N)" never counted
    down; Generate followed only the last job queued; "Reuse last" forgot its seed after a reload. Item 6: the
    strip of this session's jobs with their results comes back after a reload."""
    open_view(driver, server, "generate")
    driver.execute_script("document.getElementById('session-clear').click()")  # the earlier tests' jobs
    type_into(driver, "width", "70")
    click(driver, by_id(driver, "generate-button"))
    wait.until(EC.text_to_be_present_in_element((By.ID, "size-hint"), "would make it 80"))
    type_into(driver, "width", "64")
    assert "would make it" not in by_id(driver, "size-hint").text
    assert "multiples of 16" in by_id(driver, "size-hint").text
    # Item 6: size presets at the architecture's default area, and a swap.
    Select(by_id(driver, "size-preset")).select_by_visible_text("16:9 · 1360 × 768")
    assert (by_id(driver, "width").get_property("value"), by_id(driver, "height").get_property("value")) == (
        "1360",
        "768",
    )
    click(driver, by_id(driver, "size-swap"))
    assert (by_id(driver, "width").get_property("value"), by_id(driver, "height").get_property("value")) == (
        "768",
        "1360",
    )
    assert Select(by_id(driver, "size-preset")).first_selected_option.text == "9:16 · 768 × 1360"
    for field in ("width", "height"):
        type_into(driver, field, "64")
    # Two slow jobs from elsewhere: one runs, one waits; then two from this page.
    running = client.post("/txt2img", json=SLOW_JOB).json()["job_id"]
    wait_until(lambda: client.get(f"/queue/{running}").json()["status"] == "processing", timeout=TIMEOUT)
    waiting = client.post("/txt2img", json=SLOW_JOB).json()["job_id"]
    driver.execute_script("""
        window.labelHistory = [];  // every text set, also those replaced before an observer runs
        new MutationObserver((changes) => changes.forEach((change) => change.addedNodes.forEach(
            (node) => window.labelHistory.push(node.textContent))))
            .observe(document.getElementById('progress-label'), {childList: true});""")
    type_into(driver, "prompt", "the first of two")
    click(driver, by_id(driver, "generate-button"))
    wait.until(EC.text_to_be_present_in_element((By.ID, "progress-label"), "Queued (position 2)"))
    type_into(driver, "prompt", "the second of two")
    by_id(driver, "prompt").send_keys(Keys.CONTROL, Keys.ENTER)
    wait.until(lambda d: len(session_items(d)) == 2)
    assert "Queued (position 2)" in by_id(driver, "progress-label").text  # still the first one's
    assert client.delete(f"/queue/{running}").status_code == 200
    wait.until(EC.text_to_be_present_in_element((By.ID, "progress-label"), "Queued (position 1)"))
    assert client.delete(f"/queue/{waiting}").status_code == 200
    wait.until(lambda d: len(session_items(d, "completed")) == 2)
    wait.until(EC.text_to_be_present_in_element((By.ID, "progress-label"), "Done: 1 file(s)"))
    shown = driver.execute_script("return window.labelHistory")
    assert shown.count("Done: 1 file(s)") >= 2, shown  # the action bar followed the first, then the second
    mine = [item.get_attribute("data-job-id") or "" for item in session_items(driver)]
    jobs = [wait_for_job(client, job_id) for job_id in mine]
    assert [job["params"]["prompt"] for job in jobs] == ["the second of two", "the first of two"]
    for item in session_items(driver):
        assert item.find_elements(By.CSS_SELECTOR, ".job-outputs img")
    assert not by_id(driver, "live-preview").is_displayed()
    screenshot(driver, "generate-session")
    # After a reload the strip comes back with both jobs and their results.
    driver.refresh()
    wait.until(lambda d: len(session_items(d, "completed")) == 2)
    assert [item.get_attribute("data-job-id") for item in session_items(driver)] == mine
    # "Reuse last" keeps the newest seed even with the strip cleared and the page reloaded.
    click(driver, by_id(driver, "session-clear"))
    assert not session_items(driver)
    driver.refresh()
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "generate")
    type_into(driver, "seed", "-1")
    click(driver, by_id(driver, "seed-reuse"))
    assert by_id(driver, "seed").get_property("value") == str(jobs[0]["params"]["seed"])
    type_into(driver, "seed", "-1")


def test_use_these_settings_on_an_img2img_result_restores_its_input_and_mask(
    driver: Chrome, wait: WebDriverWait, server: ServerProcess, client: httpx.Client
) -> None:
    """Issue 22, defect 6: "Use these settings" on an img2img result did not restore its input image."""
    listing = client.get("/queue", params={"type": "img2img", "status": "completed", "limit": 100}).json()["items"]
    [job] = [item for item in listing if isinstance(item["params"].get("mask_image_base64"), dict)]  # the painted one
    open_view(driver, server, "generate")
    click(driver, driver.find_element(By.CSS_SELECTOR, 'input[name="mode"][value="txt2img"]'))
    driver.execute_script("document.getElementById('init-preview').removeAttribute('src')")
    open_view(driver, server, "queue")
    click_located(driver, By.CSS_SELECTOR, f'#queue-list li[data-job-id="{job["job_id"]}"] .thumb-button')
    wait.until(EC.visibility_of_element_located((By.ID, "lightbox")))
    click(driver, by_id(driver, "lightbox-use"))
    wait.until(EC.visibility_of_element_located((By.ID, "mask-stage")))
    assert driver.find_element(By.CSS_SELECTOR, 'input[name="mode"][value="img2img"]').is_selected()
    wait.until(lambda d: d.execute_script("return document.getElementById('init-preview').naturalWidth") == 64)
    count_painted = """
        const data = document.getElementById('mask-canvas').getContext('2d').getImageData(0, 0, 64, 64).data;
        let painted = 0; for (let i = 3; i < data.length; i += 4) if (data[i] > 127) painted++; return painted;"""
    wait.until(lambda d: d.execute_script(count_painted) > 0)  # the saved mask, read back after the image
    assert driver.execute_script(count_painted) < 64 * 64
    assert by_id(driver, "prompt").get_property("value") == job["params"]["prompt"]
    click(driver, driver.find_element(By.CSS_SELECTOR, 'input[name="mode"][value="txt2img"]'))


def test_the_api_docs_render_from_this_origin(driver: Chrome, wait: WebDriverWait, server: ServerProcess) -> None:
    """Issue 22, defect 9: /docs was a blank page without the internet (Swagger UI from a CDN). Its scripts and
    styles now come from this server (the swagger-ui-bundle package), and the page renders the API."""
    driver.get(server.url + "/docs")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".swagger-ui .opblock")))
    assert "sdcpp-restapi" in driver.find_element(By.CSS_SELECTOR, ".swagger-ui .info .title").text
    loaded = driver.execute_script(
        """return [...document.querySelectorAll('script[src], link[href]')].map((e) => e.src || e.href)
            .concat(performance.getEntriesByType('resource').map((entry) => entry.name));"""
    )
    assert loaded and all(url.startswith(server.url + "/") for url in loaded), loaded
    assert any(url.endswith("/docs-assets/swagger-ui-bundle.js") for url in loaded), loaded
    screenshot(driver, "docs")


def toggle_theme(driver: Chrome) -> None:
    """The header's theme button (clicked by script: the header's chips reflow as the worker states arrive)."""
    driver.execute_script("document.getElementById('theme-toggle').click()")


def test_the_daily_papercuts(driver: Chrome, wait: WebDriverWait, server: ServerProcess, client: httpx.Client) -> None:
    """Issue 22, defect 8: prompt enhancement offered while Ollama is unreachable; a failed assistant message
    without a mark; the lightbox metadata a raw dump (no model; Close out of reach on a phone); /output with no way
    back; Enter in a number field submitting; no theme toggle."""
    # Item 6: the header's model switcher shows the loaded model; another one opens its load form.
    open_view(driver, server, "generate")
    switcher = Select(by_id(driver, "model-switcher"))
    wait.until(lambda d: switcher.first_selected_option.text == "flux2_tiny_dit.safetensors")
    switcher.select_by_visible_text("flux2_tiny_dit.q8_0.gguf")
    wait.until(EC.visibility_of_element_located((By.ID, "load-dialog")))
    assert by_id(driver, "load-title").text == "Load flux2_tiny_dit.q8_0.gguf" and "#models" in driver.current_url
    driver.find_element(By.CSS_SELECTOR, '#load-form button[value="cancel"]').click()
    wait.until(EC.invisibility_of_element_located((By.ID, "load-dialog")))
    assert switcher.first_selected_option.text == "flux2_tiny_dit.safetensors"
    unreachable = {"enabled": True, "base_url": "http://127.0.0.1:9"}
    assert client.put("/ollama/settings", json=unreachable).status_code == 200
    assert client.put("/assistant/settings", json=unreachable).status_code == 200
    open_view(driver, server, "generate")
    assert not by_id(driver, "enhance").is_displayed()
    open_view(driver, server, "assistant")
    type_into(driver, "chat-message", "hello")
    click(driver, driver.find_element(By.CSS_SELECTOR, "#chat-form button[type=submit]"))
    failed = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, "#chat-log li.chat-failed")))
    assert "hello" in failed.text and "Not answered" in failed.text
    assert "POST /assistant" not in failed.text  # read for people, not like an HTTP log
    screenshot(driver, "assistant-failed")
    expected = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert all("/assistant/chat" in entry["message"] for entry in expected), expected
    # The lightbox: a readable summary (with the model), every field folded under "All fields".
    job = newest_job(client, status="completed", type="txt2img")
    open_view(driver, server, "queue")
    click_located(driver, By.CSS_SELECTOR, f'#queue-list li[data-job-id="{job["job_id"]}"] .thumb-button')
    wait.until(EC.text_to_be_present_in_element((By.ID, "lightbox-params"), "flux2_tiny_dit"))
    summary = by_id(driver, "lightbox-params").text
    for shown in ("Model", "Prompt", "Seed", "Sampler", "Size", "Steps", "Time", f"{job['params']['width']} ×"):
        assert shown in summary, (shown, summary)
    raw = by_id(driver, "lightbox-raw")
    assert not raw.is_displayed() and "job_id" in (raw.get_attribute("textContent") or "")
    click(driver, by_id(driver, "lightbox-close"))
    wait.until(EC.invisibility_of_element_located((By.ID, "lightbox")))
    driver.set_window_size(390, 844)
    try:
        click_located(driver, By.CSS_SELECTOR, f'#queue-list li[data-job-id="{job["job_id"]}"] .thumb-button')
        wait.until(EC.visibility_of_element_located((By.ID, "lightbox")))
        driver.execute_script("document.getElementById('lightbox-all').open = true")
        assert driver.execute_script(IN_VIEW, by_id(driver, "lightbox-close"))
        screenshot(driver, "phone-lightbox")
        click(driver, by_id(driver, "lightbox-close"))
        wait.until(EC.invisibility_of_element_located((By.ID, "lightbox")))
    finally:
        driver.set_window_size(1200, 900)
    # Enter in a number field does not generate; Ctrl+Enter does, once.
    open_view(driver, server, "generate")
    before = client.get("/queue").json()["total_count"]
    by_id(driver, "steps").send_keys(Keys.ENTER)
    by_id(driver, "prompt").send_keys(Keys.CONTROL, Keys.ENTER)
    wait.until(lambda d: client.get("/queue").json()["total_count"] > before)
    wait.until(lambda d: newest_job(client)["status"] == "completed")
    assert client.get("/queue").json()["total_count"] == before + 1
    # The theme toggle: light, dark, then the system's again; the choice survives a reload.
    background = "return getComputedStyle(document.body).backgroundColor"
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]}
    )
    try:
        assert driver.execute_script(background) == "rgb(11, 17, 32)"
        toggle_theme(driver)  # light, whatever the system says
        assert driver.execute_script(background) == "rgb(248, 250, 252)"
        driver.refresh()
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "generate")
        assert driver.execute_script(background) == "rgb(248, 250, 252)"
        toggle_theme(driver)  # dark
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
        assert driver.execute_script(background) == "rgb(11, 17, 32)"
        screenshot(driver, "generate-dark-toggle")
        toggle_theme(driver)  # the system's (light here)
        assert driver.execute_script(background) == "rgb(248, 250, 252)"
    finally:
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    assert not by_id(driver, "logout-form").is_displayed()  # no keys on this server: nothing to sign out of
    # /output links back to the UI.
    driver.get(server.url + "/output/")
    click(driver, driver.find_element(By.LINK_TEXT, "← Back to the web UI"))
    wait.until(EC.url_to_be(server.url + "/ui/"))
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))


A1111_PARAMETERS = (
    "a dropped cat, best quality\nNegative prompt: dogs\n"
    "Steps: 7, Sampler: Euler a, Schedule type: Karras, CFG scale: 3.5, Seed: 1234, Size: 96x64, Model: x"
)
COMFY_PROMPT = json.dumps(
    {
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 99,
                "steps": 5,
                "cfg": 2.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 128, "height": 96, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a comfy cat"}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry"}},
    }
)


def test_drop_and_paste_images_and_read_their_parameters(
    driver: Chrome, wait: WebDriverWait, server: ServerProcess, client: httpx.Client
) -> None:
    """Issue 22, defect 7: no drag-and-drop or paste of an image (a PNG dropped elsewhere navigated away), and no
    reading of a dropped PNG's parameters (sd.cpp's and A1111's `parameters`, ComfyUI's `prompt`)."""
    open_view(driver, server, "generate")
    dialog = by_id(driver, "png-dialog")
    # A1111's parameters, dropped anywhere: read, shown, and used.
    assert dispatch_file(driver, "#results", png_bytes(parameters=A1111_PARAMETERS), "a1111.png", "image/png")
    wait.until(EC.visibility_of(dialog))
    assert "Euler a" not in by_id(driver, "png-params").text and "euler_a" in by_id(driver, "png-params").text
    screenshot(driver, "png-dialog")
    click(driver, by_id(driver, "png-use"))
    wait.until(EC.invisibility_of_element_located((By.ID, "png-dialog")))
    values = {
        f: by_id(driver, f).get_property("value") for f in ("prompt", "negative_prompt", "steps", "seed", "sampler")
    }
    assert values == {
        "prompt": "a dropped cat, best quality",
        "negative_prompt": "dogs",
        "steps": "7",
        "seed": "1234",
        "sampler": "euler_a",
    }
    assert (by_id(driver, "width").get_property("value"), by_id(driver, "cfg_scale").get_property("value")) == (
        "96",
        "3.5",
    )
    # sd.cpp's own parameters, from one of this server's images.
    job = newest_job(client, status="completed", type="txt2img")
    ours = (server.output_dir / job["outputs"][0]).read_bytes()
    assert dispatch_file(driver, "header", ours, "ours.png", "image/png")
    wait.until(EC.visibility_of(dialog))
    wait.until(EC.text_to_be_present_in_element((By.ID, "png-params"), str(job["params"]["seed"])))
    assert job["params"]["prompt"] in by_id(driver, "png-params").text
    driver.find_element(By.CSS_SELECTOR, '#png-dialog button[value="close"]').click()
    wait.until(EC.invisibility_of_element_located((By.ID, "png-dialog")))
    # ComfyUI's prompt graph.
    assert dispatch_file(driver, "main", png_bytes(prompt=COMFY_PROMPT), "comfy.png", "image/png")
    wait.until(EC.text_to_be_present_in_element((By.ID, "png-params"), "a comfy cat"))
    assert "128" in by_id(driver, "png-params").text and "blurry" in by_id(driver, "png-params").text
    driver.find_element(By.CSS_SELECTOR, '#png-dialog button[value="close"]').click()
    wait.until(EC.invisibility_of_element_located((By.ID, "png-dialog")))
    # A file that is no image is refused without leaving the page.
    assert dispatch_file(driver, "main", b"plain text", "notes.txt", "text/plain")
    # Into img2img: dropped on its field (the mask editor shows it), then pasted.
    click(driver, driver.find_element(By.CSS_SELECTOR, 'input[name="mode"][value="img2img"]'))
    assert dispatch_file(driver, "#img2img-fields", png_bytes((80, 48)), "input.png", "image/png")
    wait.until(lambda d: d.execute_script("return document.getElementById('init-preview').naturalWidth") == 80)
    wait.until(lambda d: d.execute_script("return document.getElementById('mask-canvas').width") == 80)
    assert dispatch_file(driver, "#init-image", png_bytes((48, 48)), "pasted.png", "image/png", event="paste")
    wait.until(lambda d: d.execute_script("return document.getElementById('init-preview').naturalWidth") == 48)
    # Into ControlNet: pasted while its field has the focus.
    driver.execute_script("document.getElementById('control-fields').open = true")
    assert dispatch_file(driver, "#control-image", png_bytes((32, 32)), "control.png", "image/png", event="paste")
    wait.until(EC.visibility_of_element_located((By.ID, "control-preview")))
    assert "32 × 32" in by_id(driver, "control-state").text
    click(driver, by_id(driver, "control-clear"))
    assert not by_id(driver, "control-preview").is_displayed()
    click(driver, driver.find_element(By.CSS_SELECTOR, 'input[name="mode"][value="txt2img"]'))
    for field, value in {"width": "64", "height": "64", "steps": "2", "seed": "-1", "cfg_scale": "1"}.items():
        type_into(driver, field, value)
    Select(by_id(driver, "sampler")).select_by_visible_text("euler")


@pytest.fixture(scope="module")
def keyed_server(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from running_server_with(
        tiny_models_dir, tmp_path_factory.mktemp("ui-keyed"), env={"SDCPP_RESTAPI_API_KEYS": UI_KEY}
    )


def sign_in(driver: Chrome, form: WebElement) -> None:
    form.find_element(By.CSS_SELECTOR, "input[name=key]").send_keys(UI_KEY)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def test_with_api_keys_the_ui_signs_in_and_works_through_the_cookie(
    driver: Chrome, wait: WebDriverWait, keyed_server: ServerProcess
) -> None:
    """Runs last: its cookie would reach the other server too (cookies do not tell ports apart)."""
    driver.get(keyed_server.url + "/")
    sign_in(driver, wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, "form[action='/login']"))))
    wait.until(EC.url_to_be(keyed_server.url + "/ui/"))
    wait.until(EC.text_to_be_present_in_element((By.ID, "socket-state"), "live"))  # the WebSocket took the cookie
    open_view(driver, keyed_server, "models")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, 'button[data-model="flux2_tiny_dit.safetensors"]')))
    # When the session ends while the page is open, the next API call's 401 brings up the UI's own login form.
    driver.delete_cookie("sdcpp_session")
    driver.execute_script("location.hash = 'queue'")
    dialog = wait.until(EC.visibility_of_element_located((By.ID, "login-dialog")))
    screenshot(driver, "login")
    sign_in(driver, dialog)
    wait.until(EC.presence_of_element_located((By.ID, "queue-counts")))
    wait.until(EC.text_to_be_present_in_element((By.ID, "socket-state"), "live"))
    open_view(driver, keyed_server, "queue")
    wait.until(EC.text_to_be_present_in_element((By.ID, "queue-counts"), "pending"))
    # The 401 answers of that moment are logged by the browser as failed requests: expected, and the only errors.
    unexpected = [
        entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE" and " 401 " not in entry["message"]
    ]
    assert not unexpected, unexpected


def test_with_keys_the_header_signs_out_and_errors_read_for_people(
    driver: Chrome, wait: WebDriverWait, keyed_server: ServerProcess
) -> None:
    """Issue 22, defect 8: no hint to load a model first, errors like HTTP logs ("POST /txt2img: No model
    loaded"), no logout. This server has no model loaded and asks for a key."""
    open_view(driver, keyed_server, "generate")
    wait.until(EC.visibility_of_element_located((By.ID, "model-hint")))
    assert "load one in the Models view" in by_id(driver, "model-hint").text
    type_into(driver, "prompt", "a cat without a model")
    click(driver, by_id(driver, "generate-button"))
    message = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, "#messages .message.error")))
    assert message.text.startswith("No model is loaded: load one in the Models view first."), message.text
    assert "POST" not in message.text
    screenshot(driver, "generate-no-model")
    click(driver, message.find_element(By.TAG_NAME, "button"))
    sign_out = wait.until(EC.visibility_of_element_located((By.ID, "logout-button")))
    click(driver, sign_out)
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "form[action='/login']")))
    assert driver.get_cookie("sdcpp_session") is None
    driver.get_log("browser")  # the refused generation's answer is logged as a failed request: expected
