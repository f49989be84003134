"""``wattline savings`` end to end: a simulated backfill with a scenario fix (idling stopped on one machine from a date
on), then the command; the savings agree with the ground truth's avoided energy. Bad input gets one clear line and
exit 2 (usage) or 1 (runtime)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import pytest

from tests.e2e.test_cli_errors import assert_one_line_error

START = dt.date(2026, 1, 5)
FIX = dt.date(2026, 3, 2)  # eight weeks of baseline
REPORTING_DAYS = 28
KEYS = ("scope", "baseline_period", "reporting_period", "baseline_kwh", "actual_kwh", "savings_kwh", "savings_fraction",
        "fsu_68", "fsu_90", "cv_rmse", "nmbe", "passes_g14", "warnings")


def run(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wattline", *args], capture_output=True, text=True, timeout=timeout,
                          check=False)


@pytest.fixture(scope="module")
def fixed_plant(tmp_path_factory):
    """Twelve weeks of the 3-machine demo plant (cnc-01, imm-01, furnace-01 on site north); idling stopped on both
    production machines from ``FIX`` on."""
    root = tmp_path_factory.mktemp("savings")
    scenario = root / "fix.yaml"
    scenario.write_text("name: fix-idling\nfixes:\n  - cause: idle_running\n    machines: [cnc-01, imm-01]\n"
                        f"    date: {FIX.isoformat()}\n", encoding="utf-8")
    db, truth = root / "plant.db", root / "truth.json"
    days = (FIX - START).days + REPORTING_DAYS + 1
    result = run("simulate", "backfill", "--days", str(days), "--machines", "3", "--seed", "4", "--start",
                 START.isoformat(), "--resolution", "900", "--scenario", str(scenario), "--store", str(db),
                 "--truth", str(truth), "--quiet")
    assert result.returncode == 0, result.stderr
    return db, json.loads(truth.read_text())


def test_savings_of_a_fix_match_the_ground_truth(fixed_plant, tmp_path):
    db, truth = fixed_plant
    out = tmp_path / "savings.json"
    result = run("savings", "--store", str(db), "--scope", "north", "--intervention", FIX.isoformat(),
                 "--reporting-days", str(REPORTING_DAYS), "--json", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    for key in KEYS:
        assert key in report
    assert report["reporting_period"] == [FIX.isoformat(), (FIX + dt.timedelta(days=REPORTING_DAYS)).isoformat()]
    period, left_out = report["reporting_period"], set(report["reporting_days_left_out"])  # days with meter faults
    true_kwh = sum(c - a for machine in truth["fixes"]["machines"].values()
                   for d, (a, c) in machine["daily"].items() if period[0] <= d < period[1] and d not in left_out)
    assert true_kwh > 0  # the fix removed real waste
    lo, hi = report["savings_interval_90_kwh"]
    assert lo <= true_kwh <= hi
    true_fraction = true_kwh / (report["actual_kwh"] + true_kwh)
    assert abs(report["savings_fraction"] - true_fraction) < 0.05
    assert report["co2_kg"] == pytest.approx(report["savings_kwh"] * 0.4, rel=0.3)  # the demo plant's grid factor
    assert "savings at north" in result.stdout


def test_naming_the_cause_takes_the_other_causes_findings_out_of_both_periods(fixed_plant, tmp_path):
    """``--cause idle_running`` (what the fix addressed): the other causes the analytics find are taken out of both
    periods (non-routine adjustment, reported with its energy per period); the truth stays inside the 90 % interval."""
    db, truth = fixed_plant
    out = tmp_path / "savings.json"
    result = run("savings", "--store", str(db), "--scope", "north", "--intervention", FIX.isoformat(),
                 "--reporting-days", str(REPORTING_DAYS), "--cause", "idle_running", "--json", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    adj = report["non_routine_adjustment"]
    assert adj["causes"] == ["idle_running"] and "idle_running" not in adj["other_causes_removed_kwh"]
    assert adj["baseline_kwh"] >= 0 and adj["reporting_kwh"] >= 0
    assert any(w["name"] == "analytics.savings.non_routine_adjustment" for w in report["warnings"])
    period, left_out = report["reporting_period"], set(report["reporting_days_left_out"])
    true_kwh = sum(c - a for machine in truth["fixes"]["machines"].values()
                   for d, (a, c) in machine["daily"].items() if period[0] <= d < period[1] and d not in left_out)
    lo, hi = report["savings_interval_90_kwh"]
    assert lo <= true_kwh <= hi
    bad = run("savings", "--store", str(db), "--scope", "north", "--intervention", FIX.isoformat(), "--cause", "idling")
    assert_one_line_error(bad, 2, "idling", "idle_running")


def test_unknown_scope_lists_the_valid_ones(fixed_plant):
    db, _ = fixed_plant
    result = run("savings", "--store", str(db), "--scope", "north/l9", "--intervention", FIX.isoformat())
    assert_one_line_error(result, 2, "north/l1/cnc-01", "north/l9", "valid scopes")


def test_intervention_outside_the_data(fixed_plant):
    db, _ = fixed_plant
    result = run("savings", "--store", str(db), "--scope", "north", "--intervention", "2027-01-01")
    assert_one_line_error(result, 2, "outside", "2027-01-01")


def test_too_little_baseline_is_a_runtime_error(fixed_plant):
    db, _ = fixed_plant
    early = (START + dt.timedelta(days=5)).isoformat()
    result = run("savings", "--store", str(db), "--scope", "north/l1/cnc-01", "--intervention", early)
    assert_one_line_error(result, 1, "complete days before the intervention")


def test_bad_date_is_a_usage_error(fixed_plant):
    db, _ = fixed_plant
    result = run("savings", "--store", str(db), "--scope", "north", "--intervention", "16/02/2026")
    assert_one_line_error(result, 2, "YYYY-MM-DD", "16/02/2026")


def test_fix_truth_is_the_difference_to_a_run_without_it():
    """The manifest's avoided energy is exactly what the same run without the fix uses more; nothing else changes."""
    from simulator.engine import Simulation
    from simulator.plant import default_plant
    from simulator.scenario import Fix, read_scenario
    from simulator.timeline import day_number

    plant = default_plant(12)
    first = day_number(START)
    base = read_scenario()
    fixed = base.model_copy(update={"fixes": (Fix(cause="idle_running", machines=("cnc-01", "north/l1/cnc-02"),
                                                  date=START + dt.timedelta(days=10)),)})
    runs = []
    for scenario in (base, fixed):
        sim = Simulation(plant, scenario, seed=3, step_s=900, start_day=first, run_days=21)
        for day in range(first, first + 21):
            sim.render(day)
        runs.append(sim.manifest())
    without, with_fix = runs
    assert "fixes" not in without  # default output unchanged
    assert with_fix["intensity"] == without["intensity"]
    avoided = with_fix["fixes"]["avoided_kwh"]
    assert avoided > 0
    assert without["plant_energy_kwh"] - with_fix["plant_energy_kwh"] == pytest.approx(avoided, rel=1e-6, abs=1e-3)
    for path, energy in without["machine_energy_kwh"].items():
        saved = with_fix["fixes"]["machines"].get(path, {}).get("avoided_kwh", 0.0)
        assert energy - with_fix["machine_energy_kwh"][path] == pytest.approx(saved, abs=1e-3)
    daily = with_fix["fixes"]["machines"]["north/l1/cnc-01"]["daily"]
    fix_day = (START + dt.timedelta(days=10)).isoformat()
    assert all(a == pytest.approx(c) for d, (a, c) in daily.items() if d < fix_day)  # nothing saved before the fix
    assert not any(e["kind"] == "idle_running" and e["machine"] == "north/l1/cnc-01" and e["start"][:10] > fix_day
                   for e in with_fix["events"])
