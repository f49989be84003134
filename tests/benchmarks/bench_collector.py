"""Collector throughput benchmark: node-opcua server (another process) -> Collector -> embedded SQLite store.

    python tests/benchmarks/bench_collector.py [--nodes 10000] [--period 200] [--seconds 30]

The server (collectors/opcua/tests/node_server, node-opcua) changes every node each ``period`` ms, so it offers
nodes * 1000 / period values/s. Reported: values/s received and stored by the collector, p95 delay from source
timestamp to stored, peak RSS of this process; and the reference: a raw asyncua subscription (legacy per-value
handler doing nothing) on the same server, same nodes, same duration, with the ratio collector / reference.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from collectors.opcua.collector import Collector  # noqa: E402
from collectors.opcua.config import parse_collector_config  # noqa: E402
from collectors.opcua.tests.plant_server import NS_URI, free_port  # noqa: E402
from collectors.opcua.tests.test_node_opcua import start_node_server, stop_node_server  # noqa: E402
from core.storage.sqlite import SQLiteStore  # noqa: E402


def node_ids(machines: int, extra: int) -> list[str]:
    return [f"nsu={NS_URI};s=north/l1/m{m}/Extra{k:04d}" for m in range(machines) for k in range(extra)]


async def run_collector(endpoint: str, machines: int, extra: int, period: int, seconds: float, tmp: Path) -> dict:
    groups = [{"name": f"m{m}", "measurement": "opcua", "tags": {"machine": f"m{m}"},
               "sampling_interval_ms": period, "publishing_interval_ms": period,
               "nodes": [{"node_id": f"nsu={NS_URI};s=north/l1/m{m}/Extra{k:04d}", "field": f"e{k:04d}"}
                         for k in range(extra)]} for m in range(machines)]
    cfg = parse_collector_config({"store": str(tmp / "w.db"), "servers": [{"name": "bench", "endpoint": endpoint,
                                  "groups": groups}], "spool": {"path": str(tmp / "spool")},
                                  "metrics": {"listen": None}})
    store = SQLiteStore(tmp / "w.db")
    col = Collector(cfg, store)
    stop = asyncio.Event()
    task = asyncio.create_task(col.run(stop))
    proc = psutil.Process()
    rss = 0
    while not col.sessions[0].connected or col.received < extra * machines:
        await asyncio.sleep(0.1)
    await asyncio.sleep(2)  # warm-up
    r0, w0, t0 = col.received, col.written, time.monotonic()
    col.writer.latencies.clear()
    while time.monotonic() - t0 < seconds:
        await asyncio.sleep(0.5)
        rss = max(rss, proc.memory_info().rss)
    r1, w1, t1 = col.received, col.written, time.monotonic()
    lat = sorted(col.writer.latencies)
    stop.set()
    await task
    store.close()
    return {"received_per_s": (r1 - r0) / (t1 - t0), "written_per_s": (w1 - w0) / (t1 - t0),
            "p95_latency_s": lat[int(0.95 * (len(lat) - 1))] if lat else float("nan"),
            "median_latency_s": statistics.median(lat) if lat else float("nan"), "rss_mb": rss / 2**20,
            "lost": col.received - col.written - col.spool.count_values()}


async def run_reference(endpoint: str, machines: int, extra: int, period: int, seconds: float) -> dict:
    from asyncua import Client

    class Handler:
        n = 0

        def datachange_notification(self, node, val, data):
            Handler.n += 1

    client = Client(endpoint, timeout=30)
    await client.connect()
    sub = await client.create_subscription(period, Handler())
    nodes = [client.get_node(n.replace(f"nsu={NS_URI}", f"ns={await client.get_namespace_index(NS_URI)}"))
             for n in node_ids(machines, extra)]
    for i in range(0, len(nodes), 1000):
        await sub.subscribe_data_change(nodes[i:i + 1000], sampling_interval=period)
    await asyncio.sleep(4)
    n0, t0 = Handler.n, time.monotonic()
    await asyncio.sleep(seconds)
    rate = (Handler.n - n0) / (time.monotonic() - t0)
    await client.disconnect()
    return {"received_per_s": rate}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--period", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=30)
    args = ap.parse_args()
    machines = 10
    extra = args.nodes // machines
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="wattline-bench-"))
    proc = start_node_server(port, tmp, machines=machines, extra=extra, period=args.period)
    endpoint = f"opc.tcp://127.0.0.1:{port}/wattline"
    try:
        offered = args.nodes * 1000 / args.period
        print(f"server: node-opcua, {args.nodes} nodes changing every {args.period} ms = {offered:.0f} values/s offered")
        col = asyncio.run(run_collector(endpoint, machines, extra, args.period, args.seconds, tmp))
        print("collector:", {k: round(v, 3) for k, v in col.items()})
        ref = asyncio.run(run_reference(endpoint, machines, extra, args.period, args.seconds))
        print("reference (raw asyncua subscription, per-value handler doing nothing):",
              {k: round(v, 1) for k, v in ref.items()})
        print(f"ratio collector/reference: {col['received_per_s'] / ref['received_per_s']:.2f}")
    finally:
        stop_node_server(proc)


if __name__ == "__main__":
    main()
