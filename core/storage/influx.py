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

import threading
import urllib.parse
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core.errors import ConfigError
from core.storage.base import Store
from core.storage.compat_influxdb import set_gzip_level
from core.storage.influx_lp import LineEncoder
from core.storage.influx_query import InfluxQueries, SeriesCounts, _dialect, _empty_frame, _times_ns
from core.storage.influx_rollups import InfluxRollups
from core.storage.influx_settings import InfluxSettings, _coerce_settings, read_env_file
from core.storage.influx_spool import Quarantine, Spool
from core.storage.influx_write import (
    BAD_DATA_STATUS,
    HOUR_NS,
    LATE_AFTER_S,
    NS,
    RECORD_LINES,
    InfluxWriting,
    _error_text,
    _is_bad_data,
)
from core.supervise import Supervisor


class InfluxStore(InfluxQueries, InfluxRollups, InfluxWriting, Store):
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
    def from_url(cls, url: str) -> InfluxStore:
        """Open a store from an ``influx://`` URL (see the module docstring)."""
        return cls(InfluxSettings.from_url(url))

    def __repr__(self) -> str:
        return f"InfluxStore({self.description})"



# Re-exported so that callers use one module: ``from core.storage.influx import setup_influx``.
from core.storage.influx_setup import remove_influx, setup_influx  # noqa: E402

# Kept importable from here (tests, influx_setup, results_influx reach them through this module).
_REEXPORTED = (BAD_DATA_STATUS, HOUR_NS, LATE_AFTER_S, NS, RECORD_LINES, _dialect, _empty_frame, _error_text,
               _is_bad_data, _times_ns)

__all__ = ["InfluxSettings", "InfluxStore", "read_env_file", "remove_influx", "setup_influx"]
