"""Deployment files are checked, not just written: compose, systemd units, Grafana provisioning.

Every ``wattline`` command they run must exist with those options (introspected from the command line itself), the
configs they mount must validate, the units must carry the hardening and pass ``systemd-analyze verify``, and the
Grafana panels must query the buckets, rollup fields and measurements Wattline writes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from core.model import MEASUREMENTS
from core.storage.influx_flux import ROLLUP_PARTS, ROLLUP_SUFFIX, rollup_bucket
from core.storage.influx_settings import InfluxSettings
from tests.support import unavailable
from wattline.serve_config import check_wattline_args, read_serve_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
HARDENING = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
             "User": "wattline"}
DATA_DIRS = {"/var/lib/wattline", "/var/backups/wattline"}


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def _wattline_services(compose: dict) -> dict[str, list[str]]:
    return {name: svc["command"] for name, svc in compose["services"].items()
            if svc.get("image", "").startswith("wattline")}


def test_compose_services_images_and_commands():
    compose = _compose()
    services = compose["services"]
    assert services["influxdb"]["image"].startswith("influxdb:2.7")
    assert services["postgres"]["image"].startswith("postgres:")
    commands = _wattline_services(compose)
    assert {"collector", "analytics", "dashboard", "influxdb-setup"} <= set(commands)
    assert commands["collector"][0] == "collect" and commands["dashboard"][0] == "dashboard"
    assert "--workers" in commands["dashboard"]  # gunicorn workers, not Dash's development server
    assert "--debug" not in commands["dashboard"]
    for name, command in commands.items():
        assert check_wattline_args(command) is None, (name, check_wattline_args(command))
        for i, arg in enumerate(command):
            if arg == "--store":
                settings = InfluxSettings.from_url(command[i + 1])  # a valid store URL, token from a file
                assert settings.token_file and str(settings.token_file).startswith("/run/secrets/")
    # Secrets are files, never values in the compose file.
    text = (DEPLOY / "compose.yaml").read_text()
    assert not re.search(r"(PASSWORD|TOKEN):\s*\S", text), "a password or token is written in compose.yaml"
    for name, secret in compose["secrets"].items():
        assert secret["file"].startswith("./secrets/"), name
    for svc in services.values():
        for secret in svc.get("secrets", []):
            assert secret in compose["secrets"]


def test_compose_mounted_configs_validate():
    from collectors.opcua.config import read_collector_config

    compose = _compose()
    mounts = {m.split(":")[1]: DEPLOY / m.split(":")[0] for m in compose["x-wattline"]["volumes"] if m.startswith("./")}
    assert mounts == {"/etc/wattline": DEPLOY / "compose"}
    commands = _wattline_services(compose)
    collector_cfg = DEPLOY / "compose" / Path(commands["collector"][commands["collector"].index("--config") + 1]).name
    cfg = read_collector_config(collector_cfg)
    assert cfg.servers and all(g.nodes for s in cfg.servers for g in s.groups)
    worker = DEPLOY / "compose" / Path(commands["analytics"][commands["analytics"].index("--config") + 1]).name
    serve = read_serve_config(worker, check_files=False)
    assert serve.analytics.enabled and serve.orders.enabled and not serve.dashboard.enabled
    assert serve.orders.db.startswith("postgresql+psycopg://") and "passfile=" in serve.orders.db


def _unit(path: Path) -> dict[str, list[str]]:
    """key -> values of a unit file (keys may repeat)."""
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.mark.parametrize("path", UNITS, ids=[p.name for p in UNITS])
def test_systemd_unit_hardening_and_command(path):
    unit = _unit(path)
    for key, value in HARDENING.items():
        assert unit.get(key) == [value], f"{path.name}: {key}={unit.get(key)}, want {value}"
    writable = {p for v in unit["ReadWritePaths"] for p in v.split()}
    assert writable and writable <= DATA_DIRS, f"{path.name}: writable {writable}"
    assert unit["CapabilityBoundingSet"] == [""]
    exec_start = unit["ExecStart"][0].split()
    assert exec_start[0] == "/opt/wattline/bin/wattline"
    args = [a.replace("%i", "hall3") for a in exec_start[1:]]
    assert check_wattline_args(args) is None, check_wattline_args(args)


def test_systemd_units_pass_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        unavailable("systemd-analyze is not installed (apt-get install systemd)")  # skips locally, fails in CI
    wattline = Path(sys.executable).with_name("wattline")
    names = []
    for path in UNITS:
        # The one change: ExecStart must name an executable that exists on this machine.
        text = path.read_text().replace("/opt/wattline/bin/wattline", str(wattline))
        name = path.name.replace("@.service", "@hall3.service")
        (tmp_path / name).write_text(text)
        names.append(str(tmp_path / name))
    out = subprocess.run([analyze, "verify", *names], capture_output=True, text=True, timeout=120,
                         env={"SYSTEMD_LOG_LEVEL": "notice", "PATH": "/usr/bin:/bin"})
    problems = [line for line in (out.stdout + out.stderr).splitlines() if str(tmp_path) in line or ".service" in line]
    assert out.returncode == 0 and not problems, out.stdout + out.stderr


def _queries() -> list[tuple[str, str]]:
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "wattline-energy.json").read_text())
    out = [(p["title"], t["query"]) for p in dash["panels"] for t in p["targets"]]
    out += [(v["name"], v["query"]) for v in dash["templating"]["list"]]
    return out


def test_grafana_provisioning():
    ds = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "wattline.yaml").read_text())
    (source,) = ds["datasources"]
    assert source["type"] == "influxdb" and source["jsonData"]["version"] == "Flux"
    assert source["secureJsonData"]["token"].startswith("$__file{"), "the token must come from a file"
    bucket = source["jsonData"]["defaultBucket"]
    providers = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "wattline.yaml").read_text())
    compose = _compose()
    mounted = {m.split(":")[1] for m in compose["services"]["grafana"]["volumes"]}
    assert providers["providers"][0]["options"]["path"] in mounted
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "wattline-energy.json").read_text())
    assert all(p["datasource"]["uid"] == source["uid"] for p in dash["panels"])

    buckets = {bucket} | {rollup_bucket(bucket, r) for r in ROLLUP_SUFFIX}
    queries = _queries()
    assert len(queries) >= 5
    used_rollups = set()
    for title, query in queries:
        for b in re.findall(r'bucket: "([^"]+)"', query):
            assert b in buckets, f"{title}: bucket {b!r} is not one Wattline writes ({sorted(buckets)})"
            used_rollups.add(b)
        measurement = re.search(r'r\._measurement == "([^"]+)"', query)
        field = re.search(r'r\._field == "([^"]+)"', query)
        if measurement is None:
            continue
        m, f = measurement.group(1), field.group(1)
        if m == "wattline_findings":
            from core.storage.results import FINDING_NUMBERS

            assert f in ("excess_kwh", *FINDING_NUMBERS), title  # core.storage.results_influx layout
            continue
        assert m in MEASUREMENTS, f"{title}: unknown measurement {m}"
        base, _, part = f.partition("__")
        assert base in [s.name for s in MEASUREMENTS[m].fields], f"{title}: {m} has no field {base}"
        in_rollup = re.search(r'bucket: "[^"]+_(1m|15m|1h)"', query) is not None
        assert (part in ROLLUP_PARTS) == in_rollup, f"{title}: field {f} does not match its bucket"
    assert len(used_rollups) >= 3  # raw, and rollups at more than one level
