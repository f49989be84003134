"""Speed and memory of the analytics' data container, meter-fault checks, baselines and EnPIs on a large plant.

A synthetic plant (``--machines`` machines on 10 lines of 2 sites, ``--months`` of 15-min data) is generated in memory
as an interval frame -- production counts, machine states, outdoor temperature and a two-shift calendar pattern --
and timed through ``IntervalData.from_frame``, ``find_meter_faults``, ``Baseline().fit`` (machine, line and site scopes,
driver selection and Guideline 14 hold-out) and ``predict_matrix``, and ``SpecificEnergy().fit``. The store read is
not part of this benchmark (see the storage benchmarks). Peak memory is the process's peak RSS.

Run on demand::

    python tests/benchmarks/bench_baseline.py                      # 200 machines x 12 months
    python tests/benchmarks/bench_baseline.py --grid               # growth with machines and with months
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from analytics.baseline import Baseline  # noqa: E402
from analytics.data import IntervalData  # noqa: E402
from analytics.enpi import SpecificEnergy  # noqa: E402
from analytics.quality import find_meter_faults  # noqa: E402


def synthetic_frame(machines: int, months: int, seed: int = 0) -> pd.DataFrame:
    """Interval frame of a two-shift plant: energy = idle + run power + per-part energy + heating + noise."""
    rng = np.random.default_rng(seed)
    n = int(months * 30.4 * 96)
    t = pd.date_range("2025-01-01", periods=n, freq="15min", tz="UTC")
    hour = t.hour.to_numpy()
    work = (t.day_of_week.to_numpy() < 5) & (hour >= 6) & (hour < 22)
    temp = (9 + 9 * np.sin((np.arange(n) / 96 - 110) / 365 * 2 * np.pi) + 4 * np.sin((hour - 9) / 24 * 2 * np.pi)
            ).astype(np.float32)
    parts = []
    for m in range(machines):
        run = np.where(work & (rng.random(n) < 0.85), 900.0, 0.0)
        idle = np.where(work, 900.0 - run, 0.0)
        good = rng.poisson(np.where(run > 0, rng.uniform(10, 40), 0.0)).astype(np.float32)
        kw = rng.uniform(10, 60)
        energy = (0.1 * kw * (idle + 900 * ~work) / 3600 + 0.6 * kw * run / 3600 + 0.02 * kw * good / 30
                  + 0.01 * kw * np.maximum(15 - temp, 0) * 0.25 + rng.normal(0, 0.02 * kw, n))
        parts.append(pd.DataFrame({
            "machine": f"s{m % 2}/l{m % 10}/m{m:03d}", "time": t, "energy_kwh": energy,
            "s_running": run.astype(np.float32), "s_idle": idle.astype(np.float32),
            "s_off": np.where(work, 0, 900).astype(np.float32), "s_fault": np.float32(0), "good": good,
            "scrap": np.float32(0), "outdoor_temp_c": temp}))
    frame = pd.concat(parts, ignore_index=True)
    frame["machine"] = frame["machine"].astype("category")
    return frame


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(machines: int, months: int) -> dict:
    frame = synthetic_frame(machines, months)
    rss_input = peak_rss_mb()
    timings = {}
    t = time.perf_counter()
    data = IntervalData.from_frame(frame, resolution_s=900)
    timings["container_s"] = time.perf_counter() - t
    del frame
    t = time.perf_counter()
    quality = find_meter_faults(data)
    timings["quality_s"] = time.perf_counter() - t
    t = time.perf_counter()
    baseline = Baseline().fit(data, exclude=quality.mask)
    timings["baseline_fit_s"] = time.perf_counter() - t
    t = time.perf_counter()
    for level in ("machine", "line", "site"):
        baseline.predict_matrix(data, level)
    timings["baseline_predict_s"] = time.perf_counter() - t
    t = time.perf_counter()
    SpecificEnergy().fit(data, exclude=quality.mask)
    timings["enpi_s"] = time.perf_counter() - t
    stats = pd.DataFrame(baseline.statistics())
    return {"machines": machines, "months": months, "windows": len(data.frame), "scopes": len(baseline.models),
            **{k: round(v, 2) for k, v in timings.items()},
            "analytics_total_s": round(sum(timings.values()), 2),
            "passes_g14": int(stats["passes_g14"].sum()), "median_cv_rmse": round(float(stats["cv_rmse"].median()), 4),
            "peak_rss_mb": round(peak_rss_mb()), "peak_rss_after_input_mb": round(rss_input)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=200)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--grid", action="store_true", help="growth: 50/100/200 machines x 12 months, 200 x 3/6 months")
    args = parser.parse_args()
    cases = [(args.machines, args.months)]
    if args.grid:
        cases = [(50, 12), (100, 12), (200, 3), (200, 6), (200, 12)]
    for machines, months in cases:
        # each case in a fresh process so that peak memory is its own
        if len(cases) > 1:
            import subprocess

            out = subprocess.run([sys.executable, __file__, "--machines", str(machines), "--months", str(months)],
                                 capture_output=True, text=True, check=True).stdout
            print(out.strip().splitlines()[-1])
        else:
            result = run(machines, months)
            result.update({"cpus": os.cpu_count(), "date": dt.datetime.now(dt.UTC).date().isoformat()})
            print(json.dumps(result))


if __name__ == "__main__":
    main()
