"""Flux scripts for :mod:`core.storage.influx`: queries with server-side aggregation, and rollup tasks.

Rollup layout: for a raw bucket ``B`` the rollups live in ``B_1m``, ``B_15m`` and ``B_1h`` with the same measurement
and tags; each raw field ``f`` becomes five rollup fields ``f__sum``, ``f__count``, ``f__min``, ``f__max``, ``f__last``
and ``f__mean``, stamped with the window start. A mean over a window equal to the rollup's resolution reads ``f__mean``
(one pushed-down read); over a coarser window it is ``sum(f__sum) / sum(f__count)``, so rollups compose exactly (a
mean of means would not). In tasks the 1-min rollup is computed from raw points, 15 min from 1 min, 1 h from 15 min
(``f__mean`` always from raw points); the store's refresh computes every level from raw points.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from core.storage.influx_lp import INTERNAL_FIELDS, MISSING_FIELD, STATUS_FIELD, flux_str, flux_tag_predicate, flux_time

#: Rollup resolution [s] -> bucket suffix.
ROLLUP_SUFFIX = {60: "1m", 900: "15m", 3600: "1h"}
#: Rollup parts: suffix -> (aggregate used to build it from the finer level, aggregate used to query it).
ROLLUP_PARTS = {"sum": "sum", "count": "sum", "min": "min", "max": "max", "last": "last", "mean": "mean"}
#: Query aggregation -> (rollup part, Flux function applied to that part).
ROLLUP_QUERY = {"sum": ("sum", "sum"), "count": ("count", "sum"), "min": ("min", "min"), "max": ("max", "max"),
                "last": ("last", "last")}
#: How far back each rollup task recomputes on every run [s]. Older late points (a collector's spool after an outage)
#: are refreshed by the store that writes them. Flux's to() writes ~30k points/s, so the 1-min lookback stays short.
TASK_LOOKBACK_S = {60: 300, 900: 3600, 3600: 3 * 3600}
#: Delay of each task after its window closes, so the finer level is done first [s].
TASK_OFFSET_S = {60: 15, 900: 45, 3600: 75}
#: Upper time bound for "all time" queries (InfluxDB's maximum timestamp is in 2262).
END_OF_TIME = "2262-01-01T00:00:00Z"

_NON_TAG_DROP = '["_start", "_stop", "_measurement", "_field"]'
#: Measurements of the result store (:mod:`core.storage.results_influx`) that are records, not series: they carry
#: string fields, which would make a rollup's sum() fail for the whole window, and they are not listed as series.
RESULT_RECORDS = ("wattline_findings", "wattline_runs")


def _not_records() -> str:
    """Predicate excluding the result records (simple comparisons: still pushed down to the storage engine)."""
    return " and ".join(f"r._measurement != {flux_str(m)}" for m in RESULT_RECORDS)


def _tag_filter(tags: Mapping[str, str | Sequence[str]] | None) -> str:
    """A filter line for the tags, or nothing: even ``filter(fn: (r) => true)`` stops InfluxDB from pushing
    ``aggregateWindow`` down into the storage engine, which makes a month of raw points take minutes."""
    if not tags:
        return ""
    return f"  |> filter(fn: (r) => {flux_tag_predicate(tags)})\n"


def rollup_bucket(bucket: str, res_s: int) -> str:
    """Name of the rollup bucket of ``bucket`` at resolution ``res_s``."""
    return f"{bucket}_{ROLLUP_SUFFIX[res_s]}"


def task_name(bucket: str, res_s: int) -> str:
    """Name of the rollup task (used to find it again: setup is idempotent)."""
    return f"wattline-rollup-{bucket}-{ROLLUP_SUFFIX[res_s]}"


def _finer(res_s: int) -> int | None:
    order = sorted(ROLLUP_SUFFIX)
    i = order.index(res_s)
    return order[i - 1] if i else None


def rollup_body(bucket: str, org: str, res_s: int, start: str, stop: str, from_raw: bool = False) -> str:
    """Flux that (re)computes the rollup at ``res_s`` for ``[start, stop)`` and writes it with ``to()``.

    ``start``/``stop`` are Flux expressions (time literals, or ``-10m`` / ``now()`` style in tasks); they must be
    aligned to ``res_s`` so that every window is whole. ``from_raw`` computes the level from raw points instead of
    the next finer rollup (the store's refresh of late points uses it, so levels do not wait on each other).
    """
    finer = None if from_raw else _finer(res_s)
    dst = flux_str(rollup_bucket(bucket, res_s))
    every = f"{res_s}s"
    # One complete from |> range |> filter |> aggregateWindow pipeline per part: only that shape is pushed down to
    # the storage engine (a shared `data = ...` stream, or a function filter, makes Flux window in memory, with one
    # table per window -- 30x slower on a day of 1-min windows).
    parts = []
    for part, fn in ROLLUP_PARTS.items():
        if part == "mean":
            # The exact mean of a window comes from raw points at every level (a mean of means would be wrong);
            # aggregateWindow(fn: mean) on raw points is pushed down to the storage engine.
            parts.append(
                f"p_mean = from(bucket: {flux_str(bucket)})\n  |> range(start: {start}, stop: {stop})\n"
                f"  |> filter(fn: (r) => {' and '.join(f'r._field != {flux_str(f)}' for f in INTERNAL_FIELDS)}"
                f" and {_not_records()})\n"
                f"  |> aggregateWindow(every: {every}, fn: mean, timeSrc: \"_start\", createEmpty: false)\n"
                '  |> map(fn: (r) => ({r with _field: r._field + "__mean"}))\n'
            )
            continue
        if finer is None:
            src = flux_str(bucket)
            internal = " and ".join(f"r._field != {flux_str(f)}" for f in INTERNAL_FIELDS) + " and " + _not_records()
            agg = part  # raw -> 1 min: sum, count, min, max, last of the raw values
            rename = f'  |> map(fn: (r) => ({{r with _field: r._field + "__{part}", _value: float(v: r._value)}}))\n'
        else:
            src = flux_str(rollup_bucket(bucket, finer))
            internal = f"r._field =~ /__{part}$/"
            agg = fn
            rename = ""
        parts.append(
            f"p_{part} = from(bucket: {src})\n  |> range(start: {start}, stop: {stop})\n"
            f"  |> filter(fn: (r) => {internal})\n"
            f"  |> aggregateWindow(every: {every}, fn: {agg}, timeSrc: \"_start\", createEmpty: false)\n" + rename
        )
    union = ", ".join(f"p_{p}" for p in ROLLUP_PARTS)
    return "".join(parts) + f"union(tables: [{union}])\n  |> to(bucket: {dst}, org: {flux_str(org)})\n"


def task_flux(bucket: str, org: str, res_s: int) -> str:
    """Full Flux of the InfluxDB task maintaining the rollup at ``res_s`` (recomputes a lookback window)."""
    opts = (
        f'option task = {{name: {flux_str(task_name(bucket, res_s))}, every: {res_s}s, '
        f'offset: {TASK_OFFSET_S[res_s]}s}}\n\n'
    )
    # In a task, now() is the scheduled time (aligned to `every`), so -lookback stays aligned to the window.
    return opts + rollup_body(bucket, org, res_s, f"-{TASK_LOOKBACK_S[res_s]}s", "now()")


def raw_query(bucket: str, measurement: str, field: str, start_ns: int, stop_ns: int,
              tags: Mapping[str, str | Sequence[str]] | None) -> str:
    """Raw values of one field with status and missing markers, one row per stored value."""
    marker = flux_str(f",{field},")
    fields = " or ".join(f"r._field == {flux_str(f)}" for f in (field, STATUS_FIELD, MISSING_FIELD))
    return (
        'import "strings"\n'
        f"from(bucket: {flux_str(bucket)})\n"
        f"  |> range(start: {flux_time(start_ns)}, stop: {flux_time(stop_ns)})\n"
        f"  |> filter(fn: (r) => r._measurement == {flux_str(measurement)} and ({fields}))\n"
        + _tag_filter(tags)
        + '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
        f"  |> filter(fn: (r) => exists r[{flux_str(field)}] or (exists r.{MISSING_FIELD} and "
        f"strings.containsStr(v: r.{MISSING_FIELD}, substr: {marker})))\n"
        '  |> drop(columns: ["_start", "_stop", "_measurement"])\n'
    )


def window_query(bucket: str, measurement: str, field: str, start_ns: int, stop_ns: int,
                 tags: Mapping[str, str | Sequence[str]] | None, window_s: int, agg: str,
                 rollup_res: int | None) -> str:
    """Windowed aggregate, from raw points (``rollup_res`` None) or from a rollup bucket."""
    rng = f"  |> range(start: {flux_time(start_ns)}, stop: {flux_time(stop_ns)})\n"
    tagf = _tag_filter(tags)
    every = f"{int(window_s)}s"
    if rollup_res is None:
        return (
            f"from(bucket: {flux_str(bucket)})\n" + rng
            + f"  |> filter(fn: (r) => r._measurement == {flux_str(measurement)} and r._field == {flux_str(field)})\n"
            + tagf
            + f"  |> aggregateWindow(every: {every}, fn: {agg}, timeSrc: \"_start\", createEmpty: false)\n"
            + f"  |> drop(columns: {_NON_TAG_DROP})\n"
        )
    src = flux_str(rollup_bucket(bucket, rollup_res))
    head = f"from(bucket: {src})\n" + rng
    if agg == "mean" and window_s == rollup_res:
        # One rollup value per window: read the stored exact mean (pushed down, no pivot).
        return (
            head
            + f"  |> filter(fn: (r) => r._measurement == {flux_str(measurement)} and "
            f"r._field == {flux_str(field + '__mean')})\n"
            + tagf
            + f"  |> aggregateWindow(every: {every}, fn: mean, timeSrc: \"_start\", createEmpty: false)\n"
            + f"  |> drop(columns: {_NON_TAG_DROP})\n"
        )
    if agg == "mean":
        # Several rollup windows per query window: weight by count, sum(f__sum) / sum(f__count).
        fs, fc = f"{field}__sum", f"{field}__count"
        return (
            head
            + f"  |> filter(fn: (r) => r._measurement == {flux_str(measurement)} and "
            f"(r._field == {flux_str(fs)} or r._field == {flux_str(fc)}))\n"
            + tagf
            + f"  |> aggregateWindow(every: {every}, fn: sum, timeSrc: \"_start\", createEmpty: false)\n"
            + '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
            + f"  |> filter(fn: (r) => exists r[{flux_str(fc)}] and r[{flux_str(fc)}] > 0.0)\n"
            + f"  |> map(fn: (r) => ({{r with _value: r[{flux_str(fs)}] / r[{flux_str(fc)}]}}))\n"
            + f'  |> drop(columns: ["_start", "_stop", "_measurement", {flux_str(fs)}, {flux_str(fc)}])\n'
        )
    part, fn = ROLLUP_QUERY[agg]
    return (
        head
        + f"  |> filter(fn: (r) => r._measurement == {flux_str(measurement)} and "
        f"r._field == {flux_str(field + '__' + part)})\n"
        + tagf
        + f"  |> aggregateWindow(every: {every}, fn: {fn}, timeSrc: \"_start\", createEmpty: false)\n"
        + f"  |> drop(columns: {_NON_TAG_DROP})\n"
    )


def last_query(bucket: str, measurement: str, field: str, tags: Mapping[str, str | Sequence[str]] | None) -> str:
    """Last value, last status and last missing marker of each matching series (three tables per tag set)."""
    fields = " or ".join(f"r._field == {flux_str(f)}" for f in (field, STATUS_FIELD, MISSING_FIELD))
    return (
        f"from(bucket: {flux_str(bucket)})\n"
        f"  |> range(start: 0, stop: {END_OF_TIME})\n"
        f"  |> filter(fn: (r) => r._measurement == {flux_str(measurement)} and ({fields}))\n"
        + _tag_filter(tags)
        + "  |> last()\n"
        '  |> drop(columns: ["_start", "_stop"])\n'
    )


def series_query(bucket: str, measurement: str | None, fn: str, start: str = "0", stop: str = END_OF_TIME) -> str:
    """``count``/``first``/``last`` of every stored series in ``[start, stop)`` (Flux time expressions; status field
    excluded, missing markers included; the result records are not series)."""
    meas = f"r._measurement == {flux_str(measurement)} and " if measurement else f"{_not_records()} and "
    return (
        f"from(bucket: {flux_str(bucket)})\n"
        f"  |> range(start: {start}, stop: {stop})\n"
        f"  |> filter(fn: (r) => {meas}r._field != {flux_str(STATUS_FIELD)})\n"
        + (f"  |> filter(fn: (r) => r._field != {flux_str(MISSING_FIELD)})\n" if fn == "count" else "")
        + f"  |> {fn}()\n"
        + '  |> drop(columns: ["_start", "_stop"])\n'
    )


def missing_query(bucket: str, measurement: str | None, start: str = "0", stop: str = END_OF_TIME) -> str:
    """Every missing-value marker in ``[start, stop)`` (rare: only points with Bad values carry one)."""
    meas = f"r._measurement == {flux_str(measurement)} and " if measurement else ""
    return (
        f"from(bucket: {flux_str(bucket)})\n"
        f"  |> range(start: {start}, stop: {stop})\n"
        f"  |> filter(fn: (r) => {meas}r._field == {flux_str(MISSING_FIELD)})\n"
        '  |> drop(columns: ["_start", "_stop"])\n'
    )
