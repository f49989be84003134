"""InfluxDB benchmarks: InfluxStore write throughput vs the raw line-protocol ceiling, and raw vs rollup queries.

Run on demand against the server started by ``deploy/influxdb/start.sh``::

    deploy/influxdb/start.sh
    python tests/benchmarks/bench_influx.py                      # full size (about 10 min on 2 cores)
    python tests/benchmarks/bench_influx.py --write-points 50000 --days 3 --machines 20   # quick look

1. Write: the same points (``--machines`` machines x 3 fields, one point per machine per second) go
   (a) as raw line protocol, pre-encoded outside the timer, POSTed in 5000-line gzip batches with keep-alive,
       sequentially: the ceiling of this client machine and server, and
   (b) through ``InfluxStore.write()`` in calls of one scan (one point per machine), timed until ``flush()``
       returns: everything InfluxStore does (encoding, batching, gzip, sending) is inside the timer.
   Each run writes into its own fresh bucket, so series creation costs the same.
2. Query: ``--days`` days of 1-min data for ``--machines`` machines (one field), then a 15-min mean over the whole
   range for all machines, from raw points and from the 15-min rollup; best of ``--repeat`` runs each.
Results are printed as JSON (one line per write round on stderr as it goes).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from core.model import Point, SeriesKey  # noqa: E402
from core.storage.influx import InfluxSettings, InfluxStore, read_env_file, remove_influx, setup_influx  # noqa: E402
from core.storage.influx_lp import LineEncoder  # noqa: E402

NS = 1_000_000_000


def env_file() -> Path:
    explicit = os.environ.get("WATTLINE_INFLUX_ENV_FILE")
    if explicit:
        return Path(explicit)
    run_dir = os.environ.get("WATTLINE_INFLUX_RUN_DIR") or f"{os.environ.get('TMPDIR', '/tmp')}/wattline-influxdb-{os.getuid()}"
    return Path(run_dir) / "influx.env"


def make_points(n_points: int, machines: int, base_ns: int) -> list[Point]:
    rng = np.random.default_rng(3)
    power = rng.uniform(5, 50, n_points)
    # One tags mapping per machine, as a collector keeps it in its node table.
    tag_maps = [{"site": "bench", "line": f"L{m % 10}", "machine": f"m{m:03d}"} for m in range(machines)]
    points = []
    for i in range(n_points):
        m = i % machines
        t = base_ns + (i // machines) * NS
        points.append(Point("electrical", tag_maps[m],
                            {"active_power_kw": float(power[i]), "energy_kwh": float(i), "power_factor": 0.9}, t))
    return points


def drop(settings: InfluxSettings) -> None:
    remove_influx(settings)


def bench_raw_post(settings: InfluxSettings, lines: list[str], batch: int, level: int) -> float:
    """POST pre-encoded lines in gzip batches over one keep-alive connection; return seconds."""
    import http.client
    import urllib.parse

    token = settings.read_token()
    u = urllib.parse.urlsplit(settings.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    path = f"/api/v2/write?org={urllib.parse.quote(settings.org)}&bucket={urllib.parse.quote(settings.bucket)}&precision=ns"
    headers = {"Authorization": f"Token {token}", "Content-Encoding": "gzip", "Content-Type": "text/plain; charset=utf-8"}
    t0 = time.perf_counter()
    for i in range(0, len(lines), batch):
        body = gzip.compress("\n".join(lines[i : i + batch]).encode("utf-8"), compresslevel=level)
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 204:
            raise RuntimeError(f"raw write failed: HTTP {resp.status}")
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def bench_write(env: dict, args) -> dict:
    """Alternate raw and store runs ``--write-repeat`` times (the machine is shared; the median ratio counts)."""
    base = (time.time_ns() // (3600 * NS) - 24 * 30) * 3600 * NS
    points = make_points(args.write_points, args.machines, base)
    lines, n_values = LineEncoder().encode_points(points)
    results: dict = {"points": len(points), "values": n_values, "lines_bytes": sum(len(x) + 1 for x in lines),
                     "runs": []}
    for round_no in range(args.write_repeat):
        run = {}
        for label in ("raw", "store"):
            settings = InfluxSettings(url=env["WATTLINE_INFLUX_URL"], org=env["WATTLINE_INFLUX_ORG"],
                                      bucket=f"bench_{label}_{uuid.uuid4().hex[:8]}",
                                      token_file=env["WATTLINE_INFLUX_TOKEN_FILE"],
                                      spool_dir=Path(args.tmp) / f"spool-{label}-{round_no}",
                                      auto_refresh_rollups=False)
            setup_influx(settings, backfill=False, progress=False)
            try:
                if label == "raw":
                    secs = bench_raw_post(settings, lines, 5000, settings.gzip_level)
                else:
                    store = InfluxStore(settings)
                    scan = args.machines
                    t0 = time.perf_counter()
                    for i in range(0, len(points), scan):
                        store.write(points[i : i + scan])
                    store.flush(timeout_s=600, refresh_rollups=False)
                    secs = time.perf_counter() - t0
                    run["spilled"] = store.spool._seq  # segments that went through the spool (backlog bound)
                    store._dirty.clear()
                    # The timer stops only when every value is stored: check it (outside the timer).
                    stored = sum(i.count for i in store.series("electrical"))
                    if len(store.spool) or stored != n_values:
                        raise RuntimeError(f"store run incomplete: {stored} of {n_values} values stored")
                    store.close()
                run[f"{label}_values_per_s"] = round(n_values / secs)
            finally:
                drop(settings)
        run["ratio"] = round(run["store_values_per_s"] / run["raw_values_per_s"], 3)
        print(json.dumps(run), file=sys.stderr)
        results["runs"].append(run)
    for key in ("raw_values_per_s", "store_values_per_s", "ratio"):
        results[f"median_{key}"] = float(np.median([r[key] for r in results["runs"]]))
    return results


def bench_query(env: dict, args) -> dict:
    settings = InfluxSettings(url=env["WATTLINE_INFLUX_URL"], org=env["WATTLINE_INFLUX_ORG"],
                              bucket=f"bench_q_{uuid.uuid4().hex[:8]}", token_file=env["WATTLINE_INFLUX_TOKEN_FILE"],
                              spool_dir=Path(args.tmp) / "spool-q", auto_refresh_rollups=False)
    out: dict = {"machines": args.machines, "days": args.days, "resolution_s": 60}
    reuse = bool(args.query_bucket)
    if reuse:  # measure again on a bucket an earlier run loaded (it was made with the same --days/--machines)
        settings = settings.model_copy(update={"bucket": args.query_bucket})
    else:
        setup_influx(settings, backfill=False, progress=False)
    try:
        store = InfluxStore(settings)
        day_ns = 86400 * NS
        if reuse:
            first = min(i.first_ns for i in store.series("electrical"))
            start = (first // day_ns) * day_ns
        else:
            start = (time.time_ns() // day_ns - args.days - 2) * day_ns
        stop = start + args.days * day_ns
        if reuse:
            return _time_queries(store, start, stop, args, out)
        times = np.arange(start, stop, 60 * NS, dtype=np.int64)
        rng = np.random.default_rng(5)
        t0 = time.perf_counter()
        from tqdm import tqdm

        for m in tqdm(range(args.machines), desc="load", unit="machine"):
            key = SeriesKey.of("electrical", {"site": "bench", "line": f"L{m % 10}", "machine": f"m{m:03d}"},
                               "active_power_kw")
            store.write_arrays(key, times, rng.uniform(5, 50, len(times)))
        store.flush(timeout_s=3600, refresh_rollups=False)  # waits for the part spilled to the spool too
        stored = sum(i.count for i in store.series("electrical"))
        if len(store.spool) or stored != len(times) * args.machines:
            raise RuntimeError(f"load incomplete: {stored} of {len(times) * args.machines} values stored")
        out["raw_points"] = len(times) * args.machines
        out["load_s"] = round(time.perf_counter() - t0, 1)
        # The query needs the 15-min rollup (and 1 h for coarser windows). The 1-min level is skipped here: with
        # 1-min raw data it is as dense as the raw points and building it through Flux to() would dominate the run.
        t0 = time.perf_counter()
        store.refresh_rollups(start, stop, progress=True, resolutions=(900, 3600))
        out["rollup_build_s"] = round(time.perf_counter() - t0, 1)
        return _time_queries(store, start, stop, args, out)
    finally:
        store._dirty.clear()  # the benchmark built the rollups it needs; close() must not rebuild all levels
        store.close()
        if not reuse and not args.keep:
            drop(settings)


def _time_queries(store: InfluxStore, start: int, stop: int, args, out: dict) -> dict:
    """Best of --repeat for the 15-min mean over all machines, raw then rollup; end to end (DataFrame ready)."""
    for label, use in (("raw", False), ("rollup", True)):
        store.use_rollups = use
        best = None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            frame = store.query("electrical", "active_power_kw", start, stop, window_s=900, agg="mean")
            secs = time.perf_counter() - t0
            best = secs if best is None else min(best, secs)
        out[f"{label}_query_s"] = round(best, 3)
        out[f"{label}_rows"] = len(frame)
        out[f"{label}_resolution"] = store.last_rollup
        out[f"{label}_checksum"] = round(float(frame["value"].sum()), 6)
    out["speedup"] = round(out["raw_query_s"] / out["rollup_query_s"], 2)
    return out


def influx_version(env: dict) -> str:
    with urllib.request.urlopen(env["WATTLINE_INFLUX_URL"] + "/health", timeout=5) as r:
        return json.load(r).get("version", "?")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--write-points", type=int, default=400_000)
    p.add_argument("--machines", type=int, default=200)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--write-repeat", type=int, default=5)
    p.add_argument("--skip-query", action="store_true")
    p.add_argument("--skip-write", action="store_true")
    p.add_argument("--query-bucket", help="time the queries on a bucket loaded by an earlier run (kept with --keep)")
    p.add_argument("--keep", action="store_true", help="keep the query bucket for --query-bucket")
    p.add_argument("--tmp", default=os.environ.get("TMPDIR", "/tmp") + f"/wattline-bench-{os.getpid()}")
    args = p.parse_args(argv)
    env = read_env_file(env_file())
    result = {"influxdb": influx_version(env), "python": platform.python_version(), "cores": os.cpu_count(),
              "date": time.strftime("%Y-%m-%d")}
    if not args.skip_write:
        result["write"] = bench_write(env, args)
    if not args.skip_query:
        result["query"] = bench_query(env, args)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
