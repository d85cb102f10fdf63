from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import SettingsError, load_settings


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
    assert load_settings(config, environ=env, overrides={"sd_cli": "/x/sd-cli"}).selected_backend().sd_cli == "/x/sd-cli"


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
