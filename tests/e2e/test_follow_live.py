"""A live simulated plant, end to end: ``wattline simulate serve --speed 60`` (a scenario whose waste starts at a known
plant time) -> ``wattline collect`` over OPC UA -> store <- ``wattline analyze --follow``; the machine's first finding
must appear within 10 plant minutes of the waste starting (at speed 60: 10 s).

The history the models are fitted on is backfilled first (as ``wattline demo`` does) with the same plant, seed and
scenario, so the live data continue it. The follower is started and has fitted its models before the server starts,
and the waste starts 15 plant minutes after the server does. The latency is measured in plant time: the newest data
in the store when the finding is first seen, minus the waste's start.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from core.storage import open_store
from core.storage.results import results_for
from tests.e2e.conftest import free_port
from tests.support import wait_for

pytestmark = [pytest.mark.integration]

MACHINE = "north/l1/cnc-01"
SPEED = 60
#: The waste starts this long (plant time) after the server starts [s].
LEAD_S = 15 * 60
#: Extra load while the waste lasts [kW] (cnc-01 draws about 2-25 kW).
EXTRA_KW = 20.0
LIMIT_S = 10 * 60


def _scenario(path: Path, start: dt.datetime) -> Path:
    off = {"enabled": False}
    path.write_text(yaml.safe_dump({
        "name": "planned-live", "avoidable_fraction": None, "idle_running": off, "off_shift_load": off,
        "excess_specific_energy": off, "air_leak": off, "peak_demand": off, "meter_faults": off,
        "planned": [{"machines": ["cnc-01"], "start": start.isoformat(), "hours": 2, "extra_kw": EXTRA_KW}]}))
    return path


def _wattline(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "wattline", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


class _Process:
    """A ``wattline`` command running in the background, its output collected line by line."""

    def __init__(self, *args: str, cwd: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "wattline", *args], cwd=cwd, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def saw(self, text: str) -> bool:
        if self.proc.poll() is not None and not any(text in line for line in self.lines):
            raise AssertionError(f"the process ended ({self.proc.returncode}): " + "\n".join(self.lines[-30:]))
        return any(text in line for line in self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._reader.join(5)


def _newest_plant_time(db: Path) -> int:
    with open_store(str(db)) as store:
        return max(s.last_ns for s in store.series("electrical") if s.key.tag_dict.get("machine") == "cnc-01")


def _first_finding(db: Path):
    with open_store(str(db)) as store, results_for(store) as results:
        found = [e for e in results.query_findings(run="follow-live", kinds=["anomaly"]) if e.machine == MACHINE]
    return found[0] if found else None


def test_first_finding_within_ten_plant_minutes_of_the_waste(tmp_path):
    db = tmp_path / "plant.db"
    # History: 9 days of the same plant and scenario (no waste in it), at the collector's 1-min spacing.
    placeholder = _scenario(tmp_path / "scenario.yaml", dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    _wattline("simulate", "backfill", "--days", "9", "--machines", "3", "--store", str(db), "--scenario",
              str(placeholder), "--resolution", "60", "--quiet", cwd=tmp_path)
    follow = _Process("analyze", "--follow", "--store", str(db), "--every", "1s", "--window", "1m", "--history", "9",
                      "--run", "follow-live", cwd=tmp_path)
    serve = collect = None
    try:
        t0 = time.monotonic()
        wait_for(lambda: follow.saw("following"), 240, "the follower to fit its models", interval=0.5)
        print(f"follower ready after {time.monotonic() - t0:.0f} s")
        port = free_port()
        # The server's plant clock starts at the wall clock when it starts and runs 60 x faster.
        waste_start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=LEAD_S)
        scenario = _scenario(tmp_path / "scenario.yaml", waste_start)
        serve = _Process("simulate", "serve", "--speed", str(SPEED), "--port", str(port), "--machines", "3",
                         "--scenario", str(scenario), "--continue-from", str(db), cwd=tmp_path)
        endpoint = f"opc.tcp://127.0.0.1:{port}"
        wait_for(lambda: serve.saw("serving"), 120, "the simulator to serve", interval=0.5)
        config = tmp_path / "collector.yaml"
        _wattline("discover", endpoint, "--out", str(config), cwd=tmp_path)
        settings = yaml.safe_load(config.read_text())
        settings.update({"store": str(db), "spool": {"path": str(tmp_path / "spool")},
                         "status_file": str(tmp_path / "collector-status.json"), "metrics": {"listen": None}})
        config.write_text(yaml.safe_dump(settings))
        collect = _Process("collect", "--config", str(config), cwd=tmp_path)
        t1 = time.monotonic()
        first = wait_for(lambda: _first_finding(db), 180, f"a finding for {MACHINE}", interval=0.5)
        seen_at = _newest_plant_time(db)
        print(f"finding after {time.monotonic() - t1:.0f} s wall: {first.details.get('explanation')}")
    finally:
        for proc in (collect, serve, follow):
            if proc is not None:
                proc.stop()
    start_ns = int(waste_start.timestamp()) * 1_000_000_000
    latency_s = (seen_at - start_ns) / 1e9
    print(f"waste from {waste_start.isoformat()}; finding {first.start.isoformat()}-{first.end.isoformat()}, "
          f"seen when the newest plant data were {latency_s / 60:.1f} plant minutes later")
    assert first.start >= waste_start - dt.timedelta(minutes=5), "a finding before the waste: a false alarm"
    assert first.excess_kwh > 0
    assert latency_s <= LIMIT_S, f"first finding {latency_s / 60:.1f} plant minutes after the waste started"
