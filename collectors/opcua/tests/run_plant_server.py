"""Run the test plant server in its own process: ``python -m collectors.opcua.tests.run_plant_server PORT [MACHINES]``.

Prints ``READY <endpoint>`` when serving; updates every machine's ActivePower once per ``--period`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio

from collectors.opcua.tests.plant_server import start_plant_server


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("machines", type=int, nargs="?", default=2)
    parser.add_argument("--period", type=float, default=0.2)
    args = parser.parse_args()
    layout = {"north": {"l1": [f"cnc-{i + 1:02d}" for i in range(args.machines)]}}
    srv = await start_plant_server(args.port, layout=layout)
    print(f"READY {srv.endpoint}", flush=True)
    i = 0
    while True:
        i += 1
        for m in layout["north"]["l1"]:
            await srv.write(f"north/l1/{m}/ActivePower", float(i))
        await asyncio.sleep(args.period)  # the server's update period: pacing, not synchronisation


if __name__ == "__main__":
    asyncio.run(main())
