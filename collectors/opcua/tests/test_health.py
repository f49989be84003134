"""The collector writes its own health into the store (collectors.health), against a real asyncua plant server."""

from __future__ import annotations

import asyncio

import pytest

from collectors.health import FIELDS, MEASUREMENT, health_points
from collectors.opcua.collector import Collector
from collectors.opcua.tests.conftest import fast_config
from collectors.opcua.tests.plant_server import start_plant_server
from collectors.opcua.tests.test_collector import M, machine_group, nid, write_and_wait
from core.storage.sqlite import SQLiteStore
from tests.support import wait_for_async


def test_health_points_from_a_status_document():
    status = {"collector": "hall3", "backlog": 7, "spool": {"bytes": 2048},
              "servers": [{"name": "a", "connected": True, "values_per_second": 12.5, "last_value_age_s": 0.4,
                           "reconnects": 2, "bad_nodes": [{"node": "x", "reason": "r"}]},
                          {"name": "b", "connected": False, "values_per_second": 0.0, "last_value_age_s": None,
                           "reconnects": 0, "bad_nodes": []}]}
    a, b = health_points(status, 123)
    assert a.measurement == MEASUREMENT and dict(a.tags) == {"collector": "hall3", "server": "a"}
    assert dict(a.fields) == {"connected": 1.0, "values_per_s": 12.5, "last_value_age_s": 0.4, "backlog": 7.0,
                              "spool_bytes": 2048.0, "bad_nodes": 1.0, "reconnects": 2.0}
    assert b.fields["connected"] == 0.0 and "last_value_age_s" not in b.fields  # no value yet: left out, not 0
    north, south, b2 = health_points(status, 123, {"a": ["north", "south"]})
    assert (north.tags["site"], south.tags["site"]) == ("north", "south") and "site" not in b2.tags
    assert dict(north.fields) == dict(a.fields)


@pytest.mark.integration  # an asyncua plant server
def test_collector_writes_its_health_series(tmp_path):
    async def main():
        srv = await start_plant_server()
        group = machine_group(extra_nodes=[{"node_id": nid(f"{M}/NoSuchVariable"), "field": "x"}])
        cfg = fast_config(srv.endpoint, tmp_path, [group])
        store = SQLiteStore(tmp_path / "w.db")
        col = Collector(cfg, store)
        col.health_every_s = 0.2
        stop = asyncio.Event()
        task = asyncio.create_task(col.run(stop))
        for v in (11.0, 12.0):
            await write_and_wait(srv, col, f"{M}/ActivePower", v)

        def connected_points():
            frame = store.query(MEASUREMENT, "connected", 0, 2**62)
            return len(frame) >= 3 and frame["value"].iloc[-1] == 1.0

        await wait_for_async(connected_points, 30, "three health points with the server connected")
        stop.set()
        await task
        await srv.stop()
        return col, store

    col, store = asyncio.run(main())
    assert col.received == col.written  # health points are not plant values: the writer's counts stay exact
    series = {(i.key.field, tuple(sorted(i.key.tag_dict.items()))) for i in store.series(MEASUREMENT)}
    tags = (("collector", col.config.name), ("server", "plant"), ("site", "north"))
    assert {(f, tags) for f in FIELDS} <= series
    bad = store.query(MEASUREMENT, "bad_nodes", 0, 2**62)
    assert bad["value"].iloc[-1] == 1.0  # the unknown node
    age = store.query(MEASUREMENT, "last_value_age_s", 0, 2**62)["value"]
    assert (age >= 0).all() and age.iloc[-1] < 30
