"""Benchmark: the per-machine fits of ``wattline analyze`` in one process, over joblib processes and on a Dask cluster
(issue 14, analytics time per 100 machine-years per core, for docs/operations.md "Sizing").

Reads a store once (a store written by ``bench_analytics_speed``, e.g. ``--machines 20 --days 90``), times the meter
faults and the causes (which stay in the analysing process), then for each mode the baseline fit and the anomaly
detectors twice (the second fit is reported: the first one pays scikit-learn's import in each process). Modes:
``serial`` (jobs=1), ``joblib`` (``--workers`` processes) and ``dask`` (a ``LocalCluster`` of ``--workers`` worker
processes, one thread each). Checks that every mode gives the same baselines and anomalies. Run on demand::

    python -m tests.benchmarks.bench_analytics_speed --machines 20 --days 90 --store /tmp/b20.db --read-only
    python -m tests.benchmarks.bench_analytics_fanout --store /tmp/b20.db --plant /tmp/bench_speed_plant_20.yaml

One JSON line on stdout: seconds per phase and mode, machine-years, seconds of analyses per 100 machine-years, load.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import pytest

pytestmark = pytest.mark.benchmark


def main(argv: list[str] | None = None) -> None:
    from analytics.anomaly.plant import PlantAnomalies
    from analytics.baseline import Baseline
    from analytics.data import IntervalData
    from analytics.parallel import Fanout, ParallelSettings
    from analytics.potential import ReductionPotential
    from analytics.quality import find_meter_faults
    from core.plant import read_plant
    from core.storage import open_store
    from wattline.cli_analyze import _energy_machines, _fine_power

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--plant", required=True)
    ap.add_argument("--modes", nargs="+", default=["serial", "joblib", "dask"])
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    out: dict = {"load_before": round(os.getloadavg()[0], 1)}
    with open_store(args.store) as st:
        infos = st.series("electrical")
        start, stop = min(s.first_ns for s in infos), max(s.last_ns for s in infos) + 1
        t = time.perf_counter()
        data = IntervalData.from_store(st, read_plant(args.plant), start, stop, resolution_s=900)
        out["read_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        quality = find_meter_faults(data)
        out["quality_s"] = round(time.perf_counter() - t, 2)
        stored, _, _ = _energy_machines(st)
        t = time.perf_counter()
        potential = ReductionPotential().fit(data, fault=quality.mask, fine_power=_fine_power(st, stored))
        out["causes_s"] = round(time.perf_counter() - t, 2)
    machine_years = len(data.machines) * data.n_times * data.resolution_s / (365 * 86400)
    out["machines"], out["machine_years"] = len(data.machines), round(machine_years, 2)
    reference = None
    for mode in args.modes:
        cluster = None
        if mode == "dask":
            from distributed import LocalCluster

            cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            settings = ParallelSettings(cluster=cluster.scheduler_address)
        else:
            settings = ParallelSettings(jobs=1 if mode == "serial" else args.workers)
        with Fanout(settings) as fan:
            for _ in range(2):
                t = time.perf_counter()
                baseline = Baseline().fit(data, exclude=quality.mask, fanout=fan)
                out[f"{mode}_baseline_s"] = round(time.perf_counter() - t, 2)
                t = time.perf_counter()
                anomalies = PlantAnomalies().fit(data, baseline=baseline, quality=quality, potential=potential,
                                                 fanout=fan)
                out[f"{mode}_anomalies_s"] = round(time.perf_counter() - t, 2)
        if cluster is not None:
            cluster.close()
        got = (json.dumps([m.to_dict() for m in baseline.models.values()], sort_keys=True, default=str),
               [(e.machine, e.start, round(e.excess_kwh, 9)) for e in anomalies.events])
        reference = reference or got
        out[f"{mode}_same_as_{args.modes[0]}"] = got == reference
        analyses = out["quality_s"] + out["causes_s"] + out[f"{mode}_baseline_s"] + out[f"{mode}_anomalies_s"]
        out[f"{mode}_analyses_s_per_100_machine_years"] = round(analyses / machine_years * 100, 1)
    out["load_after"] = round(os.getloadavg()[0], 1)
    out["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
