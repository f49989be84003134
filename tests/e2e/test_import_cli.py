"""``wattline import csv``: the shipped steel-plant mapping on the real data, and bad input on the command line."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

from core.model import to_ns
from core.storage.sqlite import SQLiteStore
from tests.support import unavailable

REPO = Path(__file__).resolve().parents[2]
STEEL = REPO.parent / "shared" / "data" / "steel-industry" / "Steel_industry_data.csv"
STEEL_MAPPING = REPO / "docs" / "examples" / "steel-industry.yaml"


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wattline", *args], check=False, capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)


def test_the_steel_plant_year_imports_with_the_shipped_mapping(tmp_path):
    if not STEEL.exists():
        unavailable(f"the shared steel-plant data is not at {STEEL}")
    with STEEL.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    csv_kwh = math.fsum(float(r["Usage_kWh"]) for r in rows)
    db = tmp_path / "steel.db"

    result = run("import", "csv", str(STEEL), "--mapping", str(STEEL_MAPPING), "--store", str(db))
    assert result.returncode == 0, result.stderr
    assert f"{len(rows):,} rows" in result.stdout and "2018-01-01T00:15+09:00 .. 2019-01-01T00:00+09:00" in result.stdout

    assert len(rows) == 35_040
    with SQLiteStore(db) as store:
        energy = store.query("electrical", "energy_kwh", 0, 2**62, tags={"machine": "plant-meter"})
        load = store.query("load_type", "code", 0, 2**62)
        pf = store.query("electrical", "power_factor_lagging", 0, 2**62)
    # One opening reading plus one register value per row; the register's increase is the file's energy.
    assert len(energy) == len(rows) + 1 and len(load) == len(rows)
    assert energy["value"].iloc[-1] - energy["value"].iloc[0] == csv_kwh == energy["value"].max()
    assert (energy["value"].diff().dropna() >= 0).all()
    # Korea is UTC+9 all year: the first interval ends at 00:15 on 1 January, the last ("31/12/2018 00:00") at 24:00.
    assert energy["time"].iloc[0].value == to_ns("2018-01-01T00:00:00+09:00")
    assert load["time"].iloc[0].value == to_ns("2018-01-01T00:15:00+09:00")
    assert load["time"].iloc[-1].value == to_ns("2019-01-01T00:00:00+09:00")
    # Every stamp is 15 minutes after the one before, midnight rows included.
    assert set(load["time"].diff().dropna().dt.total_seconds()) == {900.0}
    # "1/1/2018 0:00" (file line 97) is the interval ending at midnight after 1 January.
    assert rows[95]["date"] == "1/1/2018 0:00"
    at_midnight = energy[energy["time"] == "2018-01-02T00:00:00+09:00"]["value"].iloc[0]
    assert at_midnight == math.fsum(float(r["Usage_kWh"]) for r in rows[:96])
    # Percent in the file, 0-1 in the store; Load_Type as codes.
    assert pf["value"].iloc[0] == float(rows[0]["Lagging_Current_Power_Factor"]) / 100
    codes = {"Light_Load": 0, "Medium_Load": 1, "Maximum_Load": 2}
    assert load["value"].tolist() == [codes[r["Load_Type"]] for r in rows]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


MAPPING = """\
time: {column: ts, zone: UTC}
tags: {site: s1, line: l1, machine: m1}
columns:
  - {column: kwh, to: electrical.energy_kwh, kind: interval}
"""


def test_good_file_prints_one_summary_line(tmp_path):
    data = write(tmp_path / "m.csv", "ts,kwh\n2024-01-01T00:15,1.5\n2024-01-01T00:30,2\n")
    result = run("import", "csv", str(data), "--mapping", str(write(tmp_path / "m.yaml", MAPPING)),
                 "--store", str(tmp_path / "s.db"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1 and "2 rows" in result.stdout and "electrical.energy_kwh +3.50" in result.stdout


def test_bad_rows_exit_2_with_line_numbers_and_no_store_is_created(tmp_path):
    data = write(tmp_path / "m.csv", "ts,kwh\n2024-01-01T00:15,1.5\n2024-01-01T00:30,two\nyesterday,2\n")
    db = tmp_path / "s.db"
    result = run("import", "csv", str(data), "--mapping", str(write(tmp_path / "m.yaml", MAPPING)), "--store", str(db))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert "2 of 3 rows are bad; nothing was written" in lines[0]
    assert lines[1].startswith(f"{data}:3: column 'kwh': 'two' is not a number")
    assert lines[2].startswith(f"{data}:4: time 'yesterday' does not match format 'ISO8601'")
    assert not db.exists()


def test_bad_mapping_exits_2_naming_file_line_and_key(tmp_path):
    data = write(tmp_path / "m.csv", "ts,kwh\n2024-01-01T00:15,1.5\n")
    bad = write(tmp_path / "m.yaml", MAPPING.replace("kind: interval", "kind: intervals"))
    result = run("import", "csv", str(data), "--mapping", str(bad), "--store", str(tmp_path / "s.db"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{bad}:4: columns[0].kind: 'intervals' is not valid; valid options:" in result.stderr


def test_analyze_on_the_steel_plant_reports_no_invented_potential(tmp_path):
    """A lone plant meter without states, counts or a calendar: the analytics must not call ordinary day-to-day
    variation "excess specific energy" (they once reported 79.6 % of the year); they say what they cannot assess."""
    if not STEEL.exists():
        unavailable(f"the shared steel-plant data is not at {STEEL}")
    import json

    db, report = tmp_path / "steel.db", tmp_path / "steel.json"
    assert run("import", "csv", str(STEEL), "--mapping", str(STEEL_MAPPING), "--store", str(db)).returncode == 0
    result = run("analyze", "--store", str(db), "--plant", str(REPO / "docs" / "examples" / "steel-plant.yaml"),
                 "--json", str(report), timeout=300)
    assert result.returncode == 0, result.stderr
    data = json.loads(report.read_text())
    assert round(data["plant_energy_kwh"], 2) == 959_636.71
    assert data["potential"]["total_kwh"] == 0 and data["events"] == []
    assert data["potential"]["currency"] == "KRW"
    names = {w["name"] for w in data["warnings"]}
    assert "analytics.causes.excess_specific_energy.no_driver" in names
    # The baselines were fitted and scored on the year's hourly data (a time-ordered hold-out of 2,190 h and more).
    assert data["baselines"] and all(b["n"] > 8000 for b in data["baselines"])
