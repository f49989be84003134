"""Chaos under ``wattline serve`` running every service of one box: a collector of a live simulated plant, scheduled
analytics, the streaming follower (``analyze --follow``), the work-order sync and the dashboard (gunicorn, two
workers). Each non-collector service is killed with SIGKILL in turn; each must come back (a new process, state
running, nothing the killed one started left running) and do its job again: the dashboard answers HTTP, the follower
fits its models and follows again, a scheduled analysis and an orders sync run to the end after the kill. Across all
of it the collector's exact counts hold: every value it received is stored, none twice.

(tests/e2e/test_serve_chaos.py kills the collectors and their store writer at a few thousand values/s; this one keeps
the plant small, one simulator, so that the analytics have little to do and the test stays short.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import free_port
from tests.e2e.serve_chaos_support import (
    STOP_LINE,
    Output,
    alive,
    descendants,
    discover,
    distinct,
    integrity,
    kill9,
    rows,
    service,
    stop_all,
)
from tests.support import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.integration]

#: Machines of the shipped plant served and backfilled (the same ones, so that the live values continue the history).
MACHINES = 6
#: Days of backfilled history the analytics fit on (the follower's anomaly models need about a week).
HISTORY_DAYS = 8


def _wattline(*args: str, cwd: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "wattline", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr


def _login_page(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5) as response:
        return response.status


def _runs(db: Path) -> set[str]:
    from core.storage import open_store
    from core.storage.results import results_for

    with open_store(str(db)) as store, results_for(store) as results:
        return {r.run for r in results.runs()}


def test_kill_every_service_under_serve_each_comes_back_and_nothing_collected_is_lost(tmp_path):
    from dashboard.tests.helpers import make_users

    started = time.monotonic()
    db, status = tmp_path / "plant.db", tmp_path / "wattline-serve-status.json"
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text("name: chaos\nintensity: 1.0\n")  # a fixed waste intensity skips the start-up calibration
    _wattline("simulate", "backfill", "--days", str(HISTORY_DAYS), "--machines", str(MACHINES), "--store", str(db),
              "--scenario", str(scenario), "--resolution", "60", "--quiet", cwd=tmp_path)
    backfilled = rows(db)
    assert backfilled > 0
    make_users(tmp_path / "users.json")
    port, web = free_port(), free_port()
    sims = [subprocess.Popen([sys.executable, "-m", "wattline", "simulate", "serve", "--port", str(port), "--machines",
                              str(MACHINES), "--scenario", str(scenario), "--speed", "60"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    serve = out = None
    try:
        col = tmp_path / "collector.yaml"
        wait_for(lambda: discover(f"opc.tcp://127.0.0.1:{port}", col, {
            "status_file": "collector-status.json", "spool": {"path": "spool"}, "metrics": {"listen": "127.0.0.1:0"}}),
            120, "the simulator to answer discovery", interval=1.0)
        config = tmp_path / "serve.yaml"
        config.write_text(f"store: {db}\ngrace_s: 30\nrestart: {{min_s: 0.2, max_s: 2}}\n"
                          "analytics: {every_s: 5, lookback_days: 2, follow: true}\n"
                          "orders: {enabled: true, every_s: 3}\n"
                          f"dashboard: {{users: users.json, port: {web}, workers: 2, threads: 2}}\n"
                          f"collectors:\n  - name: plant\n    config: {col}\n")
        serve = subprocess.Popen([sys.executable, "-m", "wattline", "serve", "--config", str(config)], cwd=tmp_path,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out = Output(serve)

        def state(name: str) -> dict:
            return service(status, name)

        def running(name: str, other_than: int | None = None):
            s = state(name)
            return s["state"] == "running" and s["pid"] not in (None, other_than) and s["pid"]

        # Every service at work before the kills.
        wait_for(lambda: running("collector-plant"), 120, "the collector to start")
        wait_for(lambda: rows(db) > backfilled + 500, 120, "live values stored")
        wait_for(lambda: _login_page(web) == 200, 120, "the dashboard's login page", interval=0.5)
        wait_for(lambda: out.count("following") >= 1, 240, "the follower to fit its models and follow", interval=0.5)
        wait_for(lambda: state("analytics")["last_exit_code"] == 0 and "scheduled" in _runs(db), 240,
                 "a scheduled analysis to finish", interval=0.5)
        wait_for(lambda: out.count(" finding(s): ") >= 1, 120, "an orders sync of the analysis run", interval=0.5)
        print(f"every service at work after {time.monotonic() - started:.0f} s")

        def kill(name: str) -> tuple[int, list[int], bool]:
            """SIGKILL the service's process (found in the status file); its pid, its descendants, whether it ran."""
            pid = wait_for(lambda: running(name), 120, f"{name} to run", interval=0.1)
            below = descendants(pid)
            return pid, below, kill9(pid)

        def left_nothing(name: str, below: list[int]) -> None:
            wait_for(lambda: not [p for p in below if alive(p)], 30, f"the processes {name} had started to end")

        # 1. The dashboard (gunicorn master; its workers must not outlive it) comes back and answers again.
        first, workers, _ = kill("dashboard")
        assert len(workers) >= 2, workers  # the master and its two workers were killed, not a lone process
        wait_for(lambda: running("dashboard", first), 60, "the dashboard to come back")
        left_nothing("dashboard", workers)
        wait_for(lambda: _login_page(web) == 200, 120, "the restarted dashboard's login page", interval=0.5)
        assert state("dashboard")["restarts"] == 1

        # 2. The follower comes back, fits its models again and follows.
        follows = out.count("following")
        first, below, _ = kill("analytics-follow")
        wait_for(lambda: running("analytics-follow", first), 60, "the follower to come back")
        left_nothing("analytics-follow", below)
        wait_for(lambda: out.count("following") > follows, 240, "the restarted follower to follow", interval=0.5)
        assert state("analytics-follow")["restarts"] == 1

        # 3.-4. A scheduled analysis and an orders sync killed mid-run (a run may end by itself between the status
        # file's write and the signal: then the next one is killed), then the next run ends well and does its job.
        def kill_a_run(name: str) -> list[int]:
            failed, killed, below = state(name)["failed_runs"], set(), []

            def attempt() -> bool:
                s = state(name)
                if s["failed_runs"] > failed:
                    return True
                pid = s["pid"]
                if s["state"] == "running" and pid and pid not in killed and alive(pid):
                    below.extend(descendants(pid))
                    killed.add(pid)
                    kill9(pid)
                return False

            wait_for(attempt, 120, f"a {name} run killed and reaped as failed", interval=0.05)
            assert state(name)["last_exit_code"] == -9
            return below

        for name, done in (("analytics", lambda: "scheduled" in _runs(db)),
                           ("orders", lambda n=out.count(" finding(s): "): out.count(" finding(s): ") > n)):
            below = kill_a_run(name)
            exits = state(name)["exits"]
            left_nothing(name, below)
            wait_for(lambda name=name, exits=exits: state(name)["exits"] > exits and state(name)["last_exit_code"] == 0,
                     240,
                     f"a later {name} run to end well", interval=0.2)
            wait_for(done, 60, f"{name} to do its job after the kill")

        # The collector was never disturbed and still stores.
        before = rows(db)
        wait_for(lambda: rows(db) > before + 200, 120, "values stored after the kills")
        # The operator's view agrees: every service back, each kill counted, the collector never restarted.
        shown = subprocess.run([sys.executable, "-m", "wattline", "serve", "--config", str(config), "status", "--json"],
                               capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        services = {s["name"]: s for s in json.loads(shown.stdout)["services"]}
        assert services["collector-plant"]["restarts"] == 0 and services["collector-plant"]["state"] == "running"
        assert services["dashboard"]["restarts"] == services["analytics-follow"]["restarts"] == 1
        assert all(services[n]["state"] == "running" for n in ("dashboard", "analytics-follow"))
        assert services["analytics"]["failed_runs"] >= 1 and services["orders"]["failed_runs"] >= 1
        serve.terminate()
        serve.wait(90)
        assert serve.returncode == 0, out.text()[-3000:]
    except BaseException:
        if out is not None:
            print("\n".join(out.lines[-60:]))  # what the services said, for the failure
        raise
    finally:
        stop_all(serve, sims)
    text = out.text()
    stops = STOP_LINE.findall(text)
    assert len(stops) == 1, text[-3000:]
    received, stored, spooled = map(int, stops[0])
    print(f"collector at stop: {received} received, {stored} stored, {spooled} passed through the spool")
    assert received > 0 and stored == received, stops[0]  # exact: nothing lost, nothing written twice
    # The store holds exactly the backfill and what the collector received (beside its own health rows).
    assert rows(db, without=("wattline_collector",)) == backfilled + received
    from core.spool import RowSpool

    assert RowSpool(tmp_path / "spool").count_values() == 0
    total, unique = distinct(db)
    assert total == unique  # no (series, timestamp) twice
    assert integrity(db) == "ok"
    print(f"wall time: {time.monotonic() - started:.0f} s")
