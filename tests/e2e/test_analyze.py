"""``wattline analyze`` end to end: a simulated backfill in, the JSON report and stored findings out; bad input gets one
clear line and exit 2 (usage/config) or 1 (runtime), never a traceback."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import pytest

from tests.e2e.test_cli_errors import assert_one_line_error

REPORT_KEYS = ("plant_energy_kwh", "potential", "events", "data_quality", "baselines", "materials", "warnings")


def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wattline", *args], capture_output=True, text=True, timeout=timeout,
                          check=False)


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory):
    """Four days of an 8-machine demo plant with the default waste scenario, and its ground truth."""
    root = tmp_path_factory.mktemp("analyze")
    db, truth = root / "plant.db", root / "truth.json"
    result = run("simulate", "backfill", "--days", "4", "--machines", "8", "--seed", "2", "--start", "2026-03-02",
                 "--store", str(db), "--truth", str(truth), "--quiet")
    assert result.returncode == 0, result.stderr
    return db, json.loads(truth.read_text())


def test_report_has_the_agreed_keys_and_times_with_offsets(backfilled, tmp_path):
    db, truth = backfilled
    out = tmp_path / "r.json"
    result = run("analyze", "--store", str(db), "--json", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    for key in REPORT_KEYS:
        assert key in report, key
    pot = report["potential"]
    for key in ("total_kwh", "fraction", "cost", "co2_kg", "by_cause"):
        assert key in pot, key
    assert set(pot["by_cause"]) == set(truth["by_cause"])
    # Metered energy is the plant's energy (meter faults move a little energy between windows, never much).
    assert report["plant_energy_kwh"] == pytest.approx(truth["plant_energy_kwh"], rel=0.02)
    assert 0 < pot["fraction"] < 0.3
    for ev in report["events"]:
        for key in ("machine", "kind", "start", "end", "excess_kwh", "cost", "co2_kg", "severity", "explanation"):
            assert key in ev, key
        assert dt.datetime.fromisoformat(ev["start"]).utcoffset() is not None
        assert ev["explanation"] and ev["machine"].split("/")[-1] in ev["explanation"]
    # The summary is printed; the run id under which the findings were stored is in the report.
    assert "reduction potential" in result.stdout
    assert report.get("stored_run")


def test_rerun_replaces_the_stored_findings(backfilled, tmp_path):
    from core.storage import open_store
    from core.storage.results import results_for

    db, _ = backfilled
    out = tmp_path / "r.json"
    for _ in range(2):
        result = run("analyze", "--store", str(db), "--json", str(out), "--run", "e2e-run", "--quiet")
        assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    with open_store(str(db)) as store, results_for(store) as results:
        stored = results.query_findings(run="e2e-run")
        runs = {r.run: r for r in results.runs()}
    assert "e2e-run" in runs
    # Waste findings and meter faults, once (the second run replaced the first, it did not add to it).
    assert len(stored) == len(report["events"]) + len(report["data_quality"]) == runs["e2e-run"].findings
    assert {e.kind for e in stored} == {e["kind"] for e in report["events"] + report["data_quality"]}
    first = min(report["events"], key=lambda e: (e["start"], e["machine"], e["kind"]))
    match = [e for e in stored if e.machine == first["machine"] and e.kind == first["kind"]
             and e.start.isoformat() == first["start"]]
    assert match and match[0].excess_kwh == pytest.approx(first["excess_kwh"], rel=1e-6)
    assert match[0].details["explanation"] == first["explanation"]
    # Model outputs of the run, replaced too: actual vs baseline per machine and hour (the machine page), and energy
    # per material and day that adds up to what the report allocated.
    with open_store(str(db)) as store, results_for(store) as results:
        hours = results.read_outputs("baseline", run="e2e-run")
        materials = results.read_outputs("materials", run="e2e-run")
    assert len(hours) == report["machines"] * 4 * 24
    counting = hours.groupby("machine")["good"].apply(lambda g: g.notna().any()).sum()  # production machines
    assert runs["e2e-run"].outputs["baseline"] == len(hours) + counting * 4 * 24  # actual + good (no baseline: below)
    assert hours["actual_kwh"].sum() == pytest.approx(report["plant_energy_kwh"], rel=0.01)
    # Four days are too few for a baseline (168 h needed): the expected energy is unknown, never made up.
    assert report["baselines"] == [] and hours["expected_kwh"].isna().all()
    assert materials["kwh"].sum() == pytest.approx(report["materials_allocation"]["allocated_kwh"], rel=1e-6)
    assert materials["material"].nunique() == report["materials_allocation"]["materials"]


def test_store_without_energy_data(tmp_path):
    from core.model import Point
    from core.storage import open_store

    db = tmp_path / "weather.db"
    with open_store(str(db)) as store:
        store.write([Point("weather", {"site": "north"}, {"outdoor_temp_c": 4.0}, 1_772_400_000_000_000_000)])
        store.flush()
    assert_one_line_error(run("analyze", "--store", str(db)), 1, "no energy data", str(db))


def test_empty_range(backfilled):
    db, _ = backfilled
    assert_one_line_error(run("analyze", "--store", str(db), "--from", "2030-01-01", "--to", "2030-02-01"), 1,
                          "no energy data between", "the store has data from")


def test_reversed_range_is_a_usage_error(backfilled):
    db, _ = backfilled
    assert_one_line_error(run("analyze", "--store", str(db), "--from", "2026-03-04", "--to", "2026-03-03"), 2,
                          "--to", "not after")


def test_bad_time(backfilled):
    db, _ = backfilled
    assert_one_line_error(run("analyze", "--store", str(db), "--from", "yesterday"), 2, "--from", "yesterday")


def test_plant_file_with_unknown_machines(backfilled, tmp_path):
    db, _ = backfilled
    plant = tmp_path / "plant.yaml"
    plant.write_text("sites:\n  - id: east\n    lines:\n      - id: l9\n        machines:\n"
                     "          - {id: press-01, kind: other, rated_kw: 10}\n")
    assert_one_line_error(run("analyze", "--store", str(db), "--plant", str(plant)), 2, str(plant), "east/l9/press-01")


def test_invalid_plant_file_names_file_and_key(backfilled, tmp_path):
    db, _ = backfilled
    plant = tmp_path / "plant.yaml"
    plant.write_text("sites:\n  - id: north\n    lines:\n      - id: l1\n        machines:\n"
                     "          - {id: cnc-01, kind: lathe, rated_kw: 10}\n")
    assert_one_line_error(run("analyze", "--store", str(db), "--plant", str(plant)), 2, str(plant), "lathe")


def test_missing_store(tmp_path):
    assert_one_line_error(run("analyze", "--store", str(tmp_path / "nope.db")), 2, "nope.db", "does not exist")


PLANT = """
name: Test works
sites:
  - id: east
    timezone: Europe/Vienna
    currency: EUR
    calendar: {shifts: 2, first_shift_start: "06:00", shift_hours: 8, breaks: [{after_h: 3.0, minutes: 30}]}
    tariff: {price_per_kwh: 0.18, demand_charge_per_kw: 12.0}
    co2_kg_per_kwh: 0.2
    lines:
      - id: m1
        machines:
          - {id: lathe-01, kind: cnc, rated_kw: 25, simulation: {air_m3_min: 0.3}}
          - {id: lathe-02, kind: cnc, rated_kw: 18, simulation: {air_m3_min: 0.3}}
          - {id: belt-01, kind: conveyor, rated_kw: 4}
      - id: util
        machines:
          - {id: air-01, kind: compressor, rated_kw: 30, capacity_m3_min: 5}
          - {id: lights-01, kind: lighting, rated_kw: 12}
"""


def test_own_plant_file_and_no_plant_file(tmp_path):
    """A plant that is not the demo plant: with --plant its tariff and CO2 factor price the findings; without it the
    analysis still runs and names the causes it could not assess and why."""
    plant = tmp_path / "plant.yaml"
    plant.write_text(PLANT)
    db = tmp_path / "own.db"
    result = run("simulate", "backfill", "--days", "3", "--plant", str(plant), "--seed", "1", "--start", "2026-03-02",
                 "--store", str(db), "--truth", str(tmp_path / "t.json"), "--quiet")
    assert result.returncode == 0, result.stderr
    with_plant, without = tmp_path / "a.json", tmp_path / "b.json"
    assert run("analyze", "--store", str(db), "--plant", str(plant), "--json", str(with_plant), "--quiet").returncode == 0
    result = run("analyze", "--store", str(db), "--json", str(without), "--quiet")
    assert result.returncode == 0, result.stderr
    a, b = json.loads(with_plant.read_text()), json.loads(without.read_text())
    assert a["plant_energy_kwh"] == pytest.approx(b["plant_energy_kwh"], rel=1e-6)
    assert a["potential"]["currency"] == "EUR" and a["potential"]["cost"] is not None
    for ev in a["events"]:
        assert ev["co2_kg"] == pytest.approx(0.2 * ev["excess_kwh"], rel=1e-3)
        assert dt.datetime.fromisoformat(ev["start"]).utcoffset() is not None
    names = {w["name"] for w in b["warnings"]}
    assert "analytics.causes.off_shift_load.no_calendar" in names
    assert "analytics.causes.air_leak.no_compressor" in names
    assert "analytics.potential.no_tariff" in names
    assert b["potential"]["cost"] is None and b["potential"]["co2_kg"] is None
