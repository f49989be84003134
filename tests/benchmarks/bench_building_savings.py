"""Savings on building-style meters: ``wattline savings`` against OpenEEmeter on the same data, known 10 % savings.

Each seed draws a synthetic building (``simulator/building.py``: heating and cooling balance points with thermal lag,
weekly occupancy and holidays, autocorrelated noise; a year of baseline, 10 % savings over the whole reporting year),
writes it as a utility CSV, imports it with the real ``wattline import csv`` (``docs/examples/building-meter.yaml``)
and runs the real ``wattline savings`` on the store; OpenEEmeter (``eemeter``, the ``bench`` extra) fits its daily
model (CalTRACK 2.0 daily) on the same hourly energy and temperature summed per day. Reported per seed and summarised:
the error of each savings fraction against the truth [percentage points] and the width of each 90 % interval of the
reporting period's savings [kWh and % of the adjusted baseline]. OpenEEmeter's interval is its daily prediction
interval (``predicted_unc``, alpha 0.1, lag-1 effective sample size) summed in quadrature over the reporting days, as
its billing model aggregates it.

    python tests/benchmarks/bench_building_savings.py --seeds 10 --out /tmp/bench_building.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from simulator.building import building_meter, write_meter_csv  # noqa: E402

MAPPING = ROOT / "docs" / "examples" / "building-meter.yaml"
INTERVENTION = dt.date(2024, 1, 1)


def ours(frame: pd.DataFrame, tmp: Path, reporting_days: int | None) -> dict:
    """``wattline import csv`` and ``wattline savings`` (subprocesses, as a user runs them); the JSON result."""
    csv, db, out = tmp / "meter.csv", tmp / "meter.db", tmp / "savings.json"
    write_meter_csv(frame, csv)
    extra = ["--reporting-days", str(reporting_days)] if reporting_days else []
    for args in (["import", "csv", str(csv), "--mapping", str(MAPPING), "--store", str(db)],
                 ["savings", "--store", str(db), "--scope", "office", "--intervention", INTERVENTION.isoformat(),
                  "--json", str(out), *extra]):
        done = subprocess.run([sys.executable, "-m", "wattline", *args], capture_output=True, text=True, check=False)
        if done.returncode:
            raise RuntimeError(f"wattline {args[0]} failed: {done.stderr.strip() or done.stdout.strip()}")
    return json.loads(out.read_text())


def ours_in_process(frame: pd.DataFrame, tmp: Path, reporting_days: int | None) -> dict:
    """The same as :func:`ours` in this process (the importer and ``Savings`` the commands call; seconds instead of
    a minute per seed, for many seeds): the result with the formula's half-widths before the inflation."""
    from analytics.data import IntervalData
    from analytics.savings import Savings, SavingsSettings
    from core.importer import import_csv, read_mapping
    from core.storage import open_store

    csv = tmp / "meter.csv"
    write_meter_csv(frame, csv)
    with open_store(str(tmp / "meter.db")) as store:
        import_csv(csv, read_mapping(MAPPING), store)
        t0 = frame["start"].iloc[0].to_pydatetime()
        data = IntervalData.from_store(store, None, t0, t0 + dt.timedelta(days=731), resolution_s=900, progress=False)
    return Savings(SavingsSettings(scope="office", intervention=INTERVENTION, reporting_days=reporting_days)).fit(data).to_dict()


def openeemeter(frame: pd.DataFrame, reporting_days: int | None) -> dict:
    """OpenEEmeter's daily model on the same data: savings, fraction and its 90 % interval half-width [kWh]."""
    from eemeter.eemeter import DailyBaselineData, DailyModel, DailyReportingData

    start = frame["start"]
    t_int = pd.Timestamp(INTERVENTION, tz="UTC")
    t_end = t_int + pd.Timedelta(days=reporting_days) if reporting_days else start.iloc[-1] + pd.Timedelta(hours=1)
    # Hourly energy and temperature as they are; OpenEEmeter sums them per day itself (given daily series, its
    # granularity check fails under pandas 3: a Day offset no longer compares with a Timedelta).
    hourly = frame.set_index("start")
    temp_f = hourly["temp_c"] * 9 / 5 + 32  # OpenEEmeter takes °F
    base, rep = hourly.index < t_int, (hourly.index >= t_int) & (hourly.index < t_end)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bd = DailyBaselineData.from_series(hourly["kwh"][base], temp_f[base], is_electricity_data=True)
        rd = DailyReportingData.from_series(hourly["kwh"][rep], temp_f[rep], is_electricity_data=True)
        model = DailyModel().fit(bd, ignore_disqualification=True)
        pred = model.predict(rd, ignore_disqualification=True)
    expected, actual = float(pred["predicted"].sum()), float(pred["observed"].sum())
    half = float(np.sqrt((pred["predicted_unc"] ** 2).sum()))
    return {"baseline_kwh": expected, "actual_kwh": actual, "savings_kwh": expected - actual,
            "fraction": (expected - actual) / expected, "half_90_kwh": half,
            "model": sorted(set(pred["model_type"].dropna()))}


def one_seed(seed: int, reporting_days: int | None, only: str | None = None) -> dict:
    """Both estimates of building ``seed`` (``only``: ``ours``, in this process, or ``openeemeter``)."""
    frame, truth = building_meter(seed)
    row: dict = {"seed": seed, "true_fraction": truth["savings_fraction"], "building": truth,
                 "noise_floor_pp": noise_floor_pp(frame, reporting_days)}
    if only != "openeemeter":
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            r = (ours_in_process if only == "ours" else ours)(frame, Path(tmp), reporting_days)
            t_ours = time.perf_counter() - t0
        lo, hi = r["savings_interval_90_kwh"]
        row["ours"] = {"fraction": r["savings_fraction"], "savings_kwh": r["savings_kwh"], "baseline_kwh": r["baseline_kwh"],
                       "half_90_kwh": (hi - lo) / 2, "model": r["model"]["type"], "cv_rmse": r["cv_rmse"],
                       "rho": r["rho"], "inflation": r["inflation"], "half_width_kwh": r.get("half_width_kwh"),
                       "hurst": r.get("hurst"), "seconds": t_ours}
    if only != "ours":
        t0 = time.perf_counter()
        row["openeemeter"] = dict(openeemeter(frame, reporting_days), seconds=time.perf_counter() - t0)
    for k in ("ours", "openeemeter"):
        if k not in row:
            continue
        x = row[k]
        x["error_pp"] = 100 * (x["fraction"] - row["true_fraction"])
        x["half_90_pct"] = 100 * x["half_90_kwh"] / x["baseline_kwh"]
        # Truth inside the 90 % interval: the true savings are the true fraction of the counterfactual (the adjusted
        # baseline the estimate should have), i.e. actual / (1 - fraction) - actual.
        actual = x["baseline_kwh"] - x["savings_kwh"]
        true_kwh = actual * row["true_fraction"] / (1 - row["true_fraction"])
        x["covered_90"] = bool(abs(x["savings_kwh"] - true_kwh) <= x["half_90_kwh"])
    return row


def noise_floor_pp(frame: pd.DataFrame, reporting_days: int | None) -> float:
    """Error of an oracle that knows the building's physics exactly (the noise-free load) and takes its level from
    the baseline period, as any model fitted there does, as points of the savings fraction: the two periods' realised
    noise (autocorrelated from day to day, so a year's mean is not zero), which no model can predict [pp]."""
    t_int = pd.Timestamp(INTERVENTION, tz="UTC")
    t_end = t_int + pd.Timedelta(days=reporting_days) if reporting_days else frame["start"].iloc[-1] + pd.Timedelta(hours=1)
    base = frame["start"] < t_int
    rep = (frame["start"] >= t_int) & (frame["start"] < t_end)
    level = frame["unfixed_kwh"][base].sum() / frame["clean_kwh"][base].sum()
    expected = level * frame["clean_kwh"][rep].sum()
    return float(100 * (expected - frame["unfixed_kwh"][rep].sum()) / expected)


def summarize(rows: list[dict]) -> dict:
    floor = np.array([abs(r["noise_floor_pp"]) for r in rows if "noise_floor_pp" in r])
    out: dict = {"seeds": len(rows), "noise_floor_pp_median": float(np.median(floor)) if len(floor) else None,
                 "noise_floor_within_1pp": float(np.mean(floor <= 1)) if len(floor) else None}
    both = all("openeemeter" in r and "ours" in r for r in rows)
    for k in ("ours", "openeemeter"):
        if not all(k in r for r in rows):
            continue
        err = np.array([abs(r[k]["error_pp"]) for r in rows])
        half = np.array([r[k]["half_90_pct"] for r in rows])
        out[k] = {"error_pp_median": float(np.median(err)), "error_pp_mean": float(err.mean()),
                  "error_pp_max": float(err.max()), "within_1pp": float(np.mean(err <= 1)),
                  "bias_pp": float(np.mean([r[k]["error_pp"] for r in rows])),
                  "half_90_pct_median": float(np.median(half)), "coverage_90": float(np.mean([r[k]["covered_90"] for r in rows])),
                  "seconds_median": float(np.median([r[k]["seconds"] for r in rows]))}
    # Our interval without the industrial inflation (the formula as written) and the inflation that would make our
    # 90 % interval cover 90 % of these seeds.
    if "ours" in out:
        ratio = np.array([abs(r["ours"]["error_pp"]) / (r["ours"]["half_90_pct"] / r["ours"]["inflation"]) for r in rows])
        out["ours"]["coverage_90_formula_as_written"] = float(np.mean(ratio <= 1))
        out["ours"]["inflation_for_90"] = float(np.quantile(ratio, 0.9))
    if not both:
        return out
    out["ours_narrower_or_equal"] = float(np.mean([r["ours"]["half_90_kwh"] <= r["openeemeter"]["half_90_kwh"] for r in rows]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--reporting-days", type=int, default=None, help="default: the whole reporting year")
    ap.add_argument("--only", choices=("ours", "openeemeter"), default=None,
                    help="one estimate only: ours in this process (importer and Savings as the commands call them), "
                         "or OpenEEmeter's")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        rows.append(one_seed(seed, args.reporting_days, args.only))
        o, e = rows[-1].get("ours"), rows[-1].get("openeemeter")
        print(f"seed {seed}: truth {100 * rows[-1]['true_fraction']:.2f} %"
              + (f"; ours {100 * o['fraction']:.2f} % (+-{o['half_90_pct']:.2f}, {o['model']})" if o else "")
              + (f"; OpenEEmeter {100 * e['fraction']:.2f} % (+-{e['half_90_pct']:.2f})" if e else ""), flush=True)
        if args.out:
            args.out.write_text(json.dumps(rows, indent=1, default=str))
    print(json.dumps(summarize(rows), indent=1))


if __name__ == "__main__":
    main()
