"""Coverage of the savings intervals and error of the savings fraction on simulator runs with known savings.

Each run backfills a small plant (the first ``--machines`` machines of the default plant: CNC and injection moulding
lines) into a fresh embedded store with one scenario fix (idle running stopped on cnc-01 and imm-01, wrong setpoints
stopped on imm-02 from the intervention day on), reads it back with ``IntervalData.from_store`` (what a plant would give
the analytics) and computes the savings of every fixed machine and of both lines over a 90-day reporting period. The
truth is the manifest's avoided energy per local day (the engine renders the fixed machines again without the fix).

Reported: how often the true savings fall inside the 68 % and 90 % intervals (Guideline 14 on daily residuals, on
hourly residuals, and the daily one with an inflation measured on the first half of the seeds and tested on the
second half), and the error of the savings fraction [percentage points].

    python tests/benchmarks/bench_savings.py --runs 24 --out /tmp/bench_savings.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from analytics.data import IntervalData
from analytics.errors import AnalyticsError
from analytics.savings import Savings, SavingsSettings
from core.storage import open_store
from simulator.backfill import backfill
from simulator.plant import default_plant
from simulator.scenario import Fix, read_scenario

FIXES = (("idle_running", ("cnc-01", "imm-01")), ("excess_specific_energy", ("imm-02",)))


def true_savings(manifest: dict, members: list[str], period: list[str], left_out: list[str] = ()) -> float:
    """True avoided energy of ``members`` over the local days ``[period[0], period[1])`` that the estimate used
    (days with a meter fault are ``left_out``) [kWh]."""
    total = 0.0
    skip = set(left_out)
    for path in members:
        days = manifest.get("fixes", {}).get("machines", {}).get(path, {}).get("daily", {})
        total += sum(c - a for d, (a, c) in days.items() if period[0] <= d < period[1] and d not in skip)
    return total


def one_run(seed: int, machines: int, baseline_days: int, reporting_days: int, step_s: int) -> list[dict]:
    plant = default_plant(machines)
    start = dt.date(2025, 1, 6) + dt.timedelta(days=7 * (seed % 20))  # seasons differ between seeds
    intervention = start + dt.timedelta(days=baseline_days)
    fixes = tuple(Fix(cause=c, machines=m, date=intervention) for c, m in FIXES)
    scenario = read_scenario().model_copy(update={"fixes": fixes})
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(str(Path(tmp) / "run.db"))
        res = backfill(store, plant, baseline_days + reporting_days + 1, scenario, seed=seed, start=start,
                       resolution_s=step_s, progress=False)
        t0 = dt.datetime.combine(start, dt.time(), tzinfo=dt.timezone.utc)
        t1 = t0 + dt.timedelta(days=baseline_days + reporting_days + 1)
        data = IntervalData.from_store(store, plant, t0, t1, resolution_s=900)
        store.close()
    fixed = {ref.path for ref in plant.machines if ref.spec.id in {m for _, ms in FIXES for m in ms}}
    scopes = sorted(fixed) + sorted({p.rsplit("/", 1)[0] for p in fixed})
    for scope in scopes:
        members = [p for p in fixed if p == scope or p.startswith(scope + "/")]
        try:
            r = Savings(SavingsSettings(scope=scope, intervention=intervention, reporting_days=reporting_days)).fit(data).to_dict()
        except AnalyticsError as exc:
            out.append({"seed": seed, "scope": scope, "error": str(exc)})
            continue
        truth = true_savings(res.manifest, members, r["reporting_period"], r["reporting_days_left_out"])
        out.append({"seed": seed, "scope": scope, "model": r["model"]["type"], "estimate_kwh": r["savings_kwh"],
                    "true_kwh": truth, "baseline_kwh": r["baseline_kwh"], "actual_kwh": r["actual_kwh"],
                    "fraction": r["savings_fraction"], "true_fraction": truth / (r["actual_kwh"] + truth),
                    "half": r["half_width_kwh"], "inflation": r["inflation"], "cv_rmse": r["cv_rmse"], "rho": r["rho"], "passes_g14": r["passes_g14"]})
    return out


def coverage(rows: list[dict], method: str, level: str, inflation: float = 1.0) -> float:
    """Share of rows whose true savings lie within the Guideline 14 interval (``half``: the formula's half-widths,
    before any inflation) widened by ``inflation``."""
    hits = [abs(r["estimate_kwh"] - r["true_kwh"]) <= inflation * r["half"][method][level]
            for r in rows if r["half"].get(method)]
    return float(np.mean(hits)) if hits else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=24)
    ap.add_argument("--machines", type=int, default=6)
    ap.add_argument("--baseline-days", type=int, default=182)
    ap.add_argument("--reporting-days", type=int, default=90)
    ap.add_argument("--step", type=int, default=900, help="simulator grid step [s]")
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--summarize", type=Path, nargs="*", default=None, help="only summarise the rows of earlier --out files")
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.summarize:
        rows = []
        for path in args.summarize:
            loaded = json.loads(path.read_text())
            rows += loaded["rows"] if isinstance(loaded, dict) else loaded
    else:
        rows = []
        for seed in tqdm(range(args.first_seed, args.first_seed + args.runs), desc="runs", unit="run"):
            rows += one_run(seed, args.machines, args.baseline_days, args.reporting_days, args.step)
            if args.out:
                args.out.write_text(json.dumps(rows, indent=1))
    print(json.dumps(summarize(rows, args.runs, time.perf_counter() - t0), indent=1))


def summarize(rows: list[dict], runs: int, seconds: float) -> dict:
    ok = [r for r in rows if "error" not in r]
    calib = [r for r in ok if r["seed"] % 2 == 0]
    test = [r for r in ok if r["seed"] % 2 == 1]
    # One factor for both levels, chosen on the even seeds so that their 68 % and 90 % coverages come closest to
    # nominal (least squares over a grid), then tested on the odd seeds.
    grid = np.round(np.arange(1.0, 4.0001, 0.05), 2)
    inflation = float(min(grid, key=lambda k: (coverage(calib, "daily", "0.68", k) - 0.68) ** 2
                          + (coverage(calib, "daily", "0.90", k) - 0.90) ** 2)) if calib else 1.0
    err_pp = np.array([100 * abs(r["fraction"] - r["true_fraction"]) for r in ok])
    summary = {
        "runs": len({r["seed"] for r in rows}), "samples": len(ok), "errors": len(rows) - len(ok), "seconds": round(seconds, 1),
        "coverage_daily": {"68": coverage(ok, "daily", "0.68"), "90": coverage(ok, "daily", "0.90")},
        "coverage_hourly": {"68": coverage(ok, "hourly", "0.68"), "90": coverage(ok, "hourly", "0.90")},
        "coverage_daily_blocks": {"68": coverage(ok, "daily_blocks", "0.68"), "90": coverage(ok, "daily_blocks", "0.90")},
        "inflation_from_even_seeds": inflation,
        "coverage_daily_even_seeds": {"68": coverage(calib, "daily", "0.68"), "90": coverage(calib, "daily", "0.90")},
        "coverage_daily_odd_seeds": {"68": coverage(test, "daily", "0.68"), "90": coverage(test, "daily", "0.90")},
        "coverage_daily_inflated_odd_seeds": {"68": coverage(test, "daily", "0.68", inflation),
                                              "90": coverage(test, "daily", "0.90", inflation)},
        "fraction_error_pp": {"mean": float(err_pp.mean()), "median": float(np.median(err_pp)),
                              "p90": float(np.quantile(err_pp, 0.9)), "within_2pp": float(np.mean(err_pp <= 2))},
        "true_fraction_mean": float(np.mean([r["true_fraction"] for r in ok])),
        "by_scope_kind": {},
    }
    for kind, sel in (("machine", [r for r in ok if r["scope"].count("/") == 2]),
                      ("line", [r for r in ok if r["scope"].count("/") == 1])):
        e = np.array([100 * abs(r["fraction"] - r["true_fraction"]) for r in sel])
        summary["by_scope_kind"][kind] = {"samples": len(sel), "coverage_daily_90": coverage(sel, "daily", "0.90"),
                                          "coverage_daily_68": coverage(sel, "daily", "0.68"),
                                          "fraction_error_pp_median": float(np.median(e)) if len(e) else None,
                                          "within_2pp": float(np.mean(e <= 2)) if len(e) else None}
    return summary


if __name__ == "__main__":
    main()
