"""Interoperability: the collector against an independent node-opcua server (npm; `npm ci` in node_server/)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from collectors.opcua.check import get_check_report
from collectors.opcua.collector import Collector
from collectors.opcua.tests.conftest import fast_config
from collectors.opcua.tests.plant_server import NS_URI, free_port, wait_for
from core.storage.sqlite import SQLiteStore
from tests.support import unavailable

pytestmark = pytest.mark.integration

NODE_DIR = Path(__file__).parent / "node_server"


def run_node_server(port, tmp_path, *args: str) -> subprocess.Popen:
    """Start server.js on ``port`` with the command-line ``args``; return once it prints READY."""
    if not (NODE_DIR / "node_modules" / "node-opcua").is_dir():
        unavailable(f"node-opcua is not installed: run `npm ci --prefix {NODE_DIR}`")
    proc = subprocess.Popen(["node", "server.js", "--port", str(port), "--pki", str(tmp_path / "pki"), *args],
                            cwd=NODE_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in proc.stdout:  # node-opcua may print warnings before READY
        if line.startswith("READY"):
            break
        seen.append(line)
    else:
        proc.kill()
        raise RuntimeError(f"node-opcua server did not start: {''.join(seen)}")
    proc.lines = []  # what it prints after READY (e.g. CERTIFICATE lines), kept by the thread that drains the pipe

    def drain():
        for line in proc.stdout:
            proc.lines.append(line)

    threading.Thread(target=drain, daemon=True).start()
    return proc


def start_node_server(port, tmp_path, machines=2, extra=3, period=200, max_notifications=0):
    return run_node_server(port, tmp_path, "--machines", str(machines), "--extra", str(extra), "--period", str(period),
                           "--max-notifications", str(max_notifications))


def stop_node_server(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def groups(machines, extra):
    out = []
    for m in range(machines):
        base = f"north/l1/m{m}"
        nodes = [{"node_id": f"nsu={NS_URI};s={base}/ActivePower", "field": "active_power_kw"},
                 {"node_id": f"nsu={NS_URI};s={base}/MaterialConsumed", "measurement": "material",
                  "field": "consumed_kg", "tags_from_nodes": {"material": f"nsu={NS_URI};s={base}/MaterialId"}}]
        nodes += [{"node_id": f"nsu={NS_URI};s={base}/Extra{k:04d}", "measurement": "opcua", "field": f"extra{k:04d}"}
                  for k in range(extra)]
        out.append({"name": base, "measurement": "electrical",
                    "tags": {"site": "north", "line": "l1", "machine": f"m{m}"}, "nodes": nodes})
    return out


def test_none_endpoint_subscription_to_1000_nodes(tmp_path):
    port = free_port()
    proc = start_node_server(port, tmp_path, machines=10, extra=100, period=500)
    try:
        cfg = fast_config(f"opc.tcp://127.0.0.1:{port}/wattline", tmp_path, groups(10, 100))

        async def main():
            store = SQLiteStore(tmp_path / "w.db")
            col = Collector(cfg, store)
            stop = asyncio.Event()
            task = asyncio.create_task(col.run(stop))
            assert await wait_for(lambda: col.received >= 5000, 30), col.received
            stop.set()
            await task
            return col, store

        col, store = asyncio.run(main())
    finally:
        stop_node_server(proc)
    s = col.sessions[0]
    assert not s.bad_nodes and s.limits["MaxMonitoredItemsPerCall"] == 1000
    assert s.monitored_item_calls >= 2  # 1,030 items split to the server's limit of 1,000
    series = store.series()
    assert len([x for x in series if x.key.measurement == "opcua"]) == 1000
    assert sum(x.count for x in series) == col.written == col.received
    materials = {x.key.tag_dict.get("material") for x in series if x.key.measurement == "material"}
    assert materials == {"steel-s235"}


def test_basic256sha256_sign_and_encrypt_with_username(tmp_path):
    port = free_port()
    proc = start_node_server(port, tmp_path)
    pw = tmp_path / "pw"
    pw.write_text("secret")
    pw.chmod(0o600)
    try:
        security = {"policy": "Basic256Sha256", "mode": "SignAndEncrypt", "auto_trust_first_use": True,
                    "certificate": str(tmp_path / "c" / "cert.der"), "private_key": str(tmp_path / "c" / "key.pem"),
                    "trust_folder": str(tmp_path / "c" / "trusted")}
        login = {"mode": "username", "username": "wattline", "password_file": str(pw)}
        cfg = fast_config(f"opc.tcp://127.0.0.1:{port}/wattline", tmp_path, groups(2, 3), security=security,
                          login=login)
        wrong = fast_config(f"opc.tcp://127.0.0.1:{port}/wattline", tmp_path, groups(2, 3), security=security,
                            login={"mode": "username", "username": "wattline", "password": "nope"})

        async def main():
            store = SQLiteStore(tmp_path / "w.db")
            col = Collector(cfg, store)
            stop = asyncio.Event()
            task = asyncio.create_task(col.run(stop))
            assert await wait_for(lambda: col.received >= 30, 20), col.sessions[0].last_error
            stop.set()
            await task
            bad = await get_check_report(wrong)
            good = await get_check_report(cfg)
            return col, bad, good

        col, bad, good = asyncio.run(main())
    finally:
        stop_node_server(proc)
    assert (tmp_path / "c" / "cert.der").is_file() and len(list((tmp_path / "c" / "trusted").iterdir())) == 1
    assert any(n.name == "collector.security.trusted_first_use" for n in col.notices)
    assert col.written == col.received >= 30
    assert good[0].ok and good[0].readable == 10
    assert not bad[0].ok and bad[0].error


def test_server_restart_mid_stream(tmp_path):
    port = free_port()
    proc = start_node_server(port, tmp_path, extra=5, period=100)
    cfg = fast_config(f"opc.tcp://127.0.0.1:{port}/wattline", tmp_path, groups(2, 5))
    result = {}

    async def main():
        store = SQLiteStore(tmp_path / "w.db")
        col = Collector(cfg, store)
        stop = asyncio.Event()
        task = asyncio.create_task(col.run(stop))
        assert await wait_for(lambda: col.received >= 50, 20)
        await asyncio.to_thread(stop_node_server, proc)
        assert await wait_for(lambda: not col.sessions[0].connected, 10)
        await asyncio.sleep(2.0)  # the server stays down 2 s: a duration under test, not synchronisation
        proc2 = await asyncio.to_thread(start_node_server, port, tmp_path, 2, 5, 100)
        result["proc2"] = proc2
        back = time.monotonic()
        n = col.received
        ok = await wait_for(lambda: col.received > n + 10, 15)
        result["recovered_s"] = time.monotonic() - back
        stop.set()
        await task
        return col, store, ok

    try:
        col, store, ok = asyncio.run(main())
    finally:
        if "proc2" in result:
            stop_node_server(result["proc2"])
        elif proc.poll() is None:
            stop_node_server(proc)
    print(f"values again {result['recovered_s']:.1f} s after the server came back")  # a figure, not an assertion
    assert ok, result  # within the generous 15 s of the wait: a loaded CI machine is slow
    assert col.sessions[0].reconnects == 1 and col.written == col.received
    assert sum(x.count for x in store.series()) == col.written
