import os
from typing import Literal

import pydantic
import pytest

from core.config import FrozenModel, read_config, read_secret_file
from core.errors import ConfigError


class Security(FrozenModel):
    mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"


class Server(FrozenModel):
    endpoint: str
    security: Security = Security()


class Settings(FrozenModel):
    servers: list[Server]
    name: str = "x"


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_error_names_file_line_key_and_valid_options(tmp_path):
    path = write(tmp_path, "servers:\n  - endpoint: opc.tcp://a\n    security:\n      mode: Sing\n")
    with pytest.raises(ConfigError) as err:
        read_config(Settings, path)
    text = str(err.value)
    assert f"{path}:4: servers[0].security.mode" in text
    assert "'Sing'" in text and "SignAndEncrypt" in text


def test_unknown_key_lists_valid_keys(tmp_path):
    path = write(tmp_path, "servers:\n  - endpoint: a\n    endpont: b\n")
    with pytest.raises(ConfigError, match=r"c.yaml:3: servers\[0\].endpont: unknown key 'endpont'; valid keys here: endpoint, security"):
        read_config(Settings, path)


def test_syntax_error_has_a_line(tmp_path):
    path = write(tmp_path, "servers: [\n")
    with pytest.raises(ConfigError, match=r"c.yaml:2: not valid YAML"):
        read_config(Settings, path)


def test_env_interpolation_and_default(tmp_path, monkeypatch):
    monkeypatch.setenv("WL_HOST", "plc7")
    path = write(tmp_path, "servers:\n  - endpoint: opc.tcp://${WL_HOST}:${WL_PORT:-4840}\n")
    assert read_config(Settings, path).servers[0].endpoint == "opc.tcp://plc7:4840"


def test_missing_env_variable_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("WL_MISSING", raising=False)
    path = write(tmp_path, "servers:\n  - endpoint: ${WL_MISSING}\n")
    with pytest.raises(ConfigError, match=r"servers\[0\].endpoint: environment variable WL_MISSING is not set"):
        read_config(Settings, path)


def test_models_are_frozen(tmp_path):
    settings = read_config(Settings, write(tmp_path, "servers: []\n"), overrides={"name": "y"})
    assert settings.name == "y"
    with pytest.raises(pydantic.ValidationError):  # frozen instance
        settings.name = "z"


def test_secret_file_must_be_private(tmp_path):
    secret = tmp_path / "token"
    secret.write_text("s3cret\n")
    os.chmod(secret, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_secret_file(secret, "token")
    os.chmod(secret, 0o600)
    assert read_secret_file(secret) == "s3cret"
