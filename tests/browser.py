"""Headless Debian chromium for the browser tests, driven by the selenium package through chromium-driver's
chromedriver. Both binaries come from PATH and are passed explicitly, so selenium-manager never runs (it would
try to download a browser or driver)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from selenium import webdriver as selenium_webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1200,900",
]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def available() -> bool:
    return bool(shutil.which("chromedriver") and chromium())


@contextmanager
def chrome() -> Iterator[selenium_webdriver.Chrome]:
    """A headless chromium session that keeps the browser console log (`driver.get_log("browser")`)."""
    options = selenium_webdriver.ChromeOptions()
    options.binary_location = chromium() or "chromium"
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=shutil.which("chromedriver") or "chromedriver")
    driver = selenium_webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()
