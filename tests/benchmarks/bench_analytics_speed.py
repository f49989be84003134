"""Benchmark: read a year of a large plant into interval data and run every analysis on it (issue 10, speed).

End to end as ``wattline analyze`` does it (:func:`wattline.cli_analyze.run_analyze`: ``IntervalData.from_store``,
baselines, meter faults, causes, potential), on a simulated plant of N machines (the default plant's machines repeated
with new ids) backfilled at 15-min resolution into SQLite or InfluxDB. Reports the seconds of the read and of the whole
run, the values read and the peak RSS [MB] of the process. Run on demand::

    python -m tests.benchmarks.bench_analytics_speed --machines 200 --days 365 --store /tmp/b200.db
    python -m tests.benchmarks.bench_analytics_speed --machines 50 100 200 --days 91 --store /tmp/bscale.db
    python -m tests.benchmarks.bench_analytics_speed --machines 200 --days 365 \\
        --store 'influx://...&bucket=bench-analytics'

With several --machines or --days values every combination is backfilled into its own store (suffix -<m>m-<d>d)
and measured in a fresh process, so the peak RSS is that run's. Results: one JSON line per run on stdout (and --out).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def scaled_plant_yaml(machines: int, path: str) -> str:
    """Write a plant file of ``machines`` machines: the default plant's machines in order, repeated with new ids
    (``<id>-r2``, ``<id>-r3`` ...) on the same lines; returns the path."""
    import yaml

    src = yaml.safe_load((ROOT / "simulator" / "plants" / "default.yaml").read_text())
    lines = [line for site in src["sites"] for line in site["lines"]]
    originals = [list(line["machines"]) for line in lines]
    total = sum(len(m) for m in originals)
    for line in lines:
        line["machines"] = []
    n, rep = 0, 1
    while n < machines:
        for line, base in zip(lines, originals):
            for spec in base:
                if n >= machines:
                    break
                line["machines"].append({**spec, "id": spec["id"] if rep == 1 else f"{spec['id']}-r{rep}"})
                n += 1
        rep += 1
    for site in src["sites"]:
        site["lines"] = [line for line in site["lines"] if line["machines"]]
    src["sites"] = [site for site in src["sites"] if site["lines"]]
    assert n == machines and total > 0
    Path(path).write_text(yaml.safe_dump(src, sort_keys=False))
    return path


def backfill(store: str, plant: str, days: int, resolution: int, start: str) -> float:
    """Backfill the simulated plant into ``store`` [s taken]; an InfluxDB bucket (and its rollup tasks) is set up
    first."""
    t = time.perf_counter()
    if "://" in store and not store.startswith("sqlite"):
        from core.storage.influx import InfluxSettings, setup_influx

        setup_influx(InfluxSettings.from_url(store), backfill=False, progress=False)
    subprocess.run([sys.executable, "-m", "wattline", "simulate", "backfill", "--days", str(days), "--plant", plant,
                    "--store", store, "--resolution", str(resolution), "--start", start, "--quiet",
                    "--truth", str(Path(tempfile.gettempdir()) / "bench_speed_truth.json")],
                   check=True, cwd=ROOT)
    return time.perf_counter() - t


def measure(store: str, plant: str, read_only: bool, span_days: int | None = None) -> dict:
    """One measured run in this process: read (and, unless ``read_only``, analyse) the whole store, or its first
    ``span_days`` days."""
    from analytics.data import IntervalData
    from core.plant import read_plant
    from core.storage import open_store

    out: dict = {}
    st = open_store(store)
    infos = st.series("electrical")
    start = min(s.first_ns for s in infos)
    stop = max(s.last_ns for s in infos) + 1
    if span_days:
        stop = min(stop, start + int(span_days) * 86400 * 10**9)
    out["span_days"] = round((stop - start) / 86400e9, 1)
    t = time.perf_counter()
    data = IntervalData.from_store(st, read_plant(plant), start, stop, resolution_s=900)
    out["read_s"] = round(time.perf_counter() - t, 2)
    # CPU seconds of this process: on a machine shared with other work the wall time is stretched, CPU time is not.
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out["read_cpu_s"] = round(usage.ru_utime + usage.ru_stime, 2)
    out["windows"] = len(data.frame)
    out["machines_read"] = len(data.machines)
    st.close()
    del data
    if not read_only:
        from wattline.cli_analyze import run_analyze

        t = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            iso = [time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(x / 1e9)) for x in (start, stop)]
            run_analyze(store, Path(plant), iso[0] if span_days else None, iso[1] if span_days else None,
                        Path(tmp) / "r.json", progress=False)
        out["analyze_s"] = round(time.perf_counter() - t, 2)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        out["analyze_cpu_s"] = round(usage.ru_utime + usage.ru_stime - out["read_cpu_s"], 2)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--machines", type=int, nargs="+", default=[200])
    ap.add_argument("--days", type=int, nargs="+", default=[365])
    ap.add_argument("--resolution", type=int, default=900)
    ap.add_argument("--start", default="2025-01-01")
    ap.add_argument("--store", required=True, help="store URL (a file path, or influx://... with its own bucket)")
    ap.add_argument("--skip-backfill", action="store_true", help="measure stores written by an earlier run")
    ap.add_argument("--read-only", action="store_true", help="only IntervalData.from_store, not the analyses")
    ap.add_argument("--span-days", type=int, nargs="+", default=[0],
                    help="measure only the first N days of each store (scaling by months from one backfill)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--_measure", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._measure:
        print(json.dumps(measure(args._measure[0], args._measure[1], args.read_only, args.span_days[0])))
        return
    several = len(args.machines) * len(args.days) > 1
    for m in args.machines:
        for d in args.days:
            store = args.store
            if several:
                store = (store.replace("bucket=", f"bucket={m}m-{d}d-") if "://" in store and "bucket=" in store
                         else f"{Path(store).with_suffix('')}-{m}m-{d}d.db")
            plant = scaled_plant_yaml(m, str(Path(tempfile.gettempdir()) / f"bench_speed_plant_{m}.yaml"))
            row: dict = {"machines": m, "days": d, "resolution_s": args.resolution,
                         "store": store.split("?")[0], "load_before": os.getloadavg()[0]}
            if not args.skip_backfill:
                row["backfill_s"] = round(backfill(store, plant, d, args.resolution, args.start), 1)
            for span in args.span_days:
                cmd = [sys.executable, "-m", "tests.benchmarks.bench_analytics_speed", "--store", store,
                       "--_measure", store, plant, "--span-days", str(span)] + (["--read-only"] if args.read_only else [])
                got = subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True, text=True)
                res = {**row, **json.loads(got.stdout.strip().splitlines()[-1])}
                res["load_after"] = os.getloadavg()[0]
                res["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
                line = json.dumps(res)
                print(line, flush=True)
                if args.out:
                    with args.out.open("a") as fh:
                        fh.write(line + "\n")


if __name__ == "__main__":
    main()
