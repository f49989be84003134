"""Helpers of the chaos test under ``wattline serve`` (tests/e2e/test_serve_chaos.py): the processes of a service, the
store's exact counts, the supervisor's status file and its output read while it runs, the simulated plants."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

#: What each collector prints when it stops (the killed run of a collector prints none).
STOP_LINE = re.compile(r"stopped: (\d+) values received, (\d+) stored, (\d+) spooled")


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (empty when it is gone)."""
    out = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return []
    for task in tasks:
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children, ...)."""
    out, todo = [], children(pid)
    while todo:
        child = todo.pop()
        out.append(child)
        todo += children(child)
    return out


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def writer_pid(collector: int) -> int | None:
    """The collector's store writer: the child serving ``core.storage.process`` (a plain child interpreter, or a
    multiprocessing spawn child on other platforms), not a resource tracker."""
    for child in children(collector):
        try:
            cmd = Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if ("core.storage.process" in cmd or "multiprocessing.spawn" in cmd) and "resource_tracker" not in cmd:
            return child
    return None


def rows(db: Path, sites: tuple[str, ...] = (), without: tuple[str, ...] = ()) -> int:
    """Values stored; with ``sites``, only those of these sites (one collector's own progress); ``without`` leaves
    out these measurements (``wattline_collector``: the collector's own health, not values it received)."""
    where, args = [], []
    if sites:
        where.append("series_id IN (SELECT id FROM series WHERE " + " OR ".join(["tags LIKE ?"] * len(sites)) + ")")
        args += [f'%["site","{site}"]%' for site in sites]
    if without:
        where.append(f"series_id NOT IN (SELECT id FROM series WHERE measurement IN ({','.join('?' * len(without))}))")
        args += list(without)
    where = ("WHERE " + " AND ".join(where)) if where else ""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        points = conn.execute(f"SELECT count(*) FROM points {where}", args).fetchone()[0]
        chunks = conn.execute(f"SELECT coalesce(sum(n), 0) FROM chunks {where}", args).fetchone()[0]
        return points + chunks
    finally:
        conn.close()


def distinct(db: Path) -> tuple[int, int]:
    """Values stored as points, and distinct (series, timestamp) among them: equal when nothing is stored twice."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        total = conn.execute("SELECT count(*) FROM points").fetchone()[0]
        unique = conn.execute("SELECT count(*) FROM (SELECT DISTINCT series_id, ts FROM points)").fetchone()[0]
        return total, unique
    finally:
        conn.close()


def integrity(db: Path) -> str:
    """SQLite's own check of the store file ("ok")."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def service(status_file: Path, name: str) -> dict:
    """One service's entry in the supervisor's status file."""
    return next(s for s in json.loads(status_file.read_text())["services"] if s["name"] == name)


def discover(endpoint: str, out: Path, spec_update: dict) -> dict:
    """``wattline discover`` into ``out`` (retried until the simulator answers; the caller waits), sampled at the
    simulator's 0.25-s update period, with ``spec_update`` applied to the top level; returns the spec, or None."""
    import yaml

    done = subprocess.run([sys.executable, "-m", "wattline", "discover", endpoint, "--out", str(out), "--force"],
                          capture_output=True, timeout=120)
    if done.returncode != 0:
        return None
    spec = yaml.safe_load(out.read_text())
    for server in spec["servers"]:
        for group in server["groups"]:
            group.update(sampling_interval_ms=250, publishing_interval_ms=500)
    spec.update(spec_update)
    out.write_text(yaml.safe_dump(spec, sort_keys=False))
    return spec


class Output:
    """A process's merged stdout and stderr, read line by line while it runs (the supervisor's children share it)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc, self.lines = proc, []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def count(self, text: str) -> int:
        return sum(text in line for line in list(self.lines))

    def text(self) -> str:
        self._reader.join(30)
        return "\n".join(self.lines)


def stop_all(serve: subprocess.Popen | None, sims: list[subprocess.Popen]) -> None:
    """End what a chaos test started, even when it failed half-way: the supervisor, then the simulators."""
    if serve is not None and serve.poll() is None:
        serve.kill()
        serve.wait(30)
    for sim in sims:
        if sim.poll() is None:
            sim.send_signal(signal.SIGINT)
    for sim in sims:
        try:
            sim.wait(30)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait(10)


def kill9(pid: int) -> bool:
    """SIGKILL ``pid``; False when it had already exited."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def plant_copy(path: Path, copy: int) -> tuple[str, ...]:
    """Write the shipped plant with its site ids suffixed ``-copy`` (distinct series per simulator); return the
    copy's site ids."""
    import yaml

    from simulator.plant import DEFAULT_PLANT_FILE

    spec = yaml.safe_load(Path(DEFAULT_PLANT_FILE).read_text())
    spec["name"] = f"{spec['name']} {copy}"
    for site in spec["sites"]:
        site["id"] = f"{site['id']}-{copy}"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return tuple(site["id"] for site in spec["sites"])


def shipped_sites() -> tuple[str, ...]:
    """Site ids of the shipped plant (those of ``simulate serve/backfill --machines N``)."""
    from simulator.plant import DEFAULT_PLANT_FILE, read_plant

    return tuple(site.id for site in read_plant(DEFAULT_PLANT_FILE).sites)


def login_page(port: int) -> int:
    """HTTP status of the dashboard's login page."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5) as response:
        return response.status


def port_open(port: int) -> bool:
    """True when something accepts TCP connections on ``127.0.0.1:port``."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        return True
    return False


def follow_run(db: Path, forget: bool = False) -> bool:
    """True once the streaming follower has scored windows: ``analyze --follow`` writes its run (kind ``follow``,
    with the findings it has, perhaps none) at every tick. ``forget`` deletes that run's entry first (when the killed
    follower is gone), so that only a later tick can write it again."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        if forget:
            with conn:
                conn.execute("DELETE FROM result_runs WHERE kind = 'follow'")
        return conn.execute("SELECT count(*) FROM result_runs WHERE kind = 'follow'").fetchone()[0] > 0
    except sqlite3.OperationalError:  # no results written yet: the tables do not exist
        return False
    finally:
        conn.close()


def runs_of(db: Path) -> set[str]:
    """Ids of the analysis runs stored beside the store."""
    from core.storage import open_store
    from core.storage.results import results_for

    with open_store(str(db)) as store, results_for(store) as results:
        return {r.run for r in results.runs()}
