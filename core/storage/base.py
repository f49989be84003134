"""The storage interface every backend implements.

Shaped after InfluxDB's model: write batches of points (measurement, tags, fields, timestamp); query one field over a
time range for a tag filter, optionally aggregated into aligned windows; list the stored series. Callers depend only on
:class:`Store`, so the embedded SQLite store and InfluxDB are interchangeable.

Semantics shared by all backends (the contract tests in ``tests/storage`` check them):

- Time ranges are half-open ``[start, stop)``; timestamps are UTC.
- Windows are aligned to the Unix epoch (a 15-min window starts at :00, :15, ...); a windowed row is stamped with the
  window's *start*. Windows without any value are omitted.
- A second write of the same series and timestamp replaces the first (InfluxDB's rule).
- A value stored as missing (Bad status, NaN) is returned as NaN by raw queries and ignored by aggregations.
- Rollups at 1 min, 15 min and 1 h are maintained on write; a windowed query uses the coarsest rollup that divides the
  window and to which the range is aligned, so a year at 1-hour windows never reads raw points.
- :meth:`Store.aggregate` and :meth:`Store.read_frame` add windows in a plant's local time and the energy
  aggregations (counter increase, time-weighted mean and integral, seconds per state), generically for every backend
  (:mod:`core.storage.query`, arithmetic in :mod:`core.storage.intervals`).
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pandas is imported where frames are built: a collector's processes only write (~40 MB less each)
    import pandas as pd

from core.errors import StoreError
from core.model import Point, SeriesKey, to_ns

#: Aggregations a windowed query accepts.
AGGREGATIONS = ("mean", "sum", "min", "max", "last", "count")

#: Rollup resolutions maintained by every backend [s].
ROLLUP_RESOLUTIONS_S = (60, 900, 3600)

TimeLike = int | float | dt.datetime | str
TagFilter = Mapping[str, str | Sequence[str]]

#: Aggregations :meth:`Store.aggregate` and :class:`Column` accept: the windowed ones plus those computed from raw
#: points by :mod:`core.storage.intervals` (counter increase, time-weighted mean and integral, seconds per state).
ENERGY_AGGREGATIONS = ("increase", "twmean", "integral", "state_seconds")


@dataclass(frozen=True)
class Column:
    """One column of :meth:`Store.read_frame`.

    Parameters
    ----------
    name : str
        Output column name (``state_seconds`` columns expand to ``<name>_<state>`` for each machine state).
    measurement, field : str
        The series to read.
    agg : str
        One of :data:`AGGREGATIONS` or :data:`ENERGY_AGGREGATIONS`.
    register_max : float, optional
        Counter register maximum [counter unit] for ``increase`` (rollover detection).
    max_hold_s : float, optional
        Longest hold of a value [s] for ``twmean``, ``integral`` and ``state_seconds``.
    """

    name: str
    measurement: str
    field: str
    agg: str
    register_max: float | None = None
    max_hold_s: float | None = None


@dataclass(frozen=True)
class SeriesInfo:
    """A stored series with its extent.

    Parameters
    ----------
    key : SeriesKey
        Measurement, tags and field.
    count : int
        Number of stored values (missing values included).
    first_ns, last_ns : int
        First and last timestamp [ns since the epoch, UTC].
    """

    key: SeriesKey
    count: int
    first_ns: int
    last_ns: int

    def to_dict(self) -> dict:
        """Return a JSON-serialisable dict (times as ISO 8601 UTC)."""
        from core.model import from_ns

        return {
            "measurement": self.key.measurement,
            "tags": self.key.tag_dict,
            "field": self.key.field,
            "count": self.count,
            "first": from_ns(self.first_ns).isoformat(),
            "last": from_ns(self.last_ns).isoformat(),
        }


@dataclass(frozen=True, eq=False)
class SeriesBatch:
    """Values of many series in columns: the shape in which a collector receives data (one value per node per sample).

    Parameters
    ----------
    keys : tuple of SeriesKey
        The series a value may belong to; ``series`` indexes it. It may list series without values in this batch, so
        that a writer can pass the same tuple with every batch (see :class:`core.storage.process.ProcessStore`).
    series : ndarray of int
        Index into ``keys`` of each value.
    times_ns : ndarray of int64
        Timestamps [ns since the epoch, UTC].
    values : ndarray of float
        Values; NaN is stored as missing.
    status : ndarray of int64
        OPC UA StatusCode of each value.

    Values need no particular order; a repeated (series, timestamp) keeps the one that comes last in the batch.
    """

    keys: tuple[SeriesKey, ...]
    series: np.ndarray
    times_ns: np.ndarray
    values: np.ndarray
    status: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.series)
        if not (len(self.times_ns) == len(self.values) == len(self.status) == n):
            raise StoreError(
                f"SeriesBatch columns differ in length: series {n}, times {len(self.times_ns)}, "
                f"values {len(self.values)}, status {len(self.status)}"
            )
        if n and (int(self.series.min()) < 0 or int(self.series.max()) >= len(self.keys)):
            raise StoreError(f"SeriesBatch series index outside 0..{len(self.keys) - 1}")

    def __len__(self) -> int:
        return len(self.series)

    def points(self) -> Iterable[Point]:
        """The values as one-field points (for backends without a columnar write path)."""
        tags = [k.tag_dict for k in self.keys]
        for i, t, v, s in zip(self.series.tolist(), self.times_ns.tolist(), self.values.tolist(), self.status.tolist()):
            key = self.keys[i]
            yield Point(key.measurement, tags[i], {key.field: None if v != v else v}, t, s)


def choose_rollup(window_s: int, start_ns: int, stop_ns: int) -> int | None:
    """Pick the coarsest rollup resolution usable for a windowed query.

    Parameters
    ----------
    window_s : int
        Requested window [s].
    start_ns, stop_ns : int
        Query range [ns].

    Returns
    -------
    int or None
        Rollup resolution [s], or None when only raw points answer the query exactly.
    """
    for res in sorted(ROLLUP_RESOLUTIONS_S, reverse=True):
        res_ns = res * 1_000_000_000
        if window_s % res == 0 and start_ns % res_ns == 0 and stop_ns % res_ns == 0:
            return res
    return None


def check_query_args(field: str, window_s: int | None, agg: str) -> None:
    """Validate query arguments shared by the backends; raise StoreError naming the bad value."""
    if agg not in AGGREGATIONS:
        raise StoreError(f"unknown aggregation {agg!r}; valid: {', '.join(AGGREGATIONS)}")
    if window_s is not None and (int(window_s) != window_s or window_s <= 0):
        raise StoreError(f"window must be a positive whole number of seconds, got {window_s!r}")
    if not field:
        raise StoreError("a query needs a field name")


def match_tags(tags: Mapping[str, str], wanted: TagFilter | None) -> bool:
    """Return True when ``tags`` satisfy a tag filter (each key equal to the value or in the list of values)."""
    if not wanted:
        return True
    for key, accepted in wanted.items():
        value = tags.get(key)
        if isinstance(accepted, str):
            if value != accepted:
                return False
        elif value not in set(accepted):
            return False
    return True


def pivot_frame(frame: pd.DataFrame, tag: str) -> pd.DataFrame:
    """Turn a long query result into a wide frame: index ``time``, one column per value of ``tag``.

    Raises StoreError when several series share one value of ``tag`` (filter more narrowly first).
    """
    import pandas as pd

    if frame.empty:
        return pd.DataFrame(index=pd.DatetimeIndex([], tz="UTC", name="time"))
    if tag not in frame.columns:
        raise StoreError(f"cannot pivot on tag {tag!r}: the series have tags {sorted(set(frame.columns) - {'time', 'value', 'status'})}")
    if frame.duplicated(["time", tag]).any():
        raise StoreError(f"several series share a value of tag {tag!r}; filter the query so {tag!r} identifies one series")
    wide = frame.pivot(index="time", columns=tag, values="value")
    wide.columns.name = None
    return wide.sort_index()


class Store(abc.ABC):
    """A time-series store. Backends: :class:`core.storage.sqlite.SQLiteStore` (embedded default) and
    :class:`core.storage.influx.InfluxStore`.

    Stores are context managers; ``close()`` flushes pending writes.
    """

    #: Short URL-ish description for logs (never contains secrets).
    description: str = ""

    # -- writing -----------------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def write(self, points: Iterable[Point]) -> int:
        """Write a batch of points.

        Returns
        -------
        int
            Number of field values accepted.
        """

    def write_arrays(
        self,
        key: SeriesKey,
        times_ns: np.ndarray,
        values: np.ndarray,
        status: np.ndarray | None = None,
        *,
        bulk: bool = False,
    ) -> int:
        """Write one series from arrays (bulk path for backfill and import).

        Parameters
        ----------
        key : SeriesKey
            The series.
        times_ns : ndarray of int64
            Timestamps [ns since the epoch, UTC].
        values : ndarray of float
            Values; NaN is stored as missing.
        status : ndarray of int, optional
            OPC UA StatusCode per value; Good when omitted.
        bulk : bool
            Hint that this is a load of history (backfill, import) rather than live data: a backend may store it in a
            layout made for large loads (the embedded store's columnar day chunks) whatever the array's size. The
            semantics are the same either way.
        """
        times_ns = np.asarray(times_ns, dtype=np.int64)
        values = np.asarray(values, dtype=float)
        codes = np.zeros(len(times_ns), dtype=np.int64) if status is None else np.asarray(status, dtype=np.int64)
        tags = key.tag_dict
        return self.write(
            Point(key.measurement, tags, {key.field: float(v)}, int(t), int(s))
            for t, v, s in zip(times_ns, values, codes)
        )

    def write_batch(self, batch: SeriesBatch) -> int:
        """Write values of many series given as columns (the collectors' path).

        Backends override this when they can write columns faster than points; the result is the same as writing
        ``batch.points()``.

        Returns
        -------
        int
            Number of values accepted.
        """
        return self.write(batch.points())

    def flush(self) -> None:  # noqa: B027 - a no-op default; backends that buffer override it
        """Push pending writes to durable storage (no-op for synchronous backends)."""

    def close(self) -> None:
        """Flush and release resources."""
        self.flush()

    # -- reading -----------------------------------------------------------------------------------------------------
    @abc.abstractmethod
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
        """Query one field over ``[start, stop)``.

        Parameters
        ----------
        measurement, field : str
            What to read.
        start, stop : int, datetime or ISO string
            Range; integers are [ns since the epoch], datetimes must be aware.
        tags : mapping, optional
            Tag filter: each key must equal the value or be one of the listed values.
        window_s : int, optional
            Aggregate into aligned windows of this length [s]; raw values when omitted.
        agg : str
            One of :data:`AGGREGATIONS`.
        pivot : str, optional
            Return a wide frame with one column per value of this tag.

        Returns
        -------
        DataFrame
            Long form: columns ``time`` (UTC), one column per tag key, ``value`` and, for raw queries, ``status``;
            sorted by series then time. Wide form when ``pivot`` is given.
        """

    @abc.abstractmethod
    def last_values(self, measurement: str, field: str, tags: TagFilter | None = None) -> pd.DataFrame:
        """Latest stored value of each matching series: columns ``time``, tag columns, ``value``, ``status``."""

    @abc.abstractmethod
    def series(self, measurement: str | None = None) -> list[SeriesInfo]:
        """List stored series with their point count and first/last timestamp."""

    # -- energy queries (generic: built on query(), see core.storage.query) ---------------------------------------------
    def aggregate(
        self,
        measurement: str,
        field: str,
        start: TimeLike,
        stop: TimeLike,
        *,
        every: int | str,
        agg: str,
        tags: TagFilter | None = None,
        tz: str = "UTC",
        register_max: float | None = None,
        max_hold_s: float | None = None,
    ) -> pd.DataFrame:
        """Aggregate one field into windows in a plant's local time.

        Parameters
        ----------
        measurement, field : str
            What to read.
        start, stop : int, datetime or ISO string
            Range ``[start, stop)``; the first and last window are cut to it.
        every : int or str
            Window: whole seconds dividing a day (aligned to local midnight), or ``"1d"``, ``"1w"``, ``"1mo"`` ...
            (calendar units in ``tz``; a local day across a DST change lasts 23 or 25 h).
        agg : str
            ``mean``, ``sum``, ``min``, ``max``, ``last``, ``count`` (from the store's rollups where the window edges
            allow), or ``increase`` (counter, rollovers and resets handled), ``twmean`` (time-weighted mean, step-hold),
            ``integral`` (time integral [unit x h]: kW gives kWh), ``state_seconds`` (seconds per state code).
        tags : mapping, optional
            Tag filter as in :meth:`query`.
        tz : str
            IANA zone of the windows.
        register_max : float, optional
            Register maximum [counter unit] for ``increase``.
        max_hold_s : float, optional
            Longest hold of a value [s] for the step-held aggregations.

        Returns
        -------
        DataFrame
            Long form: ``time`` (window start, UTC), tag columns, (``state`` for ``state_seconds``), ``value``;
            windows without data are omitted. Semantics: :mod:`core.storage.intervals`.
        """
        from core.storage.query import aggregate

        return aggregate(self, measurement, field, start, stop, every=every, agg=agg, tags=tags, tz=tz,
                         register_max=register_max, max_hold_s=max_hold_s)

    def read_frame(
        self,
        columns: Sequence[Column],
        start: TimeLike,
        stop: TimeLike,
        *,
        every: int | str,
        tz: str = "UTC",
        tags: TagFilter | None = None,
        by: Sequence[str] = ("site", "line", "machine"),
        chunk_s: int = 7 * 86400,
        carry: dict | None = None,
    ) -> Iterator[pd.DataFrame]:
        """Several aggregated fields of many series, aligned, one frame per time chunk.

        Parameters
        ----------
        columns : sequence of Column
            What to compute.
        start, stop, every, tz, tags
            As in :meth:`aggregate`.
        by : sequence of str
            Tags identifying a row's entity; series sharing them are summed for additive aggregations (sum, count,
            increase, integral, state_seconds) and refused otherwise.
        chunk_s : int
            Length of a chunk [s] (whole windows, at least one): memory stays bounded for any range.
        carry : dict, optional
            Filled in place with the end of the range read and each series' last value there; handed to the read
            that starts at that end (same columns, tags, windows), it continues this one without looking those
            values up again (a follower reading the newest windows tick by tick). Ignored when it does not fit.

        Yields
        ------
        DataFrame
            ``time`` (window start, UTC), the ``by`` tags, one column per Column (``<name>_off``, ``_idle``,
            ``_running``, ``_fault`` for ``state_seconds``), one row per (``by`` tags, window) with any data.
        """
        from core.storage.query import read_frame

        return read_frame(self, columns, start, stop, every=every, tz=tz, tags=tags, by=by, chunk_s=chunk_s,
                          carry=carry)

    def _aggregate_part(self, measurement: str, field: str, lo: int, hi: int, **kwargs):
        """One chunk of :meth:`aggregate` / :meth:`read_frame` (see :func:`core.storage.query.aggregate_part`); a
        store in a writer process answers it in the child, next to the data."""
        from core.storage.query import aggregate_part

        return aggregate_part(self, measurement, field, lo, hi, **kwargs)

    # -- helpers -----------------------------------------------------------------------------------------------------
    @staticmethod
    def _range_ns(start: TimeLike, stop: TimeLike) -> tuple[int, int]:
        start_ns, stop_ns = to_ns(start), to_ns(stop)
        if stop_ns <= start_ns:
            raise StoreError(f"query range is empty: stop ({stop}) must be after start ({start})")
        return start_ns, stop_ns

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
