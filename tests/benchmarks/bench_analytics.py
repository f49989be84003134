"""Score the reduction potential against the simulator's ground truth (run on demand, not in the test suite).

Two ways to get the data:

- ``--via store`` (default): ``wattline simulate backfill --days N --seed S --truth truth.json`` into a fresh SQLite
  store, then ``wattline analyze --json report.json`` on it: the whole pipeline a user runs.
- ``--via direct``: the simulation rendered in-process at 1 min and reduced to 15-min interval data here (fast, for
  iterating on the detectors; same meter signals, faults included).

Scores per seed and scenario: total potential vs truth [percentage points], each cause's kWh vs truth [%], event
precision and recall (a finding matches a true event when machine and kind agree and the spans overlap), energy counted
as waste inside meter-fault windows, and the no-waste scenario's potential.

Usage::

    python tests/benchmarks/bench_analytics.py --seeds 3 4 --scenarios default low high none --days 35 --machines 60
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from core.model import WASTE_KINDS, Event  # noqa: E402

SCENARIOS = Path(__file__).with_name("scenarios")
NS = 1_000_000_000


# -- direct mode: the simulation reduced to interval data in-process ------------------------------------------------------
def simulate_interval_data(plant, scenario, seed: int, days: int, start: dt.date, resolution_s: int = 900):
    """Render ``days`` days at 1 min and reduce them to interval data like a store would (meter faults included).

    Returns (IntervalData, manifest, fine_power callable, fault mask from the truth for scoring only).
    """
    from analytics.data import IntervalData, MachineInfo
    from simulator.engine import Simulation
    from simulator.timeline import day_number

    step = 60
    first = day_number(start)
    sim = Simulation(plant, scenario, seed, step, first, run_days=days)
    n_m = len(plant.machines)
    per = resolution_s // step
    cols = {k: [[] for _ in range(n_m)] for k in ("power", "reg", "state", "good", "scrap", "flow")}
    temps: dict[str, list] = {s.id: [] for s in plant.sites}
    times = []
    for day in range(first, first + days):
        block = sim.render(day)
        times.append(block.times_ns)
        for s in plant.sites:
            temps[s.id].append(block.temperature[s.id])
        for m, sig in enumerate(block.machines):
            cols["power"][m].append(np.round(sig.power, 3))
            cols["reg"][m].append(sig.energy)
            cols["state"][m].append(sig.state)
            cols["good"][m].append(sig.good if sig.good is not None else np.full(len(sig.power), np.nan))
            cols["scrap"][m].append(sig.scrap if sig.scrap is not None else np.full(len(sig.power), np.nan))
            cols["flow"][m].append(sig.flow if sig.flow is not None else np.full(len(sig.power), np.nan))
    t_end = np.concatenate(times)  # stamps mark the end of each minute
    n = len(t_end)
    nw = n // per
    t0 = t_end[0] - step * NS
    win_start = t0 + np.arange(nw) * resolution_s * NS
    frames = []
    fine = {}
    for m, ref in enumerate(plant.machines):
        power = np.concatenate(cols["power"][m])
        reg = np.concatenate(cols["reg"][m]).astype(float)
        state = np.concatenate(cols["state"][m])
        # Energy from the register: deltas with rollover/reset handling; a delta after a gap lands after the gap.
        filled = pd.Series(reg).ffill().to_numpy()
        prev = np.concatenate([[filled[0]], filled[:-1]])
        delta = filled - prev
        rmax = ref.spec.register_max_kwh
        drop = delta < -0.005
        delta = np.where(drop, np.where(prev > rmax / 2, rmax - prev + filled, filled), delta)
        delta[0] = power[0] / 60 if np.isfinite(power[0]) else 0.0
        shape = (nw, per)
        ok = np.isfinite(power)
        frame = {
            "machine": ref.path, "time": pd.DatetimeIndex(win_start, tz="UTC"),
            "energy_kwh": delta[: nw * per].reshape(shape).sum(1),
            "power_mean_kw": np.nanmean(np.where(ok, power, np.nan)[: nw * per].reshape(shape), axis=1),
            "power_max_kw": np.nanmax(np.where(ok, power, -np.inf)[: nw * per].reshape(shape), axis=1),
            "coverage": ok[: nw * per].reshape(shape).mean(1),
        }
        frame["power_max_kw"] = np.where(np.isinf(frame["power_max_kw"]), np.nan, frame["power_max_kw"])
        for code, name in ((0, "s_off"), (1, "s_idle"), (2, "s_running"), (3, "s_fault")):
            frame[name] = (state[: nw * per] == code).reshape(shape).sum(1) * float(step)
        for key, name in (("good", "good"), ("scrap", "scrap")):
            c = np.concatenate(cols[key][m]).astype(float)
            d = np.diff(np.concatenate([[c[0]], c]))
            frame[name] = d[: nw * per].reshape(shape).sum(1)
        fl = np.concatenate(cols["flow"][m]).astype(float)
        frame["air_flow_m3_min"] = fl[: nw * per].reshape(shape).mean(1)
        tmp = np.concatenate(temps[ref.site.id])
        frame["outdoor_temp_c"] = tmp[: nw * per].reshape(shape).mean(1)
        frames.append(pd.DataFrame(frame))
        fine[ref.path] = (t_end - step * NS, power)
    df = pd.concat(frames, ignore_index=True)
    infos = [MachineInfo.from_ref(ref) for ref in plant.machines]

    def fine_power(path, a, b):
        t, p = fine[path]
        i0, i1 = np.searchsorted(t, a), np.searchsorted(t, b)
        return t[i0:i1], p[i0:i1]

    plant_arg = plant if hasattr(plant.sites[0], "tariff") else None
    data = IntervalData.from_frame(df, resolution_s=resolution_s, machines=infos, plant=plant_arg)
    return data, sim.manifest(), fine_power


def truth_fault_mask(data, manifest) -> np.ndarray:
    """Windows touched by a true meter fault (scoring only; the analytics find faults themselves)."""
    mask = np.zeros((len(data.machines), data.n_times), bool)
    idx = {p: i for i, p in enumerate(data.machines)}
    t = data.times_ns
    res = data.resolution_s * NS
    for ev in manifest["events"]:
        ev = ev if isinstance(ev, Event) else Event.from_dict(ev)
        if not ev.kind.startswith("meter_") or ev.machine not in idx:
            continue
        a = int(ev.start.timestamp() * NS)
        b = int(ev.end.timestamp() * NS) + 2 * res  # the window after a stuck/gap gets its catch-up
        mask[idx[ev.machine]] |= (t + res > a - res) & (t < b)
    return mask


# -- scoring ----------------------------------------------------------------------------------------------------------------
def _span(ev) -> tuple[float, float]:
    if isinstance(ev, Event):
        return ev.start.timestamp(), ev.end.timestamp()
    return dt.datetime.fromisoformat(ev["start"]).timestamp(), dt.datetime.fromisoformat(ev["end"]).timestamp()


def score(found: list[dict], manifest: dict, plant_energy: float | None = None) -> dict:
    """Compare findings (dicts in the report's event shape) with the truth manifest."""
    truth = [e if isinstance(e, dict) else e.to_dict() for e in manifest["events"]]
    truth = [e for e in truth if e["kind"] in WASTE_KINDS]
    by_key: dict[tuple, list] = {}
    for e in truth:
        by_key.setdefault((e["machine"], e["kind"]), []).append(_span(e))

    def overlaps(ev, spans):
        a, b = _span(ev)
        b = max(b, a + 1)
        return any(a < tb + 1 and ta < b for ta, tb in spans)

    tp_found = sum(1 for f in found if overlaps(f, by_key.get((f["machine"], f["kind"]), [])))
    found_key: dict[tuple, list] = {}
    for f in found:
        found_key.setdefault((f["machine"], f["kind"]), []).append(_span(f))
    tp_truth = sum(1 for e in truth if overlaps(e, found_key.get((e["machine"], e["kind"]), [])))
    per_kind = {}
    for kind in WASTE_KINDS:
        fk = [f for f in found if f["kind"] == kind]
        tk = [e for e in truth if e["kind"] == kind]
        per_kind[kind] = {
            "true_kwh": round(float(manifest["by_cause"].get(kind, 0.0)), 1),
            "found_kwh": round(float(sum(f["excess_kwh"] for f in fk)), 1),
            "precision": round(sum(1 for f in fk if overlaps(f, by_key.get((f["machine"], kind), []))) / len(fk), 3) if fk else None,
            "recall": round(sum(1 for e in tk if overlaps(e, found_key.get((e["machine"], kind), []))) / len(tk), 3) if tk else None,
            "n_true": len(tk), "n_found": len(fk),
        }
        t = per_kind[kind]["true_kwh"]
        per_kind[kind]["error"] = round(per_kind[kind]["found_kwh"] / t - 1, 3) if t > 0 else None
    energy = plant_energy if plant_energy else manifest["plant_energy_kwh"]
    found_total = sum(f["excess_kwh"] for f in found)
    return {
        "true_fraction": round(manifest["avoidable_fraction"], 5),
        "found_fraction": round(found_total / energy, 5),
        "pp_error": round(100 * (found_total / energy - manifest["avoidable_fraction"]), 3),
        "precision": round(tp_found / len(found), 3) if found else None,
        "recall": round(tp_truth / len(truth), 3) if truth else None,
        "n_found": len(found), "n_true": len(truth),
        "by_cause": per_kind,
    }


# -- runs -------------------------------------------------------------------------------------------------------------------
def scenario_of(name: str):
    from simulator.scenario import no_waste, read_scenario

    if name == "none":
        return no_waste(), None
    if name.startswith("only-"):
        # The default scenario with one waste cause only (meter faults stay on), at the file's sizes (intensity 1).
        sc = read_scenario()
        kind = name[5:]
        update = {k: getattr(sc, k).model_copy(update={"enabled": False}) for k in WASTE_KINDS if k != kind}
        return sc.model_copy(update={**update, "name": name, "avoidable_fraction": None}), None
    if name == "default":
        return read_scenario(), None
    path = SCENARIOS / f"{name}.yaml"
    return read_scenario(path), path


def run_direct(machines: int, scenario: str, seed: int, days: int, start: dt.date) -> dict:
    from analytics.potential import ReductionPotential
    from simulator.plant import default_plant

    plant = default_plant(machines)
    spec, _ = scenario_of(scenario)
    t0 = time.perf_counter()
    data, manifest, fine = simulate_interval_data(plant, spec, seed, days, start)
    t1 = time.perf_counter()
    fault = fault_mask(data)
    model = ReductionPotential().fit(data, fault=fault, fine_power=fine)
    t2 = time.perf_counter()
    found = [e.to_dict() | {"excess_kwh": e.excess_kwh} for e in model.events]
    result = score(found, manifest, model.plant_energy_kwh)
    truth_mask = truth_fault_mask(data, manifest)
    result["waste_in_fault_windows_kwh"] = round(float(sum((ex * truth_mask).sum() for ex in model.excess.values())), 2)
    result.update(seconds_simulate=round(t1 - t0, 1), seconds_analyze=round(t2 - t1, 1))
    return result, model, manifest


def fault_mask(data):
    """Meter-fault windows as the analytics find them (analytics.quality)."""
    from analytics.quality import find_meter_faults

    return find_meter_faults(data).mask


def run_store(machines: int, scenario: str, seed: int, days: int, start: dt.date, workdir: Path) -> dict:
    _, path = scenario_of(scenario)
    db = workdir / f"s{seed}-{scenario}.db"
    truth = workdir / f"s{seed}-{scenario}.truth.json"
    report = workdir / f"s{seed}-{scenario}.report.json"
    exe = [sys.executable, "-m", "wattline"]
    cmd = [*exe, "simulate", "backfill", "--days", str(days), "--seed", str(seed), "--machines", str(machines),
           "--store", str(db), "--truth", str(truth), "--start", start.isoformat(), "--quiet"]
    if path is not None:
        cmd += ["--scenario", str(path)]
    elif scenario == "none":
        none = workdir / "none.yaml"
        none.write_text("name: none\navoidable_fraction: null\nidle_running: {enabled: false}\n"
                        "off_shift_load: {enabled: false}\nexcess_specific_energy: {enabled: false}\n"
                        "air_leak: {enabled: false}\npeak_demand: {enabled: false}\nmeter_faults: {enabled: false}\n")
        cmd += ["--scenario", str(none)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    t1 = time.perf_counter()
    subprocess.run([*exe, "analyze", "--store", str(db), "--json", str(report)], check=True, cwd=ROOT)
    t2 = time.perf_counter()
    rep = json.loads(report.read_text())
    manifest = json.loads(truth.read_text())
    result = score(rep["events"], manifest, rep["plant_energy_kwh"])
    result.update(seconds_simulate=round(t1 - t0, 1), seconds_analyze=round(t2 - t1, 1))
    return result, rep, manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[3])
    ap.add_argument("--scenarios", nargs="+", default=["default"])
    ap.add_argument("--days", type=int, default=35)
    ap.add_argument("--machines", type=int, default=60)
    ap.add_argument("--start", default="2026-03-02")
    ap.add_argument("--via", choices=("store", "direct"), default="store")
    ap.add_argument("--out", type=Path, default=None, help="Append results as JSON lines here.")
    ap.add_argument("--verbose", action="store_true", help="Print misses and false findings.")
    args = ap.parse_args()
    start = dt.date.fromisoformat(args.start)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for sc in args.scenarios:
                if args.via == "direct":
                    result, model, manifest = run_direct(args.machines, sc, seed, args.days, start)
                    events = [e.to_dict() for e in model.events]
                else:
                    result, rep, manifest = run_store(args.machines, sc, seed, args.days, start, Path(tmp))
                    events = rep["events"]
                line = {"seed": seed, "scenario": sc, "days": args.days, "machines": args.machines, "via": args.via,
                        "host": platform.node(), "date": dt.date.today().isoformat(), **result}
                print(json.dumps(line))
                if args.verbose:
                    show_misses(events, manifest)
                if args.out:
                    with open(args.out, "a") as fh:
                        fh.write(json.dumps(line) + "\n")


def show_misses(found: list[dict], manifest: dict) -> None:
    truth = [e if isinstance(e, dict) else e.to_dict() for e in manifest["events"]]
    truth = [e for e in truth if e["kind"] in WASTE_KINDS]
    for e in truth:
        hit = [f for f in found if f["machine"] == e["machine"] and f["kind"] == e["kind"]
               and _span(f)[0] < _span(e)[1] + 1 and _span(e)[0] < max(_span(f)[1], _span(f)[0] + 1)]
        if not hit:
            print("  MISS", e["kind"], e["machine"], e["start"], e["end"], round(e["excess_kwh"], 2), e.get("details", {}).get("reason", ""))
    for f in found:
        hit = [e for e in truth if f["machine"] == e["machine"] and f["kind"] == e["kind"]
               and _span(f)[0] < _span(e)[1] + 1 and _span(e)[0] < max(_span(f)[1], _span(f)[0] + 1)]
        if not hit:
            print("  FALSE", f["kind"], f["machine"], f["start"], f["end"], round(f["excess_kwh"], 2), f.get("details", {}))


if __name__ == "__main__":
    main()
