"""Live serving benchmark: one PlantServer process updating 500 machines every simulated second (speed 1).

Run on demand::

    python tests/benchmarks/bench_serve.py                    # 500 machines, 60 s measured
    python tests/benchmarks/bench_serve.py --machines 100 --seconds 20 --markdown

The plant is the default plant's production lines replicated to ``--machines`` machines (CNC and injection moulding
machines with air use: 9 variables each, plus a compressor per line: 6). After a warm-up the benchmark measures, over
``--seconds`` of wall time: the process CPU time (all threads) as a share of one core, the number of update ticks
(ideal: one per second), the values written per second and the time one tick takes (mean, max). An asyncua client in a
separate process subscribes to 100 ActivePower variables and counts the notifications it receives, to show the
values really leave the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from simulator.plant import Plant, PlantSpec, default_plant  # noqa: E402
from simulator.server import PlantServer  # noqa: E402


def big_plant(machines: int) -> Plant:
    base = default_plant()
    templates = [m.spec for m in base.machines if m.archetype in ("cnc", "injection_moulding")]
    compressor = base.machine("compressor-01").spec
    sites, count = [], 0
    for s in range(2):
        lines = []
        for li in range(max(1, machines // 100)):
            ms = []
            while len(ms) < 50 and count < machines:
                if not ms:
                    ms.append(compressor.model_copy(update={"id": f"comp-{s}-{li}"}))
                else:
                    t = templates[count % len(templates)]
                    air = max(t.simulation.get("air_m3_min", 0.0), 0.3)
                    ms.append(t.model_copy(update={"id": f"m{count:04d}", "simulation": {**t.simulation, "air_m3_min": air}}))
                count += 1
            if ms:
                lines.append({"id": f"l{li + 1}", "machines": ms})
        if lines:
            sites.append(base.sites[s].model_copy(update={"lines": tuple(base.sites[s].lines[0].model_copy(update=ln) for ln in lines)}))
    return Plant(PlantSpec(name=f"bench {machines}", sites=tuple(sites)), "bench")


def client_proc(endpoint: str, seconds: float, queue) -> None:
    from asyncua import Client

    async def run():
        count = 0

        class Handler:
            def datachange_notification(self, node, val, data):
                nonlocal count
                count += 1

        async with Client(endpoint, timeout=30) as client:
            idx = await client.get_namespace_index("urn:wattline:simulator")
            plant_node = await client.nodes.objects.get_child([f"{idx}:Plant"])
            nodes = []
            for site in await plant_node.get_children():
                for line in await site.get_children():
                    for machine in await line.get_children():
                        if len(nodes) < 100:
                            # the site's temperature variable has no children
                            with contextlib.suppress(Exception):
                                nodes.append(await machine.get_child([f"{idx}:ActivePower"]))
            sub = await client.create_subscription(500, Handler())
            await sub.subscribe_data_change(nodes)
            await asyncio.sleep(seconds)  # the client's listening window (measured), not synchronisation
            queue.put({"subscribed": len(nodes), "notifications": count})

    asyncio.run(run())


async def run(machines: int, seconds: float, warmup: float) -> dict:
    plant = big_plant(machines)
    server = PlantServer(plant, port=0, speed=1.0, intensity=1.0)
    t_start = time.perf_counter()
    await server.start()
    startup = time.perf_counter() - t_start
    n_vars = sum(len(v) for v in server._vars) + len(server._site_vars)
    tick_times = []
    original = server._tick

    async def timed():
        t = time.perf_counter()
        await original()
        tick_times.append(time.perf_counter() - t)

    server._tick = timed
    queue = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=client_proc, args=(server.endpoint, warmup + seconds, queue))
    proc.start()
    await asyncio.sleep(warmup)  # warm-up period, then the measured window below
    updates0, cpu0, wall0 = server.updates, time.process_time(), time.perf_counter()
    written0 = server.values_written
    ticks0 = len(tick_times)
    await asyncio.sleep(seconds)  # the measured window
    updates, cpu, wall = server.updates - updates0, time.process_time() - cpu0, time.perf_counter() - wall0
    written = server.values_written - written0
    ticks = tick_times[ticks0:]
    client = await asyncio.to_thread(queue.get, True, 120)
    proc.join(30)
    # Rendering happens once per 600-step block; time one block and amortise it per second.
    c0 = time.process_time()
    server.sim.render(server._day, 0.0, 600.0)
    render_cpu_per_s = (time.process_time() - c0) / 600
    await server.stop()
    return {
        "date": dt.date.today().isoformat(), "machine": f"{os.cpu_count()} cores, {platform.python_version()}",
        "machines": len(plant), "variables": n_vars, "startup_s": round(startup, 2), "seconds": round(wall, 1),
        "updates": updates, "updates_per_s": round(updates / wall, 3), "values_per_s": round(written / wall),
        "cpu_share_of_one_core": round(cpu / wall, 3), "render_cpu_share_amortised": round(render_cpu_per_s, 4), "tick_mean_ms": round(1000 * sum(ticks) / max(len(ticks), 1), 1),
        "tick_max_ms": round(1000 * max(ticks or [0]), 1), "client": client, "load_avg": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--machines", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    r = asyncio.run(run(args.machines, args.seconds, args.warmup))
    print(json.dumps(r, indent=1))
    if args.markdown:
        print(f"| {r['machines']} machines, {r['variables']} variables | {r['updates_per_s']} | {r['values_per_s']:,} | "
              f"{r['cpu_share_of_one_core']:.0%} | {r['tick_mean_ms']} / {r['tick_max_ms']} ms | {r['startup_s']} s | "
              f"{r['client']['notifications']:,} from {r['client']['subscribed']} |")


if __name__ == "__main__":
    main()
