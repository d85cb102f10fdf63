from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from core.models.types import MODEL_TYPES
from core.settings import API_KEYS, COMMAND_LINE, CONFIG_FILE, DATA_DIR, ENVIRONMENT_ONLY, SettingsError, load_settings
from litestar_app.cli import parser
from runners.paths import data_dir


def test_defaults_live_under_the_user_data_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SDCPP_RESTAPI_DATA_DIR", str(tmp_path))
    settings = load_settings(environ={})
    assert (settings.host, settings.port, settings.ws_port) == ("127.0.0.1", 8080, 8081)
    assert settings.models_root() == tmp_path / "models"
    assert settings.output_root() == tmp_path / "output"
    folders = settings.model_folders()
    assert folders["checkpoints"] == tmp_path / "models" / "checkpoints"
    assert folders["taesd"] == tmp_path / "models" / "taesd"
    assert settings.selected_backend().sd_cli == str(tmp_path / "backends" / "cpu" / "sd-cli")


def test_layers_toml_then_environment_then_flags(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        'port = 9000\nhost = "0.0.0.0"\nws_port = 9001\n[paths]\nloras = "/srv/loras"\n'
        '[backends.cuda]\nsd_cli = "/opt/cuda/sd-cli"\nsd_server = "/opt/cuda/sd-server"\n'
    )
    env = {"SDCPP_RESTAPI_PORT": "9100", "SDCPP_RESTAPI_BACKEND": "cuda"}
    settings = load_settings(config, environ=env, overrides={"ws_port": 9200, "host": None})
    assert settings.host == "0.0.0.0"  # from TOML: a flag given as None does not override
    assert settings.port == 9100  # environment beats TOML
    assert settings.ws_port == 9200  # flag beats everything
    assert settings.model_folder("loras") == Path("/srv/loras")
    assert settings.selected_backend().sd_cli == "/opt/cuda/sd-cli"
    assert (
        load_settings(config, environ=env, overrides={"sd_cli": "/x/sd-cli"}).selected_backend().sd_cli == "/x/sd-cli"
    )


def test_config_file_from_environment(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("port = 7000\n")
    assert load_settings(environ={"SDCPP_RESTAPI_CONFIG": str(config)}).port == 7000


@pytest.mark.parametrize(
    ("toml", "env", "fragment"),
    [
        ("port = [", {}, "not valid TOML"),
        ("port = 'eighty'", {}, "invalid setting"),
        ("bogus = 1", {}, "invalid setting"),
        ("", {"SDCPP_RESTAPI_PORT": "eighty"}, "invalid setting"),
    ],
)
def test_bad_settings_are_reported(tmp_path: Path, toml: str, env: dict[str, str], fragment: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(toml)
    with pytest.raises(SettingsError, match=fragment):
        load_settings(config, environ=env)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read config file"):
        load_settings(tmp_path / "absent.toml", environ={})


# ------------------------------------------------------------------- one declaration: flags, variables, README

README = Path(__file__).resolve().parents[2] / "README.md"


def _configuration_section() -> str:
    text = README.read_text()
    start = text.index("\n## Configuration\n")
    return text[start : text.index("\n## ", start + 1)]


def _shown_default(value: object) -> str:
    return "" if value in (None, "", False) else f"`{value}`"


def test_the_readme_table_lists_every_variable_and_flag_as_declared() -> None:
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in _configuration_section().splitlines()
        if line.startswith("| `SDCPP_RESTAPI_")
    ]
    expected = [
        [
            f"`{setting.variable}`",
            f"`{setting.flag}`" if setting.flag else "",
            _shown_default(setting.default),
            setting.description,
        ]
        for setting in (CONFIG_FILE, *COMMAND_LINE, *ENVIRONMENT_ONLY)
    ]
    assert rows == expected


def test_the_readme_names_every_model_folder() -> None:
    section = _configuration_section()
    listed = section[section.index("one sub-folder per model type: `") :].split("`")[1]
    assert sorted(listed.replace("\n", " ").split()) == sorted(f"{kind.folder}/" for kind in MODEL_TYPES)


def test_serve_flags_are_generated_from_the_declaration() -> None:
    commands = next(action for action in parser()._actions if isinstance(action, argparse._SubParsersAction))
    serve = commands.choices["serve"]
    flags = {action.option_strings[0]: action for action in serve._actions if action.option_strings[0] != "-h"}
    assert list(flags) == [CONFIG_FILE.flag, *(setting.flag for setting in COMMAND_LINE if setting.flag)]
    for setting in COMMAND_LINE:
        if setting.flag is None:  # a secret: no flag, its variable is checked below
            continue
        action = flags[setting.flag]
        assert action.dest == setting.name and setting.description in (action.help or "")
        assert setting.variable in (action.help or "")
    # The flags of before the declaration, unchanged.
    assert set(flags) == {
        "--config",
        "--host",
        "--port",
        "--ws-port",
        "--models-dir",
        "--output-dir",
        "--backend",
        "--sd-cli",
        "--sd-server",
        "--sd-worker",
        "--log-level",
        "--no-auth",
        "--host-name",  # the hosts sharing a PostgreSQL store (issue 21)
        "--heartbeat-s",
        "--no-workers",
        "--state-dir",
    }
    args = parser().parse_args(["serve", "--port", "9000", "--no-auth", "--log-level", "debug", "--ws-port", "0"])
    assert (args.port, args.no_auth, args.log_level, args.ws_port, args.host) == (9000, True, "debug", 0, None)
    with pytest.raises(SystemExit):
        parser().parse_args(["serve", "--log-level", "loud"])


def test_every_declared_variable_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    samples: dict[type, tuple[str, object]] = {
        str: ("x", "x"),
        int: ("7", 7),
        float: ("1.5", 1.5),
        bool: ("true", True),
    }
    environ: dict[str, str] = {}
    wanted: dict[str, object] = {}
    for setting in COMMAND_LINE:
        text, value = (setting.choices[-1], setting.choices[-1]) if setting.choices else samples[setting.kind]
        environ[setting.variable], wanted[setting.name] = text, value
    settings = load_settings(environ={**environ, API_KEYS.variable: "k1, k2"})
    assert {name: getattr(settings, name) for name in wanted} == wanted
    assert settings.auth.api_keys == ["k1", "k2"]
    monkeypatch.setenv(DATA_DIR.variable, str(tmp_path))
    assert data_dir() == tmp_path  # the variable runners.paths reads is the documented one
    config = tmp_path / "c.toml"
    config.write_text("port = 7001\n")
    assert load_settings(environ={CONFIG_FILE.variable: str(config)}).port == 7001


def test_the_store_url_comes_from_the_environment_and_must_name_postgresql(tmp_path: Path) -> None:
    assert load_settings(environ={}).store.url == ""
    url = "postgresql://sdcpp:secret@db.lan/sdcpp"
    assert load_settings(environ={"SDCPP_RESTAPI_STORE_URL": url}).store.url == url
    config = tmp_path / "config.toml"
    config.write_text('[store]\nurl = "mysql://db.lan/sdcpp"\n')
    with pytest.raises(SettingsError, match=r"store\.url"):
        load_settings(config, environ={})
