"""Benchmark: dashboard callbacks per second a gunicorn worker serves, for the sizing in docs/operations.md (issue 14).

Starts ``wattline dashboard --workers W`` over a small live store (dashboard.tests.helpers.fill_plant: 5 machines,
the last 2 minutes at 5 s) and a work-order database, logs in U sessions and lets C client threads post, as fast as
answers come, the two callbacks a plant manager's pages send most: the live page's refresh (store read of the last
15 min) and the findings page's order panel (work-order database read). Reports callbacks/s in total and per worker,
p50/p95 latency [ms] and the load average. Run on demand::

    python -m tests.benchmarks.bench_dashboard_load --workers 1 2 --clients 8 --seconds 20
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.benchmark
ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> None:
    from core.orders.config import SAMPLE_FILE
    from core.storage.sqlite import SQLiteStore
    from dashboard.orders import open_service
    from dashboard.tests.helpers import NS, fill_plant, make_users
    from dashboard.tests.test_dashboard_access import live_request
    from dashboard.tests.test_dashboard_orders import by_machine, findings
    from tests.e2e.test_dashboard_workers import Client, free_port, select_request
    from tests.support import wait_for

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--mix", nargs="+", default=["live", "orders", "both"],
                    help="callbacks posted: live (live page refresh), orders (order panel) or both alternately")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="wl-dash-load-"))
    users = tmp / "users.json"
    make_users(users)
    store = tmp / "plant.db"
    with SQLiteStore(store) as st:
        fill_plant(st, time.time_ns() // NS, 120)
    orders_db = f"sqlite:///{tmp / 'orders.db'}"
    service = open_service(orders_db, str(SAMPLE_FILE))
    service.sync(findings(), run="run-1")
    order_id = by_machine(service, "north/L1/l1-m1")["id"]
    service.engine.dispose()
    for workers in args.workers:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen([sys.executable, "-m", "wattline", "dashboard", "--store", str(store), "--users",
                                 str(users), "--port", str(port), "--workers", str(workers), "--orders-db", orders_db,
                                 "--orders-rules", str(SAMPLE_FILE)], cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)

        def up(b: str = base) -> bool:
            try:
                with urllib.request.urlopen(b + "/login", timeout=5) as r:
                    return r.status == 200
            except OSError:
                return False

        try:
            wait_for(up, timeout=120, what="the dashboard")
            clients = []
            for _ in range(args.clients):
                c = Client()
                c.login(base, "admin")
                clients.append(c)
            every = {"live": ("/_dash-update-component", live_request("all")),
                     "orders": ("/_dash-update-component", select_request(order_id))}
            for c in clients:  # warm: each worker builds its app and opens the store on first use
                for path, body in every.values():
                    c.post_json(base, path, body).read()
            for mix in args.mix:
                print(json.dumps(measure(base, clients, [every["live"], every["orders"]] if mix == "both"
                                         else [every[mix]], args.seconds, {"workers": workers, "mix": mix})),
                      flush=True)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)


def measure(base: str, clients: list, payloads: list, seconds: float, row: dict) -> dict:
    """Post ``payloads`` round robin from every client for ``seconds``; callbacks/s and latency."""
    lat: list[float] = []
    errors = [0]
    stop = time.monotonic() + seconds
    lock = threading.Lock()

    def run(c, k: int) -> None:
        n = k
        while time.monotonic() < stop:
            path, body = payloads[n % len(payloads)]
            n += 1
            t = time.perf_counter()
            try:
                c.post_json(base, path, body).read()
            except OSError:
                errors[0] += 1
                continue
            with lock:
                lat.append(time.perf_counter() - t)

    threads = [threading.Thread(target=run, args=(c, k)) for k, c in enumerate(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - t0
    lat.sort()
    workers = row["workers"]
    row = {**row, "clients": len(clients), "seconds": round(took, 1), "callbacks": len(lat),
           "errors": errors[0], "per_s": round(len(lat) / took, 1),
           "per_s_per_worker": round(len(lat) / took / workers, 1),
           "p50_ms": round(1000 * lat[len(lat) // 2], 1) if lat else None,
           "p95_ms": round(1000 * lat[int(len(lat) * 0.95)], 1) if lat else None,
           "load_1min": round(os.getloadavg()[0], 1), "cores": os.cpu_count(),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    return row


if __name__ == "__main__":
    main()
