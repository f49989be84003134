"""``wattline serve``: supervised child processes restarted after SIGKILL, stopped on SIGTERM, config errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.errors import ConfigError
from tests.support import wait_for
from wattline.serve_config import check_wattline_args, read_serve_config

REPO = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose (its parent has not reaped it yet).
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _status(path: Path) -> dict:
    return json.loads(path.read_text())


def _service(doc: dict, name: str) -> dict:
    return next(s for s in doc["services"] if s["name"] == name)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "serve.yaml"
    path.write_text(text)
    return path


SERVE_YAML = """\
store: plant.db
grace_s: 15
restart: {min_s: 0.2, max_s: 2}
analytics: {enabled: false}
dashboard: {enabled: false}
services:
  - name: sim
    args: [simulate, serve, --port, "0", --machines, "2"]
  - name: listing
    args: [series, --json]
    every_s: 1
"""


def test_killed_child_comes_back_and_sigterm_stops_everything(tmp_path):
    config = _write(tmp_path, SERVE_YAML.replace("[series, --json]", f"[series, --json, --store, {tmp_path / 'plant.db'}]"))
    status_file = tmp_path / "wattline-serve-status.json"
    proc = subprocess.Popen([sys.executable, "-m", "wattline", "serve", "--config", str(config)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = wait_for(lambda: _service(_status(status_file), "sim")["pid"], 60, "the simulator to start")
        assert _alive(first)
        # The scheduled service runs again and again, and succeeds (the store was created before it).
        listing = wait_for(lambda: (s := _service(_status(status_file), "listing"))["runs"] >= 2 and s, 60,
                           "two scheduled runs")
        assert listing["failed_runs"] == 0, listing

        for n in (1, 2):
            pid = _service(_status(status_file), "sim")["pid"]
            os.kill(pid, signal.SIGKILL)
            back = wait_for(lambda pid=pid: (s := _service(_status(status_file), "sim"))["pid"] not in (None, pid) and s, 60,
                            f"the simulator to come back after kill -9 number {n}")
            assert back["restarts"] == n
            assert back["last_exit_code"] == -signal.SIGKILL
            assert not _alive(pid)
        children = [s["pid"] for s in _status(status_file)["services"] if s["pid"]]

        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15 + 10)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read()
    assert took < 15, f"stopping took {took:.1f} s, more than the grace period"
    for pid in children:
        wait_for(lambda pid=pid: not _alive(pid), 10, f"child {pid} to be gone")
    doc = _status(status_file)
    assert doc["state"] == "stopped"
    assert all(s["pid"] is None and s["state"] == "stopped" for s in doc["services"])
    out = subprocess.run([sys.executable, "-m", "wattline", "serve", "status", "--config", str(config)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "not running" in out.stderr
    assert "sim" in out.stdout and "stopped" in out.stdout


@pytest.mark.parametrize("text, expected", [
    ("dashbord: {enabled: false}\n", ["serve.yaml:1", "dashbord", "valid keys"]),
    ("grace_s: -1\n", ["serve.yaml:1", "grace_s"]),
    ("restart:\n  min_s: 5\n  max_s: 1\n", ["serve.yaml:", "restart", "max_s"]),
    ("analytics: {enabled: false}\ndashboard: {enabled: false}\nservices:\n  - name: x\n    args: [simulate, srve]\n",
     ["serve.yaml:5", "services[0].args", "'srve'", "backfill, serve"]),
    ("analytics: {enabled: false}\ndashboard: {enabled: false}\nservices:\n  - name: x\n    args: [series, --jsn]\n",
     ["serve.yaml:5", "--jsn", "--json"]),
    ("analytics: {enabled: false}\ndashboard: {enabled: false}\ncollectors:\n  - name: hall3\n    config: nowhere.yaml\n",
     ["serve.yaml:5", "collectors[0].config", "nowhere.yaml does not exist"]),
    ("analytics: {enabled: false}\ndashboard: {users: none.json}\n", ["serve.yaml:2", "dashboard.users", "wattline users add"]),
    (("analytics: {enabled: false}\ndashboard: {enabled: false}\nservices:\n  - {name: a, args: [series]}\n"
      "  - {name: a, args: [series]}\n"), ["serve.yaml", "'a' is used twice"]),
    ("dashboard: {enabled: false}\nanalytics:\n  follow:\n    enabled: true\n    every: 5x\n",
     ["serve.yaml:5", "analytics.follow.every", "'5x' is not a duration", "5m, 90s or 1h"]),
    ("dashboard: {enabled: false}\nanalytics:\n  follow: {enabled: true, window: 7m}\n",
     ["serve.yaml:3", "analytics.follow.window", "does not divide a day", "15m"]),
    ("dashboard: {enabled: false}\nanalytics:\n  follow: {enabled: true, evry: 1m}\n",
     ["serve.yaml:3", "evry", "valid keys"]),
])
def test_bad_config_names_file_line_and_key(tmp_path, text, expected):
    with pytest.raises(ConfigError) as err:
        read_serve_config(_write(tmp_path, text))
    for part in expected:
        assert part in str(err.value), str(err.value)


def test_bad_config_exits_2_with_one_line(tmp_path):
    config = _write(tmp_path, "grace_s: soon\n")
    out = subprocess.run([sys.executable, "-m", "wattline", "serve", "--config", str(config)], capture_output=True,
                         text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.startswith("wattline: error: ") and "grace_s" in out.stderr and "Traceback" not in out.stderr


def test_wattline_args_check():
    assert check_wattline_args(["collect", "--config", "x.yaml", "--store", "a.db"]) is None
    assert check_wattline_args(["-v", "dashboard", "--workers", "2"]) is None
    assert "needs a sub-command" in check_wattline_args(["simulate"])
    assert "no command 'nope'" in check_wattline_args(["nope"])


def test_services_from_config_and_relative_paths(tmp_path):
    (tmp_path / "c.yaml").write_text("x: 1\n")
    (tmp_path / "users.json").write_text("{}")
    cfg = read_serve_config(_write(tmp_path, "store: data/w.db\ncollectors:\n  - {name: hall3, config: c.yaml}\n"
                                             "dashboard: {users: users.json, port: 8123}\n"
                                             "analytics: {every_s: 600, plant: plant.yaml}\n"))
    from wattline.cli_serve import build_services

    services = {s.name: s for s in build_services(cfg)}
    assert set(services) == {"collector-hall3", "analytics", "dashboard"}
    store = str(tmp_path / "data" / "w.db")
    assert services["collector-hall3"].args == ["collect", "--config", str(tmp_path / "c.yaml"), "--store", store]
    assert services["analytics"].every_s == 600 and str(tmp_path / "plant.yaml") in services["analytics"].args
    assert "8123" in services["dashboard"].args
    for svc in services.values():
        assert check_wattline_args(svc.args) is None, svc.args


@pytest.mark.parametrize("follow, every, window", [
    ("true", "5m", "15m"),  # the shorthand: the defaults of 'analyze --follow'
    ("{enabled: true, every: 90s, window: 1m}", "90s", "1m"),
])
def test_follower_interval_and_window_from_config(tmp_path, follow, every, window):
    cfg = read_serve_config(_write(tmp_path, f"dashboard: {{enabled: false}}\nanalytics: {{follow: {follow}}}\n"))
    from wattline.cli_serve import build_services

    args = next(s for s in build_services(cfg) if s.name == "analytics-follow").args
    assert args[args.index("--every") + 1] == every and args[args.index("--window") + 1] == window
    assert check_wattline_args(args) is None, args
