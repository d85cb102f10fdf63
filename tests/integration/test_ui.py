"""The web UI at /ui in headless Chromium against the real server and binary with the tiny models: load from the
Models view, generate with progress / preview / final image, cancel, img2img with a painted mask, the queue
updating live, the gallery lightbox and "send to img2img", a phone-sized window. One server and one browser for
the module; the tests run in file order (the model loaded by the first is used by the others). Screenshots of
each view go to test-artifacts/ui/; the browser console must show no error."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver import ActionChains, Chrome, Keys
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests import browser
from tests.fake_hubs import FakeHubs
from tests.fake_ollama import FakeOllama
from tests.support import REPO, ServerProcess, running_server_with, running_server_with_config, wait_for_job

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
    preview = by_id(driver, "live-preview")
    assert preview.is_displayed() and preview.get_attribute("src").startswith("data:image/jpeg;base64,")
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
