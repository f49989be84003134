"""Two collector processes share one plant-wide config (``--shard 0/2`` and ``--shard 1/2``) and one InfluxDB bucket.

Two simulator servers (one site each) serve OPC UA on localhost; each `wattline collect` process owns one of them.
Checked by exact counts in InfluxDB: every value the two processes report as stored is in the bucket once (the bucket
holds exactly the sum of both processes' counts -- a server collected by both would be counted twice by the processes
but stored once), each server's health points come from exactly one collector, and every change the simulators
published while collected is in the bucket (nothing missed).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import signal
import subprocess
import sys
import time
import uuid

import pytest
import yaml

from collectors.opcua.discover import get_starter_config
from core.model import to_ns
from core.storage.influx import InfluxSettings, remove_influx, setup_influx
from simulator.plant import DEFAULT_PLANT_FILE, parse_plant
from simulator.server import PlantServer
from tests.storage.conftest import influx_env  # noqa: F401 - the shared InfluxDB server's fixture
from tests.support import wait_for_async

pytestmark = [pytest.mark.integration, pytest.mark.influx]


def site_plants(machines_per_site: int = 3):
    """One small plant per site of the default plant (the first machine of its first lines): distinct machines."""
    data = yaml.safe_load(DEFAULT_PLANT_FILE.read_text())
    plants = []
    for site in data["sites"][:2]:
        lines = [dict(line, machines=line["machines"][:1]) for line in site["lines"][:machines_per_site]]
        plants.append(parse_plant({**data, "sites": [{**site, "lines": lines}]}, f"<site {site['id']}>"))
    return plants


def flux_rows(settings: InfluxSettings, flux: str) -> list:
    from influxdb_client import InfluxDBClient

    with InfluxDBClient(url=settings.url, token=settings.read_token(), org=settings.org, timeout=60_000) as client:
        return [rec for table in client.query_api().query(flux) for rec in table.records]


def stored_values(settings: InfluxSettings) -> int:
    """Plant values in the bucket: numeric fields plus values stored as missing (Bad status), health points aside."""
    base = f'from(bucket: "{settings.bucket}") |> range(start: -1d) |> filter(fn: (r) => r._measurement !~ /^wattline_/'
    numeric = sum(int(r.get_value()) for r in flux_rows(
        settings, base + ' and r._field !~ /^wattline_/) |> group() |> count()'))
    missing = sum(len([n for n in str(r.get_value()).split(",") if n]) for r in flux_rows(
        settings, base + ' and r._field == "wattline_missing")'))
    return numeric + missing


@pytest.mark.asyncio
async def test_two_sharded_collectors_write_each_value_once(influx_env, tmp_path):  # noqa: F811
    settings = InfluxSettings(url=influx_env["WATTLINE_INFLUX_URL"], org=influx_env["WATTLINE_INFLUX_ORG"],
                              bucket=f"shard_{uuid.uuid4().hex[:10]}", token_file=influx_env["WATTLINE_INFLUX_TOKEN_FILE"])
    setup_influx(settings, backfill=False, progress=False)
    servers = [PlantServer(plant, port=0, seed=11 + i) for i, plant in enumerate(site_plants())]
    published: dict[str, dict[int, object]] = {}
    for server in servers:
        server.add_listener(lambda node, value, when: published.setdefault(node, {}).__setitem__(to_ns(when), value))
    procs: list[subprocess.Popen] = []
    try:
        for server in servers:
            await server.start()
        entries = []
        for i, server in enumerate(servers):
            starter = await get_starter_config(server.endpoint, server_name=f"gateway-{server.plant.sites[0].id}")
            entries.append({**starter["servers"][0], "shard": i})  # pinned: one server per collector
        config = {
            "name": "plant", "servers": entries, "metrics": {"listen": None}, "status_file": "status.json",
            "store": (f"influx://{settings.url.split('://', 1)[1]}?org={settings.org}&bucket={settings.bucket}"
                      f"&token_file={settings.token_file}"),
        }
        path = tmp_path / "plant.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        for index in range(2):
            err = open(tmp_path / f"collector-{index}.log", "w")  # noqa: SIM115 - closed with the process
            procs.append(subprocess.Popen([sys.executable, "-m", "wattline", "collect", "--config", str(path),
                                           "--shard", f"{index}/2"], stdout=err, stderr=subprocess.STDOUT,
                                          cwd=tmp_path))

        machines = [(server, ref) for server in servers for ref in server.plant.machines]

        def health_owners() -> list[tuple[str, str]]:
            """(server, collector) of the health points: who collected each server."""
            rows = flux_rows(settings, f'from(bucket: "{settings.bucket}") |> range(start: -1d) |> filter(fn: (r) => '
                             'r._measurement == "wattline_collector" and r._field == "connected") '
                             '|> group(columns: ["server", "collector"]) |> count()')
            return sorted((r.values["server"], r.values["collector"]) for r in rows)

        def five_values_per_machine() -> bool:
            for i, proc in enumerate(procs):
                if proc.poll() is not None:  # pytest.fail, not assert: a dead collector ends the wait at once
                    pytest.fail(f"collector {i} exited: {(tmp_path / f'collector-{i}.log').read_text()[-3000:]}")
            rows = flux_rows(settings, f'from(bucket: "{settings.bucket}") |> range(start: -1d) '
                             '|> filter(fn: (r) => r._field == "active_power_kw") |> group(columns: ["machine"]) '
                             '|> count()')
            counts = {r.values.get("machine"): int(r.get_value()) for r in rows}
            return len(counts) == len(machines) and min(counts.values()) >= 5 and len(health_owners()) >= 2

        t0 = time.monotonic()
        await wait_for_async(five_values_per_machine, 180, "5 stored power values of every machine and a health "
                             "point of each collector (every 10 s)", interval=1.0)
        print(f"\n5 values per machine of both servers stored after {time.monotonic() - t0:.1f} s")
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        codes = [await asyncio.to_thread(proc.wait, 120) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for server in servers:
            await server.stop()
    try:
        logs = [(tmp_path / f"collector-{i}.log").read_text() for i in range(2)]
        assert codes == [0, 0], logs
        stats = []
        for i, log in enumerate(logs):
            assert f"plant-shard{i}: collecting from 1 server(s) (gateway-{servers[i].plant.sites[0].id})" in log, log
            m = re.search(r"stopped: (\d+) values received, (\d+) stored, (\d+) spooled", log)
            assert m, log
            received, written, spooled = map(int, m.groups())
            assert received == written > 0 and spooled == 0, log
            stats.append(written)
        # Nothing written twice, nothing missing: the bucket holds exactly what the two processes stored.
        total = stored_values(settings)
        print(f"collectors stored {stats[0]} + {stats[1]} values; the bucket holds {total}")
        assert total == sum(stats)
        # Each server's health points come from exactly one collector: its shard.
        assert health_owners() == sorted((f"gateway-{s.plant.sites[0].id}", f"plant-shard{i}") for i, s in enumerate(servers))
        # Every change a simulator published while its collector was subscribed is stored (nothing missed).
        for server, ref in machines:
            node = f"ns={server.idx};s={ref.path}/ActivePower"
            truth = published[node]
            rows = flux_rows(settings, f'from(bucket: "{settings.bucket}") |> range(start: -1d) |> filter(fn: (r) => '
                             f'r._field == "active_power_kw" and r.machine == "{ref.spec.id}")')
            stored = {to_ns(r.get_time()): r.get_value() for r in rows}
            assert len(stored) >= 5 and {r.values["site"] for r in rows} == {ref.site.id}
            for when, value in stored.items():
                assert truth[when] == pytest.approx(value), (ref.spec.id, when)
            times = sorted(t for t in truth if min(stored) <= t <= max(stored))
            changes = [t for prev, t in itertools.pairwise(times) if truth[t] != truth[prev]]
            assert set(changes) <= set(stored), (ref.spec.id, sorted(set(changes) - set(stored))[:5])
    finally:
        remove_influx(settings)
