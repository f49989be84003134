"""On real meter data (the steel plant's 2018 at 15 min) the baseline beats a time-of-week mean profile on the last
quarter, hourly and monthly. The evaluation is tests/benchmarks/bench_steel.py's (import with the shipped mapping,
time-ordered hold-out); the data are read from ../shared/ and never copied."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tests.support import unavailable

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "tests" / "benchmarks" / "bench_steel.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_steel", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_baseline_beats_the_time_of_week_profile_on_the_steel_plant(tmp_path):
    bench = _bench()
    if not bench.STEEL.exists():
        unavailable(f"the shared steel-plant data is not at {bench.STEEL}")
    result = bench.evaluate(tmp_path)
    assert result["data"]["windows"] == 35040 and result["data"]["test_windows"] == 8760
    ours, ref = result["baseline"], result["reference_time_of_week"]
    # drivers only from the allowed set: calendar slots and the load type, never reactive power, power factor or CO2
    assert set(ours["drivers"]) <= {"time_of_week", "cat:load_type"} and ours["drivers"]
    assert ours["hourly"]["n"] == ref["hourly"]["n"] == 2190
    assert ours["hourly"]["cv_rmse"] < ref["hourly"]["cv_rmse"]
    assert abs(ours["hourly"]["nmbe"]) <= abs(ref["hourly"]["nmbe"])
    assert ours["hourly"]["r2"] > ref["hourly"]["r2"]
    assert ours["monthly"]["cv_rmse"] < ref["monthly"]["cv_rmse"]
    assert abs(ours["monthly"]["nmbe"]) <= abs(ref["monthly"]["nmbe"])
