"""The collector against a real asyncua plant server on localhost."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import pytest
from asyncua import ua

from collectors.opcua.collector import Collector
from collectors.opcua.config import parse_collector_config
from collectors.opcua.discover import get_starter_config
from collectors.opcua.tests.conftest import fast_config
from collectors.opcua.tests.plant_server import NS_URI, start_plant_server, wait_for
from collectors.opcua.values import SEMANTICS_CHANGED
from core.model import status_severity
from core.storage.sqlite import SQLiteStore
from tests.support import wait_for_async

# Real asyncua servers on localhost sockets, seconds each: the integration tier (the unit tier stays under 2 minutes).
pytestmark = pytest.mark.integration

M = "north/l1/cnc-01"


def nid(path):
    return f"nsu={NS_URI};s={path}"


def machine_group(machine=M, extra_nodes=()):
    return {
        "name": machine,
        "measurement": "electrical",
        "tags": {"site": "north", "line": "l1", "machine": machine.rsplit("/", 1)[-1]},
        "nodes": [
            {"node_id": nid(f"{machine}/ActivePower"), "field": "active_power_kw"},
            {"node_id": nid(f"{machine}/ActiveEnergy"), "field": "energy_kwh"},
            {"node_id": nid(f"{machine}/MaterialConsumed"), "measurement": "material", "field": "consumed_kg",
             "tags_from_nodes": {"material": nid(f"{machine}/MaterialId")}},
            *extra_nodes,
        ],
    }


async def write_and_wait(srv, col, path, value, **kwargs):
    """Write a value on the server and wait until the collector received it (instead of sleeping)."""
    before = col.received
    await srv.write(path, value, **kwargs)
    await wait_for_async(lambda: col.received > before, 30, f"{path} = {value!r} received")


async def run_collector(cfg, store):
    col = Collector(cfg, store)
    stop = asyncio.Event()
    task = asyncio.create_task(col.run(stop))
    return col, stop, task


def test_values_tags_status_and_counters_stored(tmp_path):
    async def main():
        srv = await start_plant_server()
        cfg = fast_config(srv.endpoint, tmp_path, [machine_group()])
        store = SQLiteStore(tmp_path / "w.db")
        col, stop, task = await run_collector(cfg, store)
        assert await wait_for(lambda: col.received >= 3)
        for v in (11.0, 12.0, 13.0):
            await write_and_wait(srv, col, f"{M}/ActivePower", v)
        await write_and_wait(srv, col, f"{M}/ActivePower", 99.0, status=ua.StatusCodes.BadSensorFailure)
        await write_and_wait(srv, col, f"{M}/ActiveEnergy", 2000.0)
        await write_and_wait(srv, col, f"{M}/ActiveEnergy", 1.0)  # meter reset
        await srv.write(f"{M}/MaterialId", "alu-6061")  # a tag source: no value of its own, the tag changes
        await wait_for_async(lambda: any(dict(n.state.tags).get("material") == "alu-6061" for n in col.sessions[0].nodes),
                             30, "the material tag to follow MaterialId")
        await write_and_wait(srv, col, f"{M}/MaterialConsumed", 4.5)
        stop.set()
        await task
        await srv.stop()
        return col, store

    col, store = asyncio.run(main())
    assert col.received == col.written
    power = store.query("electrical", "active_power_kw", 0, 2**62, tags={"machine": "cnc-01"})
    assert list(power["value"].iloc[:4]) == [10.0, 11.0, 12.0, 13.0]
    bad = power.iloc[-1]
    assert status_severity(int(bad["status"])) == "bad" and bad["value"] != bad["value"]  # NaN, not 99
    energy = store.query("electrical", "energy_kwh", 0, 2**62)
    assert list(energy["value"]) == [1000.0, 2000.0, 1.0]
    assert int(energy["status"].iloc[-1]) & SEMANTICS_CHANGED
    assert any(n.name == "collector.counter.reset" for n in col.notices)
    material = store.query("material", "consumed_kg", 0, 2**62)
    assert list(material["material"]) == ["steel-s235", "alu-6061"]
    assert list(material["value"]) == [0.0, 4.5]


def test_bad_nodes_reported_and_skipped(tmp_path):
    async def main():
        srv = await start_plant_server()
        extra = [
            {"node_id": nid(f"{M}/NoSuchVariable"), "field": "x"},
            {"node_id": "nsu=urn:not-there;s=a", "field": "y"},
            {"node_id": nid(f"{M}/MaterialId"), "field": "z"},  # a string: wrong type
            {"browse_path": "/Plant/north/l1/cnc-01/PowerFactor", "field": "power_factor"},  # group namespace
            {"browse_path": "/Plant/north/l1/cnc-01/Nope", "field": "w"},
        ]
        group = machine_group(extra_nodes=extra)
        group["namespace"] = NS_URI  # unprefixed browse path names are in the plant's namespace
        cfg = fast_config(srv.endpoint, tmp_path, [group])
        store = SQLiteStore(tmp_path / "w.db")
        col, stop, task = await run_collector(cfg, store)
        assert await wait_for(lambda: col.received >= 4), (col.received, col.sessions[0].bad_nodes, [(n.address, n.nodeid, n.bad) for n in col.sessions[0].nodes])
        await write_and_wait(srv, col, f"{M}/PowerFactor", 0.5)
        await write_and_wait(srv, col, f"{M}/ActivePower", 42.0)
        stop.set()
        await task
        await srv.stop()
        return col, store

    col, store = asyncio.run(main())
    bad = col.sessions[0].bad_nodes
    assert set(bad) == {nid(f"{M}/NoSuchVariable"), "nsu=urn:not-there;s=a", nid(f"{M}/MaterialId"),
                        "/Plant/north/l1/cnc-01/Nope"}
    assert "BadNodeIdUnknown" in bad[nid(f"{M}/NoSuchVariable")]
    names = {n.name for n in col.notices}
    assert {"collector.node.bad", "collector.node.wrong_type"} <= names
    assert list(store.query("electrical", "power_factor", 0, 2**62)["value"]) == [0.9, 0.5]
    assert 42.0 in list(store.query("electrical", "active_power_kw", 0, 2**62)["value"])


def test_recovers_after_server_restart(tmp_path):
    async def main():
        srv = await start_plant_server()
        port = int(srv.endpoint.rsplit(":", 1)[1].split("/")[0])
        cfg = fast_config(srv.endpoint, tmp_path, [machine_group()])
        store = SQLiteStore(tmp_path / "w.db")
        col, stop, task = await run_collector(cfg, store)
        assert await wait_for(lambda: col.sessions[0].connected)
        await srv.stop()
        assert await wait_for(lambda: not col.sessions[0].connected, 60)
        # Down long enough for the backoff to grow: three refused attempts (a condition, not a time).
        refused_from = col.sessions[0].connect_attempts
        assert await wait_for(lambda: col.sessions[0].connect_attempts >= refused_from + 3, 60)
        # The restarted server registers another namespace first: the index of urn:wattline:simulator changes.
        srv2 = await start_plant_server(port=port, layout={"north": {"l1": ["cnc-01"]}}, extra_ns="urn:first")
        back = time.monotonic()
        before = col.received
        ok = await wait_for(lambda: col.received > before, 60)  # generous: a loaded machine is slow
        recovered_s = time.monotonic() - back
        print(f"values again {recovered_s:.1f} s after the server came back")  # a figure, not an assertion
        await write_and_wait(srv2, col, f"{M}/ActivePower", 77.0)
        stop.set()
        await task
        await srv2.stop()
        return col, store, ok, recovered_s, srv2

    col, store, ok, recovered_s, srv2 = asyncio.run(main())
    assert ok, recovered_s
    assert srv2.ns != 2  # the namespace index really moved, and nsu= ids were resolved again
    assert col.sessions[0].reconnects == 1
    assert 77.0 in list(store.query("electrical", "active_power_kw", 0, 2**62)["value"])
    assert any(n.name == "collector.server.connection_lost" for n in col.notices)


def test_metrics_and_status_file(tmp_path):
    async def main():
        srv = await start_plant_server()
        cfg = fast_config(srv.endpoint, tmp_path, [machine_group()])
        store = SQLiteStore(tmp_path / "w.db")
        col, stop, task = await run_collector(cfg, store)
        assert await wait_for(lambda: col.written >= 3 and col.metrics_server is not None)
        await wait_for_async(lambda: (tmp_path / "status.json").exists(), 30, "the status file written")
        port = col.metrics_server.port
        metrics = await asyncio.to_thread(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode())
        status = await asyncio.to_thread(lambda: json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/status").read()))
        stop.set()
        await task
        await srv.stop()
        return metrics, status

    metrics, status = asyncio.run(main())
    assert 'wattline_opcua_connected{collector="opcua",server="plant"} 1' in metrics
    assert "wattline_collector_spool_full" in metrics and "wattline_collector_backlog_values" in metrics
    assert status["schema"] == 1 and status["servers"][0]["state"] == "connected"
    final = json.loads((tmp_path / "status.json").read_text())
    assert final["running"] is False and final["values_written"] == final["values_received"] >= 3


def test_polling_mode(tmp_path):
    async def main():
        srv = await start_plant_server()
        cfg = fast_config(srv.endpoint, tmp_path, [machine_group()], mode="polling", poll_interval_ms=100)
        store = SQLiteStore(tmp_path / "w.db")
        col, stop, task = await run_collector(cfg, store)
        assert await wait_for(lambda: col.received >= 9)
        stop.set()
        await task
        await srv.stop()
        return col

    col = asyncio.run(main())
    assert col.written == col.received >= 9


def test_requests_split_to_operation_limits(tmp_path):
    """3 machines x 200 extra nodes; the server says MaxMonitoredItemsPerCall = 100."""

    async def main():
        machines = [f"m{i}" for i in range(3)]
        srv = await start_plant_server(layout={"north": {"l1": machines}}, extra_vars_per_machine=200)
        await srv.server.get_node(ua.NodeId(11714, 0)).write_value(ua.Variant(100, ua.VariantType.UInt32))
        groups = [{"name": m, "tags": {"machine": m},
                   "nodes": [{"node_id": nid(f"north/l1/{m}/Extra{i:04d}"), "field": f"e{i}"} for i in range(200)]}
                  for m in machines]
        cfg = fast_config(srv.endpoint, tmp_path, groups)
        store = SQLiteStore(tmp_path / "w.db")
        col, stop, task = await run_collector(cfg, store)
        assert await wait_for(lambda: col.received >= 600, 20)
        stop.set()
        await task
        await srv.stop()
        return col

    col = asyncio.run(main())
    s = col.sessions[0]
    assert s.limits["MaxMonitoredItemsPerCall"] == 100
    assert s.monitored_item_calls == 6 and not s.bad_nodes


def test_discovered_config_collects(tmp_path):
    async def main():
        srv = await start_plant_server()
        starter = await get_starter_config(srv.endpoint)
        starter["spool"] = {"path": str(tmp_path / "sp")}
        starter["metrics"] = {"listen": None}
        cfg = parse_collector_config(starter)
        store = SQLiteStore(tmp_path / "w.db")
        col, stop, task = await run_collector(cfg, store)
        assert await wait_for(lambda: col.written >= 17, 10)
        stop.set()
        await task
        await srv.stop()
        return store

    store = asyncio.run(main())
    keys = {(s.key.measurement, s.key.field) for s in store.series()}
    assert ("weather", "outdoor_temp_c") in keys and ("machine_state", "state") in keys
    assert ("material", "consumed_kg") in keys
    weather = next(s for s in store.series() if s.key.measurement == "weather")
    assert weather.key.tag_dict == {"site": "north"}


def test_writes_through_a_writer_process_and_falls_back_when_it_cannot_start(tmp_path, monkeypatch):
    import os

    import collectors.opcua.collector as collector_module
    from core.errors import StoreError
    from core.storage.process import ProcessStore

    async def collect(store, path):
        srv = await start_plant_server()
        cfg = fast_config(srv.endpoint, tmp_path / path, [machine_group()])
        col, stop, task = await run_collector(cfg, store)
        assert await wait_for(lambda: col.written >= 3)
        writer_store = col.writer.store
        writer_pid = getattr(writer_store, "pid", os.getpid())
        await write_and_wait(srv, col, f"{M}/ActivePower", 42.0)
        stop.set()
        await task
        await srv.stop()
        return col, writer_store, writer_pid

    store = SQLiteStore(tmp_path / "a.db")
    col, writer_store, writer_pid = asyncio.run(collect(store, "a"))
    assert isinstance(writer_store, ProcessStore) and writer_pid != os.getpid()
    assert writer_store.pid is None  # the writer process ended with the collector
    assert col.writer.store is store and col.received == col.written
    assert 42.0 in store.query("electrical", "active_power_kw", 0, 2**62)["value"].tolist()

    def refuse(url, **_options):
        raise StoreError(f"no writer process for {url} (test)")

    monkeypatch.setattr(collector_module, "ProcessStore", refuse)
    store_b = SQLiteStore(tmp_path / "b.db")
    col_b, writer_b, pid_b = asyncio.run(collect(store_b, "b"))
    assert writer_b is store_b and pid_b == os.getpid() and col_b.received == col_b.written
    assert [n for n in col_b.notices if n.name == "collector.writer_process.unavailable"]
    assert 42.0 in store_b.query("electrical", "active_power_kw", 0, 2**62)["value"].tolist()
