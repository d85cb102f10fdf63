"""The output browser and thumbnails over HTTP, and end to end in headless Chromium."""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from selenium.webdriver import ActionChains, Chrome, Keys
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from tests import browser
from tests.conftest import TINY_LOAD
from tests.support import REPO, ServerProcess, wait_for_job

pytestmark = pytest.mark.integration
XSS_NAME = "<img src=x onerror=window.__xss=1>.txt"


@pytest.fixture(scope="module")
def job(client: httpx.Client, server: ServerProcess) -> dict:
    """A real job: two generated PNGs, plus files that exercise sorting and escaping."""
    client.post("/models/load", json=TINY_LOAD).raise_for_status()
    accepted = client.post(
        "/txt2img", json={"prompt": "a <b>bold</b> cat", "width": 64, "height": 48, "steps": 2, "batch_count": 2}
    ).json()
    finished = wait_for_job(client, accepted["job_id"])
    assert finished["status"] == "completed"
    folder = server.output_dir / finished["job_id"]
    (folder / XSS_NAME).write_text("x" * 5000)
    (folder / "clip.webm").write_bytes(os.urandom(3000))
    (folder / "tiny.txt").write_text("t")
    os.utime(folder / "tiny.txt", (time.time() - 3600, time.time() - 3600))
    return finished


def names_in(html: str) -> list[str]:
    return re.findall(r'class="entry-link[^"]*"(?: data-kind="\w+" data-name="[^"]*")? href="[^"]*">([^<]*)</a>', html)


def test_listing_sorting_stats_and_hidden_files(client: httpx.Client, job: dict, server: ServerProcess) -> None:
    root = client.get("/output")
    assert root.status_code == 200 and root.headers["content-type"].startswith("text/html")
    assert f"{job['job_id']}/" in names_in(root.text)
    assert "queue_state.json" not in root.text and ".hash_cache" not in root.text
    assert "a &lt;b&gt;bold&lt;/b&gt; cat" in root.text  # the job's prompt, escaped
    folder = f"/output/{job['job_id']}/"
    by_name = names_in(client.get(folder).text)
    assert by_name == sorted(by_name, key=str.lower) and "config.json" in by_name
    by_size = names_in(client.get(folder, params={"sort": "size", "order": "desc"}).text)
    sizes = {
        name: (server.output_dir / job["job_id"] / name.replace("&lt;", "<").replace("&gt;", ">")).stat().st_size
        for name in by_size
    }
    assert list(sizes.values()) == sorted(sizes.values(), reverse=True)
    by_date = names_in(client.get(folder, params={"sort": "date", "order": "asc"}).text)
    assert by_date[0] == "tiny.txt"
    page = client.get(folder).text
    assert "0 folders · 6 files" in page  # config.json, 2 images and the 3 files added here
    assert ".thumbs" not in names_in(page)
    assert client.get(folder, params={"sort": "colour"}).status_code == 400


def test_file_names_are_escaped(client: httpx.Client, job: dict) -> None:
    page = client.get(f"/output/{job['job_id']}/").text
    assert XSS_NAME not in page
    assert "&lt;img src=x onerror=window.__xss=1&gt;.txt" in page


@pytest.mark.parametrize(
    "path",
    [
        "/output/%2e%2e/%2e%2e/etc/passwd",
        "/output/..%2F..%2Fetc%2Fpasswd",
        "/output/%252e%252e/etc",
        "/output//etc/passwd",
        "/output/a%5C..%5Cb",
        "/thumb/%2e%2e/x.png",
        "/thumb//etc/x.png",
    ],
)
def test_traversal_is_refused(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 400, (path, response.text)
    assert "error" in response.json()


def test_symlink_out_of_the_output_folder(client: httpx.Client, server: ServerProcess, tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    Image.new("RGB", (8, 8)).save(secret)
    link = server.output_dir / "leak.png"
    link.unlink(missing_ok=True)
    os.symlink(secret, link)
    assert client.get("/output/leak.png").status_code == 400
    assert client.get("/thumb/leak.png").status_code == 400
    assert "leak.png" not in client.get("/output").text
    assert client.get("/output/queue_state.json").status_code == 404
    assert client.get("/output/nothing-here.png").status_code == 404


def test_ranges_and_revalidation(client: httpx.Client, job: dict, server: ServerProcess) -> None:
    url = f"/output/{job['outputs'][0]}"
    full = client.get(url)
    assert full.status_code == 200 and full.headers["accept-ranges"] == "bytes"
    data = full.content
    part = client.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == data[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
    assert client.get(url, headers={"Range": "bytes=-5"}).content == data[-5:]
    assert client.get(url, headers={"Range": f"bytes={len(data)}-"}).status_code == 416
    etag, modified = full.headers["etag"], full.headers["last-modified"]
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
    assert client.get(url, headers={"If-Modified-Since": modified}).status_code == 304
    video = client.get(f"/output/{job['job_id']}/clip.webm", headers={"Range": "bytes=0-99"})
    assert video.status_code == 206 and video.headers["content-type"] == "video/webm" and len(video.content) == 100


def test_thumbnails_are_cached_and_rebuilt(client: httpx.Client, job: dict, server: ServerProcess) -> None:
    image_path = server.output_dir / job["outputs"][0]
    thumb = client.get(f"/thumb/{job['outputs'][0]}")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size == (120, 120)
    cached = image_path.parent / ".thumbs" / (image_path.name + ".jpg")
    first_mtime = cached.stat().st_mtime_ns
    assert client.get(f"/thumb/{job['outputs'][0]}").content == thumb.content
    assert cached.stat().st_mtime_ns == first_mtime  # a cache hit does not rewrite it
    Image.new("RGB", (300, 100), (0, 255, 0)).save(image_path)
    rebuilt = client.get(f"/thumb/{job['outputs'][0]}")
    assert rebuilt.content != thumb.content
    assert Image.open(io.BytesIO(rebuilt.content)).getpixel((60, 60))[1] > 200  # green now
    svg = client.get(f"/thumb/{job['job_id']}/clip.webm")
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert client.get(f"/thumb/{job['job_id']}/config.json").status_code == 400
    assert client.get(f"/thumb/{job['job_id']}/missing.png").status_code == 404


@pytest.fixture
def driver() -> Iterator[Chrome]:
    with browser.chrome() as chrome:
        yield chrome


@pytest.mark.skipif(
    not browser.available() and not os.environ.get("CI"),
    reason="chromium / chromedriver not installed (.ci/run installs them)",
)
def test_browse_click_and_lightbox_in_chromium(job: dict, server: ServerProcess, driver: Chrome) -> None:
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    wait = WebDriverWait(driver, 15)
    driver.get(f"{server.url}/output")
    links = {el.text: el for el in driver.find_elements(By.CSS_SELECTOR, "a.entry-link")}
    links[f"{job['job_id']}/"].click()
    wait.until(EC.url_matches(rf"/{re.escape(job['job_id'])}/$"))
    stats = wait.until(EC.presence_of_element_located((By.ID, "stats")))
    assert stats.get_property("textContent").startswith("0 folders · 6 files")
    # thumbnails really load (120x120 JPEGs from /thumb)
    assert wait.until(
        lambda d: d.execute_script(
            "const t = document.querySelectorAll('td.thumb img');"
            "return t.length >= 2 && Array.from(t).every(i => i.complete && i.naturalWidth === 120)"
        )
    )
    names = [el.text for el in driver.find_elements(By.CSS_SELECTOR, "a.entry-link")]
    assert XSS_NAME in names and driver.execute_script("return window.__xss === undefined")
    # a real generated image
    wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, 'a.media[data-name="image_1.png"]'))).click()
    lightbox = driver.find_element(By.ID, "lightbox")
    wait.until(EC.visibility_of(lightbox))
    assert "open" in lightbox.get_attribute("class").split()
    shown = wait.until(
        lambda d: d.execute_script(
            "const i = document.getElementById('lightbox-img');"
            "return i.complete && i.naturalWidth ? [i.src, i.naturalWidth, i.naturalHeight] : null"
        )
    )
    assert shown[0].endswith("/image_1.png") and (shown[1], shown[2]) == (64, 48)
    assert driver.find_element(By.ID, "lightbox-caption").get_property("textContent") == "image_1.png"
    assert driver.save_screenshot(str(artifacts / "output-browser-lightbox.png"))
    ActionChains(driver).send_keys(Keys.ESCAPE).perform()
    wait.until(EC.invisibility_of_element(lightbox))
    assert "open" not in lightbox.get_attribute("class").split()
    # no console errors; chromium's own request for /favicon.ico (the page declares no icon) is a 404 by design
    favicon = f"{server.url}/favicon.ico "
    severe = [
        entry
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and not entry["message"].startswith(favicon)
    ]
    assert not severe, severe
