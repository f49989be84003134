"""A building-style meter end to end: hourly energy and outdoor temperature (no production data) as a utility exports
them, imported with ``wattline import csv`` (``docs/examples/building-meter.yaml``), then ``wattline savings``: the
known 10 % savings of the reporting year are found within 1 percentage point, inside the 90 % interval. The synthetic
building (``simulator/building.py``: heating and cooling change-points with thermal lag, weekly occupancy and holidays,
autocorrelated noise, a year of baseline) is one of the benchmark's (``tests/benchmarks/bench_building_savings.py``,
where OpenEEmeter is compared on the same data; docs/benchmarks.md)."""

from __future__ import annotations

import json
from pathlib import Path

from simulator.building import building_meter, write_meter_csv
from tests.e2e.test_savings_cli import KEYS, run

MAPPING = Path(__file__).resolve().parents[2] / "docs" / "examples" / "building-meter.yaml"
SEED = 1


def test_building_meter_savings_within_a_point_of_the_truth(tmp_path):
    frame, truth = building_meter(SEED)
    csv, db, out = tmp_path / "meter.csv", tmp_path / "meter.db", tmp_path / "savings.json"
    write_meter_csv(frame, csv)
    done = run("import", "csv", str(csv), "--mapping", str(MAPPING), "--store", str(db))
    assert done.returncode == 0, done.stderr
    done = run("savings", "--store", str(db), "--scope", "office", "--intervention", truth["intervention"],
               "--json", str(out))
    assert done.returncode == 0, done.stderr
    r = json.loads(out.read_text())
    assert all(k in r for k in KEYS)
    assert r["baseline_days"] == 365 and r["reporting_days"] == 366
    assert r["model"]["type"] == "change_point"  # no production data: the weather model
    assert abs(r["savings_fraction"] - truth["savings_fraction"]) < 0.01
    lo, hi = r["savings_interval_90_kwh"]
    true_kwh = r["actual_kwh"] * truth["savings_fraction"] / (1 - truth["savings_fraction"])
    assert lo <= true_kwh <= hi
    assert r["passes_g14"]
