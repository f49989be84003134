"""Collectors page data: collector health rows from the health series, data quality per machine (real SQLite)."""

from __future__ import annotations

import datetime as dt

import numpy as np

from collectors.health import health_points
from core.model import Point
from core.storage.sqlite import SQLiteStore
from dashboard.access import SiteScopedStore
from dashboard.collectors import COLLECTOR_CSV, collector_rows, fmt_age, fmt_bytes, quality_rows, rows_csv

NS = 1_000_000_000
H = 3600 * NS
UTC = dt.UTC
T0 = 1_780_000_000 // 3600 * 3600 * NS  # an hour boundary


def status(connected: bool, rate: float, age):
    return {"collector": "hall3", "backlog": 12, "spool": {"bytes": 4096},
            "servers": [{"name": "plc-1", "connected": connected, "values_per_second": rate, "last_value_age_s": age,
                         "reconnects": 3, "bad_nodes": [{"node": "a", "reason": "r"}]}]}


def test_collector_rows_newest_point_state_and_sites(tmp_path):
    store = SQLiteStore(tmp_path / "w.db")
    store.write(health_points(status(True, 50.0, 0.5), T0, {"plc-1": ["north", "south"]}))
    store.write(health_points(status(False, 0.0, 40.0), T0 + 10 * NS, {"plc-1": ["north", "south"]}))
    store.write(health_points({**status(True, 5.0, 1.0), "collector": "yard"}, T0 - 120 * NS, {"plc-1": ["south"]}))
    rows = collector_rows(store, T0 + 20 * NS, UTC)
    assert [(r["collector"], r["server"]) for r in rows] == [("hall3", "plc-1"), ("yard", "plc-1")]
    hall = rows[0]
    assert hall["state"] == "disconnected" and hall["values_per_s"] == 0.0 and hall["last_value_age"] == "40 s"
    assert hall["sites"] == "north, south" and hall["spool"] == "4.1 kB" and hall["bad_nodes"] == 1.0
    assert rows[1]["state"] == "silent"  # its newest report is 140 s old: the collector itself is down
    # A user bound to north sees only the collector that serves north.
    north = collector_rows(SiteScopedStore(store, ["north"]), T0 + 20 * NS, UTC, silent_after_s=60)
    assert [(r["collector"], r["state"]) for r in north] == [("hall3", "disconnected")]
    assert "hall3,plc-1" in rows_csv(rows, COLLECTOR_CSV)


def test_quality_rows_completeness_gaps_bad_share(tmp_path):
    store = SQLiteStore(tmp_path / "w.db")
    tags = {"site": "north", "line": "l1", "machine": "m1"}
    times = [T0 + k * 600 * NS for k in range(6 * 10)]  # 10 hours at 10 min
    gap = {k for k in range(60) if 18 <= k < 30}  # hours 3 and 4 empty
    points = [Point("electrical", tags, {"energy_kwh": 100.0 + k}, t) for k, t in enumerate(times) if k not in gap]
    # The last hour: 6 values, 3 of them Bad (stored as missing).
    points[-3:] = [Point("electrical", tags, {"energy_kwh": None}, p.time_ns, status=0x80000000) for p in points[-3:]]
    store.write(points)
    now = times[-1] + 60 * NS
    rows = quality_rows(store, T0, T0 + 10 * H, now, UTC)
    assert len(rows) == 1
    row = rows[0]
    assert row["machine"] == "north/l1/m1" and row["gaps"] == 1 and row["longest_gap_h"] == 2
    assert abs(row["completeness_share"] - 8 / 10) < 1e-9
    assert abs(row["bad_share_value"] - 0.5) < 1e-9 and row["bad_share"] == "50.0 %"
    assert row["status"] == "ok"
    later = quality_rows(store, T0, T0 + 20 * H, T0 + 20 * H, UTC)[0]  # silent for 10 h: not a gap, but stale
    assert later["gaps"] == 1 and later["completeness_share"] == row["completeness_share"]
    assert later["status"] == "stale" and later["last_value"] == f"{(20 * H - 59 * 600 * NS) / H:.1f} h ago"
    assert quality_rows(SiteScopedStore(store, ["south"]), T0, T0 + 10 * H, now, UTC) == []


def test_formatting_for_people():
    assert fmt_bytes(0) == "0 B" and fmt_bytes(2_500_000) == "2.5 MB"
    assert fmt_age(0.42) == "0.4 s" and fmt_age(300) == "5 min" and fmt_age(3 * 86400) == "3.0 d"
    assert fmt_age(np.nan) == "—"


def test_collector_csv_exports_are_gated_by_role_and_site(tmp_path):
    import time

    from dashboard.app import create_app
    from dashboard.tests.helpers import logged_in, make_users

    store = SQLiteStore(tmp_path / "w.db")
    now = time.time_ns()
    store.write(health_points(status(True, 50.0, 0.5), now, {"plc-1": ["north"]}))
    store.write(health_points({**status(True, 5.0, 1.0), "collector": "yard"}, now, {"plc-1": ["south"]}))
    store.close()
    make_users(tmp_path / "users.json")
    app = create_app(str(tmp_path / "w.db"), users=tmp_path / "users.json")
    erik = logged_in(app, "erik").get("/export/collectors.csv").get_data(as_text=True)
    assert "hall3" in erik and "yard" not in erik  # an engineer of north
    assert "yard" in logged_in(app, "admin").get("/export/collectors.csv").get_data(as_text=True)
    assert logged_in(app, "anna").get("/export/collectors.csv").status_code == 403  # plant managers: not their page
    assert logged_in(app, "erik").get("/export/quality.csv?site=south").status_code == 403
