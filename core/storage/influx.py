"""InfluxDB 2.x backend: :class:`InfluxStore` and :func:`setup_influx`.

Writing: points are encoded to line protocol in the caller's thread (a few µs each) and handed to influxdb-client's
batching write API (batch size, flush interval, gzip, retries with exponential backoff and jitter), which sends from
its own thread, so ``write()`` never waits for the network. A batch that still fails after the client's retries goes
to an on-disk spool when the failure is retryable (server down, timeout, 429/5xx, auth/bucket problems a person can
fix) and is replayed in order by a background thread; a batch the server rejects as bad data (400/413/422) is logged
with the offending line and quarantined. While the spool holds anything, new batches are appended to it too, so the
order of writes is kept and a long outage costs disk, not memory.

Reading: every aggregation runs in InfluxDB (Flux ``aggregateWindow`` with tag filters; ``pivot`` to join status and
to build rollup means); Python only parses the already-aggregated CSV. Windowed queries read the coarsest rollup
bucket (1 min, 15 min, 1 h; maintained by InfluxDB tasks that :func:`setup_influx` creates) that divides the window
and is complete for the requested range.

URL form (for :func:`core.storage.open_store`)::

    influx://HOST:PORT?org=ORG&bucket=BUCKET&token_file=PATH       (http)
    influxs://HOST:PORT?...                                         (https)
    influx://?env_file=PATH                                         (read WATTLINE_INFLUX_* from the file start.sh writes)

Other query keys: ``token_env`` (name of the variable holding the token, default ``WATTLINE_INFLUX_TOKEN``),
``batch_size``, ``flush_interval_ms``, ``gzip`` (1/0), ``spool_dir``, ``timeout_ms``. Keys left out fall back to the
variables ``WATTLINE_INFLUX_ORG``, ``WATTLINE_INFLUX_BUCKET``, ``WATTLINE_INFLUX_TOKEN_FILE``. The token itself never
goes into a URL, a log line or ``description``.
"""

from __future__ import annotations

import io
import logging
import math
import threading
import time
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
from pydantic import ValidationError

from core.backoff import Backoff
from core.errors import ConfigError, StoreError, StoreUnavailable
from core.model import Point, SeriesKey
from core.storage.base import (
    ROLLUP_RESOLUTIONS_S,
    SeriesBatch,
    SeriesInfo,
    Store,
    TagFilter,
    TimeLike,
    check_query_args,
    pivot_frame,
)
from core.storage.compat_influxdb import set_gzip_level, write_options
from core.storage.influx_flux import last_query, raw_query, rollup_body, rollup_bucket
from core.storage.influx_query import SeriesCounts, windowed
from core.storage.influx_lp import MISSING_FIELD, STATUS_FIELD, LineEncoder, flux_time
from core.storage.influx_settings import InfluxSettings, _coerce_settings, read_env_file
from core.storage.influx_spool import Quarantine, Spool
from core.supervise import Supervisor

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

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
_META_COLS = {"", "result", "table", "_time", "_value", "_start", "_stop", "_measurement", "_field"}


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


class InfluxStore(Store):
    """The :class:`~core.storage.base.Store` interface on InfluxDB 2.x.

    Parameters
    ----------
    settings : InfluxSettings or str, optional
        Settings, or an ``influx://`` URL.
    **overrides
        Individual settings (e.g. ``batch_size=10000``) applied over ``settings``.
    """

    def __init__(self, settings: InfluxSettings | str | None = None, **overrides: Any) -> None:
        from influxdb_client import InfluxDBClient

        base = _coerce_settings(settings) if settings is not None else InfluxSettings()
        if overrides:
            try:
                base = base.model_copy(update=overrides)
                base = InfluxSettings(**base.model_dump())  # re-validate the overrides
            except ValidationError as exc:
                raise ConfigError(f"InfluxDB settings: {exc}") from exc
        self.settings = s = base
        host = urllib.parse.urlsplit(s.url).netloc
        self.description = f"influx://{host}?org={s.org}&bucket={s.bucket}"
        self._client = InfluxDBClient(url=s.url, token=s.read_token(), org=s.org, timeout=s.timeout_ms,
                                      enable_gzip=s.gzip)
        if s.gzip:
            set_gzip_level(self._client, s.gzip_level)
        self._query_api = self._client.query_api()
        self.use_rollups = True  # benchmarks switch this off to time raw aggregation
        self.last_rollup: int | None = None  # coarsest rollup [s] the latest windowed query used (None: raw only)
        self.last_query_sources: tuple = ()  # the parts (core.storage.query_parts.QueryPart) that answered it
        self._series_counts = SeriesCounts()
        self._encoder = LineEncoder()
        spool_dir = Path(s.spool_dir).expanduser() if s.spool_dir else s.default_spool_dir()
        self.spool = Spool(spool_dir, max_bytes=s.spool_max_mb * 1024 * 1024)
        self.quarantine = Quarantine(spool_dir / "quarantine.lp")
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self._submitted = 0  # lines handed to the client
        self._finished = 0  # lines the client reported back (written, spooled or quarantined)
        self._dirty: set[int] = set()  # hours [ns // HOUR_NS] whose rollups this store must recompute
        self._rollups_ok: tuple[bool, float] = (False, 0.0)
        self._api_lock = threading.Lock()
        self._write_api = self._new_write_api()
        self._buf_lock = threading.Lock()
        self._buf: list[str] = []
        self._spill_lock = threading.Lock()
        self._replay_lock = threading.Lock()
        self._spill: list[bytes] = []
        self._spill_lines = 0
        self._buf_since = 0.0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._closed = False
        self._down = False  # the latest write or replay failed for a retryable reason
        self._last_error: str | None = None
        # Background threads are supervised: a failure is logged, counted (health()) and the thread restarts; the
        # data they handle is on disk or in the client's queue, so a restart loses nothing.
        self.supervisor = Supervisor(prefix="storage")
        self._replayer = self.supervisor.thread("influx-spool-replay", self._replay_loop, wake=self._stop)
        self._linger = self.supervisor.thread("influx-linger", self._linger_loop, wake=self._stop)

    @classmethod
    def from_url(cls, url: str) -> "InfluxStore":
        """Open a store from an ``influx://`` URL (see the module docstring)."""
        return cls(InfluxSettings.from_url(url))

    def __repr__(self) -> str:
        return f"InfluxStore({self.description})"

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
        if lo is not None and lo < time.time_ns() - LATE_AFTER_S * NS:
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

    # -- rollups -------------------------------------------------------------------------------------------------------
    def rollups_ready(self) -> bool:
        """True when the rollup buckets exist (``wattline influx setup`` was run); cached for 60 s."""
        ok, when = self._rollups_ok
        if time.monotonic() - when < 60:
            return ok
        try:
            api = self._client.buckets_api()
            ok = all(api.find_bucket_by_name(rollup_bucket(self.settings.bucket, r)) is not None
                     for r in ROLLUP_RESOLUTIONS_S)
        except Exception as exc:  # noqa: BLE001 - treat as "no rollups" and read raw points
            log.debug("cannot check rollup buckets: %s", exc)
            ok = False
        if not ok:
            log.info("InfluxDB rollup buckets of %s are missing: windowed queries read raw points; "
                     "run `wattline influx setup`", self.settings.bucket)
        self._rollups_ok = (ok, time.monotonic())
        return ok

    def refresh_rollups(self, start_ns: int, stop_ns: int, progress: bool = False,
                        resolutions: Iterable[int] = ROLLUP_RESOLUTIONS_S) -> None:
        """Recompute rollups for ``[start, stop)`` (widened to whole hours) inside InfluxDB, each from raw points.

        Parameters
        ----------
        start_ns, stop_ns : int
            Range [ns].
        progress : bool
            Show a tqdm bar (one step per day).
        resolutions : iterable of int
            Which rollups to rebuild [s]; all by default.
        """
        if not self.rollups_ready():
            return
        lo = (int(start_ns) // HOUR_NS) * HOUR_NS
        hi = -(-int(stop_ns) // HOUR_NS) * HOUR_NS
        step = 24 * HOUR_NS
        chunks = [(a, min(a + step, hi)) for a in range(lo, hi, step)]
        bar = None
        if progress and len(chunks) > 1:
            from tqdm import tqdm

            bar = tqdm(total=len(chunks), desc="rollups", unit="day")
        for a, b in chunks:
            for res in resolutions:
                self._run(rollup_body(self.settings.bucket, self.settings.org, res, flux_time(a), flux_time(b),
                                      from_raw=True))
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()

    def refresh_dirty_rollups(self, progress: bool = False) -> None:
        """Recompute the rollups of hours that received late points through this store."""
        with self._lock:
            hours, self._dirty = sorted(self._dirty), set()
        if not hours:
            return
        try:
            start = prev = hours[0]
            for h in hours[1:] + [None]:
                if h is None or h != prev + 1:
                    self.refresh_rollups(start * HOUR_NS, (prev + 1) * HOUR_NS, progress=progress)
                    start = h
                prev = h if h is not None else prev
        except BaseException:
            with self._lock:
                self._dirty.update(hours)  # try again later
            raise

    # -- reading -------------------------------------------------------------------------------------------------------
    def _run(self, flux: str) -> str:
        from influxdb_client.client.exceptions import InfluxDBError
        from influxdb_client.rest import ApiException

        dialect = _dialect()
        try:
            resp = self._query_api.query_raw(flux, org=self.settings.org, dialect=dialect)
            data = resp.data if hasattr(resp, "data") else resp.read()
        except (ApiException, InfluxDBError) as exc:
            status = getattr(exc, "status", None)
            if status is not None and status >= 500:
                raise StoreUnavailable(f"InfluxDB {self.description} failed the query: {_error_text(exc)[:500]}") from exc
            raise StoreError(f"InfluxDB {self.description} rejected the query: {_error_text(exc)[:500]}") from exc
        except Exception as exc:  # connection refused, timeout
            raise StoreUnavailable(f"InfluxDB {self.description} is unreachable: {exc}") from exc
        return data.decode("utf-8") if isinstance(data, bytes) else str(data)

    def _table(self, flux: str) -> pd.DataFrame:
        """Run a query and return all result tables as one frame of strings (tag values kept verbatim)."""
        import pandas as pd  # only where frames are built: a collector writing here never loads it (~30 MB)

        text = self._run(flux)
        frames = []
        for section in text.replace("\r\n", "\n").split("\n\n"):
            if not section.strip():
                continue
            frame = pd.read_csv(io.StringIO(section), dtype=str, keep_default_na=False, na_filter=False)
            if "error" in frame.columns and "reference" in frame.columns:
                raise StoreError(f"InfluxDB query error: {frame['error'].iloc[0]}")
            frames.append(frame)
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True).fillna("")

    @staticmethod
    def _tag_columns(frame: pd.DataFrame, exclude: Iterable[str] = ()) -> list[str]:
        skip = _META_COLS | set(exclude) | {STATUS_FIELD, MISSING_FIELD}
        return sorted(c for c in frame.columns if c not in skip and not c.startswith("Unnamed"))

    @staticmethod
    def _finish_frame(frame: pd.DataFrame, tags: list[str], value: pd.Series, status: pd.Series | None,
                      window_ns: int | None, integer: bool) -> pd.DataFrame:
        import pandas as pd

        times = _times_ns(frame["_time"])
        if window_ns:
            times = (times // window_ns) * window_ns
        out = pd.DataFrame({"time": pd.to_datetime(times, unit="ns", utc=True)})
        for tag in tags:
            out[tag] = frame[tag].where(frame[tag] != "", None).to_numpy()
        out["value"] = value.to_numpy().astype("int64" if integer else "float64")
        if status is not None:
            out["status"] = status.to_numpy()
        out = out.sort_values(tags + ["time"], kind="stable", na_position="first") if tags else out.sort_values("time")
        return out.reset_index(drop=True)

    def query(
        self,
        measurement: str,
        field: str,
        start: TimeLike,
        stop: TimeLike,
        tags: TagFilter | None = None,
        window_s: int | None = None,
        agg: str = "mean",
        pivot: str | None = None,
    ) -> pd.DataFrame:
        import pandas as pd

        check_query_args(field, window_s, agg)
        start_ns, stop_ns = self._range_ns(start, stop)
        bucket = self.settings.bucket
        if window_s is None:
            frame = self._table(raw_query(bucket, measurement, field, start_ns, stop_ns, tags))
            if frame.empty:
                return _empty_frame(status=True, pivot=pivot)
            tags_cols = self._tag_columns(frame, exclude=[field])
            value = pd.to_numeric(frame[field], errors="coerce") if field in frame else pd.Series(np.nan, index=frame.index)
            status = frame[STATUS_FIELD] if STATUS_FIELD in frame else pd.Series("", index=frame.index)
            status = pd.to_numeric(status.replace("", "0"), errors="coerce").fillna(0).astype("int64")
            out = self._finish_frame(frame, tags_cols, value, status, None, False)
        else:
            # Rollups for every complete bucket, raw points for the rest (a range ending now: the newest minutes).
            out = windowed(self, measurement, field, start_ns, stop_ns, tags, int(window_s), agg)
            if out.empty:
                return _empty_frame(status=False, pivot=pivot)
        return pivot_frame(out, pivot) if pivot else out

    def last_values(self, measurement: str, field: str, tags: TagFilter | None = None) -> pd.DataFrame:
        import pandas as pd

        frame = self._table(last_query(self.settings.bucket, measurement, field, tags))
        if frame.empty:
            return _empty_frame(status=True)
        tag_cols = self._tag_columns(frame)
        marker = f",{field},"
        best: dict[tuple, dict] = {}
        for row in frame.to_dict("records"):
            key = tuple(row.get(t, "") for t in tag_cols)
            entry = best.setdefault(key, {})
            entry[row["_field"]] = (row["_time"], row["_value"])
        rows = []
        for key, entry in best.items():
            candidates = []
            if field in entry:
                candidates.append((pd.Timestamp(entry[field][0]), float(entry[field][1])))
            if MISSING_FIELD in entry and marker in entry[MISSING_FIELD][1]:
                candidates.append((pd.Timestamp(entry[MISSING_FIELD][0]), math.nan))
            if not candidates:
                continue
            when, value = max(candidates, key=lambda c: c[0])
            status = 0
            if STATUS_FIELD in entry and pd.Timestamp(entry[STATUS_FIELD][0]) == when:
                status = int(entry[STATUS_FIELD][1])
            else:
                status = self._status_at(measurement, dict(zip(tag_cols, key)), when)
            rows.append({"_time": when.isoformat(), **dict(zip(tag_cols, key)), "value": value, "status": status})
        if not rows:
            return _empty_frame(status=True)
        table = pd.DataFrame(rows)
        return self._finish_frame(table, tag_cols, table["value"], table["status"].astype("int64"), None, False)

    def _status_at(self, measurement: str, tags: dict[str, str], when: pd.Timestamp) -> int:
        t = int(when.value)
        flux = raw_query(self.settings.bucket, measurement, STATUS_FIELD, t, t + 1,
                         {k: v for k, v in tags.items() if v != ""})
        frame = self._table(flux)
        if frame.empty or STATUS_FIELD not in frame:
            return 0
        return int(frame[STATUS_FIELD].iloc[0] or 0)

    def series(self, measurement: str | None = None) -> list[SeriesInfo]:
        # The settled history's counts are kept between calls (see core.storage.influx_query.SeriesCounts).
        return self._series_counts.series(self, measurement)

    def invalidate_series_cache(self) -> None:
        """Recount every series in full at the next :meth:`series` call (after deleting points)."""
        self._series_counts.invalidate()


def _times_ns(column: pd.Series) -> pd.Series:
    """RFC 3339 strings -> int64 nanoseconds (pandas may infer a coarser unit; force ns first)."""
    import pandas as pd

    return pd.to_datetime(column, utc=True, format="ISO8601").dt.as_unit("ns").astype("int64")


def _dialect():
    from influxdb_client import Dialect

    return Dialect(header=True, annotations=[], delimiter=",", comment_prefix="#", date_time_format="RFC3339Nano")


def _empty_frame(status: bool, pivot: str | None = None) -> pd.DataFrame:
    import pandas as pd

    if pivot:
        return pd.DataFrame(index=pd.DatetimeIndex([], tz="UTC", name="time"))
    cols = {"time": pd.Series([], dtype="datetime64[ns, UTC]"), "value": pd.Series([], dtype="float64")}
    if status:
        cols["status"] = pd.Series([], dtype="int64")
    return pd.DataFrame(cols)


# -- setup ------------------------------------------------------------------------------------------------------------


# Re-exported so that callers use one module: ``from core.storage.influx import setup_influx``.
from core.storage.influx_setup import remove_influx, setup_influx  # noqa: E402

__all__ = ["InfluxSettings", "InfluxStore", "read_env_file", "remove_influx", "setup_influx"]
