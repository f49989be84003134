"""Months unattended, against a real asyncua server on localhost: dropped subscriptions, silent sessions, a writer
that crashes or hangs, an unreachable InfluxDB, the receive rate, ``wattline check`` on Bad values."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
import urllib.request

import pytest
from asyncua import ua

from collectors import CollectorError
from collectors.buffer import BatchWriter
from collectors.opcua.check import format_check_table, get_check_report
from collectors.opcua.collector import Collector
from collectors.opcua.tests.conftest import fast_config
from collectors.opcua.tests.plant_server import start_plant_server
from collectors.opcua.tests.test_collector import M, machine_group, nid
from collectors.tests.test_supervise import fail_once
from core.spool import RowSpool
from core.storage.sqlite import SQLiteStore
from tests.support import wait_for_async

pytestmark = pytest.mark.integration


def stored(store) -> int:
    return sum(s.count for s in store.series())


def powers(store) -> list[float]:
    return store.query("electrical", "active_power_kw", 0, 2**62)["value"].tolist()


def http_get(port: int, path: str) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10).read().decode()


async def start(cfg, store):
    col = Collector(cfg, store)
    stop = asyncio.Event()
    task = asyncio.create_task(col.run(stop))
    await wait_for_async(lambda: col.sessions[0].connected and col.written >= 3, 30, "the collector running")
    return col, stop, task


def test_subscription_deleted_on_the_server_is_recreated_without_reconnect(tmp_path):
    async def main():
        srv = await start_plant_server()
        cfg = fast_config(srv.endpoint, tmp_path, [machine_group()])
        store = SQLiteStore(tmp_path / "w.db")
        col, stop, task = await start(cfg, store)
        session = col.sessions[0]
        old = list(session._subscription_ids)
        service = srv.server.iserver.subscription_service
        assert set(old) <= set(service.subscriptions)
        await service.delete_subscriptions(old)  # the server drops our subscription
        await wait_for_async(lambda: session.resubscriptions >= 1, 30, "the subscription created again")
        await srv.write(f"{M}/ActivePower", 77.0)
        await wait_for_async(lambda: 77.0 in powers(store), 30, "a value after the re-creation stored")
        stop.set()
        await task
        await srv.stop()
        return col, session, old

    col, session, old = asyncio.run(main())
    assert session.reconnects == 0 and session.resubscriptions == 1
    assert not set(session._subscription_ids) & set(old)
    notes = [n for n in col.notices if n.name == "collector.server.subscription_recreated"]
    assert len(notes) == 1 and notes[0].details["old"] == old
    print("re-created because", notes[0].details["reason"])
    assert col.received == col.written


def answer_queued_publishes(server, code=ua.StatusCodes.BadNoSubscription) -> int:
    """Answer the server's queued PublishRequests with ``code``, as the specification asks of a server that has no
    subscription left (asyncua's server leaves them queued). Returns how many were answered."""
    n = 0
    for client in server.bserver.clients:
        queue = client.processor._publish_requests
        while queue:
            request = queue.popleft()
            fault = ua.ServiceFault()
            fault.ResponseHeader.ServiceResult = ua.StatusCode(code)
            client.processor.send_response(request.requesthdr.RequestHandle, request.seqhdr, fault)
            n += 1
    return n


def test_publish_answered_bad_no_subscription_recreates_the_subscription(tmp_path):
    async def main():
        srv = await start_plant_server()
        cfg = fast_config(srv.endpoint, tmp_path, [machine_group()])
        store = SQLiteStore(tmp_path / "w.db")
        col, stop, task = await start(cfg, store)
        session = col.sessions[0]
        old = list(session._subscription_ids)
        await srv.server.iserver.subscription_service.delete_subscriptions(old)
        answered = answer_queued_publishes(srv.server)
        await wait_for_async(lambda: session.resubscriptions >= 1, 30, "the subscription created again")
        await srv.write(f"{M}/ActivePower", 66.0)
        await wait_for_async(lambda: 66.0 in powers(store), 30, "a value after the re-creation stored")
        stop.set()
        await task
        await srv.stop()
        return col, session, answered

    col, session, answered = asyncio.run(main())
    assert answered >= 1 and session.reconnects == 0 and session.resubscriptions == 1
    notes = [n for n in col.notices if n.name == "collector.server.subscription_recreated"]
    assert len(notes) == 1 and "BadNoSubscription" in notes[0].details["reason"], notes
    assert col.received == col.written


def test_silent_session_is_treated_as_lost_and_last_error_is_cleared_after_reconnect(tmp_path):
    async def main():
        srv = await start_plant_server()
        cfg = fast_config(srv.endpoint, tmp_path, [machine_group()])
        store = SQLiteStore(tmp_path / "w.db")
        col, stop, task = await start(cfg, store)
        session = col.sessions[0]
        # The subscription stays known to the server but sends nothing any more, not even keep-alives.
        for sid in session._subscription_ids:
            await srv.server.iserver.subscription_service.subscriptions[sid].stop()
        silent_from = time.monotonic()
        await wait_for_async(lambda: session.reconnects >= 1, 60, "the silent session reconnected")
        detected_s = time.monotonic() - silent_from
        error_while_lost = [n.details["error"] for n in col.notices if n.name == "collector.server.connection_lost"]
        await wait_for_async(lambda: session.connected, 30, "connected again")
        await srv.write(f"{M}/ActivePower", 88.0)
        await wait_for_async(lambda: 88.0 in powers(store), 30, "a value after the reconnect stored")
        status = col.status()["servers"][0]
        stop.set()
        await task
        await srv.stop()
        return col, session, detected_s, error_while_lost, status

    col, session, detected_s, error_while_lost, status = asyncio.run(main())
    print(f"silence detected and reconnected after {detected_s:.1f} s (threshold {session.silence_s():.1f} s)")
    assert session.reconnects == 1 and session.resubscriptions == 0
    assert len(error_while_lost) == 1 and "no PublishResponse" in error_while_lost[0]
    assert status["last_error"] is None and session.last_error is None  # cleared by the successful reconnect
    assert col.received == col.written


def test_writer_crash_in_a_running_collector_is_a_notice_and_a_metric_and_loses_nothing(tmp_path, monkeypatch):
    raised = fail_once(monkeypatch, BatchWriter, "_write")

    async def main():
        srv = await start_plant_server()
        cfg = fast_config(srv.endpoint, tmp_path, [machine_group()])
        store = SQLiteStore(tmp_path / "w.db")
        col, stop, task = await start(cfg, store)
        for v in (21.0, 22.0, 23.0):
            await srv.write(f"{M}/ActivePower", v)
        await wait_for_async(lambda: 23.0 in powers(store), 30, "values after the crash stored")
        metrics = await asyncio.to_thread(http_get, col.metrics_server.port, "/metrics")
        stop.set()
        await task
        await srv.stop()
        return col, store, metrics

    col, store, metrics = asyncio.run(main())
    assert raised == [1]
    assert col.received == col.written == stored(store) and col.spool.count_values() == 0
    failed = [n for n in col.notices if n.name == "collector.task.failed"]
    assert [n.details["task"] for n in failed] == ["writer"]
    assert 'wattline_collector_task_failures_total{collector="opcua",task="writer"} 1.0' in metrics
    assert 'wattline_collector_notices_total{collector="opcua",name="collector.task.failed"} 1.0' in metrics


def test_collector_whose_writer_process_hangs_stops_within_its_grace_and_loses_nothing(tmp_path):
    shutdown_s = 1.0

    async def run_once(cfg, store, hang: bool):
        col, stop, task = await start(cfg, store)
        col.process_store = col.writer.store
        if hang:
            child = col.writer.store.pid
            os.kill(child, signal.SIGSTOP)  # the injected hang
            before = col.received
            for v in (31.0, 32.0, 33.0):
                await srv.write(f"{M}/ActivePower", v)
            await wait_for_async(lambda: col.received >= before + 3, 30, "values received while the writer hangs")
        else:
            await wait_for_async(lambda: col.writer.replayed > 0 and len(col.spool) == 0, 30, "the spool replayed")
        t0 = time.monotonic()
        stop.set()
        await asyncio.wait_for(task, shutdown_s + 30)  # generous bound; the measured time is printed
        return col, time.monotonic() - t0

    async def main():
        global srv
        srv = await start_plant_server()
        cfg = fast_config(srv.endpoint, tmp_path, [machine_group()])
        cfg = cfg.model_copy(update={"buffer": cfg.buffer.model_copy(update={"shutdown_timeout_s": shutdown_s})})
        store = SQLiteStore(tmp_path / "w.db")
        first, took = await run_once(cfg, store, hang=True)
        spooled = RowSpool(cfg.spool.path).count_values()
        second, _ = await run_once(cfg, store, hang=False)
        await srv.stop()
        return first, second, took, spooled, store

    first, second, took, spooled, store = asyncio.run(main())
    print(f"collector with a hung writer process stopped in {took:.2f} s (shutdown_timeout_s {shutdown_s})")
    assert first.process_store.aborts == 1 and second.process_store.aborts == 0
    assert spooled > 0 and first.received == first.written + spooled
    assert second.writer.replayed == spooled and len(second.spool) == 0
    assert second.written == second.received + spooled  # written counts the replayed values too
    # Every value of the first run exactly once. The second run receives each node's current value again, with the
    # same source timestamp as a row already stored, so it adds no row.
    assert stored(store) == first.received
    assert {31.0, 32.0, 33.0} <= set(powers(store))


def test_receive_rate_is_sampled_on_the_collectors_clock(tmp_path):
    async def main():
        srv = await start_plant_server()
        cfg = fast_config(srv.endpoint, tmp_path, [machine_group()])
        store = SQLiteStore(tmp_path / "w.db")
        col, stop, task = await start(cfg, store)
        for i in range(10):
            await srv.write(f"{M}/ActivePower", 100.0 + i)
            await asyncio.sleep(0.1)  # pacing the values the server sends, not synchronisation
        await wait_for_async(lambda: col.received >= 13, 30, "13 values received")
        # The very first read of each endpoint already shows the rate.
        status = json.loads(await asyncio.to_thread(http_get, col.metrics_server.port, "/status"))
        metrics = await asyncio.to_thread(http_get, col.metrics_server.port, "/metrics")
        stop.set()
        await task
        await srv.stop()
        return status, metrics

    status, metrics = asyncio.run(main())
    assert status["servers"][0]["values_per_second"] > 0
    line = next(ln for ln in metrics.splitlines() if ln.startswith("wattline_opcua_values_per_second{"))
    assert float(line.rsplit(" ", 1)[1]) > 0
    # prometheus_client: process metrics and the latency histogram come with it; the documented names stay.
    assert "process_cpu_seconds_total" in metrics and "process_resident_memory_bytes" in metrics
    assert 'wattline_collector_write_latency_seconds_bucket{le="+Inf"}' in metrics
    for name in ("wattline_collector_spool_full", "wattline_collector_dropped_values_total",
                 "wattline_collector_store_down", "wattline_opcua_reconnects_total", "wattline_store_spool_bytes"):
        assert f"{name}{{" in metrics, name


def test_influxdb_outage_shows_in_status_and_metrics(tmp_path, monkeypatch):
    from core.storage.influx import InfluxStore

    with socket.socket() as s:  # a port nobody listens on: InfluxDB is down
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("WATTLINE_INFLUX_TOKEN", "not-used-the-server-is-down")

    async def main():
        srv = await start_plant_server()
        cfg = fast_config(srv.endpoint, tmp_path, [machine_group()])
        store = InfluxStore(url=f"http://127.0.0.1:{port}", spool_dir=str(tmp_path / "influx-spool"), max_retries=0,
                            retry_interval_ms=100, flush_interval_ms=100, timeout_ms=1000)
        col = Collector(cfg, store)
        stop = asyncio.Event()
        task = asyncio.create_task(col.run(stop))
        await wait_for_async(lambda: col.status()["store_down"], 60, "the store reported down")
        await wait_for_async(lambda: any(n.name == "collector.store.down" for n in col.notices), 30, "the notice")
        status = col.status()
        metrics = await asyncio.to_thread(http_get, col.metrics_server.port, "/metrics")
        stop.set()
        await task
        await srv.stop()
        store._closed = True  # nothing to flush to: the lines stay in the InfluxDB spool for the next start
        store._stop.set()
        return col, store, status, metrics

    col, _store, status, metrics = asyncio.run(main())
    assert status["store_down"] and status["store_health"]["spool_bytes"] > 0
    assert "Connection refused" in status["last_write_error"] or "NewConnectionError" in status["last_write_error"]
    assert 'wattline_collector_store_down{collector="opcua"} 1.0' in metrics
    line = next(ln for ln in metrics.splitlines() if ln.startswith("wattline_store_spool_bytes{"))
    assert float(line.rsplit(" ", 1)[1]) > 0
    assert col.received == col.written  # handed to the store, which spooled them


def test_full_spool_raises_a_notice_and_a_metric(tmp_path):
    cfg = fast_config("opc.tcp://127.0.0.1:4840/unused", tmp_path, [machine_group()])
    cfg = cfg.model_copy(update={"spool": cfg.spool.model_copy(update={"max_mb": 0.02})})
    col = Collector(cfg, SQLiteStore(tmp_path / "w.db"))
    batch = [("electrical", (("machine", "m"),), "active_power_kw", 10**18 + i, float(i), 0) for i in range(100)]
    for _ in range(10):
        col.spool.append(batch)
    metrics = col.metrics_text()
    dropped = col.spool.dropped_values
    assert dropped > 0 and col.spool.count_values() + dropped == 1000
    notes = [n for n in col.notices if n.name == "collector.spool.full"]
    assert len(notes) == 1 and notes[0].level == "error"  # once, not once per batch
    assert f'wattline_collector_dropped_values_total{{collector="opcua"}} {float(dropped)}' in metrics
    assert 'wattline_collector_spool_full{collector="opcua"} 1.0' in metrics


def test_check_reports_a_bad_value_as_a_warning_and_an_unknown_node_as_bad(tmp_path):
    async def main():
        srv = await start_plant_server()
        await srv.write(f"{M}/ActivePower", 0.0, status=ua.StatusCodes.BadSensorFailure)
        group = machine_group(extra_nodes=[{"node_id": nid(f"{M}/NoSuchVariable"), "field": "x"}])
        ok_cfg = fast_config(srv.endpoint, tmp_path, [machine_group()])
        bad_cfg = fast_config(srv.endpoint, tmp_path, [group])
        reports = await get_check_report(ok_cfg), await get_check_report(bad_cfg)
        await srv.stop()
        return reports

    ok, bad = asyncio.run(main())
    assert ok[0].ok and not ok[0].bad and ok[0].warnings == {nid(f"{M}/ActivePower"): "BadSensorFailure"}
    assert ok[0].readable == ok[0].nodes == 3
    assert "warning: node" in format_check_table(ok) and "BadSensorFailure" in format_check_table(ok)
    assert not bad[0].ok and set(bad[0].bad) == {nid(f"{M}/NoSuchVariable")}


def test_a_job_given_up_stops_the_collector_with_an_error(tmp_path, monkeypatch):
    async def main():
        srv = await start_plant_server()
        cfg = fast_config(srv.endpoint, tmp_path, [machine_group()])
        store = SQLiteStore(tmp_path / "w.db")
        col = Collector(cfg, store)
        col.supervisor.max_restarts = 0  # the first failure of any job is fatal

        def broken():
            raise RuntimeError("tick broken (test)")

        monkeypatch.setattr(col, "_check_store", broken)
        stop = asyncio.Event()
        try:
            await asyncio.wait_for(col.run(stop), 60)
        except CollectorError as exc:
            error = exc
        else:
            error = None
        await srv.stop()
        return col, error

    col, error = asyncio.run(main())
    assert error is not None and "tick" in str(error) and error.exit_code == 1
    assert col.supervisor.fatal[0] == "tick" and col.received == col.written
