"""Write pipeline of :class:`core.storage.influx.InfluxStore`: encode, batch, spill to the spool, replay.

Points are encoded to line protocol in the caller's thread and handed to influxdb-client's batching write API in
records of :data:`RECORD_LINES`. A batch that still fails after the client's retries goes to the on-disk spool when the
failure is retryable and is replayed in order by a background thread; a batch the server rejects as bad data is
quarantined. While the spool holds anything, new batches are appended to it too, so the order of writes is kept.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from core.backoff import Backoff
from core.errors import StoreError, StoreUnavailable
from core.model import Point, SeriesKey
from core.storage.base import SeriesBatch
from core.storage.compat_influxdb import write_options

if TYPE_CHECKING:
    from core.storage.influx_lp import LineEncoder
    from core.storage.influx_query import SeriesCounts
    from core.storage.influx_settings import InfluxSettings
    from core.storage.influx_spool import Quarantine, Spool
    from core.supervise import Supervisor

log = logging.getLogger("core.storage.influx")

NS = 1_000_000_000
HOUR_NS = 3600 * NS
#: Lines per record handed to the client's batching API (one rx item per record: per-line items cost ~15 µs each,
#: which alone would cap a collector at ~60k lines/s).
RECORD_LINES = 250
#: Points older than this when written are "late": the rollup tasks' lookback may not cover them, so the store
#: recomputes their hours itself [s].
LATE_AFTER_S = 240
#: Status codes that mean the batch itself is bad and retrying cannot help.
BAD_DATA_STATUS = (400, 413, 422)


def _is_bad_data(exc: BaseException) -> bool:
    return getattr(exc, "status", None) in BAD_DATA_STATUS


def _error_text(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    status = getattr(exc, "status", None)
    if body:
        if isinstance(body, bytes):
            body = body.decode("utf-8", errors="replace")
        return f"HTTP {status}: {body}"
    return f"{type(exc).__name__}: {exc}"


class InfluxState:
    """What the parts of :class:`~core.storage.influx.InfluxStore` share: the attributes its ``__init__`` sets and the
    methods one part calls on another (declared for the type checker only)."""

    settings: InfluxSettings
    description: str
    _client: Any
    _query_api: Any
    use_rollups: bool
    last_rollup: int | None
    last_query_sources: tuple
    _series_counts: SeriesCounts
    _encoder: LineEncoder
    spool: Spool
    quarantine: Quarantine
    _lock: threading.Lock
    _done: threading.Condition
    _submitted: int
    _finished: int
    _dirty: set[int]
    _rollups_ok: tuple[bool, float]
    _api_lock: threading.Lock
    _write_api: Any
    _buf_lock: threading.Lock
    _buf: list[str]
    _spill_lock: threading.Lock
    _replay_lock: threading.Lock
    _spill: list[bytes]
    _spill_lines: int
    _buf_since: float
    _stop: threading.Event
    _wake: threading.Event
    _closed: bool
    _down: bool
    _last_error: str | None
    supervisor: Supervisor
    _replayer: threading.Thread
    _linger: threading.Thread

    if TYPE_CHECKING:
        def refresh_dirty_rollups(self, progress: bool = False) -> None: ...

        def _run(self, flux: str) -> str: ...

        def _range_ns(self, start: Any, stop: Any) -> tuple[int, int]: ...


class InfluxWriting(InfluxState):
    """The write side of an :class:`~core.storage.influx.InfluxStore` (a mixin: the store's ``__init__`` sets the
    client, the spool and the locks used here)."""

    # -- writing -------------------------------------------------------------------------------------------------------
    def _new_write_api(self):
        from reactivex.scheduler import ThreadPoolScheduler

        s = self.settings
        options = write_options(
            retry_jitter_s=s.jitter_interval_ms / 1000,
            batch_size=max(1, -(-s.batch_size // RECORD_LINES)),  # in records of up to RECORD_LINES lines
            flush_interval=s.flush_interval_ms,
            # The client applies jitter_interval both as a random delay before each batch (which can reorder
            # batches, and a later write of the same timestamp must win) and to retry backoffs; keep batches in
            # order and put the jitter on the retries only (see compat_influxdb.write_options).
            jitter_interval=0,
            retry_interval=s.retry_interval_ms,
            max_retries=s.max_retries,
            max_retry_delay=s.max_retry_delay_ms,
            max_retry_time=s.max_retry_time_ms,
            exponential_base=s.exponential_base,
            # Closing waits for the whole in-memory backlog (bounded by max_backlog_lines); flush() has its own timeout.
            max_close_wait=3_600_000,
            # one sender thread per store: batches leave in the order they were written
            write_scheduler=ThreadPoolScheduler(max_workers=1),
        )
        return self._client.write_api(write_options=options, success_callback=self._on_success,
                                      error_callback=self._on_error)

    @staticmethod
    def _nlines(data: bytes) -> int:
        return data.count(b"\n") + 1 if data else 0

    def _finish(self, n: int) -> None:
        with self._done:
            self._finished += n
            self._done.notify_all()

    def _on_success(self, conf, data: bytes) -> None:
        self._down = False
        self._finish(self._nlines(data))

    def _on_error(self, conf, data: bytes, exc: BaseException) -> None:
        try:
            if _is_bad_data(exc):
                self.quarantine.add(data, _error_text(exc))
            else:
                self._down, self._last_error = True, _error_text(exc)[:500]
                log.warning("InfluxDB write failed after retries (%s); %d lines kept in the spool %s",
                            _error_text(exc)[:300], self._nlines(data), self.spool.folder)
                self.spool.append(data)
                self._wake.set()
        finally:
            self._finish(self._nlines(data))

    def write(self, points: Iterable[Point]) -> int:
        points = points if isinstance(points, (list, tuple)) else list(points)
        if not points:
            return 0
        lines, n = self._encoder.encode_points(points)
        times = [p.time_ns for p in points]
        self._submit(lines, min(times), max(times))
        return n

    def write_batch(self, batch: SeriesBatch) -> int:
        if not len(batch):
            return 0
        times = np.asarray(batch.times_ns, dtype=np.int64)
        lines = self._encoder.encode_batch(batch.keys, np.asarray(batch.series, dtype=np.int64), times,
                                           np.asarray(batch.values, dtype=float),
                                           np.asarray(batch.status, dtype=np.int64))
        self._submit(lines, int(times.min()), int(times.max()))
        return len(batch)

    def write_arrays(self, key: SeriesKey, times_ns, values, status=None, *, bulk: bool = False) -> int:
        times = np.asarray(times_ns, dtype=np.int64)
        vals = np.asarray(values, dtype=float)
        if times.shape != vals.shape:
            raise StoreError(f"write_arrays: {len(times)} timestamps but {len(vals)} values for {key}")
        if not len(times):
            return 0
        codes = np.zeros(len(times), dtype=np.int64) if status is None else np.asarray(status, dtype=np.int64)
        lines = self._encoder.encode_arrays(key, times, vals, codes)
        self._submit(lines, int(times.min()), int(times.max()))
        return len(times)

    def write_line_protocol(self, lines: Iterable[str]) -> int:
        """Write raw line-protocol lines (import path); returns the number of lines queued."""
        lines = [ln for ln in lines if ln.strip()]
        if lines:
            self._series_counts.invalidate()  # times unknown: they may be old
            self._submit(lines, None, None)
        return len(lines)

    def _submit(self, lines: list[str], lo: int | None, hi: int | None) -> None:
        if self._closed:
            raise StoreError(f"store {self.description} is closed")
        if lo is not None and hi is not None and lo < time.time_ns() - LATE_AFTER_S * NS:  # (given together)
            self._mark_dirty(lo, hi)
        # Lines gather into records of RECORD_LINES; the linger thread hands over a partial record after
        # flush_interval/4, so a slow collector's points still leave within about one flush interval.
        full = []
        with self._buf_lock:
            if not self._buf:
                self._buf_since = time.monotonic()
            self._buf.extend(lines)
            while len(self._buf) >= RECORD_LINES:
                full.append(self._buf[:RECORD_LINES])
                del self._buf[:RECORD_LINES]
            if full:
                self._buf_since = time.monotonic()
        for record in full:
            self._emit(record)

    def _drain_buffer(self) -> None:
        with self._buf_lock:
            record, self._buf = self._buf, []
        if record:
            self._emit(record)

    def _emit(self, record: list[str]) -> None:
        data = "\n".join(record).encode("utf-8")
        with self._done:
            backlog = self._submitted - self._finished
        with self._spill_lock:
            spilling = bool(self._spill) or len(self.spool) or backlog + len(record) > self.settings.max_backlog_lines
            if spilling:
                # Keep order: while older batches wait in the spool, newer ones queue behind them on disk. A backlog
                # beyond the bound spills too: memory stays bounded without making the caller wait. Records are
                # gathered into batch_size segments (one fsync each, not one per 250-line record).
                self._spill.append(data)
                self._spill_lines += len(record)
                if self._spill_lines >= self.settings.batch_size:
                    self._write_spill()
                return
        with self._done:
            self._submitted += len(record)
        with self._api_lock:
            self._write_api.write(bucket=self.settings.bucket, org=self.settings.org, record=data)

    def _write_spill(self) -> None:
        """Write gathered spill records as one spool segment (caller holds _spill_lock)."""
        if self._spill:
            self.spool.append(b"\n".join(self._spill))
            self._spill, self._spill_lines = [], 0
            self._wake.set()

    def _flush_spill(self) -> None:
        with self._spill_lock:
            self._write_spill()

    def _linger_loop(self) -> None:
        period = max(0.01, self.settings.flush_interval_ms / 4000)
        while not self._stop.wait(period):
            with self._buf_lock:
                due = bool(self._buf) and time.monotonic() - self._buf_since >= period
            if due or self._spill:
                try:
                    self._drain_buffer()
                    self._flush_spill()
                except Exception as exc:  # noqa: BLE001 - keep the thread alive; the data is in the spool or logged
                    log.error("InfluxDB write hand-over failed: %s", exc)

    def _mark_dirty(self, lo: int, hi: int) -> None:
        with self._lock:
            self._dirty.update(range(lo // HOUR_NS, hi // HOUR_NS + 1))
        self._series_counts.invalidate()  # late points: the kept series counts miss them

    def _wait_written(self, timeout_s: float) -> bool:
        self._drain_buffer()
        self._flush_spill()
        # The client's WriteApi.flush() is a no-op, so closing the batching pipeline is the only way to push a
        # partial batch now; a fresh pipeline takes over for later writes.
        with self._api_lock:
            old, self._write_api = self._write_api, self._new_write_api()
        deadline = time.monotonic() + timeout_s
        # WriteApi.close() waits (up to max_close_wait) until its batches are written, spooled or quarantined;
        # run it aside so that flush() honours its own timeout.
        closer = threading.Thread(target=old.close, name="influx-close", daemon=True)
        closer.start()
        closer.join(timeout_s)
        with self._done:
            while self._finished < self._submitted:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._done.wait(min(left, 0.5))
        return True

    def flush(self, timeout_s: float = 120.0, refresh_rollups: bool = True) -> None:
        """Write pending batches, replay the spool if the server is up, and refresh rollups of late points.

        Never raises for an unreachable server: unsent points stay in the spool (durable on disk).

        Parameters
        ----------
        timeout_s : float
            Longest wait for pending batches and for the spool replay [s].
        refresh_rollups : bool
            Recompute the rollups of hours that received late points (False: leave them marked for later).
        """
        if self._closed:
            return
        if not self._wait_written(timeout_s):
            log.warning("InfluxDB flush: pending writes did not finish within %.0f s", timeout_s)
        self._replay_all(deadline=time.monotonic() + timeout_s)
        if refresh_rollups and not len(self.spool):
            try:
                self.refresh_dirty_rollups()
            except StoreUnavailable as exc:
                log.warning("InfluxDB rollup refresh postponed: %s", exc)

    def close(self) -> None:
        """Flush, stop the replay thread and close the client."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self._stop.set()
            self._wake.set()
            self._replayer.join(timeout=10)
            self._linger.join(timeout=10)
            with self._api_lock:
                self._write_api.close()
            self._client.close()

    def health(self) -> dict:
        """Write-side health for a collector's metrics and status.

        Returns
        -------
        dict
            ``down`` (the latest write or replay failed and was spooled), ``last_error``, ``spool_bytes``,
            ``spool_segments``, ``dropped_lines`` (the spool was full), ``quarantined_batches`` and
            ``quarantined_lines`` (rejected as bad data), ``task_failures`` (background thread restarts).
        """
        return {
            "down": bool(self._down),
            "last_error": self._last_error if self._down else None,
            "spool_bytes": self.spool.bytes,
            "spool_segments": len(self.spool),
            "dropped_lines": self.spool.dropped_lines,
            "quarantined_batches": self.quarantine.count,
            "quarantined_lines": self.quarantine.lines,
            "task_failures": sum(self.supervisor.failures.values()),
        }

    # -- spool replay --------------------------------------------------------------------------------------------------
    def _post(self, data: bytes) -> None:
        """One synchronous write without client-side retries (the replay loop does its own backoff)."""
        self._client.api_client.call_api  # noqa: B018 - keeps mypy quiet about the attribute below
        from influxdb_client.service.write_service import WriteService

        service = getattr(self, "_write_service", None)
        if service is None:
            service = self._write_service = WriteService(self._client.api_client)
        service.post_write(org=self.settings.org, bucket=self.settings.bucket, body=data, precision="ns",
                           content_type="text/plain; charset=utf-8", async_req=False)

    def _replay_one(self) -> bool | None:
        """Replay the oldest segments (coalesced up to batch_size lines).

        Returns True when delivered or quarantined, False when the server is unavailable, None when empty.
        """
        with self._replay_lock:  # flush() and the background thread must not send the same segments twice
            return self._replay_one_locked()

    def _replay_one_locked(self) -> bool | None:
        batch = self.spool.oldest_batch(self.settings.batch_size)
        if not batch:
            return None
        data = b"\n".join(d for _, d in batch)
        try:
            self._post(data)
        except Exception as exc:  # noqa: BLE001 - any failure of the request decides spool vs quarantine below
            if not _is_bad_data(exc):
                self._down, self._last_error = True, _error_text(exc)[:500]
                log.debug("spool replay failed: %s", _error_text(exc)[:200])
                return False
            if len(batch) > 1:
                # Find the bad segment: replay one by one (good ones are stored, the bad one quarantined).
                for path, seg in batch:
                    try:
                        self._post(seg)
                    except Exception as exc2:  # noqa: BLE001
                        if not _is_bad_data(exc2):
                            return False
                        self.quarantine.add(seg, _error_text(exc2))
                    self.spool.remove(path)
                    self._mark_dirty_lines(seg)
                return True
            self.quarantine.add(data, _error_text(exc))
            self.spool.remove(batch[0][0])
            return True
        self._down = False
        for path, _ in batch:
            self.spool.remove(path)
        self._mark_dirty_lines(data)
        log.debug("replayed %d spooled lines to InfluxDB (%d segments left)", self._nlines(data), len(self.spool))
        return True

    def _mark_dirty_lines(self, data: bytes) -> None:
        times = [int(line.rsplit(b" ", 1)[1]) for line in data.split(b"\n") if line.strip()]
        if times and min(times) < time.time_ns() - LATE_AFTER_S * NS:
            self._mark_dirty(min(times), max(times))

    def _replay_all(self, deadline: float) -> None:
        """Replay until the spool is empty, the deadline passes, or the server is really down."""
        backoff = Backoff(0.4, 5.0, jitter=(0.5, 1.5))
        while time.monotonic() < deadline:
            done = self._replay_one()
            if done is None:
                return
            if done:
                backoff.reset()
                continue
            if not self._server_up():
                return  # down: the spool keeps the data; the background thread retries
            time.sleep(backoff.next_delay())  # busy server: back off, go on

    def _server_up(self) -> bool:
        try:
            return bool(self._client.ping())
        except Exception:  # noqa: BLE001
            return False

    def _replay_loop(self) -> None:
        # Exponential backoff with jitter, capped by the client's max retry delay.
        s = self.settings
        backoff = Backoff(s.retry_interval_ms / 1000, max(s.retry_interval_ms, s.max_retry_delay_ms) / 1000,
                          factor=s.exponential_base, jitter=(0.5, 1.5))
        last_refresh = time.monotonic()
        while not self._stop.is_set():
            result = self._replay_one() if len(self.spool) else None
            if result is True:
                backoff.reset()
                continue
            if result is False:
                self._stop.wait(backoff.next_delay())
                continue
            backoff.reset()
            self._wake.wait(5.0)
            self._wake.clear()
            if (self.settings.auto_refresh_rollups and self._dirty and time.monotonic() - last_refresh > 30
                    and not len(self.spool)):
                with self._done:
                    idle = self._finished >= self._submitted
                if idle:
                    last_refresh = time.monotonic()
                    try:
                        self.refresh_dirty_rollups()
                    except Exception as exc:  # noqa: BLE001 - background thread: log and retry later
                        log.warning("InfluxDB rollup refresh postponed: %s", exc)
