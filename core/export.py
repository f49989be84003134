"""Open data: stored series out as CSV, Parquet or InfluxDB line protocol, and line protocol back in.

Exports read every matching series in time chunks (:data:`CHUNK_NS`), so a year of a plant never sits in memory. All
three formats are long form, one row per stored value:

- CSV and Parquet: ``time`` (UTC; ISO 8601 in CSV, ``timestamp[ns, UTC]`` in Parquet), ``measurement``, one column
  per tag key, ``field``, ``value`` (empty / null where the value was stored as missing), ``status`` (the OPC UA
  StatusCode, 0 = Good).
- Line protocol: exactly what Wattline writes into InfluxDB (``core.storage.influx_lp``): each value as a float
  field, the status as integer field ``wattline_status``, a missing value named in string field
  ``wattline_missing``; timestamps in ns. InfluxDB (``influx write``, Telegraf, the HTTP API) accepts it as is, and
  a Wattline InfluxDB store reads it back with status and missing values intact.

:func:`check_line_protocol` and :func:`import_line_protocol` are the other half (``wattline import lp``): a first
streaming pass checks every line, bad lines are reported with their numbers and nothing is written; a second streaming
pass writes the file in chunks of lines, so a multi-GB file (plain or gzip) takes bounded memory.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, cast

import numpy as np
import pandas as pd

from core.errors import ConfigError, WattlineError
from core.model import SeriesKey

if TYPE_CHECKING:  # imported where used (pyarrow is only needed for Parquet)
    import pyarrow.parquet as pq

NS = 1_000_000_000
#: Time span read per series and query [ns].
CHUNK_NS = 7 * 86400 * NS
FORMATS = ("csv", "parquet", "lp")


class ExportError(WattlineError):
    """An export or line-protocol import failed at run time (exit 1)."""


@dataclass
class ExportSummary:
    """What an export wrote."""

    series: int = 0
    values: int = 0
    missing: int = 0

    def line(self, fmt: str, out: str) -> str:
        return f"exported {self.values} values ({self.missing} missing) of {self.series} series as {fmt} to {out}"


def _chunks(store, info, start_ns: int | None, stop_ns: int | None) -> Iterator[pd.DataFrame]:
    """Raw values of one series in time chunks (rows of series with more tags than this one are left out)."""
    if not info.count:
        return
    lo = max(info.first_ns, start_ns) if start_ns is not None else info.first_ns
    hi = min(info.last_ns + 1, stop_ns) if stop_ns is not None else info.last_ns + 1
    tags = info.key.tag_dict
    t = lo
    while t < hi:
        end = min(t + CHUNK_NS, hi)
        frame = store.query(info.key.measurement, info.key.field, t, end, tags=tags)
        extra = [c for c in frame.columns if c not in ("time", "value", "status") and c not in tags]
        if extra:  # a series with more tags matched the filter; it is exported on its own
            frame = frame[frame[extra].isna().all(axis=1)]
        if len(frame):
            yield frame
        t = end


def _series(store, measurement: str, fields: tuple[str, ...] | None):
    infos = [i for i in store.series(measurement) if i.key.measurement == measurement
             and (not fields or i.key.field in fields)]
    if not infos:
        known = sorted({i.key.field for i in store.series(measurement)})
        if known:
            raise ConfigError(f"measurement {measurement!r} has no field {', '.join(fields or ())}; its fields: "
                              f"{', '.join(known)}")
        measurements = sorted({i.key.measurement for i in store.series()})
        raise ConfigError(f"no series of measurement {measurement!r} in the store; stored measurements: "
                          f"{', '.join(measurements) or 'none'}")
    return sorted(infos, key=lambda i: (i.key.tags, i.key.field))


def iter_export_frames(store, measurement: str, fields: tuple[str, ...] | None = None, start_ns: int | None = None,
                       stop_ns: int | None = None) -> Iterator[tuple[SeriesKey, pd.DataFrame]]:
    """Yield ``(series key, frame)`` per series and time chunk; frame columns ``time``, ``value``, ``status``."""
    for info in _series(store, measurement, fields):
        for frame in _chunks(store, info, start_ns, stop_ns):
            yield info.key, frame


def export_series(store, out: IO | Path, fmt: str, measurement: str, fields: tuple[str, ...] | None = None,
                  start_ns: int | None = None, stop_ns: int | None = None, progress: bool = False) -> ExportSummary:
    """Write the series of ``measurement`` (optionally only ``fields``) in ``[start_ns, stop_ns)`` [ns] to ``out``.

    Parameters
    ----------
    out : text stream or Path
        CSV and line protocol go to a text stream; Parquet needs a path.
    fmt : str
        One of :data:`FORMATS`.
    """
    from tqdm import tqdm

    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r} is not valid; valid options: {', '.join(FORMATS)}")
    infos = _series(store, measurement, fields)
    tag_keys = sorted({k for i in infos for k, _ in i.key.tags})
    summary = ExportSummary(series=len(infos))
    bar = tqdm(total=len(infos), desc="export", unit="series", disable=not progress, leave=False)
    writer = _Writer(out, fmt, tag_keys)
    try:
        for info in infos:
            for frame in _chunks(store, info, start_ns, stop_ns):
                times = _times_ns(frame["time"])
                values = frame["value"].to_numpy(dtype=float)
                status = frame["status"].to_numpy(dtype=np.int64) if "status" in frame else np.zeros(len(frame), np.int64)
                writer.write(info.key, times, values, status)
                summary.values += len(frame)
                summary.missing += int(np.isnan(values).sum())
            bar.update(1)
    finally:
        writer.close()
        bar.close()
    return summary


def _times_ns(column: pd.Series) -> np.ndarray:
    if pd.api.types.is_integer_dtype(column):
        return np.asarray(column, dtype=np.int64)
    return pd.to_datetime(column, utc=True).dt.as_unit("ns").astype("int64").to_numpy()


class _Writer:
    """One output in one format, written chunk by chunk."""

    def __init__(self, out, fmt: str, tag_keys: list[str]) -> None:
        self.out, self.fmt, self.tag_keys = out, fmt, tag_keys
        self._parquet: pq.ParquetWriter | None = None
        if fmt == "csv":
            self._csv = csv.writer(out, lineterminator="\n")
            self._csv.writerow(["time", "measurement", *tag_keys, "field", "value", "status"])
        elif fmt == "lp":
            from core.storage.influx_lp import LineEncoder

            self._lp = LineEncoder()

    def write(self, key: SeriesKey, times: np.ndarray, values: np.ndarray, status: np.ndarray) -> None:
        if self.fmt == "lp":
            lines = self._lp.encode_arrays(key, times, values, status)
            self.out.write("\n".join(lines) + "\n")
            return
        tags = key.tag_dict
        if self.fmt == "csv":
            stamps = np.char.add(np.datetime_as_string(times.astype("datetime64[ns]"), unit="us"), "Z").tolist()
            head = [key.measurement, *(tags.get(k, "") for k in self.tag_keys), key.field]
            self._csv.writerows([t, *head, "" if math.isnan(v) else repr(v), s]
                                for t, v, s in zip(stamps, values.tolist(), status.tolist()))
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        n = len(times)
        columns = {"time": pa.array(times, pa.timestamp("ns", tz="UTC")),
                   "measurement": pa.array([key.measurement] * n, pa.string())}
        for k in self.tag_keys:
            columns[k] = pa.array([tags.get(k)] * n, pa.string())
        columns["field"] = pa.array([key.field] * n, pa.string())
        columns["value"] = pa.array(values, pa.float64(), mask=np.isnan(values))
        columns["status"] = pa.array(status, pa.int64())
        table = pa.table(columns)
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self.out, table.schema, compression="zstd")
        self._parquet.write_table(table)

    def close(self) -> None:
        if self.fmt == "parquet":
            if self._parquet is None:  # nothing in the range: still a valid, empty file
                import pyarrow as pa
                import pyarrow.parquet as pq

                schema = pa.schema([("time", pa.timestamp("ns", tz="UTC")), ("measurement", pa.string()),
                                    *[(k, pa.string()) for k in self.tag_keys], ("field", pa.string()),
                                    ("value", pa.float64()), ("status", pa.int64())])
                pq.write_table(schema.empty_table(), self.out)
            else:
                self._parquet.close()


# -- line protocol in ----------------------------------------------------------------------------------------------------
STATUS_FIELD = "wattline_status"
MISSING_FIELD = "wattline_missing"
PRECISIONS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": NS}


@dataclass
class ParsedLines:
    """Values of a line-protocol file grouped by series, ready to write."""

    series: dict[SeriesKey, tuple[list, list, list]] = field(default_factory=dict)
    lines: int = 0
    values: int = 0
    errors: list[str] = field(default_factory=list)
    error_count: int = 0

    def arrays(self) -> Iterator[tuple[SeriesKey, np.ndarray, np.ndarray, np.ndarray]]:
        """Per series: times [ns], values (NaN = missing), status, sorted by time (the last line of a duplicate
        timestamp wins, as in InfluxDB)."""
        for key, (t, v, s) in self.series.items():
            times = np.asarray(t, dtype=np.int64)
            order = np.argsort(times, kind="stable")
            times, values, status = times[order], np.asarray(v, float)[order], np.asarray(s, np.int64)[order]
            keep = np.ones(len(times), bool)
            keep[:-1] = times[1:] != times[:-1]
            yield key, times[keep], values[keep], status[keep]


def _split_unescaped(text: str, sep: str) -> list[str]:
    """Split at ``sep`` outside backslash escapes and double-quoted strings."""
    parts, cur, i, quoted = [], [], 0, False
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i:i + 2])
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


_UNESCAPE = re.compile(r"\\(.)")


def _unescape(text: str) -> str:
    return _UNESCAPE.sub(r"\1", text)


def _parse_line(line: str, precision: int):
    """One line -> (measurement, tags, {field: value or None}, status, time [ns]); ValueError says what is wrong."""
    if "\\" not in line and '"' not in line:
        # Fast path (nearly every line): no escapes, no string fields, so plain splits are exact.
        return _parse_plain(line, precision)
    sections = _split_unescaped(line, " ")
    sections = [s for s in sections if s != ""]
    if len(sections) < 2:
        raise ValueError("expected 'measurement[,tags] fields [timestamp]'")
    if len(sections) == 2:
        raise ValueError("no timestamp; Wattline imports only stamped values (write the time as the last column)")
    if len(sections) > 3:
        raise ValueError("more than three space-separated parts (escape spaces in names as '\\ ')")
    head, fields_text, stamp = sections
    head_parts = _split_unescaped(head, ",")
    measurement = _unescape(head_parts[0])
    if not measurement:
        raise ValueError("empty measurement name")
    tags = {}
    for part in head_parts[1:]:
        kv = _split_unescaped(part, "=")
        if len(kv) != 2 or not kv[0] or not kv[1]:
            raise ValueError(f"tag {part!r} is not key=value")
        tags[_unescape(kv[0])] = _unescape(kv[1])
    try:
        time_ns = int(stamp) * precision
    except ValueError:
        raise ValueError(f"timestamp {stamp!r} is not an integer") from None
    values: dict[str, float | None] = {}
    status = 0
    missing: list[str] = []
    for part in _split_unescaped(fields_text, ","):
        kv = part.split("=", 1) if "\\=" not in part else _split_unescaped(part, "=")
        if len(kv) != 2 or not kv[0]:
            raise ValueError(f"field {part!r} is not key=value")
        name, raw = _unescape(kv[0]), kv[1]
        if name == MISSING_FIELD:
            missing += [m for m in raw.strip('"').split(",") if m]
            continue
        if raw.startswith('"'):
            raise ValueError(f"field {name!r} is a string ({raw[:30]}); Wattline stores numbers only")
        number = _number(name, raw)
        if name == STATUS_FIELD:
            status = int(number)
        else:
            values[name] = number
    for name in missing:
        values[name] = None
    if not values:
        raise ValueError("no value field (only wattline_status)")
    return measurement, tags, values, status, time_ns


def _number(name: str, raw: str) -> float:
    if raw in ("t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"):
        return 1.0 if raw[0] in "tT" else 0.0
    try:
        return float(raw[:-1]) if raw[-1:] in ("i", "u") else float(raw)
    except ValueError:
        raise ValueError(f"field {name!r} value {raw!r} is not a number") from None


def _parse_plain(line: str, precision: int):
    sections = [s for s in line.split(" ") if s]
    if len(sections) != 3:
        if len(sections) == 2:
            raise ValueError("no timestamp; Wattline imports only stamped values (write the time as the last column)")
        if len(sections) < 2:
            raise ValueError("expected 'measurement[,tags] fields [timestamp]'")
        raise ValueError("more than three space-separated parts (escape spaces in names as '\\ ')")
    head, fields_text, stamp = sections
    measurement, *tag_parts = head.split(",")
    if not measurement:
        raise ValueError("empty measurement name")
    tags = {}
    for part in tag_parts:
        key, eq, value = part.partition("=")
        if not eq or not key or not value or "=" in value:
            raise ValueError(f"tag {part!r} is not key=value")
        tags[key] = value
    try:
        time_ns = int(stamp) * precision
    except ValueError:
        raise ValueError(f"timestamp {stamp!r} is not an integer") from None
    values: dict[str, float | None] = {}
    status = 0
    for part in fields_text.split(","):
        name, eq, raw = part.partition("=")
        if not eq or not name or not raw:
            raise ValueError(f"field {part!r} is not key=value")
        if name == STATUS_FIELD:
            status = int(_number(name, raw))
        else:
            values[name] = _number(name, raw)
    if not values:
        raise ValueError("no value field (only wattline_status)")
    return measurement, tags, values, status, time_ns


#: Lines parsed and written at a time by the write pass of :func:`import_line_protocol` (bounds its memory: about
#: 150 bytes per value held).
CHUNK_LINES = 250_000


def _open_lines(path: Path) -> tuple[IO[bytes], IO[bytes]]:
    """(raw file, line source): gzip input (by its magic bytes, whatever the name) is read through ``gzip``."""
    import gzip

    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by the caller; a missing file is told apart here
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found; give a line-protocol file made by 'wattline export --format lp' "
                          "or any InfluxDB tool (plain or gzip)") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory; give a line-protocol file") from None
    if raw.read(2) == b"\x1f\x8b":
        raw.seek(0)
        return raw, cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
    raw.seek(0)
    return raw, raw


def _read_lines(path: Path, precision: int, progress: bool, desc: str) -> Iterator[tuple[int, tuple | str]]:
    """Stream a line-protocol file: (line number, parsed line or the problem as text) per data line, ``#`` comments
    and blank lines skipped. Memory is one line; progress is shown in bytes of the file (compressed bytes for gzip)."""
    from tqdm import tqdm

    raw, source = _open_lines(path)
    with raw, source, tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=desc,
                           disable=not progress or None, leave=False) as bar:
        for number, data in enumerate(source, start=1):
            if progress and number % 65536 == 0:
                bar.update(raw.tell() - bar.n)
            try:
                line = data.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                yield number, f"not UTF-8 text ({exc.reason} at byte {exc.start})"
                continue
            if not line or line.startswith("#"):
                continue
            try:
                yield number, _parse_line(line, precision)
            except ValueError as exc:
                yield number, str(exc)
        bar.update(raw.tell() - bar.n)


def _precision(precision: str) -> int:
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision!r} is not valid; valid options: {', '.join(PRECISIONS)}")
    return PRECISIONS[precision]


def _add(parsed: ParsedLines, item: tuple) -> None:
    measurement, tags, values, status, time_ns = item
    for name, value in values.items():
        key = SeriesKey.of(measurement, tags, name)
        t, v, s = parsed.series.setdefault(key, ([], [], []))
        t.append(time_ns)
        v.append(math.nan if value is None else value)
        s.append(status)
        parsed.values += 1


def parse_line_protocol(path: Path, *, precision: str = "ns", max_errors: int = 50) -> ParsedLines:
    """Read and check a line-protocol file (``#`` comments and blank lines skipped), all values in memory.

    For files of any size use :func:`check_line_protocol` and :func:`import_line_protocol`, which stream.

    Raises
    ------
    ConfigError
        For an unknown precision or a missing file. Bad lines are collected in ``errors`` (``file:line: problem``),
        not raised, so that all of them are listed at once.
    """
    factor = _precision(precision)
    parsed = ParsedLines()
    for number, item in _read_lines(Path(path), factor, False, "read"):
        parsed.lines += 1
        if isinstance(item, str):
            parsed.error_count += 1
            if len(parsed.errors) < max_errors:
                parsed.errors.append(f"{path}:{number}: {item}")
            continue
        _add(parsed, item)
    return parsed


@dataclass
class LineProtocolCheck:
    """The first, checking pass over a line-protocol file: counts and bad lines, no values kept."""

    lines: int = 0
    values: int = 0
    series: int = 0
    errors: list[str] = field(default_factory=list)
    error_count: int = 0


def check_line_protocol(path: Path, *, precision: str = "ns", max_errors: int = 50,
                        progress: bool = False) -> LineProtocolCheck:
    """Check every line of a line-protocol file (plain or gzip) streaming: memory holds one line and the set of
    series names, whatever the file's size.

    Raises
    ------
    ConfigError
        For an unknown precision or a missing file. Bad lines are collected in ``errors`` (``file:line: problem``,
        at most ``max_errors``), not raised, so that all of them are listed at once.
    """
    factor = _precision(precision)
    check = LineProtocolCheck()
    keys: set[tuple] = set()
    for number, item in _read_lines(Path(path), factor, progress, "check"):
        check.lines += 1
        if isinstance(item, str):
            check.error_count += 1
            if len(check.errors) < max_errors:
                check.errors.append(f"{path}:{number}: {item}")
            continue
        measurement, tags, values, _, _ = item
        head = (measurement, tuple(sorted(tags.items())))
        for name in values:
            keys.add((head, name))
        check.values += len(values)
    check.series = len(keys)
    return check


def import_line_protocol(path: Path, store, *, precision: str = "ns", chunk_lines: int = CHUNK_LINES,
                         progress: bool = False) -> int:
    """Write a checked line-protocol file into a store, streaming: ``chunk_lines`` lines are parsed, grouped by
    series and written at a time, so memory is bounded by the chunk, not the file. Run :func:`check_line_protocol`
    first (the CLI does): a bad line met here raises, after earlier chunks were written.

    Values keep the file's order across chunks: a later line for the same series and timestamp replaces an earlier
    one (as in InfluxDB), within a chunk and across chunks alike (the store's writes replace).

    Returns
    -------
    int
        Values written (a timestamp repeated within one chunk counts once).

    Raises
    ------
    ExportError
        A bad line in the write pass (the file changed since it was checked).
    """
    if chunk_lines < 1:
        raise ConfigError(f"chunk_lines {chunk_lines} is not valid; give a positive number of lines")
    factor = _precision(precision)
    written, chunk, held = 0, ParsedLines(), 0
    for number, item in _read_lines(Path(path), factor, progress, "write"):
        if isinstance(item, str):
            raise ExportError(f"{path}:{number}: {item} (the file changed after it was checked; "
                              f"{written} values were written before this line)")
        _add(chunk, item)
        held += 1
        if held >= chunk_lines:
            written += _write_chunk(chunk, store)
            chunk, held = ParsedLines(), 0
    written += _write_chunk(chunk, store)
    store.flush()
    return written


def _write_chunk(parsed: ParsedLines, store) -> int:
    written = 0
    for key, times, values, status in parsed.arrays():
        store.write_arrays(key, times, values, status, bulk=True)
        written += len(times)
    return written


def write_parsed_lines(parsed: ParsedLines, store) -> int:
    """Write lines parsed in memory (:func:`parse_line_protocol`) into a store (bulk layout); return the number of
    values written."""
    written = _write_chunk(parsed, store)
    store.flush()
    return written


def parse_time_ns(value: str | None, what: str) -> int | None:
    """``YYYY-MM-DD`` (UTC midnight) or ISO 8601 (UTC when no offset) -> [ns]; ConfigError naming the option."""
    if value is None:
        return None
    text = value.strip()
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--{what} {value!r} is not a date or time; use YYYY-MM-DD or ISO 8601 such as "
                          "2026-03-02T06:00:00+01:00") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return (t - _EPOCH) // dt.timedelta(microseconds=1) * 1000  # exact integer arithmetic, no float rounding


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
