"""Collector throughput benchmark: node-opcua server (another process) -> Collector -> embedded SQLite store.

    python tests/benchmarks/bench_collector.py [--server node|fast] [--nodes 10000] [--period 200] [--seconds 30]
        [--max-notifications 0] [--publish-requests 4] [--batch-size 5000] [--profile FILE] [--only PHASES]
        [--store sqlite|influx] [--sides telegraf-file,wattline-sqlite,telegraf-influx,wattline-influx]
        [--periods 200,1000]

The server (``--server node``: collectors/opcua/tests/node_server, node-opcua; ``--server fast``: the compiled
async-opcua server in tests/benchmarks/fast_server, built with cargo into ~/.cache/wattline on first use) changes every
node each ``period`` ms, so it is asked to offer nodes * 1000 / period values/s. Phases, each with its own session on the same server and the same nodes:

``collector``  the Collector into a fresh SQLite store: values/s received and stored, p95/median delay from source
               timestamp to stored, peak RSS of this process, values lost (must be 0).
``reference``  the issue's reference: a raw asyncua subscription (stock publish loop, per-value handler doing
               nothing); the ratio collector / reference is printed.
``offered``    what the server really delivers (queue size 10 per item, like the collector's default): our bulk-decoding publish loop with 8 PublishRequests in flight,
               counting values and doing nothing else (decode cost only), so the server's limit shows.
``store``      ``write_batch`` alone (no OPC UA) for batches shaped like the collector's (10 machines x nodes/10
               fields, one value per node per period), at ``--batch-size`` and at 50,000 values, through a
               ProcessStore (as the collector writes) and in this process.

``telegraf``   side by side with the reference the issue names, Telegraf 1.37.2 (built by deploy/telegraf/install.sh
               into ~/.cache/wattline/telegraf), each side a process of its own on a fresh server, at every
               ``--periods`` (default 200 and 1000 ms: 50,000 and 10,000 values/s asked): Telegraf's
               ``inputs.opcua_listener`` (10 plugin instances) into a file and into InfluxDB (``outputs.influxdb_v2``),
               ``wattline collect`` into the embedded store and into InfluxDB (InfluxStore); InfluxDB is the shared
               server of deploy/influxdb/start.sh (its env file), a bucket per side (kept; ``--drop-buckets``). Per
               side: CPU seconds of all its processes over the ``--seconds`` window, per value delivered; peak RSS and
               PSS summed over its processes; values delivered counted exactly in the destination (lines in the file,
               rows in SQLite, points in InfluxDB) by source timestamp inside the window. Ratios ours / Telegraf's are
               printed per destination. ``--sides`` picks and orders the sides.

``--store influx`` runs the ``collector`` phase into InfluxDB instead of SQLite (with ``--profile``: its profile).
``--thread-writer`` makes the collector write from a thread of its own process (``buffer.write_process: false``).

``--max-notifications N`` raises node-opcua's cap of 1,000 notifications per NotificationMessage (0 keeps it).
``--profile FILE`` runs the collector phase under cProfile, writes FILE (pstats) and prints the top functions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import logging
import os
import pstats
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
#: Code to benchmark: this checkout, or another one (WATTLINE_BENCH_CODE=/path/to/checkout, e.g. `git archive` of an
#: older commit) for before/after comparisons; the side processes of the telegraf phase also need it on PYTHONPATH.
sys.path.insert(0, os.environ.get("WATTLINE_BENCH_CODE", str(ROOT)))

from collectors.buffer import BatchWriter  # noqa: E402
from collectors.opcua.collector import Collector  # noqa: E402
from collectors.opcua.config import parse_collector_config  # noqa: E402
from collectors.opcua.tests.plant_server import NS_URI, free_port  # noqa: E402
from collectors.opcua.tests.test_node_opcua import start_node_server, stop_node_server  # noqa: E402
from core.storage.sqlite import SQLiteStore  # noqa: E402

MACHINES = 10
NS_S = 1_000_000_000
FAST_SERVER = Path(__file__).resolve().parent / "fast_server"
#: Build folder of the compiled server (outside the repository).
FAST_SERVER_TARGET = Path.home() / ".cache" / "wattline" / "fast_server" / "target"


def build_fast_server() -> Path:
    """Build (on demand, once) the compiled async-opcua benchmark server; returns the binary."""
    env = dict(os.environ, CARGO_TARGET_DIR=str(FAST_SERVER_TARGET))
    print("building tests/benchmarks/fast_server (cargo, release; first build takes minutes)...", flush=True)
    subprocess.run(["cargo", "build", "--release", "--quiet", "--manifest-path", str(FAST_SERVER / "Cargo.toml")],
                   env=env, check=True)
    return FAST_SERVER_TARGET / "release" / "wattline-fast-opcua-server"


def start_fast_server(port: int, extra: int, period: int, max_notifications: int) -> subprocess.Popen:
    binary = build_fast_server()
    proc = subprocess.Popen([str(binary), "--port", str(port), "--machines", str(MACHINES), "--extra", str(extra),
                             "--period", str(period), "--max-notifications", str(max_notifications)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if line.startswith("READY"):
            break
    else:
        raise RuntimeError(f"fast server did not start (exit code {proc.wait()})")
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # READY is printed just before the listener binds
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return proc
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("fast server does not accept connections")


def node_ids(machines: int, extra: int) -> list[str]:
    return [f"nsu={NS_URI};s=north/l1/m{m}/Extra{k:04d}" for m in range(machines) for k in range(extra)]


async def run_collector(endpoint: str, extra: int, period: int, seconds: float, tmp: Path, args) -> dict:
    from collectors.opcua.session import ServerSession

    if hasattr(ServerSession, "publish_requests"):
        ServerSession.publish_requests = args.publish_requests
    groups = [{"name": f"m{m}", "measurement": "opcua", "tags": {"machine": f"m{m}"},
               "sampling_interval_ms": period, "publishing_interval_ms": period,
               "nodes": [{"node_id": f"nsu={NS_URI};s=north/l1/m{m}/Extra{k:04d}", "field": f"e{k:04d}"}
                         for k in range(extra)]} for m in range(MACHINES)]
    cfg = parse_collector_config({"store": str(tmp / "w.db"), "servers": [{"name": "bench", "endpoint": endpoint,
                                  "groups": groups}], "spool": {"path": str(tmp / "spool")},
                                  "buffer": {"batch_size": args.batch_size, "write_process": not args.thread_writer},
                                  "metrics": {"listen": None}})
    bucket = None
    if args.store == "influx":  # the collector into InfluxDB (a bucket of its own on the shared server)
        from core.storage.influx import InfluxStore

        influx = _Influx()
        influx.drop_buckets = args.drop_buckets
        bucket = f"bench_collector_{os.getpid()}_{int(time.time())}"
        influx.bucket(bucket)
        store = InfluxStore(f"influx://?env_file={influx.env_file}&bucket={bucket}&spool_dir={tmp / 'influx-spool'}")
    else:
        store = SQLiteStore(tmp / "w.db")
    # Time spent inside the store's write_batch (wall clock, writer thread): tells a slow store from an idle writer.
    write_stats = {"calls": 0, "values": 0, "seconds": 0.0}
    write_durations: list[float] = []

    def timed(target):
        raw_write = target.write_batch

        def timed_write(batch):
            a = time.perf_counter()
            try:
                return raw_write(batch)
            finally:
                write_stats["calls"] += 1
                write_stats["values"] += len(batch)
                write_stats["seconds"] += time.perf_counter() - a
                write_durations.append(time.perf_counter() - a)

        target.write_batch = timed_write

    col = Collector(cfg, store)
    stop = asyncio.Event()
    task = asyncio.create_task(col.run(stop))
    proc = psutil.Process()
    rss = 0
    while not col.sessions[0].connected or col.received < extra * MACHINES:
        await asyncio.sleep(0.1)
    timed(col.writer.store)  # the ProcessStore when the collector writes from a separate process
    child = psutil.Process(col.writer.store.pid) if getattr(col.writer.store, "pid", None) else None
    child_rss = 0
    total_pss = 0
    await asyncio.sleep(2)  # warm-up
    # CPU time of the event loop's thread (not wall time): on a shared, loaded machine waiting for a core or for the
    # interpreter lock would otherwise be charged to whatever function happened to run.
    prof = cProfile.Profile(time.thread_time) if args.profile else None
    r0, w0, t0 = col.received, col.written, time.monotonic()
    ws0 = dict(write_stats)
    write_durations.clear()
    col.writer.latencies.clear()
    cpu0 = proc.cpu_times()
    ccpu0 = child.cpu_times() if child else None
    if prof:
        prof.enable()  # profiles the event loop thread (receive, decode, rows); the writer thread is in "store"
    while time.monotonic() - t0 < seconds:
        await asyncio.sleep(0.5)
        rss = max(rss, proc.memory_info().rss)
        if child:
            child_rss = max(child_rss, child.memory_info().rss)
        # Proportional set size of this process and every process it started (writer, forkserver): shared pages
        # counted once, so this is what the collector as a whole costs in memory.
        tree = [proc, *proc.children(recursive=True)]
        pss = 0
        for p_ in [t for t in tree if "python" in t.name()]:  # not the OPC UA server
            with contextlib.suppress(psutil.Error):  # the process ended between listing and reading
                pss += p_.memory_full_info().pss
        total_pss = max(total_pss, pss)
    if prof:
        prof.disable()
    r1, w1, t1 = col.received, col.written, time.monotonic()
    ws1 = dict(write_stats)
    cpu1 = proc.cpu_times()
    ccpu1 = child.cpu_times() if child else None
    lat = sorted(col.writer.latencies)
    backlog = col.writer.backlog
    stop.set()
    await task
    store.close()
    if bucket and influx.drop_buckets:
        influx.drop(bucket)
    if prof:
        prof.dump_stats(args.profile)
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(18)
        print(out.getvalue())
    dt = t1 - t0
    return {"received_per_s": (r1 - r0) / dt, "written_per_s": (w1 - w0) / dt,
            "p95_latency_s": lat[int(0.95 * (len(lat) - 1))] if lat else float("nan"),
            "median_latency_s": statistics.median(lat) if lat else float("nan"), "rss_mb": rss / 2**20,
            "cpu_percent": 100 * ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / dt,
            "writer_process_rss_mb": child_rss / 2**20,
            "all_processes_pss_mb": total_pss / 2**20,
            "writer_process_cpu_percent": (100 * ((ccpu1.user + ccpu1.system) - (ccpu0.user + ccpu0.system)) / dt
                                           if child else 0.0),
            "backlog_at_end": backlog, "lost": col.received - col.written - col.spool.count_values(),
            "store_write_busy_s": ws1["seconds"] - ws0["seconds"], "store_write_calls": ws1["calls"] - ws0["calls"],
            "store_write_values_per_busy_s": (ws1["values"] - ws0["values"]) / max(1e-9, ws1["seconds"] - ws0["seconds"]),
            "store_write_median_s": statistics.median(write_durations) if write_durations else float("nan"),
            "store_write_max_s": max(write_durations, default=float("nan"))}


async def run_reference(endpoint: str, extra: int, period: int, seconds: float) -> dict:
    """The issue's reference: stock asyncua subscription, legacy per-value handler doing nothing."""
    from asyncua import Client

    class Handler:
        n = 0

        def datachange_notification(self, node, val, data):
            Handler.n += 1

        def status_change_notification(self, status):
            pass

    client = Client(endpoint, timeout=30)
    await client.connect()
    try:
        sub = await client.create_subscription(period, Handler())
        ns = await client.get_namespace_index(NS_URI)
        nodes = [client.get_node(n.replace(f"nsu={NS_URI}", f"ns={ns}")) for n in node_ids(MACHINES, extra)]
        for i in range(0, len(nodes), 1000):
            await sub.subscribe_data_change(nodes[i:i + 1000], sampling_interval=period, queuesize=10)
        await asyncio.sleep(4)
        n0, t0 = Handler.n, time.monotonic()
        await asyncio.sleep(seconds)
        rate = (Handler.n - n0) / (time.monotonic() - t0)
    finally:
        await client.disconnect()
    return {"received_per_s": rate}


async def run_offered(endpoint: str, extra: int, period: int, seconds: float, outstanding: int = 8) -> dict:
    """What the server delivers: bulk-decoding publish loop, several requests in flight, counting only."""
    from asyncua import Client, ua

    from collectors.opcua.fastpublish import FastDataChange, install_fast_publish

    count = {"values": 0, "messages": 0, "max_per_message": 0}

    def on_publish(result):
        for d in result.NotificationMessage.NotificationData:
            if d.__class__ is FastDataChange or isinstance(d, ua.DataChangeNotification):
                n = len(d.items) if d.__class__ is FastDataChange else len(d.MonitoredItems)
                count["values"] += n
                count["messages"] += 1
                count["max_per_message"] = max(count["max_per_message"], n)

    client = Client(endpoint, timeout=30)
    install_fast_publish(client, outstanding)
    await client.connect()
    try:
        params = ua.CreateSubscriptionParameters(RequestedPublishingInterval=period, RequestedLifetimeCount=10000,
                                                 RequestedMaxKeepAliveCount=100, MaxNotificationsPerPublish=0,
                                                 PublishingEnabled=True)
        sub = await client.uaclient.create_subscription(params, on_publish)
        ns = await client.get_namespace_index(NS_URI)
        ids = [ua.NodeId.from_string(n.replace(f"nsu={NS_URI}", f"ns={ns}")) for n in node_ids(MACHINES, extra)]
        for i in range(0, len(ids), 1000):
            req = ua.CreateMonitoredItemsParameters(SubscriptionId=sub.SubscriptionId,
                                                    TimestampsToReturn=ua.TimestampsToReturn.Both)
            for h, nid in enumerate(ids[i:i + 1000]):
                req.ItemsToCreate.append(ua.MonitoredItemCreateRequest(
                    ItemToMonitor=ua.ReadValueId(NodeId=nid, AttributeId=ua.AttributeIds.Value),
                    MonitoringMode=ua.MonitoringMode.Reporting,
                    RequestedParameters=ua.MonitoringParameters(ClientHandle=i + h, SamplingInterval=period,
                                                                QueueSize=10, DiscardOldest=True)))
            await client.uaclient.create_monitored_items(req)
        await asyncio.sleep(4)
        v0, m0, t0 = count["values"], count["messages"], time.monotonic()
        await asyncio.sleep(seconds)
        dt = time.monotonic() - t0
    finally:
        await client.disconnect()
    return {"received_per_s": (count["values"] - v0) / dt, "messages_per_s": (count["messages"] - m0) / dt,
            "max_values_per_message": count["max_per_message"]}


def run_store(nodes: int, period: int, batch_size: int, seconds_of_data: float, tmp: Path,
              in_process: bool = False) -> dict:
    """The store's write_batch alone for collector-shaped batches (after the series exist), through a ProcessStore
    like the collector (or in this process with ``in_process``); the row-to-column conversion is included."""
    from core.storage.process import ProcessStore

    path = tmp / f"store-{batch_size}-{int(in_process)}.db"
    store = SQLiteStore(path) if in_process else ProcessStore(f"sqlite:///{path}")
    writer = BatchWriter(store)
    extra = nodes // MACHINES
    tags = [(("machine", f"m{m}"),) for m in range(MACHINES)]
    t0 = time.time_ns()
    cycles = max(2, int(seconds_of_data * 1000 / period))
    rows = []
    for c in range(cycles + 1):
        ts = t0 + c * period * 1_000_000
        rows.extend(("opcua", tags[i // extra], f"e{i % extra:04d}", ts, float(c), 0) for i in range(nodes))
    store.write_batch(writer._batch(rows[:nodes]))  # creates the series
    rows = rows[nodes:]
    spent = 0.0
    for b in range(0, len(rows), batch_size):
        a = time.perf_counter()
        store.write_batch(writer._batch(rows[b:b + batch_size]))
        spent += time.perf_counter() - a
    store.close()
    return {"batch_size": batch_size, "in_process": in_process, "values_per_s": len(rows) / spent,
            "values": len(rows)}



# -- Telegraf side by side -------------------------------------------------------------------------------------------
#: The reference the issue names; built by deploy/telegraf/install.sh into ~/.cache/wattline/telegraf/<version>.
TELEGRAF_VERSION = "1.37.2"
#: Telegraf's opcua_listener stops with BadTooManyOperations when one instance creates 10,000 monitored items in one
#: call; split over this many plugin instances (one OPC UA session each) it runs.
TELEGRAF_INSTANCES = 10
SIDES = ("telegraf-file", "wattline-sqlite", "telegraf-influx", "wattline-influx", "wattline-sqlite-thread")
#: wattline-sqlite-thread: the embedded store written from a thread of the collector process (buffer.write_process:
#: false) instead of the writer process; not run unless named in --sides.
DEFAULT_SIDES = SIDES[:4]


def build_telegraf() -> Path:
    """Build (on demand, once) the reference Telegraf with deploy/telegraf/install.sh; returns the binary."""
    out = subprocess.run([str(ROOT / "deploy" / "telegraf" / "install.sh")], capture_output=True, text=True,
                         env=dict(os.environ, TELEGRAF_VERSION=TELEGRAF_VERSION))
    if out.returncode != 0:
        raise RuntimeError(f"deploy/telegraf/install.sh failed:\n{out.stderr[-3000:]}")
    return Path(out.stdout.strip().splitlines()[-1])


def namespace_index(endpoint: str) -> int:
    """The server's namespace index of NS_URI (Telegraf 1.37 resolves ``namespace_uri`` only once connected, and
    refuses it at start)."""
    from asyncua import Client

    async def get() -> int:
        client = Client(endpoint, timeout=30)
        await client.connect()
        try:
            return await client.get_namespace_index(NS_URI)
        finally:
            await client.disconnect()

    return asyncio.run(get())


def telegraf_config(endpoint: str, extra: int, period: int, output: dict) -> str:
    """Telegraf TOML: TELEGRAF_INSTANCES opcua_listener instances (machines split evenly) and one output.

    Settings match the collector's: source timestamps, sampling and publishing interval = ``period`` ms, queue size
    10 (the plugin's default), 5,000 metrics per write, flushed every second, a buffer large enough to lose nothing.
    """
    lines = ["[agent]", '  interval = "10s"', "  round_interval = false", "  metric_batch_size = 5000",
             "  metric_buffer_limit = 2000000", '  flush_interval = "1s"', '  flush_jitter = "0s"',
             '  precision = "0s"', "  omit_hostname = true", "  quiet = true", ""]
    ns = namespace_index(endpoint)
    per = -(-MACHINES // TELEGRAF_INSTANCES)
    for i in range(0, MACHINES, per):
        lines += ["[[inputs.opcua_listener]]", '  name = "opcua"', f'  endpoint = "{endpoint}"',
                  '  security_policy = "None"', '  security_mode = "None"', '  auth_method = "Anonymous"',
                  f'  subscription_interval = "{period}ms"', '  timestamp = "source"', '  connect_timeout = "30s"',
                  '  request_timeout = "30s"', '  connect_fail_behavior = "retry"']
        for m in range(i, min(MACHINES, i + per)):
            lines += ["  [[inputs.opcua_listener.group]]", f'    namespace = "{ns}"',
                      '    identifier_type = "s"', f'    default_tags = {{ machine = "m{m}" }}',
                      f'    sampling_interval = "{period}ms"', "    nodes = ["]
            lines += [f'      {{name = "e{k:04d}", identifier = "north/l1/m{m}/Extra{k:04d}"}},' for k in range(extra)]
            lines += ["    ]"]
        lines.append("")
    if output["kind"] == "file":
        lines += ["[[outputs.file]]", f'  files = ["{output["path"]}"]', '  data_format = "influx"']
    else:
        lines += ["[[outputs.influxdb_v2]]", f'  urls = ["{output["url"]}"]', '  token = "${WATTLINE_BENCH_TOKEN}"',
                  f'  organization = "{output["org"]}"', f'  bucket = "{output["bucket"]}"',
                  '  content_encoding = "gzip"', '  timeout = "30s"']
    return "\n".join(lines) + "\n"


def wattline_config(endpoint: str, extra: int, period: int, store: str, tmp: Path, write_process: bool = True) -> dict:
    """The collector's config for the same nodes (default settings; metrics endpoint on a free port)."""
    groups = [{"name": f"m{m}", "measurement": "opcua", "tags": {"machine": f"m{m}"},
               "sampling_interval_ms": period, "publishing_interval_ms": period,
               "nodes": [{"node_id": f"nsu={NS_URI};s=north/l1/m{m}/Extra{k:04d}", "field": f"e{k:04d}"}
                         for k in range(extra)]} for m in range(MACHINES)]
    return {"store": store, "servers": [{"name": "bench", "endpoint": endpoint, "groups": groups}],
            "spool": {"path": str(tmp / "spool")}, "metrics": {"listen": "127.0.0.1:0"},
            "buffer": {"write_process": write_process}}


def _influx_env_file() -> Path:
    explicit = os.environ.get("WATTLINE_INFLUX_ENV_FILE")
    if explicit:
        return Path(explicit)
    run_dir = os.environ.get("WATTLINE_INFLUX_RUN_DIR") or os.path.join(
        os.environ.get("TMPDIR", tempfile.gettempdir()), f"wattline-influxdb-{os.getuid()}")
    return Path(run_dir) / "influx.env"


class _Influx:
    """The shared InfluxDB server: a bucket per run, exact point counts by time range.

    Buckets are left on the server unless ``--drop-buckets``: twice in this session influxd 2.7.12 died with a
    segmentation fault (a windowed query of another client reading an index that was being unmapped) right when
    this benchmark deleted a bucket of a few million points, and the server is shared.
    """

    def __init__(self) -> None:
        from core.storage.influx_settings import InfluxSettings, read_env_file

        env = read_env_file(_influx_env_file())
        self.env_file = _influx_env_file()
        self.drop_buckets = False
        self.settings = InfluxSettings(url=env["WATTLINE_INFLUX_URL"], org=env["WATTLINE_INFLUX_ORG"],
                                       token_file=env["WATTLINE_INFLUX_TOKEN_FILE"], timeout_ms=600_000)

    def bucket(self, name: str) -> None:
        """A plain bucket for either side (no rollup tasks: they would only add the server's work to the run)."""
        from influxdb_client import InfluxDBClient

        s = self.settings.model_copy(update={"bucket": name})
        with InfluxDBClient(url=s.url, token=s.read_token(), org=s.org, timeout=s.timeout_ms) as client:
            org_id = client.organizations_api().find_organizations(org=s.org)[0].id
            client.buckets_api().create_bucket(bucket_name=name, org_id=org_id)

    def drop(self, name: str) -> None:
        from core.storage.influx_setup import remove_influx

        remove_influx(self.settings.model_copy(update={"bucket": name}))

    def count(self, bucket: str, t0_ns: int, t1_ns: int, ticks: bool = False) -> tuple[int, int]:
        """Values (not status or quality fields) with a timestamp in [t0, t1), and (with ``ticks``) how many
        distinct timestamps they have."""
        from influxdb_client import InfluxDBClient

        from core.storage.influx_lp import flux_time

        s = self.settings
        base = (f'from(bucket: "{bucket}") |> range(start: {flux_time(t0_ns)}, stop: {flux_time(t1_ns)}) '
                '|> filter(fn: (r) => r._field != "Quality" and r._field != "wattline_status" and '
                'r._field != "wattline_missing") |> group()')
        out = []
        with InfluxDBClient(url=s.url, token=s.read_token(), org=s.org, timeout=s.timeout_ms) as client:
            for flux in [base + " |> count()"] + ([base + ' |> keep(columns: ["_time"]) |> unique(column: "_time")'
                                                   ' |> map(fn: (r) => ({r with _value: 1})) |> count()'] if ticks else []):
                tables = client.query_api().query(flux)
                out.append(int(sum(rec.get_value() for table in tables for rec in table.records)))
        return out[0], (out[1] if ticks else 0)


def _count_file_lines(path: Path, t0_ns: int, t1_ns: int) -> tuple[int, int]:
    """Lines of a line-protocol file whose timestamp (the last word) is in [t0, t1), and their distinct timestamps."""
    n = 0
    ticks = set()
    with open(path, "rb") as fh:
        for line in fh:
            t = int(line.rsplit(b" ", 1)[1])
            if t0_ns <= t < t1_ns:
                n += 1
                ticks.add(t)
    return n, len(ticks)


def _count_sqlite(path: Path, t0_ns: int, t1_ns: int) -> tuple[int, int]:
    import sqlite3

    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return con.execute("SELECT count(*), count(DISTINCT ts) FROM points WHERE ts >= ? AND ts < ?",
                           (t0_ns, t1_ns)).fetchone()
    finally:
        con.close()


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def _cpu_s(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def run_side(side: str, endpoint: str, extra: int, period: int, seconds: float, tmp: Path,
             influx: _Influx | None) -> dict:
    """One side (Telegraf or `wattline collect`, into a file/SQLite or InfluxDB) against a running server.

    CPU [s] and memory (RSS, PSS) are summed over every process of the side (Wattline: the collector, its writer
    process, the forkserver and multiprocessing's resource tracker); values delivered are counted exactly in the
    destination by source timestamp in the measurement window [t0, t1).
    """
    folder = Path(tempfile.mkdtemp(prefix=f"{side}-", dir=tmp))
    bucket = f"bench_{side.replace('-', '_')}_{os.getpid()}_{int(time.time())}"
    env = dict(os.environ)
    if side.startswith("telegraf"):
        binary = build_telegraf()
        if side == "telegraf-file":
            output = {"kind": "file", "path": str(folder / "metrics.lp")}
        else:
            influx.bucket(bucket)
            s = influx.settings
            output = {"kind": "influx", "url": s.url, "org": s.org, "bucket": bucket}
            env["WATTLINE_BENCH_TOKEN"] = s.read_token()
        conf = folder / "telegraf.conf"
        conf.write_text(telegraf_config(endpoint, extra, period, output), encoding="utf-8")
        cmd = [str(binary), "--config", str(conf)]
    else:
        import json

        if side.startswith("wattline-sqlite"):
            store = str(folder / "w.db")
        else:
            influx.bucket(bucket)
            store = f"influx://?env_file={influx.env_file}&bucket={bucket}&spool_dir={folder / 'influx-spool'}"
        conf = folder / "collector.yaml"
        conf.write_text(json.dumps(wattline_config(endpoint, extra, period, store, folder,
                                                   write_process=side != "wattline-sqlite-thread")), encoding="utf-8")
        cmd = [sys.executable, "-m", "wattline", "collect", "--config", str(conf)]
    log_file = open(folder / "side.log", "wb")  # noqa: SIM115 - closed in the finally below, after its writer stopped
    proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=folder)
    try:
        def delivered_so_far(t0: int, t1: int, ticks: bool = False) -> tuple[int, int]:
            if side == "telegraf-file":
                path = folder / "metrics.lp"
                return _count_file_lines(path, t0, t1) if path.exists() else (0, 0)
            if side.startswith("wattline-sqlite"):
                path = folder / "w.db"
                try:
                    return _count_sqlite(path, t0, t1) if path.exists() else (0, 0)
                except Exception:  # noqa: BLE001 - schema not created yet
                    return 0, 0
            return influx.count(bucket, t0, t1, ticks)

        # Ready: values of the last 10 s reach the destination (subscribed, writing); then a warm-up. A side that
        # cannot keep up (a loaded machine) is measured anyway: it delivers less in the window.
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{side} ended with exit code {proc.returncode}; see {folder / 'side.log'}:\n"
                                   + (folder / "side.log").read_text(errors="replace")[-3000:])
            now = time.time_ns()
            if delivered_so_far(now - 10 * NS_S, now)[0] > 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{side} delivered nothing within 180 s; see {folder / 'side.log'}")
            time.sleep(1.0)
        time.sleep(10.0)  # warm-up
        procs = _tree(proc.pid)
        names = sorted({p.name() for p in procs})
        t0 = time.time_ns()
        cpu0 = _cpu_s(procs)
        m0 = time.monotonic()
        rss_max = pss_max = 0
        pss_sum = n_samples = 0
        while time.monotonic() - m0 < seconds:
            time.sleep(1.0)
            rss = pss = 0
            for p in procs:
                try:
                    mem = p.memory_full_info()
                    rss += mem.rss
                    pss += mem.pss
                except psutil.Error:
                    pass
            rss_max, pss_max = max(rss_max, rss), max(pss_max, pss)
            pss_sum += pss
            n_samples += 1
        cpu1 = _cpu_s(procs)
        t1 = time.time_ns()
        time.sleep(5.0)  # let the window's values reach the destination before the stop
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(180)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log_file.close()
    # Asked: nodes x window / period. A tick the server skipped (it is starved too on a loaded machine) or that
    # overflowed the server's queues is missing for every node; "of_ticks" is the share of the values of the ticks
    # that arrived at all (1.0: nothing lost within a tick).
    delivered, ticks = delivered_so_far(t0, t1, ticks=True)
    window_s = (t1 - t0) / 1e9
    result = {"side": side, "window_s": round(window_s, 2), "delivered": delivered,
              "delivered_per_s": delivered / window_s,
              "delivered_of_asked": delivered / (extra * MACHINES * window_s * 1000 / period),
              "delivered_of_ticks": delivered / max(1, ticks * extra * MACHINES),
              "cpu_s": cpu1 - cpu0, "cpu_percent": 100 * (cpu1 - cpu0) / window_s,
              "cpu_us_per_value": 1e6 * (cpu1 - cpu0) / max(1, delivered),
              "rss_max_mb": rss_max / 2**20, "pss_max_mb": pss_max / 2**20,
              "pss_mean_mb": pss_sum / max(1, n_samples) / 2**20, "processes": ", ".join(names)}
    if side.endswith("influx"):
        if influx.drop_buckets:
            influx.drop(bucket)
        else:
            print(f"  (bucket {bucket} left on the server; --drop-buckets removes them)", flush=True)
    if side == "telegraf-file":
        (folder / "metrics.lp").unlink(missing_ok=True)
    return result


def print_comparison(results: list[dict]) -> None:
    """Ratios ours / Telegraf's per destination pair, same run."""
    by = {r["side"]: r for r in results}
    pairs = [("wattline-influx", "telegraf-influx"), ("wattline-sqlite", "telegraf-influx"),
             ("wattline-sqlite", "telegraf-file"), ("wattline-sqlite-thread", "telegraf-influx"),
             ("wattline-sqlite-thread", "telegraf-file")]
    for ours, theirs in pairs:
        if ours in by and theirs in by:
            a, b = by[ours], by[theirs]
            print(f"  {ours} / {theirs}: CPU per value {a['cpu_us_per_value'] / b['cpu_us_per_value']:.2f}x, "
                  f"PSS {a['pss_max_mb'] / b['pss_max_mb']:.2f}x (RSS {a['rss_max_mb'] / b['rss_max_mb']:.2f}x), "
                  f"delivered {a['delivered_of_asked']:.3f} vs {b['delivered_of_asked']:.3f} of asked", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", choices=["node", "fast"], default="node",
                    help="node: node-opcua (collectors/opcua/tests/node_server); fast: compiled async-opcua server "
                         "(tests/benchmarks/fast_server, built with cargo on first use)")
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--period", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--max-notifications", type=int, default=0)
    ap.add_argument("--publish-requests", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=5000)
    ap.add_argument("--profile", default=None)
    ap.add_argument("--store", choices=["sqlite", "influx"], default="sqlite",
                    help="collector phase: the embedded store, or InfluxDB (the server of the env file "
                         "deploy/influxdb/start.sh wrote; a bucket of its own, removed afterwards)")
    ap.add_argument("--drop-buckets", action="store_true",
                    help="delete the benchmark's InfluxDB buckets afterwards (see _Influx: not on a shared server)")
    ap.add_argument("--thread-writer", action="store_true",
                    help="write the store from a thread of the collector process (buffer.write_process: false)")
    ap.add_argument("--only", default="collector,reference,offered,store",
                    help="comma-separated phases: collector, reference, offered, store, telegraf")
    ap.add_argument("--sides", default=",".join(DEFAULT_SIDES),
                    help=f"telegraf phase: sides to run, in this order (of {', '.join(SIDES)})")
    ap.add_argument("--periods", default="200,1000",
                    help="telegraf phase: server periods [ms] to run the sides at (200 = 50,000 values/s asked)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    phases = set(args.only.split(","))
    extra = args.nodes // MACHINES
    tmp = Path(tempfile.mkdtemp(prefix="wattline-bench-"))
    name = "async-opcua 0.19 (Rust, tests/benchmarks/fast_server)" if args.server == "fast" else "node-opcua"
    cap = args.max_notifications or ("unlimited" if args.server == "fast" else "1000 (node-opcua default)")
    print(f"server: {name}, {args.nodes} nodes changing every {args.period} ms = "
          f"{args.nodes * 1000 / args.period:.0f} values/s asked; max notifications per message {cap}", flush=True)

    def with_server(phase):
        # A fresh server per phase: a session the previous phase could not close in time would keep its
        # subscriptions sampling on the server and slow down the next phase.
        port = free_port()
        if args.server == "fast":
            proc = start_fast_server(port, extra, args.period, args.max_notifications)
            endpoint = f"opc.tcp://127.0.0.1:{port}/"
        else:
            proc = start_node_server(port, tmp, machines=MACHINES, extra=extra, period=args.period,
                                     max_notifications=args.max_notifications)
            endpoint = f"opc.tcp://127.0.0.1:{port}/wattline"
        try:
            result = phase(endpoint)  # a coroutine (the asyncio phases) or the result (the process sides)
            return asyncio.run(result) if asyncio.iscoroutine(result) else result
        finally:
            if args.server == "fast":
                proc.terminate()
                proc.wait(10)
            else:
                stop_node_server(proc)

    col = ref = None
    if "collector" in phases:
        col = with_server(lambda ep: run_collector(ep, extra, args.period, args.seconds, tmp, args))
        print("collector:", {k: round(v, 3) for k, v in col.items()}, flush=True)
    if "reference" in phases:
        ref = with_server(lambda ep: run_reference(ep, extra, args.period, args.seconds))
        print("reference (raw asyncua subscription, per-value handler doing nothing):",
              {k: round(v, 1) for k, v in ref.items()}, flush=True)
    if col and ref:
        print(f"ratio collector/reference: {col['received_per_s'] / ref['received_per_s']:.2f}")
    if "offered" in phases:
        off = with_server(lambda ep: run_offered(ep, extra, args.period, args.seconds))
        print("offered by the server (bulk decode, 8 requests in flight, counting only):",
              {k: round(v, 1) for k, v in off.items()}, flush=True)
    if "telegraf" in phases:
        sides = [x for x in args.sides.split(",") if x]
        unknown = sorted(set(sides) - set(SIDES))
        if unknown:
            ap.error(f"--sides: unknown {unknown}; valid: {', '.join(SIDES)}")
        influx = _Influx() if any(x.endswith("influx") for x in sides) else None
        if influx:
            influx.drop_buckets = args.drop_buckets
        print(f"Telegraf {TELEGRAF_VERSION}: {build_telegraf()}", flush=True)
        for period in [int(x) for x in args.periods.split(",")]:
            print(f"-- {args.nodes} nodes every {period} ms = {args.nodes * 1000 / period:.0f} values/s asked, "
                  f"{args.seconds:.0f} s window", flush=True)
            results = []
            for side in sides:
                extra_p = args.nodes // MACHINES

                def phase(ep, side=side, period=period, extra_p=extra_p):
                    return run_side(side, ep, extra_p, period, args.seconds, tmp, influx)

                args_period, args.period = args.period, period
                try:
                    r = with_server(phase)
                finally:
                    args.period = args_period
                results.append(r)
                print(f"  {side}: " + ", ".join(f"{k} {round(v, 3) if isinstance(v, float) else v}"
                                                for k, v in r.items() if k != "side"), flush=True)
            print_comparison(results)
    if "store" in phases:
        for bs in (args.batch_size, 50_000):
            for in_process in (False, True):
                print("store write_batch alone:", run_store(args.nodes, args.period, bs, 6.0, tmp, in_process),
                      flush=True)


if __name__ == "__main__":
    main()
