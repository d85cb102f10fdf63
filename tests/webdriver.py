"""A minimal W3C WebDriver client over httpx, driving Debian's chromium through chromedriver (no extra
Python package needed)."""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
from typing import Any

import httpx

from tests.support import free_port

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1200,900"]


def available() -> bool:
    return bool(shutil.which("chromedriver") and (shutil.which("chromium") or shutil.which("chromium-browser")))


class Browser:
    def __init__(self) -> None:
        port = free_port()
        self.driver = subprocess.Popen([shutil.which("chromedriver") or "chromedriver", f"--port={port}"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if self.http.get("/status").json()["value"]["ready"]:
                    break
            except (httpx.HTTPError, ValueError, KeyError):
                time.sleep(0.1)
        binary = shutil.which("chromium") or shutil.which("chromium-browser")
        options = {"binary": binary, "args": CHROMIUM_ARGS}
        session = self._call("POST", "/session", {"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "goog:chromeOptions": options}}})
        self.session = f"/session/{session['sessionId']}"

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.http.request(method, path, json=body if body is not None else ({} if method == "POST" else None))
        value = response.json().get("value")
        if response.status_code >= 400:
            raise RuntimeError(f"webdriver {method} {path}: {value}")
        return value

    def get(self, url: str) -> None:
        self._call("POST", f"{self.session}/url", {"url": url})

    def find_all(self, css: str) -> list[str]:
        found = self._call("POST", f"{self.session}/elements", {"using": "css selector", "value": css})
        return [item[ELEMENT] for item in found]

    def find(self, css: str) -> str:
        return self._call("POST", f"{self.session}/element", {"using": "css selector", "value": css})[ELEMENT]

    def click(self, element: str) -> None:
        self._call("POST", f"{self.session}/element/{element}/click")

    def text(self, element: str) -> str:
        return self._call("GET", f"{self.session}/element/{element}/text")

    def script(self, source: str, *args: Any) -> Any:
        return self._call("POST", f"{self.session}/execute/sync", {"script": source, "args": list(args)})

    def wait_for(self, source: str, timeout: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if value := self.script(source):
                return value
            time.sleep(0.1)
        raise TimeoutError(f"browser condition not met: {source}")

    def screenshot(self) -> bytes:
        return base64.b64decode(self._call("GET", f"{self.session}/screenshot"))

    def quit(self) -> None:
        try:
            self._call("DELETE", self.session)
        finally:
            self.http.close()
            self.driver.terminate()
            self.driver.wait(timeout=10)
