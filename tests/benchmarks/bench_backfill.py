"""Backfill benchmark: simulated plant history generated and written into the embedded SQLite store.

Run on demand::

    python tests/benchmarks/bench_backfill.py                 # default plant, 7 days at 1-min resolution
    python tests/benchmarks/bench_backfill.py --days 2 --markdown

Measured in the same run, each into its own fresh database file in a temporary folder:

1. ``raw``: the store's raw insert ceiling -- ``executemany`` of pre-built ``(series_id, ts, value, status)`` tuples
   into the store's ``points`` table (same schema, no rollups, no Python objects built inside the timer), one
   transaction per 10,080-value series as the backfill does.
2. ``write_arrays``: ``SQLiteStore.write_arrays`` on the same arrays (columnar chunks with their rollups), and the
   same with the store code of earlier commits for comparison: 5c9dba4 (the row layout: a row per value plus exact
   rollup rows, values passed as a JSON array) and e5c202b (before any bulk path).
3. ``generate``: the simulator's physics alone (render + turn into series), nothing written.
4. ``backfill``: ``simulator.backfill.backfill`` end to end for the default plant (calibration, physics, ground truth,
   writes through ``Store.write_arrays``), values counted as the store reports them; then the same run again with the
   waste intensity the first run calibrated passed in (``backfill_steady``: identical output, without the calibration,
   a fixed start-up cost of the simulator that does not grow with the days); the steady run again with
   ``chunk_min_values=1`` (every bulk write as chunks, also the short material series that the default 4096 keeps as
   rows); then, unless ``--no-old``, the first run again into the row-layout store of 5c9dba4.
Results print as JSON; ``--markdown`` prints the table row for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from core.calendar import day_number  # noqa: E402
from core.model import SeriesKey  # noqa: E402
from core.storage.sqlite import SQLiteStore  # noqa: E402
from simulator.backfill import _Buffer, add_block, backfill  # noqa: E402
from simulator.engine import Simulation  # noqa: E402
from simulator.plant import default_plant  # noqa: E402

START = dt.date(2026, 3, 2)
ROW_LAYOUT_REV = "5c9dba4"  # the last commit with the row layout (a row per value) for bulk writes


def run_backfill(store_cls, path: Path, days: int, truth: Path | None, intensity: float | None = None):
    store = store_cls(path)
    run = backfill(store, default_plant(), days, None, 0, START, 60.0, truth, progress=True, intensity=intensity)
    store.close()
    return run


def synthetic(series: int, n: int):
    t0 = day_number(START) * 86400 * 10**9
    times = t0 + np.arange(n, dtype=np.int64) * 60 * 10**9
    rng = np.random.default_rng(0)
    return times, [np.round(rng.normal(50, 10, n), 3) for _ in range(series)]


def bench_raw(folder: Path, times, values) -> float:
    store = SQLiteStore(folder / "raw.db")
    conn = store._conn()
    rows = [[(sid, t, v, 0) for t, v in zip(times.tolist(), vals.tolist())] for sid, vals in enumerate(values, 1)]
    t = time.perf_counter()
    for batch in rows:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT OR REPLACE INTO points (series_id, ts, value, status) VALUES (?, ?, ?, ?)", batch)
        conn.execute("COMMIT")
    seconds = time.perf_counter() - t
    store.close()
    return sum(len(r) for r in rows) / seconds


def bench_write_arrays(store_cls, path: Path, times, values) -> float:
    store = store_cls(path)
    t = time.perf_counter()
    for i, vals in enumerate(values):
        store.write_arrays(SeriesKey.of("electrical", {"machine": f"m{i}"}, "active_power_kw"), times, vals)
    seconds = time.perf_counter() - t
    store.close()
    return len(values) * len(times) / seconds


def old_store_class(rev: str):
    """SQLiteStore as committed at ``rev`` (for the before/after figures); None when git cannot show it."""
    code = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:core/storage/sqlite.py"], capture_output=True, text=True)
    if code.returncode != 0:
        return None
    path = Path(tempfile.mkdtemp()) / f"sqlite_{rev}.py"
    path.write_text(code.stdout)
    spec = importlib.util.spec_from_file_location(f"sqlite_{rev}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SQLiteStore


class _NullStore:
    def write_arrays(self, key, times, values, status=None, *, bulk=False):
        return len(times)


def bench_generate(days: int) -> float:
    plant = default_plant()
    sim = Simulation(plant, None, 0, 60.0, day_number(START), intensity=1.0)
    buf = _Buffer(_NullStore())
    t = time.perf_counter()
    for day in range(sim.start_day, sim.start_day + days):
        add_block(buf, plant, sim.render(day))
        buf.flush()
    return buf.values / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=7, help="days of history for the backfill run")
    parser.add_argument("--series", type=int, default=60, help="series of 10,080 values for the raw/write_arrays runs")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--no-old", action="store_true", help="skip the backfill into the old row-layout store")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="wattline-bench-backfill-"))
    times, values = synthetic(args.series, 7 * 1440)
    result = {"date": dt.date.today().isoformat(), "machine": f"{os.cpu_count()} cores, {platform.python_version()}",
              "load_avg_start": os.getloadavg()[0]}
    result["raw_insert_values_per_s"] = round(bench_raw(folder, times, values))
    result["write_arrays_values_per_s"] = round(bench_write_arrays(SQLiteStore, folder / "wa.db", times, values))
    row_store = old_store_class(ROW_LAYOUT_REV)
    if row_store is not None:
        result["write_arrays_row_layout_values_per_s"] = round(bench_write_arrays(row_store, folder / "wa_row.db", times, values))
    old = old_store_class("e5c202b")
    if old is not None:
        result["write_arrays_before_values_per_s"] = round(bench_write_arrays(old, folder / "wa_old.db", times, values))
    result["generate_values_per_s"] = round(bench_generate(min(args.days, 3)))
    run = run_backfill(SQLiteStore, folder / "backfill.db", args.days, folder / "truth.json")
    steady = run_backfill(SQLiteStore, folder / "steady.db", args.days, None, run.manifest["intensity"])
    all_chunks = run_backfill(functools.partial(SQLiteStore, chunk_min_values=1), folder / "steady1.db", args.days, None,
                              run.manifest["intensity"])
    result["backfill_steady_chunk_min_1_values_per_s"] = round(all_chunks.values_per_s)
    raw = result["raw_insert_values_per_s"]
    result.update({
        "backfill_days": args.days, "backfill_values": run.values, "backfill_seconds": round(run.seconds, 2),
        "backfill_values_per_s": round(run.values_per_s),
        "ratio_backfill_to_raw": round(run.values_per_s / raw, 3),
        "backfill_steady_values": steady.values, "backfill_steady_seconds": round(steady.seconds, 2), "backfill_steady_values_per_s": round(steady.values_per_s),
        "ratio_backfill_steady_to_raw": round(steady.values_per_s / raw, 3),
        "ratio_write_arrays_to_raw": round(result["write_arrays_values_per_s"] / raw, 3),
        "avoidable_fraction": run.manifest["avoidable_fraction"], "db_bytes": (folder / "backfill.db").stat().st_size,
    })
    if row_store is not None and not args.no_old:
        old_run = run_backfill(row_store, folder / "backfill_row.db", args.days, None)
        result.update({"backfill_row_layout_values_per_s": round(old_run.values_per_s),
                       "backfill_row_layout_seconds": round(old_run.seconds, 2),
                       "db_bytes_row_layout": (folder / "backfill_row.db").stat().st_size})
    result["load_avg_end"] = os.getloadavg()[0]
    print(json.dumps(result, indent=1))
    if args.markdown:
        r = result
        print(f"| {r['backfill_days']} days, default plant, 1 min | {r['backfill_values']:,} | {r['backfill_values_per_s']:,} | "
              f"{r['backfill_steady_values_per_s']:,} | {r['raw_insert_values_per_s']:,} | {r['ratio_backfill_to_raw']} / "
              f"{r['ratio_backfill_steady_to_raw']} | {r.get('backfill_row_layout_values_per_s', 0):,} | "
              f"{r['write_arrays_values_per_s']:,} | {r.get('write_arrays_row_layout_values_per_s', 0):,} | "
              f"{r['generate_values_per_s']:,} |")


if __name__ == "__main__":
    main()
