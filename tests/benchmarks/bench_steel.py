"""Baseline accuracy on real meter data: the steel plant's 2018 electricity at 15 min.

Data: "Steel Industry Energy Consumption", UCI Machine Learning Repository, id 851 (V E Sathishkumar, Changsun Shin,
Youngyun Cho): DAEWOO Steel, Gwangyang, South Korea, all of 2018 at 15-minute intervals. Read from
``../shared/data/steel-industry/`` (never copied into the repository).

The file goes the way a user's would: ``wattline import csv`` with the shipped mapping
(``docs/examples/steel-industry.yaml``) into a fresh embedded store, then ``IntervalData.from_store``. The load type
(a schedule code) is read from the store beside it.

Time-ordered hold-out: the baseline is fitted on the first three quarters of the year (drivers allowed: time of day,
day of week, week status, load type -- not reactive power, power factor or CO2, which are consequences of the energy);
the last quarter is scored hourly and monthly (ASHRAE Guideline 14 CV(RMSE), NMBE, R2, hold-out with p = 1) beside a
reference fitted on the same training data in the same run: the time-of-week mean profile (mean energy per local day
of week and 15-min slot). Run on demand::

    python tests/benchmarks/bench_steel.py [--markdown]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from analytics.baseline import (  # noqa: E402
    Baseline,
    BaselineSettings,
    g14_statistics,
    monthly_totals,
)
from analytics.data import IntervalData, MachineInfo  # noqa: E402
from core.importer import import_csv, read_mapping  # noqa: E402
from core.storage.sqlite import SQLiteStore  # noqa: E402

STEEL = ROOT.parent / "shared" / "data" / "steel-industry" / "Steel_industry_data.csv"
MAPPING = ROOT / "docs" / "examples" / "steel-industry.yaml"
TZ = "Asia/Seoul"
METER = "gwangyang/steel/plant-meter"
#: The year in the file as UTC window starts: 2018-01-01 00:00 to 2019-01-01 00:00 Korean time.
START = pd.Timestamp("2018-01-01", tz=TZ).tz_convert("UTC")
STOP = pd.Timestamp("2019-01-01", tz=TZ).tz_convert("UTC")


def load(store_path: Path) -> IntervalData:
    """Import the CSV with the shipped mapping and read it back as interval data with the load type as a driver."""
    with SQLiteStore(store_path) as store:
        import_csv(STEEL, read_mapping(MAPPING), store)
        data = IntervalData.from_store(store, None, START, STOP, resolution_s=900, timezone=TZ)
        codes = store.aggregate("load_type", "code", START, STOP, every=900, agg="last")
    # Stored stamps are interval ends: the code stamped at t describes the window that ends at t.
    code = pd.Series(codes["value"].to_numpy(), index=pd.DatetimeIndex(codes["time"]) - pd.Timedelta("15min"))
    frame = data.frame.copy()
    frame["load_type"] = code.reindex(pd.DatetimeIndex(frame["time"])).to_numpy()
    frame["machine"] = frame["machine"].astype(str)
    return IntervalData.from_frame(frame, resolution_s=900, start=START, stop=STOP, extra=["load_type"],
                                   machines=[MachineInfo.from_path(METER, timezone=TZ)])


def time_of_week_profile(train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    """The reference: mean energy per local (day of week, 15-min slot) of the training windows [kWh]."""
    def slots(frame: pd.DataFrame) -> pd.Series:
        t = pd.DatetimeIndex(frame["time"]).tz_convert(TZ)
        return pd.Series(t.day_of_week * 96 + t.hour * 4 + t.minute // 15, index=frame.index)

    means = train.groupby(slots(train))["energy_kwh"].mean()
    return slots(test).map(means).to_numpy(dtype=float)


def scores(times_ns: np.ndarray, observed: np.ndarray, predicted: np.ndarray) -> dict:
    """Hourly and monthly Guideline 14 statistics of 15-min predictions (hold-out: p = 1)."""
    hours = pd.DatetimeIndex(times_ns, tz="UTC").floor("h")
    obs_h = pd.Series(observed).groupby(hours).sum().to_numpy()
    pred_h = pd.Series(predicted).groupby(hours).sum().to_numpy()
    hourly = g14_statistics(obs_h, pred_h, 1)
    monthly = g14_statistics(monthly_totals(times_ns, observed, TZ).to_numpy(),
                             monthly_totals(times_ns, predicted, TZ).to_numpy(), 1)
    return {"hourly": hourly, "monthly": monthly}


def evaluate(workdir: Path) -> dict:
    """Fit on the first three quarters, score the last quarter; the baseline and the reference side by side."""
    t0 = time.perf_counter()
    data = load(workdir / "steel.db")
    t_load = time.perf_counter() - t0
    n = data.n_times
    cut = n * 3 // 4
    frame = data.frame
    train_frame, test_frame = frame.iloc[:cut], frame.iloc[cut:]
    cut_time = pd.Timestamp(data.times[cut])
    train = IntervalData.from_frame(train_frame, resolution_s=900, start=START, stop=cut_time, extra=["load_type"],
                                    machines=list(data.machines.values()))
    settings = BaselineSettings(scopes=("machine",), categories=("load_type",))
    t1 = time.perf_counter()
    model = Baseline(settings).fit(train)
    t_fit = time.perf_counter() - t1
    _, expected = model.predict_matrix(data)
    test_times = data.times_ns[cut:]
    observed = test_frame["energy_kwh"].to_numpy(dtype=float)
    baseline_pred = expected[0, cut:]
    reference_pred = time_of_week_profile(train_frame, test_frame)
    m = model.models[f"machine:{METER}"]
    return {
        "data": {"windows": int(n), "energy_kwh": float(np.nansum(frame["energy_kwh"])), "train_until": cut_time.isoformat(),
                 "test_windows": int(n - cut), "warnings": [w.name for w in data.warnings]},
        "baseline": {"drivers": m.groups, "parameters": len(m.columns), **scores(test_times, observed, baseline_pred)},
        "reference_time_of_week": scores(test_times, observed, reference_pred),
        "seconds": {"import_and_read": round(t_load, 2), "fit": round(t_fit, 3)},
    }


def markdown(result: dict) -> str:
    """Table rows for docs/benchmarks.md."""
    def pct(x):
        return "n/a" if x is None else f"{100 * x:.1f} %"

    rows = []
    for name, r in (("baseline (" + " + ".join(result["baseline"]["drivers"]) + ")", result["baseline"]),
                    ("time-of-week mean profile (reference)", result["reference_time_of_week"])):
        rows.append(f"| {name} | {pct(r['hourly']['cv_rmse'])} | {pct(r['hourly']['nmbe'])} | {r['hourly']['r2']:.3f} | "
                    f"{pct(r['monthly']['cv_rmse'])} | {pct(r['monthly']['nmbe'])} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="also print the table rows for docs/benchmarks.md")
    args = parser.parse_args()
    if not STEEL.exists():
        sys.exit(f"the steel-plant data is not at {STEEL}")
    with tempfile.TemporaryDirectory(prefix="wattline-steel-") as tmp:
        result = evaluate(Path(tmp))
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                         "date": dt.datetime.now(dt.UTC).date().isoformat()}
    print(json.dumps(result, indent=2, default=str))
    if args.markdown:
        print(markdown(result))


if __name__ == "__main__":
    main()
