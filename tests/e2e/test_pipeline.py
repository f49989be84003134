"""Simulator -> OPC UA over a localhost socket -> collector -> store -> query, checked value by value."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from collectors.opcua.collector import Collector
from collectors.opcua.config import CollectorConfig
from collectors.opcua.discover import get_starter_config
from core.config import parse_config
from core.model import to_ns
from core.storage.sqlite import SQLiteStore
from simulator.plant import default_plant
from simulator.server import PlantServer
from tests.support import wait_for_async

pytestmark = pytest.mark.integration


@pytest.mark.asyncio
async def test_every_stored_value_is_one_the_simulator_published(tmp_path):
    plant = default_plant(machines=4)
    server = PlantServer(plant, port=0, seed=7)
    published: dict[str, dict[int, object]] = {}
    server.add_listener(lambda node, value, when: published.setdefault(node, {}).__setitem__(to_ns(when), value))
    store = SQLiteStore(tmp_path / "plant.db")
    await server.start()
    try:
        starter = await get_starter_config(server.endpoint)
        starter.update({"spool": {"path": str(tmp_path / "spool")}, "metrics": {"listen": None}})
        collector = Collector(parse_config(CollectorConfig, starter), store)
        stop = asyncio.Event()
        running = asyncio.create_task(collector.run(stop))
        def five_values_per_machine() -> bool:
            frame = store.query("electrical", "active_power_kw", 0, 2**62)
            counts = frame.groupby("machine").size() if len(frame) else []
            return len(counts) == len(plant.machines) and min(counts) >= 5

        t0 = time.monotonic()
        await wait_for_async(five_values_per_machine, 120, "5 stored values of each machine's power", interval=0.5)
        print(f"5 values per machine stored after {time.monotonic() - t0:.1f} s")
        stop.set()
        await running
    finally:
        await server.stop()

    assert collector.stats.values_written == collector.stats.values_received > 0
    for ref in plant.machines:
        node = f"ns={server.idx};s={ref.path}/ActivePower"
        truth = published[node]
        frame = store.query("electrical", "active_power_kw", min(truth), max(truth) + 1, tags={"machine": ref.spec.id})
        assert len(frame) >= 5, (ref.spec.id, len(frame))
        assert set(frame["line"]) == {ref.line.id} and set(frame["site"]) == {ref.site.id}
        for when, value in zip(frame["time"], frame["value"]):
            assert truth[when.value] == pytest.approx(value), (ref.spec.id, when)
        # Every change the server published while the subscription was live reached the store.
        times = sorted(t for t in truth if frame["time"].iloc[0].value <= t <= frame["time"].iloc[-1].value)
        changes = [t for prev, t in itertools.pairwise(times) if truth[t] != truth[prev]]
        stored = {when.value for when in frame["time"]}
        assert set(changes) <= stored, (ref.spec.id, sorted(set(changes) - stored)[:5])
    assert len(plant.machines) == 4
