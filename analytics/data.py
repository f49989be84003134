"""The analytics' data container: interval data per machine, on a complete time grid, with its sufficiency checked.

:class:`IntervalData` holds one row per (machine, window) at ``resolution_s`` (15 min by default, 1 min for a cause
that needs it): energy from the energy register (counter increase, rollovers and resets handled by
``core.storage.intervals``) or from integrated power where a machine has no register, mean and peak power, seconds per
machine state, good and scrap counts, compressed-air flow, the site's outdoor temperature and the shift status.

The grid is complete: every machine has a row for every window in ``[start, stop)``, missing data are NaN with
``coverage`` 0. Rows are ordered by machine (plant order) then time, so ``data.matrix(column)`` is a (machines x
windows) view without copying; the estimators work on those matrices, never row by row.

Sufficiency (coverage, gaps, share of Bad quality) is measured and reported as :class:`core.notices.Notice` warnings in
``data.warnings``; the container never assumes its data are complete.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from analytics.errors import AnalyticsError
from core.model import MACHINE_STATES, to_ns
from core.notices import Notice

if TYPE_CHECKING:
    from core.storage.base import Store

NS = 1_000_000_000

#: Columns of :attr:`IntervalData.frame`, in order.
FRAME_COLUMNS = ("machine", "time", "energy_kwh", "power_mean_kw", "power_max_kw", "s_off", "s_idle", "s_running",
                 "s_fault", "good", "scrap", "air_flow_m3_min", "outdoor_temp_c", "shift", "coverage", "bad_share")
#: Optional columns kept when a frame has them: energy register readings per window (lowest and last) [kWh], which
#: the meter-fault checks use to tell a register reset from a rollover.
REGISTER_COLUMNS = ("register_min_kwh", "register_last_kwh")
#: Numeric columns stored as float32 (a year of 200 machines at 15 min is 7 M rows); energy stays float64.
_FLOAT32 = ("power_max_kw", "s_off", "s_idle", "s_running", "s_fault", "good", "scrap", "air_flow_m3_min",
            "outdoor_temp_c", "coverage", "bad_share")
STATE_COLUMNS = tuple(f"s_{name}" for name in MACHINE_STATES.values())
#: Shift code of a window without a plant calendar (core.calendar uses 0 off-shift, 1 in shift, 2 break).
NO_CALENDAR = -1

#: Sufficiency thresholds: below these a warning is raised.
MIN_COVERAGE = 0.9
MAX_BAD_SHARE = 0.05
MIN_DAYS = 14.0
#: A gap is a run of windows with less than this coverage; gaps shorter than MIN_GAP_S are not listed.
GAP_COVERAGE = 0.5
MIN_GAP_S = 3600

#: Causes that need a plant file, and why (reported when the analytics run without one).
NEEDS_PLANT = {
    "off_shift_load": "no shift calendar: which hours are off-shift is unknown",
    "air_leak": "machine kinds unknown: no machine is known to be a compressor",
    "excess_specific_energy": "machine kinds unknown: assessed only where production counts are stored",
    "peak_demand": "no tariff: demand peaks cannot be valued by a demand charge",
    "cost_and_co2": "no tariff and no grid CO2 factor: energy is reported in kWh only",
}


@dataclass(frozen=True)
class MachineInfo:
    """What the analytics know about one machine (from the plant file, or only its tags without one).

    Parameters
    ----------
    path : str
        ``site/line/machine``.
    site, line, machine : str
        Its tags.
    kind : str
        One of ``core.plant.MACHINE_KINDS``; ``"other"`` without a plant file.
    rated_kw : float or None
        Rated electrical power [kW].
    timezone : str
        IANA time zone of the site.
    calendar : core.plant.CalendarSpec or None
        Shift calendar (line's or site's); None without a plant file.
    register_max_kwh : float or None
        Energy register rollover value [kWh].
    always_on : bool
        Runs outside shifts by design (furnaces kept hot, compressors, chillers).
    has_register : bool
        Energy came from the energy register (False: integrated power).
    sample_s : float or None
        Typical spacing of the stored power values [s], when read from a store.
    spec : object
        The plant's machine spec (core.plant.MachineSpec) or None.
    """

    path: str
    site: str
    line: str
    machine: str
    kind: str = "other"
    rated_kw: float | None = None
    timezone: str = "UTC"
    calendar: Any = None
    register_max_kwh: float | None = None
    always_on: bool = False
    has_register: bool = True
    sample_s: float | None = None
    spec: Any = None

    @property
    def is_production(self) -> bool:
        """True for machines that make parts (cnc, injection moulding)."""
        return self.kind in ("cnc", "injection_moulding")

    @classmethod
    def from_path(cls, path: str, **kwargs: Any) -> MachineInfo:
        """Build from a ``site/line/machine`` path (or a bare machine id: site and line empty)."""
        parts = str(path).split("/")
        if len(parts) == 3:
            site, line, machine = parts
        else:
            site, line, machine = "", "", str(path)
        return cls(str(path), site, line, machine, **kwargs)

    @classmethod
    def from_ref(cls, ref: Any) -> MachineInfo:
        """Build from a plant's machine reference (``core.plant.MachineRef``)."""
        spec = ref.spec
        kind = getattr(ref, "kind", None) or getattr(spec, "kind", None) or getattr(spec, "archetype", "other")
        always_on = bool(getattr(spec, "always_on", getattr(spec, "continuous", False)))
        return cls(ref.path, ref.site.id, ref.line.id, spec.id, kind=str(kind), rated_kw=float(spec.rated_kw),
                   timezone=str(ref.site.timezone), calendar=ref.calendar,
                   register_max_kwh=getattr(spec, "register_max_kwh", None), always_on=always_on, spec=spec)


def _utc(value: Any, what: str) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        raise AnalyticsError(f"{what} {value!r} has no time zone; give it an offset such as +00:00")
    return ts.tz_convert("UTC")


@dataclass(frozen=True, eq=False)
class IntervalData:
    """Interval data of a set of machines on a complete time grid (see the module docstring).

    Parameters
    ----------
    frame : DataFrame
        One row per (machine, window), columns :data:`FRAME_COLUMNS`, ordered by machine (as in ``machines``) then
        time. ``time`` is the window start (UTC, tz-aware). Units: energy [kWh], power [kW], state columns [s],
        counts [units], air flow [m3/min], temperature [°C], coverage and bad_share [0-1].
    materials : DataFrame
        Long form: ``machine``, ``time``, ``material``, ``kg`` (windows with material consumed only).
    machines : dict
        Path -> :class:`MachineInfo`, in frame order.
    start, stop : datetime
        The range ``[start, stop)`` (aware, UTC).
    resolution_s : int
        Window length [s].
    plant : core.plant.Plant or None
        The plant description, when one was given.
    warnings : list of Notice
        Sufficiency and other findings about the data themselves.
    """

    frame: pd.DataFrame
    materials: pd.DataFrame
    machines: dict[str, MachineInfo]
    start: dt.datetime
    stop: dt.datetime
    resolution_s: int
    plant: Any = None
    warnings: list[Notice] = field(default_factory=list)

    # -- shape --------------------------------------------------------------------------------------------------------
    @property
    def machine_ids(self) -> list[str]:
        """Machine paths in frame order."""
        return list(self.machines)

    @property
    def n_times(self) -> int:
        """Windows per machine."""
        return len(self.frame) // max(len(self.machines), 1)

    @property
    def times(self) -> pd.DatetimeIndex:
        """Window starts (UTC), shared by every machine."""
        return pd.DatetimeIndex(self.frame["time"].iloc[: self.n_times])

    @property
    def times_ns(self) -> np.ndarray:
        """Window starts [ns since the epoch, UTC]."""
        return self.times.as_unit("ns").asi8

    @property
    def hours(self) -> float:
        """Window length [h]."""
        return self.resolution_s / 3600.0

    def matrix(self, column: str) -> np.ndarray:
        """Return ``column`` as a (machines x windows) array (a view of the frame's values where possible)."""
        if column not in self.frame.columns:
            raise AnalyticsError(f"interval data have no column {column!r}; valid: {', '.join(self.frame.columns)}")
        return self.frame[column].to_numpy().reshape(len(self.machines), self.n_times)

    def machine_frame(self, path: str) -> pd.DataFrame:
        """The rows of one machine (a slice of the frame)."""
        try:
            i = self.machine_ids.index(path)
        except ValueError:
            raise AnalyticsError(f"no machine {path!r} in the interval data; valid: {self.machine_ids[:8]} ...") from None
        n = self.n_times
        return self.frame.iloc[i * n:(i + 1) * n]

    def select(self, paths: list[str], materials: bool = True) -> IntervalData:
        """The interval data of some machines only, in the order given (same grid, range and plant; the container's
        own warnings stay with the whole). What a worker of :mod:`analytics.parallel` receives instead of the plant;
        ``materials=False`` leaves the material consumption out (most of the bytes; for analyses that do not use
        it)."""
        index = {p: i for i, p in enumerate(self.machines)}
        missing = [p for p in paths if p not in index]
        if missing:
            raise AnalyticsError(f"no machine(s) {missing[:5]} in the interval data; valid: {self.machine_ids[:8]} ...")
        n = self.n_times
        rows: np.ndarray | list[int] = (np.concatenate([np.arange(index[p] * n, (index[p] + 1) * n) for p in paths])
                                        if paths else [])
        mats = self.materials if materials else self.materials.iloc[:0]
        if len(mats):
            mats = mats[machine_index(mats["machine"], paths) >= 0].reset_index(drop=True)
            mats["machine"] = mats["machine"].cat.set_categories(paths)
        return IntervalData(self.frame.iloc[rows].reset_index(drop=True), mats, {p: self.machines[p] for p in paths},
                            self.start, self.stop, self.resolution_s, self.plant, [])

    def groups(self, scope: str) -> dict[str, list[int]]:
        """Machine indices per scope: ``"machine"`` (path), ``"line"`` (site/line) or ``"site"``."""
        out: dict[str, list[int]] = {}
        for i, info in enumerate(self.machines.values()):
            if scope == "machine":
                key = info.path
            elif scope == "line":
                key = f"{info.site}/{info.line}"
            elif scope == "site":
                key = info.site
            elif scope == "plant":
                key = "plant"
            else:
                raise AnalyticsError(f"unknown scope {scope!r}; valid: machine, line, site, plant")
            out.setdefault(key, []).append(i)
        return out

    # -- construction -------------------------------------------------------------------------------------------------
    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        resolution_s: int | None = None,
        start: Any = None,
        stop: Any = None,
        plant: Any = None,
        machines: Mapping[str, MachineInfo] | Iterable[MachineInfo] | None = None,
        materials: pd.DataFrame | None = None,
        warnings: Iterable[Notice] = (),
        extra: Iterable[str] = (),
        check: bool = True,
    ) -> IntervalData:
        """Build interval data from a DataFrame (tests, imported data, and the store path).

        Parameters
        ----------
        frame : DataFrame
            Columns ``machine`` (path), ``time`` (window start, tz-aware) and any of :data:`FRAME_COLUMNS`; at least
            ``energy_kwh`` or ``power_mean_kw``. Missing columns are derived (power from energy and back) or NaN;
            missing (machine, window) rows become NaN rows with coverage 0.
        resolution_s : int, optional
            Window length [s]; inferred from the time stamps when omitted.
        start, stop : datetime or str, optional
            Range (aware); the data's extent when omitted.
        plant : core.plant.Plant, optional
            Plant description: machine list, kinds, rated power, calendars (the shift column is computed from them
            when the frame has none).
        machines : mapping or list of MachineInfo, optional
            Machine descriptions when there is no plant; otherwise the ``machine`` column's values, sorted.
        materials : DataFrame, optional
            Long form ``machine``, ``time``, ``material``, ``kg``.
        warnings : iterable of Notice
            Notices raised while reading, kept before the sufficiency findings.
        extra : iterable of str
            Further numeric columns to keep (e.g. a categorical driver coded as numbers, such as a load type).
        check : bool
            Check sufficiency now (the store reader checks after it has completed the quality columns).

        Raises
        ------
        AnalyticsError
            When a required column is missing, times have no zone, or the range is empty.
        """
        missing = [c for c in ("machine", "time") if c not in frame.columns]
        if missing:
            raise AnalyticsError(f"interval frame lacks column(s) {missing}; it needs 'machine', 'time' and "
                                 f"'energy_kwh' or 'power_mean_kw' (have {list(frame.columns)})")
        if "energy_kwh" not in frame.columns and "power_mean_kw" not in frame.columns:
            raise AnalyticsError(f"interval frame has neither 'energy_kwh' nor 'power_mean_kw' (have {list(frame.columns)})")
        notes = list(warnings)
        times = pd.DatetimeIndex(frame["time"])
        if len(times) and times.tz is None:
            raise AnalyticsError("interval frame 'time' has no time zone; localise it (e.g. tz_localize('UTC'))")
        times = times.tz_convert("UTC") if len(times) else pd.DatetimeIndex([], tz="UTC")
        tns = times.as_unit("ns").asi8
        if resolution_s is None:
            uniq = np.sort(pd.unique(tns))
            diffs = np.diff(uniq)
            diffs = diffs[diffs > 0]
            if not len(diffs):
                raise AnalyticsError("cannot infer the resolution from one time stamp; pass resolution_s")
            resolution_s = round(int(np.min(diffs)) / NS)
        resolution_s = int(resolution_s)
        if resolution_s <= 0:
            raise AnalyticsError(f"resolution_s must be positive, got {resolution_s}")
        res_ns = resolution_s * NS
        start_ns = to_ns(_utc(start, "start").to_pydatetime()) if start is not None else (int(tns.min()) if len(tns) else None)
        stop_ns = to_ns(_utc(stop, "stop").to_pydatetime()) if stop is not None else (int(tns.max()) + res_ns if len(tns) else None)
        if start_ns is None or stop_ns is None or stop_ns <= start_ns:
            raise AnalyticsError(f"empty range: start {start} stop {stop} (frame has {len(frame)} rows)")
        n_t = int(-(-(stop_ns - start_ns) // res_ns))
        grid_ns = start_ns + np.arange(n_t, dtype=np.int64) * res_ns

        # Machines: plant order, else the given descriptions, else the frame's order of appearance.
        if plant is not None:
            infos = {ref.path: MachineInfo.from_ref(ref) for ref in plant.machines}
        elif machines is not None:
            items = machines.values() if isinstance(machines, Mapping) else machines
            infos = {m.path: m for m in items}
        else:
            infos = {p: MachineInfo.from_path(p) for p in sorted(map(str, pd.unique(frame["machine"])))}
        codes, uniques = pd.factorize(frame["machine"], sort=False)
        uniques = [str(u) for u in uniques]
        index = {p: i for i, p in enumerate(infos)}
        lookup = np.array([index.get(u, -1) for u in uniques] + [-1], dtype=np.int64)
        mi = lookup[codes]  # factorize codes missing values as -1, which picks the trailing -1
        unknown = sorted(u for u in uniques if u not in index)
        if unknown:
            notes.append(Notice("analytics.data.unknown_machine",
                                f"{len(unknown)} machine(s) in the data are not in the plant description and are left out: "
                                f"{', '.join(unknown[:5])}", {"machines": unknown[:50]}))
        ti = (tns - start_ns) // res_ns
        on_grid = (tns - start_ns) % res_ns == 0
        keep = (mi >= 0) & (ti >= 0) & (ti < n_t) & on_grid
        if (~on_grid & (mi >= 0)).any():
            notes.append(Notice("analytics.data.off_grid", f"{int((~on_grid).sum())} rows are not at {resolution_s} s window "
                                "starts and are left out", {"resolution_s": resolution_s}))
        flat = mi[keep] * n_t + ti[keep]
        n_m = len(infos)
        size = n_m * n_t
        repeated = int((np.bincount(flat, minlength=size) > 1).sum()) if len(flat) else 0
        if repeated:
            notes.append(Notice("analytics.data.duplicate_rows", "several rows share a machine and window; the last is used",
                                {"windows": repeated}))

        in_order = len(flat) == size and bool(keep.all()) and bool(np.array_equal(flat, np.arange(size)))

        def column(name: str, dtype: type = np.float64) -> np.ndarray | None:
            """The frame's column on the grid, in its final dtype (NaN where no row)."""
            if name not in frame.columns:
                return None
            values = frame[name]
            if not pd.api.types.is_numeric_dtype(values):
                values = pd.to_numeric(values, errors="coerce")
            src = values.to_numpy(dtype=dtype, na_value=np.nan)
            if in_order:
                return np.array(src, dtype=dtype, copy=True)
            grid: np.ndarray = np.full(size, np.nan, dtype=dtype)
            grid[flat] = src[keep]
            return grid

        h = resolution_s / 3600.0
        out = pd.DataFrame({
            "machine": pd.Categorical.from_codes(np.repeat(np.arange(n_m), n_t), categories=list(infos)) if n_m else
            pd.Categorical([], categories=[]),
            "time": pd.DatetimeIndex(np.tile(grid_ns, n_m), tz="UTC"),
        })
        energy = column("energy_kwh")
        power = column("power_mean_kw")
        if energy is None:
            assert power is not None  # checked above: the frame has 'energy_kwh' or 'power_mean_kw'
            energy = power * h
        elif power is None:
            power = energy / h
        out["energy_kwh"] = energy
        out["power_mean_kw"] = power
        energy = out["energy_kwh"].to_numpy()
        del power
        for name in FRAME_COLUMNS[4:13]:
            values = column(name, np.float32)
            out[name] = np.full(size, np.nan, dtype=np.float32) if values is None else values
        shift = column("shift", np.float32)
        if shift is None:
            out["shift"] = _shift_codes(list(infos.values()), grid_ns, resolution_s).ravel()
        else:
            out["shift"] = np.nan_to_num(shift, nan=NO_CALENDAR).astype(np.int8)
        coverage = column("coverage", np.float32)
        known = np.isfinite(energy)
        if coverage is None:
            coverage = known.astype(np.float32)
        else:
            coverage = np.where(np.isnan(coverage), known, coverage).astype(np.float32)
        out["coverage"] = np.clip(coverage, 0.0, 1.0)
        bad = column("bad_share", np.float32)
        out["bad_share"] = np.zeros(size, dtype=np.float32) if bad is None else np.clip(np.nan_to_num(bad, nan=0.0), 0.0, 1.0)
        del coverage, bad, shift, known
        infos = dict(infos)
        absent = [name for name in extra if name not in frame.columns]
        if absent:
            raise AnalyticsError(f"extra column(s) {absent} are not in the frame (have {list(frame.columns)})")
        for name in REGISTER_COLUMNS + tuple(extra):
            if name in out.columns:
                raise AnalyticsError(f"extra column {name!r} clashes with a standard column; rename it")
            values = column(name)
            if values is not None:
                out[name] = values
        mats = _materials_frame(materials, infos, start_ns, stop_ns)
        data = cls(out, mats, infos, pd.Timestamp(start_ns, tz="UTC").to_pydatetime(),
                   pd.Timestamp(stop_ns, tz="UTC").to_pydatetime(), resolution_s, plant, notes)
        if check:
            data.warnings.extend(check_sufficiency(data))
        return data

    @classmethod
    def from_store(cls, store: Store, plant: Any, start: Any, stop: Any, resolution_s: int = 900,
                   progress: bool = False, timezone: str = "UTC", carry: dict | None = None) -> IntervalData:
        """Read interval data from a store (see :func:`analytics.store_reader.read_interval_frame`).

        Parameters
        ----------
        store : Store
            Any backend.
        plant : core.plant.Plant or None
            The plant description; without one, machines are the store's ``electrical`` series (kind ``"other"``, no
            calendar) and a warning names the causes that cannot be assessed.
        start, stop : datetime or str
            Range ``[start, stop)`` (aware).
        resolution_s : int
            Window length [s]: 900 (15 min) by default, 60 for a cause that needs 1-min data.
        progress : bool
            Show a tqdm bar over the time chunks read.
        timezone : str
            IANA time zone of the machines when there is no plant file (local time of day and week for baselines).
        carry : dict, optional
            Read state handed from one read to the next (filled in place): a read starting where the previous one
            with the same ``carry`` stopped takes each series' last value from it instead of the store (a follower
            reading the newest windows tick by tick; see ``Store.read_frame``). Start with ``{}``.

        Raises
        ------
        InsufficientDataError
            When the store holds no electrical data for the plant's machines in the range.
        """
        from analytics.data_store import read_store

        return read_store(cls, store, plant, start, stop, int(resolution_s), progress, timezone, carry)

    # -- reporting ----------------------------------------------------------------------------------------------------
    def sufficiency(self) -> pd.DataFrame:
        """Per machine: days, coverage, hours in gaps, longest gap [h], share of Bad quality.

        Returns
        -------
        DataFrame
            Index machine path; columns ``days``, ``coverage`` [0-1], ``gap_hours`` [h], ``longest_gap_h`` [h],
            ``gaps`` (count of gaps of at least an hour), ``bad_share`` [0-1].
        """
        cov = self.matrix("coverage").astype(float)
        bad = self.matrix("bad_share").astype(float)
        low = cov < GAP_COVERAGE
        runs = [_runs(row) for row in low]
        h = self.hours
        min_len = max(1, int(np.ceil(MIN_GAP_S / self.resolution_s)))
        rows = []
        for i, path in enumerate(self.machines):
            lengths = [b - a for a, b in runs[i]]
            rows.append({
                "machine": path,
                "days": self.n_times * h / 24.0,
                "coverage": float(cov[i].mean()) if self.n_times else 0.0,
                "gap_hours": float(sum(lengths) * h),
                "longest_gap_h": float(max(lengths, default=0) * h),
                "gaps": int(sum(1 for n in lengths if n >= min_len)),
                "bad_share": float(np.average(bad[i], weights=np.maximum(cov[i], 1e-9))) if self.n_times else 0.0,
            })
        return pd.DataFrame(rows).set_index("machine") if rows else pd.DataFrame(
            columns=["days", "coverage", "gap_hours", "longest_gap_h", "gaps", "bad_share"])

    def gaps(self, machine: str, min_s: int = MIN_GAP_S) -> list[tuple[dt.datetime, dt.datetime]]:
        """Spans of at least ``min_s`` seconds where ``machine`` has less than half a window's data."""
        i = self.machine_ids.index(machine)
        low = self.matrix("coverage")[i] < GAP_COVERAGE
        t = self.times_ns
        res = self.resolution_s * NS
        return [(pd.Timestamp(t[a], tz="UTC").to_pydatetime(), pd.Timestamp(t[b - 1] + res, tz="UTC").to_pydatetime())
                for a, b in _runs(low) if (b - a) * self.resolution_s >= min_s]


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Half-open index runs ``[a, b)`` where ``mask`` is True."""
    if not mask.any():
        return []
    d = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1)
    return list(zip(starts.tolist(), ends.tolist()))


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Half-open index runs ``[a, b)`` where a 1-d boolean ``mask`` is True (shared by the estimators)."""
    return _runs(np.asarray(mask, dtype=bool))


def _shift_codes(infos: list[MachineInfo], grid_ns: np.ndarray, resolution_s: int) -> np.ndarray:
    """Shift code per machine and window from the plant calendars, at each window's midpoint; -1 without a calendar.

    The midpoint decides a window that a shift boundary splits (breaks of 15 min fall on 15-min windows exactly).
    """
    out = np.full((len(infos), len(grid_ns)), NO_CALENDAR, dtype=np.int8)
    if not any(info.calendar is not None for info in infos):
        return out
    from core.calendar import shift_status

    mid = grid_ns + resolution_s * NS // 2
    done: dict[tuple, np.ndarray] = {}
    for i, info in enumerate(infos):
        if info.calendar is None:
            continue
        key = (id(info.calendar), info.timezone)
        if key not in done:
            done[key] = np.asarray(shift_status(info.calendar, info.timezone, mid), dtype=np.int8)
        out[i] = done[key]
    return out


def _materials_frame(materials: pd.DataFrame | None, infos: Mapping[str, MachineInfo], start_ns: int,
                     stop_ns: int) -> pd.DataFrame:
    """The material rows in the range, of known machines, with kg > 0: ``machine`` a categorical over the machines'
    paths (in ``infos`` order), ``material`` a categorical with sorted ids (tens of millions of rows a year: codes,
    not strings)."""
    paths = list(infos)
    empty = pd.DataFrame({"machine": pd.Categorical([], categories=paths), "time": pd.DatetimeIndex([], tz="UTC"),
                          "material": pd.Categorical([], categories=[]), "kg": pd.Series([], dtype=float)})
    if materials is None or materials.empty:
        return empty
    missing = [c for c in ("machine", "time", "material", "kg") if c not in materials.columns]
    if missing:
        raise AnalyticsError(f"materials frame lacks column(s) {missing}; it needs machine, time, material, kg")
    mi = machine_index(materials["machine"], paths)
    times = pd.DatetimeIndex(materials["time"]).tz_convert("UTC")
    t = times.as_unit("ns").asi8
    kg = materials["kg"].to_numpy()
    keep = (mi >= 0) & (t >= start_ns) & (t < stop_ns) & (kg > 0)
    material = materials["material"]
    if isinstance(material.dtype, pd.CategoricalDtype):
        cats = material.cat.categories
        if not cats.is_monotonic_increasing:
            material = material.cat.reorder_categories(sorted(cats))
        material = material.array[keep] if not keep.all() else material.array
    else:
        material = pd.Categorical(material.astype(str).to_numpy()[keep])
    return pd.DataFrame({"machine": pd.Categorical.from_codes(mi[keep].astype(np.int32), categories=paths),
                         "time": times[keep], "material": material, "kg": kg[keep]})


def machine_index(machine: pd.Series, paths: list[str]) -> np.ndarray:
    """Index of each row's machine in ``paths`` (-1 where not there), from a categorical column's codes (one lookup
    per category, no string per row) or from strings."""
    index = {p: i for i, p in enumerate(paths)}
    if isinstance(machine.dtype, pd.CategoricalDtype):
        cats = machine.cat.categories
        if list(cats) == paths:
            return machine.cat.codes.to_numpy().astype(np.int64)
        lookup = np.array([index.get(str(c), -1) for c in cats] + [-1], dtype=np.int64)
        return lookup[machine.cat.codes.to_numpy()]  # code -1 (missing) picks the trailing -1
    codes, uniques = pd.factorize(machine)
    lookup = np.array([index.get(str(u), -1) for u in uniques] + [-1], dtype=np.int64)
    return lookup[codes]


def check_sufficiency(data: IntervalData) -> list[Notice]:
    """Measure coverage, gaps and Bad quality per machine and return warnings for what falls short.

    Notices: ``analytics.data.short_range`` (less than :data:`MIN_DAYS` days), ``analytics.data.no_data`` (a machine
    without any value), ``analytics.data.low_coverage`` (below :data:`MIN_COVERAGE`), ``analytics.data.gaps`` (gaps of
    an hour or more), ``analytics.data.bad_quality`` (above :data:`MAX_BAD_SHARE` of values not Good),
    ``analytics.data.no_plant`` (causes that cannot be assessed without a plant file).
    """
    notes: list[Notice] = []
    days = data.n_times * data.hours / 24.0
    if days < MIN_DAYS:
        notes.append(Notice("analytics.data.short_range",
                            f"the range holds {days:.1f} days; baselines need at least {MIN_DAYS:.0f} days for a "
                            "trustworthy fit and time-ordered hold-out", {"days": round(days, 2), "min_days": MIN_DAYS}))
    if data.plant is None:
        notes.append(Notice("analytics.data.no_plant",
                            "no plant file: machines are taken from the store as kind 'other' without calendars or "
                            f"tariffs, so these cannot be assessed: {', '.join(NEEDS_PLANT)}",
                            {"causes": dict(NEEDS_PLANT)}))
    if not data.machines:
        notes.append(Notice("analytics.data.no_machines", "there are no machines with energy data in the range",
                            {"start": data.start.isoformat(), "stop": data.stop.isoformat()}, level="error"))
        return notes
    suff = data.sufficiency()
    empty = suff.index[suff["coverage"] <= 0].tolist()
    if empty:
        notes.append(Notice("analytics.data.no_data", f"{len(empty)} machine(s) have no data in the range: "
                            f"{', '.join(empty[:5])}", {"machines": empty}, level="error"))
    low = suff[(suff["coverage"] > 0) & (suff["coverage"] < MIN_COVERAGE)]
    if len(low):
        notes.append(Notice("analytics.data.low_coverage",
                            f"{len(low)} machine(s) have data for less than {MIN_COVERAGE:.0%} of the range (lowest "
                            f"{low['coverage'].min():.0%}, {low['coverage'].idxmin()}); their results carry less weight",
                            {"coverage": {k: round(float(v), 4) for k, v in low["coverage"].items()}}))
    gappy = suff[(suff["gaps"] > 0) & (suff["coverage"] > 0)]
    if len(gappy):
        details = {}
        for path in gappy.index[:50]:
            spans = data.gaps(path)
            details[path] = {"gaps": int(gappy.at[path, "gaps"]), "hours": round(float(gappy.at[path, "gap_hours"]), 2),
                             "longest_h": round(float(gappy.at[path, "longest_gap_h"]), 2),
                             "spans": [[a.isoformat(), b.isoformat()] for a, b in spans[:10]]}
        worst = gappy["longest_gap_h"].idxmax()
        notes.append(Notice("analytics.data.gaps",
                            f"{len(gappy)} machine(s) have gaps of an hour or more (longest {gappy['longest_gap_h'].max():.1f} h "
                            f"at {worst}); energy across a gap is spread over it, other signals are missing there",
                            {"machines": details}))
    bad = suff[suff["bad_share"] > MAX_BAD_SHARE]
    if len(bad):
        notes.append(Notice("analytics.data.bad_quality",
                            f"{len(bad)} machine(s) have more than {MAX_BAD_SHARE:.0%} of values with Bad or Uncertain "
                            f"quality (worst {bad['bad_share'].max():.0%}, {bad['bad_share'].idxmax()})",
                            {"bad_share": {k: round(float(v), 4) for k, v in bad["bad_share"].items()}}))
    return notes


# -- register readings (shared by the store reader and the meter-fault checks) ----------------------------------
def register_drops(data: IntervalData, resolution_kwh: float = 0.011) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Windows where the energy register reads lower than before (machines x windows), with the reading before the
    window and the lowest reading in it [kWh]; None when the data hold no register readings."""
    if "register_min_kwh" not in data.frame.columns or "register_last_kwh" not in data.frame.columns:
        return None
    low = data.matrix("register_min_kwh").astype(float)
    last = data.matrix("register_last_kwh").astype(float)
    prev = pd.DataFrame(last.T).ffill().shift(1).to_numpy().T  # last reading before each window
    drop = np.isfinite(low) & np.isfinite(prev) & (low < prev - resolution_kwh)
    return drop, prev, low


def plausible_max_kwh(data: IntervalData) -> np.ndarray:
    """Most energy a machine can draw in one window [kWh] (machines x 1): three times its rated power over the window,
    or, without a rating, ten times its 99th-percentile window energy."""
    e = data.matrix("energy_kwh").astype(float)
    out = np.empty((len(data.machines), 1))
    for i, info in enumerate(data.machines.values()):
        if info.rated_kw:
            out[i, 0] = 3.0 * info.rated_kw * data.hours
        else:
            finite = e[i][np.isfinite(e[i])]
            out[i, 0] = 10.0 * float(np.quantile(finite, 0.99)) if len(finite) else np.inf
    return out
