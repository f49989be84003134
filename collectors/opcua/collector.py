"""The OPC UA collector: one session per server, a batching writer, the spool, metrics and the status file.

Usage::

    store = open_store(config.store)
    collector = Collector(config, store)
    await collector.run(stop)   # returns after stop is set and everything received is stored or spooled
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from collectors.buffer import BatchWriter
from collectors.metrics import MetricsServer, format_prometheus
from collectors.opcua.config import CollectorConfig
from collectors.opcua.session import ServerSession
from collectors.spool import DiskSpool
from core.errors import StoreError
from core.notices import Notice
from core.storage.base import Store
from core.storage.process import ProcessStore
from core.storage.sqlite import SQLiteStore

log = logging.getLogger("wattline.collector")

#: Version of the status JSON schema (README "Status file").
STATUS_SCHEMA = 1


@dataclass(frozen=True)
class CollectorStats:
    """Counter snapshot of a collector [values]."""

    values_received: int
    values_written: int
    values_spooled: int
    backlog: int
    write_errors: int


class Collector:
    """Collect from every configured server into a store.

    Parameters
    ----------
    config : CollectorConfig
        Validated config (:func:`collectors.opcua.config.read_collector_config`).
    store : Store
        Destination store; the caller opens and closes it.

    Attributes
    ----------
    received : int
        Values received from all servers (property).
    written : int
        Values stored, spool replays included (property).
    sessions : list of ServerSession
        One per server.
    notices : deque of Notice
        The latest recoverable problems (bad nodes, reconnects, counter resets).
    """

    def __init__(self, config: CollectorConfig, store: Store) -> None:
        self.config = config
        self.store = store
        self.spool = DiskSpool(config.spool.path, int(config.spool.max_mb * 1024 * 1024))
        buf = config.buffer
        self.writer = BatchWriter(
            store,
            self.spool,
            batch_size=buf.batch_size,
            flush_interval_s=buf.flush_interval_s,
            max_memory_values=buf.max_memory_values,
            retry_interval_s=buf.retry_interval_s,
        )
        self.notices: collections.deque[Notice] = collections.deque(maxlen=500)
        self.notice_counts: collections.Counter[str] = collections.Counter()
        self.sessions = [ServerSession(s, self.writer.add_rows, self.notify) for s in config.servers]
        self.metrics_server: MetricsServer | None = None
        self.started_at = time.time()
        self.running = False

    # -- counters ------------------------------------------------------------------------------------------------------
    @property
    def received(self) -> int:
        """Values received from all servers."""
        return self.writer.received

    @property
    def written(self) -> int:
        """Values written to the store (spool replays included)."""
        return self.writer.written

    @property
    def stats(self) -> "CollectorStats":
        """Counters snapshot (values received, written, spooled, backlog, write errors)."""
        w = self.writer.stats()
        return CollectorStats(w["received"], w["written"], w["spooled"], w["backlog"], w["write_errors"])

    def notify(self, notice: Notice) -> None:
        """Record and log a recoverable problem."""
        self.notices.append(notice)
        self.notice_counts[notice.name] += 1
        level = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}.get(notice.level, 30)
        log.log(level, "%s", notice.to_json())

    # -- running -------------------------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Collect until ``stop`` is set; then store or spool everything received and return."""
        self.running = True
        process_store = None
        if self.config.buffer.write_process and isinstance(self.store, SQLiteStore):
            # SQLite releases and re-takes the GIL around every row; beside the busy receive loop each re-take waits
            # for the thread switch interval, so the embedded store is written from its own process.
            try:
                process_store = await asyncio.to_thread(ProcessStore, f"sqlite:///{self.store.path.resolve()}")
                self.writer.store = process_store
            except StoreError as exc:  # collect anyway, writing from this process
                self.notify(Notice("collector.writer_process.unavailable",
                                   f"cannot start the store's writer process ({exc}); writing from the collector "
                                   "process instead, which is slower above about 20,000 values/s",
                                   {"store": self.store.description}, level="warning"))
        self.writer.start()
        if self.config.metrics.listen:
            try:
                self.metrics_server = MetricsServer(self.config.metrics.listen, self.metrics_text, self.status).start()
                log.info("metrics at http://%s:%d/metrics", self.metrics_server.host, self.metrics_server.port)
            except OSError as exc:
                self.notify(Notice("collector.metrics.unavailable",
                                   f"cannot serve metrics on {self.config.metrics.listen}: {exc}; collecting anyway",
                                   {"listen": self.config.metrics.listen}, level="error"))
        tasks = [asyncio.create_task(s.run(stop), name=f"opcua-{s.config.name}") for s in self.sessions]
        status_task = asyncio.create_task(self._status_loop(stop)) if self.config.status_file else None
        try:
            await stop.wait()
        finally:
            done, pending = await asyncio.wait(tasks, timeout=5.0)
            for t in pending:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # Everything received is stored or spooled before we return (SIGTERM loses nothing).
            await asyncio.to_thread(self.writer.close, self.config.buffer.shutdown_timeout_s)
            self.running = False
            if status_task:
                status_task.cancel()
                await asyncio.gather(status_task, return_exceptions=True)
            if self.config.status_file:
                await asyncio.to_thread(self.write_status_file)
            if self.metrics_server:
                self.metrics_server.close()
            if process_store is not None:
                await asyncio.to_thread(process_store.close)
                self.writer.store = self.store
            log.info("collector stopped: %d values received, %d written, %d in the spool",
                     self.received, self.written, self.spool.count_values())

    async def _status_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.write_status_file)
            except OSError as exc:
                log.warning("cannot write status file %s: %s", self.config.status_file, exc)
            try:
                await asyncio.wait_for(stop.wait(), 2.0)
            except asyncio.TimeoutError:
                pass

    # -- observability -------------------------------------------------------------------------------------------------
    def status(self) -> dict:
        """The status document (schema in the README, ``schema: 1``)."""
        w = self.writer.stats()
        now = time.monotonic()
        servers = []
        for s in self.sessions:
            servers.append(
                {
                    "name": s.config.name,
                    "endpoint": s.config.endpoint,
                    "state": s.state,
                    "connected": s.connected,
                    "values_received": s.values_received,
                    "values_per_second": round(s.values_per_second(), 3),
                    "last_value_age_s": None if s.last_value_monotonic is None else round(now - s.last_value_monotonic, 3),
                    "reconnects": s.reconnects,
                    "nodes": sum(1 for n in s.nodes if not n.is_tag_source),
                    "bad_nodes": [{"node": k, "reason": v} for k, v in sorted(s.bad_nodes.items())],
                    "last_error": s.last_error,
                    "operation_limits": dict(s.limits),
                }
            )
        return {
            "schema": STATUS_SCHEMA,
            "collector": self.config.name,
            "pid": os.getpid(),
            "running": self.running,
            "started_at": self.started_at,
            "updated_at": time.time(),
            "store": getattr(self.store, "description", ""),
            "values_received": w["received"],
            "values_written": w["written"],
            "backlog": w["backlog"],
            "spool": {"path": str(self.spool.folder), "bytes": w["spool_bytes"], "max_bytes": self.spool.max_bytes,
                      "segments": w["spool_segments"], "full": w["spool_full"], "dropped_values": w["dropped"]},
            "write_errors": w["write_errors"],
            "store_down": w["store_down"],
            "last_write_error": w["last_error"],
            "servers": servers,
            "notices": [n.to_dict() for n in list(self.notices)[-50:]],
        }

    def write_status_file(self) -> None:
        """Write :meth:`status` as JSON to ``status_file`` atomically (tmp + rename)."""
        path = Path(self.config.status_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.status(), default=str, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(tmp, path)

    def metrics_text(self) -> str:
        """Prometheus text exposition of the collector's metrics."""
        st = self.status()
        c = {"collector": st["collector"]}
        per_server = st["servers"]

        def srv(key, fn=lambda v: v):
            return [({**c, "server": s["name"]}, fn(s[key])) for s in per_server]

        families = [
            ("wattline_opcua_connected", "gauge", "1 when the session to the server is up.", srv("connected", int)),
            ("wattline_opcua_values_received_total", "counter", "Values received from the server.",
             srv("values_received")),
            ("wattline_opcua_values_per_second", "gauge", "Receive rate over the last 10 s [values/s].",
             srv("values_per_second")),
            ("wattline_opcua_last_value_age_seconds", "gauge", "Time since the last value arrived [s].",
             srv("last_value_age_s", lambda v: float("nan") if v is None else v)),
            ("wattline_opcua_reconnects_total", "counter", "Sessions lost and re-established.", srv("reconnects")),
            ("wattline_opcua_bad_nodes", "gauge", "Configured nodes skipped as bad.", srv("bad_nodes", len)),
            ("wattline_collector_values_written_total", "counter", "Values written to the store.",
             [(c, st["values_written"])]),
            ("wattline_collector_backlog_values", "gauge", "Values in memory waiting for the store.",
             [(c, st["backlog"])]),
            ("wattline_collector_spool_bytes", "gauge", "Size of the disk spool [bytes].", [(c, st["spool"]["bytes"])]),
            ("wattline_collector_spool_max_bytes", "gauge", "Bound of the disk spool [bytes].",
             [(c, st["spool"]["max_bytes"])]),
            ("wattline_collector_spool_full", "gauge", "1 when the spool is full and drops its oldest values (alarm).",
             [(c, int(st["spool"]["full"]))]),
            ("wattline_collector_dropped_values_total", "counter", "Values lost because the spool was full.",
             [(c, st["spool"]["dropped_values"])]),
            ("wattline_collector_write_errors_total", "counter", "Failed store writes.", [(c, st["write_errors"])]),
            ("wattline_collector_store_down", "gauge", "1 while store writes fail.", [(c, int(st["store_down"]))]),
            ("wattline_collector_notices_total", "counter", "Notices raised, by name.",
             [({**c, "name": k}, v) for k, v in sorted(self.notice_counts.items())]),
        ]
        return format_prometheus(families)
