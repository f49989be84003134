"""The read side of :class:`core.storage.influx.InfluxStore`: the store's query methods (:class:`InfluxQueries`) and
what goes beyond one Flux script.

- Windowed queries in parts (:mod:`core.storage.query_parts`): the rollup buckets answer every whole bucket their
  tasks have completed, raw points only the rest -- for a range ending now, the newest minutes. The rollup tasks run
  a little after each bucket closes (``TASK_OFFSET_S``) and points may arrive up to ``LATE_AFTER_S`` late without
  the writing store refreshing their rollups, so a bucket counts as complete once the task of its level has run after
  the last such point could arrive (:func:`settle_s`: about 5 min for 1-min buckets, 17 min for 15-min buckets, 62 min
  for hourly ones). Before this, any range ending now (every dashboard refresh) read raw points.
- Series counts (:class:`SeriesCounts`): counting every stored point of a bucket is the costly part of listing the
  series, and the stored-series page does it every few seconds. The counts of the history older than a few minutes
  are kept and extended with each newer stretch; only the newest minutes are counted on every call. The kept counts
  are dropped when this store writes late points or deletes, and recounted in full every :data:`RECOUNT_S`, which
  bounds how long late points written by another process are missing from the count.
"""

from __future__ import annotations

import io
import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import numpy as np

from core.errors import StoreError, StoreUnavailable
from core.model import SeriesKey
from core.storage.base import ROLLUP_RESOLUTIONS_S, SeriesInfo, TagFilter, TimeLike, check_query_args, pivot_frame
from core.storage.influx_flux import (
    END_OF_TIME,
    TASK_OFFSET_S,
    last_query,
    missing_query,
    raw_query,
    series_query,
    window_query,
)
from core.storage.influx_lp import MISSING_FIELD, STATUS_FIELD
from core.storage.influx_write import LATE_AFTER_S, InfluxState, _error_text
from core.storage.query_parts import (
    PARTIALS,
    QueryPart,
    combine_parts,
    plan_parts,
    warn_if_raw_heavy,
)

if TYPE_CHECKING:
    import pandas as pd

    from core.storage.influx import InfluxStore

NS = 1_000_000_000
#: Time allowed for one task run to finish [s].
TASK_RUN_S = 60


def settle_s(res: int) -> int:
    """How long after a bucket at ``res`` [s] closes its rollup is final [s].

    A point may arrive up to ``LATE_AFTER_S`` after its time and still be left to the tasks (later ones are
    refreshed by the store that writes them). The 1-min task runs every minute at ``TASK_OFFSET_S`` and recomputes
    its lookback from raw points; each coarser level is final at its first run after the finer level is final.
    """
    final = 0
    for r in sorted(ROLLUP_RESOLUTIONS_S):
        ready = LATE_AFTER_S if r == min(ROLLUP_RESOLUTIONS_S) else final
        offset = TASK_OFFSET_S[r]
        runs = max(0, -(-(ready - offset) // r))  # the level's runs fall at offset + k * r after the bucket closes
        final = offset + runs * r + TASK_RUN_S
        if r == res:
            return final
    raise ValueError(f"no rollup at {res} s")
#: Kept series counts are recounted in full after this long [s].
RECOUNT_S = 600
#: Points older than this when the series are listed are counted once and kept [s] (= the store's late limit).
SETTLED_S = 240


def plan_window(store: InfluxStore, window_s: int, start_ns: int, stop_ns: int) -> list[QueryPart]:
    """The parts answering a windowed query of ``store``: rollups for complete buckets, raw points for the rest."""
    if not store.use_rollups or not store.rollups_ready():
        parts = [QueryPart(start_ns, stop_ns, None)]
        why = ("rollups are switched off (use_rollups)" if not store.use_rollups
               else "the rollup buckets are missing; run `wattline influx setup`")
        warn_if_raw_heavy(parts, window_s, store.description, why)
        return parts
    now = time.time_ns()

    def complete_until(res: int) -> int:
        return now - settle_s(res) * NS

    parts = plan_parts(window_s, start_ns, stop_ns, complete_until, ROLLUP_RESOLUTIONS_S)
    warn_if_raw_heavy(parts, window_s, store.description)
    return parts


def _finish(store: InfluxStore, frame: pd.DataFrame, window_s: int, agg: str) -> pd.DataFrame:
    """Long frame (``time`` = window start, tags, ``value``) from the CSV rows of one windowed aggregate."""
    import pandas as pd


    if frame.empty:
        return _empty_frame(status=False)
    value = pd.to_numeric(frame["_value"], errors="coerce")
    keep = value.notna()
    frame, value = frame[keep], value[keep]
    return store._finish_frame(frame, store._tag_columns(frame), value, None, window_s * NS, agg == "count")


def window_frames(store: InfluxStore, measurement: str, field_name: str, tags: TagFilter | None, window_s: int,
                  pieces: list[tuple[QueryPart, str]]) -> list[pd.DataFrame]:
    """The windowed aggregates of several (part, aggregation) pieces, in one request.

    Each piece is a complete ``from |> range |> filter |> aggregateWindow`` pipeline of its own (the shape InfluxDB
    pushes down to its storage engine) ending in ``yield``; the answer's ``result`` column tells them apart. One
    round trip instead of one per piece: a mean over three parts would otherwise take six.
    """
    bucket = store.settings.bucket
    script = "".join(
        window_query(bucket, measurement, field_name, p.start_ns, p.stop_ns, tags, window_s, agg, p.res)
        + f'  |> yield(name: "p{i}")\n'
        for i, (p, agg) in enumerate(pieces)
    )
    frame = store._table(script)
    if frame.empty or "result" not in frame.columns:
        return [_finish(store, frame.iloc[0:0], window_s, agg) for _p, agg in pieces]
    groups = dict(tuple(frame.groupby("result", sort=False)))
    return [_finish(store, groups.get(f"p{i}", frame.iloc[0:0]), window_s, agg)
            for i, (_p, agg) in enumerate(pieces)]


def windowed(store: InfluxStore, measurement: str, field_name: str, start_ns: int, stop_ns: int,
             tags: TagFilter | None, window_s: int, agg: str) -> pd.DataFrame:
    """A windowed query answered in parts; records them in ``store.last_query_sources`` and ``store.last_rollup``
    (the coarsest rollup used, None for raw points only)."""
    parts = plan_window(store, window_s, start_ns, stop_ns)
    if len(parts) == 1:
        (out,) = window_frames(store, measurement, field_name, tags, window_s, [(parts[0], agg)])
    else:
        pieces = [(p, partial) for p in parts for partial in PARTIALS[agg]]
        frames = window_frames(store, measurement, field_name, tags, window_s, pieces)
        out = combine_parts([(p, partial, f) for (p, partial), f in zip(pieces, frames, strict=True)], agg)
    store.last_query_sources = tuple(parts)
    store.last_rollup = max((p.res for p in parts if p.res is not None), default=None)
    return out


# -- series listing ------------------------------------------------------------------------------------------------------
def series_stats(store: InfluxStore, measurement: str | None, start: str, stop: str) -> dict[SeriesKey, list[int]]:
    """``{key: [count, first_ns, last_ns]}`` of the values stored in ``[start, stop)`` (Flux time expressions)."""

    bucket = store.settings.bucket
    stats: dict[SeriesKey, list[int]] = {}

    def key_of(row: dict, tag_cols: list[str], name: str) -> SeriesKey:
        return SeriesKey.of(row["_measurement"], {t: row[t] for t in tag_cols if row.get(t, "") != ""}, name)

    for fn in ("count", "first", "last"):
        frame = store._table(series_query(bucket, measurement, fn, start, stop))
        if frame.empty:
            continue
        tag_cols = store._tag_columns(frame)
        times = _times_ns(frame["_time"]).tolist() if "_time" in frame else [0] * len(frame)
        for row, t in zip(frame.to_dict("records"), times):
            if row["_field"] == MISSING_FIELD:
                continue
            entry = stats.setdefault(key_of(row, tag_cols, row["_field"]), [0, t, t])
            if fn == "count":
                entry[0] += int(row["_value"])
            elif fn == "first":
                entry[1] = t
            else:
                entry[2] = t
    missing = store._table(missing_query(bucket, measurement, start, stop))
    if not missing.empty:
        tag_cols = store._tag_columns(missing)
        for row, t in zip(missing.to_dict("records"), _times_ns(missing["_time"]).tolist()):
            for name in [f for f in row["_value"].split(",") if f]:
                entry = stats.setdefault(key_of(row, tag_cols, name), [0, t, t])
                entry[0] += 1
                entry[1] = min(entry[1], t)
                entry[2] = max(entry[2], t)
    return stats


def _merge(into: dict[SeriesKey, list[int]], more: dict[SeriesKey, list[int]]) -> None:
    for key, (count, first, last) in more.items():
        entry = into.get(key)
        if entry is None:
            into[key] = [count, first, last]
        else:
            entry[0] += count
            entry[1] = min(entry[1], first)
            entry[2] = max(entry[2], last)


@dataclass
class _Kept:
    stats: dict[SeriesKey, list[int]]
    until_ns: int
    counted_at: float
    generation: int


@dataclass
class SeriesCounts:
    """Series listings of one store with the counts of the settled history kept (see the module docstring).

    ``last_counted`` holds the ``(start_ns, stop_ns)`` stretches the latest :meth:`series` call counted (for tests).
    """

    generation: int = 0
    kept: dict[str | None, _Kept] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_counted: list[tuple[int, int | None]] = field(default_factory=list)

    def invalidate(self) -> None:
        """Forget the kept counts (points were written into, or deleted from, the counted history)."""
        with self.lock:
            self.generation += 1
            self.kept.clear()

    def series(self, store: InfluxStore, measurement: str | None) -> list[SeriesInfo]:
        """Every stored series of ``measurement`` (all when None) with count and first/last time."""
        from core.storage.influx_lp import flux_time

        now = time.time_ns()
        settled = ((now - SETTLED_S * NS) // (60 * NS)) * 60 * NS
        with self.lock:
            counted: list[tuple[int, int | None]] = []
            kept = self.kept.get(measurement)
            if (kept is None or kept.generation != self.generation or time.monotonic() - kept.counted_at > RECOUNT_S
                    or settled < kept.until_ns):
                kept = _Kept(series_stats(store, measurement, "0", flux_time(settled)), settled, time.monotonic(),
                             self.generation)
                counted.append((0, settled))
                self.kept[measurement] = kept
            elif settled > kept.until_ns:
                _merge(kept.stats, series_stats(store, measurement, flux_time(kept.until_ns), flux_time(settled)))
                counted.append((kept.until_ns, settled))
                kept.until_ns = settled
            stats = {k: list(v) for k, v in kept.stats.items()}
            _merge(stats, series_stats(store, measurement, flux_time(kept.until_ns), END_OF_TIME))
            counted.append((kept.until_ns, None))
            self.last_counted = counted
        return [SeriesInfo(k, c, first, last) for k, (c, first, last) in sorted(stats.items(), key=lambda kv: repr(kv[0]))]


# -- the store's read methods -----------------------------------------------------------------------------------------
_META_COLS = {"", "result", "table", "_time", "_value", "_start", "_stop", "_measurement", "_field"}


class InfluxQueries(InfluxState):
    """The read side of an :class:`~core.storage.influx.InfluxStore` (a mixin)."""

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
        out = out.sort_values([*tags, "time"], kind="stable", na_position="first") if tags else out.sort_values("time")
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
            out = windowed(cast("InfluxStore", self), measurement, field, start_ns, stop_ns, tags, int(window_s), agg)
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
        return self._series_counts.series(cast("InfluxStore", self), measurement)  # (a mixin of InfluxStore only)

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
