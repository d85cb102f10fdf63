"""The systemd unit in contrib/ starts what the CLI really has, with the variables the settings really read, in the
folders platformdirs gives: a renamed flag, subcommand or variable breaks this test, not a user's service."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import platformdirs
import pytest

from core.settings import COMMAND_LINE, CONFIG_FILE, ENVIRONMENT_ONLY
from litestar_app.cli import parser
from runners.paths import APP_NAME

ROOT = Path(__file__).resolve().parents[2]
CONTRIB = ROOT / "contrib"
UNIT = CONTRIB / "sdcpp-restapi.service"
SYSTEM_DROP_IN = CONTRIB / "sdcpp-restapi-system.conf"
ENV_FILE = CONTRIB / "sdcpp-restapi.env"
SETTINGS_VARIABLES = {setting.variable for setting in (CONFIG_FILE, *COMMAND_LINE, *ENVIRONMENT_ONLY)}
VARIABLE = re.compile(r"\b(SDCPP_RESTAPI_[A-Z_]+)\b")


def directives(path: Path) -> dict[str, list[str]]:
    """key -> values, in order (systemd keys repeat: an empty ExecStart= resets the list)."""
    found: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        found.setdefault(key.strip(), []).append(value.strip())
    return found


def exec_starts() -> list[str]:
    starts = [value for value in directives(UNIT)["ExecStart"] if value]
    return starts + [value for value in directives(SYSTEM_DROP_IN)["ExecStart"] if value]


@pytest.mark.parametrize("exec_start", exec_starts())
def test_exec_start_runs_a_real_cli_subcommand(exec_start: str) -> None:
    program, *arguments = shlex.split(exec_start)
    assert Path(program).name == "sdcpp-restapi"
    assert arguments[0] == "serve"
    parser().parse_args(arguments)  # the CLI accepts the unit's arguments as they are (SystemExit otherwise)


def test_the_unit_restarts_on_failure_and_reads_keys_from_an_environment_file() -> None:
    unit = directives(UNIT)
    assert unit["Restart"] == ["on-failure"]
    assert unit["EnvironmentFile"] == [f"-%E/{APP_NAME}/env"]
    assert unit["WantedBy"] == ["default.target"]
    assert f"{CONFIG_FILE.variable}=%E/{APP_NAME}/config.toml" in unit["Environment"]


def test_every_variable_named_is_one_the_settings_read() -> None:
    named = {name for path in (UNIT, SYSTEM_DROP_IN, ENV_FILE) for name in VARIABLE.findall(path.read_text())}
    assert named, "the unit names no variable"
    assert named <= SETTINGS_VARIABLES, named - SETTINGS_VARIABLES
    assert "SDCPP_RESTAPI_API_KEYS" in named


def test_the_folders_are_platformdirs_ones() -> None:
    """%E is $XDG_CONFIG_HOME for a user manager: the unit's config folder is platformdirs' user config folder;
    the data folder is left to the program, whose default is platformdirs' user data folder."""
    config = Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))
    assert config.name == APP_NAME and f"%E/{config.name}/" in UNIT.read_text()
    assert "SDCPP_RESTAPI_DATA_DIR" not in "".join(directives(UNIT).get("Environment", []))


def test_readme_lists_the_contrib_files() -> None:
    readme = (ROOT / "README.md").read_text()
    for path in (UNIT, SYSTEM_DROP_IN, ENV_FILE):
        assert f"contrib/{path.name}" in readme


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    program = shutil.which("sdcpp-restapi") or shutil.which("true")
    assert program is not None
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("%h/.local/bin/sdcpp-restapi", program))
    verified = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "Unknown" not in verified.stderr, verified.stderr
