"""Data behind the pages, as pure functions of a :class:`~core.storage.base.Store` and a time.

Nothing here imports Dash: every function takes the store and "now" explicitly, so the unit tests call them on a
temporary SQLite store with points they wrote, without a browser or a web server.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from core.model import MACHINE_STATES, unit_of
from core.storage.base import Store
from core.storage.intervals import counter_deltas
from dashboard.errors import DashboardError

NS = 1_000_000_000
POWER = ("electrical", "active_power_kw")
ENERGY = ("electrical", "energy_kwh")
STATE = ("machine_state", "state")
MACHINE_KEY = ("site", "line", "machine")


# -- time ranges and time zones ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TimeRange:
    """A time-range choice of the live page.

    Parameters
    ----------
    key : str
        Short id used in the selector and the URL (``?range=1h``).
    label : str
        Text shown to the person.
    span_s : int
        Length of the range [s]; a whole number of windows.
    window_s : int
        Aggregation window [s]. From 1 min on it is a multiple of a rollup resolution, so that with the range aligned
        to the window (:func:`aligned_range`) the store answers from its rollups instead of raw points.
    """

    key: str
    label: str
    span_s: int
    window_s: int


TIME_RANGES: tuple[TimeRange, ...] = (
    TimeRange("15m", "15 min", 900, 10),  # 90 raw windows: the live view
    TimeRange("1h", "1 h", 3600, 60),  # 1-min rollup
    TimeRange("24h", "24 h", 86400, 300),  # 5-min windows from the 1-min rollup
    TimeRange("7d", "7 d", 7 * 86400, 3600),  # 1-h rollup
)
DEFAULT_RANGE = "15m"


def get_time_range(key: str | None) -> TimeRange:
    """Return the :class:`TimeRange` called ``key`` (the default when None); raise DashboardError naming valid keys."""
    key = key or DEFAULT_RANGE
    for time_range in TIME_RANGES:
        if time_range.key == key:
            return time_range
    raise DashboardError(f"unknown time range {key!r}; valid: {', '.join(r.key for r in TIME_RANGES)}")


def aligned_range(time_range: TimeRange, now_ns: int) -> tuple[int, int]:
    """Return ``(start_ns, stop_ns)`` of a range ending with the window that contains ``now_ns``.

    Both ends are multiples of the window, so windows line up across machines and the rollup path is used.
    """
    w_ns = time_range.window_s * NS
    stop_ns = (int(now_ns) // w_ns + 1) * w_ns
    return stop_ns - time_range.span_s * NS, stop_ns


def resolve_timezone(name: str | None = None) -> ZoneInfo:
    """Return the plant's time zone: ``name``, else ``$TZ``, else the system zone (``/etc/localtime``), else UTC.

    Raises
    ------
    DashboardError
        When ``name`` is not a known IANA zone name.
    """
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise DashboardError(f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin or UTC") from exc
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    try:
        target = str(Path("/etc/localtime").resolve())
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    for candidate in candidates:
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def local_midnight_ns(now_ns: int, tz: dt.tzinfo) -> int:
    """Start of the plant's current day [ns since the epoch]."""
    local = pd.Timestamp(int(now_ns), unit="ns", tz="UTC").tz_convert(tz)
    return int(local.normalize().tz_convert("UTC").value)


def to_local_naive(times: pd.Series, tz: dt.tzinfo) -> pd.Series:
    """Convert UTC timestamps to the plant's wall-clock time without offset (Plotly ignores offsets)."""
    return pd.to_datetime(times, utc=True).dt.tz_convert(tz).dt.tz_localize(None)


def format_age(seconds: float | None) -> str:
    """Short human age: ``"12 s"``, ``"5 min"``, ``"3 h"``, ``"4 d"``; ``"—"`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


# -- machine identity ------------------------------------------------------------------------------------------------------
def _with_machine_tags(frame: pd.DataFrame) -> pd.DataFrame:
    """Make sure the site/line/machine columns exist (an empty query result has none) and hold strings."""
    frame = frame.copy()
    for tag in MACHINE_KEY:
        if tag not in frame.columns:
            frame[tag] = ""
        frame[tag] = frame[tag].fillna("").astype(str)
    return frame


def _labels(frame: pd.DataFrame, keys: tuple[str, ...]) -> pd.Series:
    """Shortest unambiguous label per row: the last key alone when it is unique, else keys joined with '/'."""
    columns = list(keys)
    combos = frame[columns].drop_duplicates()  # label the few distinct series, not every row
    depth = 1
    while depth < len(columns) and combos.duplicated(columns[-depth:]).any():
        depth += 1
    combos = combos.assign(
        label=["/".join(v for v in row[-depth:] if v) or "?" for row in combos.itertuples(index=False)]
    )
    return frame[columns].merge(combos, on=columns, how="left")["label"].set_axis(frame.index)


# -- live power ------------------------------------------------------------------------------------------------------------
def power_by_machine(store: Store, start_ns: int, stop_ns: int, window_s: int) -> pd.DataFrame:
    """Mean active power per machine in aligned windows.

    Returns
    -------
    DataFrame
        Columns ``time`` (window start, UTC), ``site``, ``line``, ``machine``, ``label`` (unambiguous machine name) and
        ``value`` [kW]; sorted by line, machine, time. Empty (with these columns) when nothing is stored in the range.
    """
    frame = store.query(*POWER, start_ns, stop_ns, window_s=window_s, agg="mean")
    frame = _with_machine_tags(frame)
    columns = ["time", *MACHINE_KEY, "label", "value"]
    if frame.empty:
        return pd.DataFrame({c: pd.Series(dtype="datetime64[ns, UTC]" if c == "time" else object) for c in columns})
    frame["label"] = _labels(frame, MACHINE_KEY)
    frame = frame.sort_values(["site", "line", "machine", "time"]).reset_index(drop=True)
    return frame[columns]


def line_totals(machines: pd.DataFrame) -> pd.DataFrame:
    """Sum machine powers per line over the same aligned windows.

    A machine whose value for a window has not arrived yet (the newest window is still filling) keeps its previous
    window's value for one window, so a line total does not dip at the right edge of a live graph. Longer gaps are
    not filled: the total then covers fewer machines, which ``reporting`` says.

    Parameters
    ----------
    machines : DataFrame
        Output of :func:`power_by_machine`.

    Returns
    -------
    DataFrame
        Columns ``time``, ``site``, ``line``, ``label`` (unambiguous line name), ``value`` [kW], ``reporting``
        (machines with a value in the window) and ``machines`` (machines of the line in the range).
    """
    columns = ["time", "site", "line", "label", "value", "reporting", "machines"]
    if machines.empty:
        return pd.DataFrame({c: pd.Series(dtype="datetime64[ns, UTC]" if c == "time" else object) for c in columns})
    parts = []
    for (site, line), group in machines.groupby(["site", "line"], sort=True):
        wide = group.pivot(index="time", columns="label", values="value").sort_index().ffill(limit=1)
        parts.append(
            pd.DataFrame(
                {
                    "time": wide.index,
                    "site": site,
                    "line": line,
                    "value": wide.sum(axis=1, min_count=1).to_numpy(),
                    "reporting": wide.notna().sum(axis=1).to_numpy(),
                    "machines": wide.shape[1],
                }
            )
        )
    frame = pd.concat(parts, ignore_index=True)
    frame["label"] = _labels(frame.assign(machine=""), ("site", "line"))
    return frame[columns]


# -- KPIs ------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlantPower:
    """Current plant power.

    Attributes
    ----------
    total_kw : float or None
        Sum of the latest fresh power value of every machine [kW]; None when no machine has a fresh value.
    machines : int
        Machines counted in the total.
    stale : int
        Machines left out because their latest value is older than the stale limit.
    as_of_ns : int or None
        Newest timestamp among the counted values [ns].
    bad : int
        Machines left out because their latest value is recent but missing (the source marked it Bad).
    """

    total_kw: float | None
    machines: int
    stale: int
    as_of_ns: int | None
    bad: int = 0


def plant_power(store: Store, now_ns: int, stale_after_s: float) -> PlantPower:
    """Sum the latest power of each machine, leaving out values older than ``stale_after_s`` [s]."""
    last = store.last_values(*POWER)
    if last.empty:
        return PlantPower(None, 0, 0, None)
    times = last["time"].astype("int64").to_numpy()
    recent = int(now_ns) - times <= stale_after_s * NS
    valid = last["value"].notna().to_numpy()
    fresh = recent & valid
    stale, bad = int((~recent).sum()), int((recent & ~valid).sum())
    if not fresh.any():
        return PlantPower(None, 0, stale, None, bad)
    return PlantPower(float(last["value"][fresh].sum()), int(fresh.sum()), stale, int(times[fresh].max()), bad)


@dataclass(frozen=True)
class EnergyToday:
    """Electrical energy used since the plant's midnight.

    Attributes
    ----------
    kwh : float or None
        Energy [kWh]; None when no machine has data today.
    from_register : int
        Machines whose energy comes from their energy register (``energy_kwh``).
    from_power : int
        Machines without a register whose energy is integrated from 1-min mean power.
    since_ns : int
        Local midnight [ns].
    """

    kwh: float | None
    from_register: int
    from_power: int
    since_ns: int


def counter_increase(values: np.ndarray) -> float:
    """Increase of a monotonic counter over a sequence of readings [counter unit].

    A drop is read as a reset (the register's maximum is not known here): the reading after the drop counts as the
    increase since the reset, as in :func:`core.storage.intervals.counter_deltas`.
    """
    values = np.asarray(values, dtype=float)
    return float(counter_deltas(values[np.isfinite(values)]).sum())  # the store's rule (core.storage.intervals)


def energy_today(store: Store, now_ns: int, tz: dt.tzinfo) -> EnergyToday:
    """Energy since local midnight: from each machine's energy register, else integrated from its power.

    Reads 1-min rollups only (last register reading per minute, mean power per minute), so the cost does not grow
    with the sampling rate.
    """
    midnight = local_midnight_ns(now_ns, tz)
    stop = (int(now_ns) // (60 * NS) + 1) * 60 * NS
    total, n_register, n_power = 0.0, 0, 0
    seen: set[tuple[str, ...]] = set()
    # One hour before midnight gives the reading the day's increase starts from.
    register = _with_machine_tags(store.query(*ENERGY, midnight - 3600 * NS, stop, window_s=60, agg="last"))
    first_readings: dict[tuple[str, ...], float] | None = None
    for key, group in register.groupby(list(MACHINE_KEY), sort=False):
        times = group["time"].astype("int64").to_numpy()
        values = group["value"].to_numpy()
        today = times >= midnight
        if not today.any():
            continue
        before = np.flatnonzero(~today)
        if len(before):
            total += counter_increase(values[before[-1]:])
        else:
            # Metering started today: count from the first reading (the smallest of the first minute), not from
            # that minute's last one, or a freshly started collector shows 0 kWh for its first minute.
            if first_readings is None:
                first = _with_machine_tags(store.query(*ENERGY, midnight, stop, window_s=60, agg="min"))
                first_readings = {tuple(k): float(g["value"].iloc[0]) for k, g in first.groupby(list(MACHINE_KEY), sort=False)}
            start = first_readings.get(tuple(key), values[today][0])
            total += counter_increase(np.concatenate([[start], values[today]]))
        n_register += 1
        seen.add(tuple(key))
    power = _with_machine_tags(store.query(*POWER, midnight, stop, window_s=60, agg="mean"))
    for key, group in power.groupby(list(MACHINE_KEY), sort=False):
        if tuple(key) in seen:
            continue
        starts = group["time"].astype("int64").to_numpy()
        # The newest minute is still running: count only the part that has passed.
        seconds = np.clip(np.minimum(starts + 60 * NS, int(now_ns)) - starts, 0, None) / NS
        total += float((group["value"].to_numpy() * seconds).sum() / 3600.0)
        n_power += 1
    if n_register + n_power == 0:
        return EnergyToday(None, 0, 0, midnight)
    return EnergyToday(total, n_register, n_power, midnight)


@dataclass(frozen=True)
class MachineStates:
    """How many machines are in each state now.

    Attributes
    ----------
    counts : dict
        ``{"running": n, "idle": n, "off": n, "fault": n, "unknown": n}``; ``unknown`` counts machines whose latest
        state is older than the stale limit, missing or not a known code.
    """

    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Number of machines with a state series."""
        return sum(self.counts.values())


def machine_states(store: Store, now_ns: int, stale_after_s: float) -> MachineStates:
    """Count machines per state from the latest ``machine_state.state`` of each machine."""
    counts = {name: 0 for name in (*MACHINE_STATES.values(), "unknown")}
    last = store.last_values(*STATE)
    for time, value in zip(last.get("time", []), last.get("value", [])):
        fresh = int(now_ns) - pd.Timestamp(time).value <= stale_after_s * NS
        name = MACHINE_STATES.get(int(value)) if fresh and value == value and float(value).is_integer() else None
        counts[name or "unknown"] += 1
    return MachineStates(counts)


# -- the live page's whole view ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LiveView:
    """Everything the live page shows for one refresh.

    Attributes
    ----------
    time_range : TimeRange
        The chosen range.
    start_ns, stop_ns : int
        Aligned query range [ns].
    machines, lines : DataFrame
        :func:`power_by_machine` and :func:`line_totals` results.
    power : PlantPower
    energy : EnergyToday
    states : MachineStates
    has_power_series : bool
        False when the store holds no power series at all (nothing was ever collected).
    """

    time_range: TimeRange
    start_ns: int
    stop_ns: int
    machines: pd.DataFrame
    lines: pd.DataFrame
    power: PlantPower
    energy: EnergyToday
    states: MachineStates
    has_power_series: bool
    last_power_ns: int | None


def live_view(store: Store, range_key: str | None, now_ns: int, tz: dt.tzinfo, stale_after_s: float) -> LiveView:
    """Compute the live page's data for the range ``range_key`` at ``now_ns``."""
    time_range = get_time_range(range_key)
    start_ns, stop_ns = aligned_range(time_range, now_ns)
    machines = power_by_machine(store, start_ns, stop_ns, time_range.window_s)
    last = store.last_values(*POWER)
    last_ns = int(last["time"].max().value) if not last.empty else None
    return LiveView(
        time_range=time_range,
        start_ns=start_ns,
        stop_ns=stop_ns,
        machines=machines,
        lines=line_totals(machines),
        power=plant_power(store, now_ns, stale_after_s),
        energy=energy_today(store, now_ns, tz),
        states=machine_states(store, now_ns, stale_after_s),
        has_power_series=not last.empty,
        last_power_ns=last_ns,
    )


def shared_result(store: Store, name: str, compute, ttl_s: float):
    """``compute()``, shared for ``ttl_s`` [s] per site scope of ``store`` under ``name`` (a page's refresh results).

    Inside a dashboard request the result comes from the results cache; once expired the previous result is served
    while a background thread computes the new one, so a refresh never waits for the store (what is shown is at most
    one ``ttl_s`` older). Outside a request (unit tests, the CLI) it is computed directly. The key names the sites of
    a store limited to them (:class:`dashboard.access.SiteScopedStore`), ``*`` for an unlimited one.
    """
    from dashboard.cache import request_cache

    cache = request_cache()
    if cache is None:
        return compute()
    sites = getattr(store, "sites", None)
    key = f"{name}|{'*' if sites is None else ','.join(sites)}"
    return cache.get_or_compute(key, compute, ttl_s=ttl_s, stale_ok=True)


# -- the series table ------------------------------------------------------------------------------------------------------
SERIES_COLUMNS = ("measurement", "tags", "field", "unit", "count", "first", "last", "age", "age_s", "status")


def series_rows(store: Store, now_ns: int, tz: dt.tzinfo, stale_after_s: float) -> list[dict]:
    """One row per stored series, for the engineers' table.

    Returns
    -------
    list of dict
        Keys :data:`SERIES_COLUMNS`: ``tags`` as ``"site=north · line=L1"``; ``first``/``last`` in the plant's local
        time; ``age_s`` seconds since the last value [s]; ``status`` ``"stale"`` when ``age_s`` exceeds
        ``stale_after_s``, else ``"ok"``. Sorted by measurement, tags and field.
    """
    return series_rows_from_frame(_series_frame_cached(store, tz), now_ns, stale_after_s)


def series_frame(infos: list, tz: dt.tzinfo) -> pd.DataFrame:
    """The series list as a frame, everything but the ages: what :func:`series_rows` caches.

    Parameters
    ----------
    infos : list of SeriesInfo
        ``store.series()``.
    tz : tzinfo
        The plant's time zone, for ``first`` and ``last``.

    Returns
    -------
    DataFrame
        Columns ``measurement``, ``tags``, ``field``, ``unit``, ``count``, ``first``, ``last`` (local time text) and
        ``last_ns`` [ns]; sorted by measurement, tags and field, index 0..n-1.
    """
    frame = pd.DataFrame(
        {
            "measurement": [i.key.measurement for i in infos],
            "tags": [" · ".join(f"{k}={v}" for k, v in i.key.tags) for i in infos],
            "field": [i.key.field for i in infos],
            "count": np.array([int(i.count) for i in infos], dtype=np.int64),
            "first_ns": np.array([int(i.first_ns) for i in infos], dtype=np.int64),
            "last_ns": np.array([int(i.last_ns) for i in infos], dtype=np.int64),
        }
    )
    units = {k: unit_of(*k) or "" for k in set(zip(frame["measurement"], frame["field"]))}  # few distinct pairs
    frame["unit"] = [units[k] for k in zip(frame["measurement"], frame["field"])]
    for column in ("first", "last"):
        frame[column] = _local_texts(frame[f"{column}_ns"].to_numpy(), tz)
    frame = frame.sort_values(["measurement", "tags", "field"], kind="stable").reset_index(drop=True)
    return frame[["measurement", "tags", "field", "unit", "count", "first", "last", "last_ns"]]


def series_rows_from_frame(frame: pd.DataFrame, now_ns: int, stale_after_s: float) -> list[dict]:
    """Rows of :func:`series_rows` from a :func:`series_frame` at ``now_ns``: ages and status computed vectorised."""
    age_s = (int(now_ns) - frame["last_ns"].to_numpy()) / NS
    columns = {name: frame[name].tolist() for name in ("measurement", "tags", "field", "unit", "count", "first", "last")}
    columns.update(age=format_ages(age_s), age_s=np.round(age_s, 1).tolist(),
                   status=np.where(age_s > stale_after_s, "stale", "ok").tolist())
    # zip of plain lists: DataFrame.to_dict("records") boxes every cell and takes ~50x as long on 20 000 series
    return [dict(zip(SERIES_COLUMNS, values)) for values in zip(*(columns[name] for name in SERIES_COLUMNS))]


@dataclass(frozen=True)
class SeriesSelection:
    """What the series page shows of the series list at one moment.

    Attributes
    ----------
    rows : list of dict
        Rows of :func:`series_rows` that match the filter, at most the limit asked for: when more match, the stale
        ones first, then the rest in order.
    total, stale, matched : int
        Series stored, stale among them, matching the filter.
    """

    rows: list[dict]
    total: int
    stale: int
    matched: int


def select_series(frame: pd.DataFrame, now_ns: int, stale_after_s: float, filter_text: str | None = None,
                  limit: int | None = None) -> SeriesSelection:
    """The rows of a :func:`series_frame` that match ``filter_text`` (every word, case-insensitive, in measurement,
    tags, field or status), at most ``limit`` of them (stale first when more match); filtered and counted vectorised,
    only the rows shown are built (a plant of 200 machines stores tens of thousands of series)."""
    age_s = (int(now_ns) - frame["last_ns"].to_numpy()) / NS
    stale = age_s > stale_after_s
    keep = np.ones(len(frame), dtype=bool)
    words = (filter_text or "").lower().split()
    if words and len(frame):
        hay = (frame["measurement"] + " " + frame["tags"] + " " + frame["field"] + " "
               + np.where(stale, "stale", "ok")).str.lower()
        for word in words:
            keep &= hay.str.contains(word, regex=False).to_numpy()
    idx = np.flatnonzero(keep)
    matched = len(idx)
    if limit is not None and matched > limit:
        idx = np.concatenate([idx[stale[idx]], idx[~stale[idx]]])[:limit]
    rows = series_rows_from_frame(frame.iloc[idx], now_ns, stale_after_s)
    return SeriesSelection(rows, len(frame), int(stale.sum()), matched)


def series_selection(store: Store, now_ns: int, tz: dt.tzinfo, stale_after_s: float, filter_text: str | None = None,
                     limit: int | None = None) -> SeriesSelection:
    """:func:`select_series` of the store's series list (shared for :data:`SERIES_LIST_TTL_S` in a request)."""
    return select_series(_series_frame_cached(store, tz), now_ns, stale_after_s, filter_text, limit)


def format_ages(seconds: np.ndarray) -> list[str]:
    """:func:`format_age` of many ages [s] at once (the unit chosen and the value scaled in numpy)."""
    s = np.maximum(np.asarray(seconds, dtype=float), 0.0)
    scaled = np.select([s < 90, s < 90 * 60, s < 36 * 3600], [s, s / 60, s / 3600], s / 86400)
    kind = np.select([s < 90, s < 90 * 60, s < 36 * 3600], [0, 1, 2], 3)
    templates = ("{:.0f} s", "{:.0f} min", "{:.1f} h", "{:.1f} d")
    return [templates[k].format(v) if math.isfinite(v) else "—" for k, v in zip(kind.tolist(), scaled.tolist())]


#: Lifetime of the cached series list [s]: listing every series with its count takes seconds on a year of 200
#: machines, longer than the page's refresh; ages are still computed from "now" at every refresh. After it expires
#: the old list is served while a background thread lists the series again (:meth:`ResultCache.get_or_compute`).
SERIES_LIST_TTL_S = 30.0


def _series_frame_cached(store: Store, tz: dt.tzinfo) -> pd.DataFrame:
    """:func:`series_frame` of ``store.series()``, shared for :data:`SERIES_LIST_TTL_S` per site scope inside a
    dashboard request (:func:`shared_result`)."""
    return shared_result(store, f"series-frame|{tz}", lambda: series_frame(store.series(), tz), SERIES_LIST_TTL_S)


def _local_texts(ns: np.ndarray, tz: dt.tzinfo) -> list[str]:
    """Local wall-clock texts ``YYYY-mm-dd HH:MM:SS`` of many times [ns], in one pandas call."""
    return list(pd.DatetimeIndex(pd.to_datetime(ns, unit="ns", utc=True)).tz_convert(tz).strftime("%Y-%m-%d %H:%M:%S"))
