"""Chaos under ``wattline serve``: a live simulated plant, kill -9 the collector and then its store writer process;
every service comes back and nothing the collector received is lost or stored twice.

Marked slow and integration: it runs a real OPC UA simulator, a collector with its writer process and the supervisor
for about a minute.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _writer_pid(collector: int) -> int | None:
    """The collector's store writer: the child serving ``core.storage.process`` (a plain child interpreter, or a
    multiprocessing spawn child on other platforms), not a resource tracker."""
    for child in _children(collector):
        try:
            cmd = Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if ("core.storage.process" in cmd or "multiprocessing.spawn" in cmd) and "resource_tracker" not in cmd:
            return child
    return None


def _rows(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        points = conn.execute("SELECT count(*) FROM points").fetchone()[0]
        chunks = conn.execute("SELECT coalesce(sum(n), 0) FROM chunks").fetchone()[0]
        return points + chunks
    finally:
        conn.close()


def _distinct(db: Path) -> tuple[int, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        total = conn.execute("SELECT count(*) FROM points").fetchone()[0]
        distinct = conn.execute("SELECT count(*) FROM (SELECT DISTINCT series_id, ts FROM points)").fetchone()[0]
        return total, distinct
    finally:
        conn.close()


def test_kill_collector_and_writer_under_serve_loses_nothing(tmp_path):
    port = _free_port()
    db = tmp_path / "plant.db"
    sim = subprocess.Popen([sys.executable, "-m", "wattline", "simulate", "serve", "--port", str(port), "--machines",
                            "60", "--speed", "60"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    serve = None
    try:
        endpoint = f"opc.tcp://127.0.0.1:{port}"
        col = tmp_path / "collector.yaml"
        wait_for(lambda: subprocess.run([sys.executable, "-m", "wattline", "discover", endpoint, "--out", str(col),
                                         "--force"], capture_output=True, timeout=120).returncode == 0, 120,
                 "the simulator to answer discovery", interval=1.0)
        text = col.read_text() + "\nstatus_file: collector-status.json\nspool:\n  path: spool\nmetrics:\n  listen: 127.0.0.1:0\n"
        col.write_text(text)
        config = tmp_path / "serve.yaml"
        config.write_text(f"store: {db}\ngrace_s: 30\nrestart: {{min_s: 0.2, max_s: 2}}\n"
                          "analytics: {enabled: false}\ndashboard: {enabled: false}\n"
                          f"collectors:\n  - name: plant\n    config: {col}\n")
        status = tmp_path / "wattline-serve-status.json"
        serve = subprocess.Popen([sys.executable, "-m", "wattline", "serve", "--config", str(config)], cwd=tmp_path,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def collector() -> dict:
            return next(s for s in json.loads(status.read_text())["services"] if s["name"] == "collector-plant")

        first = wait_for(lambda: collector()["pid"], 120, "the collector to start")
        wait_for(lambda: db.exists() and _rows(db) > 2000, 120, "values stored")
        t0, n0 = time.monotonic(), _rows(db)
        wait_for(lambda: _rows(db) > n0 + 5000, 120, "a rate measurement")
        rate = (_rows(db) - n0) / (time.monotonic() - t0)
        print(f"stored {rate:.0f} values/s")

        # 1. kill -9 the collector: the supervisor restarts it.
        before = _rows(db)
        os.kill(first, signal.SIGKILL)
        second = wait_for(lambda: collector()["pid"] not in (None, first) and collector()["pid"], 120,
                          "the collector to come back")
        assert collector()["restarts"] == 1
        assert _rows(db) >= before  # nothing committed was lost with the collector
        wait_for(lambda: _rows(db) > before + 2000, 120, "values stored by the restarted collector")

        # 2. kill -9 its store writer process: the collector starts a new one and writes the batch again.
        writer = wait_for(lambda: _writer_pid(second), 60, "the writer process of the collector")
        before = _rows(db)
        os.kill(writer, signal.SIGKILL)
        wait_for(lambda: _writer_pid(second) not in (None, writer), 120, "a new writer process")
        wait_for(lambda: _rows(db) > before + 2000, 120, "values stored after the writer was killed")
        assert collector()["pid"] == second and collector()["restarts"] == 1  # the collector itself survived

        # 3. SIGTERM the supervisor: the collector flushes what it holds.
        serve.send_signal(signal.SIGTERM)
        _, err = serve.communicate(timeout=60)
        assert serve.returncode == 0, err
    finally:
        if serve is not None and serve.poll() is None:
            serve.kill()
            serve.communicate()
        sim.send_signal(signal.SIGINT)
        try:
            sim.wait(30)
        except subprocess.TimeoutExpired:
            sim.kill()
    # The surviving collector's own account, printed at its stop: everything it received is stored (the batch in
    # flight when its writer was killed went through the spool and was replayed), and the spool is empty.
    from core.spool import RowSpool

    stops = re.findall(r"stopped: (\d+) values received, (\d+) stored, (\d+) spooled", err)
    assert stops, err[-2000:]
    received, written, spooled = map(int, stops[-1])
    print(f"surviving collector: {received} received, {written} stored, {spooled} passed through the spool")
    assert received > 0 and written >= received, stops[-1]
    assert RowSpool(tmp_path / "spool").count_values() == 0
    total, distinct = _distinct(db)
    assert total == distinct  # no (series, timestamp) twice
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
