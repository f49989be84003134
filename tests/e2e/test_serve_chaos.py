"""Chaos under ``wattline serve``: every service of one box killed with SIGKILL in turn while a live simulated plant
delivers a few thousand values/s; each comes back and does its job again, and by exact counts nothing collected is
lost or stored twice.

One supervisor runs everything a box runs:

- five OPC UA collectors: four of high-rate simulators (the shipped 60-machine plant under distinct site ids each,
  speed 60, an update every 0.25 s) for the rate, and one of a small 6-machine plant whose history is backfilled, so
  that the analytics have something to fit;
- scheduled analytics (``analyze`` every few seconds), the streaming follower (``analyze --follow``), the work-order
  sync (``orders sync``), the dashboard (gunicorn, two workers) and one extra command service (``services:``, a spare
  simulator), the kinds ``wattline serve`` runs.

Killed in turn: collector ``plant`` (restarted by the supervisor), then its store writer process (replaced by the
collector, the batch in flight replayed through the spool), the dashboard (master and workers), the follower, the
command service, a scheduled analysis and an orders sync mid-run. Each must come back (a new process, nothing the
killed one started left running) and work again: the collector stores new values, the dashboard answers HTTP, the
follower writes new findings, the spare simulator accepts connections, a later analysis and sync end well. At the end
(SIGTERM) each collector's own account (its status file) must show every value it received written, the store must
hold exactly that beside the backfill for each collector never killed (less the values a server sent again after a
reconnect, at most one per node and reconnect, which the store keeps once: exact when there was none), with no
(series, timestamp) twice.

The stored rate is measured and printed; it is asserted only against a generous floor (``MIN_RATE``) so that a loaded
CI machine does not fail a correctness test on speed (the measured figure is in docs/operations.md). Marked slow and
integration.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
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
    follow_run,
    integrity,
    kill9,
    login_page,
    plant_copy,
    port_open,
    rows,
    runs_of,
    service,
    shipped_sites,
    stop_all,
    writer_pid,
)
from tests.support import wait_for

#: Slow and integration; the time limit leaves room for a loaded machine (308-349 s measured at load average 16-20).
pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(900)]

#: High-rate simulator processes, each collected by its own collector: a few thousand values/s in all (one asyncua
#: server process gives 600-900 on the loaded 2-core CI machine; one 244-machine process fell behind its ticks, ~430).
SIMULATORS = 4
#: Machines of the small plant served and backfilled (the same ones, so that the live values continue the history).
MACHINES = 6
#: Days of backfilled history the analytics fit on (the follower's anomaly models need about a week).
HISTORY_DAYS = 8
#: Generous floor of the stored rate averaged over the run [values/s]: the figure is printed (docs/operations.md has
#: the measurements); the floor only proves that the plants were live and collected throughout, even on a CI machine
#: shared with other jobs (909-992 values/s over the run at load average 16-20 on 2 cores, 384 in a run at 16-22;
#: the collectors alone gave ~3,200 at load 5-10).
MIN_RATE = 250
#: New values of its own a restarted collector (or one with a new writer process) must store: proof it works again.
AGAIN = 1000
#: The measurement of the collectors' own health, not values they received.
HEALTH = ("wattline_collector",)


def _wattline(*args: str, cwd: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "wattline", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr


def test_kill_every_service_under_serve_at_thousands_of_values_per_second(tmp_path):
    from dashboard.tests.helpers import make_users
    from simulator.plant import DEFAULT_PLANT_FILE

    started = time.monotonic()
    db, status = tmp_path / "plant.db", tmp_path / "wattline-serve-status.json"
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text("name: chaos\nintensity: 1.0\n")  # a fixed waste intensity skips the start-up calibration
    ports, sims, sites = [free_port() for _ in range(SIMULATORS + 1)], [], {}
    for k, port in enumerate(ports[:SIMULATORS]):
        sites[f"plant{k or ''}"] = plant_copy(tmp_path / f"plant-{k}.yaml", k)
        sims.append(subprocess.Popen([sys.executable, "-m", "wattline", "simulate", "serve", "--port", str(port),
                                      "--plant", str(tmp_path / f"plant-{k}.yaml"), "--scenario", str(scenario),
                                      "--speed", "60"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    sites["small"] = shipped_sites()
    sims.append(subprocess.Popen([sys.executable, "-m", "wattline", "simulate", "serve", "--port", str(ports[-1]),
                                  "--machines", str(MACHINES), "--scenario", str(scenario), "--speed", "60"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    serve = out = None
    try:
        t_phase = time.monotonic()

        def backfill() -> int:
            _wattline("simulate", "backfill", "--days", str(HISTORY_DAYS), "--machines", str(MACHINES), "--store",
                      str(db), "--scenario", str(scenario), "--resolution", "60", "--quiet", cwd=tmp_path)
            return rows(db, sites["small"], without=HEALTH)

        def collector_config(name: str, port: int) -> str:
            col = tmp_path / f"collector-{name}.yaml"
            wait_for(lambda: discover(f"opc.tcp://127.0.0.1:{port}", col, {
                "status_file": f"collector-status-{name}.json", "spool": {"path": f"spool-{name}"},
                "metrics": {"listen": "127.0.0.1:0"}}), 180, f"simulator {name} to answer discovery", interval=1.0)
            return f"  - name: {name}\n    config: {col}\n"

        with ThreadPoolExecutor(len(ports) + 1) as pool:  # the history is written while the simulators start
            history = pool.submit(backfill)
            entries = "".join(pool.map(collector_config, list(sites), ports))
            backfilled = history.result()
        assert backfilled > 0
        print(f"backfill and discovery: {time.monotonic() - t_phase:.0f} s")
        make_users(tmp_path / "users.json")
        web, spare = free_port(), free_port()
        config = tmp_path / "serve.yaml"
        config.write_text(f"store: {db}\ngrace_s: 30\nrestart: {{min_s: 0.2, max_s: 2}}\n"
                          f"analytics: {{every_s: 10, lookback_days: 2, plant: {DEFAULT_PLANT_FILE},\n"
                          "            follow: {enabled: true, every: 2s, window: 1m}}\n"
                          "orders: {enabled: true, every_s: 5}\n"
                          f"dashboard: {{users: users.json, port: {web}, workers: 2, threads: 2}}\n"
                          f"services:\n  - name: spare-sim\n    args: [simulate, serve, --port, '{spare}', --machines, '1']\n"
                          f"collectors:\n{entries}")
        serve = subprocess.Popen([sys.executable, "-m", "wattline", "serve", "--config", str(config)], cwd=tmp_path,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out = Output(serve)

        def state(name: str) -> dict:
            return service(status, name)

        def running(name: str, other_than: int | None = None):
            s = state(name)
            return s["state"] == "running" and s["pid"] not in (None, other_than) and s["pid"]

        # Every service at work before the kills, and the rate the plant delivers.
        wait_for(lambda: all(running(f"collector-{name}") for name in sites), 120, "the collectors to start")
        wait_for(lambda: rows(db) > backfilled + 2000, 120, "live values stored")
        t0, n0 = time.monotonic(), rows(db)
        wait_for(lambda: rows(db) > n0 + 20_000, 120, "a rate measurement")
        rate = (rows(db) - n0) / (time.monotonic() - t0)
        print(f"{SIMULATORS * 60 + MACHINES} machines: stored {rate:.0f} values/s before the kills")
        wait_for(lambda: login_page(web) == 200, 120, "the dashboard's login page", interval=0.5)
        wait_for(lambda: port_open(spare), 120, "the spare simulator to listen", interval=0.5)
        wait_for(lambda: out.count("following") >= 1 and follow_run(db), 240,
                 "the follower to fit its models and score windows", interval=0.5)
        wait_for(lambda: state("analytics")["last_exit_code"] == 0 and "scheduled" in runs_of(db), 240,
                 "a scheduled analysis to finish", interval=0.5)
        wait_for(lambda: out.count(" finding(s): ") >= 1, 120, "an orders sync of the analysis run", interval=0.5)
        print(f"every service at work after {time.monotonic() - started:.0f} s")
        t_kills = time.monotonic()

        def kill(name: str) -> tuple[int, list[int]]:
            """SIGKILL the service's process (found in the status file) and wait for its successor; the killed pid
            and the processes it had started."""
            pid = wait_for(lambda: running(name), 120, f"{name} to run", interval=0.1)
            below = descendants(pid)
            assert kill9(pid), name
            wait_for(lambda: running(name, pid), 60, f"{name} to come back")
            return pid, below

        # 1. Collector "plant": restarted; everything committed before stays, and it stores its own series again
        # (the other collectors' values alone would not show it).
        own = sites["plant"]
        before = rows(db, own)
        kill("collector-plant")
        second = running("collector-plant")
        assert rows(db, own) >= before
        wait_for(lambda: rows(db, own) > before + AGAIN, 120, "values stored by the restarted collector")

        # 2. Its store writer process: the collector starts a new one and writes the batch in flight again.
        writer = wait_for(lambda: writer_pid(second), 60, "the writer process of the collector")
        before = rows(db, own)
        assert kill9(writer)
        wait_for(lambda: writer_pid(second) not in (None, writer), 120, "a new writer process")
        wait_for(lambda: rows(db, own) > before + AGAIN, 120, "values stored after the writer was killed")
        assert running("collector-plant") == second  # the collector itself survived its writer

        # 3.-5. The dashboard (gunicorn master; its workers must not outlive it), the follower and the command
        # service, each killed as soon as the previous one is back; their work is checked below.
        follows = out.count("following")
        _, workers = kill("dashboard")
        assert len(workers) >= 2, workers  # the master and its two workers were killed, not a lone process
        _, follower_below = kill("analytics-follow")
        assert not follow_run(db, forget=True)  # the killed follower cannot write it again; only its successor can
        _, spare_below = kill("spare-sim")

        # 6.-7. A scheduled analysis and an orders sync killed mid-run (a run may end by itself between the status
        # file's write and the signal: then the next one is killed).
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

        syncs = out.count(" finding(s): ")
        run_below = {name: (kill_a_run(name), state(name)["exits"]) for name in ("analytics", "orders")}

        # Each one back at work, nothing a killed process started left running.
        for name, below in (("dashboard", workers), ("analytics-follow", follower_below), ("spare-sim", spare_below),
                            *((n, b) for n, (b, _) in run_below.items())):
            wait_for(lambda below=below: not [p for p in below if alive(p)], 30,
                     f"the processes the killed {name} had started to end")
        wait_for(lambda: login_page(web) == 200, 120, "the restarted dashboard's login page", interval=0.5)
        wait_for(lambda: out.count("following") > follows, 240, "the restarted follower to follow", interval=0.5)
        wait_for(lambda: follow_run(db), 120, "the restarted follower to score windows", interval=0.5)
        wait_for(lambda: port_open(spare), 120, "the restarted spare simulator to listen", interval=0.5)
        for name, (_, exits) in run_below.items():
            wait_for(lambda name=name, exits=exits: state(name)["exits"] > exits and state(name)["last_exit_code"] == 0,
                     240, f"a later {name} run to end well", interval=0.2)
        wait_for(lambda: out.count(" finding(s): ") > syncs, 60, "an orders sync after the kill", interval=0.5)
        before = {name: rows(db, own_sites) for name, own_sites in sites.items()}
        wait_for(lambda: all(rows(db, sites[n]) > before[n] for n in sites), 120, "every collector storing")

        print(f"every service killed and back at work in {time.monotonic() - t_kills:.0f} s")
        # The operator's view agrees: every service running, each kill counted, the others never restarted. (The
        # dashboard may count more than one restart: started again 0.1 s after the kill, it can find its port still
        # held by the killed workers on a loaded machine, exits 2 and is retried with backoff.)
        shown = subprocess.run([sys.executable, "-m", "wattline", "serve", "--config", str(config), "status", "--json"],
                               capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        services = {s["name"]: s for s in json.loads(shown.stdout)["services"]}
        print("restarts:", {n: s["restarts"] for n, s in services.items()}, "failed runs:",
              {n: s["failed_runs"] for n, s in services.items() if s["every_s"]})
        for name, s in services.items():
            killed = name in ("collector-plant", "dashboard", "analytics-follow", "spare-sim")
            if s["every_s"] is None:
                assert s["state"] == "running", s
                assert (s["restarts"] >= 1) if name == "dashboard" else (s["restarts"] == int(killed)), s
            else:
                assert s["failed_runs"] >= 1, s
        t_end = time.monotonic()
        serve.terminate()
        serve.wait(90)
        assert serve.returncode == 0, out.text()[-3000:]
    except BaseException:
        if out is not None:
            print("\n".join(out.lines[-60:]))  # what the services said, for the failure
        raise
    finally:
        stop_all(serve, sims)
    from core.spool import RowSpool

    text = out.text()
    assert len(STOP_LINE.findall(text)) == len(sites), text[-3000:]  # each collector stopped cleanly once, at SIGTERM
    for name, own_sites in sites.items():
        # Each collector's own account, written at its stop (for "plant", that of its restarted run).
        account = json.loads((tmp_path / f"collector-status-{name}.json").read_text())
        received, written = account["values_received"], account["values_written"]
        stored = rows(db, own_sites, without=HEALTH)
        # A session re-established (reconnect or re-created subscription, both counted by the collector) gets each
        # node's current value again, the same (series, timestamp) as before when it has not changed since: stored
        # once. Without any, the count is exact.
        again = sum((s["reconnects"] + s["resubscriptions"]) * s["nodes"] for s in account["servers"])
        print(f"collector {name}: {received} received, {written} written, {stored} in the store, up to {again} "
              "values received twice after reconnects")
        assert RowSpool(tmp_path / f"spool-{name}").count_values() == 0
        if name == "plant":  # killed: its first run's values are in the store too; the batch in flight is replayed
            assert received > 0 and written >= received and stored >= received
            continue
        # Never killed: everything it received was written, and the store holds exactly that (less what the server
        # sent twice), beside the backfill; nothing lost, nothing extra.
        assert received > 0 and written == received
        stored -= backfilled if name == "small" else 0
        assert received - again <= stored <= received, (name, received, stored, again)
    run_rate = (rows(db) - n0) / (t_end - t0)
    print(f"{SIMULATORS * 60 + MACHINES} machines: {run_rate:.0f} values/s stored averaged over {t_end - t0:.0f} s "
          "with the kills")
    assert run_rate >= MIN_RATE, f"{run_rate:.0f} values/s stored, under the generous floor of {MIN_RATE}"
    total, unique = distinct(db)
    assert total == unique  # no (series, timestamp) twice
    assert integrity(db) == "ok"
    print(f"wall time: {time.monotonic() - started:.0f} s")
