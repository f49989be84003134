"""Config: the sample is valid, its commented values are the defaults, errors name file, line, key and options."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from collectors.opcua import config as cfgmod
from collectors.opcua.config import read_collector_config
from core.errors import ConfigError

SAMPLE = Path(__file__).resolve().parents[1] / "sample.yaml"
README = Path(__file__).resolve().parents[1] / "README.md"

SECTIONS = {
    "buffer": cfgmod.BufferConfig, "spool": cfgmod.SpoolConfig, "metrics": cfgmod.MetricsConfig,
    "security": cfgmod.SecurityConfig, "login": cfgmod.LoginConfig, "timeouts": cfgmod.TimeoutConfig,
}


def test_sample_is_valid(tmp_path):
    cfg = read_collector_config(SAMPLE)
    assert cfg.servers[0].groups[0].nodes[2].tags_from_nodes["material"].endswith("MaterialId")
    assert Path(cfg.spool.path).is_absolute() and cfg.spool.path.startswith(str(SAMPLE.parent))


def test_commented_values_are_the_defaults():
    """Each `# key: value` line under a section equals the model default (the sample is the documentation)."""
    section = None
    checked = 0
    for line in SAMPLE.read_text().splitlines():
        m = re.match(r"^\s*(\w+):\s*(#.*)?$", line)
        if m:
            section = m.group(1)
            continue
        m = re.match(r"^\s*# (\w+): (.+)$", line)
        if not m or (m.group(1) in ("username", "password_file", "password", "certificate", "private_key")
                     and section == "login"):
            continue
        key, text = m.group(1), m.group(2)
        model = SECTIONS.get(section)
        if model is None:
            model = {"servers": cfgmod.ServerConfig, "groups": cfgmod.GroupConfig, "nodes": cfgmod.NodeConfig,
                     "plant": cfgmod.ServerConfig}.get(section)
        fields = None
        for candidate in ([model] if model else []) + [cfgmod.CollectorConfig, cfgmod.ServerConfig,
                                                        cfgmod.GroupConfig, cfgmod.NodeConfig]:
            if key in candidate.model_fields:
                fields = candidate.model_fields
                break
        if fields is None:
            continue
        default = fields[key].get_default(call_default_factory=True)
        value = yaml.safe_load(text)
        if hasattr(default, "model_dump"):
            default = default.model_dump()
        assert value == default, f"sample.yaml: {key} under {section}: {value!r} != default {default!r}"
        checked += 1
    assert checked >= 25


def test_readme_embeds_sample():
    assert SAMPLE.read_text().strip() in README.read_text()


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


BASE = """servers:
  - name: a
    endpoint: opc.tcp://localhost:4840
    groups:
      - name: g
        nodes:
          - node_id: ns=2;s=x
"""


def test_error_names_file_line_key_and_options(tmp_path):
    p = write(tmp_path, BASE + "    security:\n      policy: Basic256Sha256\n      mode: Sing\n")
    with pytest.raises(ConfigError) as exc:
        read_collector_config(p)
    msg = str(exc.value)
    assert f"{p}:10: servers[0].security.mode" in msg and "SignAndEncrypt" in msg


def test_unknown_key_lists_valid_keys(tmp_path):
    p = write(tmp_path, BASE + "    sampling_ms: 5\n")
    with pytest.raises(ConfigError) as exc:
        read_collector_config(p)
    assert "unknown key 'sampling_ms'" in str(exc.value) and "poll_interval_ms" in str(exc.value)


def test_bad_node_id_and_policy_mode_mismatch(tmp_path):
    p = write(tmp_path, BASE.replace("ns=2;s=x", "Plant.x"))
    with pytest.raises(ConfigError, match="is not a NodeId"):
        read_collector_config(p)
    p = write(tmp_path, BASE + "    security: {policy: Basic256Sha256}\n")
    with pytest.raises(ConfigError, match="policy 'Basic256Sha256' with mode 'None'"):
        read_collector_config(p)


def test_env_interpolation_and_store_override(tmp_path, monkeypatch):
    monkeypatch.setenv("PLC_HOST", "10.0.0.7")
    p = write(tmp_path, BASE.replace("localhost", "${PLC_HOST}"))
    cfg = read_collector_config(p, {"store": "influx://db:8086?org=o&bucket=b"})
    assert cfg.servers[0].endpoint == "opc.tcp://10.0.0.7:4840" and cfg.store.startswith("influx://")
    assert read_collector_config(p).store == str(tmp_path / "wattline.db")


def test_password_file_must_be_private(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    secret.chmod(0o644)
    p = write(tmp_path, BASE + f"    login: {{mode: username, username: u, password_file: {secret}}}\n")
    cfg = read_collector_config(p)
    with pytest.raises(ConfigError, match="chmod 600"):
        cfg.servers[0].login.get_password()
    secret.chmod(0o600)
    assert cfg.servers[0].login.get_password() == "s3cret"


def test_percent_deadband_above_100_refused_with_its_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "servers:\n  - name: a\n    endpoint: opc.tcp://127.0.0.1:4840/\n    groups:\n      - name: g\n"
        "        deadband: {type: percent, value: 250}\n        nodes: [{node_id: 'ns=2;s=x'}]\n"
    )
    with pytest.raises(ConfigError) as err:
        read_collector_config(path)
    text = str(err.value)
    assert "deadband" in text and "0..100" in text and str(path) in text
