"""Queries of the embedded store: raw points, windows from rows, rollups and chunks, last values, the catalogue.

The query semantics shared with InfluxDB (argument checks, rollup choice, ranges answered in parts) live in
:mod:`core.storage.base` and :mod:`core.storage.query_parts`; this module only reads SQLite.
"""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING

import numpy as np

from core.storage import sqlite_chunks as ck
from core.storage.base import SeriesInfo, TagFilter, TimeLike, check_query_args, choose_rollup, pivot_frame
from core.storage.sqlite_conn import SQLiteConnections, _snapshot
from core.storage.sqlite_rollups import _MAX_NS, _MIN_NS, NS, _rollup_source_sql

if TYPE_CHECKING:
    import pandas as pd

# Raw window aggregation in SQL; 'last' uses SQLite's documented bare-column rule with a single max().
_RAW_AGG = {
    "mean": "avg(value)",
    "sum": "sum(value)",
    "min": "min(value)",
    "max": "max(value)",
    "count": "count(value)",
}
_ROLLUP_AGG = {
    "mean": "sum(total) / sum(n)",
    "sum": "sum(total)",
    "min": "min(vmin)",
    "max": "max(vmax)",
    "count": "sum(n)",
}


def _order(sid: np.ndarray, ts: np.ndarray) -> np.ndarray | None:
    """The stable order by (series, time) (``np.lexsort``), or None when the arrays are in that order already (chunks
    come from SQLite by series and start; checking costs a fraction of sorting)."""
    if len(sid) < 2:
        return None
    d_sid = np.diff(sid)
    if ((d_sid > 0) | ((d_sid == 0) & (ts[1:] >= ts[:-1]))).all():
        return None
    return np.lexsort((ts, sid))


class SQLiteQueries(SQLiteConnections):
    """The read side of a :class:`~core.storage.sqlite.SQLiteStore` (a mixin)."""

    # -- reading -------------------------------------------------------------------------------------------------------
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
        check_query_args(field, window_s, agg)
        start_ns, stop_ns = self._range_ns(start, stop)
        if window_s is not None and choose_rollup(int(window_s), start_ns, stop_ns) is None:
            # A range not aligned to a rollup: rollups for its aligned stretch, raw points for the ends (exact).
            from core.storage.query_parts import answer_in_parts

            parted = answer_in_parts(self, measurement, field, start_ns, stop_ns, tags, int(window_s), agg)
            if parted is not None:
                return pivot_frame(parted, pivot) if pivot else parted
        sids = self._matching_series(measurement, field, tags)
        conn = self._conn()
        ids = json.dumps(sids)
        with _snapshot(conn):
            chunked = bool(sids) and ck.any_in_range(conn, ids, start_ns, stop_ns)
            res = None if window_s is None else choose_rollup(int(window_s), start_ns, stop_ns)
            if chunked and window_s is not None and res in ck.CHUNK_ROLLUPS_S:  # (res is None without a window)
                # Partial aggregates from the rows' rollup table and the chunks' own rollups (disjoint buckets).
                p_sid, partials = self._merged_partials(conn, ids, res, start_ns, stop_ns)
                windowed = ck.combine(p_sid, partials, int(window_s) * NS, agg)
                frame = self._frame(windowed, ["series_id", "ts", "value"], agg == "count")
                return pivot_frame(frame, pivot) if pivot else frame
            if chunked:
                # Chunks have no 1-min rollup: merge their raw values with the rows and aggregate in numpy.
                sid, ts, value, status = self._merged_raw(conn, ids, start_ns, stop_ns)
                if window_s is None:
                    frame = self._frame({"series_id": sid, "ts": ts, "value": value, "status": status},
                                        ["series_id", "ts", "value", "status"])
                else:
                    windowed = ck.window_rows(sid, ts, value, int(window_s) * NS, agg)
                    frame = self._frame(windowed, ["series_id", "ts", "value"], agg == "count")
                return pivot_frame(frame, pivot) if pivot else frame
            if window_s is None:
                sql = """SELECT series_id, ts, value, status FROM points
                         WHERE series_id IN (SELECT value FROM json_each(?)) AND ts >= ? AND ts < ?
                         ORDER BY series_id, ts"""
                rows = conn.execute(sql, (ids, start_ns, stop_ns)).fetchall() if sids else []
                columns = ["series_id", "ts", "value", "status"]
            else:
                w_ns = int(window_s) * NS
                if res is None:
                    expr = "max(ts), value" if agg == "last" else _RAW_AGG[agg]
                    where = "AND value IS NOT NULL" if agg == "last" else ""
                    sql = f"""SELECT series_id, (ts / {w_ns}) * {w_ns} AS b, {expr} FROM points
                              WHERE series_id IN (SELECT value FROM json_each(?)) AND ts >= ? AND ts < ? {where}
                              GROUP BY series_id, b ORDER BY series_id, b"""
                else:
                    expr = "max(last_ts), vlast" if agg == "last" else _ROLLUP_AGG[agg]
                    where = "AND last_ts IS NOT NULL" if agg == "last" else ""
                    sql = f"""SELECT series_id, (bucket / {w_ns}) * {w_ns} AS b, {expr} FROM {_rollup_source_sql(res)}
                              WHERE TRUE {where} GROUP BY series_id, b ORDER BY series_id, b"""
                params = {"ids": ids, "lo": start_ns, "hi": stop_ns}
                rows = conn.execute(sql, params if res else (ids, start_ns, stop_ns)).fetchall() if sids else []
                if agg == "last":
                    rows = [(r[0], r[1], r[3]) for r in rows]
                rows = [r for r in rows if r[2] is not None]
                columns = ["series_id", "ts", "value"]
        frame = self._frame(rows, columns, agg == "count" and window_s is not None)
        return pivot_frame(frame, pivot) if pivot else frame

    @staticmethod
    def _merged_partials(conn: sqlite3.Connection, ids: str, res: int, start_ns: int, stop_ns: int
                         ) -> tuple[np.ndarray, np.ndarray]:
        """Rollup buckets at ``res`` of rows and chunks in ``[start_ns, stop_ns)``, sorted by (series, bucket)."""
        rows = conn.execute(
            f"SELECT series_id, bucket, n, nrows, total, vmin, vmax, vlast FROM {_rollup_source_sql(res)}",
            {"ids": ids, "lo": start_ns, "hi": stop_ns},
        ).fetchall()
        c_sid, c_part = ck.read_partials(conn, ids, res, start_ns, stop_ns)
        part = np.zeros(len(rows), dtype=ck.PARTIAL)
        if rows:
            cols = list(zip(*rows))
            assert ck.PARTIAL.names is not None  # a structured dtype
            for i, name in enumerate(ck.PARTIAL.names, start=1):
                # NULLs (buckets without a present value) become NaN; n = 0 makes them ignored.
                part[name] = np.array(cols[i], dtype=float if part.dtype[name].kind == "f" else np.int64)
        sid = np.concatenate([np.array([r[0] for r in rows], dtype=np.int64), c_sid])
        part = np.concatenate([part, c_part])
        order = _order(sid, part["bucket"])
        return (sid, part) if order is None else (sid[order], part[order])

    @staticmethod
    def _merged_raw(conn: sqlite3.Connection, ids: str, start_ns: int, stop_ns: int):
        """Raw values of rows and chunks in ``[start_ns, stop_ns)`` as arrays sorted by (series, time); NaN = missing."""
        rows = conn.execute(
            "SELECT series_id, ts, value, status FROM points"
            " WHERE series_id IN (SELECT value FROM json_each(?)) AND ts >= ? AND ts < ?",
            (ids, start_ns, stop_ns),
        ).fetchall()
        c_sid, c_ts, c_val, c_status = ck.read_range(conn, ids, start_ns, stop_ns)
        if rows:
            r_sid, r_ts, r_raw, r_status = zip(*rows)
            r_val = np.array(r_raw, dtype=float)  # NULL (None) -> NaN
            sid = np.concatenate([np.array(r_sid, dtype=np.int64), c_sid])
            ts = np.concatenate([np.array(r_ts, dtype=np.int64), c_ts])
            value = np.concatenate([r_val, c_val])
            status = np.concatenate([np.array(r_status, dtype=np.int64), c_status])
        else:
            sid, ts, value, status = c_sid, c_ts, c_val, c_status
        order = _order(sid, ts)
        if order is None:
            return sid, ts, value, status
        return sid[order], ts[order], value[order], status[order]

    def _frame(self, rows: list[tuple] | dict, columns: list[str], integer_values: bool = False) -> pd.DataFrame:
        import pandas as pd  # here, not at import: a collector's writer process never builds a frame

        if isinstance(rows, dict):
            frame = pd.DataFrame(rows, columns=columns)
        else:
            frame = pd.DataFrame.from_records(rows, columns=columns)
        tag_keys = sorted({k for sid in frame["series_id"].unique() for k, _ in self._keys[int(sid)].tags})
        frame["time"] = pd.to_datetime(frame["ts"].astype("int64"), unit="ns", utc=True)
        frame["value"] = frame["value"].astype("int64" if integer_values else "float64")
        if "status" in frame:
            frame["status"] = frame["status"].astype("int64")
        for tag in tag_keys:
            lookup = {sid: self._keys[sid].tag_dict.get(tag) for sid in frame["series_id"].unique()}
            frame[tag] = frame["series_id"].map(lookup)
        ordered = ["time", *tag_keys, "value"] + (["status"] if "status" in frame else [])
        return frame[ordered].reset_index(drop=True)

    def last_values(self, measurement: str, field: str, tags: TagFilter | None = None) -> pd.DataFrame:
        conn = self._conn()
        rows = []
        with _snapshot(conn):
            for sid in self._matching_series(measurement, field, tags):
                row = conn.execute(
                    "SELECT ts, value, status FROM points WHERE series_id = ? ORDER BY ts DESC LIMIT 1", (sid,)
                ).fetchone()
                chunk = conn.execute(
                    "SELECT id, start_ts, end_ts, times, vals, status FROM chunks WHERE series_id = ?"
                    " ORDER BY start_ts DESC LIMIT 1", (sid,)
                ).fetchone()
                if chunk is not None and (row is None or chunk[2] > row[0]):
                    times, vals, status = ck.decode(chunk)
                    value = float(vals[-1])
                    row = (int(times[-1]), None if np.isnan(value) else value, int(status[-1]))
                if row is not None:
                    rows.append((sid, *row))
        return self._frame(rows, ["series_id", "ts", "value", "status"])

    def series(self, measurement: str | None = None) -> list[SeriesInfo]:
        sids = self._matching_series(measurement, None, None)
        if not sids:
            return []
        conn = self._conn()
        ids = json.dumps(sids)
        # Three statements for all series, not two per series: a follower asks for the catalogue on every tick, and
        # 200 machines' series cost ~800 statements (most of a tick's read). Each extent is still an index lookup.
        with _snapshot(conn):
            extents = conn.execute(
                "SELECT j.value,"
                " (SELECT ts FROM points WHERE series_id = j.value ORDER BY ts LIMIT 1),"
                " (SELECT ts FROM points WHERE series_id = j.value ORDER BY ts DESC LIMIT 1),"
                " (SELECT start_ts FROM chunks WHERE series_id = j.value ORDER BY start_ts LIMIT 1),"
                " (SELECT end_ts FROM chunks WHERE series_id = j.value ORDER BY start_ts DESC LIMIT 1)"
                " FROM json_each(?) AS j",
                (ids,),
            ).fetchall()
            # Hourly rollups count every stored row exactly once (duplicates were replaced on write), chunks their
            # values; a value lives in one place only.
            rows = dict(conn.execute(
                f"SELECT series_id, sum(nrows) FROM {_rollup_source_sql(3600)} GROUP BY series_id",
                {"ids": ids, "lo": _MIN_NS, "hi": _MAX_NS},
            ).fetchall())
            in_chunks = dict(conn.execute(
                "SELECT series_id, sum(n) FROM chunks WHERE series_id IN (SELECT value FROM json_each(?))"
                " GROUP BY series_id",
                (ids,),
            ).fetchall())
        result = []
        for sid, first, last, c_first, c_last in extents:
            firsts = [t for t in (first, c_first) if t is not None]
            lasts = [t for t in (last, c_last) if t is not None]
            if not firsts:
                continue
            count = int(rows.get(sid) or 0) + int(in_chunks.get(sid) or 0)
            result.append(SeriesInfo(self._keys[sid], count, int(min(firsts)), int(max(lasts))))
        return result
