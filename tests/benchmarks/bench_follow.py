"""Speed of one ``wattline analyze --follow`` step on a real embedded store: read the newest window of every machine,
score it, open and extend events, store the findings.

A SQLite store is filled with ``--machines`` machines (two-shift power with noise at ``--sample-s`` spacing, energy
registers; one machine draws 40 kW more from the last day's 08:00 so an event opens and extends while the steps run)
for ``--days`` days. The follower (:class:`wattline.cli_follow.Follower`) fits on all days but the last, then the last
day arrives window by window (``--steps`` 15-min windows written, then one ``tick`` each): each tick is timed in total
and by part (store read, scoring and events, findings write). Peak memory is the process's peak RSS.

Run on demand (compare two trees by running the same command in each)::

    python tests/benchmarks/bench_follow.py --machines 200 --days 9 --steps 40
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

NS = 1_000_000_000
START_S = 1_740_960_000  # 2025-03-03 00:00 UTC, a Monday
WINDOW_S = 900


def fill(store, machines: int, days: int, sample_s: int, until_s: int, register: dict, seed: int = 0,
         from_s: int = START_S) -> None:
    """Write power and energy of every machine for ``[from_s, until_s)``."""
    from core.model import SeriesKey

    t_s = np.arange(from_s, until_s, sample_s, dtype=np.int64)
    hour = (t_s % 86400) / 3600
    weekday = ((t_s // 86400) + 3) % 7 < 5
    work = weekday & (hour >= 6) & (hour < 22)
    last_day = START_S + (days - 1) * 86400
    for m in range(machines):
        rng = np.random.default_rng((seed, m, from_s))
        kw = 10 + (m % 7) * 3 + np.where(work, 30.0 + (m % 5) * 5, 0.0) + rng.normal(0, 1.0, len(t_s))
        if m == 1:
            kw = kw + np.where(t_s >= last_day + 8 * 3600, 40.0, 0.0)
        tags = {"site": "s1", "line": f"l{m % 10}", "machine": f"m{m:03d}"}
        energy = register.get(m, 1000.0) + np.cumsum(kw) * sample_s / 3600
        register[m] = float(energy[-1])
        store.write_arrays(SeriesKey.of("electrical", tags, "active_power_kw"), t_s * NS, kw)
        store.write_arrays(SeriesKey.of("electrical", tags, "energy_kwh"), t_s * NS, energy)


def run(machines: int, days: int, steps: int, sample_s: int, first_step: int, profile: Path | None = None) -> dict:
    from core.storage import open_store
    from wattline import cli_follow

    out: dict = {"machines": machines, "days": days, "sample_s": sample_s, "machine": f"{platform.machine()}, "
                 f"{os.cpu_count()} cores (shared)", "python": platform.python_version()}
    with tempfile.TemporaryDirectory() as tmp, open_store(str(Path(tmp) / "plant.db")) as store:
        register: dict = {}
        cut = START_S + (days - 1) * 86400 + first_step * WINDOW_S
        t0 = time.perf_counter()
        fill(store, machines, days, sample_s, cut, register)
        out["fill_s"] = round(time.perf_counter() - t0, 1)
        follower = cli_follow.Follower(store, None, history_days=days, run="bench", echo=lambda _line: None)
        t0 = time.perf_counter()
        follower.start()
        out["fit_s"] = round(time.perf_counter() - t0, 1)
        parts: dict[str, list[float]] = {"tick_s": [], "tick_cpu_s": [], "read_s": [], "read_cpu_s": [], "score_s": [],
                                         "score_cpu_s": [], "write_s": []}
        timing: dict[str, float] = {}

        def timed(fn, key: str):
            def wrapper(*a, **k):
                t, cpu = time.perf_counter(), time.process_time()
                try:
                    return fn(*a, **k)
                finally:
                    timing[key] = time.perf_counter() - t
                    timing[key.replace("_s", "_cpu_s")] = time.process_time() - cpu
            return wrapper

        follower.read = timed(follower.read, "read_s")
        follower.stream.update = timed(follower.stream.update, "score_s")
        prof = None
        if profile is not None:
            import cProfile

            prof = cProfile.Profile()
        for k in range(steps):
            a = cut + k * WINDOW_S
            fill(store, machines, days, sample_s, a + WINDOW_S, register, from_s=a)
            cpu, t = time.process_time(), time.perf_counter()
            if prof is not None:
                prof.enable()
            follower.tick()
            if prof is not None:
                prof.disable()
            total = time.perf_counter() - t
            parts["tick_cpu_s"].append(time.process_time() - cpu)
            parts["tick_s"].append(total)
            for key in ("read_s", "read_cpu_s", "score_s", "score_cpu_s"):
                parts[key].append(timing[key])
            parts["write_s"].append(total - timing["read_s"] - timing["score_s"])
        events = follower.stream.events
        if prof is not None:
            prof.dump_stats(str(profile))
    for k, v in parts.items():
        out[k] = {"median": round(float(np.median(v)), 3), "max": round(float(np.max(v)), 3),
                  "last": round(v[-1], 3)}
    out["events"] = len(events)
    out["retained_windows"] = getattr(follower.stream, "retained_windows", None)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out["load_avg"] = [round(x, 1) for x in os.getloadavg()]
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--machines", type=int, default=200)
    ap.add_argument("--days", type=int, default=9, help="days in the store; the model is fitted on all but the last")
    ap.add_argument("--steps", type=int, default=40, help="15-min windows of the last day streamed, one tick each")
    ap.add_argument("--first-step", type=int, default=28, help="windows of the last day in the store before the fit "
                    "(28: the steps start at 07:00, an hour before machine m001's excess)")
    ap.add_argument("--sample-s", type=int, default=60, help="spacing of the stored power and energy values [s]")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--profile", type=Path, help="write a cProfile of the ticks to this file")
    args = ap.parse_args(argv)
    out = run(args.machines, args.days, args.steps, args.sample_s, args.first_step, args.profile)
    print(json.dumps(out))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
