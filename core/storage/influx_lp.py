"""Line protocol and Flux text helpers for :mod:`core.storage.influx`.

How Wattline points map onto InfluxDB:

- measurement, tags and each numeric field as they are (fields as floats);
- the point's OPC UA status as an integer field ``wattline_status`` on every line, so raw queries can return it;
- values stored as missing (None/NaN) are not written as numbers; their field names are listed in a string field
  ``wattline_missing`` (``",f1,f2,"``) so that raw queries return them as NaN and series counts include them.

Serialising here (rather than through ``influxdb_client.Point``) matters for throughput: the client's ``Point`` costs
~20 µs per point, a cached tag prefix and an f-string ~2 µs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from core.model import Point, SeriesKey

STATUS_FIELD = "wattline_status"
MISSING_FIELD = "wattline_missing"
INTERNAL_FIELDS = (STATUS_FIELD, MISSING_FIELD)

_MEAS_ESC = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n"})
_KEY_ESC = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n"})


def escape_measurement(name: str) -> str:
    """Escape a measurement name for line protocol."""
    return str(name).translate(_MEAS_ESC)


def escape_key(text: str) -> str:
    """Escape a tag key, tag value or field key for line protocol."""
    return str(text).translate(_KEY_ESC)


def escape_string_field(text: str) -> str:
    """Escape a string field value (without the surrounding quotes)."""
    return str(text).replace("\\", "\\\\").replace('"', '\\"')


def format_float(value: float) -> str:
    """Return a float in line-protocol form (``repr`` round-trips exactly)."""
    return repr(float(value))


class LineEncoder:
    """Encode points as line protocol, caching the escaped ``measurement,tags`` prefix per tag set."""

    def __init__(self) -> None:
        self._prefix: dict[tuple, str] = {}
        self._fkeys: dict[str, str] = {}
        # id(tags) -> (tags, measurement, prefix); holding `tags` keeps the id from being reused while cached
        self._by_id: dict[int, tuple] = {}
        # encode_batch: (keys tuple last seen, line heads of its keys built on first use); replaced as one object, so
        # concurrent writers each use a consistent pair
        self._heads: tuple[tuple, list] | None = None

    def prefix(self, measurement: str, tags: Mapping[str, str]) -> str:
        """Return ``measurement,k1=v1,k2=v2`` with tags sorted by key (InfluxDB's canonical order)."""
        key = (measurement, tuple(tags.items()))
        text = self._prefix.get(key)
        if text is None:
            # Empty tag values are not allowed in line protocol; InfluxDB treats an absent tag as empty anyway.
            parts = [escape_measurement(measurement)]
            parts += [f"{escape_key(k)}={escape_key(v)}" for k, v in sorted(tags.items()) if str(v) != ""]
            text = ",".join(parts)
            if len(self._prefix) > 100_000:  # bound the cache for pathological tag churn
                self._prefix.clear()
            self._prefix[key] = text
        return text

    def field_key(self, name: str) -> str:
        """Return an escaped field key (cached)."""
        text = self._fkeys.get(name)
        if text is None:
            text = self._fkeys[name] = escape_key(name)
        return text

    def encode_point(self, point: Point) -> tuple[str, int]:
        """Return one line and the number of field values it carries (missing values included)."""
        fields = []
        missing = []
        for name, value in point.fields.items():
            if value is None or not math.isfinite(value):
                missing.append(name)
            else:
                fields.append(f"{self.field_key(name)}={float(value)!r}")
        fields.append(f"{STATUS_FIELD}={int(point.status)}i")
        if missing:
            fields.append(f'{MISSING_FIELD}=",{escape_string_field(",".join(missing))},"')
        return f"{self.prefix(point.measurement, point.tags)} {','.join(fields)} {int(point.time_ns)}", len(point.fields)

    def encode_points(self, points: Iterable[Point]) -> tuple[list[str], int]:
        """Encode many points; return the lines and the number of field values.

        The hot path of every write: the tag prefix is cached by the identity of the tags mapping (collectors
        reuse one mapping per machine), then by content; finite floats are formatted inline.
        """
        by_id = self._by_id
        fkeys = self._fkeys
        lines = []
        n = 0
        for point in points:
            tags = point.tags
            hit = by_id.get(id(tags))
            if hit is not None and hit[0] is tags and hit[1] == point.measurement:
                prefix = hit[2]
            else:
                prefix = self.prefix(point.measurement, tags)
                if len(by_id) > 100_000:
                    by_id.clear()
                by_id[id(tags)] = (tags, point.measurement, prefix)
            parts = []
            missing = None
            fields = point.fields
            for name, value in fields.items():
                fk = fkeys.get(name)
                if fk is None:
                    fk = self.field_key(name)
                # value - value is 0.0 for finite numbers, NaN for NaN and +-inf
                if value is not None and value - value == 0:
                    parts.append(f"{fk}={float(value)!r}")
                elif missing is None:
                    missing = [name]
                else:
                    missing.append(name)
            n += len(fields)
            parts.append(f"{STATUS_FIELD}={int(point.status)}i")
            if missing:
                parts.append(f'{MISSING_FIELD}=",{escape_string_field(",".join(missing))},"')
            lines.append(f"{prefix} {','.join(parts)} {int(point.time_ns)}")
        return lines, n

    def encode_batch(self, keys: tuple[SeriesKey, ...], series: np.ndarray, times_ns: np.ndarray, values: np.ndarray,
                     status: np.ndarray) -> list[str]:
        """Encode values of many series given as columns (the collectors' path); one line per value.

        The line heads of a keys tuple are kept while the same tuple comes back (a collector passes one tuple with
        every batch), so a value costs one dict-free list lookup and one f-string.
        """
        cached = self._heads
        if cached is None or cached[0] is not keys:
            cached = self._heads = (keys, [None] * len(keys))
        heads = cached[1]
        out = []
        for i, t, v, s in zip(series.tolist(), times_ns.tolist(), values.tolist(), status.tolist()):
            head = heads[i]
            if head is None:
                key = keys[i]
                prefix = self.prefix(key.measurement, key.tag_dict)
                head = heads[i] = (f"{prefix} {self.field_key(key.field)}=", f"{prefix} {STATUS_FIELD}=",
                                   f'{MISSING_FIELD}=",{escape_string_field(key.field)},"')
            # v - v is 0.0 for finite numbers, NaN for NaN and +-inf
            if v - v == 0:
                out.append(f"{head[0]}{v!r},{STATUS_FIELD}={s}i {t}")
            else:
                out.append(f"{head[1]}{s}i,{head[2]} {t}")
        return out

    def encode_arrays(self, key: SeriesKey, times_ns: np.ndarray, values: np.ndarray, status: np.ndarray) -> list[str]:
        """Encode one series given as arrays (bulk path)."""
        prefix = self.prefix(key.measurement, key.tag_dict)
        fk = self.field_key(key.field)
        miss = f'{MISSING_FIELD}=",{escape_string_field(key.field)},"'
        finite = np.isfinite(values)
        out = []
        for t, v, s, ok in zip(times_ns.tolist(), values.tolist(), status.tolist(), finite.tolist()):
            if ok:
                out.append(f"{prefix} {fk}={v!r},{STATUS_FIELD}={s}i {t}")
            else:
                out.append(f"{prefix} {STATUS_FIELD}={s}i,{miss} {t}")
        return out


def chunk_lines(lines: Sequence[str], size: int) -> Iterable[str]:
    """Join lines into newline-separated chunks of at most ``size`` lines."""
    for i in range(0, len(lines), size):
        yield "\n".join(lines[i : i + size])


# -- Flux -----------------------------------------------------------------------------------------------------------
def flux_str(text: str) -> str:
    """Return a Flux string literal; escapes backslash, quote and ``${`` (Flux string interpolation)."""
    text = str(text).replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${")
    return f'"{text}"'


def flux_ident_access(column: str) -> str:
    """Return ``r["column"]`` (safe for any column name)."""
    return f"r[{flux_str(column)}]"


def flux_tag_predicate(tags: Mapping[str, str | Sequence[str]] | None) -> str:
    """Return a Flux predicate body for a tag filter, or ``true`` when there is none."""
    if not tags:
        return "true"
    parts = []
    for key, accepted in tags.items():
        col = flux_ident_access(key)
        if isinstance(accepted, str):
            parts.append(f"{col} == {flux_str(accepted)}")
        else:
            values = list(accepted)
            if not values:
                return "false"
            parts.append("(" + " or ".join(f"{col} == {flux_str(v)}" for v in values) + ")")
    return " and ".join(parts)


def flux_time(ns: int) -> str:
    """Return a Flux time literal for nanoseconds since the epoch (RFC 3339 with nanoseconds)."""
    sec, frac = divmod(int(ns), 1_000_000_000)
    import datetime as dt

    base = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=sec)
    return base.strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"
