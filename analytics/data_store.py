"""Reading :class:`analytics.data.IntervalData` from a store (``IntervalData.from_store``).

One ``Store.read_frame`` pass per group of machines sharing a register maximum gives energy (register increase, or
integrated power where a machine has no register), power, state seconds, counts, air flow and register readings per
window; weather per site and material per machine are read beside it. All counter and time-weighted arithmetic is
``core.storage.intervals``'s; here the results are put on the container's grid, coverage is the share of each window a
usable power value held, and register resets that the counter rule took for rollovers are repaired.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from analytics.data import (
    FRAME_COLUMNS,
    NS,
    REGISTER_COLUMNS,
    IntervalData,
    MachineInfo,
    check_sufficiency,
    plausible_max_kwh,
    register_drops,
)
from analytics.errors import AnalyticsError, InsufficientDataError
from core.model import MACHINE_STATES, to_ns
from core.notices import Notice

if TYPE_CHECKING:
    from core.storage.base import Store

#: Longest a power or flow value holds until the next stored value [s]. OPC UA subscriptions report changes only (a
#: machine switched off reads 0 kW for hours without a new value), so silence is not a gap; a value stored as missing
#: or Bad ends the hold at once (a meter gap), and a silent collector stretches the last value at most this long.
POWER_HOLD_S = 6 * 3600
#: Longest a machine state holds [s]: states change rarely, a machine may stay off over a weekend.
STATE_HOLD_S = 3 * 86400
#: Register increase per window that counts as "no energy flowed" [kWh] (about one digit of a 0.01 kWh register).
REGISTER_DIGIT_KWH = 0.011
_BY = ("site", "line", "machine")


def _store_machines(store: Store, plant: Any, start_ns: int, stop_ns: int,
                    timezone: str = "UTC") -> tuple[list[MachineInfo], dict, list[Notice]]:
    """Machines to read, which of them have an energy register / power in the range, and notices."""
    notes: list[Notice] = []
    electrical = [s for s in store.series("electrical") if s.first_ns < stop_ns and s.last_ns >= start_ns]
    fields: dict[str, dict[str, Any]] = {}
    for info in electrical:
        tags = info.key.tag_dict
        path = "/".join(tags.get(k, "") for k in _BY)
        fields.setdefault(path, {})[info.key.field] = info
    if plant is not None:
        infos = [MachineInfo.from_ref(ref) for ref in plant.machines]
        missing = [m.path for m in infos if m.path not in fields]
        if missing:
            notes.append(Notice("analytics.data.machine_without_data",
                                f"{len(missing)} machine(s) of the plant file have no electrical data in the range: "
                                f"{', '.join(missing[:5])}", {"machines": missing}))
        strangers = sorted(set(fields) - {m.path for m in infos})
        if strangers:
            notes.append(Notice("analytics.data.unknown_machine",
                                f"{len(strangers)} metered machine(s) are not in the plant file and are left out: "
                                f"{', '.join(strangers[:5])}", {"machines": strangers[:50]}))
    else:
        infos = [MachineInfo.from_path(p, timezone=timezone) for p in sorted(fields)]
    if not any(m.path in fields for m in infos):
        raise InsufficientDataError(
            f"the store {getattr(store, 'description', '')} has no electrical data (measurement 'electrical', fields "
            f"energy_kwh or active_power_kw) for {'the plant file' + chr(39) + 's machines' if plant is not None else 'any machine'} "
            f"between {pd.Timestamp(start_ns, tz='UTC').isoformat()} and {pd.Timestamp(stop_ns, tz='UTC').isoformat()}")
    no_register = [m.path for m in infos if m.path in fields and "energy_kwh" not in fields[m.path]]
    infos = [MachineInfo(**{**m.__dict__, "has_register": m.path not in no_register,
                            "sample_s": _sample_period_s(fields.get(m.path, {}).get("active_power_kw"))}) for m in infos]
    if no_register:
        notes.append(Notice("analytics.data.no_energy_register", f"{len(no_register)} machine(s) have no energy register; "
                            "their energy is integrated from active power", {"machines": no_register[:50]}, level="info"))
    return infos, fields, notes


def _sample_period_s(series_info: Any) -> float | None:
    """Typical spacing of a series' stored values [s], from its count and extent (missing values included)."""
    if series_info is None or series_info.count < 2:
        return None
    return (series_info.last_ns - series_info.first_ns) / NS / (series_info.count - 1)


def read_store(cls: type[IntervalData], store: Store, plant: Any, start: Any, stop: Any, resolution_s: int,
               progress: bool, timezone: str = "UTC", carry: dict | None = None) -> IntervalData:
    """See :meth:`IntervalData.from_store` (``cls`` is the container class)."""
    from core.storage.base import Column

    start_ns, stop_ns = to_ns(start), to_ns(stop)
    if stop_ns <= start_ns:
        raise AnalyticsError(f"empty range: --to ({stop}) must be after --from ({start})")
    infos, fields, notes = _store_machines(store, plant, start_ns, stop_ns, timezone)
    by_path = {m.path: m for m in infos}
    all_paths = [m.path for m in infos]  # the machine column's categories (codes, not a string per row)
    index_of = {p: i for i, p in enumerate(all_paths)}
    groups: dict[float | None, list[MachineInfo]] = {}
    for m in infos:
        groups.setdefault(m.register_max_kwh, []).append(m)
    n_chunks = max(1, int(np.ceil((stop_ns - start_ns) / NS / (7 * 86400))))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_chunks * (len(groups) + 1), desc="read", unit="week")
    parts = []
    for register_max, members in groups.items():
        columns = [
            Column("reg", "electrical", "energy_kwh", "increase", register_max=register_max),
            Column("integral", "electrical", "active_power_kw", "integral", max_hold_s=POWER_HOLD_S),
            Column("power_mean_kw", "electrical", "active_power_kw", "twmean", max_hold_s=POWER_HOLD_S),
            Column("power_max_kw", "electrical", "active_power_kw", "max"),
            Column("register_min_kwh", "electrical", "energy_kwh", "min"),
            Column("register_last_kwh", "electrical", "energy_kwh", "last"),
            Column("s", "machine_state", "state", "state_seconds", max_hold_s=STATE_HOLD_S),
            Column("good", "production", "good_count", "increase"),
            Column("scrap", "production", "scrap_count", "increase"),
            Column("air_flow_m3_min", "compressed_air", "flow_m3_min", "twmean", max_hold_s=POWER_HOLD_S),
        ]
        tags = {"machine": sorted({m.machine for m in members})}
        paths = {m.path for m in members}
        group_carry = None if carry is None else carry.setdefault(("machines", register_max), {})
        for chunk in store.read_frame(columns, start_ns, stop_ns, every=resolution_s, tags=tags, by=_BY,
                                      carry=group_carry):
            if bar is not None:
                bar.update(1)
            if chunk.empty:
                continue
            code = _path_codes(chunk, index_of, paths)
            keep = code >= 0
            chunk = chunk.drop(columns=["site", "line"])[keep]
            chunk["machine"] = pd.Categorical.from_codes(code[keep], categories=all_paths)
            parts.append(chunk)
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["machine", "time"])
    del parts
    # Energy: the register where the machine has one, else integrated power.
    # Per-machine facts broadcast to rows through the machine's code (one lookup per machine, not per row).
    codes, uniques = pd.factorize(frame["machine"]) if len(frame) else (np.zeros(0, np.int64), [])

    def per_row(values: list) -> np.ndarray:
        return np.asarray(values, dtype=float)[codes] if len(frame) else np.zeros(0)

    has_reg = per_row([by_path[p].has_register for p in uniques]).astype(bool)
    frame["energy_kwh"] = np.where(has_reg, frame.get("reg", np.nan), frame.get("integral", np.nan))
    for state in MACHINE_STATES.values():
        if f"s_{state}" not in frame.columns:
            frame[f"s_{state}"] = np.nan
    # Coverage: the share of the window that a usable power value held (the step-hold of core.storage.intervals), from
    # integral / time-weighted mean; where the held value was 0 kW that ratio is undefined and the value held the
    # window. Counting samples instead would call every quiet stretch of a change-only (subscription) signal a gap.
    # Machines without a power series are covered where their register gave an increase.
    mean = pd.to_numeric(frame.get("power_mean_kw", np.nan), errors="coerce").to_numpy(dtype=float)
    integral = pd.to_numeric(frame.get("integral", np.nan), errors="coerce").to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        held = np.where(np.abs(mean) > 1e-9, integral * 3600.0 / mean / resolution_s, 1.0)
    coverage = np.clip(np.where(np.isfinite(mean), held, 0.0), 0.0, 1.0)
    # A change-only signal silent for longer than the hold is not missing when the meter shows it is alive: the
    # register has readings in the window (a steady load sends no new power value, the register still counts), or the
    # register says (next to) no energy flowed (a machine switched off needs no new value).
    energy_now = frame["energy_kwh"].to_numpy(dtype=float)
    register_read = np.isfinite(pd.to_numeric(frame.get("register_last_kwh", np.nan), errors="coerce").to_numpy(dtype=float))
    silent = ~np.isfinite(mean)  # where power did hold, its held share is exact (stored Bad values end holds)
    coverage = np.where(silent & (register_read | (energy_now <= REGISTER_DIGIT_KWH)), 1.0, coverage)
    has_power = per_row([p in fields and "active_power_kw" in fields[p] for p in uniques]).astype(bool)
    coverage = np.where(~has_power & np.isfinite(frame["energy_kwh"].to_numpy(dtype=float)), 1.0, coverage)
    frame["coverage"] = coverage
    # Site weather, broadcast to the site's machines.
    weather = []
    for chunk in store.read_frame([Column("outdoor_temp_c", "weather", "outdoor_temp_c", "twmean", max_hold_s=3 * 3600)],
                                  start_ns, stop_ns, every=resolution_s, by=("site",),
                                  carry=None if carry is None else carry.setdefault("weather", {})):
        if bar is not None:
            bar.update(1)
        if not chunk.empty:
            weather.append(chunk[["site", "time", "outdoor_temp_c"]])
    if weather and len(frame):
        # Looked up per site by time (not a merge, which copied the whole frame and a string column per row).
        w = pd.concat(weather, ignore_index=True)
        w_site = w["site"].astype(str).to_numpy()
        w_t = pd.DatetimeIndex(w["time"]).as_unit("ns").asi8
        w_v = w["outdoor_temp_c"].to_numpy()
        row_site = np.array([p.split("/", 1)[0] for p in all_paths], dtype=object)[frame["machine"].cat.codes.to_numpy()]
        row_t = pd.DatetimeIndex(frame["time"]).as_unit("ns").asi8
        temp = np.full(len(frame), np.nan, dtype=w_v.dtype if w_v.dtype.kind == "f" else float)
        for site in np.unique(w_site):
            mine = np.flatnonzero(w_site == site)
            mine = mine[np.argsort(w_t[mine], kind="stable")]
            ts = w_t[mine]
            rows = np.flatnonzero(row_site == site)
            pos = np.minimum(np.searchsorted(ts, row_t[rows]), len(ts) - 1)
            hit = ts[pos] == row_t[rows]
            temp[rows[hit]] = w_v[mine[pos[hit]]]
        frame["outdoor_temp_c"] = temp
        del row_site, row_t, temp
    if bar is not None:
        bar.close()
    materials = _read_materials(store, infos, start_ns, stop_ns, resolution_s)
    if "integral" in frame.columns:
        frame = frame.rename(columns={"integral": "integral_kwh"})
    else:
        frame["integral_kwh"] = np.nan
    kept = [c for c in FRAME_COLUMNS + REGISTER_COLUMNS + ("integral_kwh",) if c in frame.columns and c != "shift"]
    if plant is not None and not any(m.calendar is not None for m in infos):
        notes.append(Notice("analytics.data.no_calendar", "the plant file gives no shift calendar; off-shift load "
                            "cannot be assessed", {}))
    data = cls.from_frame(frame[kept], resolution_s=resolution_s, start=pd.Timestamp(start_ns, tz="UTC"),
                          stop=pd.Timestamp(stop_ns, tz="UTC"), plant=plant, machines=None if plant is not None else infos,
                          materials=materials, warnings=notes, extra=["integral_kwh"], check=False)
    if plant is not None:  # keep what the store told (has_register) on the plant's descriptions
        data.machines.update({m.path: m for m in infos if m.path in data.machines})
    _repair_false_rollovers(data)
    del data.frame["integral_kwh"]
    _bad_share(data, fields)
    data.warnings.extend(check_sufficiency(data))
    return data


def _path_codes(chunk: pd.DataFrame, index_of: dict[str, int], paths: set[str]) -> np.ndarray:
    """Index of each row's ``site/line/machine`` in ``index_of`` (-1 for machines outside ``paths``), by the tags'
    codes: one path string per distinct machine, not per row."""
    codes, uniques = zip(*(pd.factorize(chunk[t]) for t in _BY))
    sizes = [len(u) + 1 for u in uniques]
    combined = ((codes[0] + 1) * sizes[1] + (codes[1] + 1)) * sizes[2] + (codes[2] + 1)
    found, inverse = np.unique(combined, return_inverse=True)
    lookup = np.empty(len(found), dtype=np.int64)
    for k, c in enumerate(found.tolist()):
        c, m = divmod(c, sizes[2])
        s, li = divmod(c, sizes[1])
        tags = [u[x - 1] if x > 0 else None for u, x in zip(uniques, (s, li, m))]
        path = "/".join("" if x is None else str(x) for x in tags)
        lookup[k] = index_of[path] if path in paths and None not in tags else -1
    return lookup[inverse.ravel()]


def _bad_share(data: IntervalData, fields: dict) -> None:
    """Share of each window without a usable value inside the extent of the machine's power series (stored as missing
    or Bad there: a meter gap); outside the extent there is no series and nothing is bad."""
    first = np.full((len(data.machines), 1), np.iinfo(np.int64).max)
    last = np.full((len(data.machines), 1), np.iinfo(np.int64).min)
    for i, path in enumerate(data.machine_ids):
        series = fields.get(path, {}).get("active_power_kw")
        if series is not None:
            first[i, 0], last[i, 0] = series.first_ns, series.last_ns
    t = data.times_ns[None, :]
    inside = (t + data.resolution_s * NS > first) & (t <= last)
    coverage = data.matrix("coverage").astype(float)
    data.frame["bad_share"] = np.where(inside, 1.0 - coverage, 0.0).astype(np.float32).ravel()


def _repair_false_rollovers(data: IntervalData) -> None:
    """Windows where a register drop was counted as a rollover but the increase that implies is more than the machine
    can draw: the register was reset, not rolled over; their energy is taken from integrated power instead.

    The store's counter rule (``core.storage.intervals.classify_drop``) calls any drop from above half the register's
    maximum a rollover; a meter reset there would add hundreds of MWh in one window.
    """
    found = register_drops(data)
    if found is None:
        return
    drop, _, _ = found
    if not drop.any():
        return
    energy = data.matrix("energy_kwh").astype(float)
    bad = drop & (energy > plausible_max_kwh(data))
    if not bad.any():
        return
    integral = data.matrix("integral_kwh").astype(float)
    fixed = np.where(bad, integral, energy)
    data.frame["energy_kwh"] = fixed.ravel()
    data.frame["power_mean_kw"] = np.where(bad, integral / data.hours, data.matrix("power_mean_kw")).ravel()
    paths = [data.machine_ids[i] for i in np.flatnonzero(bad.any(axis=1))]
    data.warnings.append(Notice(
        "analytics.data.register_reset", f"{int(bad.sum())} window(s) of {len(paths)} machine(s) had an energy register "
        "reset that the counter rule took for a rollover (an impossible increase); their energy is integrated power",
        {"machines": paths[:50], "windows": int(bad.sum())}))


def _read_materials(store: Store, infos: list[MachineInfo], start_ns: int, stop_ns: int,
                    resolution_s: int) -> pd.DataFrame | None:
    """Material consumed per machine, window and material id [kg] (windows with consumption only).

    Read as sparse counter increases (``core.storage.query.read_increases``): a plant has thousands of material
    counters, most of them idle in any week, and only the windows where one moved become rows. Rows are ordered as
    a ``read_frame`` by site, line, machine and material gives them (by those tags, then time, per weekly chunk).
    """
    from core.storage.query import read_increases

    machine_of = {m.path: i for i, m in enumerate(infos)}
    tags = {"machine": sorted({m.machine for m in infos})}
    # Machine and material as integer codes per row (categoricals at the end): ~53 M rows a year of 200 machines as
    # string columns were gigabytes; the codes are 2 and 4 bytes a row, and the category lists are small.
    material_of: dict[str, int] = {}
    parts = []
    for keys, index, times, kg in read_increases(store, "material", "consumed_kg", start_ns, stop_ns,
                                                 every=resolution_s, tags=tags):
        keep = kg > 0
        if not keep.any():
            continue
        # Per series: its path and material; series outside the plant's machines (or without those tags) drop out.
        described = [dict(k) for k in keys]
        tag_of = [tuple(d.get(t) for t in (*_BY, "material")) for d in described]
        path_of = ["/".join(str(x) for x in tg[:3]) for tg in tag_of]
        usable = np.array([all(x is not None for x in tg) and p in machine_of for tg, p in zip(tag_of, path_of)],
                          dtype=bool)
        keep &= usable[index]
        if not keep.any():
            continue
        index, times, kg = index[keep], times[keep], kg[keep]
        ranked = sorted(set(tag_of[i] for i in np.unique(index)))
        rank_of = {tg: r for r, tg in enumerate(ranked)}
        rank = np.array([rank_of.get(tg, -1) for tg in tag_of], dtype=np.int64)[index]
        step = np.diff(rank)
        if not ((step > 0) | ((step == 0) & (times[1:] >= times[:-1]))).all():  # (rows mostly come in this order)
            order = np.lexsort((times, rank))
            index, times, kg, rank = index[order], times[order], kg[order], rank[order]
        m_code = np.array([machine_of.get(p, -1) for p in path_of], dtype=np.int16 if len(infos) < 2**15 else np.int32)
        k_code = np.array([material_of.setdefault(str(tg[3]), len(material_of)) if u else -1
                           for tg, u in zip(tag_of, usable)], dtype=np.int32)
        columns = (m_code[index], times, k_code[index], kg)
        if ((rank[1:] == rank[:-1]) & (times[1:] == times[:-1])).any():  # series differing in another tag: one row
            part = pd.DataFrame(dict(zip(("machine", "time", "material", "kg"), columns)))
            part = part.groupby(["machine", "time", "material"], sort=False)["kg"].sum().reset_index()
            columns = tuple(part[c].to_numpy() for c in ("machine", "time", "material", "kg"))
        parts.append(columns)
    if not parts:
        return None
    machine, times, material, kg = (np.concatenate(c) for c in zip(*parts))
    del parts
    # Materials' categories sorted (a groupby or sort on the codes then orders as on the ids).
    names = sorted(material_of)
    remap = np.empty(len(material_of), dtype=np.int32)
    remap[[material_of[n] for n in names]] = np.arange(len(names), dtype=np.int32)
    return pd.DataFrame({
        "machine": pd.Categorical.from_codes(machine, categories=[m.path for m in infos]),
        "time": pd.to_datetime(times, unit="ns", utc=True),
        "material": pd.Categorical.from_codes(remap[material], categories=names),
        "kg": kg})
