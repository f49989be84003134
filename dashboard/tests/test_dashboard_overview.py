"""Overview and findings: the numbers (no browser), and their callbacks and export as users of one site."""

from __future__ import annotations

import datetime as dt
import json
import time

import numpy as np
import pandas as pd
import pytest

from core.model import Event
from core.plant import parse_plant
from core.storage.results import results_for
from dashboard import ids
from dashboard.app import create_app, store_of
from dashboard.overview import (
    energy_by_hour,
    finding_rows,
    findings_csv,
    fmt_co2,
    fmt_energy,
    fmt_money,
    latest_run_findings,
    overview,
    site_info,
)
from dashboard.store import EXTENSION
from dashboard.tests.helpers import NS, logged_in, machine_tags, write_field
from dashboard.tests.test_dashboard_access import callback_payload
from tests.storage.conftest import influx_env  # noqa: F401 - the shared InfluxDB server's fixture (skips without it)

UTC = dt.UTC
POWER_KW = {("north", "l1", "m1"): 10.0, ("north", "l1", "m2"): 20.0, ("south", "s1", "p1"): 5.0}
PLANT = {
    "name": "Test plant",
    "sites": [
        {"id": "north", "name": "North works", "timezone": "UTC", "currency": "EUR", "co2_kg_per_kwh": 0.4,
         "tariff": {"price_per_kwh": 0.2},
         "lines": [{"id": "l1", "machines": [{"id": "m1", "kind": "cnc", "rated_kw": 30},
                                             {"id": "m2", "kind": "cnc", "rated_kw": 30}]}]},
        {"id": "south", "name": "South works", "timezone": "UTC", "currency": "EUR", "co2_kg_per_kwh": 0.3,
         "tariff": {"price_per_kwh": 0.1},
         "lines": [{"id": "s1", "machines": [{"id": "p1", "kind": "compressor", "rated_kw": 10}]}]},
    ],
}


def hour_floor(ns: int) -> int:
    return ns // (3600 * NS) * 3600 * NS


@pytest.fixture(params=["sqlite", pytest.param("influx", marks=[pytest.mark.integration, pytest.mark.influx])])
def backend(request, tmp_path):
    """(store URL, open store or None): the embedded SQLite file, or a fresh bucket on the shared InfluxDB server."""
    if request.param == "sqlite":
        yield str(tmp_path / "plant.db"), None
        return
    import uuid

    from core.storage.influx import InfluxStore
    from core.storage.influx_setup import setup_influx
    from tests.storage.conftest import drop_bucket, influx_settings

    env = request.getfixturevalue("influx_env")  # skips locally, fails in CI, without the server
    settings = influx_settings(env, f"t_{uuid.uuid4().hex[:10]}", tmp_path)
    setup_influx(settings, backfill=False, progress=False)
    store = InfluxStore(settings)
    try:
        yield "influx://test", store
    finally:
        store.close()
        drop_bucket(settings)


@pytest.fixture
def app(backend, users_path):
    """Two sites with constant power for three days up to now (energy registers sampled every 5 min) and one
    analysis run's findings: waste in north and south, a meter gap in north."""
    plant = parse_plant(PLANT, "<test plant>")
    url, shared = backend
    app = create_app(url, users=users_path, plant=plant, tz="UTC", store=shared)
    store = store_of(app)
    now_s = time.time_ns() // NS
    times = np.arange(now_s - 3 * 86400, now_s, 300)
    for (site, line, machine), kw in POWER_KW.items():
        tags = machine_tags(line, machine, site=site)
        write_field(store, "electrical", "energy_kwh", tags, times, 500.0 + kw * (times - times[0]) / 3600.0)
        write_field(store, "electrical", "active_power_kw", tags, times, np.full(len(times), kw))
        write_field(store, "machine_state", "state", tags, times, np.full(len(times), 2))  # running
    store.flush()
    t0 = dt.datetime.fromtimestamp(now_s - 86400, UTC)
    t1 = t0 + dt.timedelta(hours=2)
    results_for(store).write_findings("analyze-test", [
        Event("north/l1/m1", "idle_running", t0, t1, 12.5,
              {"cost": 2.5, "co2_kg": 5.0, "explanation": "m1 idled for 2 h", "currency": "EUR"}),
        Event("north/l1/m2", "meter_gap", t0, t1, 0.0, {"explanation": "m2: meter gap"}),
        Event("south/s1/p1", "off_shift_load", t0, t1, 7.0,
              {"cost": 0.7, "co2_kg": 2.1, "explanation": "p1 ran off shift", "currency": "EUR"}),
    ])
    yield app
    app.server.extensions[EXTENSION].close()


# -- formatting ----------------------------------------------------------------------------------------------------------------
def test_numbers_are_formatted_for_people():
    assert fmt_energy(12.345) == "12.3 kWh" and fmt_energy(1234.5) == "1,234 kWh"
    assert fmt_energy(123_456) == "123.5 MWh" and fmt_energy(3_210_000) == "3.21 GWh"
    assert fmt_money(1234.5, "EUR") == "€ 1,234" and fmt_money(9.5, "CHF") == "9.50 CHF" and fmt_money(87.77, "USD") == "$ 88"
    assert fmt_money(5, None) == "—" and fmt_co2(850) == "850 kg CO₂" and fmt_co2(12_400) == "12.4 t CO₂"


# -- the numbers -------------------------------------------------------------------------------------------------------------
def test_energy_by_hour_comes_from_the_registers(app):
    store = store_of(app)
    info = site_info("north", app.server.config["WATTLINE_DASHBOARD"].plant, UTC)
    stop = hour_floor(time.time_ns()) - 3600 * NS
    start = stop - 48 * 3600 * NS
    hours = energy_by_hour(store, info, start, stop)
    per_machine = hours.groupby("machine")["kwh"].sum()
    assert per_machine["m1"] == pytest.approx(10.0 * 48, rel=1e-9)
    assert per_machine["m2"] == pytest.approx(20.0 * 48, rel=1e-9)
    assert len(hours) == 2 * 48 and set(hours["line"]) == {"l1"}


def test_overview_for_one_site(app):
    store = store_of(app)
    plant = app.server.config["WATTLINE_DASHBOARD"].plant
    now = time.time_ns()
    stop = hour_floor(now) - 3600 * NS
    start = stop - 48 * 3600 * NS
    findings = [e for e in latest_run_findings(store) if e.machine.startswith("north/")]
    ov = overview(store, findings, [site_info("north", plant, UTC)], start, stop, now)
    assert ov.energy_kwh == pytest.approx(30.0 * 48, rel=1e-9)
    assert ov.potential_kwh == 12.5 and ov.potential_cost == 2.5 and ov.currency == "EUR"  # the meter gap is no waste
    assert ov.potential_fraction == pytest.approx(12.5 / (30.0 * 48))
    assert list(ov.by_cause["kind"]) == ["idle_running"] and ov.by_cause["cum_pct"].iloc[-1] == pytest.approx(100)
    assert list(ov.top_machines["machine"]) == ["north/l1/m1"]
    assert ov.flows["kwh"].sum() == pytest.approx(ov.energy_kwh)
    assert ov.heatmap["kw"].max() == pytest.approx(30.0, rel=1e-9)  # mean plant power in any hour
    today = ov.tiles["today"]
    assert today["cost"] == pytest.approx(today["kwh"] * 0.2) and today["co2"] == pytest.approx(today["kwh"] * 0.4)
    assert ov.tiles["7d"]["kwh"] >= ov.tiles["today"]["kwh"] > 0


def test_finding_rows_and_csv(app):
    plant = app.server.config["WATTLINE_DASHBOARD"].plant
    rows = finding_rows(latest_run_findings(store_of(app)), plant, UTC)
    assert [r["machine_name"] for r in rows] == ["m1", "p1", "m2"]  # largest avoidable energy first
    first = rows[0]
    assert first["link"] == "/machine/north/l1/m1" and first["money"] == "€ 2.50" and first["category"] == "Waste"
    assert rows[2]["category"] == "Data quality"
    csv = pd.read_csv(__import__("io").StringIO(findings_csv(rows)))
    assert list(csv["machine"]) == ["m1", "p1", "m2"] and csv["avoidable_kwh"].sum() == pytest.approx(19.5)


def plotly_array(value) -> np.ndarray:
    """A figure array as sent to the browser (Plotly encodes numeric arrays as base64 typed arrays)."""
    import base64

    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
    return np.asarray(value, dtype=float)


# -- callbacks and export as users of one site ------------------------------------------------------------------------------------
OV_OUTPUTS = [(ids.OV_STATUS, "children"), (ids.OV_KPIS, "children"), (ids.OV_POTENTIAL, "children"),
              (ids.OV_PARETO, "figure"), (ids.OV_TOP_MACHINES, "children"), (ids.OV_HEATMAP, "figure"),
              (ids.OV_SANKEY, "figure"), (ids.OV_LATEST, "children")]
GRID_OUTPUTS = [(ids.FINDINGS_GRID, "rowData"), (ids.FINDINGS_STATUS, "children"), (ids.FINDINGS_EXPORT, "href"),
                (ids.FINDINGS_LOOP, "children")]


def overview_request(site):
    return callback_payload(OV_OUTPUTS, [(ids.SITE, "value", site), (ids.PERIOD, "value", "7d")])


def grid_request(site, category="all"):
    return callback_payload(GRID_OUTPUTS, [(ids.SITE, "value", site), (ids.PERIOD, "value", "7d"),
                                           (ids.FINDINGS_KIND, "value", category), (ids.FINDINGS_CHANGED, "data", 0),
                                           (ids.ANOMALY_CHANGED, "data", 0)])


def test_findings_callback_shows_only_the_users_site(app):
    anna = logged_in(app, "anna")
    rows = anna.post("/_dash-update-component", json=grid_request("all")).get_json()["response"][ids.FINDINGS_GRID]["rowData"]
    assert sorted(r["machine"] for r in rows) == ["north/l1/m1", "north/l1/m2"]
    forged = anna.post("/_dash-update-component", json=grid_request("south"))
    assert forged.status_code == 204 and forged.data == b""
    carla = logged_in(app, "carla")
    rows = carla.post("/_dash-update-component", json=grid_request("all", "Waste")).get_json()["response"][ids.FINDINGS_GRID]["rowData"]
    assert sorted(r["machine"] for r in rows) == ["north/l1/m1", "south/s1/p1"]


def test_overview_callback_shows_only_the_users_site(app):
    sam = logged_in(app, "sam")
    body = sam.post("/_dash-update-component", json=overview_request("all")).get_data(as_text=True)
    assert "7.0 kWh" in body and "p1" in body and "m1" not in body and "North works" not in body
    assert sam.post("/_dash-update-component", json=overview_request("north")).status_code == 204
    # A second user of the same site gets the cached overview: the same numbers, no second computation.
    from dashboard.cache import cache_of

    hits, misses = cache_of(app).hits, cache_of(app).misses
    again = logged_in(app, "sam").post("/_dash-update-component", json=overview_request("all")).get_data(as_text=True)
    assert cache_of(app).misses == misses and cache_of(app).hits > hits and again == body


def test_export_is_checked_for_site(app):
    anna = logged_in(app, "anna")
    mine = anna.get("/export/findings.csv?site=all&period=7d")
    assert mine.status_code == 200 and mine.mimetype == "text/csv"
    text = mine.get_data(as_text=True)
    assert "m1" in text and "p1" not in text
    assert anna.get("/export/findings.csv?site=south&period=7d").status_code == 403


def test_machine_page_of_another_site_shows_nothing(app):
    anna = logged_in(app, "anna")
    payload = callback_payload([(ids.MACHINE_GRAPH, "figure"), (ids.MACHINE_FINDINGS, "children"),
                                (ids.MACHINE_TITLE, "children"), (ids.MACHINE_STATES, "figure"),
                                (ids.MACHINE_UNIT, "figure")],
                               [(ids.MACHINE_PATH, "data", "south/s1/p1"), (ids.PERIOD, "value", "7d")])
    assert anna.post("/_dash-update-component", json=payload).status_code == 204
    payload["inputs"][0]["value"] = "north/l1/m1"
    body = anna.post("/_dash-update-component", json=payload).get_data(as_text=True)
    assert "idled for 2 h" in body and "12.5 kWh avoidable" in body
    states = json.loads(body)["response"][ids.MACHINE_STATES]["figure"]["data"]
    assert [t["name"] for t in states] == ["running"]
    minutes = plotly_array(states[0]["y"])
    assert len(minutes) >= 24 and np.max(minutes) == pytest.approx(60)  # running every full hour
