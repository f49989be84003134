"""The OPC UA collector: one session per server, a batching writer, the spool, metrics and the status file.

Usage::

    store = open_store(config.store)
    collector = Collector(config, store)
    await collector.run(stop)   # returns after stop is set and everything received is stored or spooled

Every background thread and task (server sessions, the batch writer and spill threads, the status and metrics
endpoints, the rate sampler) runs under one :class:`core.supervise.Supervisor`: a failure is a notice
(``collector.task.failed``) and a metric (``wattline_collector_task_failures_total``), and the work restarts. A job
given up ends the run: :meth:`Collector.run` stores or spools everything, then raises
:class:`~collectors.CollectorError` (``wattline collect`` exits 1).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from collectors import CollectorError
from collectors.buffer import BatchWriter
from collectors.metrics import MetricsServer, collector_registry, render_metrics
from collectors.opcua.config import CollectorConfig
from collectors.opcua.session import ServerSession
from core.errors import StoreError
from core.notices import Notice
from core.spool import RowSpool, SegmentSpool
from core.storage.base import Store
from core.storage.process import ProcessStore
from core.storage.sqlite import SQLiteStore
from core.supervise import Supervisor

log = logging.getLogger("wattline.collector")

#: Version of the status JSON schema (README "Status file").
STATUS_SCHEMA = 1
#: A full spool raises its notice again at most this often while it keeps dropping [s].
SPOOL_NOTICE_EVERY_S = 60.0
#: How often the collector writes its own health into the store (collectors.health) [s].
HEALTH_EVERY_S = 10.0


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
        self.notices: collections.deque[Notice] = collections.deque(maxlen=500)
        self.notice_counts: collections.Counter[str] = collections.Counter()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.supervisor = Supervisor(self.notify, prefix="collector", on_fatal=self._on_fatal)
        self.spool = RowSpool(config.spool.path, int(config.spool.max_mb * 1024 * 1024))
        self._spool_notice_at: dict[str, float] = {}
        self.spool.on_drop = lambda n, reason: self._spool_dropped("collector.spool.full", n, reason)
        # InfluxDB keeps its own spool of line protocol (the same implementation): its drops are ours to report.
        store_spool = getattr(store, "spool", None)
        if isinstance(store_spool, SegmentSpool):
            store_spool.on_drop = lambda n, reason: self._spool_dropped("collector.store_spool.full", n, reason)
        buf = config.buffer
        self.registry, self.latency = collector_registry(self)
        self.writer = BatchWriter(
            store,
            self.spool,
            batch_size=buf.batch_size,
            flush_interval_s=buf.flush_interval_s,
            max_memory_values=buf.max_memory_values,
            retry_interval_s=buf.retry_interval_s,
            supervisor=self.supervisor,
            latency_observer=self.latency.observe,
        )
        self.sessions = [ServerSession(s, self.writer.add_rows, self.notify) for s in config.servers]
        self.metrics_server: MetricsServer | None = None
        self.started_at = time.time()
        self.running = False
        self._store_was_down = False
        self.health_every_s = HEALTH_EVERY_S  # 0 turns the health series off

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
    def stats(self) -> CollectorStats:
        """Counters snapshot (values received, written, spooled, backlog, write errors)."""
        w = self.writer.stats()
        return CollectorStats(w["received"], w["written"], w["spooled"], w["backlog"], w["write_errors"])

    def notify(self, notice: Notice) -> None:
        """Record and log a recoverable problem (from any thread)."""
        self.notices.append(notice)
        self.notice_counts[notice.name] += 1
        level = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}.get(notice.level, 30)
        log.log(level, "%s", notice.to_json())

    def _spool_dropped(self, name: str, n: int, reason: str) -> None:
        """A full spool dropped data: a notice (at most every SPOOL_NOTICE_EVERY_S) besides the metric."""
        now = time.monotonic()
        if now - self._spool_notice_at.get(name, -1e18) < SPOOL_NOTICE_EVERY_S:
            return
        self._spool_notice_at[name] = now
        self.notify(Notice(name, f"{reason}; raise spool.max_mb or fix the store (values are being lost)",
                           {"dropped": n}, level="error"))

    def _on_fatal(self, name: str, exc: BaseException) -> None:
        """A supervised job was given up: stop collecting (run() then raises)."""
        if self._stop is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    def store_health(self) -> dict:
        """The store's own health (InfluxDB: spool, drops, quarantine) or, for other stores, the writer's view."""
        health = getattr(self.store, "health", None)
        if callable(health):
            try:
                return dict(health())
            except Exception as exc:  # noqa: BLE001 - a health probe must not break the status page
                return {"down": True, "last_error": f"{type(exc).__name__}: {exc}"}
        return {}

    # -- running -------------------------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Collect until ``stop`` is set; then store or spool everything received and return."""
        self.running = True
        self._stop, self._loop = stop, asyncio.get_running_loop()
        buf = self.config.buffer
        process_store = None
        store = self.store
        if buf.write_process and isinstance(store, SQLiteStore):
            # SQLite releases and re-takes the GIL around every row; beside the busy receive loop each re-take waits
            # for the thread switch interval, so the embedded store is written from its own process.
            try:
                process_store = await asyncio.to_thread(
                    lambda: ProcessStore(f"sqlite:///{store.path.resolve()}", call_timeout_s=buf.write_timeout_s,
                                         term_grace_s=buf.shutdown_timeout_s + 10.0))
                self.writer.store = process_store
            except StoreError as exc:  # collect anyway, writing from this process
                self.notify(Notice("collector.writer_process.unavailable",
                                   f"cannot start the store's writer process ({exc}); writing from the collector "
                                   "process instead, which is slower above about 20,000 values/s",
                                   {"store": self.store.description}, level="warning"))
        if process_store is None and isinstance(store, SQLiteStore):
            store.tune_for_writing()  # written from this process: WAL checkpoints in a thread, a small page cache
        self.writer.start()
        if self.config.metrics.listen:
            try:
                self.metrics_server = MetricsServer(self.config.metrics.listen, self.metrics_text, self.status,
                                                    supervisor=self.supervisor).start()
                log.info("metrics at http://%s:%d/metrics", self.metrics_server.host, self.metrics_server.port)
            except OSError as exc:
                self.notify(Notice("collector.metrics.unavailable",
                                   f"cannot serve metrics on {self.config.metrics.listen}: {exc}; collecting anyway",
                                   {"listen": self.config.metrics.listen}, level="error"))
        tasks = [self.supervisor.task(f"opcua-{s.config.name}", functools.partial(s.run, stop)) for s in self.sessions]
        helpers = [self.supervisor.task("tick", lambda: self._tick_loop(stop))]
        if self.config.status_file:
            helpers.append(self.supervisor.task("status-file", lambda: self._status_loop(stop)))
        if self.health_every_s > 0:
            helpers.append(self.supervisor.task("health", lambda: self._health_loop(stop)))
        try:
            await stop.wait()
        finally:
            _done, pending = await asyncio.wait(tasks, timeout=5.0)
            for t in pending:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # Everything received is stored or spooled before we return (SIGTERM loses nothing); bounded even when
            # the writer process hangs (BatchWriter.close aborts it and spools its batch).
            await asyncio.to_thread(self.writer.close, buf.shutdown_timeout_s)
            self.running = False
            for t in helpers:
                t.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            if self.config.status_file:
                try:
                    await asyncio.to_thread(self.write_status_file)
                except OSError as exc:
                    log.warning("cannot write status file %s: %s", self.config.status_file, exc)
            if self.metrics_server:
                self.metrics_server.close()
            if process_store is not None:
                await asyncio.to_thread(process_store.close, min(buf.write_timeout_s, buf.shutdown_timeout_s + 5.0))
                self.writer.store = self.store
            log.info("collector stopped: %d values received, %d written, %d in the spool",
                     self.received, self.written, self.spool.count_values())
        if self.supervisor.fatal is not None:
            name, failure = self.supervisor.fatal
            raise CollectorError(f"collector {self.config.name}: background job {name} failed for good "
                                 f"({type(failure).__name__}: {failure}); everything received was stored or spooled")

    async def _tick_loop(self, stop: asyncio.Event) -> None:
        """Once a second, on the collector's clock: sample receive rates; report store outages and recoveries."""
        while not stop.is_set():
            now = time.monotonic()
            for s in self.sessions:
                s.sample_rate(now)
            self._check_store()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    def _check_store(self) -> None:
        down = self.writer.store_down or bool(self.store_health().get("down"))
        if down != self._store_was_down:
            self._store_was_down = down
            w, h = self.writer.stats(), self.store_health()
            error = w["last_error"] or h.get("last_error")
            if down:
                self.notify(Notice("collector.store.down", f"the store {self.store.description} does not accept "
                                   f"writes ({error}); values go to the spool and are replayed when it is back",
                                   {"store": self.store.description, "error": error}, level="error"))
            else:
                self.notify(Notice("collector.store.up", f"the store {self.store.description} accepts writes again; "
                                   "replaying the spool", {"store": self.store.description}, level="info"))

    async def _health_loop(self, stop: asyncio.Event) -> None:
        """Write the collector's health series every ``health_every_s`` (collectors.health); a failed write is logged."""
        from collectors.health import health_points, server_sites

        sites = server_sites(self.config)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.health_every_s)
            if stop.is_set():
                return
            points = health_points(self.status(), time.time_ns(), sites)
            try:
                await asyncio.to_thread(self.store.write, points)
            except Exception as exc:  # noqa: BLE001 - health is best effort; the store's outage is reported elsewhere
                log.debug("cannot write collector health: %s", exc)

    async def _status_loop(self, stop: asyncio.Event) -> None:
        """Write the status file every 2 s."""
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.write_status_file)
            except OSError as exc:
                log.warning("cannot write status file %s: %s", self.config.status_file, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 2.0)

    # -- observability -------------------------------------------------------------------------------------------------
    def status(self) -> dict:
        """The status document (schema in the README, ``schema: 1``)."""
        w = self.writer.stats()
        health = self.store_health()
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
                    "resubscriptions": s.resubscriptions,
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
            "store_down": bool(w["store_down"] or health.get("down")),
            "last_write_error": w["last_error"] or health.get("last_error"),
            "store_health": health,
            "tasks": self.supervisor.snapshot(),
            "servers": servers,
            "notices": [n.to_dict() for n in list(self.notices)[-50:]],
        }

    def write_status_file(self) -> None:
        """Write :meth:`status` as JSON to ``status_file`` atomically (tmp + rename)."""
        assert self.config.status_file, "write_status_file needs status_file set"  # callers check it first
        path = Path(self.config.status_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.status(), default=str, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(tmp, path)

    def metrics_text(self) -> str:
        """Prometheus text exposition of the collector's metrics (prometheus_client; process metrics included)."""
        return render_metrics(self.registry)
