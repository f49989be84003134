"""Speed and memory of the nightly refit of ``wattline analyze --follow``: every machine's anomaly model (with its
baseline) fitted on a year of 15-min interval data, serial and fanned out (``analytics.parallel``).

The year is built in memory as the store would return it (``IntervalData.from_store``'s columns: energy, mean and
peak power, state seconds, good count, outdoor temperature, register readings, coverage, bad share), from
bench_baseline's synthetic two-shift plant (``synthetic_frame``), so that the refit is measured on its own: the store
read of a year is measured by bench_analytics. The refit is the follower's own fit
(:func:`wattline.cli_follow.fit_anomalies`: meter-fault check, baselines, one detector per machine) with
``ParallelSettings(jobs=N)``; ``--jobs 1`` is the serial refit in the analysing process.

Peak memory: the process's peak RSS (``ru_maxrss``, the year's data included) and, with worker processes, the
highest sum of the RSS of this process and its children, sampled every 0.2 s.

Run on demand (each mode in its own process, so the peaks do not mix)::

    python tests/benchmarks/bench_refit.py --machines 200 --months 12 --jobs 1
    python tests/benchmarks/bench_refit.py --machines 200 --months 12 --jobs 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def year_data(machines: int, months: int, seed: int = 0):
    """Interval data of ``machines`` x ``months`` at 15 min with the columns a store read gives."""
    import pandas as pd

    from analytics.data import IntervalData
    from tests.benchmarks.bench_baseline import synthetic_frame

    frame = synthetic_frame(machines, months, seed)
    rng = np.random.default_rng(seed + 1)
    energy = frame["energy_kwh"].to_numpy()
    frame["power_mean_kw"] = energy / 0.25
    frame["power_max_kw"] = (frame["power_mean_kw"] * rng.uniform(1.02, 1.2, len(frame))).astype(np.float32)
    # Register readings: rows are machine after machine, each in time order.
    register = 1000.0 + frame.groupby("machine", observed=True, sort=False)["energy_kwh"].cumsum().to_numpy()
    frame["register_last_kwh"] = register
    frame["register_min_kwh"] = register - energy * 0.97  # the first reading of the window
    frame["coverage"] = np.float32(1.0)
    frame["bad_share"] = np.float32(0.0)
    start = pd.Timestamp(frame["time"].min())
    stop = pd.Timestamp(frame["time"].max()) + pd.Timedelta(minutes=15)
    return IntervalData.from_frame(frame, resolution_s=900, start=start, stop=stop)


class _PeakRss:
    """Highest RSS of this process plus its children [MB], sampled in a thread, and the CPU time its children (the
    worker processes) used while sampled [s]."""

    def __init__(self, every_s: float = 0.2) -> None:
        import psutil

        self._me = psutil.Process()
        self.peak_mb = 0.0
        self._child_cpu: dict[int, tuple[float, float]] = {}  # pid -> (CPU time at the first sample, at the last)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True)

    def _run(self, every_s: float) -> None:
        import psutil

        while not self._stop.is_set():
            total = self._me.memory_info().rss
            for child in self._me.children(recursive=True):
                with contextlib.suppress(psutil.Error):  # a worker that just ended
                    total += child.memory_info().rss
                    cpu = child.cpu_times()
                    first = self._child_cpu.get(child.pid, (cpu.user + cpu.system, 0.0))[0]
                    self._child_cpu[child.pid] = (first, cpu.user + cpu.system)
            self.peak_mb = max(self.peak_mb, total / 2**20)
            self._stop.wait(every_s)

    @property
    def children_cpu_s(self) -> float:
        """CPU time of the children between the samples [s] (a worker started during the run counts from its first
        sample, within 0.2 s of its start)."""
        return sum(last - first for first, last in self._child_cpu.values())

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run(machines: int, months: int, jobs: int) -> dict:
    from analytics.parallel import ParallelSettings
    from analytics.quality import find_meter_faults
    from wattline.cli_follow import fit_anomalies

    out: dict = {"machines": machines, "months": months, "jobs": jobs,
                 "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
                 "python": platform.python_version()}
    t0 = time.perf_counter()
    data = year_data(machines, months)
    out["build_s"] = round(time.perf_counter() - t0, 1)
    out["windows"] = len(data.frame)
    out["rss_with_data_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    with _PeakRss() as peak:
        cpu, t0 = time.process_time(), time.perf_counter()
        quality = find_meter_faults(data)
        model = fit_anomalies(data, quality, parallel=ParallelSettings(jobs=jobs))
        out["refit_s"] = round(time.perf_counter() - t0, 1)
        out["refit_cpu_s_this_process"] = round(time.process_time() - cpu, 1)
    out["refit_cpu_s_workers"] = round(peak.children_cpu_s, 1)
    out["detectors"] = len(model.detectors)
    out["events"] = len(model.events)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out["peak_rss_with_workers_mb"] = round(peak.peak_mb)
    out["load_avg"] = [round(x, 1) for x in os.getloadavg()]
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--machines", type=int, default=200)
    ap.add_argument("--months", type=int, default=12)
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (1: the serial refit in this process)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    out = run(args.machines, args.months, args.jobs)
    print(json.dumps(out))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
