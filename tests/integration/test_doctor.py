"""`sdcpp-restapi doctor` as a user runs it: the real CLI in a subprocess, on a good set-up (the tiny models, the
built CPU backend, free ports, a reachable Ollama) and on broken ones, each named with its fix."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from core.doctor import CHECKS
from tests.fake_ollama import FakeOllama
from tests.support import REPO, ServerProcess, free_port, server_fixture

pytestmark = pytest.mark.integration
STORE = ".sdcpp-restapi.sqlite3"

server = server_fixture("tiny_models_dir")


class Report(msgspec.Struct):
    code: int
    text: str
    verdicts: dict[str, str]  # check name -> ok / note / WARNING / PROBLEM

    def line(self, name: str) -> str:
        """The check's line and, when there is one, its fix line."""
        lines = self.text.splitlines()
        index = next(i for i, line in enumerate(lines) if line[9:].startswith(name + " "))
        following = lines[index + 1] if index + 1 < len(lines) else ""
        return lines[index] + ("\n" + following if following.lstrip().startswith("fix:") else "")


@pytest.fixture(scope="module")
def ollama() -> Iterator[FakeOllama]:
    with FakeOllama() as fake:
        yield fake


@pytest.fixture
def config(tmp_path: Path, ollama: FakeOllama) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[ollama]\nbase_url = "{ollama.url}"\n[assistant]\nbase_url = "{ollama.url}"\n')
    return path


def doctor(config: Path, models: Path, output: Path, *extra: str, port: int = 0) -> Report:
    argv = [sys.executable, "-m", "litestar_app", "doctor", "--config", str(config), "--models-dir", str(models)]
    argv += ["--output-dir", str(output), "--port", str(port or free_port()), "--ws-port", str(free_port()), *extra]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    names = [check.name for check in CHECKS]
    verdicts = {}
    for line in done.stdout.splitlines():
        label, rest = line[:9].strip(), line[9:]
        name = next((n for n in names if rest.startswith(n + " ")), None)
        if label and name:
            verdicts[name] = label
    return Report(done.returncode, done.stdout + done.stderr, verdicts)


def test_a_good_set_up_is_all_ok(config: Path, tiny_models_dir: Path, tmp_path: Path) -> None:
    report = doctor(config, tiny_models_dir, tmp_path / "output")
    assert report.code == 0, report.text
    assert report.verdicts == {check.name: "ok" for check in CHECKS}, report.text
    assert "0 problem(s), 0 warning(s): all is well" in report.text
    assert not (tmp_path / "output").exists()  # doctor looks, it does not create


def test_a_missing_sd_cli_is_a_problem_with_its_fix(config: Path, tiny_models_dir: Path, tmp_path: Path) -> None:
    report = doctor(config, tiny_models_dir, tmp_path / "output", "--sd-cli", str(tmp_path / "no" / "sd-cli"))
    assert report.code == 1, report.text
    assert report.verdicts["sd-cli"] == "PROBLEM"
    assert f"sd-cli not found at {tmp_path / 'no' / 'sd-cli'}" in report.line("sd-cli")
    assert "fix: build it with `sdcpp-restapi build-backend cpu`" in report.line("sd-cli")
    assert "--sd-cli PATH" in report.line("sd-cli")


def test_an_output_folder_that_cannot_be_made_is_a_problem(config: Path, tiny_models_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    report = doctor(config, tiny_models_dir, blocker / "output")
    assert report.code == 1, report.text
    assert report.verdicts["output folder"] == "PROBLEM"
    assert f"{blocker} is a file, not a folder" in report.line("output folder")
    assert "fix: point --output-dir at a folder this user can write" in report.line("output folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into any folder whatever its mode")
def test_a_read_only_output_folder_is_a_problem(config: Path, tiny_models_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "output"
    output.mkdir(mode=0o500)
    try:
        report = doctor(config, tiny_models_dir, output)
    finally:
        output.chmod(0o700)
    assert report.code == 1, report.text
    assert f"output folder {output} is not writable" in report.line("output folder")
    assert "fix: chown" in report.line("output folder")


def test_a_port_in_use_is_a_problem(config: Path, tiny_models_dir: Path, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        report = doctor(config, tiny_models_dir, tmp_path / "output", port=port)
    assert report.code == 1, report.text
    assert report.verdicts["ports"] == "PROBLEM"
    assert f"cannot listen on 127.0.0.1:{port} (--port)" in report.line("ports")
    assert "or choose another --port" in report.line("ports")


def test_a_store_of_a_newer_version_is_a_problem(config: Path, tiny_models_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "output"
    output.mkdir()
    with sqlite3.connect(output / STORE) as db:
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        db.execute("INSERT INTO schema_version (version) VALUES (999)")
    db.close()
    before = (output / STORE).read_bytes()
    report = doctor(config, tiny_models_dir, output)
    assert report.code == 1, report.text
    assert report.verdicts["store"] == "PROBLEM"
    assert "written by a newer version of sdcpp-restapi (schema 999" in report.line("store")
    assert "fix: run the sdcpp-restapi version that wrote it, or move" in report.line("store")
    assert (output / STORE).read_bytes() == before  # read-only: untouched


def test_a_running_server_is_named_not_a_problem(config: Path, tiny_models_dir: Path, server: ServerProcess) -> None:
    report = doctor(config, tiny_models_dir, server.output_dir, port=server.port)
    assert report.code == 0, report.text
    assert report.verdicts["store"] == report.verdicts["ports"] == "note"
    assert f"a server is running on this output folder (pid {server.process.pid})" in report.line("store")
    assert f"127.0.0.1:{server.port} (--port): an sdcpp-restapi server is already running there" in report.line("ports")


def test_ollama_settings_changed_through_the_api_win(
    config: Path, tiny_models_dir: Path, server: ServerProcess
) -> None:
    """PUT /ollama/settings is kept in the store and wins over the config: doctor reads it (read-only, while the
    server runs)."""
    for feature in ("ollama", "assistant"):
        assert httpx.put(f"{server.url}/{feature}/settings", json={"enabled": False}).status_code == 200
    report = doctor(config, tiny_models_dir, server.output_dir, port=server.port)
    assert report.verdicts["ollama"] == "note", report.text
    assert "prompt help and the assistant are disabled" in report.line("ollama")


def test_no_key_beyond_loopback_and_an_unreachable_ollama(tiny_models_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[ollama]\nbase_url = "http://127.0.0.1:9"\n[assistant]\nenabled = false\n')
    report = doctor(config, tiny_models_dir, tmp_path / "output", "--host", "0.0.0.0")
    assert report.code == 1, report.text
    assert report.verdicts["keys"] == "PROBLEM"
    assert "fix: set a key: SDCPP_RESTAPI_API_KEYS=KEY" in report.line("keys")
    assert report.verdicts["ollama"] == "WARNING"  # optional: printed with its fix, not a failure on its own
    assert "Ollama not reachable at [ollama] http://127.0.0.1:9" in report.line("ollama")
    assert "fix: start Ollama" in report.line("ollama")


def test_the_webhook_secret_and_urls(config: Path, tiny_models_dir: Path, server: ServerProcess) -> None:
    # The running server generated a secret and keeps it in the store: doctor says so.
    report = doctor(config, tiny_models_dir, server.output_dir, port=server.port)
    assert report.verdicts["webhooks"] == "ok", report.text
    assert "secret generated and kept in the store: whsec_" in report.line("webhooks")  # what receivers need
    # A malformed secret and a URL the address rules refuse are problems, each with its fix.
    config.write_text(config.read_text() + '[webhooks]\nsecret = "not-a-secret"\n')
    report = doctor(config, tiny_models_dir, server.output_dir, port=server.port)
    assert report.code == 1 and report.verdicts["webhooks"] == "PROBLEM"
    assert "[webhooks] secret must start with 'whsec_'" in report.line("webhooks")
    config.write_text(
        config.read_text().replace('"not-a-secret"', '"whsec_' + "A" * 32 + '"\nurls = ["http://10.9.8.7/h"]')
    )
    report = doctor(config, tiny_models_dir, server.output_dir, port=server.port)
    assert report.code == 1 and report.verdicts["webhooks"] == "PROBLEM"
    line = report.line("webhooks")
    assert "http://10.9.8.7/h: [webhooks] urls: 10.9.8.7 is 10.9.8.7, a loopback, private" in line
    assert "fix: use a public http(s) URL" in line
