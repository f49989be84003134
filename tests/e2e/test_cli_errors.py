"""Bad input on the command line: one clear line, exit 2 for usage/config, 1 for runtime, never a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wattline", *args], capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_unknown_option(tmp_path):
    assert_one_line_error(run("series", "--bogus"), 2, "--bogus", "wattline series --help")


def test_missing_config_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    assert_one_line_error(run("demo", "--config", str(missing)), 2, str(missing), "not found")


def test_malformed_config_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("store: wattline.db\ndemo:\n  machines: [1\n")
    assert_one_line_error(run("demo", "--config", str(bad)), 2, str(bad), "not valid YAML")


def test_config_value_out_of_range_names_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("demo:\n  machines: 0\n")
    assert_one_line_error(run("demo", "--config", str(bad)), 2, f"{bad}:2", "demo.machines")


def test_unknown_config_key_lists_valid_keys(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dashbord:\n  port: 1\n")
    assert_one_line_error(run("series", "--config", str(bad)), 2, "dashbord", "valid keys here: store, demo, dashboard")


def test_dashboard_port_in_use(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run("demo", "--duration", "5", "--port", str(port), "--store", str(tmp_path / "x.db"))
    assert_one_line_error(result, 1, f"port {port}", "--port")


def test_series_of_missing_store(tmp_path):
    assert_one_line_error(run("series", "--store", str(tmp_path / "none.db")), 2, "does not exist", "--store")


def test_help_explains_every_option():
    result = run("demo", "--help")
    assert result.returncode == 0
    for option in ("--duration", "--machines", "--store", "--port", "--config"):
        assert option in result.stdout


def test_unreachable_opcua_endpoint():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert_one_line_error(run("discover", f"opc.tcp://127.0.0.1:{port}"), 1, f"opc.tcp://127.0.0.1:{port}", "is the server running")


@pytest.mark.parametrize(
    "command",
    ["demo", "series", "simulate serve", "simulate backfill", "collect", "check", "discover", "certs", "influx setup"],
)
def test_every_command_takes_a_config_file(command):
    result = run(*command.split(), "--help")
    assert result.returncode == 0, result.stderr
    assert "--config" in result.stdout


def test_backfill_config_file_with_unknown_key(tmp_path):
    bad = tmp_path / "backfill.yaml"
    bad.write_text("days: 1\nstor: x.db\n")
    assert_one_line_error(run("simulate", "backfill", "--config", str(bad)), 2, f"{bad}:2", "stor", "valid keys here")
